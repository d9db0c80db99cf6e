"""Small problems: fixed cost per epoch of a tiny network, fastnn against a
minimal NumPy loop for the same network (issue 12).

    taskset -c 0 python bench/bench_small.py --out bench/results_small.json

Each workload trains a sigmoid network with the mean squared error and plain
SGD, float32, one thread.  NumPy: the textbook loop (forward, output delta,
hidden delta, gradients, in-place update, written plainly; a new order of the
rows each epoch when there is more than one batch).  fastnn: one ``fit``
call for all the epochs (verbose 0, no callbacks: the engine runs many
epochs per call), and, for comparison, the same fit with one engine call per
epoch (what fit did before issue 12; ``_fit_loop.ENGINE_EPOCHS = False``).
The three run interleaved, ``--rounds`` times; the figure is the median of
the process CPU time per epoch.
"""
import argparse
import json
import os
import time

import numpy as np

import fastnn as fn
from fastnn import _fit_loop

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("FANN_DATASETS",
                      os.path.join(HERE, "..", "..", "shared", "fann-datasets"))


def xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    return X, np.array([[0], [1], [1], [0]], np.float32)


def parity8():
    path = os.path.join(DATA, "parity8.train")
    if os.path.exists(path):
        from fastnn.datasets import load_fann_data
        return load_fann_data(path, dtype="float32")
    bits = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.float32)
    return bits, (bits.sum(axis=1, keepdims=True) % 2).astype(np.float32)


# name: (data, layer sizes, batch size, learning rate)
WORKLOADS = {
    "xor 2-4-1, batch 4": (xor, (2, 4, 1), 4, 0.5),
    "xor 2-4-1, batch 1": (xor, (2, 4, 1), 1, 0.5),
    "parity8 8-16-1, batch 256": (parity8, (8, 16, 1), 256, 0.5),
    "parity8 8-16-1, batch 16": (parity8, (8, 16, 1), 16, 0.1),
}


def init(sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-0.5, 0.5, (a, b)).astype(np.float32), np.zeros(b, np.float32))
            for a, b in zip(sizes[:-1], sizes[1:])]


def numpy_epochs(X, T, sizes, batch_size, lr, epochs):
    """The minimal NumPy loop: 2-layer sigmoid network, MSE, plain SGD."""
    (W1, b1), (W2, b2) = init(sizes)
    lr = np.float32(lr)
    n = X.shape[0]
    rng = np.random.default_rng(0)
    for _ in range(epochs):
        order = rng.permutation(n) if batch_size < n else None
        for start in range(0, n, batch_size):
            if order is None:
                x, t = X, T
            else:
                rows = order[start:start + batch_size]
                x, t = X[rows], T[rows]
            h = 1 / (1 + np.exp(-(x @ W1 + b1)))
            o = 1 / (1 + np.exp(-(h @ W2 + b2)))
            d2 = (o - t) * o * (1 - o) / x.shape[0]
            d1 = (d2 @ W2.T) * h * (1 - h)
            W2 -= lr * (h.T @ d2)
            b2 -= lr * d2.sum(axis=0)
            W1 -= lr * (x.T @ d1)
            b1 -= lr * d1.sum(axis=0)
    return W1, W2


def fastnn_epochs(X, T, sizes, batch_size, lr, epochs, many):
    _fit_loop.ENGINE_EPOCHS = many
    try:
        net = fn.Network([fn.Dense(a, b, activation="sigmoid")
                          for a, b in zip(sizes[:-1], sizes[1:])],
                         loss="mse", dtype="float32", seed=0)
        net.fit(X, T, epochs=epochs, batch_size=batch_size, optimizer=fn.SGD(lr),
                n_threads=1)
    finally:
        _fit_loop.ENGINE_EPOCHS = True
    return net


def cpu_per_epoch(run, epochs):
    t0 = time.process_time()
    run(epochs)
    return (time.process_time() - t0) / epochs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=0.5,
                    help="about how long each timed run lasts")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out")
    args = ap.parse_args()
    records = []
    print(f"{'workload':<28} {'NumPy us':>9} {'fastnn us':>10} {'1 call/epoch us':>16} "
          f"{'NumPy / fastnn':>15}")
    for name, (data, sizes, batch_size, lr) in WORKLOADS.items():
        X, T = data()
        runs = {"numpy": lambda e: numpy_epochs(X, T, sizes, batch_size, lr, e),
                "fastnn": lambda e: fastnn_epochs(X, T, sizes, batch_size, lr, e, True),
                "fastnn_per_epoch_call":
                    lambda e: fastnn_epochs(X, T, sizes, batch_size, lr, e, False)}
        # epochs per timed run: about --seconds of each (from a short probe)
        epochs = {k: max(10, int(args.seconds / max(cpu_per_epoch(run, 200), 1e-9)))
                  for k, run in runs.items()}
        times = {k: [] for k in runs}
        for _ in range(args.rounds):          # interleaved
            for k, run in runs.items():
                times[k].append(cpu_per_epoch(run, epochs[k]))
        rec = {"workload": name, "rows": int(X.shape[0]), "layers": list(sizes),
               "batch_size": batch_size, "epochs": epochs}
        rec.update({k + "_us": float(np.median(v)) * 1e6 for k, v in times.items()})
        rec["numpy_over_fastnn"] = rec["numpy_us"] / rec["fastnn_us"]
        records.append(rec)
        print(f"{name:<28} {rec['numpy_us']:>9.2f} {rec['fastnn_us']:>10.2f} "
              f"{rec['fastnn_per_epoch_call_us']:>16.2f} {rec['numpy_over_fastnn']:>14.1f}x")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "records": records}, fh, indent=1)


if __name__ == "__main__":
    main()
