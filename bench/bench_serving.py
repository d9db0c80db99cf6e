"""Serving benchmark: the latency of one predict call on 1 row and on 1,000
rows of a 784-256-128-10 relu/softmax network, fastnn against NumPy, PyTorch,
JAX and ONNX Runtime, all given the same float32 weights, one thread.

    taskset -c 0 python bench/bench_serving.py --out bench/results_serving.json

``--sizes 1024-2048-10 --rows 1 100`` serves another network and row counts.

ONNX Runtime runs a scikit-learn MLPClassifier carrying the same weights,
exported by skl2onnx with ``zipmap=False`` (``pip install onnxruntime
skl2onnx``), with one intra- and inter-op thread.  Each peer runs in its own
subprocess whose thread variables are set before its library loads (as in
bench_mlp.py); the parent imports no numerical library.  Each measurement is
the median over ``--repeat`` rounds of the mean time per call of a round
(``--calls`` calls for one row, a tenth of that for 1,000 rows), after a warm
round; the same input array is passed every call, as a server reuses its
buffers.  The peers run in turn, ``--passes`` times; a figure is the median
over the passes, and a ratio the median of the ratios within each pass.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = ["fastnn", "numpy", "torch", "jax", "onnxruntime"]
SIZES = "784-256-128-10"
ROWS = [1, 1000]
THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def make_params(sizes):
    import numpy as np
    sys.path.insert(0, HERE)
    from peers import init_params
    params = init_params(sizes)
    rng = np.random.default_rng(1)
    # Non-zero biases, so that every peer really adds them.
    return [(W, (0.1 * rng.standard_normal(W.shape[1])).astype(np.float32)) for W, _ in params]


def build(peer, params):
    """A function X -> probabilities for ``peer``."""
    import numpy as np
    if peer == "fastnn":
        import fastnn as fn
        layers = [fn.Dense(W.shape[0], W.shape[1],
                           activation="softmax" if i == len(params) - 1 else "relu")
                  for i, (W, _) in enumerate(params)]
        net = fn.Network(layers, loss="cross_entropy")
        for layer, (W, b) in zip(net.layers, params):
            layer.W[...] = W
            layer.b[...] = b
        return lambda X: net.predict(X, n_threads=1)
    if peer == "numpy":
        def predict(X):
            for i, (W, b) in enumerate(params):
                Z = X @ W
                Z += b
                if i < len(params) - 1:
                    X = np.maximum(Z, 0, out=Z)
            Z -= Z.max(axis=1, keepdims=True)
            np.exp(Z, out=Z)
            Z /= Z.sum(axis=1, keepdims=True)
            return Z
        return predict
    if peer == "torch":
        import torch
        torch.set_num_threads(1)
        mods = []
        for i, (W, b) in enumerate(params):
            lin = torch.nn.Linear(W.shape[0], W.shape[1])
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(W.T.copy()))
                lin.bias.copy_(torch.from_numpy(b))
            mods.append(lin)
            mods.append(torch.nn.ReLU() if i < len(params) - 1 else torch.nn.Softmax(dim=1))
        model = torch.nn.Sequential(*mods).eval()

        def predict(X):
            with torch.inference_mode():
                return model(torch.from_numpy(X)).numpy()
        return predict
    if peer == "jax":
        import jax
        import jax.numpy as jnp
        jparams = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]

        @jax.jit
        def forward(ps, X):
            for W, b in ps[:-1]:
                X = jax.nn.relu(X @ W + b)
            W, b = ps[-1]
            return jax.nn.softmax(X @ W + b, axis=1)
        return lambda X: np.asarray(forward(jparams, X))
    if peer == "onnxruntime":
        import onnxruntime as ort
        from skl2onnx import to_onnx
        from sklearn.neural_network import MLPClassifier
        sizes = [params[0][0].shape[0]] + [W.shape[1] for W, _ in params]
        clf = MLPClassifier(hidden_layer_sizes=tuple(sizes[1:-1]), max_iter=1)
        rng = np.random.default_rng(0)
        Xfit = rng.standard_normal((50, sizes[0])).astype(np.float32)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(Xfit, np.arange(50) % sizes[-1])
        clf.coefs_ = [W.astype(np.float64) for W, _ in params]
        clf.intercepts_ = [b.astype(np.float64) for _, b in params]
        onx = to_onnx(clf, Xfit[:1], options={id(clf): {"zipmap": False}})
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(onx.SerializeToString(), opts,
                                    providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda X: sess.run(["probabilities"], {name: X})[0]
    raise ValueError(peer)


def child(peer, calls, repeat, out, sizes, row_counts):
    import numpy as np
    params = make_params(sizes)
    predict = build(peer, params)
    rng = np.random.default_rng(2)
    records = []
    for rows in row_counts:
        X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
        n = max(10, calls if rows == 1 else calls // 10)
        proba = predict(X)
        # every peer computes the same function (checked against NumPy)
        ref = build("numpy", params)(X)
        err = float(np.max(np.abs(np.asarray(proba) - ref)))
        for _ in range(n):               # warm round
            predict(X)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(n):
                predict(X)
            times.append((time.perf_counter() - t0) / n)
        times.sort()
        records.append({"peer": peer, "rows": rows, "median_us": times[len(times) // 2] * 1e6,
                        "min_us": times[0] * 1e6, "calls_per_round": n, "rounds": repeat,
                        "max_abs_diff_vs_numpy": err})
    with open(out, "w") as f:
        json.dump(records, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--peers", nargs="+", default=PEERS, choices=PEERS)
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--sizes", default=SIZES, help="the network's layer sizes (default %(default)s)")
    ap.add_argument("--rows", type=int, nargs="+", default=ROWS)
    ap.add_argument("--out")
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--single-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        child(args.single, args.calls, args.repeat, args.single_out,
              [int(s) for s in args.sizes.split("-")], args.rows)
        return
    import statistics
    import tempfile
    records = []
    env = {**os.environ, **THREAD_ENV}
    # Passes over every peer in turn: the machine's speed drifts (its FMA peak
    # by 10% within minutes here), so each ratio is taken within one pass.
    for n_pass in range(args.passes):
        for peer in args.peers:
            with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
                proc = subprocess.run([sys.executable, __file__, "--single", peer, "--single-out",
                                       tmp.name, "--calls", str(args.calls), "--repeat",
                                       str(args.repeat), "--sizes", args.sizes, "--rows",
                                       *map(str, args.rows)], env=env)
                if proc.returncode != 0:
                    print(f"{peer}: failed (exit {proc.returncode}), skipped", file=sys.stderr)
                    continue
                with open(tmp.name) as f:
                    records += [{**r, "pass": n_pass} for r in json.load(f)]
    fast = {(r["pass"], r["rows"]): r["median_us"] for r in records if r["peer"] == "fastnn"}
    print(f"{'peer':<12} {'rows':>5} {'median us':>10} {'min us':>9} {'fastnn faster':>14}"
          f"   (medians of {args.passes} passes; ratios within each pass)")
    summary = []
    for peer in args.peers:
        for rows in args.rows:
            mine = [r for r in records if r["peer"] == peer and r["rows"] == rows]
            if not mine:
                continue
            ratios = [r["median_us"] / fast[r["pass"], rows] for r in mine
                      if (r["pass"], rows) in fast]
            row = {"peer": peer, "rows": rows,
                   "median_us": statistics.median(r["median_us"] for r in mine),
                   "min_us": min(r["min_us"] for r in mine),
                   "fastnn_faster": statistics.median(ratios) if ratios else float("nan"),
                   "fastnn_faster_per_pass": ratios}
            summary.append(row)
            print(f"{peer:<12} {rows:>5} {row['median_us']:>10.1f} {row['min_us']:>9.1f} "
                  f"{row['fastnn_faster']:>13.2f}x")
    if args.out:
        meta = {"sizes": args.sizes, "machine": platform.machine(), "python": platform.python_version(),
                "affinity": sorted(os.sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d"),
                "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "summary": summary, "records": records}, f, indent=1)


if __name__ == "__main__":
    main()
