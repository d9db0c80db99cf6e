"""Callbacks (fastnn.callbacks) and the parts of fit they drive.

Covers: the order and arguments of every hook, params and the epoch logs;
batch callbacks (indices, sizes, the batch loss against the loss of the
untrained network on that batch) and that driving the engine batch by
batch trains bit-identically to whole epochs (shuffled or not, SGD with
momentum and Adam, float32 and float64, a last partial batch); stopping
through ``model.stop_training`` from an epoch, from a batch (the weights are
those of exactly the batches run) and before the first epoch;
EarlyStopping's patience, min_delta and mode against sequences worked out
by hand, in fit with restore_best_weights (the weights of the best epoch,
also when training was not stopped); validation_split (the last rows,
bit-identical to passing them as validation_data); Ctrl-C landing in Python
between engine calls; errors raised before the weights change.

Tolerances: the batch loss is compared with ``evaluate`` (a different
summation order) within 1e-12 relative in float64; everything else bit for
bit.
"""
import types

import numpy as np
import pytest

import fastnn as fn

from conftest import assert_same_weights, weights

rng = np.random.default_rng(3)
X = rng.normal(size=(45, 4))
LABELS = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
Y = np.eye(3)[LABELS]


def clf(dtype=np.float64, seed=0):
    return fn.Network([fn.Dense(4, 6, activation="tanh"),
                       fn.Dense(6, 3, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=seed)


class Recorder(fn.Callback):
    def __init__(self, batches=False):
        super().__init__()
        self.wants_batches = batches
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, dict(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, dict(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def test_hook_order_params_and_logs():
    rec = Recorder()
    net = clf()
    hist = net.fit(X, LABELS, epochs=2, batch_size=10, optimizer=fn.SGD(lr=0.1),
                   validation_data=(X[:9], LABELS[:9]), callbacks=[rec])
    names = [c[:2] if c[0] != "train_begin" and c[0] != "train_end" else c for c in rec.calls]
    assert names == [("train_begin",), ("epoch_begin", 0), ("epoch_end", 0),
                     ("epoch_begin", 1), ("epoch_end", 1), ("train_end",)]
    assert rec.model is net
    assert rec.params == {"epochs": 2, "batch_size": 10, "n_samples": 45, "steps": 5,
                          "verbose": 0, "do_validation": True,
                          "metrics": ["loss", "val_loss", "val_accuracy", "lr"]}
    for epoch in (0, 1):
        logs = rec.calls[2 + 2 * epoch][2]
        assert list(logs) == rec.params["metrics"]
        assert logs == {k: v[epoch] for k, v in hist.history.items()}


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_batch_callbacks_train_like_whole_epochs(dtype, shuffle, opt):
    make = {"momentum": lambda: fn.SGD(lr=0.05, momentum=0.9), "adam": lambda: fn.Adam(0.01)}
    whole, by_batch = clf(dtype), clf(dtype)
    h1 = whole.fit(X, LABELS, epochs=3, batch_size=8, shuffle=shuffle, optimizer=make[opt]())
    rec = Recorder(batches=True)
    h2 = by_batch.fit(X, LABELS, epochs=3, batch_size=8, shuffle=shuffle,
                      optimizer=make[opt](), callbacks=[rec])
    assert_same_weights(weights(whole), weights(by_batch))
    assert h1.history["loss"] == h2.history["loss"]
    assert whole.optimizer.step == by_batch.optimizer.step == 3 * 6
    batches = [c for c in rec.calls if c[0] == "batch_end"]
    assert [c[1] for c in batches] == list(range(6)) * 3
    assert [c[2]["size"] for c in batches] == [8, 8, 8, 8, 8, 5] * 3


def test_batch_loss_is_the_loss_before_the_update():
    net = clf()
    expected = [net.evaluate(X[i:i + 10], LABELS[i:i + 10])["loss"] for i in (0,)]
    seen = []
    cb = fn.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(logs["loss"]))
    assert cb.wants_batches
    hist = net.fit(X, LABELS, epochs=1, batch_size=10, shuffle=False,
                   optimizer=fn.SGD(lr=0.1), callbacks=[cb])
    assert len(seen) == 5
    assert seen[0] == pytest.approx(expected[0], rel=1e-12)
    sizes = [10, 10, 10, 10, 5]
    assert np.dot(seen, sizes) / 45 == pytest.approx(hist.history["loss"][0], rel=1e-12)


def test_stop_from_epoch_end():
    def stop_after_two(epoch, logs):
        if epoch == 1:
            net.stop_training = True

    net = clf()
    hist = net.fit(X, LABELS, epochs=10, optimizer=fn.SGD(lr=0.1),
                   callbacks=[fn.LambdaCallback(on_epoch_end=stop_after_two)])
    assert hist.epoch == [0, 1]
    assert hist.stop_reason == "stop_training" and not hist.interrupted
    # the flag is reset by the next fit
    assert len(net.fit(X, LABELS, epochs=3).epoch) == 3


def test_stop_from_a_batch_keeps_exactly_the_batches_run(dtype):
    class StopAfter(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if batch == 3:
                self.model.stop_training = True

    net = clf(dtype)
    hist = net.fit(X, LABELS, epochs=5, batch_size=7, shuffle=False,
                   optimizer=fn.SGD(lr=0.1, momentum=0.5), callbacks=[StopAfter()])
    assert hist.epoch == [0] and hist.stop_reason == "stop_training"
    assert net.optimizer.step == 4
    # the epoch is recorded as it is: the mean loss of the 28 rows trained on
    ref = clf(dtype)
    ref_hist = ref.fit(X[:28], LABELS[:28], epochs=1, batch_size=7, shuffle=False,
                       optimizer=fn.SGD(lr=0.1, momentum=0.5))
    assert hist.history["loss"] == ref_hist.history["loss"]
    assert_same_weights(weights(net), weights(ref))


def test_stop_before_the_first_epoch():
    net = clf()
    before = weights(net)
    cb = fn.LambdaCallback(on_train_begin=lambda logs: setattr(net, "stop_training", True))
    hist = net.fit(X, LABELS, epochs=3, optimizer=fn.SGD(lr=0.1), callbacks=[cb])
    assert hist.epoch == [] and hist.stop_reason == "stop_training"
    assert_same_weights(before, weights(net))


# -- EarlyStopping ----------------------------------------------------------------

def drive(callback, values, monitor="val_loss"):
    """Epochs stopped after, and the callback, for a sequence of monitored values."""
    model = types.SimpleNamespace(stop_training=False, layers=[])
    callback.set_model(model)
    callback.set_params({"metrics": ["loss", "val_loss", "val_accuracy"],
                         "do_validation": True})
    callback.on_train_begin({})
    for epoch, value in enumerate(values):
        callback.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            return epoch
    return None


@pytest.mark.parametrize("patience,stopped,best_epoch", [
    (0, 2, 1), (1, 2, 1), (2, 3, 1), (3, 7, 4), (5, None, 4)])
def test_early_stopping_patience(patience, stopped, best_epoch):
    values = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.72, 0.71]
    # improvements at epochs 0, 1, 4; then none
    es = fn.EarlyStopping(patience=patience)
    assert drive(es, values) == stopped
    assert es.stopped_epoch == stopped
    assert es.best_epoch == best_epoch
    assert es.best == values[best_epoch]


def test_early_stopping_min_delta_and_mode():
    # min_delta 0.05: 0.8 improves on 1.0, 0.78 and 0.76 do not beat 0.75
    es = fn.EarlyStopping(min_delta=0.05, patience=2)
    assert drive(es, [1.0, 0.8, 0.78, 0.76, 0.5]) == 3
    assert es.best == 0.8
    # accuracies: larger is better ("auto" reads "acc" in the name)
    es = fn.EarlyStopping(monitor="val_accuracy", patience=1)
    assert drive(es, [0.5, 0.7, 0.7, 0.9], monitor="val_accuracy") == 2
    es = fn.EarlyStopping(monitor="val_loss", mode="max", patience=1)
    assert drive(es, [0.5, 0.7, 0.6, 0.9]) == 2


def _diverging_validation_fit(net, callbacks, epochs=10):
    # trained on Y, validated on the opposite labels: val_loss only grows
    wrong = (LABELS + 1) % 3
    snapshots = []
    record = fn.LambdaCallback(on_epoch_end=lambda e, logs: snapshots.append(weights(net)))
    hist = net.fit(X, LABELS, epochs=epochs, batch_size=9, optimizer=fn.SGD(lr=0.2),
                   validation_data=(X, wrong), callbacks=[record] + callbacks)
    return hist, snapshots


def test_early_stopping_in_fit_restores_the_best_weights():
    net = clf()
    es = fn.EarlyStopping(patience=2, restore_best_weights=True)
    hist, snapshots = _diverging_validation_fit(net, [es])
    val = hist.history["val_loss"]
    assert all(b > a for a, b in zip(val, val[1:])), "the setup should make val_loss grow"
    assert hist.epoch == [0, 1, 2] and hist.stop_reason == "stop_training"
    assert es.best_epoch == 0 and es.stopped_epoch == 2
    assert_same_weights(weights(net), snapshots[0])


def test_early_stopping_without_restore_keeps_the_last_weights():
    net = clf()
    hist, snapshots = _diverging_validation_fit(net, [fn.EarlyStopping(patience=1)])
    assert len(hist.epoch) == 2
    assert_same_weights(weights(net), snapshots[-1])


def test_restore_best_weights_also_when_not_stopped():
    net = clf()
    es = fn.EarlyStopping(patience=100, restore_best_weights=True)
    hist, snapshots = _diverging_validation_fit(net, [es], epochs=4)
    assert len(hist.epoch) == 4 and es.stopped_epoch is None
    assert_same_weights(weights(net), snapshots[0])


def test_early_stopping_on_training_loss_with_target_loss_kept():
    net = clf()
    hist = net.fit(X, LABELS, epochs=500, optimizer=fn.SGD(lr=0.5, momentum=0.9),
                   target_loss=0.2, callbacks=[fn.EarlyStopping(monitor="loss", patience=5)])
    assert hist.stop_reason == "target_loss"
    assert hist.history["loss"][-1] <= 0.2 < min(hist.history["loss"][:-1])


# -- validation_split ---------------------------------------------------------------

def test_validation_split_takes_the_last_rows(dtype):
    a, b = clf(dtype), clf(dtype)
    ha = a.fit(X, LABELS, epochs=3, batch_size=8, optimizer=fn.SGD(lr=0.1),
               validation_split=0.2)
    hb = b.fit(X[:36], LABELS[:36], epochs=3, batch_size=8, optimizer=fn.SGD(lr=0.1),
               validation_data=(X[36:], LABELS[36:]))
    assert ha.history == hb.history
    assert_same_weights(weights(a), weights(b))


def test_validation_split_sizes():
    net = clf()
    seen = []

    class Spy(fn.Callback):
        def on_train_begin(self, logs=None):
            seen.append(self.params["n_samples"])

    net.fit(X, LABELS, validation_split=0.5, callbacks=[Spy()])
    assert seen == [22]   # round(22.5) = 22 rows train (as Keras rounds), 23 validate


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(validation_split=0.2, validation_data=(X, LABELS)), ValueError,
     "pass validation_data or validation_split, not both"),
    (dict(validation_split=0), ValueError, "validation_split must be a finite number > 0"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be in \(0, 1\), got 1.0"),
    (dict(validation_split=0.001), ValueError,
     "validation_split=0.001 of 45 samples leaves 45 for training and 0 for validation"),
    (dict(validation_split="0.1"), TypeError, "validation_split must be a real number"),
    (dict(callbacks=[print]), TypeError, r"callbacks\[0\] must be a fastnn Callback"),
    (dict(callbacks=3), TypeError, "callbacks must be a list of fastnn Callback objects"),
    (dict(callbacks=[fn.EarlyStopping()]), ValueError,
     r"EarlyStopping: monitor='val_loss' is not computed by this fit \(pass validation_data"),
    (dict(callbacks=[fn.EarlyStopping(monitor="accuracy")], validation_split=0.2), ValueError,
     r"monitor='accuracy' is not computed by this fit; available: \['loss', 'val_loss'"),
    (dict(verbose=3), ValueError, "verbose must be 0, 1 or 2, got 3"),
    (dict(metrics=["f1"]), ValueError, "unknown metric 'f1'"),
])
def test_bad_arguments_leave_the_network_unchanged(kwargs, exc, msg):
    net = clf()
    before = weights(net)
    with pytest.raises(exc, match=msg):
        net.fit(X, LABELS, epochs=2, optimizer=fn.SGD(lr=0.1), **kwargs)
    assert_same_weights(before, weights(net))
    assert net.optimizer is None


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: fn.EarlyStopping(patience=-1), ValueError, "patience must be a non-negative"),
    (lambda: fn.EarlyStopping(patience=1.5), TypeError, "patience must be a non-negative"),
    (lambda: fn.EarlyStopping(min_delta=-0.1), ValueError, "min_delta must be a finite"),
    (lambda: fn.EarlyStopping(monitor=3), TypeError, "monitor must be a string"),
    (lambda: fn.EarlyStopping(mode="best"), ValueError, "mode must be 'auto', 'min' or"),
    (lambda: fn.LambdaCallback(on_epoch_end=3), TypeError, "on_epoch_end must be callable"),
])
def test_bad_callback_arguments(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_metrics_accuracy_needs_classification():
    reg = fn.Network([fn.Dense(4, 2)], seed=0)
    with pytest.raises(ValueError, match=r"metrics=\['accuracy'\] needs a classification"):
        reg.fit(X, Y[:, :2], metrics=["accuracy"])


# -- Ctrl-C outside the engine ----------------------------------------------------------

def test_keyboard_interrupt_between_engine_calls(capsys):
    class CtrlC(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt

    ended = []
    net = clf()
    hist = net.fit(X, LABELS, epochs=4, batch_size=10, shuffle=False,
                   optimizer=fn.Adam(0.01),
                   callbacks=[CtrlC(), fn.LambdaCallback(on_train_end=ended.append)])
    assert hist.interrupted and hist.stop_reason == "interrupted"
    assert hist.epoch == [] and ended == [{}]
    assert "training interrupted in epoch 1 after 3 batches" in capsys.readouterr().err
    assert net.optimizer.step == 3
    ref = clf()
    ref.fit(X[:30], LABELS[:30], epochs=1, batch_size=10, shuffle=False,
            optimizer=fn.Adam(0.01))
    assert_same_weights(weights(net), weights(ref))
