"""Hardening: thread control, bad input, divergence and model files.

Covers:
* threads - ``n_threads`` is a parameter of every computing call and is
  honoured (counted as OS threads of a fresh process); ``set_num_threads``
  and ``OMP_NUM_THREADS`` set the default, an explicit ``n_threads`` wins;
  BLAS is held at one thread while the "blas" kernel runs (no
  oversubscription) and given back afterwards; fastnn's own kernels leave it
  alone.
* bad input - what test_api_errors.py does not already cover: every computing
  call rejects bad X / y / hyper-parameters with a ValueError or TypeError
  that names the parameter, what was expected and what came, before touching
  the model (weights and optimizer state bit-identical afterwards).
  Non-contiguous, Fortran-ordered, read-only and memory-mapped inputs give
  bit-identical results to a C-contiguous copy, for fit too.
* divergence - FloatingPointError naming the epoch and batch, with the
  weights and optimizer state restored, also when the weights overflow.
* model files - an interrupted save leaves the previous file intact and no
  temporary file; a seeded fuzz of corrupted files (truncation, bit flips,
  oversized headers and arrays, pickles, a zip-bomb-like entry) only ever
  gives ValueError / OSError, and never unpickles.

Tolerances: none - results are compared bit for bit, errors by type and
message.
"""
import inspect
import os
import sys

import numpy as np
import pytest

import fastnn as fn

from conftest import make_net, run_python

COMPUTING_CALLS = ["fit", "predict", "predict_proba", "forward", "evaluate", "gradients"]


# -- threads --------------------------------------------------------------------

@pytest.mark.parametrize("method", COMPUTING_CALLS)
def test_every_computing_call_takes_n_threads(method):
    params = inspect.signature(getattr(fn.Network, method)).parameters
    assert "n_threads" in params, f"Network.{method} has no n_threads parameter"
    assert params["n_threads"].default is None


# A fresh process counts its OS threads (/proc/self/task) around one call: the
# OpenMP team of n threads adds n - 1 of them (libgomp keeps them afterwards,
# hence one process per case).  BLAS is kept at one thread so that it starts
# none of its own.
THREAD_COUNT = """
    import json, os
    import numpy as np
    import fastnn as fn
    from fastnn import _engine

    def n_os_threads():
        return len(os.listdir("/proc/self/task"))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 64))
    y = rng.integers(0, 8, 1024)
    # Large enough that every call is worth two threads (fastnn runs small
    # steps serially), with a margin of 5x.
    net = fn.Network([fn.Dense(64, 512, activation="relu"),
                      fn.Dense(512, 8, activation="softmax")], loss="cross_entropy", seed=0)
    calls = {{
        "fit": lambda **kw: net.fit(X, y, batch_size=256, optimizer=fn.SGD(lr=0.01), **kw),
        "predict": lambda **kw: net.predict(X, **kw),
        "predict_proba": lambda **kw: net.predict_proba(X, **kw),
        "forward": lambda **kw: net.forward(X, **kw),
        "evaluate": lambda **kw: net.evaluate(X, y, **kw),
        "gradients": lambda **kw: net.gradients(X, y, **kw),
    }}
    {setup}
    counts = []
    for kwargs in {calls}:
        before = n_os_threads()
        calls[{method!r}](**kwargs)
        counts.append(n_os_threads() - before)
    print(json.dumps({{"new_threads": counts, "openmp": bool(_engine.openmp_enabled()),
                      "default": fn.get_num_threads()}}))
"""


def _new_threads(method, calls, setup="", env=None):
    code = THREAD_COUNT.format(method=method, calls=calls, setup=setup)
    return run_python(code, env=dict({"OPENBLAS_NUM_THREADS": "1"}, **(env or {})))


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")


@needs_proc
@pytest.mark.parametrize("method", COMPUTING_CALLS)
def test_n_threads_is_honoured_by_every_call(method):
    # OMP_NUM_THREADS=1: the default call starts no thread, so a second thread
    # can only come from the call's own n_threads=2.
    out = _new_threads(method, "[{}, dict(n_threads=1), dict(n_threads=2)]",
                       env={"OMP_NUM_THREADS": "1"})
    assert out["default"] == 1
    two = out["openmp"] and fn._config._available_cores() >= 2   # n_threads is capped at the cores
    assert out["new_threads"] == ([0, 0, 1] if two else [0, 0, 0]), out


@needs_proc
@pytest.mark.parametrize("env,setup,expected_default", [
    ({"OMP_NUM_THREADS": "2"}, "", 2),
    ({"OMP_NUM_THREADS": "2"}, "fn.set_num_threads(1)", 1),   # set_num_threads wins
    ({"OMP_NUM_THREADS": "1"}, "fn.set_num_threads(2)", 2),
], ids=["omp2", "omp2-set1", "omp1-set2"])
def test_default_thread_count(env, setup, expected_default):
    out = _new_threads("predict", "[{}]", setup=setup, env=env)
    expected_default = min(expected_default, fn._config._available_cores())
    assert out["default"] == expected_default
    expected = expected_default - 1 if out["openmp"] else 0
    assert out["new_threads"] == [expected], out


# In a fresh process with BLAS at 2 threads, every engine entry point is
# wrapped to record BLAS's thread counts while it runs.
BLAS_DURING_ENGINE = """
    import json
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits
    import fastnn as fn
    from fastnn import _engine

    def blas_threads():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    seen = []

    def checked(f):
        def call(*args, **kwargs):
            seen.append(blas_threads())
            return f(*args, **kwargs)
        return call

    class CheckedTrainer:
        # Whatever the Trainer's methods are called, each call is checked.
        def __init__(self, *args, **kwargs):
            self._trainer = real_trainer(*args, **kwargs)
        def __getattr__(self, name):
            value = getattr(self._trainer, name)
            return checked(value) if callable(value) else value

    real_trainer = _engine.Trainer
    _engine.forward = checked(_engine.forward)
    _engine.Trainer = CheckedTrainer

    threadpool_limits(limits=2, user_api="blas")
    outside_before = blas_threads()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 6)), rng.integers(0, 3, 300)
    net = fn.Network([fn.Dense(6, 5, activation="tanh"), fn.Dense(5, 3, activation="softmax")],
                     loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=2, optimizer=fn.Adam(), validation_data=(X, y), n_threads=2)
    net.predict(X, n_threads=2); net.predict_proba(X); net.forward(X)
    net.evaluate(X, y); net.gradients(X, y)
    print(json.dumps({"outside_before": outside_before, "inside": seen,
                      "outside_after": blas_threads()}))
"""


@pytest.mark.parametrize("kernel", ["blas", "own"])
def test_blas_is_single_threaded_while_the_blas_kernel_runs(kernel):
    """The "blas" kernel holds BLAS at one thread; fastnn's own kernels make no
    BLAS call and leave its limits alone."""
    own = [k for k in fn._config.available_kernels() if k != "blas"]
    if kernel == "own" and not own:
        pytest.skip("no fastnn kernel on this CPU")
    name = "blas" if kernel == "blas" else own[0]
    out = run_python(BLAS_DURING_ENGINE, env={"FASTNN_KERNEL": name})
    if out["outside_before"] != [2]:
        pytest.skip(f"this BLAS cannot be set to 2 threads here ({out['outside_before']})")
    assert len(out["inside"]) >= 8            # fit's epochs and validation, and every call
    inside = [1] if kernel == "blas" else [2]
    assert all(threads == inside for threads in out["inside"]), out["inside"]
    assert out["outside_after"] == [2], "BLAS's thread count was not given back"


# -- bad input (what test_api_errors.py leaves out) ---------------------------------

X4 = np.random.default_rng(0).normal(size=(8, 4))
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])


def _clf():
    return make_net((4, 6, 3), ("relu", "softmax"), loss="cross_entropy", seed=1)


def _trained_with_state():
    """A classifier and a momentum optimizer that already holds state."""
    net = _clf()
    opt = fn.SGD(lr=0.1, momentum=0.9)
    net.fit(X4, LABELS, epochs=1, optimizer=opt)
    return net, opt


def _everything(net, opt=None):
    """Copies of all a failed call must leave alone: weights, optimizer state, step."""
    arrays = [a.copy() for l in net.layers for a in (l.W, l.b) if a is not None]
    if opt is not None:
        arrays += [a.copy() for buf in (opt._state or []) for pair in buf for a in pair
                   if a is not None]
        arrays.append(np.array(opt.step))
    return arrays


def _assert_same(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def _sparse(shape):
    import scipy.sparse
    return scipy.sparse.csr_matrix(np.ones(shape))


BAD_X = [
    ("ragged", [[1.0, 2.0, 3.0, 4.0]] * 7 + [[1.0, 2.0]], ValueError,
     r"X must be a rectangular array-like of numbers; it cannot be converted"),
    ("sparse", _sparse((8, 4)), TypeError,
     r"X must be a dense array, got a sparse csr_matrix; convert it with X.toarray\(\)"),
    ("too big for float32", np.where(np.eye(8, 4) > 0, 1e39, 1.0), ValueError,
     r"X has values too large for float32 \(largest finite: 3.403e\+38\); got a value of "
     r"magnitude 1e\+39"),
    ("no features", np.ones((8, 0)), ValueError,
     r"X has 0 features, but the network expects 4"),
    ("nan far in", np.concatenate([np.ones((300_000, 4)), [[1, 1, 1, np.nan]]])[-8:].copy(),
     ValueError, "X contains NaN or infinity"),
    ("none-objects", np.array([[None] * 4] * 8), TypeError,
     "X must hold real numbers, got an array of dtype object"),
    ("datetime", np.zeros((8, 4), "datetime64[s]"), TypeError,
     r"X must hold real numbers, got an array of dtype datetime64\[s\]"),
    ("0-d", np.float64(3.0), ValueError, r"X must be a 2-D array .* got an array of shape \(\)"),
]


@pytest.mark.parametrize("what,X,exc,msg", BAD_X, ids=[b[0] for b in BAD_X])
@pytest.mark.parametrize("method", COMPUTING_CALLS)
def test_bad_X_leaves_model_and_optimizer_untouched(what, X, exc, msg, method):
    net, opt = _trained_with_state()
    before = _everything(net, opt)
    call = {"fit": lambda: net.fit(X, LABELS, optimizer=opt),
            "predict": lambda: net.predict(X),
            "predict_proba": lambda: net.predict_proba(X),
            "forward": lambda: net.forward(X),
            "evaluate": lambda: net.evaluate(X, LABELS),
            "gradients": lambda: net.gradients(X, LABELS)}[method]
    with pytest.raises(exc, match=msg):
        call()
    _assert_same(before, _everything(net, opt))


# fit leaves the check of X for NaN and infinity to the engine, which makes it
# as it forms each batch; a bad sample is then found part way through the first
# epoch, after some batches were trained, and fit must undo them.
ENGINE_CHECK_CASES = [  # (shuffle, input_noise, n_threads, dtype)
    (True, 0.0, 1, np.float32), (True, 0.0, 2, np.float64),
    (False, 0.0, 1, np.float64), (False, 0.0, 2, np.float32),
    (True, 0.5, 2, np.float32), (False, 0.5, 1, np.float64),
]


@pytest.mark.parametrize("shuffle,noise,threads,dtype", ENGINE_CHECK_CASES)
@pytest.mark.parametrize("bad", [np.nan, -np.inf])
@pytest.mark.parametrize("fresh_optimizer", [True, False])
def test_bad_sample_found_by_the_engine_undoes_the_whole_fit(shuffle, noise, threads, dtype,
                                                             bad, fresh_optimizer):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(203, 4)), rng.integers(0, 3, 203)
    X[150, 2] = bad                 # the 19th of 26 batches in order
    net, twin = (make_net((4, 6, 3), ("relu", "softmax"), loss="cross_entropy", dtype=dtype,
                          seed=1) for _ in range(2))
    opts = [fn.SGD(lr=0.1, momentum=0.9) for _ in range(2)]
    if not fresh_optimizer:
        for n, o in zip((net, twin), opts):
            n.fit(X[:100], y[:100], epochs=1, optimizer=o)
    before = _everything(net, opts[0])
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.fit(X, y, epochs=3, batch_size=8, shuffle=shuffle, input_noise=noise,
                optimizer=opts[0], n_threads=threads)
    _assert_same(before, _everything(net, opts[0]))
    assert (opts[0]._state is None) == fresh_optimizer
    # Nothing else moved either (shuffling generator, epoch count, net.optimizer):
    # the next fit trains exactly as on a network that never saw the bad one.
    assert net.optimizer is twin.optimizer or net.optimizer.step == twin.optimizer.step
    for n, o in zip((net, twin), opts):
        n.fit(X[:150], y[:150], epochs=2, batch_size=8, shuffle=shuffle, input_noise=noise,
              optimizer=o, n_threads=threads)
    _assert_same(_everything(twin, opts[1]), _everything(net, opts[0]))


def test_engine_reports_a_bad_sample_before_training_its_batch():
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    T = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
    X[21, 0] = np.inf
    for perm in (None, np.arange(40)[::-1].copy()):
        for threads in (1, 2):
            net = make_net((4, 6, 3), ("relu", "softmax"), loss="cross_entropy", seed=1)
            trainer = net._trainer(8, threads, fn.SGD(lr=0.1))
            _, done, _, status = trainer.run_epoch(X, T, perm, check_inputs=True)
            assert status == "bad_input"
            assert done == 16     # row 21 is at position 21 or 18: batch 3 of 5
            _, done, _, status = trainer.run_epoch(X, T, perm)   # not asked: not checked
            assert status != "bad_input"


def test_X_is_checked_before_callbacks_run():
    seen = []

    class Spy(fn.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen.append("begin")

    X = X4.copy()
    X[5, 1] = np.nan
    for kwargs in ({"callbacks": [Spy()]}, {"lr_schedule": fn.schedules.StepDecay(1, 0.5)}):
        net, opt = _trained_with_state()
        before = _everything(net, opt)
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            net.fit(X, LABELS, epochs=2, optimizer=opt, **kwargs)
        _assert_same(before, _everything(net, opt))
    assert seen == []


def test_validation_split_part_of_X_is_checked():
    X = np.random.default_rng(0).normal(size=(40, 4))
    X[-1, 3] = np.inf        # in the last 25%: never seen by the engine
    net = _clf()
    before = _everything(net)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.fit(X, np.arange(40) % 3, validation_split=0.25)
    _assert_same(before, _everything(net))


# Inference leaves the check for NaN and infinity to the engine too: it checks
# each chunk of rows (256) just before the first layer reads it.
@pytest.mark.parametrize("method", ["predict", "predict_proba", "forward", "evaluate"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bad,msg", [
    (np.nan, "X contains NaN or infinity"),
    (np.inf, "X contains NaN or infinity"),
    (1e39, r"X has values too large for float32 \(largest finite: 3.403e\+38\); got a value of "
           r"magnitude 1e\+39"),
])
def test_bad_row_in_a_late_chunk_is_found_in_inference(method, threads, bad, msg):
    net = _clf()
    X = np.random.default_rng(0).normal(size=(1000, 4))
    X[777, 1] = bad                # chunk 4 of 4: the other threads' chunks are fine
    y = np.arange(1000) % 3
    call = {"predict": lambda: net.predict(X, n_threads=threads),
            "predict_proba": lambda: net.predict_proba(X, n_threads=threads),
            "forward": lambda: net.forward(X, n_threads=threads),
            "evaluate": lambda: net.evaluate(X, y, n_threads=threads)}[method]
    with pytest.raises(ValueError, match=msg):
        call()
    X[777, 1] = 0.5
    call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_engine_forward_reports_a_bad_row_only_when_asked(dtype):
    from fastnn import _config, _engine
    net = make_net((4, 6, 3), ("relu", "softmax"), loss="cross_entropy", dtype=dtype, seed=1)
    W, b, acts = net._params()
    X = np.ones((600, 4), dtype)
    X[599, 3] = -np.inf
    out = np.empty((600, 3), dtype)
    for threads in (1, 2):
        args = (W, b, acts, X, [None, out], threads, _config.kernel_code())
        assert _engine.forward(*args, check_inputs=True) is False
        assert _engine.forward(*args) is True


def test_nan_beyond_the_first_block_is_found():
    # all_finite checks exactly, block by block, once the quick sum says "maybe":
    # the NaN sits past the first 2**20 elements.
    X = np.ones((300_000, 4))
    X[-1, -1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        _clf().predict(X)


def test_huge_finite_values_are_not_mistaken_for_infinity():
    # Their float32 sum overflows, but every element is finite: accepted.
    from fastnn._validation import all_finite
    X = np.full((8, 4), 3e38, np.float32)
    assert all_finite(X)
    X[3, 2] = np.inf
    assert not all_finite(X)
    X[3, 2] = -3e38                     # inf - inf in the sum would be NaN: still finite
    assert all_finite(X)


BAD_Y = [
    ("ragged", [[1.0, 0.0, 0.0]] * 7 + [[1.0]], ValueError,
     r"y must be a rectangular array-like of numbers; it cannot be converted"),
    ("sparse", _sparse((8, 3)), TypeError, r"y must be a dense array, got a sparse csr_matrix"),
    ("3-D", np.zeros((8, 3, 1)), ValueError,
     r"y must have shape \(n_samples, 3\) one-hot rows, or \(n_samples,\) integer labels for a "
     r"network with 3 outputs; got shape \(8, 3, 1\)"),
    ("huge label", np.array([0, 1, 2, 0, 1, 2, 0, 1e20]), ValueError,
     r"class labels must be in \[0, 2\] for a network with 3 outputs; got labels from 0 to 1e\+20"),
    ("object", LABELS.astype(object), TypeError, "y must hold numbers, got an array of dtype object"),
    ("one-hot nan", np.where(np.eye(8, 3) > 0, np.nan, 0.0), ValueError, "y contains NaN or infinity"),
    ("scalar", 1, ValueError, r"X and y have different numbers of samples: X has 8, y has shape \(\)"),
]


@pytest.mark.parametrize("what,y,exc,msg", BAD_Y, ids=[b[0] for b in BAD_Y])
@pytest.mark.parametrize("method", ["fit", "evaluate", "gradients"])
def test_bad_y_leaves_model_and_optimizer_untouched(what, y, exc, msg, method):
    net, opt = _trained_with_state()
    before = _everything(net, opt)
    call = {"fit": lambda: net.fit(X4, y, optimizer=opt),
            "evaluate": lambda: net.evaluate(X4, y),
            "gradients": lambda: net.gradients(X4, y)}[method]
    with pytest.raises(exc, match=msg):
        call()
    _assert_same(before, _everything(net, opt))


def test_regression_targets_too_big_for_float32():
    net = make_net((4, 2), ("linear",))
    before = _everything(net)
    with pytest.raises(ValueError, match=r"y has values too large for float32 .*magnitude 1e\+300"):
        net.fit(X4, np.full((8, 2), 1e300))
    _assert_same(before, _everything(net))


BAD_FIT = [
    (dict(epochs=float("inf")), TypeError, "epochs must be a positive integer, got inf"),
    (dict(epochs=float("nan")), TypeError, "epochs must be a positive integer, got nan"),
    (dict(epochs="3"), TypeError, "epochs must be a positive integer, got '3'"),
    (dict(epochs=None), TypeError, "epochs must be a positive integer, got None"),
    (dict(epochs=np.int64(0)), ValueError, "epochs must be a positive integer, got 0"),
    (dict(batch_size=1.0), TypeError, "batch_size must be a positive integer, got 1.0"),
    (dict(batch_size=float("inf")), TypeError, "batch_size must be a positive integer, got inf"),
    (dict(batch_size=None), TypeError, "batch_size must be a positive integer, got None"),
    (dict(n_threads=-1), ValueError, "n_threads must be a positive integer, got -1"),
    (dict(n_threads=1.5), TypeError, "n_threads must be a positive integer, got 1.5"),
    (dict(n_threads="2"), TypeError, "n_threads must be a positive integer, got '2'"),
    (dict(target_loss=float("nan")), ValueError, "target_loss must be a number, got nan"),
    (dict(target_loss="0.1"), TypeError, "target_loss must be a real number, got '0.1'"),
    (dict(optimizer=fn.SGD), TypeError, "optimizer must be a fastnn optimizer .* got type"),
    (dict(validation_data=(X4, LABELS, None)), ValueError,
     r"validation_data must be a tuple \(X_val, y_val\)"),
    (dict(validation_data=(X4, LABELS[:5])), ValueError,
     r"X and y have different numbers of samples: X has 8, y has shape \(5,\)"),
    (dict(validation_data=(np.full((8, 4), np.inf), LABELS)), ValueError,
     "X_val contains NaN or infinity"),
]


@pytest.mark.parametrize("kwargs,exc,msg", BAD_FIT,
                         ids=[f"{k}={v!r}"[:24] for b in BAD_FIT for k, v in b[0].items()])
def test_bad_fit_arguments_leave_model_and_optimizer_untouched(kwargs, exc, msg):
    net, opt = _trained_with_state()
    before = _everything(net, opt)
    with pytest.raises(exc, match=msg):
        net.fit(X4, LABELS, **dict({"optimizer": opt}, **kwargs))
    _assert_same(before, _everything(net, opt))


@pytest.mark.parametrize("n_threads,exc", [(0, ValueError), (-2, ValueError), (2.0, TypeError),
                                           ("1", TypeError), (True, TypeError)])
@pytest.mark.parametrize("method", COMPUTING_CALLS)
def test_bad_n_threads_on_every_call(method, n_threads, exc):
    net = _clf()
    before = _everything(net)
    call = {"fit": lambda: net.fit(X4, LABELS, n_threads=n_threads),
            "predict": lambda: net.predict(X4, n_threads=n_threads),
            "predict_proba": lambda: net.predict_proba(X4, n_threads=n_threads),
            "forward": lambda: net.forward(X4, n_threads=n_threads),
            "evaluate": lambda: net.evaluate(X4, LABELS, n_threads=n_threads),
            "gradients": lambda: net.gradients(X4, LABELS, n_threads=n_threads)}[method]
    with pytest.raises(exc, match=f"n_threads must be a positive integer, got {n_threads!r}"):
        call()
    _assert_same(before, _everything(net))


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: fn.SGD(lr=float("inf")), ValueError, "lr must be a finite number > 0, got inf"),
    (lambda: fn.SGD(lr=-float("inf")), ValueError, "lr must be a finite number > 0, got -inf"),
    (lambda: fn.SGD(lr=None), TypeError, "lr must be a real number, got None"),
    (lambda: fn.SGD(lr=1j), TypeError, r"lr must be a real number, got 1j"),
    (lambda: fn.SGD(lr=True), TypeError, "lr must be a real number, got True"),
    (lambda: fn.SGD(lr=0.1, momentum=float("nan")), ValueError,
     "momentum must be a finite number >= 0, got nan"),
    (lambda: fn.Adam(lr=float("nan")), ValueError, "lr must be a finite number > 0, got nan"),
    (lambda: fn.Adam(lr=float("inf")), ValueError, "lr must be a finite number > 0, got inf"),
    (lambda: fn.Adam(beta2=1.0), ValueError, r"beta2 must be in \[0, 1\), got 1.0"),
    (lambda: fn.Adam(beta1=float("nan")), ValueError, "beta1 must be a finite number >= 0, got nan"),
    (lambda: fn.Adam(eps=float("inf")), ValueError, "eps must be a finite number > 0, got inf"),
    (lambda: fn.Adam(eps=-1e-8), ValueError, "eps must be a finite number > 0, got -1e-08"),
], ids=["sgd-lr-inf", "sgd-lr--inf", "sgd-lr-None", "sgd-lr-complex", "sgd-lr-bool",
        "momentum-nan", "adam-lr-nan", "adam-lr-inf", "beta2-1", "beta1-nan", "eps-inf", "eps-neg"])
def test_bad_optimizer_hyperparameters(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_unknown_kernel_in_the_environment(monkeypatch):
    net = _clf()
    monkeypatch.setenv("FASTNN_KERNEL", "turbo")
    with pytest.raises(ValueError, match=r"FASTNN_KERNEL: unknown kernel 'turbo'; expected one of"):
        net.predict(X4)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: fn.Dense(2, 3, init=3.5), TypeError,
     r"init must be a string, one of .*, or a callable\(rng, n_in, n_out\); got float"),
    (lambda: fn.Network([fn.Dense(2, 2)], loss=None), TypeError, "loss must be a string"),
    (lambda: fn.Network([fn.Dense(2, 2)], dtype="int32"), ValueError,
     "dtype must be 'float32' or 'float64', got 'int32'"),
    (lambda: fn.Network([fn.Dense(2, 2)], dtype=np.complex64), ValueError,
     "dtype must be 'float32' or 'float64'"),
    (lambda: fn.set_kernel(3), ValueError, "unknown kernel 3"),
    (lambda: fn.set_num_threads(2.5), TypeError, "n_threads must be a positive integer, got 2.5"),
])
def test_unknown_names_and_types(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


# -- memory layouts -------------------------------------------------------------------

def _layouts(X, tmp_path):
    """X in every layout a user may hand over, each holding the same numbers."""
    big = np.zeros((2 * X.shape[0], 2 * X.shape[1]), X.dtype)
    big[::2, ::2] = X
    read_only = X.copy()
    read_only.flags.writeable = False
    path = tmp_path / "X.dat"
    mm = np.memmap(path, dtype=X.dtype, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    return {
        "fortran": np.asfortranarray(X),
        "strided": big[::2, ::2],
        "reversed": np.ascontiguousarray(X[::-1])[::-1],
        "read-only": read_only,
        "memmap": np.memmap(path, dtype=X.dtype, mode="r", shape=X.shape),
        "list": X.tolist(),
    }


def test_layouts_give_identical_results(tmp_path, dtype):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(150, 9)).astype(dtype)
    y = rng.integers(0, 4, 150)

    def run(data):
        net = make_net((9, 33, 4), ("tanh", "softmax"), loss="cross_entropy", dtype=dtype, seed=4)
        net.fit(data, y, epochs=2, batch_size=16, optimizer=fn.Adam(lr=0.01), n_threads=2)
        return ([l.W for l in net.layers] + [l.b for l in net.layers]
                + [net.predict(data), net.forward(data)[0], net.gradients(data, y)[0][0],
                   np.array(net.evaluate(data, y)["loss"])])

    expected = run(X)
    for name, variant in _layouts(X, tmp_path).items():
        original = np.array(variant, copy=True)
        got = run(variant)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b, err_msg=name)
        np.testing.assert_array_equal(np.asarray(variant), original, err_msg=f"{name} was modified")


def test_fit_does_not_modify_its_inputs():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(64, 5))
    Y = rng.normal(size=(64, 2))
    X0, Y0 = X.copy(), Y.copy()
    net = make_net((5, 7, 2), ("relu", "linear"), dtype=np.float64)
    for shuffle in (False, True):
        net.fit(X, Y, epochs=2, batch_size=10, shuffle=shuffle, optimizer=fn.SGD(lr=0.01))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)


# -- divergence -----------------------------------------------------------------------

DIVERGED = r"training diverged: the {what} became NaN or infinite in epoch {epoch}"
ADVICE = r"Try a smaller learning rate \(lr=.*\) or scaled inputs"


def test_loss_overflow_names_epoch_and_batch_and_restores(dtype):
    # One weight, loss 1/2 w^2 over 4 identical rows, full-batch SGD with lr=3:
    # w <- -2 w per epoch, exactly (powers of two), so the loss sum of the
    # epoch that starts from w = (-2)^k overflows at a known k: float64 sums
    # 4 * 2^(2k-1) -> inf at k = 512; a float32 weight overflows at k = 128,
    # while its loss (computed in double) is still finite.
    net = fn.Network([fn.Dense(1, 1, use_bias=False)], dtype=dtype)
    net.layers[0].W = [[1.0]]
    X, y = np.ones((4, 1)), np.zeros((4, 1))
    opt = fn.SGD(lr=3.0)
    if dtype == np.float64:
        what, epoch, batch = "loss", 513, ", batch 1"
    else:
        what, epoch, batch = "weights", 128, r" \(found after its batch 1, while the loss was still finite\)"
    with pytest.raises(FloatingPointError,
                       match=DIVERGED.format(what=what, epoch=epoch) + batch + ".*" + ADVICE):
        net.fit(X, y, epochs=600, batch_size=4, shuffle=False, optimizer=opt)
    # restored to the start of that epoch: w = (-2)^(epoch - 1), exactly
    assert net.layers[0].W[0, 0] == (-2.0) ** (epoch - 1)
    assert opt.step == epoch - 1


def test_weights_hidden_by_relu_are_caught():
    # Batch 1 pushes the hidden unit's weights to -inf and +inf with a finite
    # loss; from batch 2 on the unit's input is -inf, relu turns it into 0, the
    # output and the loss stay finite and the infinite weights never change.
    # Only the check of the weights can see it.
    net = fn.Network([fn.Dense(2, 1, activation="relu", use_bias=False),
                      fn.Dense(1, 1, use_bias=False)], dtype="float64")
    net.layers[0].W = [[1.0], [1.0]]
    net.layers[1].W = [[1.0]]
    X = np.array([[1e5, 1.0 - 1e5]] * 2)
    y = np.zeros((2, 1))
    with pytest.raises(FloatingPointError,
                       match=DIVERGED.format(what="weights", epoch=1)
                       + r" \(found after its batch 2, while the loss was still finite\)"):
        net.fit(X, y, epochs=1, batch_size=1, shuffle=False, optimizer=fn.SGD(lr=1e304))
    np.testing.assert_array_equal(net.layers[0].W, [[1.0], [1.0]])
    np.testing.assert_array_equal(net.layers[1].W, [[1.0]])


@pytest.mark.parametrize("make_opt", [lambda: fn.SGD(lr=1e-3, momentum=0.9),
                                      lambda: fn.Adam(lr=1e-3)], ids=["momentum", "adam"])
def test_divergence_restores_weights_and_optimizer_state(make_opt):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 3)), rng.normal(size=(64, 2))
    net = make_net((3, 5, 2), ("tanh", "linear"), dtype=np.float32)
    opt = make_opt()
    net.fit(X, Y, epochs=2, batch_size=16, optimizer=opt)
    before = _everything(net, opt)
    opt.lr = 1e38          # the next update overflows (the loss was finite)
    with pytest.raises(FloatingPointError, match=r"training diverged: the (loss|weights) became "
                                                 r"NaN or infinite in epoch 1.*" + ADVICE):
        net.fit(X * 1e3, Y * 1e3, epochs=3, batch_size=16, optimizer=opt)
    _assert_same(before, _everything(net, opt))
    opt.lr = 1e-3          # and the model trains on from there
    net.fit(X, Y, epochs=1, batch_size=16, optimizer=opt)
    assert all(np.isfinite(l.W).all() for l in net.layers)


# -- model files ----------------------------------------------------------------------

def _model():
    return make_net((5, 7, 3), ("elu", "softmax"), loss="cross_entropy", seed=3,
                    use_bias=(True, False))


class _Interrupted(Exception):
    pass


def _break_savez(monkeypatch, exc):
    """np.savez as seen by fastnn.io writes part of the archive, then raises."""
    import fastnn.io
    real = fastnn.io.np.savez
    calls = []

    def partial_savez(file, *args, **kwargs):
        calls.append(1)
        real(file, *args, **kwargs)
        file.truncate(file.tell() // 2)     # half an archive on disk...
        raise exc                           # ...and the writer dies
    monkeypatch.setattr(fastnn.io.np, "savez", partial_savez)
    return calls


@pytest.mark.parametrize("failure", ["write", "ctrl-c", "fsync", "rename"])
def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch, failure):
    path = tmp_path / "model.fnn"
    old = _model()
    old.save(path)
    old_bytes = path.read_bytes()
    new = make_net((5, 7, 3), ("elu", "softmax"), loss="cross_entropy", seed=99,
                   use_bias=(True, False))
    if failure in ("write", "ctrl-c"):
        calls = _break_savez(monkeypatch, _Interrupted("disk full") if failure == "write"
                             else KeyboardInterrupt())
    else:
        calls = []

        def broken(*args):
            calls.append(1)
            raise OSError(5, f"{failure} failed")
        monkeypatch.setattr(os, "fsync" if failure == "fsync" else "replace", broken)
    with pytest.raises((_Interrupted, KeyboardInterrupt, OSError)):
        new.save(path)
    monkeypatch.undo()
    assert calls, "the failure was not injected: has fastnn.io's writer changed?"
    assert path.read_bytes() == old_bytes, "the old model file was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fnn"], "temporary file left"
    X = np.random.default_rng(0).normal(size=(4, 5))
    np.testing.assert_array_equal(fn.load(path).predict(X), old.predict(X))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_save_is_durable_and_keeps_usual_permissions(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    path = tmp_path / "model.fnn"
    _model().save(path)
    assert synced, "save() did not fsync"
    monkeypatch.undo()
    # A fresh file gets the permissions of any other new file (umask), not the
    # owner-only mode of the temporary file it was written as ...
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~umask)
    # ... and overwriting keeps the mode the file had.
    path.chmod(0o640)
    _model().save(path)
    assert (path.stat().st_mode & 0o777) == 0o640


def _npy_member(name, arr_bytes, header):
    """A stored zip member holding a .npy file with the given header dict."""
    import io as _io
    buf = _io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return name, buf.getvalue() + arr_bytes


def _zip(members, compress=False):
    import io as _io
    import zipfile
    buf = _io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def _members(path):
    import zipfile
    with zipfile.ZipFile(path) as z:
        return [(n, z.read(n)) for n in z.namelist()]


def _crafted_files(good):
    """Hand-made hostile archives built from the members of a good file."""
    members = dict(_members(good))
    W0 = np.lib.format.read_array(__import__("io").BytesIO(members["W0.npy"]))
    out = {}
    # the .npy header of W0 claims 10**9 rows (4 GB) but holds a few bytes
    huge = dict(members)
    huge["W0.npy"] = _npy_member("W0.npy", W0.tobytes(), {
        "descr": W0.dtype.str, "fortran_order": False, "shape": (10 ** 9, 7)})[1]
    out["npy-header-claims-4GB"] = _zip(huge.items())
    # the same, but the model header also declares the huge layer
    import json
    header = json.loads(np.lib.format.read_array(
        __import__("io").BytesIO(members["header.npy"])).tobytes())
    header["layers"][0]["n_in"] = 10 ** 9
    big = dict(huge)
    hb = np.frombuffer(json.dumps(header).encode(), np.uint8)
    big["header.npy"] = _npy_member("header.npy", hb.tobytes(), {
        "descr": "|u1", "fortran_order": False, "shape": hb.shape})[1]
    out["model-header-declares-4GB-layer"] = _zip(big.items())
    # a header member of 8 MB (beyond the 1 MB limit)
    nb = dict(members)
    junk = np.zeros(8 << 20, np.uint8)
    nb["header.npy"] = _npy_member("header.npy", junk.tobytes(), {
        "descr": "|u1", "fortran_order": False, "shape": junk.shape})[1]
    out["8MB-header"] = _zip(nb.items())
    # zip-bomb-like: a deflated W0 of 64 MB of zeros whose declared size is small
    bomb = dict(members)
    bomb["W0.npy"] = members["W0.npy"][:128] + bytes(64 << 20)
    data = bytearray(_zip(bomb.items(), compress=True))
    true_size = len(bomb["W0.npy"]).to_bytes(4, "little")
    fake_size = len(members["W0.npy"]).to_bytes(4, "little")
    out["zip-bomb-declared-small"] = bytes(data.replace(true_size, fake_size))
    out["zip-bomb-declared-large"] = _zip(bomb.items(), compress=True)
    # object arrays (pickles) in place of the weights and of the header
    import pickle
    for key in ("W0.npy", "header.npy"):
        pk = dict(members)
        pk[key] = _npy_member(key, pickle.dumps([1, 2, 3]), {
            "descr": "|O", "fortran_order": False, "shape": (3,)})[1]
        out[f"pickled-{key}"] = _zip(pk.items())
    # a Fortran-ordered, wrong-dtype and wrong-shape W0 with the right byte count
    for name, hdr in [("fortran", {"descr": W0.dtype.str, "fortran_order": True, "shape": (7, 5)}),
                      ("int32", {"descr": "<i4", "fortran_order": False, "shape": W0.shape}),
                      ("transposed", {"descr": W0.dtype.str, "fortran_order": False,
                                      "shape": W0.shape[::-1]})]:
        m = dict(members)
        m["W0.npy"] = _npy_member("W0.npy", W0.tobytes(), hdr)[1]
        out[f"W0-{name}"] = _zip(m.items())
    # trailing bytes after the array data
    m = dict(members)
    m["W0.npy"] = members["W0.npy"] + b"\0" * 64
    out["W0-trailing-bytes"] = _zip(m.items())
    out["pickle"] = pickle.dumps(_model())
    return out


def _load_outcome(path):
    """'ok', or the exception type name of fastnn.load(path), which must be a
    ValueError or an OSError."""
    try:
        net = fn.load(path)
    except (ValueError, OSError) as exc:
        assert "not a valid fastnn model file" in str(exc) or isinstance(exc, OSError), exc
        return type(exc).__name__
    assert isinstance(net, fn.Network)
    return "ok"


def test_crafted_hostile_files_are_refused_without_big_allocations(tmp_path):
    import tracemalloc
    good = tmp_path / "good.fnn"
    _model().save(good)
    for name, data in _crafted_files(good).items():
        path = tmp_path / f"{name}.fnn"
        path.write_bytes(data)
        tracemalloc.start()
        try:
            outcome = _load_outcome(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert outcome == "ValueError", f"{name}: {outcome}"
        # the 8 MB header and the 64 MB bomb are never inflated into memory
        assert peak < (4 << 20), f"{name}: loading allocated {peak / 2**20:.1f} MiB"


def test_fuzzed_model_files_raise_value_error_or_load(tmp_path):
    """Truncations and bit flips all over a model file (seeded, bounded):
    every outcome is a loaded network or a ValueError / OSError."""
    good = tmp_path / "good.fnn"
    ref = _model()
    ref.save(good)
    data = good.read_bytes()
    rng = np.random.default_rng(20240601)
    cases = [("truncated", data[:n]) for n in sorted(set(
        rng.integers(0, len(data), 60).tolist() + [0, 1, 21, 22, len(data) - 1]))]
    for pos in rng.integers(0, len(data), 300):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        cases.append((f"bit flip at {pos}", bytes(flipped)))
    for pos in rng.integers(0, len(data) - 8, 40):
        smashed = bytearray(data)
        smashed[pos:pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
        cases.append((f"8 random bytes at {pos}", bytes(smashed)))
    path = tmp_path / "fuzzed.fnn"
    outcomes = {}
    X = np.random.default_rng(1).normal(size=(3, 5))
    for what, blob in cases:
        path.write_bytes(blob)
        outcome = _load_outcome(path)
        if outcome == "ok":   # a flip in bytes nobody reads: the model must be intact
            np.testing.assert_array_equal(fn.load(path).predict(X), ref.predict(X), err_msg=what)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    assert outcomes.get("ValueError", 0) > len(cases) // 2, outcomes
