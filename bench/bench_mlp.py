"""Speed benchmark: one epoch of minibatch SGD and one full prediction of an
MLP, fastnn against its peers (NumPy, PyTorch, JAX, scikit-learn).

Example:

    taskset -c 0 python bench/bench_mlp.py --threads 1 --batch 32 256 \\
        --net 784-256-128-10 784-1024-1024-10 \\
        --peers numpy torch jax sklearn fastnn --repeat 3 --out results.json

Single-thread runs must be pinned to one core with ``taskset -c 0`` (the
child processes inherit the affinity); multi-thread runs use
``taskset -c 0,1``. bench/run_all.sh does both.

How it works. The parent process never imports a numerical library. For each
(threads, net, peer) it starts ``bench_mlp.py --single PEER`` in a fresh
subprocess whose environment already holds the thread settings
(OMP/OPENBLAS/MKL_NUM_THREADS, XLA_FLAGS, FASTNN_KERNEL): they are read once,
when a library loads, so they must be set before the import, and separate
processes keep the thread pools of JAX, PyTorch and OpenBLAS from meeting.
The child times the peer and writes its records to a JSON file.

FLOP counts are the same for every peer, so GFLOP/s are comparable:
training 6 * sum(n_in * n_out) * n_samples per epoch, inference 2 * ... .
Training records also carry gflops_net / pct_peak_net, which leave out the
first layer's input delta that no peer computes (2 * n0 * n1 per sample).
"% peak" is against the float32 FMA peak measured by bench/peak_fma.c for
the same number of threads.

Timings exclude data generation, model construction, JIT compilation and
warm-up: each (peer, net, batch) trains one untimed warm-up epoch first, then
``repeat`` timed epochs; the best is reported (all are kept in the JSON).
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ALL_PEERS = ["numpy", "torch", "jax", "sklearn", "fastnn"]


# --------------------------------------------------------------------------
# helpers shared by parent and child
# --------------------------------------------------------------------------

def parse_net(spec):
    sizes = [int(s) for s in spec.split("-")]
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"net {spec!r}: expected e.g. 784-256-10")
    return sizes


def layer_macs(sizes):
    """sum(n_in * n_out): multiply-adds per sample for one forward pass."""
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def thread_env(threads, peer, base=None):
    """Environment for a child process: thread counts for every runtime."""
    env = dict(os.environ if base is None else base)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        env[var] = str(threads)
    # XLA's CPU backend uses an Eigen thread pool for intra-op parallelism;
    # for one thread switch it off, otherwise size it to the thread count.
    if threads == 1:
        xla = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    else:
        xla = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    env["XLA_FLAGS"] = (xla + " " + os.environ.get("BENCH_EXTRA_XLA_FLAGS", "")).strip()
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("FASTNN_KERNEL", None)
    if peer.startswith("fastnn-"):
        env["FASTNN_KERNEL"] = peer[len("fastnn-"):]
    return env


# --------------------------------------------------------------------------
# memory: peak RSS growth during a phase (Linux)
# --------------------------------------------------------------------------

def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class RssProbe:
    """Peak RSS growth over a block. Resets the kernel's high-water mark
    (write 5 to /proc/self/clear_refs) so each phase is measured on its own;
    falls back to getrusage's process-lifetime peak if that is not allowed."""

    def __enter__(self):
        self.reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            pass
        self.start_kb = _status_kb("VmRSS") or 0
        return self

    def __exit__(self, *exc):
        if self.reset:
            peak = _status_kb("VmHWM") or 0
        else:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB
        self.growth_mb = max(0, peak - self.start_kb) / 1024.0
        return False


# --------------------------------------------------------------------------
# child: time one peer (``--single``)
# --------------------------------------------------------------------------

def run_single(args):
    # Thread env vars come from the parent; apply them again here in case the
    # child mode is launched by hand. numpy must not be imported before this.
    if "numpy" in sys.modules:
        raise RuntimeError("numpy imported before the thread environment was set")
    os.environ.update(thread_env(args.threads[0], args.single))
    import gc
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    sys.path.insert(0, HERE)
    import peers as P

    T = args.threads[0]
    peer_name = args.single
    peer = P.get_peer(peer_name)
    threadpool_limits(T)  # belt and braces for any BLAS/OpenMP already loaded
    repeat = args.repeat
    for spec in args.repeat_peer:
        name, n = spec.split("=")
        if name == peer_name:
            repeat = int(n)

    X, y = P.make_data(args.samples, args.net[0][0], args.net[0][-1], seed=0)
    records = []
    common = dict(peer=peer_name, threads=T, n_samples=len(y))

    def timed(fn):
        gc.collect()
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, out

    for sizes in args.net:
        if sizes[0] != X.shape[1] or sizes[-1] != 10:
            raise SystemExit("nets must share the 784 inputs and 10 classes")
        net = "-".join(map(str, sizes))
        macs = layer_macs(sizes)
        params = P.init_params(sizes, seed=0)
        model = None
        if "train" in args.modes:
            for B in args.batch:
                rng = np.random.default_rng(B)
                perms = [rng.permutation(len(y)) for _ in range(repeat + 1)]
                try:
                    model = peer.init(params, T)
                    t_warm, _ = timed(lambda: peer.train_epoch(model, X, y, perms[0], B))
                    times = []
                    with RssProbe() as mem:
                        for r in range(repeat):
                            t, _ = timed(lambda: peer.train_epoch(model, X, y, perms[r + 1], B))
                            times.append(t)
                    records.append(dict(common, mode="train", net=net, batch=B,
                                        seconds=min(times), times=times,
                                        warmup_seconds=t_warm,
                                        flops=6.0 * macs * len(y),
                                        rss_growth_mb=mem.growth_mb))
                    print(f"  [{peer_name}] {net} batch {B}: {min(times):.3f} s/epoch "
                          f"(warm-up {t_warm:.2f} s)", file=sys.stderr, flush=True)
                except Exception as exc:
                    records.append(dict(common, mode="train", net=net, batch=B,
                                        error=f"{type(exc).__name__}: {exc}"))
                    if isinstance(exc, ImportError):
                        break
        if "predict" in args.modes:
            try:
                if model is None:  # predict only: untrained weights cost the same
                    model = peer.init(params, T)
                timed(lambda: peer.predict(model, X))  # warm-up / compile
                times, proba = [], None
                with RssProbe() as mem:
                    for r in range(repeat):
                        t, proba = timed(lambda: peer.predict(model, X))
                        times.append(t)
                proba = np.asarray(proba)
                # sanity: loss after the (warm-up + repeat) training epochs
                loss = P.cross_entropy(proba, y) if proba.ndim == 2 else None
                records.append(dict(common, mode="predict", net=net, batch=None,
                                    seconds=min(times), times=times,
                                    flops=2.0 * macs * len(y),
                                    rss_growth_mb=mem.growth_mb, loss_after=loss))
                print(f"  [{peer_name}] {net} predict: {min(times):.3f} s",
                      file=sys.stderr, flush=True)
            except Exception as exc:
                records.append(dict(common, mode="predict", net=net, batch=None,
                                    error=f"{type(exc).__name__}: {exc}"))

    info = {"threadpools": [{k: d.get(k) for k in ("internal_api", "version",
                                                   "num_threads", "architecture")}
                            for d in threadpool_info()],
            "versions": _versions(peer_name)}
    with open(args.single_out, "w") as f:
        json.dump({"records": records, "info": info}, f)


def _versions(peer_name):
    import importlib
    base = peer_name.split("-")[0]
    mods = {"numpy": ["numpy"], "torch": ["torch"], "jax": ["jax", "jaxlib"],
            "sklearn": ["sklearn"], "fastnn": ["fastnn"]}.get(base, [])
    out = {}
    for m in ["numpy"] + mods:
        try:
            out[m] = getattr(importlib.import_module(m), "__version__", "?")
        except Exception:
            pass
    return out


# --------------------------------------------------------------------------
# parent: peak, subprocesses, tables
# --------------------------------------------------------------------------

def measure_peak(threads, iters):
    """Compile bench/peak_fma.c (AVX-512, else AVX2) and run it."""
    src = os.path.join(HERE, "peak_fma.c")
    exe = os.path.join(tempfile.gettempdir(), f"fastnn_peak_fma_{os.getpid()}")
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        return {"error": "no C compiler"}
    for flags in (["-mavx512f", "-mfma"], ["-mavx2", "-mfma"]):
        build = subprocess.run([gcc, "-O2", *flags, "-pthread", src, "-o", exe],
                               capture_output=True, text=True)
        if build.returncode != 0:
            continue
        gflops = run_peak_exe(exe, threads, iters)
        if gflops is not None:  # None: SIGILL if the CPU lacks the ISA
            return {"isa": "avx512" if "-mavx512f" in flags else "avx2",
                    "threads": threads, "gflops": gflops,
                    "flags": " ".join(flags), "exe": exe}
    return {"error": "peak_fma.c did not build or run"}


def run_peak_exe(exe, threads, iters):
    run = subprocess.run([exe, str(threads), str(iters)], capture_output=True, text=True)
    if run.returncode != 0:
        return None
    return float(dict(re.findall(r"(\w+)=(\S+)", run.stdout))["gflops"])


class ForeignCpu:
    """Share of the machine's CPU time used by *other* processes (or stolen
    by the hypervisor) during a block: busy jiffies of every CPU from
    /proc/stat, minus the CPU time of our own process and children.
    Benchmarks are only meaningful when this is near 0 on *our* CPUs:
    another process on our core halves every number (seen here: a pytest
    run on core 0 took numpy's 784-1024-1024-10 predict from 2.0 to 3.0 s).
    ``share`` is for the CPUs we may run on, ``share_all`` for the machine:
    on this VM the two vCPUs reach only ~270 GFLOP/s together against ~245
    for one, so load on the other core may matter too; it is recorded, but
    in our runs the FMA probe did not drop, so it does not flag a result."""

    def _busy(self, cpus):
        busy = 0
        with open("/proc/stat") as f:
            for line in f:
                parts = line.split()
                if parts[0] in cpus:
                    # user nice system idle iowait irq softirq steal
                    v = list(map(int, parts[1:9]))
                    busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
        return busy / os.sysconf("SC_CLK_TCK")

    def _own(self):
        import resource
        r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        return sum(x.ru_utime + x.ru_stime for x in r)

    def __enter__(self):
        self.ours = {f"cpu{c}" for c in os.sched_getaffinity(0)}
        self.all = {f"cpu{c}" for c in range(os.cpu_count() or 1)}
        self.t0, self.o0 = time.time(), self._own()
        self.b0 = (self._busy(self.ours), self._busy(self.all))
        return self

    def __exit__(self, *exc):
        wall = max(time.time() - self.t0, 1e-9)
        own = self._own() - self.o0  # our children run on our CPUs only
        ours = self._busy(self.ours) - self.b0[0] - own
        every = self._busy(self.all) - self.b0[1] - own
        self.share = max(0.0, ours) / (wall * len(self.ours))
        self.share_all = max(0.0, every) / (wall * len(self.all))
        return False


def wait_quiet(max_wait, window=2.0, threshold=0.05):
    """Wait (up to max_wait s) until other processes leave our CPUs idle for a
    whole window; returns the seconds waited. Useful on shared dev boxes."""
    t0 = time.time()
    while True:
        with ForeignCpu() as fc:
            time.sleep(window)
        if fc.share < threshold or time.time() - t0 > max_wait:
            return time.time() - t0


def contention_probe(peak, threads):
    """Short FMA run before and after each peer. On a shared or busy machine
    (another process on the same core, a noisy VM neighbour) it drops well
    below the reference peak, and that peer's numbers are flagged."""
    p = peak.get(threads, {})
    if "exe" not in p:
        return None
    g = run_peak_exe(p["exe"], threads, 20_000_000)
    return None if g is None else round(g / p["gflops"], 3)


def run_peer(args, peer, threads, nets):
    out = tempfile.NamedTemporaryFile(suffix=".json", delete=False).name
    cmd = [sys.executable, os.path.abspath(__file__), "--single", peer,
           "--threads", str(threads), "--batch", *map(str, args.batch),
           "--net", *nets, "--repeat", str(args.repeat),
           "--samples", str(args.samples), "--modes", *args.modes,
           "--single-out", out]
    for spec in args.repeat_peer:
        cmd += ["--repeat-peer", spec]
    print(f"== {peer}, {threads} thread(s): {' '.join(nets)}", flush=True)
    try:
        proc = subprocess.run(cmd, env=thread_env(threads, peer), timeout=args.timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sys.stderr.write(proc.stderr if proc.returncode == 0 else "")
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-5:]
            raise RuntimeError(f"exit {proc.returncode}: " + " | ".join(tail))
        with open(out) as f:
            return json.load(f)
    except Exception as exc:
        err = f"{type(exc).__name__}: {exc}"
        print(f"   {peer} failed: {err}", flush=True)
        return {"records": [dict(peer=peer, threads=threads, mode=m, net=n, batch=b,
                                 error=err)
                            for n in nets for m in args.modes
                            for b in (args.batch if m == "train" else [None])],
                "info": {}}
    finally:
        if os.path.exists(out):
            os.unlink(out)


def add_rates(rec, peak):
    if "seconds" not in rec:
        return rec
    rec["samples_per_s"] = rec["n_samples"] / rec["seconds"]
    rec["gflops"] = rec["flops"] / rec["seconds"] * 1e-9
    p = peak.get(rec["threads"], {}).get("gflops")
    rec["pct_peak"] = 100.0 * rec["gflops"] / p if p else None
    if rec["mode"] == "train":
        # The convention above counts the first layer's input delta (dX),
        # which no peer computes. Without it (design.md's "~60.4 GFLOP per
        # epoch" for 784-256-128-10) the rate is the one the FMA units see.
        sizes = parse_net(rec["net"])
        net_flops = rec["flops"] - 2.0 * sizes[0] * sizes[1] * rec["n_samples"]
        rec["gflops_net"] = net_flops / rec["seconds"] * 1e-9
        rec["pct_peak_net"] = 100.0 * rec["gflops_net"] / p if p else None
    return rec


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def markdown(records):
    lines = []
    for mode, title in (("train", "Training: one epoch of SGD"),
                        ("predict", "Inference: predict_proba over all rows")):
        rows = [r for r in records if r["mode"] == mode]
        if not rows:
            continue
        lines += [f"### {title}", "",
                  "| threads | net | batch | peer | s | samples/s | GFLOP/s | % peak | ΔRSS MB |"
                  + (" loss after |" if mode == "predict" else " % peak w/o dX₀ |"),
                  "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            head = f"| {r['threads']} | {r['net']} | {r['batch'] or '—'} | {r['peer']} |"
            if "error" in r:
                lines.append(head + f" skipped: {r['error'][:70]} ||||||")
                continue
            if r.get("noisy"):
                head = head[:-1] + "(busy!) |"
            lines.append(head + f" {r['seconds']:.3f} | {r['samples_per_s']:,.0f} | "
                         f"{r['gflops']:.1f} | {fmt(r['pct_peak'], '.0f')} | "
                         f"{fmt(r['rss_growth_mb'], '.1f')} |"
                         + (f" {fmt(r.get('loss_after'), '.3f')} |" if mode == "predict"
                            else f" {fmt(r.get('pct_peak_net'), '.0f')} |"))
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    ap.add_argument("--net", nargs="+", default=["784-256-128-10"])
    ap.add_argument("--peers", nargs="+", default=ALL_PEERS,
                    help="numpy torch jax sklearn fastnn fastnn-<blas|generic|avx2|avx512|amx> numpy-ref")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; best is reported")
    ap.add_argument("--repeat-peer", action="append", default=[], metavar="PEER=N",
                    help="other repeat count for one peer, e.g. sklearn=1")
    ap.add_argument("--modes", nargs="+", default=["train", "predict"],
                    choices=["train", "predict"])
    ap.add_argument("--samples", type=int, default=60000)
    ap.add_argument("--timeout", type=float, default=3600, help="per peer subprocess, s")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                    help="before the peak and each peer, wait up to S s for other "
                         "processes to leave our CPUs idle")
    ap.add_argument("--peak-iters", type=int, default=200_000_000)
    ap.add_argument("--out", default=None, help="JSON output")
    ap.add_argument("--append", action="store_true",
                    help="add the records to an existing --out file instead of replacing it")
    ap.add_argument("--single", default=None, help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--single-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.single:
        args.net = [parse_net(s) for s in args.net]
        return run_single(args)

    for s in args.net:
        parse_net(s)
    cpus = sorted(os.sched_getaffinity(0))
    for T in args.threads:
        if T == 1 and len(cpus) > 1:
            print(f"warning: 1-thread run not pinned (affinity {cpus}); "
                  "launch under `taskset -c 0`", file=sys.stderr)
        if T > len(cpus):
            print(f"warning: {T} threads on {len(cpus)} allowed CPU(s)", file=sys.stderr)

    peak = {}
    for T in sorted(set(args.threads)):
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        with ForeignCpu() as fc:
            peak[T] = measure_peak(T, args.peak_iters)
        peak[T]["foreign_cpu_share"] = round(fc.share, 3)
        peak[T]["foreign_cpu_share_machine"] = round(fc.share_all, 3)
        if fc.share > 0.05:
            print(f"warning: other processes used {100 * fc.share:.0f}% of our CPUs "
                  "while measuring the peak: it is underestimated", file=sys.stderr)
        print(f"FMA peak, {T} thread(s): {peak[T]}", flush=True)

    records, infos = [], {}
    t_start = time.time()
    for T in args.threads:
        for peer in args.peers:
            if args.wait_quiet:
                waited = wait_quiet(args.wait_quiet)
                if waited > 3:
                    print(f"   waited {waited:.0f} s for a quiet machine", flush=True)
            before = contention_probe(peak, T)
            load = os.getloadavg()[0]
            with ForeignCpu() as fc:
                res = run_peer(args, peer, T, args.net)
            after = contention_probe(peak, T)
            quiet = [x for x in (before, after) if x is not None]
            noisy = (bool(quiet) and min(quiet) < 0.85) or fc.share > 0.05
            if noisy:
                print(f"   warning: {peer}: other processes used {100 * fc.share:.0f}% "
                      f"of our CPUs, FMA probe {before}/{after} of peak, load {load:.1f}: "
                      "machine busy, numbers unreliable", flush=True)
            for r in res["records"]:
                # fraction of the reference FMA peak available around this peer
                r["fma_probe"] = [before, after]
                r["foreign_cpu_share"] = round(fc.share, 3)
                r["foreign_cpu_share_machine"] = round(fc.share_all, 3)
                r["loadavg_1min"] = load
                r["noisy"] = noisy
            records += [add_rates(r, peak) for r in res["records"]]
            infos[f"{peer}/{T}"] = res["info"]

    for p in peak.values():
        if "exe" in p and os.path.exists(p["exe"]):
            os.unlink(p["exe"])
        p.pop("exe", None)
    table = markdown(records)
    print()
    print("FMA peak (float32, measured): " + ", ".join(
        f"{T} thread(s) {p.get('gflops', '?')} GFLOP/s ({p.get('isa', '?')})"
        for T, p in peak.items()))
    print()
    print(table)
    if args.out:
        doc = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "wall_seconds": time.time() - t_start,
               "machine": {"platform": platform.platform(),
                           "processor": _cpu_model(), "affinity": cpus,
                           "python": platform.python_version()},
               "peak": {str(T): p for T, p in peak.items()},
               "flop_convention": "train 6*sum(n_in*n_out)*n_samples, "
                                  "predict 2*sum(n_in*n_out)*n_samples",
               "peer_info": infos, "records": records, "markdown": table}
        if args.append and os.path.exists(args.out):
            # keep earlier runs; the newest run's metadata comes first
            with open(args.out) as f:
                old = json.load(f)
            doc["records"] = old["records"] + records
            doc["peer_info"] = {**old.get("peer_info", {}), **infos}
            doc["markdown"] = markdown(doc["records"])
            doc["earlier_runs"] = old.get("earlier_runs", []) + [
                {k: old[k] for k in ("command", "date", "peak", "wall_seconds") if k in old}]
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.out}")


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
