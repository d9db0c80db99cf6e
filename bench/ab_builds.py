"""A/B of fastnn builds (and peers) in ONE interleaved run, in process CPU time.

On a shared machine wall-clock best-of-N drifts with the load on the other
core; this runner alternates the contenders round by round (so drift hits
all of them alike), times each epoch / prediction with the process's CPU
time (``time.process_time``: time-slicing by other processes is not
counted), reports medians, and measures the FMA peak (bench/peak_fma.c) in
every round of the same run (also in CPU time).

Example (one core):

    taskset -c 0 python bench/ab_builds.py --build base=/work/wt-gemm-base \\
        --build new=. --peers jax --net 784-256-128-10 784-1024-1024-10 \\
        --batch 32 256 --rounds 3 --out bench/results_s5_ab.json

A build is a source tree with the extension built in place
(``python setup.py build_ext --inplace``); its child process gets it first on
PYTHONPATH.  Peers come from bench/peers.py.  Each child trains one untimed
warm-up epoch per (net, batch), then one timed epoch, and predicts all rows
once untimed, then once timed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_mlp  # noqa: E402  (the parent never imports a numerical library)


def child(args):
    import time

    import numpy as np

    import peers as P

    peer = P.get_peer(args.child_peer)
    out = []
    X, y = P.make_data(args.samples, 784, 10, seed=0)
    for spec in args.net:
        sizes = bench_mlp.parse_net(spec)
        params = P.init_params(sizes, seed=0)
        model = None
        for B in args.batch:
            rng = np.random.default_rng(B)
            perms = [rng.permutation(len(y)) for _ in range(2)]
            model = peer.init(params, 1)
            peer.train_epoch(model, X, y, perms[0], B)
            t0 = time.process_time()
            peer.train_epoch(model, X, y, perms[1], B)
            out.append(dict(mode="train", net=spec, batch=B, cpu_seconds=time.process_time() - t0))
        peer.predict(model, X)
        t0 = time.process_time()
        peer.predict(model, X)
        out.append(dict(mode="predict", net=spec, batch=None, cpu_seconds=time.process_time() - t0))
    with open(args.child_out, "w") as f:
        json.dump(out, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", action="append", default=[], metavar="NAME=DIR",
                    help="a fastnn source tree built in place (repeatable)")
    ap.add_argument("--peers", nargs="*", default=["jax"])
    ap.add_argument("--net", nargs="+", default=["784-256-128-10", "784-1024-1024-10"])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child-peer", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_peer:
        return child(args)

    contenders = [(name, "fastnn", os.path.abspath(d))
                  for name, d in (b.split("=", 1) for b in args.build)]
    contenders += [(p, p, None) for p in args.peers]
    times = {}   # (contender, mode, net, batch) -> [cpu seconds per round]
    peaks = []
    exe = bench_mlp.measure_peak(1, 20_000_000)["exe"]   # builds peak_fma.c
    for r in range(args.rounds):
        run = subprocess.run([exe, "1", "200000000", "cpu"], capture_output=True, text=True)
        peaks.append(float(run.stdout.split("gflops=")[1].split()[0]))
        print(f"round {r + 1}: FMA peak {peaks[-1]} GFLOP/s", file=sys.stderr, flush=True)
        for name, peer, tree in contenders:
            env = bench_mlp.thread_env(1, peer)
            if tree:
                env["PYTHONPATH"] = tree + os.pathsep + env.get("PYTHONPATH", "")
            with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
                path = f.name
            cmd = [sys.executable, os.path.abspath(__file__), "--child-peer", peer,
                   "--child-out", path, "--samples", str(args.samples),
                   "--net", *args.net, "--batch", *map(str, args.batch)]
            subprocess.run(cmd, env=env, check=True)
            with open(path) as f:
                recs = json.load(f)
            os.unlink(path)
            for rec in recs:
                key = (name, rec["mode"], rec["net"], rec["batch"])
                times.setdefault(key, []).append(rec["cpu_seconds"])
            print(f"  {name}: " + ", ".join(f"{k[1]} {k[2]} {k[3]}: {v[-1]:.3f}"
                                            for k, v in times.items() if k[0] == name),
                  file=sys.stderr, flush=True)

    peak = statistics.median(p for p in peaks if p)
    rows = []
    for (name, mode, net, batch), v in times.items():
        sizes = bench_mlp.parse_net(net)
        macs = bench_mlp.layer_macs(sizes)
        if mode == "train":   # the counting of bench_mlp's gflops_net
            flops = (6.0 * macs - 2.0 * sizes[0] * sizes[1]) * args.samples
        else:
            flops = 2.0 * macs * args.samples
        med = statistics.median(v)
        rows.append(dict(contender=name, mode=mode, net=net, batch=batch, cpu_seconds=v,
                         median=med, pct_peak=100.0 * flops / med / 1e9 / peak))
    print(f"\nFMA peak (median of {len(peaks)} rounds): {peak:.1f} GFLOP/s; "
          f"process CPU time, median of {args.rounds} interleaved rounds")
    names = [c[0] for c in contenders]
    print(f"{'workload':34s}" + "".join(f"{n:>16s}" for n in names))
    for key in sorted({(r['mode'], r['net'], r['batch'] or 0) for r in rows}):
        cells = []
        for n in names:
            r = next((r for r in rows if (r["contender"], r["mode"], r["net"], r["batch"] or 0) == (n,) + key), None)
            cells.append(f"{r['median']:8.3f} {r['pct_peak']:4.0f}%" if r else "")
        label = f"{key[0]} {key[1]}" + (f" b{key[2]}" if key[2] else "")
        print(f"{label:34s}" + "".join(f"{c:>16s}" for c in cells))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"peaks": peaks, "peak": peak, "rounds": args.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
