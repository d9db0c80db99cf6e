"""Many epochs per engine call (Trainer.run_epochs, _FitLoop._epochs).

When nothing in Python is due between epochs, fit hands the engine many
epochs per call.  Everything must be as with one call per epoch (the switch
``_fit_loop.ENGINE_EPOCHS``): weights, optimizer state and step, the epoch
count, the shuffling generator, the History, the stops, and what an
exception, a divergence or a signal leaves behind.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine, _fit_loop

from conftest import FASTNN_PARENT, assert_same_weights, read_line, weights

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="signals are POSIX")


@pytest.fixture
def engine_calls(monkeypatch):
    """Counts the epochs run through _FitLoop._epochs (the engine's loop);
    the epochs per call then grow 16-fold per call whatever the machine's
    load (1, 16, 256, ...: boundaries inside the fits below)."""
    monkeypatch.setattr(_fit_loop, "CALL_SECONDS", 1e9)
    calls = []
    original = _fit_loop._FitLoop._epochs

    def spy(self, epoch, remaining, history, t_start):
        result = original(self, epoch, remaining, history, t_start)
        calls.append(result[0])
        return result
    monkeypatch.setattr(_fit_loop._FitLoop, "_epochs", spy)
    return calls


def _both(monkeypatch, make, fit):
    """``fit(make())`` with many epochs per call and with one; returns both
    (network, History or the exception's text)."""
    out = []
    for many in (True, False):
        monkeypatch.setattr(_fit_loop, "ENGINE_EPOCHS", many)
        net = make()
        try:
            result = fit(net)
        except FloatingPointError as exc:
            result = str(exc)
        out.append((net, result))
    return out


def _assert_same_state(a, b):
    assert_same_weights(weights(a), weights(b))
    assert a.optimizer.step == b.optimizer.step
    assert a._epochs_trained == b._epochs_trained
    assert a._rng.bit_generator.state == b._rng.bit_generator.state
    for sa, sb in zip(a.optimizer._state or [], b.optimizer._state or []):
        for pa, pb in zip(sa, sb):
            for xa, xb in zip(pa, pb):
                if xa is not None:
                    np.testing.assert_array_equal(xa, xb)


def _assert_same_history(ha, hb):
    if isinstance(ha, str) or isinstance(hb, str):
        assert ha == hb
        return
    assert ha.epoch == hb.epoch
    assert ha.history == hb.history
    assert (ha.stop_reason, ha.interrupted) == (hb.stop_reason, hb.interrupted)
    assert all(type(v) is float for v in ha.history["loss"])


# The same draw as NumPy's Generator.permutation, whatever the bit generator.

@pytest.mark.parametrize("bit_generator", [np.random.PCG64, np.random.MT19937, np.random.Philox,
                                           np.random.SFC64])
def test_the_engine_draws_numpys_permutations(bit_generator):
    for n in [1, 2, 3, 4, 5, 17, 256, 1000, 70001]:
        a, b = np.random.Generator(bit_generator(n)), np.random.Generator(bit_generator(n))
        for k in range(6):
            if k % 2:      # a 32-bit draw in between leaves half a 64-bit word buffered
                a.integers(0, 7, dtype=np.int32)
                b.integers(0, 7, dtype=np.int32)
            np.testing.assert_array_equal(_engine.permutation(a, n), b.permutation(n))
        # the generators are left alike (the same next draws)
        np.testing.assert_array_equal(a.integers(0, 2 ** 62, 4), b.integers(0, 2 ** 62, 4))


# Bit-identical to one call per epoch.

OPTIMIZERS = {
    "sgd": lambda: fn.SGD(0.05),
    "momentum": lambda: fn.SGD(0.05, momentum=0.9),
    "nesterov": lambda: fn.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: fn.Adam(0.01),
    "adamw": lambda: fn.AdamW(0.01, weight_decay=0.01),
    "rmsprop": lambda: fn.RMSprop(0.01, momentum=0.5),
    "rprop": lambda: fn.RProp(),
}

# (rows, sizes, batch_size): odd shapes, a last batch shorter than the others
# and one wide enough for two threads.
SHAPES = {"xor": (4, (2, 4, 1), 4), "odd": (7, (3, 5, 2), 3), "one_row": (1, (2, 3, 1), 1),
          "wide": (96, (20, 300, 3), 32)}


def _data(rows, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_in))
    return X, np.tanh(X @ rng.normal(size=(n_in, n_out)))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_many_epochs_per_call_train_as_one_per_call(monkeypatch, engine_calls, dtype, opt, shape,
                                                     n_threads):
    rows, sizes, batch_size = SHAPES[shape]
    X, y = _data(rows, sizes[0], sizes[-1])

    def make():
        return fn.Network([fn.Dense(sizes[0], sizes[1], activation="tanh"),
                           fn.Dense(sizes[1], sizes[2], activation="sigmoid")],
                          dtype=dtype, seed=3)

    def fit(net):
        h = net.fit(X, y, epochs=40, batch_size=batch_size, optimizer=OPTIMIZERS[opt](),
                    n_threads=n_threads)
        # a second fit continues the first (optimizer, step, generator)
        h2 = net.fit(X, y, epochs=5, batch_size=batch_size, n_threads=n_threads)
        return h, h2
    (a, (ha, ha2)), (b, (hb, hb2)) = _both(monkeypatch, make, fit)
    assert sum(engine_calls) == 45 and len(engine_calls) < 45
    _assert_same_state(a, b)
    _assert_same_history(ha, hb)
    _assert_same_history(ha2, hb2)
    assert len(ha.epoch) == 40


REGULARIZATION = {
    "l2_l1": dict(l2=1e-3, l1=1e-4),
    "sample_weight": dict(sample_weight="weights"),
    "class_weight": dict(class_weight="balanced"),
    "input_noise": dict(input_noise=0.1),
    "dropout": dict(),
    "no_shuffle": dict(shuffle=False),
    "blocks": dict(shuffle="blocks"),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("case", REGULARIZATION)
def test_penalties_weights_and_noise_alike(monkeypatch, engine_calls, dtype, case, n_threads):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(37, 5))
    labels = (X[:, 0] + X[:, 1] ** 2 > 0.5).astype(int)
    kwargs = dict(REGULARIZATION[case])
    if kwargs.get("sample_weight") == "weights":
        kwargs["sample_weight"] = rng.uniform(0, 2, 37)
    dropout = 0.3 if case == "dropout" else 0.0

    def make():
        return fn.Network([fn.Dense(5, 9, activation="relu", dropout=dropout),
                           fn.Dense(9, 2, activation="softmax")],
                          loss="cross_entropy", dtype=dtype, seed=7)
    (a, ha), (b, hb) = _both(monkeypatch, make, lambda net: net.fit(
        X, labels, epochs=30, batch_size=8, optimizer=fn.Adam(0.01), n_threads=n_threads,
        **kwargs))
    # shuffle="blocks" draws its order in Python: one epoch per call
    assert (sum(engine_calls) == 30) == (case != "blocks")
    _assert_same_state(a, b)
    _assert_same_history(ha, hb)


def test_python_between_epochs_keeps_one_call_per_epoch(engine_calls):
    X, y = _data(20, 3, 1)
    net = fn.Network([fn.Dense(3, 4, activation="tanh"), fn.Dense(4, 1)], seed=0)
    for kwargs in (dict(callbacks=[fn.Callback()]), dict(validation_split=0.2),
                   dict(metrics=["bit_fail"]), dict(verbose=2), dict(lr_schedule=lambda e: 0.01)):
        net.fit(X, y, epochs=3, **kwargs)
    assert engine_calls == []
    net.fit(X, y, epochs=3)
    assert sum(engine_calls) == 3


# The stops between epochs.

@pytest.mark.parametrize("target", [0.05, 0.01, 1e-9])
def test_target_loss_stops_at_the_same_epoch(monkeypatch, engine_calls, dtype, target):
    X, y = _data(16, 3, 1)
    (a, ha), (b, hb) = _both(
        monkeypatch, lambda: fn.Network([fn.Dense(3, 6, activation="tanh"), fn.Dense(6, 1)],
                                        dtype=dtype, seed=2),
        lambda net: net.fit(X, y, epochs=3000, batch_size=4, optimizer=fn.SGD(0.05),
                            target_loss=target))
    assert engine_calls
    _assert_same_state(a, b)
    _assert_same_history(ha, hb)
    assert ha.stop_reason == ("epochs" if target == 1e-9 else "target_loss")


MAX_TIME = """
import json, sys, time
import numpy as np
import fastnn as fn
X = np.random.default_rng(0).normal(size=(8, 2))
y = X[:, :1] * X[:, 1:]
net = fn.Network([fn.Dense(2, 4, activation="tanh"), fn.Dense(4, 1)], seed=0)
t0 = time.perf_counter()
h = net.fit(X, y, epochs=10 ** 9, batch_size=4, max_time=0.3)
print(json.dumps({"seconds": time.perf_counter() - t0, "stop_reason": h.stop_reason,
                  "epochs": len(h.epoch), "losses": len(h.history["loss"]),
                  "trained": net._epochs_trained, "step": net.optimizer.step}))
"""


def test_max_time_stops_the_engines_epochs():
    from conftest import run_python
    # stopped by the clock, not by the 10**9 epochs (hours): else the timeout fails it
    out = run_python(MAX_TIME, timeout=300)
    assert out["stop_reason"] == "max_time"
    # every epoch run is in the History, and no epoch was begun and dropped
    assert out["epochs"] == out["losses"] == out["trained"] == out["step"] // 2 > 1


def test_max_time_and_target_loss_with_one_epoch_per_call_alike(monkeypatch, engine_calls):
    # a deadline that passes at once: the first epoch only, on both paths
    X, y = _data(10, 2, 1)
    (a, ha), (b, hb) = _both(monkeypatch, lambda: fn.Network([fn.Dense(2, 1)], seed=0),
                             lambda net: net.fit(X, y, epochs=50, max_time=1e-9))
    _assert_same_state(a, b)
    _assert_same_history(ha, hb)
    assert ha.stop_reason == "max_time" and ha.epoch == [0]


# Divergence: the epoch is undone, with its shuffling and count.

@pytest.mark.parametrize("lr, batch_size", [(0.2, 8), (0.3, 8), (0.5, 40), (1.0, 40),
                                            (1.0, 8)])
def test_a_diverged_epoch_is_undone_alike(monkeypatch, engine_calls, dtype, lr, batch_size):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [2.0], [3.0]])
    (a, msg_a), (b, msg_b) = _both(
        monkeypatch, lambda: fn.Network([fn.Dense(3, 4, activation="relu"), fn.Dense(4, 1)],
                                        dtype=dtype, seed=0),
        lambda net: net.fit(X, y, epochs=3000, batch_size=batch_size,
                            optimizer=fn.SGD(lr, momentum=0.9)))
    assert msg_a == msg_b
    _assert_same_state(a, b)
    # and training goes on alike from there
    outcomes = []
    for net, many in ((a, True), (b, False)):
        monkeypatch.setattr(_fit_loop, "ENGINE_EPOCHS", many)
        try:
            outcomes.append(net.fit(X, y, epochs=3, batch_size=batch_size).history)
        except FloatingPointError as exc:
            outcomes.append(str(exc))
    assert outcomes[0] == outcomes[1]
    _assert_same_state(a, b)


def test_both_divergence_messages_are_met():
    # the cases above meet both checks (the loss's and the weights' after an epoch)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [2.0], [3.0]])
    messages = set()
    for lr, batch_size in [(0.3, 8), (0.5, 40)]:
        net = fn.Network([fn.Dense(3, 4, activation="relu"), fn.Dense(4, 1)], seed=0)
        with pytest.raises(FloatingPointError) as info:
            net.fit(X, y, epochs=3000, batch_size=batch_size, optimizer=fn.SGD(lr, momentum=0.9))
        messages.add("weights became" in str(info.value))
    assert messages == {True, False}


def test_a_non_finite_input_leaves_the_network_untouched(monkeypatch, engine_calls):
    X, y = _data(12, 3, 1)
    X[7, 1] = np.nan
    net = fn.Network([fn.Dense(3, 4, activation="tanh"), fn.Dense(4, 1)], seed=0)
    net.fit(np.nan_to_num(X), y, epochs=2)
    before = weights(net), net.optimizer.step, net._epochs_trained, net._rng.bit_generator.state
    with pytest.raises(ValueError, match="NaN"):
        net.fit(X, y, epochs=20)
    assert_same_weights(weights(net), before[0])
    assert (net.optimizer.step, net._epochs_trained, net._rng.bit_generator.state) == before[1:]


# Signals: Ctrl-C and a handler's exception in the middle of the engine's epochs.

SIGNAL_FIT = """
import os, signal, sys, threading, time
import numpy as np
import fastnn as fn

kind, dtype, path = sys.argv[1], sys.argv[2], sys.argv[3]
X = np.random.default_rng(0).normal(size=(30, 4))
y = (X[:, :1] * X[:, 1:2] > 0).astype(float)
net = fn.Network([fn.Dense(4, 8, activation="tanh"), fn.Dense(8, 1, activation="sigmoid")],
                 dtype=dtype, seed=0)
if kind == "term":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(7))
net.fit(X, y, epochs=3, batch_size=8, optimizer=fn.Adam(0.01))   # imported and warm
print("READY", flush=True)


def send():
    # after 0.3 s of this process's CPU time (well into the engine's epochs,
    # however loaded the machine), as if from outside
    start = time.process_time()
    while time.process_time() < start + 0.3:
        time.sleep(0.01)
    os.kill(os.getpid(), signal.SIGINT if kind == "int" else signal.SIGTERM)


threading.Thread(target=send, daemon=True).start()
try:
    h = net.fit(X, y, epochs=10 ** 9, batch_size=8, optimizer=fn.Adam(0.01))
    print("DONE", h.interrupted, h.stop_reason, len(h.epoch), len(h.history["loss"]),
          net.optimizer.step, net._epochs_trained, flush=True)
except BaseException as exc:
    print("RAISED", type(exc).__name__, net.optimizer.step, net._epochs_trained, flush=True)
    raise
finally:
    net.save(path)
"""


def _replay(steps, dtype):
    """The same training stopped after ``steps`` batches (by a batch callback:
    one engine call per batch)."""
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = (X[:, :1] * X[:, 1:2] > 0).astype(float)
    net = fn.Network([fn.Dense(4, 8, activation="tanh"), fn.Dense(8, 1, activation="sigmoid")],
                     dtype=dtype, seed=0)
    net.fit(X, y, epochs=3, batch_size=8, optimizer=fn.Adam(0.01))

    class StopAt(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if self.model.optimizer.step == steps:
                self.model.stop_training = True
    net.fit(X, y, epochs=steps // 4 + 1, batch_size=8, optimizer=fn.Adam(0.01),
            callbacks=[StopAt()])
    assert net.optimizer.step == steps
    return net


@posix_only
@pytest.mark.parametrize("kind", ["int", "term"])
def test_a_signal_stops_the_engines_epochs_at_the_last_finished_batch(tmp_path, dtype, kind):
    script = tmp_path / "train.py"
    script.write_text(SIGNAL_FIT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FASTNN_PARENT] + sys.path))
    name = np.dtype(dtype).name
    proc = subprocess.Popen([sys.executable, str(script), kind, name, str(tmp_path / "m.fnn")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert read_line(proc).strip() == "READY"
        out, err = proc.communicate(timeout=300)   # the child signals itself
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    words = out.split()
    if kind == "int":
        assert proc.returncode == 0, err
        assert "fastnn: training interrupted" in err
        done = out.splitlines()[-1].split()
        assert done[:3] == ["DONE", "True", "interrupted"]
        n_history, n_losses, steps, epochs_trained = map(int, done[3:])
        # every finished epoch is in the History; one the signal stopped is
        # not (none when Ctrl-C landed between two engine calls)
        assert n_losses == n_history in (epochs_trained - 3 - 1, epochs_trained - 3)
    else:
        assert proc.returncode == 7, err
        assert words[0] == "RAISED" and words[1] == "SystemExit"
        steps, epochs_trained = int(words[2]), int(words[3])
    assert steps > 4 * 10     # ten epochs or more
    loaded = fn.load(tmp_path / "m.fnn")
    replay = _replay(steps, dtype)
    assert loaded.optimizer.step == steps and loaded._epochs_trained == epochs_trained
    _assert_same_state(loaded, replay)
