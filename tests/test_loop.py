"""The training loop of ``Network.fit``: History, progress output, Ctrl-C, resuming.

Covers: the History keys for classification and regression, the training
accuracy (``metrics=["accuracy"]``) and validation values equal to
``evaluate`` at each epoch's end, ``History.plot`` (panels and curves, the
ImportError without matplotlib); ``verbose=2`` and non-terminal ``verbose=1``
printing one line per epoch without ``\\r``, terminal ``verbose=1`` redrawing
one bounded-width line in place at most about 20 times per epoch and
training bit-identically to ``verbose=0``; Ctrl-C (SIGINT) sent to a
training script in a subprocess: it exits cleanly, saves, and the saved
model and optimizer equal the same network trained for exactly the batches
it reports; resuming: 2 + 2 epochs with save and load in between equal 4
epochs straight, bit for bit (SGD with momentum, Nesterov, Adam; float32
and float64; in order and shuffled), and ``fit()`` without an optimizer
continues with the network's own.

Tolerances: none - values are compared bit for bit (the same computation
on the same weights), output by content.
"""
import io
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn

from conftest import assert_same_weights, read_line, weights
from fastnn.progress import UPDATES

rng = np.random.default_rng(11)
X = rng.normal(size=(60, 5))
LABELS = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
X_VAL, LABELS_VAL = X[:15] + 0.1, LABELS[:15]


def clf(dtype=np.float64, seed=0):
    return fn.Network([fn.Dense(5, 8, activation="relu"),
                       fn.Dense(8, 3, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=seed)


# -- History -------------------------------------------------------------------------

def test_history_holds_every_metric_per_epoch():
    net = clf()
    at_epoch_end = []
    probe = fn.LambdaCallback(on_epoch_end=lambda e, logs: at_epoch_end.append(
        (net.evaluate(X, LABELS), net.evaluate(X_VAL, LABELS_VAL))))
    hist = net.fit(X, LABELS, epochs=3, batch_size=16, optimizer=fn.SGD(lr=0.2),
                   validation_data=(X_VAL, LABELS_VAL), metrics=["accuracy"],
                   callbacks=[probe])
    assert list(hist.history) == ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert all(len(v) == 3 for v in hist.history.values())
    assert hist.epoch == [0, 1, 2] and hist.stop_reason == "epochs"
    for e, (train, val) in enumerate(at_epoch_end):
        assert hist["accuracy"][e] == train["accuracy"]
        assert hist["val_loss"][e] == val["loss"]
        assert hist["val_accuracy"][e] == val["accuracy"]
    assert hist["lr"] == [0.2] * 3
    assert "stop_reason='epochs'" in repr(hist)


def test_history_of_a_regression():
    net = fn.Network([fn.Dense(5, 2)], seed=0)
    Y = X[:, :2] * 2
    hist = net.fit(X, Y, epochs=2, optimizer=fn.Adam(0.01), validation_split=0.25)
    assert list(hist.history) == ["loss", "val_loss", "lr"]
    assert hist["val_loss"][-1] == net.evaluate(X[45:], Y[45:])["loss"]


def test_history_plot():
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    net = clf()
    hist = net.fit(X, LABELS, epochs=4, optimizer=fn.SGD(lr=0.2), validation_split=0.2,
                   metrics=["accuracy"], lr_schedule=fn.StepDecay(2, 0.5))
    fig = hist.plot()
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy", "learning rate"]
    for ax, keys in zip(axes, (["loss", "val_loss"], ["accuracy", "val_accuracy"], ["lr"])):
        lines = ax.get_lines()
        assert [l.get_label() for l in lines] == keys
        for line, key in zip(lines, keys):
            np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
            np.testing.assert_array_equal(line.get_ydata(), hist[key])
    assert axes[2].get_yscale() == "log"
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_history_plot_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    hist = clf().fit(X, LABELS, epochs=1)
    with pytest.raises(ImportError, match="History.plot needs matplotlib, which is not "
                                          "installed; install it with: pip install matplotlib"):
        hist.plot()


# -- progress output ---------------------------------------------------------------------

class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_verbose_2_prints_one_line_per_epoch(capsys):
    clf().fit(X, LABELS, epochs=3, batch_size=8, validation_data=(X_VAL, LABELS_VAL),
              verbose=2)
    out = capsys.readouterr().out
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3
    for e, line in enumerate(lines):
        assert re.match(rf"epoch {e + 1}/3  loss=\d\.\d{{4}}  val_loss=\d\.\d{{4}}  "
                        rf"val_accuracy=\d\.\d{{4}}  lr=0\.01  \d+\.\d+s  [\d,]+ samples/s$",
                        line), line


def test_verbose_1_without_a_terminal_prints_lines_not_redraws(capsys):
    net = clf()
    net.fit(X, LABELS, epochs=4, batch_size=1, verbose=1)    # 60 batches per epoch
    out = capsys.readouterr().out
    assert "\r" not in out and "ETA" not in out
    assert [l.split("  ")[0] for l in out.splitlines()] == [f"epoch {e}/4" for e in (1, 2, 3, 4)]


def test_verbose_0_is_silent(capsys):
    clf().fit(X, LABELS, epochs=2, validation_split=0.2)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("batch_callback", [False, True])
def test_verbose_1_on_a_terminal_redraws_in_place(monkeypatch, dtype, batch_callback):
    monkeypatch.setenv("COLUMNS", "80")
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", term)
    callbacks = [fn.LambdaCallback(on_batch_end=lambda b, logs: None)] if batch_callback else []
    live = clf(dtype)
    live.fit(X, LABELS, epochs=3, batch_size=1, verbose=1, optimizer=fn.Adam(0.01),
             validation_data=(X_VAL, LABELS_VAL), callbacks=callbacks)
    out = term.getvalue()
    epochs = out.split("\n")
    assert epochs[-1] == "" and len(epochs) == 4
    for e, text in enumerate(epochs[:3]):
        draws = text.split("\r")[1:]
        assert 3 <= len(draws) <= UPDATES + 2, len(draws)
        for draw in draws[:-1]:
            assert draw.startswith(f"epoch {e + 1}/3 [")
            assert len(draw.rstrip()) < 80
        assert "ETA" in draws[-2] and "samples/s" in draws[-2] and "loss=" in draws[-2]
        assert "60/60" in draws[-2]
        final = draws[-1]
        assert re.match(rf"epoch {e + 1}/3  loss=\S+  val_loss=\S+  val_accuracy=\S+  "
                        rf"lr=0\.01  \S+s  [\d,]+ samples/s *$", final), final
    # chunked engine calls train exactly like one call per epoch
    quiet = clf(dtype)
    quiet.fit(X, LABELS, epochs=3, batch_size=1, verbose=0, optimizer=fn.Adam(0.01))
    assert_same_weights(weights(live), weights(quiet))
    assert live.optimizer.step == quiet.optimizer.step == 180


def test_live_line_is_ended_when_training_stops_inside_an_epoch(monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", term)

    class Stop(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if batch == 30:
                raise KeyboardInterrupt

    hist = clf().fit(X, LABELS, epochs=2, batch_size=1, verbose=1, callbacks=[Stop()])
    assert hist.interrupted
    out = term.getvalue()
    assert out.endswith("\n") and out.count("\n") == 1 and "30/60" in out


# -- Ctrl-C in a real process -----------------------------------------------------------

SCRIPT = """
import sys
import numpy as np
import fastnn as fn

rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 100))
y = (X[:, :3].sum(axis=1) > 0).astype(int)
net = fn.Network([fn.Dense(100, 512, activation="tanh"), fn.Dense(512, 2, activation="softmax")],
                 loss="cross_entropy", dtype="float64", seed=0)

class Started(fn.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            print("STARTED", flush=True)

hist = net.fit(X, y, epochs=100000, batch_size=64, shuffle=False,
               optimizer=fn.SGD(lr=0.01, momentum=0.9), callbacks=[Started()],
               n_threads={n_threads})
print("DONE", hist.interrupted, hist.stop_reason, net.optimizer.step, flush=True)
net.save(sys.argv[1])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
@pytest.mark.parametrize("n_threads", [1, 2])
def test_ctrl_c_stops_after_the_last_batch(tmp_path, n_threads):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(n_threads=n_threads))
    model = tmp_path / "model.fnn"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fn.__file__))] + sys.path))
    proc = subprocess.Popen([sys.executable, str(script), str(model)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The child is training (its first epoch is done): no sleep, so a
        # loaded machine cannot stretch any race; generous timeouts only.
        assert read_line(proc).strip() == "STARTED"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "fastnn: training interrupted in epoch" in err
    done = out.split()
    assert done[:3] == ["DONE", "True", "interrupted"], out
    steps = int(done[3])
    assert steps >= 47   # at least the first epoch of 47 batches

    loaded = fn.load(model)
    assert loaded.optimizer.step == steps
    # the same network trained for exactly that many batches
    replay = fn.Network([fn.Dense(100, 512, activation="tanh"),
                         fn.Dense(512, 2, activation="softmax")],
                        loss="cross_entropy", dtype="float64", seed=0)

    class StopAt(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if self.model.optimizer.step == steps:
                self.model.stop_training = True

    data = np.random.default_rng(0).normal(size=(3000, 100))
    labels = (data[:, :3].sum(axis=1) > 0).astype(int)
    replay.fit(data, labels, epochs=steps // 47 + 1, batch_size=64, shuffle=False,
               optimizer=fn.SGD(lr=0.01, momentum=0.9), callbacks=[StopAt()],
               n_threads=n_threads)
    assert replay.optimizer.step == steps
    assert_same_weights(weights(loaded), weights(replay))
    assert_same_weights(loaded.optimizer._state[0], replay.optimizer._state[0])


# -- resuming ---------------------------------------------------------------------------

RESUME = {"momentum": lambda: fn.SGD(lr=0.05, momentum=0.9),
          "nesterov": lambda: fn.SGD(lr=0.05, momentum=0.9, nesterov=True),
          "adam": lambda: fn.Adam(lr=0.01)}


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("opt", RESUME)
def test_save_load_resumes_training_exactly(tmp_path, dtype, opt, shuffle):
    straight = clf(dtype)
    h = straight.fit(X, LABELS, epochs=4, batch_size=7, shuffle=shuffle,
                     optimizer=RESUME[opt]())
    first = clf(dtype)
    h1 = first.fit(X, LABELS, epochs=2, batch_size=7, shuffle=shuffle, optimizer=RESUME[opt]())
    first.save(tmp_path / "half.fnn")
    resumed = fn.load(tmp_path / "half.fnn")
    h2 = resumed.fit(X, LABELS, epochs=2, batch_size=7, shuffle=shuffle)   # its own optimizer
    assert h1.history["loss"] + h2.history["loss"] == h.history["loss"]
    assert_same_weights(weights(straight), weights(resumed))
    assert resumed.optimizer.step == straight.optimizer.step == 4 * 9
    for a, b in zip(straight.optimizer._state, resumed.optimizer._state):
        assert_same_weights(a, b)


def test_fit_without_optimizer_continues_with_the_networks_own():
    net = clf()
    assert net.optimizer is None
    net.fit(X, LABELS, epochs=1)
    assert type(net.optimizer) is fn.SGD and net.optimizer.lr == 0.01
    adam = fn.Adam(0.01)
    net.fit(X, LABELS, epochs=2, batch_size=10, optimizer=adam)
    assert net.optimizer is adam and adam.step == 12
    net.fit(X, LABELS, epochs=1, batch_size=10)
    assert net.optimizer is adam and adam.step == 18


@pytest.mark.parametrize("shuffle", [False, True])
def test_batch_by_batch_equals_whole_epochs_with_weights_dropout_and_noise(shuffle):
    """Engine calls per batch (batch callbacks) or per epoch train the same bits,
    also when sample weights, dropout and input noise are keyed on the row."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(70, 6)), rng.integers(0, 3, 70)
    w = rng.uniform(0.1, 2.0, 70)

    def train(callbacks):
        net = fn.Network([fn.Dense(6, 9, "tanh", dropout=0.25), fn.Dense(9, 3, "softmax")],
                         loss="cross_entropy", dtype="float64", seed=2)
        net.fit(X, y, epochs=3, batch_size=16, shuffle=shuffle, sample_weight=w,
                input_noise=0.1, l2=1e-3, optimizer=fn.Adam(lr=0.01), callbacks=callbacks)
        return net

    class EveryBatch(fn.Callback):
        wants_batches = True

    assert_same_weights(weights(train(None)), weights(train([EveryBatch()])))


def test_balanced_class_weights_count_only_the_training_rows():
    """With validation_split, "balanced" weighs the classes of the rows trained on."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    y = np.r_[np.zeros(20, int), np.ones(10, int), np.zeros(10, int)]   # held out: all 0

    def train(**kw):
        net = fn.Network([fn.Dense(3, 2, "softmax")], loss="cross_entropy", dtype="float64",
                         seed=0)
        net.fit(X, y, shuffle=False, batch_size=30, optimizer=fn.SGD(lr=0.1), **kw)
        return net.layers[0].W

    from sklearn.utils.class_weight import compute_sample_weight
    expected = train(sample_weight=np.r_[compute_sample_weight("balanced", y[:30]),
                                         np.ones(10)], validation_split=0.25)
    np.testing.assert_array_equal(train(class_weight="balanced", validation_split=0.25),
                                  expected)


def test_fit_refuses_step_and_sign_activations():
    net = fn.Network([fn.Dense(2, 1, "step")], seed=0)
    with pytest.raises(ValueError, match=r"layers\[0\] use 'step'.*fastnn.Perceptron"):
        net.fit(np.zeros((4, 2)), np.zeros((4, 1)))
