"""Data-parallel fit over MPI (fit(..., comm=...)), run for real: mpiexec
with 2 and 3 ranks (unequal shards) starts tests/_mpi_worker.py, whose ranks
write their results; each run is compared with a single-process replay on
the union batches, and the ranks' weights with each other, bit for bit.
Skipped without mpi4py and an mpiexec (``pip install 'fastnn[mpi]'``)."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn

WORKER = Path(__file__).with_name("_mpi_worker.py")


def _mpiexec():
    beside = Path(sys.executable).with_name("mpiexec")   # pip install mpich
    return str(beside) if beside.exists() else shutil.which("mpiexec")


needs_mpi = pytest.mark.skipif(
    importlib.util.find_spec("mpi4py") is None or _mpiexec() is None,
    reason="needs mpi4py and an mpiexec: pip install 'fastnn[mpi]'")

TIMEOUT = 240   # seconds: generous for a loaded 2-core machine


# The ranks of one machine split the update of a large network between them
# (distributed.SharedParameters); the worker's small networks do too with
# SPLIT_MIN_PARAMS=0, and update whole on every rank with WHOLE.
SPLIT, WHOLE = {"SPLIT_MIN_PARAMS": "0"}, {"SPLIT_MIN_PARAMS": str(1 << 16)}


def launch(n, case, tmp_path, check=True, **env):
    cmd = [_mpiexec(), "-n", str(n), sys.executable, str(WORKER), str(tmp_path), case]
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTNN_NUM_THREADS="1", **{**SPLIT, **env})
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                          stdin=subprocess.DEVNULL)
    proc.seconds = time.monotonic() - t0
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def results(n, tmp_path):
    out = []
    for r in range(n):
        with np.load(tmp_path / f"rank{r}.npz") as f:
            out.append({k: f[k] for k in f.files})
    return out


def assert_identical_ranks(res):
    for r in res[1:]:
        for key in res[0]:
            if key[0] in "po":   # parameters, optimizer state
                assert np.array_equal(r[key], res[0][key]), key   # bit for bit
        assert json.loads(str(r["history"])) == json.loads(str(res[0]["history"]))
        assert int(r["step"]) == int(res[0]["step"])


# The worker's data and network (kept in step with tests/_mpi_worker.py).
SHARDS = {2: [23, 10], 3: [37, 20, 5]}


def worker_data(n):
    rng = np.random.default_rng(42)
    total = sum(SHARDS[n])
    X = rng.normal(size=(total, 5))
    y = rng.integers(0, 3, total)
    w = rng.uniform(0.2, 2.0, total)
    bounds = np.cumsum([0] + SHARDS[n])
    return X, y, w, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def worker_network(dtype="float64"):
    return fn.Network([fn.Dense(5, 7, activation="tanh"),
                       fn.Dense(7, 3, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=3)


CASES = {
    "sgd": (lambda: fn.SGD(lr=0.1), {}, False),
    "adam_l2": (lambda: fn.Adam(lr=0.01), {"l2": 0.01}, False),
    "momentum_weights_l1": (lambda: fn.SGD(lr=0.05, momentum=0.9), {"l1": 0.001}, True),
    # a float32 network: the step's buffer is float32 too
    "adam_float32": (lambda: fn.Adam(lr=0.01), {"l2": 0.01}, False),
}
TOLERANCE = {"float64": dict(rtol=1e-11, atol=1e-13), "float32": dict(rtol=2e-5, atol=2e-6)}


def dtype_of(case):
    return "float32" if case.endswith("float32") else "float64"


def replay(n, case, epochs=3, b=4):
    """One process: step k of an epoch trains on the union of every rank's
    k-th batch of b rows (the ranks' rows in order: shuffle=False), as one
    batch, with one optimizer throughout; returns (network, epoch losses)."""
    make_opt, kw, weighted = CASES[case]
    X, y, w, shards = worker_data(n)
    net, opt = worker_network(dtype_of(case)), make_opt()
    n_steps = max(-(-(s.stop - s.start) // b) for s in shards)
    losses = []
    for _ in range(epochs):
        loss_sum = 0.0
        for k in range(n_steps):
            rows = np.concatenate([np.arange(s.start, s.stop)[k * b:(k + 1) * b]
                                   for s in shards])
            extra = dict(kw, sample_weight=w[rows]) if weighted else kw
            h = net.fit(X[rows], y[rows], epochs=1, batch_size=len(rows), shuffle=False,
                        optimizer=opt, **extra)
            loss_sum += h["loss"][0] * len(rows)
        losses.append(loss_sum / len(y))
    return net, losses, opt.step, net.evaluate(X, y)["accuracy"]


# The ranks of one machine add their steps through an MPI shared-memory
# window; FASTNN_MPI_SHARED_MEMORY=0 takes the allreduce that ranks on
# several machines use.
ALLREDUCE = {"FASTNN_MPI_SHARED_MEMORY": "0"}


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_single_process_replay_on_union_batches(n, case, tmp_path):
    # shared memory with the split update, except: sgd updates whole on
    # every rank, momentum_weights_l1 takes the allreduce
    launch(n, case, tmp_path, **{"momentum_weights_l1": ALLREDUCE, "sgd": WHOLE}.get(case, {}))
    res = results(n, tmp_path)
    assert_identical_ranks(res)
    net, losses, step, accuracy = replay(n, case)
    history = json.loads(str(res[0]["history"]))
    assert history["split"] == (case not in ("momentum_weights_l1", "sgd"))
    params = [a for l in net.layers for a in (l.W, l.b)]
    tol = TOLERANCE[dtype_of(case)]
    for i, p in enumerate(params):
        np.testing.assert_allclose(res[0][f"p{i}"], p, **tol)
    np.testing.assert_allclose(history["loss"], losses, rtol=tol["rtol"])
    assert history["accuracy"][-1] == pytest.approx(accuracy, abs=1e-12)
    assert int(res[0]["step"]) == step


@needs_mpi
@pytest.mark.parametrize("case", ["adam_l2", "adam_float32"])
def test_split_update_gives_the_bits_of_the_whole_update(case, tmp_path):
    # the same operations per element, whichever rank computes them
    runs = []
    for exchange, env in (("split", SPLIT), ("whole", WHOLE)):
        out = tmp_path / exchange
        out.mkdir()
        launch(3, case, out, **env)
        runs.append(results(3, out)[0])
    split, whole = runs
    keys = [k for k in split if k[0] in "po"]
    assert any(k[0] == "o" for k in keys)          # Adam's state compared too
    for key in keys:
        assert np.array_equal(split[key], whole[key]), key


def replay_local_sgd(n, k=2, epochs=3, b=4, lr=0.1):
    """One process: every period of k steps, each rank's network (the
    average so far) trains k local steps of b rows on its own rows; the
    average, weighted by the rows each trained, is the next start."""
    X, y, _, shards = worker_data(n)
    net = worker_network()
    params = [[l.W.copy(), l.b.copy()] for l in net.layers]
    n_steps = max(-(-(s.stop - s.start) // b) for s in shards)
    losses = []
    for _ in range(epochs):
        loss_sum = 0.0
        for first in range(0, n_steps, k):
            sums, total = None, 0
            for s in shards:
                rows = np.arange(s.start, s.stop)[first * b:(first + k) * b]
                local = worker_network()
                for layer, (W, bias) in zip(local.layers, params):
                    layer.W, layer.b = W.copy(), bias.copy()
                if len(rows):
                    h = local.fit(X[rows], y[rows], epochs=1, batch_size=b, shuffle=False,
                                  optimizer=fn.SGD(lr=lr))
                    loss_sum += h["loss"][0] * len(rows)
                part = [[len(rows) * l.W, len(rows) * l.b] for l in local.layers]
                sums = part if sums is None else [[a + c for a, c in zip(p, q)]
                                                  for p, q in zip(sums, part)]
                total += len(rows)
            params = [[a * (1.0 / total) for a in p] for p in sums]
        losses.append(loss_sum / len(y))
    return [a for p in params for a in p], losses


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_average_every_k_is_local_sgd_on_the_shards(n, tmp_path):
    launch(n, "local_sgd", tmp_path, **(ALLREDUCE if n == 3 else {}))
    res = results(n, tmp_path)
    assert_identical_ranks(res)
    params, losses = replay_local_sgd(n)
    for i, p in enumerate(params):
        np.testing.assert_allclose(res[0][f"p{i}"], p, **TOLERANCE["float64"])
    history = json.loads(str(res[0]["history"]))
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-11)
    n_steps = max(-(-s // 4) for s in SHARDS[n])
    assert int(res[0]["step"]) == 3 * n_steps


@needs_mpi
def test_average_every_k_averages_the_optimizer_state_on_every_rank(tmp_path):
    launch(3, "local_adam_dropout", tmp_path)
    res = results(3, tmp_path)
    assert_identical_ranks(res)
    history = json.loads(str(res[0]["history"]))
    assert len(history["loss"]) == 3 and np.all(np.isfinite(history["loss"]))
    assert int(res[0]["step"]) == 3 * 10     # 10 steps of 4 rows per epoch (37 rows)


def test_average_every_must_be_a_positive_integer():
    net = worker_network()
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="average_every"):
            net.fit(np.zeros((4, 5)), [0, 1, 2, 0], average_every=bad)


@needs_mpi
@pytest.mark.parametrize("case", ["shuffle_dropout", "shuffle_blocks"])
def test_shuffle_dropout_noise_validation_identical_on_every_rank(case, tmp_path):
    proc = launch(3, case, tmp_path)
    res = results(3, tmp_path)
    assert_identical_ranks(res)
    history = json.loads(str(res[0]["history"]))
    assert len(history["loss"]) == 3 and len(history["val_loss"]) == 3
    assert np.all(np.isfinite(history["loss"]))
    # progress lines from rank 0 only
    assert proc.stdout.count("epoch 3/3") == 1, proc.stdout
    # deterministic: the same run again gives the same weights
    again = tmp_path / "again"
    again.mkdir()
    launch(3, case, again)
    for key in res[0]:
        if key.startswith("p"):
            assert np.array_equal(results(3, again)[0][key], res[0][key])


@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_diverged_fit_restores_the_epoch_start_on_every_rank(n, tmp_path):
    launch(n, "diverge", tmp_path)
    res = results(n, tmp_path)
    assert_identical_ranks(res)
    assert "training diverged" in json.loads(str(res[0]["history"]))["error"]
    start = [a for l in worker_network().layers for a in (l.W, l.b)]
    for i, p in enumerate(start):
        assert np.array_equal(res[0][f"p{i}"], p)


def test_rows_share_gives_every_row_to_one_rank():
    from fastnn.distributed import rows_share
    arrays = [np.zeros((784, 1024)), np.zeros((1, 1024)), np.zeros((1024, 10)),
              np.zeros((1, 10)), np.zeros((3, 1))]
    for n in (1, 2, 3, 7):
        shares = [rows_share(arrays, n, r) for r in range(n)]
        sizes = []
        for a, parts in zip(arrays, zip(*shares)):
            assert parts[0][0] == 0 and parts[-1][1] == a.shape[0]
            assert all(p[1] == q[0] for p, q in zip(parts, parts[1:]))   # no gap, no overlap
        for share in shares:
            sizes.append(sum((b - a) * arr.shape[1] for arr, (a, b) in zip(arrays, share)))
        assert max(sizes) - min(sizes) <= 2 * 1024     # balanced within a row or two


@needs_mpi
def test_stop_on_one_rank_stops_every_rank(tmp_path):
    launch(2, "stop_one_rank", tmp_path)
    res = results(2, tmp_path)
    assert_identical_ranks(res)
    for r in res:
        assert str(r["stop_reason"]) == "stop_training"
        assert len(json.loads(str(r["history"]))["loss"]) == 2


@needs_mpi
def test_failing_rank_ends_the_job_without_a_hang(tmp_path):
    # rank 1 raises in epoch 2 of 1000; rank 0 would wait forever in the
    # next allreduce without comm.Abort (the subprocess timeout catches that)
    proc = launch(2, "fail_one_rank", tmp_path, check=False)
    assert proc.returncode != 0
    assert "boom on rank 1" in proc.stderr
    assert "rank 1 of 2 failed in fit" in proc.stderr
    assert not (tmp_path / "rank0.npz").exists()


def interrupt_rank_1(tmp_path, case, presses):
    """Run ``case`` on 2 ranks, send rank 1 ``presses`` SIGINTs (0.5 s apart)
    once it has written its pid, and return the finished process's
    (returncode, stdout, stderr)."""
    cmd = [_mpiexec(), "-n", "2", sys.executable, str(WORKER), str(tmp_path), case]
    env = dict(os.environ, OMP_NUM_THREADS="1", FASTNN_NUM_THREADS="1", **SPLIT)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, stdin=subprocess.DEVNULL)
    try:
        pid_file = tmp_path / "pid1"
        deadline = time.monotonic() + TIMEOUT
        while not pid_file.exists() or not pid_file.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        for press in range(presses):
            if press:
                time.sleep(0.5)
            os.kill(int(pid_file.read_text()), signal.SIGINT)   # rank 1 only
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@needs_mpi
def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step(tmp_path):
    returncode, out, err = interrupt_rank_1(tmp_path, "interrupt", presses=1)
    assert returncode == 0, out + err
    assert "Ctrl-C: every rank stops after this step" in err
    res = results(2, tmp_path)
    assert_identical_ranks(res)
    assert all(str(r["stop_reason"]) == "interrupted" for r in res)


@needs_mpi
def test_ctrl_c_twice_on_one_rank_ends_the_job(tmp_path):
    # rank 1 sits in a callback: the first Ctrl-C asks for a stop after the
    # step, the second must end the job - not stop rank 1's fit alone while
    # rank 0 waits for it in the next allreduce (the timeout would catch that)
    returncode, out, err = interrupt_rank_1(tmp_path, "interrupt_twice", presses=2)
    assert returncode != 0, out + err
    assert "rank 1 of 2 failed in fit (CtrlCTwice" in err, err


@needs_mpi
def test_estimator_fit_with_comm_matches_one_process(tmp_path):
    # 2 ranks with 8 rows each, local batches of 4: step k trains on rank 0's
    # k-th 4 rows and rank 1's, which one process sees as its k-th batch of
    # 8 when the rows are interleaved that way (shuffle=False)
    launch(2, "estimator", tmp_path)
    res = results(2, tmp_path)
    assert_identical_ranks(res)
    X, y, _, shards = worker_data(2)
    parts = [(X[s][:8], y[s][:8].copy()) for s in shards]
    parts[1][1][parts[1][1] == 2] = 0            # as the worker: rank 1 has no class 2
    order = [parts[r][i][4 * k:4 * k + 4] for k in range(2) for r in range(2)
             for i in (0, 1)]
    Xs = np.concatenate(order[0::2])
    ys = np.concatenate(order[1::2])
    clf = fn.MLPClassifier(hidden_layer_sizes=(7,), solver="adam", batch_size=8, max_iter=3,
                           shuffle=False, random_state=0, tol=0)
    with pytest.warns(Warning):
        clf.fit(Xs, ys)
    history = json.loads(str(res[0]["history"]))
    assert history["classes"] == [0, 1, 2]
    assert history["t_"] == clf.t_ and history["n_iter_"] == clf.n_iter_
    np.testing.assert_allclose(history["loss"], clf.loss_curve_, rtol=1e-12)
    params = [a for W, b in zip(clf.coefs_, clf.intercepts_) for a in (W, b)]
    for i, p in enumerate(params):
        np.testing.assert_allclose(res[0][f"p{i}"], p, rtol=1e-11, atol=1e-13)


def test_comm_must_be_a_communicator():
    net = worker_network()
    with pytest.raises(TypeError, match="mpi4py communicator"):
        net.fit(np.zeros((4, 5)), [0, 1, 2, 0], comm="COMM_WORLD")


@needs_mpi
def test_a_communicator_of_one_process_is_the_ordinary_fit(tmp_path):
    launch(1, "one_process", tmp_path)   # the worker compares comm=None and size 1


# The engine's entries for the data-parallel step, without MPI.

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_grad_buffer_receives_the_weighted_gradient_sums(dtype):
    from fastnn import _config, _engine
    X, y, w, _ = worker_data(2)
    net = worker_network(dtype)
    means = net.gradients(X, y, sample_weight=w)
    W, b, acts = net._params()
    n = sum(a.size for a in W + b)
    buf = np.full(n + 3, 7.0, dtype)          # the entries after the gradients are the caller's
    trainer = _engine.Trainer(W, b, acts, net.loss_function.code, len(y), 1,
                              _config.kernel_code(), _engine.OPTIMIZER_CODES["none"],
                              keep_gradients=True, grad_buffer=buf)
    trainer.set_sample_weight(w)
    trainer.run_epoch(net._check_X(X), net._check_y(y, len(y)), None)
    tol = {"float64": dict(rtol=1e-12, atol=1e-14), "float32": dict(rtol=1e-5, atol=1e-6)}[dtype]
    at = 0
    for dW, db in means:
        for g in (dW, db):
            np.testing.assert_allclose(buf[at:at + g.size].reshape(g.shape) / w.sum(), g, **tol)
            at += g.size
    assert np.all(buf[n:] == 7.0)
    with pytest.raises(ValueError, match="grad_buffer"):
        _engine.Trainer(W, b, acts, net.loss_function.code, 4, 1, _config.kernel_code(),
                        _engine.OPTIMIZER_CODES["sgd"], grad_buffer=buf)


@pytest.mark.parametrize("n_sources", [2, 3])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_optimizer_update_adds_and_scales_the_gradients_in_its_pass(opt, n_sources):
    from fastnn import _engine
    rng = np.random.default_rng(0)
    make = {"sgd": lambda: fn.SGD(lr=0.1), "adam": lambda: fn.Adam(lr=0.01)}[opt]
    code, hyper = _engine.OPTIMIZER_CODES[opt], make().engine_args()
    P = rng.normal(size=(37, 1030))                 # rows of more than one block
    Gs = [rng.normal(size=P.shape) for _ in range(n_sources)]
    S = [np.zeros_like(P), np.zeros_like(P)] if opt == "adam" else [None, None]
    S_ref = [None if s is None else s.copy() for s in S]
    P_ref, G_ref = P.copy(), sum(Gs[1:], Gs[0]) * 0.25
    kept = [g.copy() for g in Gs]
    got = _engine.optimizer_update(code, hyper, P, Gs[0], *S, l2=0.01, grad_scale=0.25,
                                   more_G=Gs[1:])
    want = _engine.optimizer_update(code, hyper, P_ref, G_ref, *S_ref, l2=0.01)
    np.testing.assert_allclose(P, P_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert all(np.array_equal(g, k) for g, k in zip(Gs, kept))   # the sources unchanged
