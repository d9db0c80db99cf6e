"""The float32 vector exp of the AVX2 and AVX-512 kernels, and the activations
built on it (csrc/fnn_activations.h: FNN_VEXPF_REDUCE, FNN_DEFINE_VEXPF,
FNN_VACT_EXP_CASES, FNN_VDACT_EXP_CASES), against NumPy in float64.

Inputs: a sweep of the whole float32 range (every 4099th bit pattern, which
covers normals, subnormals and both signs), dense linear sweeps over the
ranges that matter (the reduction's [-104, 88.8], around 0), and the
extremes: +-0, subnormals, +-88.72 (the overflow threshold), +-103.97 (the
underflow one), +-inf, NaN, +-3e38.

Tolerances (float32; the kernels keep libm for float64, which is checked
bit for bit):
* exp and expm1: 2 ulp of the correctly rounded result (measured 1.00 and
  1.43); the ulp of a subnormal result is the smallest subnormal, 2^-149.
* sigmoid, tanh, elu: 3 ulp (measured 2.2, 2.5, 1.9).
* silu, gelu and the derivatives of softplus, silu and gelu are products and
  sums over the logistic, and ill-conditioned in places (f' of silu and gelu
  crosses 0; gelu's argument 2c (x + a x^3) carries its own rounding into
  exp): their error is bounded by 8 eps times the sum of the magnitudes of
  the terms the formula adds (with the argument's rounding propagated),
  plus 4 smallest subnormals times the result's sensitivity to the
  logistic (max(1, |x|) for silu and gelu) for subnormal values of it.  The
  scalar libm forms (the generic kernel) meet the same bounds.
Exact: the limits (sigmoid 0 and 1, tanh +-1, exp 0 and inf, expm1 -1) and
NaN in, NaN out, never a NaN from a finite or infinite input.
"""
import numpy as np
import pytest

from fastnn import _engine
from fastnn.activations import CODES

from conftest import KERNEL_NAMES

VEXP_KERNELS = [k for k in ("avx2", "avx512") if k in KERNEL_NAMES]
pytestmark = pytest.mark.skipif(not VEXP_KERNELS, reason="no AVX2 or AVX-512 kernel here")

EPS = float(np.finfo(np.float32).eps)
TINY = 2.0 ** -149                       # the smallest float32 subnormal
C_GELU, A_GELU = np.sqrt(2.0 / np.pi), 0.044715
ELU_ALPHA = 0.8

EXTREMES = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40, 1.1754944e-38, -1.1754944e-38,
                     1e-7, -1e-7, 2.0 ** -12, -2.0 ** -12, 0.625, -0.625, 1.0, -1.0,
                     88.72283, 88.72284, -88.72283, -88.72284, 88.8, -87.33655, -87.34,
                     -103.97, -103.98, -104.0, -150.0, 150.0, 1e10, -1e10, 3e38, -3e38,
                     np.inf, -np.inf, np.nan], np.float32)


def _inputs():
    rng = np.random.default_rng(12)
    sweep = np.arange(0, 2 ** 32, 4099, dtype=np.uint64).astype(np.uint32).view(np.float32)
    parts = [sweep[~np.isnan(sweep)],
             np.linspace(-110, 95, 200_001, dtype=np.float32),
             np.linspace(-1, 1, 100_001, dtype=np.float32),
             (rng.standard_normal(50_000) * 4).astype(np.float32),
             EXTREMES]
    return np.concatenate(parts)


X = _inputs()


def _ulps(got, ref64):
    """|got - ref| in ulps of the float32-rounded reference (subnormal ulp 2^-149)."""
    with np.errstate(over="ignore"):
        ulp = np.maximum(np.spacing(np.abs(ref64.astype(np.float32))).astype(np.float64), TINY)
    return np.abs(got.astype(np.float64) - ref64) / ulp


def _check_special(got, ref64, what):
    """Non-finite and NaN results where, and only where, the reference has them."""
    with np.errstate(over="ignore"):
        ref32 = ref64.astype(np.float32)
    nan = np.isnan(ref32)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN where the reference has none, or not"
    inf = np.isinf(ref32)
    np.testing.assert_array_equal(got[inf], ref32[inf], err_msg=f"{what}: the infinities")
    return ~nan & ~inf


def _sigm(z):
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


# ---------------------------------------------------------------------------
# exp and expm1 themselves (the kernels' test hook)

@pytest.mark.parametrize("kernel", VEXP_KERNELS)
@pytest.mark.parametrize("minus_one", [False, True], ids=["exp", "expm1"])
def test_vector_exp_within_2_ulp(kernel, minus_one):
    got = _engine.vector_exp(X, kernel, minus_one)
    with np.errstate(over="ignore"):
        ref = (np.expm1 if minus_one else np.exp)(X.astype(np.float64))
    what = "expm1" if minus_one else "exp"
    fin = _check_special(got, ref, what)
    err = _ulps(got[fin], ref[fin])
    worst = int(np.argmax(err))
    assert err[worst] <= 2.0, f"{what}({X[fin][worst]!r}): {err[worst]:.2f} ulp"


@pytest.mark.parametrize("kernel", VEXP_KERNELS)
def test_vector_exp_limits(kernel):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 88.72283, 88.72284, 1e30,
                  -103.97, -103.98, -1e30, 1e-45], np.float32)
    e = _engine.vector_exp(x, kernel)
    np.testing.assert_array_equal(e[:2], [1.0, 1.0])
    assert e[2] == np.inf and e[3] == 0.0 and np.isnan(e[4])
    assert np.isfinite(e[5]) and _ulps(e[5:6], np.exp(x[5:6].astype(np.float64)))[0] <= 2
    assert e[6] == np.inf and e[7] == np.inf
    assert e[8] == np.float32(TINY) and e[9] == 0.0 and e[10] == 0.0 and e[11] == 1.0
    m = _engine.vector_exp(x, kernel, True)
    np.testing.assert_array_equal(m[:2], [0.0, 0.0])
    assert m[2] == np.inf and m[3] == -1.0 and np.isnan(m[4]) and m[10] == -1.0
    assert m[11] == np.float32(1e-45)   # expm1(x) = x for subnormal x


def test_vector_exp_unknown_kernel():
    with pytest.raises(ValueError, match="has no vector exp"):
        _engine.vector_exp(X[:4], "generic")


# ---------------------------------------------------------------------------
# The activations and derivatives, through the GEMM's epilogue

def _forward(kernel, act, x, rows):
    """f(x) for every x, as the epilogue computes it: acc = 0, bias = x; rows = 1
    takes the one-row (GEMV) path, more rows the blocked micro-kernel."""
    n = x.size
    C = np.full((rows, n), np.nan, np.float32)
    _engine.gemm_tiled(np.zeros((rows, 1), np.float32), np.zeros((1, n), np.float32), C,
                       kind=1, act=CODES[act], act_param=ELU_ALPHA, bias=x.copy(),
                       kernel=_engine.KERNELS[kernel])
    for r in range(1, rows):
        np.testing.assert_array_equal(C[r].view(np.uint32), C[0].view(np.uint32))
    return C[0]


def _derivative(kernel, act, y, rows):
    """f'(y) for every y (the epilogue's DERIV with acc = 1)."""
    n = y.size
    C = np.full((rows, n), np.nan, np.float32)
    _engine.gemm_tiled(np.ones((rows, 1), np.float32), np.ones((1, n), np.float32), C,
                       kind=2, act=CODES[act], act_param=ELU_ALPHA,
                       Y=np.tile(y, (rows, 1)),
                       kernel=_engine.KERNELS[kernel])
    return C[0]


def _gelu_terms(x):
    """gelu's reference, and the sum of its terms' magnitudes (see the module doc)."""
    z = 2 * C_GELU * (x + A_GELU * x ** 3)
    dz = 2 * C_GELU * (np.abs(x) + A_GELU * np.abs(x) ** 3)   # |z|'s rounding scale
    sg = _sigm(z)
    return x * sg, np.abs(x) * sg + np.abs(x) * sg * (1 - sg) * dz


def _reference(act, x):
    """(f(x) in float64, the magnitude that scales its error: see the module doc)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if act == "sigmoid":
            r = _sigm(x)
        elif act == "tanh":
            r = np.tanh(x)
        elif act == "elu":
            r = np.where(x > 0, x, ELU_ALPHA * np.expm1(np.minimum(x, 0)))
        elif act == "silu":
            r = x * _sigm(x)
            return r, np.abs(r) * (1 + np.abs(x) * (1 - _sigm(x)))
        else:
            return _gelu_terms(x)
    return r, None


ULPS_FORWARD = {"sigmoid": 3.0, "tanh": 3.0, "elu": 3.0}


@pytest.mark.parametrize("kernel", VEXP_KERNELS + ["generic"])
@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "elu", "silu", "gelu"])
def test_vector_activation_vs_numpy(kernel, act, rows):
    if kernel not in KERNEL_NAMES:
        pytest.skip(f"no {kernel} kernel here")
    x = X if rows == 1 else X[::3]
    got = _forward(kernel, act, x, rows)
    x64 = x.astype(np.float64)
    ref, terms = _reference(act, x64)
    fin = _check_special(got, ref, act)
    if terms is None:
        err = _ulps(got[fin], ref[fin])
        worst = int(np.argmax(err))
        assert err[worst] <= ULPS_FORWARD[act], \
            f"{act}({x[fin][worst]!r}): {err[worst]:.2f} ulp"
    else:
        bound = 8 * EPS * terms[fin] + 4 * TINY * np.maximum(1, np.abs(x64[fin]))
        excess = np.abs(got[fin] - ref[fin]) - bound
        worst = int(np.argmax(excess))
        assert excess[worst] <= 0, f"{act}({x[fin][worst]!r}): {got[fin][worst]!r} vs {ref[fin][worst]!r}"


@pytest.mark.parametrize("kernel", VEXP_KERNELS)
def test_vector_activation_limits(kernel):
    x = np.array([np.inf, -np.inf, 1e30, -1e30, 100.0, -100.0, 20.0, -20.0, np.nan], np.float32)
    s = _forward(kernel, "sigmoid", x, 1)
    np.testing.assert_array_equal(s[:4], [1.0, 0.0, 1.0, 0.0])
    assert s[4] == 1.0 and 0 < s[5] < 1e-43 and np.isnan(s[8])
    t = _forward(kernel, "tanh", x, 1)
    np.testing.assert_array_equal(t[:8], [1, -1, 1, -1, 1, -1, 1, -1])
    assert np.isnan(t[8])
    e = _forward(kernel, "elu", x, 1)
    np.testing.assert_array_equal(e[[1, 3, 5]], np.float32([-ELU_ALPHA] * 3))
    assert e[0] == np.inf and np.isnan(e[8])


def _derivative_reference(act, u):
    with np.errstate(over="ignore", invalid="ignore"):
        if act == "softplus":                  # from the output y >= 0
            r = -np.expm1(-u)
            return r, np.abs(r), 1.0
        if act == "silu":
            sg = _sigm(u)
            return sg * (1 + u * (1 - sg)), sg * (1 + 3 * np.abs(u)), 1 + np.abs(u)
        z = 2 * C_GELU * (u + A_GELU * u ** 3)
        dz = 2 * C_GELU * (np.abs(u) + A_GELU * np.abs(u) ** 3)
        sg = _sigm(z)
        slope = 2 * C_GELU * sg * (1 - sg) * (1 + 3 * A_GELU * u * u)
        r = sg + u * slope
        # sg's own rounding moves 1 - sg: slope / (1 - sg) * |1 - 2 sg| * sg
        lever = 2 * C_GELU * np.abs(u) * (1 + 3 * A_GELU * u * u) * sg * np.abs(1 - 2 * sg)
        terms = sg + 3 * np.abs(u) * slope + lever \
            + (sg * (1 - sg) + np.abs(u) * np.abs(slope)) * dz
        # a subnormal sg is off by up to half its 2^-149 spacing, times d(f')/d(sg)
        return r, terms, 1 + 2 * C_GELU * np.abs(u) * (1 + 3 * A_GELU * u * u)


@pytest.mark.parametrize("kernel", VEXP_KERNELS + ["generic"])
@pytest.mark.parametrize("rows", [1, 2])
@pytest.mark.parametrize("act", ["softplus", "silu", "gelu"])
def test_vector_derivative_vs_numpy(kernel, act, rows):
    if kernel not in KERNEL_NAMES:
        pytest.skip(f"no {kernel} kernel here")
    u = X if rows == 1 else X[::3]
    if act == "softplus":
        u = np.abs(u)                          # softplus outputs are >= 0
    if act == "gelu":                          # keep u^3 finite: gelu' is 0 or 1 beyond
        u = np.clip(u, -1e12, 1e12)
    got = _derivative(kernel, act, u, rows)
    ref, terms, lever = _derivative_reference(act, u.astype(np.float64))
    fin = _check_special(got, ref, "d" + act)
    bound = 8 * EPS * terms[fin] + 4 * TINY * np.broadcast_to(lever, u.shape)[fin]
    excess = np.abs(got[fin] - ref[fin]) - bound
    worst = int(np.argmax(excess))
    assert excess[worst] <= 0, f"{act}'({u[fin][worst]!r}): {got[fin][worst]!r} vs {ref[fin][worst]!r}"


@pytest.mark.parametrize("act", ["sigmoid", "tanh", "elu", "silu", "gelu"])
def test_float64_keeps_libm_bit_for_bit(act):
    """float64 runs libm's exp in every kernel (libfann's weights are matched
    exactly): the SIMD kernels' outputs are the generic kernel's, bit for bit."""
    x = X[::7].astype(np.float64)
    outs = {}
    for kernel in [k for k in ("generic", "avx2", "avx512") if k in KERNEL_NAMES]:
        C = np.empty((1, x.size))
        with np.errstate(all="ignore"):
            _engine.gemm_tiled(np.zeros((1, 1)), np.zeros((1, x.size)), C, kind=1,
                               act=CODES[act], act_param=ELU_ALPHA, bias=x.copy(),
                               kernel=_engine.KERNELS[kernel])
        outs[kernel] = C[0].view(np.uint64)
    for kernel, out in outs.items():
        np.testing.assert_array_equal(out, outs["generic"], err_msg=kernel)
