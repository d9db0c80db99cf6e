"""Weights as users write them: ``layer.W = ...`` and in-place writes reach training.

A max-norm constraint written the way the guide invites - ``layer.W =
np.clip(layer.W, -c, c)`` in a callback - must constrain the weights that
train: the same result, bit for bit, as clipping by hand between fits of one
epoch (or of one batch), and the validation accuracy of a network that
learns.  Assignment copies into the layer's own array (the one the engine
holds); shapes and dtypes are checked with a clear error.

Tolerances: none - the same operations in the same order give the same bits.
"""
import numpy as np
import pytest

import fastnn as fn

from conftest import assert_same_weights, weights

CLIP = 0.2


@pytest.fixture(scope="module")
def digits_split():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return X[:1400], y[:1400], X[1400:], y[1400:]


def _net(dtype=np.float32):
    return fn.Network([fn.Dense(64, 64, activation="relu"),
                       fn.Dense(64, 10, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=0)


def _clip_by_assignment(net):
    for layer in net.layers:
        layer.W = np.clip(layer.W, -CLIP, CLIP)


def _clip_in_place(net):
    for layer in net.layers:
        np.clip(layer.W, -CLIP, CLIP, out=layer.W)


class MaxNorm(fn.Callback):
    def __init__(self, clip, per_batch=False):
        super().__init__()
        self.clip, self.wants_batches = clip, per_batch

    def on_epoch_end(self, epoch, logs):
        if not self.wants_batches:
            self.clip(self.model)

    def on_batch_end(self, batch, logs):
        self.clip(self.model)


@pytest.mark.parametrize("clip", [_clip_by_assignment, _clip_in_place],
                         ids=["assignment", "in-place"])
def test_max_norm_in_on_epoch_end_equals_clipping_between_fits(digits_split, clip, dtype):
    X, y, X_val, y_val = digits_split
    epochs = 4
    in_callback = _net(dtype)
    hist = in_callback.fit(X, y, epochs=epochs, batch_size=32,
                           optimizer=fn.SGD(lr=0.1, momentum=0.9),
                           validation_data=(X_val, y_val), callbacks=[MaxNorm(clip)])
    by_hand = _net(dtype)
    optimizer = fn.SGD(lr=0.1, momentum=0.9)
    val_accuracy = []
    for _ in range(epochs):
        by_hand.fit(X, y, epochs=1, batch_size=32, optimizer=optimizer)
        val_accuracy.append(by_hand.evaluate(X_val, y_val)["accuracy"])   # before on_epoch_end
        _clip_by_assignment(by_hand)
    assert_same_weights(weights(in_callback), weights(by_hand))
    assert all(np.abs(l.W).max() <= CLIP for l in in_callback.layers)
    assert any((np.abs(l.W) == l.W.dtype.type(CLIP)).any() for l in in_callback.layers), \
        "the constraint never bit: choose a smaller CLIP"
    # each epoch's validation saw the weights trained from the clipped ones ...
    assert hist.history["val_accuracy"] == val_accuracy
    # ... and the clipped network learns digits (detached, it stayed near 0.5)
    assert min(hist.history["val_accuracy"][1:]) > 0.8
    assert in_callback.evaluate(X_val, y_val)["accuracy"] > 0.85


@pytest.mark.parametrize("clip", [_clip_by_assignment, _clip_in_place],
                         ids=["assignment", "in-place"])
def test_max_norm_in_on_batch_end_equals_clipping_between_batches(digits_split, clip):
    X, y = digits_split[0][:320], digits_split[1][:320]
    in_callback = _net()
    in_callback.fit(X, y, epochs=2, batch_size=64, shuffle=False,
                    optimizer=fn.SGD(lr=0.1, momentum=0.9),
                    callbacks=[MaxNorm(clip, per_batch=True)])
    by_hand = _net()
    optimizer = fn.SGD(lr=0.1, momentum=0.9)
    for _ in range(2):
        for start in range(0, 320, 64):
            by_hand.fit(X[start:start + 64], y[start:start + 64], epochs=1, batch_size=64,
                        shuffle=False, optimizer=optimizer)
            _clip_by_assignment(by_hand)
    assert_same_weights(weights(in_callback), weights(by_hand))


def test_assignment_between_calls_reaches_the_next_fit_and_keeps_references():
    net = _net()
    live = net.layers[0].W
    net.layers[0].W = np.full((64, 64), 0.01)     # float64: converted, copied in place
    assert net.layers[0].W is live and live.dtype == np.float32 and (live == 0.01).all()
    net.layers[1].b = np.arange(10)
    assert net.layers[1].b.dtype == np.float32
    X = np.random.default_rng(0).random((50, 64))
    y = np.arange(50) % 10
    net.fit(X, y, epochs=1, optimizer=fn.SGD(lr=0.1))
    assert not (live == np.float32(0.01)).all(), "fit did not train the layer's array"


def test_assignment_errors_name_expected_and_received():
    net = _net()
    layer = net.layers[0]
    with pytest.raises(ValueError, match=r"Dense.W must have shape \(64, 64\), got \(64, 10\)"):
        layer.W = np.zeros((64, 10))
    with pytest.raises(TypeError, match="Dense.W must hold real numbers, got an array of dtype"):
        layer.W = np.full((64, 64), "x")
    with pytest.raises(ValueError, match="Dense.b contains NaN or infinity"):
        layer.b = np.full(64, np.nan)
    with pytest.raises(ValueError, match="Dense.W has values too large for float32"):
        layer.W = np.full((64, 64), 1e300)
    with pytest.raises(ValueError, match="once the layer is part of a Network"):
        fn.Dense(3, 2).W = np.zeros((3, 2))
    assert np.isfinite(layer.W).all() and np.isfinite(layer.b).all()   # untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parameters_start_on_a_cache_line_however_the_network_was_made(tmp_path, dtype):
    """The kernels' vector loads are a cache line wide: every way of making a
    network (built, copied, unpickled, loaded, assigned to) keeps W and b on
    a 64-byte boundary, with their values."""
    import copy
    import pickle
    net = fn.Network([fn.Dense(7, 33, "relu"), fn.Dense(33, 3, "softmax")], dtype=dtype,
                     seed=0)
    net.layers[0].W = np.arange(7 * 33, dtype=np.float64).reshape(7, 33) / 100
    net.save(tmp_path / "m.fnn")
    made = [net, copy.deepcopy(net), pickle.loads(pickle.dumps(net)),
            fn.load(tmp_path / "m.fnn")]
    for other in made:
        for layer, original in zip(other.layers, net.layers):
            for name in ("W", "b"):
                arr = getattr(layer, name)
                assert arr.ctypes.data % 64 == 0
                assert arr.flags.c_contiguous and arr.flags.writeable
                assert arr.dtype == dtype
                np.testing.assert_array_equal(arr, getattr(original, name))


@pytest.mark.parametrize("setting, value", [("activation", "tanh"), ("steepness", 2.0),
                                            ("alpha", 0.3), ("flat_spot", 0.2)])
def test_a_setting_assigned_after_building_reaches_the_engine(setting, value):
    """The engine's view of a layer's activation is cached; assigning any
    setting it is made from must be seen by the next call (flat_spot changes
    only the derivative: the gradients)."""
    from fastnn import _reference
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(9, 4)) * 3, rng.normal(size=(9, 2))
    net = fn.Network([fn.Dense(4, 6, "leaky_relu" if setting == "alpha" else "sigmoid"),
                      fn.Dense(6, 2)], dtype=np.float64, seed=0)

    def engine_and_reference():
        params = ([l.W for l in net.layers], [l.b for l in net.layers],
                  [(l.activation, l.alpha, l.steepness, l.flat_spot) for l in net.layers])
        if setting == "flat_spot":
            return (net.gradients(X, y)[0][0],
                    _reference.gradients(*params, "mse", X, y)[1][0][0])
        return net.predict(X), _reference.forward(*params, X)[-1]

    before, _ = engine_and_reference()
    setattr(net.layers[0], setting, value)
    after, expected = engine_and_reference()
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected, rtol=1e-10, atol=1e-12)
