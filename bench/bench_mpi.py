"""Data-parallel fit over MPI against one process with the same threads
(issue 14, item 3): 2 ranks x 1 thread against 1 rank x 2 threads.

    python bench/bench_mpi.py [--rounds 7] [--average-every 4 8]
                              [--base-python /path/to/other/venv/bin/python]

The wide benchmark net 784-1024-1024-10 (relu, softmax), SGD lr 0.01, on
60,000 x 784 float32 synthetic rows; the same global batch in every run
(256 rows: 128 per rank with 2 ranks).  Every configuration stays up for
the whole run (the ranks as one ``mpiexec -n 2`` job each, waiting between
rounds without spinning) and trains one epoch per round, in turn, round
after round: on a shared machine they all see the same load.  Prints one
JSON line per round and a summary: median wall seconds per epoch and median
CPU seconds (all threads of all ranks) per epoch.

``--average-every k``: also 2 ranks with ``fit(average_every=k)`` (local SGD).
``--one-thread``: also 1 rank x 1 thread, whose CPU time is the work of
an epoch without any parallel overhead (on a loaded machine, two threads
spin at their barriers and two ranks at theirs; that CPU time is not).
``--base-python``: also 2 ranks of the fastnn installed for that Python
(an A/B against another build).  ``--allreduce``: also 2 ranks exchanging
with MPI_Allreduce instead of shared memory (FASTNN_MPI_SHARED_MEMORY=0).
Needs ``pip install 'fastnn[mpi]'``.
"""
import argparse
import json
import os
import subprocess
import sys
import time

N, D, GLOBAL_BATCH = 60_000, 784, 256


def setup(comm, n_threads, average_every):
    """The data, network and fit of one rank (or of the single process)."""
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
              n_threads=n_threads)
    if comm is not None:
        kw["comm"] = comm
    if average_every > 1:
        kw["average_every"] = average_every
    net.fit(X[:4096], y[:4096], epochs=1, **kw)     # warm-up

    def epoch():
        if comm is not None:
            comm.Barrier()
        w, c = time.perf_counter(), time.process_time()
        net.fit(X, y, epochs=1, **kw)
        return time.perf_counter() - w, time.process_time() - c
    return epoch


def wait_quietly(comm):
    """Wait for every rank without spinning (a blocking MPI call would busy-poll
    and take a core from the configuration being timed)."""
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.005)


def rank_main(average_every):
    """One rank of an ``mpiexec`` job: an epoch per line "epoch" on rank 0's stdin."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    epoch = setup(comm, 1, average_every)
    if comm.Get_rank() == 0:
        print("ready", flush=True)
    while True:
        cmd = sys.stdin.readline().strip() if comm.Get_rank() == 0 else None
        wait_quietly(comm)
        cmd = comm.bcast(cmd, root=0)
        if cmd != "epoch":
            return
        wall, cpu = epoch()
        cpu = comm.reduce(cpu, op=MPI.SUM, root=0)
        wall = comm.reduce(wall, op=MPI.MAX, root=0)
        if comm.Get_rank() == 0:
            print(json.dumps([wall, cpu]), flush=True)


class Job:
    """A persistent ``mpiexec -n 2`` job of this script's rank_main."""

    def __init__(self, python, average_every, **env):
        mpiexec = os.path.join(os.path.dirname(python), "mpiexec")
        env = dict(os.environ, FASTNN_NUM_THREADS="1", OMP_NUM_THREADS="1", **env)
        self.proc = subprocess.Popen(
            [mpiexec, "-n", "2", python, os.path.abspath(__file__), "--rank",
             str(average_every)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=env)
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", line

    def epoch(self):
        self.proc.stdin.write("epoch\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rank":
        rank_main(int(sys.argv[2]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--average-every", type=int, nargs="*", default=[])
    p.add_argument("--base-python", default=None)
    p.add_argument("--one-thread", action="store_true",
                   help="also 1 rank x 1 thread (the CPU time of the work without threads)")
    p.add_argument("--allreduce", action="store_true",
                   help="also 2 ranks with FASTNN_MPI_SHARED_MEMORY=0 (MPI_Allreduce)")
    args = p.parse_args()
    import numpy as np
    configs = {"1 rank x 2 threads": setup(None, 2, 1),
               "2 ranks x 1 thread": Job(sys.executable, 1).epoch}
    jobs = [configs["2 ranks x 1 thread"].__self__]
    if args.base_python:
        jobs.append(Job(args.base_python, 1))
        configs["2 ranks x 1 thread (base)"] = jobs[-1].epoch
    if args.allreduce:
        jobs.append(Job(sys.executable, 1, FASTNN_MPI_SHARED_MEMORY="0"))
        configs["2 ranks x 1 thread (Allreduce)"] = jobs[-1].epoch
    for k in args.average_every:
        jobs.append(Job(sys.executable, k))
        configs[f"2 ranks x 1 thread, average_every={k}"] = jobs[-1].epoch
    if args.one_thread:
        configs["1 rank x 1 thread"] = setup(None, 1, 1)
    times = {name: [] for name in configs}
    try:
        for r in range(args.rounds):
            row = {}
            for name, run in configs.items():
                wall, cpu = run()
                times[name].append((wall, cpu))
                row[name] = [round(wall, 3), round(cpu, 3)]
            print(json.dumps({"round": r, "wall, cpu s/epoch": row}), flush=True)
    finally:
        for job in jobs:
            job.close()
    base = np.median([w for w, _ in times["1 rank x 2 threads"]])
    summary = {"net": "784-1024-1024-10", "rows": N, "global_batch": GLOBAL_BATCH,
               "rounds": args.rounds}
    for name, t in times.items():
        wall = float(np.median([w for w, _ in t]))
        cpu = float(np.median([c for _, c in t]))
        summary[name] = {"wall s/epoch": round(wall, 3), "cpu s/epoch": round(cpu, 3),
                         "wall / 1 rank x 2 threads": round(wall / base, 3)}
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
