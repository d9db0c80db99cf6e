"""predict on a few rows: the serving path (fastnn/_engine_serve.pxi).

``Network.predict`` offers a ready array (the network's dtype, C order, 1-32
finite rows; any valid ``n_threads``: they run on one thread) to one C call that keeps the layer
descriptors and buffers between calls; anything else takes the general
path.  Pinned here:

* the serving path gives the general path's bits (same kernel, same
  products in the same order), for every kernel, dtype, activation and row
  count, and it is really taken (the general path is made to fail);
* what it declines (other dtypes, Fortran order, lists, 33 rows, NaN, wrong
  width, a bad n_threads) goes the general way, with its errors;
* weights written in place or assigned, and activation settings assigned,
  are seen by the next call; copies and pickles of a network that served
  still work;
* a fit in another thread makes it raise as predict always did, while a
  callback of that fit (the training thread) may serve.

Tolerances: none - bit-identical by construction.
"""
import copy
import pickle
import threading

import numpy as np
import pytest

import fastnn as fn

from conftest import ACTS, ACT_PARAM, DTYPES


def _net(dtype, hidden="relu", output="softmax", loss="cross_entropy", sizes=(13, 21, 9, 4)):
    layers = [fn.Dense(sizes[i], sizes[i + 1], hidden, alpha=ACT_PARAM.get(hidden))
              for i in range(len(sizes) - 2)]
    layers.append(fn.Dense(sizes[-2], sizes[-1], output))
    net = fn.Network(layers, loss=loss, dtype=dtype, seed=3)
    for layer in net.layers:
        layer.b = np.random.default_rng(4).normal(size=layer.n_out) * 0.3
    return net


@pytest.fixture
def general_path_fails(monkeypatch):
    """Make the general path raise, so a call that still answers was served."""
    def refuse(self, X, n_threads):
        raise AssertionError("the general path was taken")
    monkeypatch.setattr(fn.Network, "_predict_any", refuse)


@pytest.mark.parametrize("rows", [1, 2, 7, 32])
@pytest.mark.parametrize("hidden", [a for a in ACTS if a != "softmax"])
def test_serving_gives_the_general_paths_bits(kernel, dtype, hidden, rows):
    net = _net(dtype, hidden)
    X = np.random.default_rng(rows).normal(size=(rows, 13)).astype(dtype) * 2
    general = net._predict_any(X, None)
    served = net.predict(X)
    np.testing.assert_array_equal(net.predict(X, n_threads=2), served)
    assert served.dtype == dtype and served.shape == (rows, 4)
    np.testing.assert_array_equal(served, general)


@pytest.mark.parametrize("dtype", DTYPES)
def test_serving_is_taken_for_a_ready_array(dtype, general_path_fails):
    net = _net(dtype)
    X = np.random.default_rng(0).normal(size=(32, 13)).astype(dtype)
    for rows in (1, 5, 32):
        assert net.predict(X[:rows]).shape == (rows, 4)
        assert net.predict(X[:rows], n_threads=1).shape == (rows, 4)
    assert net.predict_proba(X[:1]).shape == (1, 4)


def test_serving_applies_the_losss_prediction(general_path_fails):
    net = _net(np.float64, output="linear", loss="poisson", sizes=(13, 5, 1))
    X = np.random.default_rng(0).normal(size=(3, 13))
    out = net.predict(X)
    z = net.forward(X)[-1]
    np.testing.assert_array_equal(out, np.exp(z))


@pytest.mark.parametrize("make_X", [
    lambda X: X.astype(np.float64),                 # another dtype: converted
    lambda X: np.asfortranarray(X),                 # not C order
    lambda X: X.tolist(),                           # not an array
    lambda X: np.repeat(X, 11, axis=0)[:33],        # more rows than served
], ids=["float64", "fortran", "list", "33-rows"])
def test_what_serving_declines_goes_the_general_way(make_X):
    net = _net(np.float32)
    X = np.random.default_rng(0).normal(size=(3, 13)).astype(np.float32)
    X_given = make_X(X)
    expected = net._predict_any(np.ascontiguousarray(X_given, dtype=np.float32), None)
    np.testing.assert_array_equal(net.predict(X_given), expected)


def test_serving_leaves_the_errors_to_the_general_path():
    net = _net(np.float32)
    X = np.zeros((2, 13), np.float32)
    X[1, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.predict(X)
    with pytest.raises(ValueError, match="13"):
        net.predict(np.zeros((1, 12), np.float32))
    with pytest.raises(ValueError, match="empty"):
        net.predict(np.zeros((0, 13), np.float32))
    with pytest.raises(ValueError, match="n_threads"):
        net.predict(np.zeros((1, 13), np.float32), n_threads=0)


def test_serving_sees_weights_and_settings_changed_between_calls(general_path_fails):
    net = _net(np.float64, hidden="sigmoid")
    X = np.random.default_rng(0).normal(size=(2, 13))
    first = net.predict(X)
    net.layers[0].W[...] *= 2                           # in place
    second = net.predict(X)
    net.layers[1].b = net.layers[1].b + 1               # assigned
    third = net.predict(X)
    net.layers[0].activation = "tanh"                   # a setting
    net.layers[0].steepness = 0.5
    fourth = net.predict(X)
    outputs = [first, second, third, fourth]
    for a, b in zip(outputs, outputs[1:]):
        assert not np.allclose(a, b)
    from fastnn import _reference
    params = ([l.W for l in net.layers], [l.b for l in net.layers],
              [(l.activation, l.alpha, l.steepness, l.flat_spot) for l in net.layers])
    np.testing.assert_allclose(fourth, _reference.forward(*params, X)[-1], rtol=1e-12)


def test_a_network_that_served_copies_and_pickles():
    net = _net(np.float32)
    X = np.random.default_rng(0).normal(size=(4, 13)).astype(np.float32)
    served = net.predict(X)
    for other in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(other.predict(X), served)
        other.layers[0].W[...] = 0                      # its own arrays
        np.testing.assert_array_equal(net.predict(X), served)


def test_serving_during_a_fit_in_another_thread_raises_and_in_its_callback_serves():
    net = _net(np.float32)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 13)).astype(np.float32), rng.integers(0, 4, 64)
    inside, release = threading.Event(), threading.Event()
    served_in_callback = []

    class Hold(fn.Callback):
        def on_epoch_end(self, epoch, logs=None):
            served_in_callback.append(net.predict(X[:1]))   # the training thread
            inside.set()
            release.wait(60)

    fitting = threading.Thread(target=net.fit, args=(X, y),
                               kwargs=dict(epochs=1, callbacks=[Hold()]))
    fitting.start()
    try:
        assert inside.wait(60)
        with pytest.raises(RuntimeError, match="another thread is training"):
            net.predict(X[:1])
    finally:
        release.set()
        fitting.join(60)
    assert not fitting.is_alive()
    assert served_in_callback[0].shape == (1, 4)


def test_work_longer_than_half_a_millisecond_is_not_served(general_path_fails):
    """The serving path holds the GIL: it takes at most about 1e8 flops."""
    net = fn.Network([fn.Dense(8, 3000, "relu"), fn.Dense(3000, 3000, "relu"),
                      fn.Dense(3000, 2)], seed=0)          # 1.8e7 flops per row: 5 rows
    X = np.zeros((6, 8), np.float32)
    assert net.predict(X[:5]).shape == (5, 2)
    with pytest.raises(AssertionError, match="general path"):
        net.predict(X)


def test_serving_follows_a_layer_replaced_in_the_list(general_path_fails):
    """Another Dense object in net.layers (even one deep-copied, whose cached
    engine view is an equal tuple) is read, not the old layer's arrays."""
    net = _net(np.float64)
    X = np.random.default_rng(0).normal(size=(2, 13))
    net.predict(X)
    other = copy.deepcopy(net.layers[0])
    other.W[...] = 0
    other.b = np.zeros(other.n_out)
    net.layers[0] = other
    W = [l.W for l in net.layers]
    b = [l.b for l in net.layers]
    from fastnn import _reference
    acts = [(l.activation, l.alpha, l.steepness, l.flat_spot) for l in net.layers]
    np.testing.assert_allclose(net.predict(X), _reference.forward(W, b, acts, X)[-1], rtol=1e-12)


def test_serving_follows_layers_of_other_sizes_put_in_the_list():
    """Wider layers swapped into net.layers: the scratch grows with them."""
    net = _net(np.float32, sizes=(13, 5, 4))
    X = np.random.default_rng(0).normal(size=(3, 13)).astype(np.float32)
    net.predict(X)
    wide = fn.Network([fn.Dense(13, 300, "relu"), fn.Dense(300, 4, "softmax")], seed=1)
    net.layers[0], net.layers[1] = wide.layers
    np.testing.assert_array_equal(net.predict(X), wide._predict_any(X, None))
