"""Every GEMM kernel (fastnn._engine.gemm_tiled) against fastnn._reference.gemm.

Covers: every kernel in fastnn._config.available_kernels(), float32 and
float64, the 4 transpose combinations, the 3 epilogue kinds (STORE with
alpha/beta including beta=0 over a NaN-filled C, BIAS_ACT with and without a
bias for every activation code, DERIV for every activation's derivative
from Y = activation outputs, or activation inputs for the FROM_INPUT ones;
the optional fields: steepness, flat spot, kept activation inputs), odd shapes (1x1x1, one row, one column, K=1,
sizes that are not multiples of 8/16, several 128-tiles), n_threads 1 and 2,
and bit-identical output for 1 and 2 threads.

Tolerances (see conftest.py): ``|C - ref| <= Lip * rtol(K) * mag + 8 ulp * |ref|``
where ``mag = |op(A)| @ |op(B)|`` (+ |bias| or |beta * C|), computed in
float64, ``rtol(K) = 4 * sqrt(K + 1) * eps(dtype)`` (random-walk accumulation
error of the kernel and of the reference), Lip the activation's Lipschitz
constant and the ulp term the elementwise function's own rounding.  step and
sign are discontinuous at 0: where the reference pre-activation is within the
accumulation bound of 0 either output is accepted, elsewhere they must match
exactly.  Outputs of C[i, j] may not depend on the tile or the thread, so the
1- and 2-thread results are compared bit for bit.
"""
import os

import numpy as np
import pytest

from fastnn import _engine
from fastnn import _reference as ref

from fastnn.activations import REGISTRY

from conftest import (run_python, OWN_KERNELS, ACT_PARAM, ACTS, DIFFERENTIABLE, DLIP, DTYPES,
                      FUNC_ULPS, KERNEL_NAMES, LIP, assert_within, eps, rtol)

SHAPES = [  # (M, N, K)
    (1, 1, 1),
    (1, 37, 19),      # one row
    (23, 1, 9),       # one column
    (13, 11, 1),      # K = 1
    (3, 5, 7),
    (17, 33, 65),
    (129, 130, 131),  # just over one 128-tile in every direction
    (200, 300, 50),   # several tiles of output
    (1, 128, 3),      # BLAS path: a minibatch-shaped product (few rows, many
    (45, 600, 70),    # columns) is computed transposed; 600 = 512 + 88 columns
    (2, 300, 600),    # few rows; one row is the GEMV path of the own kernels: K over
    (1, 130, 257),    # one K block, a partial last strip of columns
]
TRANS = [(False, False), (False, True), (True, False), (True, True)]
THREADS = [1, 2]


def _operands(M, N, K, ta, tb, dtype, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return A, B


def _run(A, B, M, N, dtype, kernel, n_threads, C=None, **kw):
    # "amx" runs large products on its tiles only when packed for them, as training does
    kw.setdefault("prepack", kernel == "amx")
    if C is None:
        C = np.full((M, N), np.nan, dtype)       # outputs must not read C
    else:
        C = C.copy()
    _engine.gemm_tiled(A, B, C, n_threads=n_threads, kernel=_engine.KERNELS[kernel], **kw)
    return C


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("trans", TRANS, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_gemm_every_epilogue_vs_reference(kernel, dtype, trans, shape):
    M, N, K = shape
    ta, tb = trans
    A, B = _operands(M, N, K, ta, tb, dtype, seed=M * 10007 + N * 101 + K)
    opA = (A.T if ta else A).astype(np.float64)
    opB = (B.T if tb else B).astype(np.float64)
    mag = np.abs(opA) @ np.abs(opB)
    acc64 = opA @ opB
    r, e = rtol(dtype, K), eps(dtype)
    rng = np.random.default_rng(K)
    base = dict(trans_a=ta, trans_b=tb)

    def check(what, C_init=None, **kw):
        """Run with 1 and 2 threads; return the 1-thread result."""
        outs = [_run(A, B, M, N, dtype, kernel, nt, C=C_init, **base, **kw) for nt in THREADS]
        for nt, out in zip(THREADS, outs):
            assert out.dtype == dtype and out.shape == (M, N)
            assert np.isfinite(out).all(), f"{what}, {nt} threads: non-finite output"
        np.testing.assert_array_equal(
            outs[0].view(np.uint8), outs[1].view(np.uint8),
            err_msg=f"{what}: 1 and 2 threads differ")
        return outs[0]

    # -- kind 0: STORE, C = alpha * acc + beta * C --------------------------
    C0 = rng.standard_normal((M, N)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (-0.7, 0.0), (1.0, 1.0), (1.5, 1.0), (-0.25, 0.5)]:
        what = f"STORE alpha={alpha} beta={beta}"
        out = check(what, C_init=None if beta == 0 else C0, kind=0, alpha=alpha, beta=beta)
        expected = ref.gemm(A, B, None if beta == 0 else C0, trans_a=ta, trans_b=tb,
                            kind=0, alpha=alpha, beta=beta)
        bound = r * (abs(alpha) * mag + abs(beta) * np.abs(C0.astype(np.float64))) \
            + FUNC_ULPS * e * np.abs(expected.astype(np.float64))
        assert_within(out, expected, bound, what)
    # beta=0 with a NaN-filled C must also hold for a finite non-NaN C: C is not read
    out_nan = _run(A, B, M, N, dtype, kernel, 1, **base, kind=0, alpha=1.0, beta=0.0)
    out_fin = _run(A, B, M, N, dtype, kernel, 1, C=C0, **base, kind=0, alpha=1.0, beta=0.0)
    np.testing.assert_array_equal(out_nan, out_fin)

    # -- kind 1: BIAS_ACT, C = f(acc + bias) --------------------------------
    bias = (0.5 * rng.standard_normal(N)).astype(dtype)
    for act_name in ACTS:
        code = ACTS.index(act_name)
        p = ACT_PARAM.get(act_name, 0.0)
        for b in (None, bias):
            what = f"BIAS_ACT {act_name} bias={'yes' if b is not None else 'no'}"
            out = check(what, kind=1, act=code, act_param=p, bias=b)
            expected = ref.gemm(A, B, trans_a=ta, trans_b=tb, kind=1, act=code,
                                act_param=p, bias=b)
            assert expected.dtype == dtype
            zmag = mag + (0 if b is None else np.abs(b.astype(np.float64)))
            zerr = r * zmag
            if act_name in ("step", "sign"):
                z64 = acc64 + (0 if b is None else b.astype(np.float64))
                sure = np.abs(z64) > zerr
                np.testing.assert_array_equal(out[sure], expected[sure], err_msg=what)
                allowed = (0, 1) if act_name == "step" else (-1, 1)
                assert np.isin(out, allowed).all(), what
                continue
            lip = max(1.0, p) if act_name in ("leaky_relu", "elu") else LIP[act_name]
            bound = lip * zerr + FUNC_ULPS * e * np.abs(expected.astype(np.float64))
            assert_within(out, expected, bound, what)

    # -- kind 2: DERIV, C = acc * f'(Y) with Y = f(Z), or Z (FROM_INPUT) -----
    Z = rng.standard_normal((M, N)).astype(dtype)
    for act_name in ACTS:
        code = ACTS.index(act_name)
        p = ACT_PARAM.get(act_name, 0.0)
        Y = Z if REGISTRY[act_name].from_input else np.ascontiguousarray(
            ref.activation(act_name, Z, p).astype(dtype))
        what = f"DERIV {act_name}"
        out = check(what, kind=2, act=code, act_param=p, Y=Y)
        expected = ref.gemm(A, B, trans_a=ta, trans_b=tb, kind=2, act=code, act_param=p, Y=Y)
        if act_name in ("step", "sign"):
            np.testing.assert_array_equal(out, 0, err_msg=what)
            continue
        d = np.abs(ref.activation_derivative(act_name, Y.astype(np.float64), p))
        bound = r * mag * d + FUNC_ULPS * e * np.abs(expected.astype(np.float64))
        if REGISTRY[act_name].from_input:     # f'(x) is a sum of terms that may cancel
            bound = bound + FUNC_ULPS * e * LIP[act_name] * np.abs(acc64)
        assert_within(out, expected, bound, what)


@pytest.mark.parametrize("kernel", OWN_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("trans", TRANS, ids=["NN", "NT", "TN", "TT"])
def test_gemm_element_independent_of_position(kernel, dtype, trans):
    """fnn_gemm.h's determinism contract: C[i, j] depends only on row i of
    op(A), column j of op(B) and K - not on M, N or the tile it falls in.
    A sub-block computed on its own must equal the same block of a large product."""
    ta, tb = trans
    M, N, K = 300, 260, 77
    A, B = _operands(M, N, K, ta, tb, dtype, seed=5)
    full = _run(A, B, M, N, dtype, kernel, 2, trans_a=ta, trans_b=tb, kind=0, alpha=1.0)
    i0, i1, j0, j1 = 131, 140, 250, 260       # rows/columns inside later tiles
    opA = (A.T if ta else A)[i0:i1]
    opB = (B.T if tb else B)[:, j0:j1]
    As = np.ascontiguousarray(opA.T if ta else opA)
    Bs = np.ascontiguousarray(opB.T if tb else opB)
    part = _run(As, Bs, i1 - i0, j1 - j0, dtype, kernel, 1, trans_a=ta, trans_b=tb,
                kind=0, alpha=1.0)
    np.testing.assert_array_equal(part, full[i0:i1, j0:j1])


@pytest.mark.parametrize("kernel", OWN_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_few_rows_with_b_rows_8_kib_apart_give_the_bits_of_a_block(kernel, dtype):
    """B's rows 8 KiB apart (a 2048-wide float32 layer): a product of a few
    rows reads B in place up to MR rows and packs it for more (see
    reads_b_in_place); either way its rows are bit for bit those of a tall
    product, for row counts on both sides of MR and of a vector's width."""
    N, K = 8192 // np.dtype(dtype).itemsize, 40
    rng = np.random.default_rng(3)
    A = rng.standard_normal((300, K)).astype(dtype)
    B = rng.standard_normal((K, N)).astype(dtype)
    kw = dict(kind=1, act=ACTS.index("tanh"), bias=rng.standard_normal(N).astype(dtype))
    tall = _run(A, B, 300, N, dtype, kernel, 1, **kw)
    for rows in (1, 2, 5, 6, 7, 8, 9, 12, 17, 100):
        few = _run(np.ascontiguousarray(A[:rows]), B, rows, N, dtype, kernel, 1, **kw)
        np.testing.assert_array_equal(few.view(np.uint8), tall[:rows].view(np.uint8))


# Products whose operands the training step packs once for all their tiles
# (fnn_gemm_prepack): (M, N, K, trans_a, trans_b, beta).
PREPACK_CASES = [
    (603, 300, 130, True, False, 1.0),   # an SGD update: row and column tiles, ragged edges
    (603, 300, 130, True, False, 0.0),   # a gradient
    (70, 300, 1024, False, False, 0.0),  # rows of A 4 KiB apart, several column tiles
    (70, 300, 1024, False, True, 0.0),   # a hidden delta's shape
    (600, 140, 50, False, True, 0.0),    # several row tiles: B packed once
]


# (not "amx": its packed products are on its tiles, checked against the
# reference above; the rest is the "avx512" kernel's)
@pytest.mark.parametrize("kernel", [k for k in OWN_KERNELS if k != "amx"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("n_threads", THREADS)
def test_gemm_prepacked_operands_bit_identical(kernel, dtype, n_threads):
    """Operands packed once for every tile (as training does) give exactly
    the products of the tiles packing their own: packing only copies."""
    planned = 0
    for case, (M, N, K, ta, tb, beta) in enumerate(PREPACK_CASES):
        A, B = _operands(M, N, K, ta, tb, dtype, seed=case)
        C0 = np.random.default_rng(case).standard_normal((M, N)).astype(dtype)
        kw = dict(trans_a=ta, trans_b=tb, kind=0, alpha=-0.5, beta=beta)
        plain = _run(A, B, M, N, dtype, kernel, n_threads, C=C0, **kw)
        C = C0.copy()
        planned |= _engine.gemm_tiled(A, B, C, n_threads=n_threads,
                                      kernel=_engine.KERNELS[kernel], prepack=True, **kw)
        np.testing.assert_array_equal(C, plain, err_msg=f"case {case}")
    assert planned == 3      # both operands were packed once somewhere above


@pytest.mark.parametrize("prepack", [False, True], ids=["tiles-pack", "packed-once"])
@pytest.mark.parametrize("n_threads", [3, 5])
def test_gemm_teams_of_any_size_compute_every_tile_once(n_threads, prepack):
    """Threads claim their own block of tiles (and of packing parts) first,
    then the others' (_engine_team.pxi, claim).  With beta = 1 a tile done
    twice would add twice, one never done would keep C's old values."""
    kernel = OWN_KERNELS[0]
    for case, (M, N, K, ta, tb) in enumerate([(600, 700, 64, True, False),
                                              (1100, 300, 40, False, False),
                                              (517, 1030, 33, False, True)]):
        A, B = _operands(M, N, K, ta, tb, np.float32, seed=case)
        C0 = np.random.default_rng(case).standard_normal((M, N)).astype(np.float32)
        kw = dict(trans_a=ta, trans_b=tb, kind=0, alpha=-0.5, beta=1.0, prepack=prepack)
        np.testing.assert_array_equal(_run(A, B, M, N, np.float32, kernel, n_threads, C=C0, **kw),
                                      _run(A, B, M, N, np.float32, kernel, 1, C=C0, **kw),
                                      err_msg=f"case {case}")


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_gemm_rejects_mismatched_operands(kernel):
    A = np.ones((3, 4))
    B = np.ones((5, 6))
    C = np.empty((3, 6))
    with pytest.raises(ValueError, match="shapes"):
        _engine.gemm_tiled(A, B, C, kernel=_engine.KERNELS[kernel])


def test_available_kernels_are_known():
    from fastnn import _config
    assert set(KERNEL_NAMES) <= set(_engine.KERNELS)
    assert "blas" in KERNEL_NAMES      # the reference path is always there
    forced = os.environ.get("FASTNN_KERNEL")
    # the best kernel by default; the one FASTNN_KERNEL names when it is set
    assert _config.get_kernel() == (forced if forced else KERNEL_NAMES[0])


def test_import_loads_scipy_only_for_the_blas_kernel():
    """``import fastnn`` and a predict on fastnn's own kernel import no scipy
    (a quarter second); selecting the BLAS path loads scipy's BLAS then."""
    out = run_python("""
        import json, sys
        import numpy as np
        import fastnn
        after_import = sorted(m for m in sys.modules if m.split(".")[0] == "scipy")
        net = fastnn.Network([fastnn.Dense(3, 2)], seed=0)
        own = net.predict(np.ones((4, 3)))
        after_predict = sorted(m for m in sys.modules if m.split(".")[0] == "scipy")
        fastnn.set_kernel("blas")
        blas = net.predict(np.ones((4, 3)))
        print(json.dumps({"import": after_import, "predict": after_predict,
                          "blas_loaded": "scipy.linalg.cython_blas" in sys.modules,
                          "same": bool(np.allclose(own, blas, rtol=1e-6))}))
    """, env={"FASTNN_KERNEL": ""})
    assert out["import"] == [] and out["predict"] == []
    assert out["blas_loaded"] and out["same"]


@pytest.mark.parametrize("kernel", OWN_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("act", ["relu", "tanh", "linear"])
def test_a_row_alone_gives_the_bits_it_gives_in_a_block(kernel, dtype, act):
    """The determinism contract across paths: a product of one or two rows
    (the GEMV path) equals those rows of a many-row product (the blocked
    micro-kernel), bit for bit."""
    M, N, K = 40, 300, 600
    A, B = _operands(M, N, K, False, False, dtype, seed=7)
    bias = np.linspace(-1, 1, N).astype(dtype)
    kw = dict(kind=1, act=ACTS.index(act), bias=bias)
    block = _run(A, B, M, N, dtype, kernel, 1, **kw)
    for rows in (slice(0, 1), slice(17, 19), slice(39, 40)):
        alone = _run(np.ascontiguousarray(A[rows]), B, rows.stop - rows.start, N, dtype,
                     kernel, 1, **kw)
        np.testing.assert_array_equal(alone.view(np.uint8), block[rows].view(np.uint8))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("trans", TRANS[:3:2], ids=["NN", "TN"])
@pytest.mark.parametrize("shape", [(1, 37, 19), (17, 33, 65), (129, 130, 131), (2, 300, 600),
                                   (1, 130, 257)], ids=lambda s: "x".join(map(str, s)))
def test_gemm_steepness_flat_spot_and_kept_inputs(kernel, dtype, trans, shape):
    """The epilogue's optional fields (fnn_gemm.h) for every differentiable
    activation: BIAS_ACT f(s * (acc + b)) writing s * (acc + b) to Z; DERIV
    acc * s * f'(Y), with Y clipped into the flat spot's bounds for the
    saturating activations.  1 and 2 threads bit-identical."""
    M, N, K = shape
    ta, tb = trans
    A, B = _operands(M, N, K, ta, tb, dtype, seed=M + N + K)
    opA, opB = (A.T if ta else A).astype(np.float64), (B.T if tb else B).astype(np.float64)
    r, e = rtol(dtype, K), eps(dtype)
    rng = np.random.default_rng(K)
    bias = (0.5 * rng.standard_normal(N)).astype(dtype)
    zmag = np.abs(opA) @ np.abs(opB) + np.abs(bias.astype(np.float64))
    mag = np.abs(opA) @ np.abs(opB)
    s_fwd, s_back = 1.7, 0.6

    def run(**kw):
        outs = []
        for nt in THREADS:
            Zk = np.full((M, N), np.nan, dtype) if kw.get("kind") == 1 else None
            C = _run(A, B, M, N, dtype, kernel, nt, trans_a=ta, trans_b=tb, Z=Zk, **kw)
            outs.append((C, Zk))
        for C, Zk in outs[1:]:
            np.testing.assert_array_equal(C.view(np.uint8), outs[0][0].view(np.uint8))
            if Zk is not None:
                np.testing.assert_array_equal(Zk.view(np.uint8), outs[0][1].view(np.uint8))
        return outs[0]

    for act_name in DIFFERENTIABLE:
        code = ACTS.index(act_name)
        p = ACT_PARAM.get(act_name, 0.0)
        what = f"BIAS_ACT {act_name} s={s_fwd} with Z"
        out, Zk = run(kind=1, act=code, act_param=p, bias=bias, steepness=s_fwd)
        expected = ref.gemm(A, B, trans_a=ta, trans_b=tb, kind=1, act=code, act_param=p,
                            bias=bias, steepness=s_fwd)
        x64 = s_fwd * ((opA @ opB) + bias.astype(np.float64))
        assert_within(Zk, x64, s_fwd * r * zmag + e * np.abs(x64), what + ": Z")
        lip = max(1.0, p) if act_name in ("leaky_relu", "elu") else LIP[act_name]
        assert_within(out, expected, lip * s_fwd * r * zmag
                      + FUNC_ULPS * e * np.abs(expected.astype(np.float64)), what)

        X = rng.standard_normal((M, N)).astype(dtype)
        Y = X if REGISTRY[act_name].from_input else np.ascontiguousarray(
            ref.activation(act_name, 3 * X, p).astype(dtype))     # saturated ones too
        flats = [0.0, 0.01] if REGISTRY[act_name].output_range else [0.0]
        for flat in flats:
            lo, hi = REGISTRY[act_name].flat_spot_bounds(flat) or (0.0, 0.0)
            what = f"DERIV {act_name} s={s_back} flat_spot={flat}"
            out, _ = run(kind=2, act=code, act_param=p, Y=Y, steepness=s_back,
                         flat_lo=lo, flat_hi=hi)
            expected = ref.gemm(A, B, trans_a=ta, trans_b=tb, kind=2, act=code, act_param=p,
                                Y=Y.astype(np.float64), steepness=s_back, flat_lo=lo,
                                flat_hi=hi)
            d = s_back * np.abs(ref.activation_derivative(
                act_name, np.clip(Y, lo, hi) if flat else Y.astype(np.float64), p))
            # the bounds are rounded to the dtype: f' moves by at most DLIP * eps
            bound = r * mag * d + (FUNC_ULPS * e * np.abs(expected)
                                   + s_back * DLIP[act_name] * e * mag)
            if REGISTRY[act_name].from_input:     # f'(x): terms that may cancel
                bound = bound + FUNC_ULPS * e * s_back * LIP[act_name] * mag
            assert_within(out, expected, bound, what)
            if flat:
                assert (np.clip(Y, lo, hi) != Y).any(), "the flat spot never bit"


# (kind, act, extra epilogue fields) of the products a 1-wide output layer and
# a layer of few inputs train with, and an update with beta = 1.
NARROW_EPILOGUES = {
    "sigmoid_steep_Z": dict(kind=1, act="sigmoid", steepness=0.5, Z=True),
    "tanh": dict(kind=1, act="tanh"),
    "linear": dict(kind=1, act="linear"),
    "softplus": dict(kind=1, act="softplus"),     # the scalar pass on some kernels
    "dsigmoid_flat": dict(kind=2, act="sigmoid", flat_lo=0.1, flat_hi=0.9),
    "dsilu": dict(kind=2, act="silu"),
    "axpby": dict(kind=0, alpha=-0.25, beta=1.0),
}


@pytest.mark.parametrize("kernel", OWN_KERNELS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("trans", TRANS, ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("epi", NARROW_EPILOGUES)
def test_a_column_or_few_rows_alone_give_the_bits_of_a_block(kernel, dtype, trans, epi):
    """The determinism contract across the paths of tiny layers: a product of
    one column (gemm_col, VL rows per vector) equals that column of a wider
    product, and a product of a few rows one vector wide (the narrow MR-row
    tile, B read in place) equals those rows of a taller one, bit for bit;
    for every K blocking (K over KC) and row counts that are not a multiple
    of the vector width."""
    ta, tb = trans
    spec = dict(NARROW_EPILOGUES[epi])
    act = spec.pop("act", "linear")
    want_Z = spec.pop("Z", False)
    rng = np.random.default_rng(11)
    for M, N, K in [(37, 5, 16), (300, 3, 8), (21, 16, 300), (8, 16, 256), (5, 48, 40),
                    (1, 3, 7)]:
        A, B = _operands(M, N, K, ta, tb, dtype, seed=M + N + K)
        C0 = rng.standard_normal((M, N)).astype(dtype)
        Y = rng.uniform(-0.9, 0.95, (M, N)).astype(dtype)
        bias = rng.standard_normal(N).astype(dtype)

        def run(A, B, C, Y, bias, M, N):
            kw = dict(spec, trans_a=ta, trans_b=tb, act=ACTS.index(act))
            Z = np.full((M, N), np.nan, dtype) if want_Z else None
            if spec["kind"] == 1:
                kw.update(bias=bias, Z=Z)
            if spec["kind"] == 2:
                kw.update(Y=Y)
            out = _run(A, B, M, N, dtype, kernel, 1, C=C if spec["kind"] == 0 else None,
                       **kw)
            return out, Z

        block, Zb = run(A, B, C0, Y, bias, M, N)
        opA, opB = (A.T if ta else A), (B.T if tb else B)

        def operands(rows, cols):
            As, Bs = opA[rows], opB[:, cols]
            return (np.ascontiguousarray(As.T if ta else As),
                    np.ascontiguousarray(Bs.T if tb else Bs))
        for j in {0, N - 1}:                     # one column
            col = slice(j, j + 1)
            As, Bs = operands(slice(None), col)
            alone, Za = run(As, Bs, np.ascontiguousarray(C0[:, col]),
                            np.ascontiguousarray(Y[:, col]), bias[col], M, 1)
            np.testing.assert_array_equal(alone.view(np.uint8), block[:, col].view(np.uint8))
            if want_Z:
                np.testing.assert_array_equal(Za, Zb[:, col])
        rows = slice(M // 2, min(M, M // 2 + 5))   # a few rows
        As, Bs = operands(rows, slice(None))
        m = rows.stop - rows.start
        alone, Za = run(As, Bs, np.ascontiguousarray(C0[rows]), np.ascontiguousarray(Y[rows]),
                        bias, m, N)
        np.testing.assert_array_equal(alone.view(np.uint8), block[rows].view(np.uint8))
