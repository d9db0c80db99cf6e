"""Concurrency and memory.

Covers: several Python threads calling predict / forward / evaluate /
gradients on one model at once (the engine releases the GIL) get exactly the
results of one thread alone, and leave BLAS's thread count as they found it;
predict on 2.5 million rows grows the process's peak memory by the output
array and little more (the engine runs 256-row chunks, the float32 input is
used in place); repeated fit/predict does not leak (RSS and the Python/NumPy
heap, measured in a fresh process).

Tolerances: results are compared bit for bit.  Memory: the peak RSS may grow
by the output array plus 12 MiB (libraries touching pages, per-thread scratch);
a leak of one fit's workspace per round would exceed the RSS bound by far (see
LEAK_ROUNDS), and the NumPy/Python heap may grow by at most 1 MiB over those
rounds.
"""
import os
import threading

import numpy as np
import pytest

from conftest import make_net, run_python


# Memory is measured by RSS, which AddressSanitizer's shadow memory and
# quarantine distort (tools/sanitize.sh sets FASTNN_SANITIZED).
needs_plain_rss = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm") or bool(os.environ.get("FASTNN_SANITIZED")),
    reason="needs /proc and a build without sanitizers")


def _model():
    return make_net((20, 64, 33, 5), ("relu", "tanh", "softmax"), loss="cross_entropy", seed=2)


def test_threads_sharing_one_model_get_single_threaded_results():
    net = _model()
    rng = np.random.default_rng(0)
    # Different sizes, so that the calls overlap in every way (1 row to 3 chunks).
    jobs = [(rng.normal(size=(n, 20)).astype(np.float32), rng.integers(0, 5, n), n_threads)
            for n, n_threads in [(1, 1), (700, 2), (257, 1), (64, 2), (999, 1), (300, 2)] * 2]
    expected = [(net.predict(X, n_threads=1), net.forward(X)[1], net.evaluate(X, y),
                 net.gradients(X, y)[0][0]) for X, y, _ in jobs]
    results = [[] for _ in jobs]
    errors = []
    start = threading.Barrier(len(jobs))

    def worker(i, X, y, n_threads):
        try:
            start.wait()
            for _ in range(5):
                results[i].append((net.predict(X, n_threads=n_threads),
                                   net.forward(X, n_threads=n_threads)[1],
                                   net.evaluate(X, y, n_threads=n_threads),
                                   net.gradients(X, y, n_threads=n_threads)[0][0]))
        except BaseException as exc:      # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    for i, (want, got) in enumerate(zip(expected, results)):
        assert len(got) == 5, f"job {i} did not finish"
        for pred, hidden, scores, dW in got:
            np.testing.assert_array_equal(pred, want[0], err_msg=f"job {i}: predict")
            np.testing.assert_array_equal(hidden, want[1], err_msg=f"job {i}: forward")
            assert scores == want[2], f"job {i}: evaluate"
            np.testing.assert_array_equal(dW, want[3], err_msg=f"job {i}: gradients")


CONCURRENT_BLAS = """
    import json, threading
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits
    import fastnn as fn

    def blas_threads():
        return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

    threadpool_limits(limits=2, user_api="blas")
    before = blas_threads()
    net = fn.Network([fn.Dense(8, 64, activation="relu"), fn.Dense(64, 3)], seed=0)
    X = np.random.default_rng(0).normal(size=(2000, 8)).astype(np.float32)

    def worker():
        for _ in range(30):
            net.predict(X, n_threads=2)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    print(json.dumps({"before": before, "after": blas_threads()}))
"""


def test_concurrent_calls_give_blas_its_thread_count_back():
    # Overlapping calls from several threads: the last one out restores BLAS,
    # not the first (which would leave it at 1 thread, or at 2 mid-call).
    out = run_python(CONCURRENT_BLAS)
    if out["before"] != [2]:
        pytest.skip(f"this BLAS cannot be set to 2 threads here ({out['before']})")
    assert out["after"] == [2], out


# The peak RSS (VmHWM) around one predict.  X is filled in place (no
# temporaries), so the peak before the call is the current RSS, and the
# growth of the peak is what predict needed on top of its input.
PREDICT_MEMORY = """
    import json, resource
    import numpy as np
    import fastnn as fn

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def peak():
        # VmHWM, the peak RSS of this process image; not ru_maxrss, which a
        # child inherits from the parent it was forked from (pytest, large)
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024

    n = 2_500_000
    net = fn.Network([fn.Dense(4, 32, activation="relu"), fn.Dense(32, 16, activation="tanh"),
                      fn.Dense(16, 2, activation="softmax")], loss="cross_entropy", seed=0)
    X = np.empty((n, 4), np.float32)
    rng = np.random.default_rng(0)
    for i in range(0, n, 100_000):
        rng.standard_normal(size=(min(100_000, n - i), 4), dtype=np.float32, out=X[i:i + 100_000])
    net.predict(X[:5000], n_threads=2)          # libraries, thread pool, first touches
    rss0, peak0 = rss(), peak()
    out = net.predict(X, n_threads=2)
    growth = peak() - max(peak0, rss0)
    print(json.dumps({"growth": growth, "out_bytes": out.nbytes, "X_bytes": X.nbytes,
                      "slack_before": peak0 - rss0, "checksum": float(out[:, 0].sum())}))
"""


@needs_plain_rss
def test_predict_on_millions_of_rows_in_bounded_memory():
    out = run_python(PREDICT_MEMORY, timeout=300)
    mib = 1 << 20
    # the measurement is only meaningful if nothing earlier pushed the peak higher
    assert out["slack_before"] < 8 * mib, out
    assert out["growth"] <= out["out_bytes"] + 12 * mib, (
        f"predict grew the peak RSS by {out['growth'] / mib:.1f} MiB for a "
        f"{out['out_bytes'] / mib:.1f} MiB output (input {out['X_bytes'] / mib:.1f} MiB)")


LEAK_ROUNDS = 100

# Rounds of fit + predict + gradients + evaluate; after a warm-up, neither the
# RSS nor the traced heap (Python objects and NumPy arrays) may keep growing.
# One fit's workspace (batch 256 x 256 units: activations, deltas, gradients,
# Adam state) is over 1 MiB: leaking it every round would add far more than
# the RSS tolerance, and any leaked NumPy array or Python object (the Adam
# state alone is 86 KiB) shows in the traced heap.
FIT_LEAK = """
    import gc, json, resource, tracemalloc
    import numpy as np
    import fastnn as fn

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(512, 32)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    net = fn.Network([fn.Dense(32, 256, activation="relu"), fn.Dense(256, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)

    def round_():
        net.fit(X, y, epochs=1, batch_size=256, optimizer=fn.Adam(lr=1e-4), n_threads=2)
        net.predict(X, n_threads=2)
        net.gradients(X[:256], y[:256])
        net.evaluate(X, y)

    for _ in range(10):
        round_()
    gc.collect()
    tracemalloc.start()
    rss0 = rss()
    heap0 = tracemalloc.get_traced_memory()[0]
    for _ in range({rounds}):
        round_()
    gc.collect()
    print(json.dumps({{"rss_growth": rss() - rss0,
                      "heap_growth": tracemalloc.get_traced_memory()[0] - heap0}}))
"""


@needs_plain_rss
def test_repeated_fit_and_predict_do_not_leak():
    out = run_python(FIT_LEAK.format(rounds=LEAK_ROUNDS), timeout=300)
    mib = 1 << 20
    assert out["heap_growth"] < 1 * mib, out
    assert out["rss_growth"] < 16 * mib, (
        f"RSS grew by {out['rss_growth'] / mib:.1f} MiB over {LEAK_ROUNDS} rounds")
