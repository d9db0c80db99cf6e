"""One network, several threads (fastnn/_guard.py).

Real threads, with events that hold a ``fit`` open in a callback so that
the other thread's call lands while it trains (no sleeps deciding anything),
and timeouts on every join so that a deadlock fails instead of hanging:

- while ``fit`` trains, predict / predict_proba / forward / evaluate /
  gradients / save / fit from another thread raise RuntimeError at once, and
  the training is not disturbed (same weights as an undisturbed fit, and no
  model file written from half-trained weights);
- a callback of the fit (the training thread) may predict, evaluate,
  gradients and save (checkpoints); a callback calling ``fit`` on its own
  model gets a RuntimeError;
- reading calls run side by side; ``fit`` waits for those already running;
- copies (copy.deepcopy, pickle) get a guard of their own.
"""
import copy
import pickle
import threading

import numpy as np
import pytest

import fastnn as fn

from conftest import assert_same_weights, weights

TIMEOUT = 60


def _net():
    return fn.Network([fn.Dense(8, 16, activation="tanh"),
                       fn.Dense(16, 3, activation="softmax")],
                      loss="cross_entropy", seed=0)


def _data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(200, 8)).astype(np.float32), rng.integers(0, 3, 200)


class _Hold(fn.Callback):
    """Holds the fit open at the end of its first epoch until released."""

    def __init__(self):
        super().__init__()
        self.inside, self.release = threading.Event(), threading.Event()

    def on_epoch_end(self, epoch, logs):
        if epoch == 0:
            self.inside.set()
            assert self.release.wait(TIMEOUT), "never released"


def _start(target):
    errors = []

    def run():
        try:
            target()
        except BaseException as exc:   # reported by _join
            errors.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _join(thread, errors):
    thread.join(TIMEOUT)
    assert not thread.is_alive(), "the thread hangs"
    if errors:
        raise errors[0]


CALLS = {
    "predict": lambda net, X, y, path: net.predict(X),
    "predict_proba": lambda net, X, y, path: net.predict_proba(X),
    "forward": lambda net, X, y, path: net.forward(X),
    "evaluate": lambda net, X, y, path: net.evaluate(X, y),
    "gradients": lambda net, X, y, path: net.gradients(X, y),
    "save": lambda net, X, y, path: net.save(path),
    "fit": lambda net, X, y, path: net.fit(X, y, epochs=1),
}


@pytest.mark.parametrize("call", CALLS)
def test_calls_from_another_thread_while_fit_trains_raise(tmp_path, call):
    X, y = _data()
    net, hold = _net(), _Hold()
    thread, errors = _start(lambda: net.fit(X, y, epochs=3, optimizer=fn.SGD(lr=0.1),
                                            callbacks=[hold]))
    try:
        assert hold.inside.wait(TIMEOUT)
        with pytest.raises(RuntimeError, match=rf"Network.{call} was called while another "
                                               rf"thread is training this network \(fit\)"):
            CALLS[call](net, X, y, tmp_path / "model.fnn")
    finally:
        hold.release.set()
        _join(thread, errors)
    assert not (tmp_path / "model.fnn").exists()
    undisturbed = _net()
    undisturbed.fit(X, y, epochs=3, optimizer=fn.SGD(lr=0.1))
    assert_same_weights(weights(net), weights(undisturbed))
    CALLS[call](net, X, y, tmp_path / "model.fnn")   # fine once fit has returned


def test_callbacks_of_the_fit_may_read_and_save_but_not_fit(tmp_path):
    X, y = _data()
    seen = {}

    class Checkpoint(fn.Callback):
        def on_epoch_end(self, epoch, logs):
            net = self.model
            seen["predict"] = net.predict(X[:5]).shape
            seen["evaluate"] = sorted(net.evaluate(X, y))
            seen["gradients"] = len(net.gradients(X[:10], y[:10]))
            net.save(tmp_path / f"epoch{epoch}.fnn")
            try:
                net.fit(X, y, epochs=1)
            except RuntimeError as exc:
                seen["fit"] = str(exc)

    net = _net()
    net.fit(X, y, epochs=2, optimizer=fn.SGD(lr=0.1), callbacks=[Checkpoint()])
    assert seen["predict"] == (5, 3) and seen["evaluate"] == ["accuracy", "loss"]
    assert seen["gradients"] == 2
    assert "Network.fit was called during fit of the same network (from a callback?)" \
        in seen["fit"]
    np.testing.assert_array_equal(fn.load(tmp_path / "epoch1.fnn").predict(X), net.predict(X))
    assert fn.load(tmp_path / "epoch1.fnn").optimizer.step == net.optimizer.step
    net.fit(X, y, epochs=1)      # the guard was released


def test_reading_calls_run_side_by_side_and_fit_waits_for_them():
    X, y = _data()
    net = _net()
    net._guard.enter_shared("predict")    # a predict running in this thread
    try:
        # Another thread's reading calls do not wait for it ...
        thread, errors = _start(lambda: (net.predict(X), net.evaluate(X, y)))
        _join(thread, errors)
        # ... but a fit does, and reading calls arriving meanwhile are refused.
        done = threading.Event()
        thread, errors = _start(lambda: (net.fit(X, y, epochs=1), done.set()))
        for _ in range(200):
            with net._guard._lock:
                if net._guard._trainer is not None:
                    break
            threading.Event().wait(0.01)
        assert net._guard._trainer is not None and not done.is_set()
        reader, reader_errors = _start(lambda: net.predict(X))
        with pytest.raises(RuntimeError, match="another thread is training"):
            _join(reader, reader_errors)
    finally:
        net._guard.exit_shared()
    _join(thread, errors)
    assert done.is_set()


def test_two_threads_predicting_at_once_get_the_single_threaded_results():
    X, y = _data()
    net = _net()
    expected = net.predict(X)
    barrier = threading.Barrier(2)
    results = []

    def work():
        barrier.wait(TIMEOUT)
        for _ in range(50):
            results.append(net.predict(X, n_threads=1))
    threads = [_start(work) for _ in range(2)]
    for thread, errors in threads:
        _join(thread, errors)
    assert len(results) == 100
    for out in results:
        np.testing.assert_array_equal(out, expected)


def test_copies_have_a_guard_of_their_own():
    X, y = _data()
    net, hold = _net(), _Hold()
    before = copy.deepcopy(net)
    pickled = pickle.loads(pickle.dumps(net))
    thread, errors = _start(lambda: net.fit(X, y, epochs=2, callbacks=[hold]))
    try:
        assert hold.inside.wait(TIMEOUT)
        np.testing.assert_array_equal(before.predict(X), pickled.predict(X))
        before.fit(X, y, epochs=1)
    finally:
        hold.release.set()
        _join(thread, errors)
