"""The "amx" kernel: large float32 products on the AMX tile unit
(csrc/fnn_amx.c: each float split into three bfloat16, six tile products per
float32 product, float32 sums), in predicts and in training steps.

Checked against the float64 reference with the same per-dtype error bounds
as every other kernel (the products themselves, with every epilogue and
transpose, are in tests/test_gemm_kernels.py), against the FMA kernels' own
error, and for the determinism contract that remains: results do not depend
on the thread count, and a row's output not on the rows predicted with it
among calls of at least AMX_MIN_ROWS rows (fewer rows run on the FMA kernels).
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _config, _engine

from conftest import (assert_same_weights, assert_within, forward_bound, gradient_bound,
                      make_net, params64, targets, weights)

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
# tile pairs or of 32 k values), ragged row blocks; the first layer on the
# tiles (test_amx_cases_are_on_the_tiles), narrower ones on the FMA kernels.
CASES = [
    ((256, 128, 3), ("relu", "softmax"), MIN_ROWS),
    ((300, 129, 2), ("sigmoid", "linear"), MIN_ROWS + 1),
    ((257, 160, 4), ("tanh", "softmax"), 300),
    ((784, 257, 130, 10), ("relu", "gelu", "softmax"), 517),
    ((333, 300, 300, 1), ("leaky_relu", "elu", "sigmoid"), 260),
]


def _on_tiles(M, N, K):
    return M >= MIN_ROWS and N >= _engine.AMX_MIN_COLS and K >= _engine.AMX_MIN_DEPTH


def test_amx_cases_are_on_the_tiles():
    for sizes, _, rows in CASES:
        assert _on_tiles(rows, sizes[1], sizes[0])


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
    net = make_net((256, 128, 2), ("linear", "linear"), loss="mse", dtype=np.float32, seed=7)
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


# A training step runs a product on the tiles from AMX_STEP_MIN_COLS columns
# and AMX_STEP_MIN_DEPTH terms.  This net at batches of 256 has its first
# layer's forward (X, W), hidden delta (D, W transposed) and weight gradient
# (X transposed, D) there, the rest on the FMAs.
TRAIN_SIZES = (300, 520, 260, 10)
# A weight gradient (X.T @ D) also runs there from AMX_GRADIENT_MIN_ROWS
# inputs (with AMX_MIN_COLS and AMX_MIN_DEPTH): this net's first layer's,
# whose forward stays on the FMAs.
GRADIENT_SIZES = (600, 200, 10)


def _on_tiles_in_a_step(M, N, K, gradient=False):
    if not (M >= MIN_ROWS and N >= _engine.AMX_MIN_COLS and K >= _engine.AMX_MIN_DEPTH):
        return False
    return ((N >= _engine.AMX_STEP_MIN_COLS and K >= _engine.AMX_STEP_MIN_DEPTH)
            or (gradient and M >= _engine.AMX_GRADIENT_MIN_ROWS))


def test_amx_training_products_are_on_the_tiles():
    rows, (n0, n1, n2, _) = 256, TRAIN_SIZES
    for M, N, K in ((rows, n1, n0), (rows, n1, n2), (n0, n1, rows)):
        assert _on_tiles_in_a_step(M, N, K)
    n0, n1, _ = GRADIENT_SIZES
    assert _on_tiles_in_a_step(n0, n1, rows, gradient=True)
    assert not _on_tiles_in_a_step(rows, n1, n0)


# Products as a training step runs them (both operands packed once for the
# team's tiles), every epilogue and transpose: test_gemm_kernels' test.
STEP_SHAPES = [(200, 520, 257), (257, 530, 300)]
# Weight-gradient shapes (op(A) transposed): on the tiles from
# AMX_GRADIENT_MIN_ROWS rows, narrower and shallower than STEP_SHAPES.
GRADIENT_SHAPES = [(513, 130, 129), (600, 200, 256)]


def _amx_and_avx512(shape, trans):
    from test_gemm_kernels import _operands, _run
    M, N, K = shape
    A, B = _operands(M, N, K, *trans, np.float32, seed=1)
    kw = dict(trans_a=trans[0], trans_b=trans[1], kind=0, alpha=1.0, prepack=True)
    return (_run(A, B, M, N, np.float32, "amx", 1, **kw),
            _run(A, B, M, N, np.float32, "avx512", 1, **kw))


@pytest.mark.parametrize("trans", [(False, False), (False, True), (True, False), (True, True)],
                         ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("shape", STEP_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_amx_step_products_every_epilogue_vs_reference(trans, shape):
    from test_gemm_kernels import test_gemm_every_epilogue_vs_reference
    assert _on_tiles_in_a_step(*shape)
    test_gemm_every_epilogue_vs_reference("amx", np.float32, trans, shape)
    # and the tiles did run: not the AVX-512 kernel's bits
    on_tiles, on_fmas = _amx_and_avx512(shape, trans)
    assert not np.array_equal(on_tiles, on_fmas)


@pytest.mark.parametrize("trans_b", [False, True], ids=["TN", "TT"])
@pytest.mark.parametrize("shape", GRADIENT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_amx_gradient_products_every_epilogue_vs_reference(trans_b, shape):
    from test_gemm_kernels import test_gemm_every_epilogue_vs_reference
    assert _on_tiles_in_a_step(*shape, gradient=True) and not _on_tiles_in_a_step(*shape)
    test_gemm_every_epilogue_vs_reference("amx", np.float32, (True, trans_b), shape)
    on_tiles, on_fmas = _amx_and_avx512(shape, (True, trans_b))
    assert not np.array_equal(on_tiles, on_fmas)
    # the same shape with op(A) not transposed is no weight gradient: FMAs
    on_tiles, on_fmas = _amx_and_avx512(shape, (False, trans_b))
    np.testing.assert_array_equal(on_tiles, on_fmas)


def test_amx_gradients_within_the_float32_bounds(amx):
    net = make_net(TRAIN_SIZES, ("tanh", "relu", "softmax"), loss="cross_entropy",
                   dtype=np.float32, seed=11)
    rng = np.random.default_rng(12)
    X = rng.normal(size=(300, TRAIN_SIZES[0])).astype(np.float32)
    y = rng.integers(0, 10, 300)
    W, b, acts64 = params64(net)
    T = targets("cross_entropy", y, 10)
    _, expected, bounds = gradient_bound(W, b, acts64, "cross_entropy", X.astype(np.float64),
                                         T, np.float32)
    for n_threads in (1, 2):
        got = net.gradients(X, y, n_threads=n_threads)
        for l, ((dW, db), (eW, eb), (bW, bb)) in enumerate(zip(got, expected, bounds)):
            assert_within(dW, eW, bW, f"dW[{l}], {n_threads} threads")
            assert_within(db, eb, bb, f"db[{l}], {n_threads} threads")


def _fit(n_threads, optimizer, dropout=0.0, sizes=TRAIN_SIZES):
    acts = ("relu", "tanh", "softmax")[-(len(sizes) - 1):]
    net = make_net(sizes, acts, loss="cross_entropy", dtype=np.float32, seed=13)
    net.layers[0].dropout = dropout
    rng = np.random.default_rng(14)
    X = rng.normal(size=(1100, sizes[0])).astype(np.float32)   # a short last batch
    y = rng.integers(0, 10, 1100)
    history = net.fit(X, y, epochs=2, batch_size=256, optimizer=optimizer, verbose=0,
                      n_threads=n_threads)
    return net, history.history["loss"]


@pytest.mark.parametrize("sizes", [TRAIN_SIZES, GRADIENT_SIZES], ids=["wide", "gradient"])
@pytest.mark.parametrize("optimizer,dropout", [(lambda: fn.SGD(lr=0.05), 0.0),
                                               (lambda: fn.Adam(lr=1e-3), 0.2)],
                         ids=["sgd", "adam+dropout"])
def test_amx_training_does_not_depend_on_the_threads(amx, alternating, optimizer, dropout,
                                                     sizes):
    """Every batch its own slice, alternating one thread and two (the thread
    governor's worst case), against plain 1- and 2-thread runs, bit for bit."""
    if not _engine.openmp_enabled() or _engine.team_size(2) < 2:
        pytest.skip("a team of two is not available here (serial engine, or one core)")
    assert _engine.threads_for_batch([np.empty(s) for s in zip(sizes, sizes[1:])],
                                     256, 2) == 2
    net_alt, loss_alt = _fit(2, optimizer(), dropout, sizes)
    _engine.alternate_threads_for_tests(False)
    for n_threads in (1, 2):
        net, loss = _fit(n_threads, optimizer(), dropout, sizes)
        assert_same_weights(weights(net), weights(net_alt))
        assert loss == loss_alt


@pytest.mark.parametrize("sizes", [TRAIN_SIZES, GRADIENT_SIZES], ids=["wide", "gradient"])
def test_amx_training_follows_the_fmas(alternating, sizes):
    """Two epochs on the tiles end within float32 noise of the same run on
    the AVX-512 kernel (and not bit-identical: the tiles did run)."""
    _engine.alternate_threads_for_tests(False)
    try:
        fn.set_kernel("amx")
        on_tiles, loss_tiles = _fit(1, fn.SGD(lr=0.05), sizes=sizes)
        fn.set_kernel("avx512")
        on_fmas, loss_fmas = _fit(1, fn.SGD(lr=0.05), sizes=sizes)
    finally:
        fn.set_kernel(None)
    assert loss_tiles != loss_fmas
    np.testing.assert_allclose(loss_tiles, loss_fmas, rtol=1e-4)
    for (Wa, ba), (Wb, bb) in zip(weights(on_tiles), weights(on_fmas)):
        np.testing.assert_allclose(Wa, Wb, rtol=0, atol=1e-4)
        np.testing.assert_allclose(ba, bb, rtol=0, atol=1e-4)
