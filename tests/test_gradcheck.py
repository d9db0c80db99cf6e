"""Analytical gradients (engine and reference) against central finite differences.

Every allowed (hidden activation, output activation, loss) combination, in
float64: mse with every output activation (softmax included; step and sign
have zero gradients, checked to be exactly zero and zero by finite
differences too), cross_entropy with softmax, binary_cross_entropy with
sigmoid, poisson with a linear output, fann_tanh with sigmoid, tanh and linear outputs; hidden layers use every differentiable activation.  Weights *and*
biases are perturbed, and the loss is ``net.evaluate(X, y)["loss"]``.

Kinks are avoided by construction: the seeded parameters are redrawn until
every pre-activation is at least KINK_MARGIN away from 0, far more than a
perturbation of H can move it.

Tolerances: the central difference (L(p+h) - L(p-h)) / 2h with h = 1e-5 has
truncation error h^2/6 |L'''| ~ 1e-11 and rounding error ~ eps |L| / h ~ 1e-11
for the O(1) losses here, so |g - g_fd| <= 1e-7 + 1e-6 |g| leaves a margin of
~1e4 while any real mistake (a missing factor, a wrong derivative, a
transposed delta) is off by far more than that.
"""
import numpy as np
import pytest

from fastnn import _reference as ref

from conftest import DIFFERENTIABLE, make_net, params64, targets

H = 1e-5
ATOL, RTOL = 1e-7, 1e-6
KINK_MARGIN = 1e-3

OUTPUTS = [("mse", act) for act in DIFFERENTIABLE + ["softmax", "step", "sign"]] + [
    ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"), ("poisson", "linear"),
    ("fann_tanh", "sigmoid"), ("fann_tanh", "tanh"), ("fann_tanh", "linear")]


def _net_away_from_kinks(hidden, out, loss, X):
    for seed in range(50):
        net = make_net((3, 5, 3), (hidden, out), loss=loss, dtype=np.float64, seed=seed,
                       bias_scale=0.5)
        W, b, acts = params64(net)
        outs = ref.forward(W, b, acts, X)
        Z1 = X @ W[0] + b[0]
        Z2 = outs[0] @ W[1] + b[1]
        if np.abs(Z1).min() > KINK_MARGIN and np.abs(Z2).min() > KINK_MARGIN:
            return net
    raise AssertionError("could not draw parameters away from the kinks")


def _fd_gradient(net, X, y, layer, name):
    param = getattr(net.layers[layer], name)
    g = np.zeros_like(param)
    flat = param.reshape(-1)      # a view: perturbs the layer's array in place
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        lp = net.evaluate(X, y)["loss"]
        flat[i] = old - H
        lm = net.evaluate(X, y)["loss"]
        flat[i] = old
        g.reshape(-1)[i] = (lp - lm) / (2 * H)
    return g


@pytest.mark.parametrize("loss,out", OUTPUTS, ids=[f"{l}-{a}" for l, a in OUTPUTS])
@pytest.mark.parametrize("hidden", DIFFERENTIABLE)
def test_gradients_match_finite_differences(hidden, loss, out):
    rng = np.random.default_rng(7)
    n = 6
    X = rng.normal(size=(n, 3))
    if loss == "cross_entropy":
        y = rng.integers(0, 3, n)
    elif loss == "binary_cross_entropy":
        y = rng.uniform(0, 1, (n, 3))
    elif loss == "poisson":
        y = rng.poisson(1.5, (n, 3)).astype(float)
    else:
        y = rng.normal(0.3, 0.5, (n, 3))
    net = _net_away_from_kinks(hidden, out, loss, X)
    if loss == "fann_tanh":
        # errors |u| away from FANN's poles at 1 (where L''' ~ 1/(1 - u^2)^2 ruins
        # the finite differences), one row beyond its clip at 17
        mag = rng.uniform(0.1, 0.8, (n, 3))
        mag[0] = rng.uniform(1.2, 2.0, 3)
        scale = 0.5 if out == "tanh" else 1.0
        y = net.predict(X) - rng.choice([-1.0, 1.0], (n, 3)) * mag / scale
    grads = net.gradients(X, y)
    W, b, acts = params64(net)
    ref_loss, ref_grads = ref.gradients(W, b, acts, loss, X, targets(loss, y, 3))
    assert net.evaluate(X, y)["loss"] == pytest.approx(ref_loss, rel=1e-12)
    for l in range(2):
        for i, name in enumerate(("W", "b")):
            fd = _fd_gradient(net, X, y, l, name)
            analytic = grads[l][i]
            if out in ("step", "sign"):
                # zero almost everywhere, in every layer, and so is the finite difference
                np.testing.assert_array_equal(analytic, 0, err_msg=f"{name}{l}")
                np.testing.assert_array_equal(ref_grads[l][i], 0)
                np.testing.assert_array_equal(fd, 0)
                continue
            assert np.abs(fd).max() > 1e-4, "degenerate check: the loss barely depends on it"
            np.testing.assert_allclose(analytic, fd, rtol=RTOL, atol=ATOL,
                                       err_msg=f"engine d{name}{l}")
            np.testing.assert_allclose(ref_grads[l][i], fd, rtol=RTOL, atol=ATOL,
                                       err_msg=f"reference d{name}{l}")


def test_gradients_without_bias_match_finite_differences():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(5, 4))
    y = rng.normal(size=(5, 2))
    net = make_net((4, 6, 2), ("tanh", "linear"), loss="mse", dtype=np.float64,
                   use_bias=(False, True))
    grads = net.gradients(X, y)
    assert grads[0][1] is None
    for l, name in ((0, "W"), (1, "W"), (1, "b")):
        fd = _fd_gradient(net, X, y, l, name)
        np.testing.assert_allclose(grads[l][0 if name == "W" else 1], fd, rtol=RTOL, atol=ATOL)
