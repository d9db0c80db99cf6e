"""Threads never lose: the default thread count (every core) against one
thread, on an idle machine and beside a busy process (issue 12, item 3).

    python bench/bench_threads.py --out bench/results_threads.json

Not pinned: the default may use every core the process is allowed.  Each
workload runs with ``n_threads=None`` (the default) and ``n_threads=1``,
alternating, ``--rounds`` times; the figure is the median wall time (what a
user waits for), and the ratio default / one thread (below 1: the default
is faster; the target is never above 1 by more than noise).  "busy": one
other process spins on the CPU for the whole measurement, where the OS puts
it (as a second job on a shared machine does).  The last workload is the
``fastnn demo`` command itself, started as a subprocess (the import and
scikit-learn's digits included).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

import fastnn as fn

MIN_SECONDS = 0.1

def _net(sizes, seed=0, **kwargs):
    acts = ["relu"] * (len(sizes) - 2) + ["softmax"]
    return fn.Network([fn.Dense(a, b, activation=f) for a, b, f in zip(sizes[:-1], sizes[1:], acts)],
                      loss="cross_entropy", dtype="float32", seed=seed, **kwargs)


def _data(rows, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, n_in)).astype(np.float32)
    return X, rng.integers(0, n_out, rows)


def workloads():
    """name -> (a function of n_threads that runs the workload once, repeats per timing)."""
    small = _net((64, 128, 10))
    X450, y450 = _data(450, 64, 10)
    mnist = _net((784, 256, 128, 10))
    X1 = _data(1, 784, 10)[0]
    X10k, y10k = _data(10_000, 784, 10)
    X2k, y2k = _data(2_048, 784, 10)
    Xdig, ydig = _data(1_347, 64, 10)
    Xtab, ytab = _data(20_000, 32, 2)
    tab = _net((32, 64, 64, 2))

    def fit(net, X, y, batch_size, validation=None):
        def run(n_threads):
            net.fit(X, y, epochs=1, batch_size=batch_size, optimizer=fn.SGD(lr=0.01),
                    validation_data=validation, verbose=0, n_threads=n_threads)
        return run

    return {
        "predict 450 rows, 64-128-10": (lambda t: small.predict(X450, n_threads=t), 20),
        "predict 1 row, 784-256-128-10": (lambda t: mnist.predict(X1, n_threads=t), 200),
        "evaluate 10,000 rows, 784-256-128-10":
            (lambda t: mnist.evaluate(X10k, y10k, n_threads=t), 2),
        "fit digits-sized 1,347x64, 64-128-10, batch 32, validation 450":
            (fit(small, Xdig, ydig, 32, (X450, y450)), 2),
        "fit tabular 20,000x32, 32-64-64-2, batch 64": (fit(tab, Xtab, ytab, 64), 1),
        "fit 2,048 rows, 784-256-128-10, batch 256": (fit(mnist, X2k, y2k, 256), 1),
    }


def time_once(run, n_threads, repeats):
    """Seconds per call, over at least MIN_SECONDS of calls (several of the
    OS's time slices: one of them lost to the busy process is then noise)."""
    calls, t0 = 0, time.perf_counter()
    while True:
        for _ in range(repeats):
            run(n_threads)
        calls += repeats
        elapsed = time.perf_counter() - t0
        if elapsed >= MIN_SECONDS:
            return elapsed / calls


def demo_once(n_threads):
    cmd = [sys.executable, "-m", "fastnn", "demo", "--epochs", "40"]
    if n_threads is not None:
        cmd += ["--threads", str(n_threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    # the demo's own figure: "training: 0.05 s for 40 epochs"
    line = next(s for s in out.splitlines() if s.startswith("training:"))
    return float(line.split()[1])


def measure(rounds, include_demo):
    cases = workloads()
    times = {name: {None: [], 1: []} for name in cases}
    if include_demo:
        times["fastnn demo (its training time)"] = {None: [], 1: []}
    for name, (run, _) in cases.items():      # warm-up: teams, packed weights, caches
        run(None)
        run(1)
    for _ in range(rounds):
        for name, (run, repeats) in cases.items():
            for t in (None, 1):
                times[name][t].append(time_once(run, t, repeats))
        if include_demo:
            for t in (None, 1):
                times["fastnn demo (its training time)"][t].append(demo_once(t))
    return {name: {"default_s": statistics.median(v[None]), "one_thread_s": statistics.median(v[1]),
                   "ratio": statistics.median(v[None]) / statistics.median(v[1])}
            for name, v in times.items()}


def busy_process():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-demo", action="store_true", help="leave out the fastnn demo command")
    ap.add_argument("--out", help="write the figures to this JSON file")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores allowed; default threads = {fn.get_num_threads()}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    results = {"idle": measure(args.rounds, not args.no_demo)}
    spinner = busy_process()
    try:
        time.sleep(0.5)
        results["beside a busy process"] = measure(args.rounds, not args.no_demo)
    finally:
        spinner.kill()
        spinner.wait()
    print("\n| workload | idle: default | idle: 1 thread | ratio | busy: default | "
          "busy: 1 thread | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in results["idle"]:
        cells = []
        for cond in ("idle", "beside a busy process"):
            r = results[cond][name]
            cells += [_fmt(r["default_s"]), _fmt(r["one_thread_s"]), f"{r['ratio']:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"cores": cores, "rounds": args.rounds, "results": results}, f, indent=1)


def _fmt(seconds):
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


if __name__ == "__main__":
    main()
