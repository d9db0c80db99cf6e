"""Train on a 2 GB .npy file without loading it: fit on np.load(mmap_mode="r").

    python examples/train_on_disk.py [path.npy]

Writes a synthetic 680,000 x 784 float32 data set (2.1 GB) block by block
(it is never in memory as a whole), then trains on the memory-mapped file
with shuffle="blocks" - blocks of consecutive rows in a random order, the
rows shuffled inside each block - so the file is read mostly sequentially.
The process's private (anonymous) memory stays far below the file's size:
fastnn never copies X.  The second part trains on the same rows given as
(X, y) chunks, the form for data that NumPy cannot map (several files,
compressed files): one chunk in memory at a time.

FASTNN_EXAMPLE_QUICK=1 (the test suite) makes a 20 MB file instead.
"""
import os
import sys
import tempfile
import time

import numpy as np

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLE_QUICK") == "1"
N_ROWS, N_FEATURES, BLOCK = (6_800 if QUICK else 680_000), 784, 20_000


def anonymous_mb():
    """Private memory of this process (Linux); the mapped file is not in it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def labels(X):
    """A learnable target: the class of the largest of 10 fixed projections."""
    W = np.random.default_rng(1).normal(size=(N_FEATURES, 10)).astype(np.float32)
    return np.argmax(X @ W, axis=1)


def write(path):
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(N_ROWS, N_FEATURES))
    y = np.empty(N_ROWS, np.int64)
    for start in range(0, N_ROWS, BLOCK):
        stop = min(N_ROWS, start + BLOCK)
        X[start:stop] = np.random.default_rng(start).normal(
            size=(stop - start, N_FEATURES)).astype(np.float32)
        y[start:stop] = labels(X[start:stop])
    X.flush()
    del X
    np.save(path.replace(".npy", "_y.npy"), y)


def main():
    folder = None
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        folder = tempfile.TemporaryDirectory()
        path = os.path.join(folder.name, "X.npy")
    if not os.path.exists(path):
        t = time.perf_counter()
        write(path)
        print(f"wrote {path}: {os.path.getsize(path) / 1e9:.2f} GB in "
              f"{time.perf_counter() - t:.1f}s")
    X = np.load(path, mmap_mode="r")
    y = np.load(path.replace(".npy", "_y.npy"))
    net = fn.Network([fn.Dense(N_FEATURES, 64, activation="relu"),
                      fn.Dense(64, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    before = anonymous_mb()
    peak = [before]      # measured inside fit, where a copy of X would be alive
    measure = fn.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: peak.append(anonymous_mb()))
    history = net.fit(X, y, epochs=2, batch_size=256, shuffle="blocks",
                      optimizer=fn.Adam(lr=1e-3), verbose=2, callbacks=[measure])
    print(f"memory-mapped X of {X.nbytes / 1e9:.2f} GB: private memory grew by at most "
          f"{max(peak) - before:.0f} MB during fit; loss "
          f"{history['loss'][0]:.3f} -> {history['loss'][-1]:.3f}")

    def chunks():   # e.g. one chunk per file; here blocks of the same file
        for start in range(0, N_ROWS, BLOCK):
            yield np.array(X[start:start + BLOCK]), y[start:start + BLOCK]

    history = net.fit(chunks, epochs=1, batch_size=256, verbose=2)
    print(f"(X, y) chunks: loss {history['loss'][-1]:.3f}")
    if folder is not None:
        del X
        folder.cleanup()


if __name__ == "__main__":
    main()
