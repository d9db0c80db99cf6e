"""FANN's training concepts in fastnn, checked against the real FANN where
libfann is installed (through ctypes, as tests/test_fann.py):

* the fann_tanh loss: one epoch of FANN's batch training (FANN_TRAIN_BATCH,
  FANN_ERRORFUNC_TANH) against fastnn's full-batch SGD on the same network,
  in double precision (libdoublefann);
* the bit_fail metric against FANN's ``fann_get_bit_fail`` after
  ``fann_test_data``, at FANN's default limit and another;
* ``fit(max_time=...)`` and initialisers of the biases.

The finite-difference and engine-vs-NumPy checks of fann_tanh are in
test_losses.py, test_gradcheck.py and test_engine_vs_reference.py.

Tolerances: FANN and fastnn compute the same float64 sums in other orders,
and FANN's log((1 + e) / (1 - e)) rounds differently from log1p(u) - log1p(-u):
a few ulps of O(1) gradients, so 1e-12 on weights of order 1.
"""
import ctypes
import time

import numpy as np
import pytest

import fastnn as fn
from fastnn import losses, metrics
from fastnn.datasets import save_fann_data
from fastnn.initializers import Uniform
from fastnn.io import read_fann, write_fann

from test_fann import FANN, needs_fann

FANN_TRAIN_BATCH = 1


def _double_fann():
    lib = FANN["doublefann"]
    if lib is None:
        pytest.skip("libdoublefann is not installed")
    lib.fann_read_train_from_file.restype = ctypes.c_void_p
    lib.fann_read_train_from_file.argtypes = [ctypes.c_char_p]
    lib.fann_destroy_train.argtypes = [ctypes.c_void_p]
    lib.fann_set_training_algorithm.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fann_set_learning_rate.argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.fann_get_train_error_function.argtypes = [ctypes.c_void_p]
    lib.fann_train_epoch.restype = ctypes.c_float
    lib.fann_train_epoch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.fann_test_data.restype = ctypes.c_float
    lib.fann_test_data.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.fann_get_bit_fail.restype = ctypes.c_uint
    lib.fann_get_bit_fail.argtypes = [ctypes.c_void_p]
    lib.fann_set_bit_fail_limit.argtypes = [ctypes.c_void_p, ctypes.c_double]
    return lib


def _problem(out, seed=0):
    """A 3-5-2 float64 network (sigmoid hidden layer, ``out`` output) and
    targets whose errors cover FANN's tanh error function: small, large, and
    for a linear output beyond its clip at |t - o| > 0.9999999."""
    rng = np.random.default_rng(seed)
    net = fn.Network([fn.Dense(3, 5, "sigmoid", init=Uniform(0.5), bias_init=Uniform(0.5)),
                      fn.Dense(5, 2, out, init=Uniform(0.5), bias_init=Uniform(0.5))],
                     loss="fann_tanh", dtype="float64", seed=seed)
    X = rng.normal(size=(32, 3))   # FANN divides its float lr by n: exact for 32
    if out == "sigmoid":
        y = rng.uniform(0, 1, (32, 2))
    elif out == "tanh":
        y = rng.uniform(-1, 1, (32, 2))
    else:
        y = rng.normal(0, 1.2, (32, 2))
    return net, X, y


@needs_fann
@pytest.mark.parametrize("out", ["sigmoid", "tanh", "linear"])
def test_fann_tanh_matches_fanns_batch_training(out, tmp_path):
    lib = _double_fann()
    net, X, y = _problem(out)
    hidden = net.forward(X)[0]
    assert 0.01 < hidden.min() and hidden.max() < 0.99   # FANN's clipped derivative stays out
    if out == "linear":
        assert (np.abs(net.predict(X) - y) > 1).any()      # the clipped error is exercised
    write_fann(net, tmp_path / "net.net")
    save_fann_data(X, y, tmp_path / "train.data")
    ann = lib.fann_create_from_file(str(tmp_path / "net.net").encode())
    data = lib.fann_read_train_from_file(str(tmp_path / "train.data").encode())
    try:
        assert lib.fann_get_train_error_function(ann) == 1      # FANN_ERRORFUNC_TANH
        lib.fann_set_training_algorithm(ann, FANN_TRAIN_BATCH)
        lib.fann_set_learning_rate(ann, 0.5)     # exact in FANN's float learning rate
        lib.fann_train_epoch(ann, data)
        assert lib.fann_save(ann, str(tmp_path / "trained.net").encode()) == 0
    finally:
        lib.fann_destroy_train(data)
        lib.fann_destroy(ann)
    theirs = read_fann(tmp_path / "trained.net", dtype="float64")
    # FANN's batch step: w += lr / n * sum of its slopes, which are minus the
    # gradients of fann_tanh's sum of per-sample losses
    net.fit(X, y, epochs=1, batch_size=len(X), shuffle=False, optimizer=fn.SGD(lr=0.5))
    for ours, their in zip(net.layers, theirs.layers):
        np.testing.assert_allclose(ours.W, their.W, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ours.b, their.b, rtol=1e-12, atol=1e-12)


@needs_fann
@pytest.mark.parametrize("out", ["sigmoid", "tanh", "linear"])
@pytest.mark.parametrize("limit", [None, 0.2])
def test_bit_fail_matches_fann(out, limit, tmp_path):
    lib = _double_fann()
    net, X, y = _problem(out, seed=1)
    write_fann(net, tmp_path / "net.net")
    save_fann_data(X, y, tmp_path / "test.data")
    ann = lib.fann_create_from_file(str(tmp_path / "net.net").encode())
    data = lib.fann_read_train_from_file(str(tmp_path / "test.data").encode())
    try:
        if limit is not None:
            lib.fann_set_bit_fail_limit(ann, limit)
        lib.fann_test_data(ann, data)
        expected = lib.fann_get_bit_fail(ann)
    finally:
        lib.fann_destroy_train(data)
        lib.fann_destroy(ann)
    metric = "bit_fail" if limit is None else metrics.BitFail(limit=limit)
    got = net.evaluate(X, y, metrics=[metric])["bit_fail"]
    assert isinstance(got, int)
    assert 0 < expected < X.shape[0] * 2             # not a degenerate count
    assert got == expected


def test_bit_fail_counts_output_values():
    O = np.array([[0.1, 0.9], [0.5, 0.5], [0.2, 0.64]])
    T = np.array([[0.0, 1.0], [1.0, 0.0], [0.2, 1.0]])
    mse = losses.get("mse")
    # |t - o| >= 0.35: 0.5, 0.5 and 0.36 fail
    assert metrics.get("bit_fail")(mse, "sigmoid", O, T) == 3
    assert metrics.BitFail(limit=0.4)(mse, "sigmoid", O, T) == 2
    # a symmetric output's difference is halved, as FANN does
    assert metrics.get("bit_fail")(mse, "tanh", O, T) == 0
    assert metrics.BitFail(limit=0.25)(mse, "tanh", O, T) == 2


@pytest.mark.parametrize("limit", [0, -1, np.nan, "0.3", True])
def test_bit_fail_limit_is_checked(limit):
    with pytest.raises(ValueError, match="BitFail: limit must be a finite number > 0"):
        metrics.BitFail(limit=limit)


def test_metrics_are_checked():
    net = fn.Network([fn.Dense(2, 1, "sigmoid")], seed=0)
    X, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        net.evaluate(X, y, metrics=["f1"])
    with pytest.raises(ValueError, match="metrics may name 'bit_fail' once"):
        net.fit(X, y, metrics=["bit_fail", metrics.BitFail(0.1)])
    with pytest.raises(TypeError, match="metric must be a string"):
        net.evaluate(X, y, metrics=[3])


def test_bit_fail_in_history_and_evaluate():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, :1] > 0).astype(float)
    net = fn.Network([fn.Dense(3, 4, "tanh"), fn.Dense(4, 1, "sigmoid")], loss="fann_tanh",
                     seed=0)
    hist = net.fit(X[:40], y[:40], epochs=3, optimizer=fn.RProp(),
                   validation_data=(X[40:], y[40:]), metrics=[metrics.BitFail(0.3)])
    assert list(hist.history) == ["loss", "bit_fail", "val_loss", "val_bit_fail"]
    O = net.predict(X.astype(np.float32)).astype(np.float64)
    assert hist["bit_fail"][-1] == int(np.sum(np.abs(y[:40] - O[:40]) >= 0.3))
    assert hist["val_bit_fail"][-1] == int(np.sum(np.abs(y[40:] - O[40:]) >= 0.3))
    assert net.evaluate(X, y, metrics="bit_fail") == {
        "loss": pytest.approx(losses.get("fann_tanh").mean_loss(O, y, "sigmoid"), rel=1e-6),
        "bit_fail": int(np.sum(np.abs(y - O) >= 0.35))}


def test_bit_fail_with_accuracy_of_a_classifier():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 3))
    labels = (X[:, 0] > 0).astype(int)
    net = fn.Network([fn.Dense(3, 2, "softmax")], loss="cross_entropy", seed=0)
    hist = net.fit(X, labels, epochs=2, metrics=["bit_fail", "accuracy"],
                   validation_data=(X, labels))
    assert list(hist.history) == ["loss", "bit_fail", "accuracy", "val_loss", "val_accuracy",
                                  "val_bit_fail", "lr"]
    P = net.predict(X.astype(np.float32)).astype(np.float64)
    assert hist["val_bit_fail"][-1] == int(np.sum(np.abs(np.eye(2)[labels] - P) >= 0.35))


# -- fit(max_time) -------------------------------------------------------------

def test_max_time_stops_between_epochs():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 1))
    net = fn.Network([fn.Dense(3, 1)], seed=0)
    slow = fn.LambdaCallback(on_epoch_end=lambda epoch, logs: time.sleep(0.05))
    hist = net.fit(X, y, epochs=10 ** 6, max_time=0.2, callbacks=[slow])
    assert hist.stop_reason == "max_time"
    # each epoch takes at least 0.05 s: at most ~0.2 / 0.05 + 1 of them
    assert 1 <= len(hist.epoch) <= 5
    hist = net.fit(X, y, epochs=3, max_time=1e9)
    assert hist.stop_reason == "epochs" and len(hist.epoch) == 3
    # the last epoch ends by its count, whatever the clock
    hist = net.fit(X, y, epochs=1, max_time=1e-9)
    assert hist.stop_reason == "epochs" and len(hist.epoch) == 1


@pytest.mark.parametrize("max_time", [0, -1.0, np.inf, "1"])
def test_max_time_is_checked(max_time):
    net = fn.Network([fn.Dense(3, 1)], seed=0)
    with pytest.raises((ValueError, TypeError), match="max_time"):
        net.fit(np.zeros((4, 3)), np.zeros((4, 1)), max_time=max_time)


# -- bias initialisers ---------------------------------------------------------

def test_bias_init_draws_after_the_weights():
    net = fn.Network([fn.Dense(3, 4, init=Uniform(0.1), bias_init=Uniform(0.1)),
                      fn.Dense(4, 2, init="uniform", bias_init="uniform")],
                     dtype="float64", seed=5)
    rng = np.random.default_rng(5)
    W0, b0 = rng.uniform(-0.1, 0.1, (3, 4)), rng.uniform(-0.1, 0.1, (1, 4))
    W1, b1 = rng.uniform(-0.05, 0.05, (4, 2)), rng.uniform(-0.05, 0.05, (1, 2))
    for got, expected in zip([l.W for l in net.layers] + [l.b for l in net.layers],
                             [W0, W1, b0[0], b1[0]]):
        np.testing.assert_array_equal(got, expected)


def test_default_bias_init_keeps_the_seeds_weights():
    a = fn.Network([fn.Dense(3, 4), fn.Dense(4, 2)], seed=3)
    b = fn.Network([fn.Dense(3, 4, bias_init="zeros"), fn.Dense(4, 2, use_bias=False,
                                                               bias_init=Uniform(1.0))], seed=3)
    rng = np.random.default_rng(3)
    lim0, lim1 = np.sqrt(6 / 7), np.sqrt(6 / 6)
    np.testing.assert_array_equal(a.layers[0].W, rng.uniform(-lim0, lim0, (3, 4)).astype("f4"))
    np.testing.assert_array_equal(a.layers[1].W, rng.uniform(-lim1, lim1, (4, 2)).astype("f4"))
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.W, lb.W)
    assert not a.layers[0].b.any() and b.layers[1].b is None


def test_bias_init_is_checked():
    with pytest.raises(ValueError, match="unknown init 'nope'"):
        fn.Dense(2, 3, bias_init="nope")
    with pytest.raises(ValueError, match=r"bias_init returned shape \(2, 3\)"):
        fn.Network([fn.Dense(2, 3, bias_init=lambda rng, i, o: np.zeros((2, o)))])
    with pytest.raises(ValueError, match="Uniform: limit must be"):
        Uniform(-1)
