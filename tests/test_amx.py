"""The "amx" kernel: float32 predicts of many rows on the AMX tile unit
(csrc/fnn_amx.c: each float split into three bfloat16, six tile products per
float32 product, float32 sums).

Checked against the float64 reference with the same per-dtype error bounds
as every other kernel, against the FMA kernels' own error, and for the
determinism contract that remains: a row's output does not depend on the
thread count or on the rows predicted with it, among calls of at least
AMX_MIN_ROWS rows (fewer rows run on the FMA kernels).
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _config, _engine

from conftest import assert_within, forward_bound, make_net, params64

pytestmark = pytest.mark.skipif("amx" not in _config.available_kernels(),
                                reason="no AMX tile unit on this CPU (or the OS refused it)")

MIN_ROWS = _engine.AMX_MIN_ROWS


@pytest.fixture
def amx():
    fn.set_kernel("amx")
    yield
    fn.set_kernel(None)


def _x(rows, n_in, seed=0, scale=1.0):
    return (scale * np.random.default_rng(seed).normal(size=(rows, n_in))).astype(np.float32)


# (layer sizes, activations, rows): odd widths (not multiples of the 32-wide
# tile pairs or of 32 k values), ragged row blocks, every AMX layer's input
# >= 256 and output >= 64 (narrower ones stay on the FMA kernels).
CASES = [
    ((256, 64, 3), ("relu", "softmax"), MIN_ROWS),
    ((300, 65, 2), ("sigmoid", "linear"), MIN_ROWS + 1),
    ((257, 100, 4), ("tanh", "softmax"), 300),
    ((784, 257, 64, 10), ("relu", "gelu", "softmax"), 517),
    ((333, 300, 300, 1), ("leaky_relu", "elu", "sigmoid"), 260),
]


@pytest.mark.parametrize("sizes,acts,rows", CASES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_amx_predict_within_the_float32_bounds(amx, sizes, acts, rows, n_threads):
    net = make_net(sizes, acts, loss="mse", dtype=np.float32, seed=1)
    X = _x(rows, sizes[0], seed=2)
    W, b, acts64 = params64(net)
    expected, bounds = forward_bound(W, b, acts64, X.astype(np.float64), np.float32)
    outs = net.forward(X, n_threads=n_threads)
    for l, (got, want, bound) in enumerate(zip(outs, expected, bounds)):
        assert_within(got, want, bound, f"layer {l}")
    np.testing.assert_array_equal(net.predict(X, n_threads=n_threads), outs[-1])


def test_amx_is_used_and_no_less_accurate_than_the_fmas():
    """The tiles run (results differ from the AVX-512 kernel's) and their
    error against float64 is within twice the FMA kernel's (measured: below it)."""
    net = make_net((784, 256, 128, 10), ("relu", "relu", "linear"), loss="mse",
                   dtype=np.float32, seed=3)
    X = _x(1000, 784, seed=4)
    W, b, acts64 = params64(net)
    exact = forward_bound(W, b, acts64, X.astype(np.float64), np.float32)[0][-1]
    try:
        fn.set_kernel("amx")
        on_tiles = net.predict(X, n_threads=1)
        fn.set_kernel("avx512")
        on_fmas = net.predict(X, n_threads=1)
    finally:
        fn.set_kernel(None)
    assert not np.array_equal(on_tiles, on_fmas)
    err_tiles = np.abs(on_tiles - exact).max()
    err_fmas = np.abs(on_fmas - exact).max()
    assert err_tiles <= 2 * err_fmas, (err_tiles, err_fmas)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_amx_rows_do_not_depend_on_the_batch_or_threads(amx, n_threads):
    net = make_net((400, 130, 7), ("tanh", "softmax"), loss="cross_entropy",
                   dtype=np.float32, seed=5)
    X = _x(900, 400, seed=6)
    full = net.predict(X, n_threads=n_threads)
    np.testing.assert_array_equal(full, net.predict(X, n_threads=3 - n_threads))
    for rows in (slice(0, MIN_ROWS), slice(101, 400), slice(500, 900)):
        np.testing.assert_array_equal(net.predict(X[rows], n_threads=n_threads), full[rows],
                                      err_msg=f"rows {rows}")
    # fewer rows: the FMA kernels, within the same bounds
    W, b, acts64 = params64(net)
    few = X[:MIN_ROWS - 1]
    expected, bounds = forward_bound(W, b, acts64, few.astype(np.float64), np.float32)
    assert_within(net.predict(few, n_threads=n_threads), expected[-1], bounds[-1], "few rows")


def test_amx_wide_dynamic_range(amx):
    """Inputs from 1e-30 to 1e30 in one row: the three parts of each float
    are exact, so large and small values keep their float32 precision."""
    net = make_net((256, 64, 2), ("linear", "linear"), loss="mse", dtype=np.float32, seed=7)
    rng = np.random.default_rng(8)
    X = (rng.normal(size=(MIN_ROWS, 256)) * 10.0 ** rng.integers(-30, 31, (MIN_ROWS, 256)))
    X = X.astype(np.float32)
    W, b, acts64 = params64(net)
    expected, bounds = forward_bound(W, b, acts64, X.astype(np.float64), np.float32)
    assert_within(net.predict(X), expected[-1], bounds[-1], "wide range")


def test_amx_leaves_float64_on_the_fmas(amx):
    net = make_net((300, 80, 3), ("relu", "softmax"), loss="cross_entropy",
                   dtype=np.float64, seed=9)
    X = np.random.default_rng(10).normal(size=(MIN_ROWS + 5, 300))
    got = net.predict(X)
    fn.set_kernel("avx512")
    np.testing.assert_array_equal(got, net.predict(X))
