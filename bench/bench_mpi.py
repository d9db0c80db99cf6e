"""Data-parallel fit over MPI against one process with the same threads
(issue 14, item 3): 2 ranks x 1 thread against 1 rank x 2 threads.

    python bench/bench_mpi.py            # runs both, prints one JSON line

The wide benchmark net 784-1024-1024-10 (relu, softmax), SGD lr 0.01, on
60,000 x 784 float32 synthetic rows; the same global batch in both runs
(256 rows: 128 per rank with 2 ranks).  Best of 3 epochs after a warm-up.
Needs ``pip install 'fastnn[mpi]'``.  Run it on a quiet machine.
"""
import json
import os
import subprocess
import sys
import time

N, D, GLOBAL_BATCH, EPOCHS = 60_000, 784, 256, 3


def train(comm=None, n_threads=1):
    import numpy as np
    import fastnn as fn
    rank, size = (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())
    rng = np.random.default_rng(rank)
    rows = N // size
    X = rng.normal(size=(rows, D)).astype(np.float32)
    y = rng.integers(0, 10, rows)
    net = fn.Network([fn.Dense(D, 1024, activation="relu"),
                      fn.Dense(1024, 1024, activation="relu"),
                      fn.Dense(1024, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    kw = dict(batch_size=GLOBAL_BATCH // size, optimizer=fn.SGD(lr=0.01),
              n_threads=n_threads, comm=comm)
    net.fit(X[:2048], y[:2048], epochs=1, **kw)     # warm-up
    times = []
    for _ in range(EPOCHS):
        if comm is not None:
            comm.Barrier()
        t = time.perf_counter()
        net.fit(X, y, epochs=1, **kw)
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        from mpi4py import MPI
        seconds = train(MPI.COMM_WORLD, 1)
        if MPI.COMM_WORLD.Get_rank() == 0:
            print(seconds)
        return
    one = train(None, 2)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--rank"],
                         capture_output=True, text=True, check=True,
                         env=dict(os.environ, FASTNN_NUM_THREADS="1"))
    two = float(out.stdout.split()[-1])
    print(json.dumps({"net": "784-1024-1024-10", "rows": N, "global_batch": GLOBAL_BATCH,
                      "1 rank x 2 threads (s/epoch)": round(one, 3),
                      "2 ranks x 1 thread (s/epoch)": round(two, 3),
                      "ratio": round(two / one, 3)}))


if __name__ == "__main__":
    main()
