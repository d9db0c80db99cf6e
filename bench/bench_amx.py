"""The "amx" kernel against "avx512" (issue 12): what the AMX tiles give a
training step's products, a predict and a training epoch.

    taskset -c 0 python bench/bench_amx.py --out bench/results_amx.json
    python bench/bench_amx.py --threads 2 --out bench/results_amx_2t.json

Products go through the engine's tiles with both operands packed once, as a
training step runs them (``_engine.gemm_tiled(prepack=True)``), in the three
orientations of a step (forward A @ W, hidden delta D @ W.T, weight gradient
X.T @ D); a step puts those of at least AMX_MIN_ROWS x AMX_STEP_MIN_COLS x
AMX_STEP_MIN_DEPTH on the tiles, and the weight gradients from
AMX_GRADIENT_MIN_ROWS x AMX_MIN_COLS x AMX_MIN_DEPTH, the rest stay on the
FMAs (the same on both kernels); on one thread only (this test entry point
allocates its packing arena on every call, whose page faults two threads
then contend for: training allocates it once per fit).  Then 1,000-row predicts and SGD
epochs at batch 256 of 784-256-128-10 and 784-1024-1024-10 on ``--threads``
threads.  The two kernels alternate, ``--rounds`` times; figures are
medians of wall time.
"""
import argparse
import json
import time

import numpy as np

import fastnn as fn
from fastnn import _engine

SHAPES = [(256, 256, 784), (784, 256, 256), (256, 512, 512), (256, 1024, 784),
          (256, 1024, 1024), (1024, 1024, 256)]
ORIENTATIONS = {"A @ B": (0, 0), "A @ B.T": (0, 1), "A.T @ B": (1, 0)}
KERNELS = ("amx", "avx512")


def product_seconds(M, N, K, ta, tb, kernel, rng):
    A = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    B = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    C = np.zeros((M, N), np.float32)
    reps = max(3, int(3e7 / (2 * M * N * K)))
    t0 = time.perf_counter()
    for _ in range(reps):
        _engine.gemm_tiled(A, B, C, trans_a=ta, trans_b=tb, kernel=_engine.KERNELS[kernel],
                           prepack=True, kind=0, alpha=1.0, beta=1.0 if ta else 0.0)
    return (time.perf_counter() - t0) / reps


def network(sizes):
    return fn.Network([fn.Dense(a, b, activation="relu" if i < len(sizes) - 2 else "softmax")
                       for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))],
                      loss="cross_entropy", seed=0)


def predict_seconds(net, X, n_threads):
    t0 = time.perf_counter()
    for _ in range(20):
        net.predict(X, n_threads=n_threads)
    return (time.perf_counter() - t0) / 20


def epoch_seconds(sizes, X, y, n_threads):
    net = network(sizes)
    net.fit(X[:512], y[:512], epochs=1, batch_size=256, optimizer=fn.SGD(lr=0.01),
            n_threads=n_threads)
    t0 = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=256, optimizer=fn.SGD(lr=0.01), n_threads=n_threads)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    if "amx" not in fn._config.available_kernels():
        raise SystemExit("no AMX here: " + ", ".join(fn._config.available_kernels()))
    rng = np.random.default_rng(0)
    rows = []
    print(f"{args.threads} thread(s)\n{'M x N x K':>18} {'product':>8}  amx GFLOP/s  "
          "avx512 GFLOP/s  amx faster")
    for M, N, K in SHAPES if args.threads == 1 else ():
        for name, (ta, tb) in ORIENTATIONS.items():
            t = {k: [] for k in KERNELS}
            for _ in range(args.rounds):
                for k in KERNELS:
                    t[k].append(product_seconds(M, N, K, ta, tb, k, rng))
            amx, fma = (float(np.median(t[k])) for k in KERNELS)
            flop = 2.0 * M * N * K
            on_tiles = bool((M >= _engine.AMX_MIN_ROWS and N >= _engine.AMX_STEP_MIN_COLS
                             and K >= _engine.AMX_STEP_MIN_DEPTH)
                            or (ta and M >= _engine.AMX_GRADIENT_MIN_ROWS
                                and N >= _engine.AMX_MIN_COLS and K >= _engine.AMX_MIN_DEPTH))
            rows.append(dict(M=M, N=N, K=K, product=name, amx_s=amx, avx512_s=fma,
                             on_tiles=on_tiles))
            print(f"{M:>6} x {N:>4} x {K:>4} {name:>8}  {flop / amx * 1e-9:11.0f}  "
                  f"{flop / fma * 1e-9:14.0f}  {fma / amx:9.2f}x{'' if on_tiles else '  (stays on FMAs)'}")
    X = rng.standard_normal((8192, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    for sizes in ((784, 256, 128, 10), (784, 1024, 1024, 10)):
        net = network(sizes)
        nt = args.threads
        for what, run in (("predict 1,000 rows", lambda: predict_seconds(net, X[:1000], nt)),
                          ("SGD epoch, 8,192 rows, batch 256",
                           lambda: epoch_seconds(sizes, X, y, nt))):
            t = {k: [] for k in KERNELS}
            for _ in range(args.rounds):
                for k in KERNELS:
                    fn.set_kernel(k)
                    t[k].append(run())
            fn.set_kernel(None)
            amx, fma = (float(np.median(t[k])) for k in KERNELS)
            rows.append(dict(net="-".join(map(str, sizes)), workload=what, threads=nt,
                             amx_s=amx, avx512_s=fma))
            print(f"{nt} thread(s), {'-'.join(map(str, sizes))}, {what}: amx {amx * 1e3:.2f} ms, "
                  f"avx512 {fma * 1e3:.2f} ms, {fma / amx:.2f}x")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
