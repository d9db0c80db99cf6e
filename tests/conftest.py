"""Shared fixtures and the error model used by every numerical test.

Tolerances
----------
Every comparison with the NumPy reference is made against a bound on the
rounding error, never against a bare constant:

* A dot product of length K accumulated in precision ``eps`` (``np.finfo``'s
  machine epsilon: 1.19e-7 for float32, 2.22e-16 for float64) has an error of
  at most ``gamma_K * (|a| . |b|)`` with ``gamma_K ~ K * eps`` in the worst
  case; with rounding errors behaving like a random walk (any blocked or FMA
  accumulation order) it is ``~ sqrt(K) * eps * (|a| . |b|)``.  We use
  ``rtol(K) = 4 * sqrt(K + 1) * eps`` relative to that *magnitude*
  (``|A| @ |B|``, plus |bias| or |beta * C|): the ``+ 1`` covers the epilogue's
  extra rounding (bias add, alpha/beta), and the factor 4 covers both the
  engine's and the reference's own error plus the tail of the random walk.
  For K = 131 that is 5.5e-6 in float32 and 1.0e-14 in float64.
* Elementwise functions (exp, tanh, log1p, expm1 in C vs NumPy) add a few ulp
  of their result: ``FUNC_ULPS * eps * |result|``.
* An error e in an activation's input moves its output by at most Lip * e
  (Lip = the activation's Lipschitz constant), and an error in a layer output
  moves the derivative f'(y) by at most Lip' * e (Lip' = |d f'(y) / dy|).
  ``forward_bound`` and ``gradient_bound`` propagate these first-order bounds
  through a whole network (forward, loss, backward), so network-level tests
  get a per-element tolerance derived from eps and the shapes, not tuned.

The references are evaluated in float64 from the very same (float32-rounded)
parameters and inputs, so they are the oracle for both dtypes.
"""
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import _config, _engine
from fastnn import _reference as ref
from fastnn.activations import CODES, REGISTRY

KERNEL_NAMES = _config.available_kernels()
# fastnn's own kernels keep fnn_gemm.h's position-independence contract; the
# "blas" path does not (OpenBLAS may round an edge block differently), and
# stays thread-count deterministic only through the engine's fixed tiles.
OWN_KERNELS = [k for k in KERNEL_NAMES if k != "blas"]
DTYPES = [np.float32, np.float64]
ACTS = sorted(CODES, key=CODES.get)          # every activation, by engine code
# The elementwise activations backpropagation trains, from the registry.
DIFFERENTIABLE = [a for a in ACTS if REGISTRY[a].differentiable and REGISTRY[a].elementwise]
FROM_INPUT = [a for a in ACTS if REGISTRY[a].from_input]
FUNC_ULPS = 8
# Non-default parameters, so a kernel that ignored act_param would be caught.
ACT_PARAM = {"leaky_relu": 0.1, "elu": 0.8}

# Lipschitz constants of f (w.r.t. x) and of f'(u) (w.r.t. u: the output y, or
# x for the FROM_INPUT activations), see the docstring.  silu: max |f'| =
# 1.0998, max |f''| = 0.5; gelu (tanh form): 1.1290 and 0.7979.
LIP = {"linear": 1.0, "sigmoid": 0.25, "tanh": 1.0, "relu": 1.0, "leaky_relu": 1.0,
       "elu": 1.0, "softplus": 1.0, "softmax": 1.0, "silu": 1.1, "gelu": 1.13}
DLIP = {"linear": 0.0, "sigmoid": 1.0, "tanh": 2.0, "relu": 0.0, "leaky_relu": 0.0,
        "elu": 1.0, "softplus": 1.0, "softmax": 0.0, "silu": 0.5, "gelu": 0.8}


def eps(dtype):
    return float(np.finfo(dtype).eps)


def rtol(dtype, K):
    """Relative (to the |A| @ |B| magnitude) tolerance of a K-term product."""
    return 4.0 * np.sqrt(K + 1.0) * eps(dtype)


@pytest.fixture
def alternating():
    """Every batch of a fit its own slice, alternating one thread and a team
    (the thread governor's worst case: results must not change)."""
    previous = _engine.alternate_threads_for_tests(True)
    yield
    _engine.alternate_threads_for_tests(previous)


@pytest.fixture(params=KERNEL_NAMES)
def kernel(request):
    """Every kernel compiled and usable here, forced with fastnn.set_kernel."""
    fastnn.set_kernel(request.param)
    yield request.param
    fastnn.set_kernel(None)


@pytest.fixture(scope="session", autouse=True)
def _single_threaded_blas():
    """NumPy's BLAS (the reference, and the "blas" kernel) at one thread: the
    engine runs its own OpenMP threads, and an OpenBLAS pool spinning next to
    them on 2 cores slows every call down by 10-100x."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(autouse=True)
def _reset_config():
    yield
    fastnn.set_kernel(None)
    fastnn.set_num_threads(None)


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


# ---------------------------------------------------------------------------
# Network helpers


def make_net(sizes, acts, loss="mse", dtype=np.float32, seed=0, use_bias=True,
             bias_scale=0.3, steepness=None, flat_spot=None):
    """A Network with random (seeded) weights and non-zero biases;
    ``steepness`` and ``flat_spot``: None or one value per layer."""
    layers = [fastnn.Dense(a, b, activation=act, alpha=ACT_PARAM.get(act),
                           use_bias=use_bias if not isinstance(use_bias, (list, tuple))
                           else use_bias[i],
                           steepness=1.0 if steepness is None else steepness[i],
                           flat_spot=0.0 if flat_spot is None else flat_spot[i])
              for i, (a, b, act) in enumerate(zip(sizes[:-1], sizes[1:], acts))]
    net = fastnn.Network(layers, loss=loss, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    for layer in net.layers:
        if layer.b is not None:
            layer.b = rng.uniform(-bias_scale, bias_scale, layer.n_out)
    return net


def params64(net):
    """The network's parameters as float64 copies, for the reference."""
    W = [l.W.astype(np.float64) for l in net.layers]
    b = [None if l.b is None else l.b.astype(np.float64) for l in net.layers]
    acts = [(l.activation, l.alpha) if l.steepness == 1 and not l.flat_spot
            else (l.activation, l.alpha, l.steepness, l.flat_spot) for l in net.layers]
    return W, b, acts


def targets(loss, y, n_out):
    """Dense float64 targets as the engine sees them."""
    y = np.asarray(y)
    if loss == "cross_entropy" and y.ndim == 1:
        T = np.zeros((len(y), n_out))
        T[np.arange(len(y)), y] = 1
        return T
    return np.asarray(y, np.float64).reshape(len(y), -1)


def random_targets(rng, loss, n, n_out):
    if loss == "cross_entropy":
        return rng.integers(0, n_out, n)
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, (n, n_out)).astype(np.float64)
    if loss == "poisson":
        return rng.poisson(1.5, (n, n_out)).astype(np.float64)
    if loss == "fann_tanh":           # the error of a tanh output stays in (-1, 1)
        return rng.uniform(-1.0, 1.0, (n, n_out))
    return rng.normal(size=(n, n_out))


def _lip(act, alpha):
    if act in ("leaky_relu", "elu"):
        return max(1.0, alpha)
    return LIP[act]


def _spec(act):
    """(name, alpha, steepness, flat_spot) of params64's per-layer tuple."""
    name, alpha, *rest = act
    return name, alpha, (rest[0] if rest else 1.0), (rest[1] if len(rest) > 1 else 0.0)


def forward_bound(W, b, acts, X, dtype, inputs=False):
    """(reference outputs, per-element error bounds) of a forward pass in ``dtype``.

    Bound of layer l: its activation inputs s * Z have the error
    Ex_l = s * (E_{l-1} @ |W| + rtol(K) * (|A_{l-1}| @ |W| + |b|)), its outputs
    E_l = Lip * Ex_l + FUNC_ULPS * eps * |A_l|; a softmax row moves by at most
    p_i * (e_i + max_j e_j) <= 2 * p_i * max_j e_j.  ``inputs``: also return
    the activation inputs and their bounds.
    """
    e = eps(dtype)
    outs, xs = ref.forward(W, b, acts, X, [None] * len(W), inputs=True)[::2]
    bounds, xbounds, A, E = [], [], X, np.zeros_like(X)
    for Wl, bl, act, O in zip(W, b, acts, outs):
        act, alpha, s, _ = _spec(act)
        mag = np.abs(A) @ np.abs(Wl) + (0 if bl is None else np.abs(bl))
        Ez = s * (E @ np.abs(Wl) + rtol(dtype, Wl.shape[0]) * mag)
        if act == "softmax":
            E = 2 * O * Ez.max(axis=1, keepdims=True) + FUNC_ULPS * e * O
        else:
            E = _lip(act, alpha) * Ez + FUNC_ULPS * e * np.abs(O)
        bounds.append(E)
        xbounds.append(Ez)
        A = O
    return (outs, bounds, xs, xbounds) if inputs else (outs, bounds)


def _dact(act, y, alpha):
    return ref.activation_derivative(act, y, alpha)


def _derivative_and_bound(act_spec, O, EO, Xa, EXa, dtype):
    """A layer's s * f'(u) (ref.layer_derivative) and the bound on its error
    from the error of u: the output O (EO), or the activation input Xa (EXa),
    whose f' is a sum of terms that may cancel (a few ulp of max |f'|)."""
    act, alpha, s, _ = _spec(act_spec)
    d = ref.layer_derivative(act_spec, O, Xa)
    if REGISTRY[act].from_input:
        return d, s * (DLIP[act] * EXa + FUNC_ULPS * eps(dtype) * LIP[act])
    return d, s * DLIP[act] * EO


def gradient_bound(W, b, acts, loss, X, T, dtype):
    """(reference loss, reference grads, bounds on (dW, db) per layer) in ``dtype``.

    First-order propagation of the forward bounds through the output delta,
    the hidden deltas D[l-1] = (D[l] @ W[l].T) * s f'(u[l-1]) and the products
    dW = A.T @ D, db = sum(D) (see the module docstring).
    """
    e = eps(dtype)
    n = X.shape[0]
    loss_value, grads = ref.gradients(W, b, acts, loss, X, T)
    outs, Eouts, xs, Exs = forward_bound(W, b, acts, X, dtype, inputs=True)
    O, EO = outs[-1], Eouts[-1]
    act, alpha, s, _ = _spec(acts[-1])
    if loss in ("cross_entropy", "binary_cross_entropy"):
        D = s * (O - T) / n
        ED = s * EO / n + FUNC_ULPS * e * np.abs(D)
    elif loss == "poisson":           # linear output z, delta exp(z) - t, exp in double
        P = np.exp(O)
        D = s * (P - T) / n
        ED = s * P * EO / n + FUNC_ULPS * e * np.abs(D)
    elif loss == "fann_tanh":         # FANN's error g(s (o - t)), g' = 2 s / (1 - u^2)
        from fastnn import losses
        d = _dact(act, O, alpha)
        U, s = losses.fann_difference(act, O, T)
        fann = losses.get("fann_tanh")
        g = fann.error(U)
        dg = np.where(np.abs(U) > fann.CLIP, 0.0, 2 * s / (1 - np.minimum(U * U, fann.CLIP)))
        D = g * d / n
        ED = (EO * np.abs(d) * dg + np.abs(g) * DLIP[act] * EO) / n + FUNC_ULPS * e * np.abs(D)
    elif act == "softmax":
        G = (O - T) / n
        sm = np.sum(G * O, axis=1, keepdims=True)
        Es = np.sum(EO / n * O + np.abs(G) * EO, axis=1, keepdims=True)
        D = s * O * (G - sm)
        ED = s * (EO * np.abs(G - sm) + O * (EO / n + Es)
                  + FUNC_ULPS * e * (np.abs(O) * (np.abs(G) + np.abs(sm))))
    else:
        d, Ed = _derivative_and_bound(acts[-1], O, EO, xs[-1], Exs[-1], dtype)
        D = (O - T) * d / n
        ED = (EO * np.abs(d) + np.abs(O - T) * Ed) / n + FUNC_ULPS * e * np.abs(D)
    Ds, EDs = [None] * len(W), [None] * len(W)
    Ds[-1], EDs[-1] = D, ED
    for l in range(len(W) - 1, 0, -1):
        d, Ed = _derivative_and_bound(acts[l - 1], outs[l - 1], Eouts[l - 1], xs[l - 1],
                                      Exs[l - 1], dtype)
        P = Ds[l] @ W[l].T
        EP = EDs[l] @ np.abs(W[l]).T + rtol(dtype, W[l].shape[1]) * (np.abs(Ds[l]) @ np.abs(W[l]).T)
        Ds[l - 1] = P * d
        EDs[l - 1] = (EP * np.abs(d) + np.abs(P) * Ed
                      + FUNC_ULPS * e * np.abs(P * d))
    inputs, Einputs = [X] + outs[:-1], [np.zeros_like(X)] + Eouts[:-1]
    bounds = []
    for A, EA, D, ED, bl in zip(inputs, Einputs, Ds, EDs, b):
        EW = np.abs(A).T @ ED + EA.T @ np.abs(D) + rtol(dtype, n) * (np.abs(A).T @ np.abs(D))
        Eb = None if bl is None else ED.sum(axis=0) + rtol(dtype, n) * np.abs(D).sum(axis=0)
        bounds.append((EW, Eb))
    return loss_value, grads, bounds


def assert_within(actual, expected, bound, what=""):
    """|actual - expected| <= bound elementwise, with a helpful message."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    err = np.abs(actual - expected)
    bad = ~(err <= bound)          # also catches NaN
    if bad.any():
        idx = np.argwhere(bad)[0]
        ratio = np.max(np.where(bound > 0, err / np.where(bound > 0, bound, 1), np.inf))
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} elements outside the error bound; "
            f"first at {tuple(idx)}: got {actual[tuple(idx)]!r}, expected "
            f"{expected[tuple(idx)]!r}, bound {np.broadcast_to(bound, err.shape)[tuple(idx)]!r}; "
            f"max err/bound = {ratio:.3g}")


# ---------------------------------------------------------------------------
# Subprocesses: thread counts, environment variables and memory are measured
# in a fresh interpreter (no session-wide BLAS limit, no earlier thread pool).

# The folder holding the fastnn these tests imported (installed or built in
# place), so that the subprocess runs the same one.
FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))


# In a fresh interpreter without scikit-learn: the error of fastnn.<name>.
NO_SKLEARN = """
    import json, sys
    sys.modules["sklearn"] = None
    import fastnn
    try:
        fastnn.{name}
        print(json.dumps({{"error": None}}))
    except ImportError as exc:
        print(json.dumps({{"error": str(exc)}}))
"""


def run_python(code, env=None, timeout=120):
    """Run ``code`` in a fresh interpreter that imports this fastnn, from a
    neutral folder; return the JSON object printed on its last stdout line."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FASTNN_KERNEL")}
    full_env.update({"PYTHONPATH": FASTNN_PARENT, **(env or {})})
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                          cwd=tempfile.gettempdir(), env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"subprocess failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def weights(net):
    """Copies of every layer's (W, b)."""
    return [(l.W.copy(), None if l.b is None else l.b.copy()) for l in net.layers]


def assert_same_weights(a, b):
    """Two weights() lists are bit-identical."""
    assert len(a) == len(b)
    for (Wa, ba), (Wb, bb) in zip(a, b):
        np.testing.assert_array_equal(Wa, Wb)
        if ba is None or bb is None:
            assert ba is None and bb is None
        else:
            np.testing.assert_array_equal(ba, bb)


def read_line(proc, timeout=300):
    """The next line of a subprocess's stdout, or fail after ``timeout`` seconds
    (a child that hangs before printing must not block the suite)."""
    import selectors
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            proc.kill()
            pytest.fail(f"no line from the subprocess within {timeout} s")
    return proc.stdout.readline()
