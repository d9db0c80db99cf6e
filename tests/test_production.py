"""fastnn inside other people's programs: forked workers, signals, thread limits,
exceptions inside fit.

Covers:
* forked workers - after the parent ran a two-thread call (libgomp's pool
  exists), ``multiprocessing.Pool.map`` over ``predict`` with the default
  ``n_threads``, a bare ``os.fork()`` child asking for two threads,
  ``Perceptron(n_jobs=2)`` in a child, and joblib's "multiprocessing" backend
  neither hang nor differ from the parent's results (bit for bit); the child
  runs one thread.
* signals - ``predict``, ``evaluate``, ``forward`` and ``gradients`` stop
  soon after a signal whose handler raised, and raise its exception
  (KeyboardInterrupt from SIGINT, SystemExit from ``sys.exit`` in a SIGTERM
  handler, TimeoutError from a SIGALRM handler); ``fit`` turns Ctrl-C into a
  normal return (tests/test_loop.py) and lets the others escape, with the
  model as at the last finished batch (replayed bit for bit).
* threads - ``n_threads`` is capped at the cores the process may use; inside
  ``threadpoolctl.threadpool_limits(1)`` the default is one thread; under
  ``RLIMIT_NPROC`` = 0 (no thread may start) every call runs on one thread
  with the same results and a RuntimeWarning, the process does not exit; a
  ``threadpool_limits`` set by another thread stays in force while fastnn
  computes.
* exceptions inside fit - from ``on_epoch_begin``, an ``lr_schedule``,
  ``on_batch_end``, ``on_epoch_end``: the next ``fit`` trains bit-identically
  to that of a network that never saw the failure (stopped at the same batch
  instead), both dtypes, with shuffling, dropout and Adam.

Every subprocess runs with a timeout (a hang fails the test instead of
blocking the suite), and waits for a readiness line, never a fixed sleep,
before a signal is sent.  Tolerances: none, results are compared bit for bit.
Timing: a call stopped by a signal must end within a quarter of the time the
whole call takes (measured in the same process, so load slows both).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest

import fastnn as fn

from conftest import FASTNN_PARENT, assert_same_weights, read_line, run_python, weights

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="fork and signals are POSIX")
needs_openmp = pytest.mark.skipif(not fn._engine.openmp_enabled(),
                                  reason="a serial build starts no thread")


def _run(code, timeout=180, env=None):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "FASTNN_KERNEL")}
    full_env.update({"PYTHONPATH": FASTNN_PARENT, **(env or {})})
    try:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                              cwd=tempfile.gettempdir(), env=full_env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the subprocess hung (killed after {timeout} s): {exc.stdout}\n{exc.stderr}")
    return proc.returncode, proc.stdout, proc.stderr


# -- forked workers -----------------------------------------------------------------

FORK_SETUP = """
    import json, multiprocessing, os, sys
    import numpy as np
    import fastnn as fn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 64)).astype(np.float32)
    net = fn.Network([fn.Dense(64, 512, activation="relu"),
                      fn.Dense(512, 10, activation="softmax")], loss="cross_entropy", seed=0)
    expected = net.predict(X, n_threads=2)     # the parent's OpenMP pool now exists

    def work(i):
        part = X[i * 750:(i + 1) * 750]
        return fn.get_num_threads(), bool(np.array_equal(net.predict(part),
                                                         expected[i * 750:(i + 1) * 750]))
"""

FORK_CASES = {
    "pool_map": """
        with multiprocessing.get_context("fork").Pool(2) as pool:
            results = pool.map(work, range(4))
        print(json.dumps({"threads": [r[0] for r in results], "same": all(r[1] for r in results)}))
    """,
    "os_fork": """
        pid = os.fork()
        if pid == 0:
            same = np.array_equal(net.predict(X, n_threads=2), expected)
            os._exit(0 if same and fn.get_num_threads(2) == 1 else 3)
        status = os.waitpid(pid, 0)[1]
        print(json.dumps({"threads": [1], "same": os.waitstatus_to_exitcode(status) == 0}))
    """,
    "perceptron": """
        pytest_skip = False
        try:
            import sklearn  # noqa: F401  (fastnn.Perceptron needs it)
        except ImportError:
            print(json.dumps({"skip": "needs scikit-learn"})); sys.exit(0)
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0) + 2 * (X[:, 2] > 0)
        def fit_perceptron():
            return fn.Perceptron(n_jobs=2, random_state=0, max_iter=20).fit(X, y).coef_
        parent = fit_perceptron()                # the Perceptron's own OpenMP loop
        pid = os.fork()
        if pid == 0:
            os._exit(0 if np.array_equal(fit_perceptron(), parent) else 3)
        status = os.waitpid(pid, 0)[1]
        print(json.dumps({"threads": [1], "same": os.waitstatus_to_exitcode(status) == 0}))
    """,
    "joblib": """
        try:
            from joblib import Parallel, delayed
        except ImportError:
            print(json.dumps({"skip": "needs joblib"})); sys.exit(0)
        results = Parallel(n_jobs=2, backend="multiprocessing")(delayed(work)(i)
                                                                  for i in range(4))
        print(json.dumps({"threads": [r[0] for r in results], "same": all(r[1] for r in results)}))
    """,
}


@posix_only
@pytest.mark.parametrize("case", FORK_CASES)
def test_forked_children_compute_on_one_thread_without_hanging(case):
    code, out, err = _run(textwrap.dedent(FORK_SETUP) + textwrap.dedent(FORK_CASES[case]),
                          timeout=180)
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    assert result["same"], result
    assert set(result["threads"]) == {1}, result


def test_forked_child_flag_is_off_in_this_process():
    assert not fn._engine.forked_child()


# -- signals -----------------------------------------------------------------------

SIGNAL_CALL = """
    import json, os, signal, sys, threading, time
    import numpy as np
    import fastnn as fn

    method, kind = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    net = fn.Network([fn.Dense(64, 2048, activation="relu"),
                      fn.Dense(2048, 2048, activation="relu"),
                      fn.Dense(2048, 10, activation="softmax")], loss="cross_entropy", seed=0)
    rows = {"predict": 24000, "evaluate": 24000, "forward": 6000, "gradients": 3000}[method]
    X = rng.normal(size=(rows, 64)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    call = {"predict": lambda X, y: net.predict(X),
            "evaluate": lambda X, y: net.evaluate(X, y),
            "forward": lambda X, y: net.forward(X),
            "gradients": lambda X, y: net.gradients(X, y)}[method]
    # The whole call's time, from an eighth of it (load slows both alike).
    t0 = time.perf_counter()
    call(X[:rows // 8], y[:rows // 8])
    whole = 8 * (time.perf_counter() - t0)

    class Alarm(Exception):
        pass
    if kind == "term":
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(7))
    elif kind == "alarm":
        def on_alarm(signum, frame):
            raise TimeoutError("deadline")
        signal.signal(signal.SIGALRM, on_alarm)
    sig = {"int": signal.SIGINT, "term": signal.SIGTERM, "alarm": signal.SIGALRM}[kind]
    sent = []

    def send():
        time.sleep(whole / 6)            # well inside the call
        sent.append(time.perf_counter())
        os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()
    try:
        call(X, y)
        outcome, code = "returned", None
    except BaseException as exc:
        outcome, code = type(exc).__name__, getattr(exc, "code", None)
    end = time.perf_counter()
    print(json.dumps({"outcome": outcome, "code": code, "whole": whole,
                      "latency": end - sent[0] if sent else None}))
"""

EXPECTED = {"int": ("KeyboardInterrupt", None), "term": ("SystemExit", 7),
            "alarm": ("TimeoutError", None)}


@posix_only
@pytest.mark.parametrize("kind", ["int", "term", "alarm"])
@pytest.mark.parametrize("method", ["predict", "evaluate", "forward", "gradients"])
def test_a_signal_handlers_exception_stops_the_call_and_is_raised(method, kind):
    script = os.path.join(tempfile.gettempdir(), f"fastnn_signal_{os.getpid()}.py")
    with open(script, "w") as f:
        f.write(textwrap.dedent(SIGNAL_CALL))
    env = {k: v for k, v in os.environ.items() if k != "FASTNN_KERNEL"}
    env["PYTHONPATH"] = FASTNN_PARENT
    try:
        proc = subprocess.run([sys.executable, script, method, kind], capture_output=True,
                              text=True, timeout=300, env=env, cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        pytest.fail("the call did not stop (killed after 300 s)")
    finally:
        os.unlink(script)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["outcome"], out["code"]) == EXPECTED[kind], out
    # Stopped long before the call would have ended (POLL_SECONDS = 0.02 plus
    # one layer of one 256-row chunk, or one tile: milliseconds here).
    assert out["latency"] < out["whole"] / 4, out


FIT_SCRIPT = """
import signal, sys, time
import numpy as np
import fastnn as fn

kind, n_threads, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 100))
y = (X[:, :3].sum(axis=1) > 0).astype(int)
net = fn.Network([fn.Dense(100, 512, activation="tanh"), fn.Dense(512, 2, activation="softmax")],
                 loss="cross_entropy", dtype="float64", seed=0)
if kind == "term":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(7))
elif kind == "alarm":
    def on_alarm(signum, frame):
        raise TimeoutError("deadline")
    signal.signal(signal.SIGALRM, on_alarm)


class Ready(fn.Callback):
    # The parent sends the signal once this line is out: training has begun.
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            print("READY", flush=True)
            if kind == "alarm":
                signal.setitimer(signal.ITIMER_REAL, 0.3)


try:
    hist = net.fit(X, y, epochs=100000, batch_size=64, shuffle=True,
                   optimizer=fn.Adam(lr=0.001), callbacks=[Ready()], n_threads=n_threads)
    print("DONE", hist.interrupted, hist.stop_reason, net.optimizer.step, flush=True)
except BaseException as exc:
    print("RAISED", type(exc).__name__, net.optimizer.step, net._epochs_trained, flush=True)
    raise
finally:
    net.save(path)
"""


def _replay(steps, n_threads, epochs_trained):
    """The same network trained for exactly ``steps`` batches (stopped by a callback)."""
    net = fn.Network([fn.Dense(100, 512, activation="tanh"),
                      fn.Dense(512, 2, activation="softmax")],
                     loss="cross_entropy", dtype="float64", seed=0)

    class StopAt(fn.Callback):
        wants_batches = True

        def on_batch_end(self, batch, logs=None):
            if self.model.optimizer.step == steps:
                self.model.stop_training = True

    data = np.random.default_rng(0).normal(size=(3000, 100))
    labels = (data[:, :3].sum(axis=1) > 0).astype(int)
    net.fit(data, labels, epochs=steps // 47 + 1, batch_size=64, shuffle=True,
            optimizer=fn.Adam(lr=0.001), callbacks=[StopAt()], n_threads=n_threads)
    assert net.optimizer.step == steps and net._epochs_trained == epochs_trained
    return net


def run_until_signal(tmp_path, kind, n_threads, send):
    """Start FIT_SCRIPT, wait for READY, call ``send(proc)``; (returncode, out, err)."""
    script = tmp_path / "train.py"
    script.write_text(FIT_SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([FASTNN_PARENT] + sys.path))
    proc = subprocess.Popen([sys.executable, str(script), kind, str(n_threads),
                             str(tmp_path / "model.fnn")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert read_line(proc).strip() == "READY"
        send(proc)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@posix_only
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("kind", ["term", "alarm"])
def test_fit_lets_a_handlers_exception_escape_with_the_model_at_the_last_batch(
        tmp_path, kind, n_threads):
    def send(proc):
        if kind == "term":
            proc.send_signal(signal.SIGTERM)   # the alarm comes from the child itself

    code, out, err = run_until_signal(tmp_path, kind, n_threads, send)
    if kind == "term":
        assert code == 7, err                  # sys.exit(7) ended the program
        assert "SystemExit" in out, out
    else:
        assert code == 1 and "TimeoutError: deadline" in err, err
    assert "fastnn: training interrupted" not in err
    line = [l for l in out.splitlines() if l.startswith("RAISED")][0].split()
    steps, epochs_trained = int(line[2]), int(line[3])
    assert steps >= 47                         # at least the first epoch of 47 batches
    loaded = fn.load(tmp_path / "model.fnn")
    assert loaded.optimizer.step == steps
    replay = _replay(steps, n_threads, epochs_trained)
    assert_same_weights(weights(loaded), weights(replay))
    for a, b in zip(loaded.optimizer._state, replay.optimizer._state):
        assert_same_weights(a, b)
    # ... and the shuffling continues alike.
    assert (loaded._rng.bit_generator.state == replay._rng.bit_generator.state)


# -- threads ------------------------------------------------------------------------

def test_n_threads_is_capped_at_the_cores_available():
    cores = fn._config._available_cores()
    assert fn.get_num_threads(1000) == cores
    fn.set_num_threads(1000)
    assert fn.get_num_threads() == cores


THREADPOOL_LIMITS = """
    import json, os
    import numpy as np
    from threadpoolctl import threadpool_limits
    import fastnn as fn

    X = np.random.default_rng(0).normal(size=(4096, 64)).astype(np.float32)
    net = fn.Network([fn.Dense(64, 512, activation="relu"), fn.Dense(512, 8)], seed=0)
    before = len(os.listdir("/proc/self/task"))
    with threadpool_limits(limits=1):
        inside = fn.get_num_threads()
        net.predict(X)
    started = len(os.listdir("/proc/self/task")) - before
    print(json.dumps({"inside": inside, "started": started, "outside": fn.get_num_threads(),
                      "explicit": fn.get_num_threads(2)}))
"""


@needs_openmp
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc (Linux)")
def test_threadpool_limits_one_is_honoured_by_default():
    out = run_python(THREADPOOL_LIMITS, env={"OPENBLAS_NUM_THREADS": "1"})
    cores = fn._config._available_cores()
    assert out["inside"] == 1 and out["started"] == 0, out
    assert out["outside"] == cores and out["explicit"] == min(2, cores), out


NO_THREADS_ALLOWED = """
    import json, os, resource, threading, warnings
    import numpy as np
    import fastnn as fn

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 64)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    def net():
        return fn.Network([fn.Dense(64, 512, activation="relu"),
                           fn.Dense(512, 3, activation="softmax")], loss="cross_entropy", seed=0)
    def everything(n_threads, n_jobs):
        a = net()
        out = [a.predict(X, n_threads=n_threads), a.gradients(X, y, n_threads=n_threads)[0][0]]
        a.fit(X, y, epochs=2, batch_size=512, n_threads=n_threads)
        out += [a.layers[0].W.copy()]
        try:
            out.append(fn.Perceptron(n_jobs=n_jobs, random_state=0, max_iter=5).fit(X, y).coef_)
        except ImportError:       # no scikit-learn
            pass
        return out

    expected = everything(1, 1)       # before the limit, no thread started yet
    if os.geteuid() == 0:             # root is exempt from RLIMIT_NPROC
        os.setgid(65534)
        os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    try:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        enforced = False
    except RuntimeError:
        enforced = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = everything(2, 2)
    print(json.dumps({"enforced": enforced,
                      "same": all(np.array_equal(a, b) for a, b in zip(got, expected)),
                      "warnings": [str(w.message) for w in caught
                                   if issubclass(w.category, RuntimeWarning)]}))
"""


@needs_openmp
@pytest.mark.skipif(not hasattr(os, "setuid") or not os.path.isdir("/proc/self/task"),
                    reason="needs POSIX resource limits")
def test_an_os_refusing_threads_gives_one_thread_not_an_exit():
    code, out, err = _run(NO_THREADS_ALLOWED, env={"OPENBLAS_NUM_THREADS": "1"})
    assert code == 0, f"the process died (exit {code}): {err}"
    result = json.loads(out.strip().splitlines()[-1])
    if not result["enforced"]:
        pytest.skip("RLIMIT_NPROC is not enforced here")
    assert result["same"], result
    assert len(result["warnings"]) == 1, result
    assert "refused to start more threads" in result["warnings"][0]


ANOTHER_THREADS_LIMIT = """
    import json, threading
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits
    import fastnn as fn

    def blas_threads():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    threadpool_limits(limits=2, user_api="blas")
    before = blas_threads()
    net = fn.Network([fn.Dense(8, 64, activation="relu"), fn.Dense(64, 3)], seed=0)
    X = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
    stop = threading.Event()

    def worker():
        while not stop.is_set():
            net.predict(X, n_threads=2)
            net.gradients(X, np.zeros((600, 3)), n_threads=2)

    t = threading.Thread(target=worker)
    t.start()
    seen = []
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            for _ in range(300):
                seen.append(blas_threads())
    finally:
        stop.set()
        t.join()
    print(json.dumps({"before": before, "seen": seen, "after": blas_threads()}))
"""


def test_another_threads_threadpool_limits_stays_in_force():
    own = [k for k in fn._config.available_kernels() if k != "blas"]
    if not own:
        pytest.skip("only the blas kernel here, which holds BLAS at one thread")
    out = run_python(ANOTHER_THREADS_LIMIT, env={"FASTNN_KERNEL": own[0]})
    if out["before"] != [2]:
        pytest.skip(f"this BLAS cannot be set to 2 threads here ({out['before']})")
    assert all(s == [1] for s in out["seen"]), out["seen"]
    assert out["after"] == [2]


# -- exceptions inside fit ---------------------------------------------------------------

rng = np.random.default_rng(3)
XF = rng.normal(size=(90, 6))
YF = (XF[:, 0] > 0).astype(int) + (XF[:, 1] > 0)


def _net(dtype):
    return fn.Network([fn.Dense(6, 16, activation="relu", dropout=0.2),
                       fn.Dense(16, 3, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=5)


class Boom(Exception):
    pass


def _fail_at(where, epoch, batch=None):
    """A callback raising Boom at the given point (and a schedule for "lr_schedule")."""
    if where == "lr_schedule":
        def schedule(e):
            if e == epoch:
                raise Boom()
            return 0.01
        return {"lr_schedule": schedule}

    class Fail(fn.Callback):
        wants_batches = where == "on_batch_end"

        def on_epoch_begin(self, e, logs=None):
            if where == "on_epoch_begin" and e == epoch:
                raise Boom()

        def on_batch_end(self, b, logs=None):
            if where == "on_batch_end" and self.model.optimizer.step == batch:
                raise Boom()

        def on_epoch_end(self, e, logs=None):
            if where == "on_epoch_end" and e == epoch:
                raise Boom()

    return {"callbacks": [Fail()]}


def _stop_at(batches):
    class Stop(fn.Callback):
        wants_batches = True

        def on_batch_end(self, b, logs=None):
            if self.model.optimizer.step == batches:
                self.model.stop_training = True
    return [Stop()]


# (where, failing epoch, batch for on_batch_end), and the batches trained when it fails
FAILURES = {
    "on_epoch_begin-first": ("on_epoch_begin", 0, None, 0),
    "on_epoch_begin": ("on_epoch_begin", 2, None, 18),
    "lr_schedule": ("lr_schedule", 1, None, 9),
    "on_batch_end": ("on_batch_end", 1, 13, 13),
    "on_epoch_end": ("on_epoch_end", 1, None, 18),
}


@pytest.mark.parametrize("failure", FAILURES)
def test_an_exception_in_fit_leaves_the_network_as_at_the_last_finished_batch(dtype, failure):
    where, epoch, batch, trained = FAILURES[failure]
    kwargs = dict(batch_size=10, shuffle=True)
    lr = {"lr_schedule": lambda e: 0.01} if where == "lr_schedule" else {}
    failed = _net(dtype)
    before_optimizer = failed.optimizer
    with pytest.raises(Boom):
        failed.fit(XF, YF, epochs=5, optimizer=fn.Adam(0.01), **kwargs,
                   **_fail_at(where, epoch, batch))
    assert failed.optimizer.step == trained if trained else failed.optimizer is before_optimizer
    # A network stopped at the same batch (or never trained) ...
    clean = _net(dtype)
    if trained:
        clean.fit(XF, YF, epochs=5, optimizer=fn.Adam(0.01), **kwargs, **lr,
                  callbacks=_stop_at(trained))
        assert clean.optimizer.step == trained
    assert failed._epochs_trained == clean._epochs_trained
    # ... and the next fit, with the network's own optimizer (or a fresh one).
    opt = {} if trained else {"optimizer": fn.Adam(0.01)}
    h_failed = failed.fit(XF, YF, epochs=2, **kwargs, **opt)
    opt = {} if trained else {"optimizer": fn.Adam(0.01)}
    h_clean = clean.fit(XF, YF, epochs=2, **kwargs, **opt)
    assert h_failed.history["loss"] == h_clean.history["loss"]
    assert_same_weights(weights(failed), weights(clean))
    for a, b in zip(failed.optimizer._state, clean.optimizer._state):
        assert_same_weights(a, b)


def test_a_diverged_epoch_is_undone_with_its_shuffling_and_count(dtype):
    class Explode(fn.Callback):
        wants_batches = True

        def on_batch_end(self, b, logs=None):
            if self.model._epochs_trained == 3 and b == 4:
                self.model.layers[0].W[0, 0] = np.inf

    failed = _net(dtype)
    with pytest.raises(FloatingPointError):
        failed.fit(XF, YF, epochs=5, batch_size=10, optimizer=fn.SGD(0.05, momentum=0.9),
                   callbacks=[Explode()])
    clean = _net(dtype)
    clean.fit(XF, YF, epochs=2, batch_size=10, optimizer=fn.SGD(0.05, momentum=0.9))
    assert failed._epochs_trained == clean._epochs_trained == 2
    assert failed.optimizer.step == clean.optimizer.step == 18
    failed.fit(XF, YF, epochs=1, batch_size=10)
    clean.fit(XF, YF, epochs=1, batch_size=10)
    assert_same_weights(weights(failed), weights(clean))
