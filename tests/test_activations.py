"""The activation registry (fastnn/activations.py) and its C list
(csrc/fnn_activations.h), FANN's steepness and flat spot as Dense options.

The maths of every activation is checked elsewhere against its registry
entry: every kernel's epilogues (test_gemm_kernels.py), finite differences
(test_gradcheck.py), whole networks (test_engine_vs_reference.py), the
exports run for real (test_export_onnx.py, test_export_c.py).
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine
from fastnn import _reference as ref
from fastnn.activations import REGISTRY

from conftest import make_net, params64


def test_one_list_of_codes():
    """Every activation of the engine has one registry entry and back; the
    codes are the engine's, 0..n-1."""
    assert set(REGISTRY) == set(_engine.ACTIVATION_CODES)
    assert sorted(a.code for a in REGISTRY.values()) == list(range(len(REGISTRY)))
    assert {a.name for a in REGISTRY.values() if a.from_input} == {"silu", "gelu"}


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_new_activations_match_their_definitions(name):
    x = np.linspace(-30, 30, 2001)
    if name == "silu":
        expected = x / (1 + np.exp(-x))
    else:
        expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    # (the tanh form cancels for negative x: |x| eps absolutely; the registry's
    # x * sigmoid(2u) does not)
    np.testing.assert_allclose(ref.activation(name, x), expected, rtol=1e-13, atol=1e-14)
    h = 1e-6        # f' from x, against central differences
    fd = (ref.activation(name, x + h) - ref.activation(name, x - h)) / (2 * h)
    np.testing.assert_allclose(ref.activation_derivative(name, x), fd, rtol=1e-7, atol=1e-8)


def test_dense_checks_steepness_and_flat_spot():
    for bad in (0, -1.0, np.inf, np.nan, True, "1"):
        with pytest.raises(ValueError, match="steepness must be a finite number > 0"):
            fn.Dense(2, 3, steepness=bad)
    for bad in (-0.1, 0.5, True, None):
        with pytest.raises(ValueError, match=r"flat_spot must be a number in \[0, 0.5\)"):
            fn.Dense(2, 3, activation="sigmoid", flat_spot=bad)
    with pytest.raises(ValueError, match="flat_spot applies to the saturating activations"):
        fn.Dense(2, 3, activation="relu", flat_spot=0.01)
    layer = fn.Dense(2, 3, activation="sigmoid_symmetric", steepness=0.5, flat_spot=0.01)
    assert layer.activation == "tanh"
    code, alpha, s, lo, hi = layer.activation_code
    assert (code, s) == (REGISTRY["tanh"].code, 0.5)
    assert (lo, hi) == pytest.approx((-0.98, 0.98))
    assert "steepness=0.5" in repr(layer) and "flat_spot=0.01" in repr(layer)
    assert fn.Dense(2, 3, activation="sigmoid", flat_spot=0.01).activation_code[3:] == \
        pytest.approx((0.01, 0.99))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steepness_and_flat_spot_are_saved(dtype, tmp_path):
    net = make_net((3, 4, 2), ("tanh", "sigmoid"), dtype=dtype, steepness=(0.5, 1.7),
                   flat_spot=(0.01, 0.02))
    net.save(tmp_path / "net.fnn")
    loaded = fn.load(tmp_path / "net.fnn")
    assert [(l.steepness, l.flat_spot) for l in loaded.layers] == [(0.5, 0.01), (1.7, 0.02)]
    X = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_steepness_one_changes_nothing(dtype):
    """steepness=1 takes the very code it took before (same bits)."""
    X = np.random.default_rng(0).normal(size=(40, 6)).astype(dtype)
    y = np.random.default_rng(1).normal(size=(40, 2))
    plain = make_net((6, 9, 2), ("sigmoid", "tanh"), dtype=dtype)
    steep = make_net((6, 9, 2), ("sigmoid", "tanh"), dtype=dtype, steepness=(1.0, 1.0),
                     flat_spot=(0.0, 0.0))
    np.testing.assert_array_equal(plain.predict(X), steep.predict(X))
    for (a, b), (c, d) in zip(plain.gradients(X, y), steep.gradients(X, y)):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_flat_spot_changes_only_saturated_gradients(act):
    """Saturated units: with the flat spot f' is taken at the clipped output,
    as the reference computes it; predict is unchanged."""
    rng = np.random.default_rng(3)
    X = 4 * rng.normal(size=(30, 4))
    y = rng.uniform(0.2, 0.8, (30, 2))
    kw = dict(dtype=np.float64, steepness=(3.0, 3.0))
    plain = make_net((4, 8, 2), (act, act), **kw)
    flat = make_net((4, 8, 2), (act, act), flat_spot=(0.01, 0.01), **kw)
    np.testing.assert_array_equal(plain.predict(X), flat.predict(X))
    hidden = plain.forward(X)[0]
    lo, hi = REGISTRY[act].flat_spot_bounds(0.01)
    assert ((hidden < lo) | (hidden > hi)).mean() > 0.2, "too few saturated units"
    g_plain, g_flat = plain.gradients(X, y), flat.gradients(X, y)
    assert np.abs(g_flat[0][0] - g_plain[0][0]).max() > 1e-3
    W, b, acts = params64(flat)
    _, expected = ref.gradients(W, b, acts, "mse", X, y)
    for (dW, db), (rW, rb) in zip(g_flat, expected):
        np.testing.assert_allclose(dW, rW, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(db, rb, rtol=1e-12, atol=1e-14)
