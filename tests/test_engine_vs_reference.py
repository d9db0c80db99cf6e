"""The engine's training pieces against fastnn._reference, for every kernel.

Covers, for float32 and float64, 1 and 2 threads and every available kernel:
``Network.forward`` / ``predict`` vs ``_reference.forward``;
``Network.gradients`` vs ``_reference.gradients``; one epoch of plain SGD
(``fit(epochs=1, shuffle=False, optimizer=SGD(lr))``, batch sizes 1, 7 and
larger than n) vs ``_reference.sgd_epoch``; and (float64) several steps of
SGD with momentum, with Nesterov momentum and of Adam vs loops over
``_reference.momentum_update`` / ``adam_update``.  Architectures use odd
shapes: 1 feature, 1 output, a batch of 1 row, widths that are not multiples
of 8/16, layers wider than the 128 tile, a layer without bias.

Tolerances: the reference runs in float64 from the very same parameters, and
every engine value must lie within the first-order rounding-error bound of
conftest.forward_bound / gradient_bound (built from rtol(K) = 4 sqrt(K+1) eps
of the engine's dtype and the activations' Lipschitz constants).  Training
sums those bounds over the steps (lr * gradient bound, plus the rounding of
the parameter update itself, and for Adam the sensitivity of
m_hat / (sqrt(v_hat) + eps) to its gradient); the first-order sum ignores how
the dynamics (I - lr H) carry an earlier error forward, for which a factor
AMPLIFY = 2 is allowed (lr * ||H|| * steps stays well below 1 here).
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine
from fastnn import _reference as ref

from conftest import (OWN_KERNELS, assert_within, eps, forward_bound, gradient_bound, make_net, params64,
                      random_targets, rtol, targets)

AMPLIFY = 2.0

ARCHS = {
    # name: (sizes, activations, loss, use_bias)
    "1in-1out": ((1, 5, 1), ("tanh", "linear"), "mse", True),
    "wide-softmax": ((13, 150, 7, 3), ("relu", "sigmoid", "softmax"), "cross_entropy", True),
    "nobias-bce": ((9, 17, 33, 2), ("leaky_relu", "elu", "sigmoid"), "binary_cross_entropy",
                   (True, False, True)),
    "softplus-mse-softmax": ((6, 131, 5), ("softplus", "softmax"), "mse", True),
    "poisson": ((5, 23, 2), ("tanh", "linear"), "poisson", True),
    "fann-tanh": ((7, 19, 3), ("sigmoid", "tanh"), "fann_tanh", True),
    # derivatives from the kept activation inputs, also on the output layer
    "silu-gelu-mse": ((7, 40, 19, 3), ("silu", "gelu", "gelu"), "mse", True),
}
# FANN's steepness and flat spot: name: (sizes, activations, loss, steepness, flat_spot)
STEEP_ARCHS = {
    "fann-tanh-sigmoid": ((6, 30, 4), ("tanh", "sigmoid"), "mse", (3.0, 1.7), (0.01, 0.01)),
    "steep-silu-softmax": ((5, 20, 4), ("silu", "softmax"), "cross_entropy", (0.6, 1.3),
                           (0.0, 0.0)),
    "steep-relu-bce": ((5, 18, 3), ("relu", "sigmoid"), "binary_cross_entropy", (2.0, 0.5),
                       (0.0, 0.0)),
}
ARCHS.update({k: (sizes, acts, loss, True) for k, (sizes, acts, loss, _, _)
              in STEEP_ARCHS.items()})


def _net(arch, dtype, seed=0):
    sizes, acts, loss, use_bias = ARCHS[arch]
    steepness, flat_spot = STEEP_ARCHS.get(arch, (None,) * 5)[3:]
    return make_net(sizes, acts, loss=loss, dtype=dtype, seed=seed, use_bias=use_bias,
                    steepness=steepness, flat_spot=flat_spot)


def _data(arch, n, seed=1):
    sizes, _, loss, _ = ARCHS[arch]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    return X, random_targets(rng, loss, n, sizes[-1])


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n", [1, 300])       # 300 rows: two inference chunks of 256
def test_forward_and_predict(kernel, dtype, arch, n, n_threads):
    net = _net(arch, dtype)
    X, _ = _data(arch, n)
    Xd = X.astype(dtype)
    W, b, acts = params64(net)
    expected, bounds = forward_bound(W, b, acts, Xd.astype(np.float64), dtype)
    outs = net.forward(Xd, n_threads=n_threads)
    assert len(outs) == len(net.layers)
    for l, (out, exp, bound) in enumerate(zip(outs, expected, bounds)):
        assert out.dtype == dtype
        assert_within(out, exp, bound, f"forward layer {l}")
    pred = net.predict(Xd, n_threads=n_threads)
    assert pred.dtype == dtype and pred.shape == (n, net.n_outputs)
    # the prediction is the loss's: exp(z) for poisson, the output itself otherwise
    np.testing.assert_array_equal(pred, net.loss_function.predict(outs[-1].copy()))
    # any thread count gives the same bits
    np.testing.assert_array_equal(pred, net.predict(Xd, n_threads=3 - n_threads))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("n", [1, 37, 150])   # 150 rows: two tiles of rows
def test_gradients(kernel, dtype, arch, n, n_threads):
    net = _net(arch, dtype)
    X, y = _data(arch, n)
    Xd = X.astype(dtype)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    before = [l.W.copy() for l in net.layers]
    grads = net.gradients(Xd, y, n_threads=n_threads)
    _, ref_grads, bounds = gradient_bound(W, b, acts, net.loss, Xd.astype(np.float64), T, dtype)
    assert len(grads) == len(net.layers)
    for l, ((dW, db), (rW, rb), (EW, Eb)) in enumerate(zip(grads, ref_grads, bounds)):
        assert dW.dtype == dtype and dW.shape == W[l].shape
        assert_within(dW, rW, EW, f"dW[{l}]")
        if rb is None:
            assert db is None
        else:
            assert db.dtype == dtype
            assert_within(db, rb, Eb, f"db[{l}]")
    for l, layer in enumerate(net.layers):       # gradients() does not train
        np.testing.assert_array_equal(layer.W, before[l])
    again = net.gradients(Xd, y, n_threads=3 - n_threads)
    for (dW, db), (dW2, db2) in zip(grads, again):
        np.testing.assert_array_equal(dW, dW2)
        if db is not None:
            np.testing.assert_array_equal(db, db2)


def _batches(n, batch_size):
    return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def _train_bound(W, b, acts, loss, X, T, batch_size, dtype, steps, update_bound):
    """Sum over the steps of the bound on each parameter's update error.

    ``steps(grads)`` applies the reference update to (W, b) in place;
    ``update_bound(l, which, E_grad, param)`` is the update's error bound.
    """
    W, b = [w.copy() for w in W], [None if v is None else v.copy() for v in b]
    BW = [np.zeros_like(w) for w in W]
    Bb = [None if v is None else np.zeros_like(v) for v in b]
    for idx in _batches(len(X), batch_size):
        _, grads, bounds = gradient_bound(W, b, acts, loss, X[idx], T[idx], dtype)
        for l, (EW, Eb) in enumerate(bounds):
            BW[l] += update_bound(l, "W", EW, W[l], grads[l][0], len(idx))
            if Eb is not None:
                Bb[l] += update_bound(l, "b", Eb, b[l], grads[l][1], len(idx))
        steps(W, b, grads)
    return BW, Bb


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", ["1in-1out", "wide-softmax", "nobias-bce"])
@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_sgd_epoch(kernel, dtype, arch, batch_size, n_threads):
    n, lr = 40, 0.05
    net = _net(arch, dtype)
    X, y = _data(arch, n)
    Xd = X.astype(dtype)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    X64 = Xd.astype(np.float64)
    Wr, br = [w.copy() for w in W], [None if v is None else v.copy() for v in b]
    ref_loss = ref.sgd_epoch(Wr, br, acts, net.loss, X64, T, batch_size, lr)
    e = eps(dtype)

    def steps(Ws, bs, grads):
        for l, (dW, db) in enumerate(grads):
            Ws[l] -= lr * dW
            if db is not None:
                bs[l] -= lr * db

    def update_bound(l, which, E, P, G, rows):
        # lr * gradient error, plus the rounding of P - lr * G in the engine's dtype
        return lr * E + rtol(dtype, rows) * (np.abs(P) + lr * np.abs(G)) + e * np.abs(P)

    BW, Bb = _train_bound(W, b, acts, net.loss, X64, T, min(batch_size, n), dtype,
                          steps, update_bound)
    hist = net.fit(Xd, y, epochs=1, batch_size=batch_size, shuffle=False,
                   optimizer=fn.SGD(lr=lr), n_threads=n_threads)
    for l, layer in enumerate(net.layers):
        assert layer.W.dtype == dtype
        assert_within(layer.W, Wr[l], AMPLIFY * BW[l], f"W[{l}] after one epoch")
        if br[l] is not None:
            assert_within(layer.b, br[l], AMPLIFY * Bb[l], f"b[{l}] after one epoch")
        else:
            assert layer.b is None
    # the reported loss is the mean of the per-batch losses, taken before each update
    assert hist.history["loss"][0] == pytest.approx(ref_loss, rel=100 * e, abs=100 * e)


OPTIMIZERS = {
    "momentum": lambda: fn.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: fn.SGD(lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda: fn.Adam(lr=0.01),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", ["wide-softmax", "nobias-bce"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_optimizer_steps_float64(kernel, opt, arch, n_threads):
    dtype = np.float64
    n, batch_size, epochs = 30, 7, 2          # 5 steps per epoch, 10 in all
    net = _net(arch, dtype)
    X, y = _data(arch, n)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    optimizer = OPTIMIZERS[opt]()
    e = eps(dtype)

    # reference: the same minibatches, in order, epoch after epoch
    Wr, br = [w.copy() for w in W], [None if v is None else v.copy() for v in b]
    params = [[Wr[l], br[l]] for l in range(len(Wr))]
    s1 = [[np.zeros_like(p) if p is not None else None for p in pl] for pl in params]
    s2 = [[np.zeros_like(p) if p is not None else None for p in pl] for pl in params]
    bounds = [[np.zeros_like(p) if p is not None else None for p in pl] for pl in params]
    step = 0
    for _ in range(epochs):
        for idx in _batches(n, batch_size):
            step += 1
            cur_W = [pl[0] for pl in params]
            cur_b = [pl[1] for pl in params]
            _, grads, gb = gradient_bound(cur_W, cur_b, acts, net.loss, X[idx], T[idx], dtype)
            for l in range(len(params)):
                for i in range(2):
                    P, G, E = params[l][i], grads[l][i], gb[l][i]
                    if P is None:
                        continue
                    if opt == "adam":
                        P, s1[l][i], s2[l][i] = ref.adam_update(
                            P, G, s1[l][i], s2[l][i], step, optimizer.lr,
                            optimizer.beta1, optimizer.beta2, optimizer.eps)
                        v_hat = s2[l][i] / (1 - optimizer.beta2 ** step)
                        # |d update / d g| <= lr * 3 / (sqrt(v_hat) + eps) per unit of g error
                        du = 3 * optimizer.lr * E / (np.sqrt(v_hat) + optimizer.eps)
                    else:
                        P, s1[l][i] = ref.momentum_update(
                            P, G, s1[l][i], optimizer.lr, optimizer.momentum,
                            nesterov=optimizer.nesterov)
                        # an error in g reaches P through every later step of v
                        du = optimizer.lr * E * (1 + optimizer.momentum) / (1 - optimizer.momentum)
                    bounds[l][i] += du + 4 * e * (np.abs(P) + np.abs(s1[l][i]))
                    params[l][i] = P

    for _ in range(epochs):   # one fit per epoch: optimizer state must carry over
        net.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False, optimizer=optimizer,
                n_threads=n_threads)
    assert optimizer.step == step
    for l, layer in enumerate(net.layers):
        assert_within(layer.W, params[l][0], AMPLIFY * bounds[l][0], f"{opt} W[{l}]")
        if params[l][1] is not None:
            assert_within(layer.b, params[l][1], AMPLIFY * bounds[l][1], f"{opt} b[{l}]")


@pytest.mark.parametrize("own_kernel", OWN_KERNELS)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_predict_row_does_not_depend_on_the_batch(own_kernel, dtype, n_threads, monkeypatch):
    """fnn_gemm.h's contract seen from the API: a row's output depends only on
    that row, not on how many other rows are predicted with it."""
    monkeypatch.setattr(fn._config, "_kernel", own_kernel)
    net = _net("wide-softmax", dtype)
    X, _ = _data("wide-softmax", 300)
    Xd = X.astype(dtype)
    full = net.predict(Xd, n_threads=n_threads)
    for rows in (slice(0, 1), slice(5, 6), slice(17, 50), slice(260, 300)):
        np.testing.assert_array_equal(net.predict(Xd[rows], n_threads=n_threads), full[rows],
                                      err_msg=f"rows {rows}")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_predict_wide_layers_many_chunks(kernel, dtype, n_threads):
    """Inference over several chunks of rows (each W packed once per call and
    shared by the chunks) with hidden widths whose rows are exactly 4 KiB
    (1024 float32, 512 float64: the engine pads its scratch rows) and a ragged
    last chunk: against the reference, equal to forward()'s last layer (which
    writes every layer out unpadded), independent of the thread count, and,
    for fastnn's own kernels, of which rows are predicted together (with
    "amx", among calls on the same side of AMX_MIN_ROWS: the tiles' float32
    arithmetic is not the FMAs', see tests/test_amx.py)."""
    net = make_net((21, 1024, 512, 3), ("relu", "tanh", "softmax"), loss="cross_entropy",
                   dtype=dtype, seed=3)
    X = np.random.default_rng(4).normal(size=(600, 21)).astype(dtype)   # 256 + 256 + 88
    W, b, acts = params64(net)
    expected, bounds = forward_bound(W, b, acts, X.astype(np.float64), dtype)
    pred = net.predict(X, n_threads=n_threads)
    assert_within(pred, expected[-1], bounds[-1], "predict")
    np.testing.assert_array_equal(pred, net.forward(X, n_threads=n_threads)[-1])
    np.testing.assert_array_equal(pred, net.predict(X, n_threads=3 - n_threads))
    if kernel != "blas":
        slices = (slice(0, 1), slice(250, 262), slice(511, 600))
        if kernel == "amx" and dtype == np.float32:
            slices = (slice(0, _engine.AMX_MIN_ROWS), slice(211, 600))
        for rows in slices:
            np.testing.assert_array_equal(net.predict(X[rows], n_threads=n_threads), pred[rows],
                                          err_msg=f"rows {rows}")
