"""FANN's whole training in fastnn against FANN's own library, epoch by
epoch: ``RProp(variant="fann")`` + ``Dense(flat_spot=0.01)`` +
``loss="fann_tanh"`` (+ FANN's steepness) against libfann's
``fann_train_epoch`` with FANN_TRAIN_RPROP (FANN's iRPROP-,
``fann_update_weights_irpropm``), its default tanh error function and its
clipped sigmoid derivative, from the same weights (a FANN .net file written
by fastnn).  Skipped where libfann is not installed (CI installs
libfann-dev).

The networks have two hidden layers (the flat spot and the steepness act on
the hidden deltas too), weights large enough for outputs to leave
[0.01, 0.99] (asserted, so the clip is exercised) and binary targets.

Tolerances: iRPROP- moves each weight by +-its step, so the weights agree
exactly while every gradient has the same sign in both libraries; FANN keeps
its RPROP parameters in float, so fastnn is given the same float values
(1.2f and 0.1f; 0.5, 0 and 50 are exact).  In float64 the sums of the
gradient, taken in other orders, cannot flip a sign here: the weights must
agree to 1e-12 for 40 epochs.  In float32 a near-zero gradient can round to
either sign after some tens of epochs (the trajectories then part, as two
runs of FANN on two machines would), so float32 is held to a few epochs.

Not reproduced: FANN clamps a neuron's sum to +-150/steepness before the
activation, which changes a sigmoid's output only below e^-600 (float32
rounds it to 0 either way); these networks stay far from it.
"""
import ctypes

import numpy as np
import pytest

import fastnn as fn
from fastnn.datasets import save_fann_data
from fastnn.initializers import Uniform
from fastnn.io import read_fann, write_fann

from test_fann import FANN, needs_fann

FANN_TRAIN_RPROP = 2
F32 = lambda v: float(np.float32(v))   # noqa: E731  (FANN's float parameters)


def _libfann(kind):
    lib = FANN[kind]
    if lib is None:
        pytest.skip(f"lib{kind} is not installed")
    lib.fann_read_train_from_file.restype = ctypes.c_void_p
    lib.fann_read_train_from_file.argtypes = [ctypes.c_char_p]
    lib.fann_destroy_train.argtypes = [ctypes.c_void_p]
    lib.fann_set_training_algorithm.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fann_get_train_error_function.argtypes = [ctypes.c_void_p]
    lib.fann_train_epoch.restype = ctypes.c_float
    lib.fann_train_epoch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


def _problem(activation, steepness, dtype, seed=0):
    """A 6-8-5-2 network in FANN's terms (``activation`` with FANN's
    ``steepness`` on every layer), inputs in [0, 1], binary targets."""
    rng = np.random.default_rng(seed)
    scale = 2 * steepness if activation == "sigmoid" else steepness   # fastnn's steepness
    layers = [fn.Dense(a, b, activation, steepness=scale, flat_spot=0.01,
                       init=Uniform(1.5), bias_init=Uniform(1.5))
              for a, b in ((6, 8), (8, 5), (5, 2))]
    net = fn.Network(layers, loss="fann_tanh", dtype=dtype, seed=seed)
    X = rng.uniform(-2, 2, (48, 6)).astype(dtype)
    y = (rng.uniform(0, 1, (48, 2)) < 0.5).astype(dtype)
    if activation == "tanh":
        y = 2 * y - 1
    return net, X, y


def _weights(net):
    return [(layer.W.astype(np.float64), layer.b.astype(np.float64)) for layer in net.layers]


def _fann_trajectory(lib, net, X, y, epochs, tmp_path):
    """FANN's weights after each of ``epochs`` epochs of its RPROP training,
    from ``net``'s weights, and FANN's MSE of each epoch."""
    write_fann(net, tmp_path / "start.net")
    save_fann_data(X, y, tmp_path / "train.data")
    ann = lib.fann_create_from_file(str(tmp_path / "start.net").encode())
    data = lib.fann_read_train_from_file(str(tmp_path / "train.data").encode())
    weights, mse = [], []
    try:
        assert lib.fann_get_train_error_function(ann) == 1      # FANN_ERRORFUNC_TANH
        lib.fann_set_training_algorithm(ann, FANN_TRAIN_RPROP)
        for epoch in range(epochs):
            mse.append(lib.fann_train_epoch(ann, data))
            path = tmp_path / f"epoch{epoch}.net"
            assert lib.fann_save(ann, str(path).encode()) == 0
            weights.append(_weights(read_fann(path, dtype="float64")))
    finally:
        lib.fann_destroy_train(data)
        lib.fann_destroy(ann)
    return weights, np.array(mse)


class Trajectory(fn.Callback):
    """fastnn's weights after each epoch, and FANN's MSE of the network each
    epoch started from (FANN's fann_train_epoch reports that one)."""

    def __init__(self, X, y, symmetric):
        super().__init__()
        self.X, self.y, self.symmetric = X, y, symmetric
        self.weights, self.mse = [], []

    def _mse(self):
        diff = self.model.predict(self.X).astype(np.float64) - self.y
        if self.symmetric:
            diff = diff / 2        # FANN halves the difference of symmetric outputs
        return float(np.mean(diff ** 2))

    def on_train_begin(self, logs=None):
        self.mse.append(self._mse())

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(_weights(self.model))
        self.mse.append(self._mse())


def _fastnn_trajectory(net, X, y, epochs, symmetric):
    record = Trajectory(X, y, symmetric)
    net.fit(X, y, epochs=epochs, shuffle=False, n_threads=1, callbacks=[record],
            optimizer=fn.RProp(variant="fann", increase_factor=F32(1.2),
                               delta_zero=F32(0.1)))
    return record.weights, np.array(record.mse[:-1])


@needs_fann
@pytest.mark.parametrize("dtype, epochs", [("float64", 40), ("float32", 12)])
@pytest.mark.parametrize("activation, steepness", [("sigmoid", 0.5),    # FANN's benchmark
                                                   ("sigmoid", 0.25),
                                                   ("tanh", 0.75)])     # FANN_SIGMOID_SYMMETRIC
def test_fann_training_matches_libfann_epoch_by_epoch(activation, steepness, dtype, epochs,
                                                      tmp_path):
    lib = _libfann("doublefann" if dtype == "float64" else "floatfann")
    net, X, y = _problem(activation, steepness, dtype)
    start = _weights(net)
    theirs, their_mse = _fann_trajectory(lib, net, X, y, epochs, tmp_path)
    ours, our_mse = _fastnn_trajectory(net, X, y, epochs, activation == "tanh")
    tol = 1e-12 if dtype == "float64" else 1e-5
    for epoch, (mine, fanns) in enumerate(zip(ours, theirs)):
        for layer, ((W, b), (FW, Fb)) in enumerate(zip(mine, fanns)):
            np.testing.assert_allclose(W, FW, rtol=tol, atol=tol,
                                       err_msg=f"epoch {epoch + 1}, layer {layer}: W")
            np.testing.assert_allclose(b, Fb, rtol=tol, atol=tol,
                                       err_msg=f"epoch {epoch + 1}, layer {layer}: b")
    # FANN's MSE is a float sum: to its float precision
    np.testing.assert_allclose(our_mse, their_mse, rtol=1e-5)
    assert np.abs(ours[-1][0][0] - start[0][0]).max() > 0.5     # it trained
    lo, hi = (0.01, 0.99) if activation == "sigmoid" else (-0.98, 0.98)
    outputs = np.concatenate([A.ravel() for A in net.forward(X)])
    assert (outputs < lo).any() and (outputs > hi).any()    # into the flat spot
