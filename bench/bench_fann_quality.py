"""Quality on FANN's benchmark sets: fastnn trained in FANN's benchmark
configuration, its test MSE and bit-fail fraction against FANN's published
iRPROP- figures (../shared/fann-datasets/README.md).

    python bench/bench_fann_quality.py --epochs 3000 --out bench/results_fann_quality.json
    python bench/bench_fann_quality.py --max-time 300 --sets parity8   # FANN's budget

FANN's benchmark (FANN 2.1's benchmarks/, summarised in the data sets'
README): the layers below, FANN_SIGMOID (steepness 0.5, the plain logistic)
on every layer, weights and biases uniform in +-0.1, iRPROP- with FANN's
defaults, FANN's "tanh" error function, the sigmoid derivative taken from the
output clipped to [0.01, 0.99] (flat-spot elimination); 300 s of training per
run on a 2005 Athlon XP, 4 runs; the figure is the lowest point of the
run-averaged test-MSE curve.  A bit fail there is (t - o)^2 >= 0.25, i.e.
|t - o| >= 0.5, and its figure the fraction of the test outputs that fail.

fastnn here: the same layers, init ``Uniform(0.1)`` for weights and biases,
``loss="fann_tanh"``, ``RProp()``, float32, one thread, seeds 0-3.  The
budget is an epoch count (``--epochs``, the same for every seed, so the
seeds' test curves line up epoch by epoch) or a wall-clock time per run
(``--max-time``, ``fit(max_time=...)``; the curves are then averaged over
the epochs every seed reached).  FANN's 300 s on its Athlon were many
thousands of epochs on the small sets; an epoch count makes the figures
independent of the machine.  The test set is evaluated every
``--eval-every`` epochs (MSE = mean over samples and outputs of (t - o)^2,
FANN's), and the reported figure is, as FANN's, the lowest point of the
seed-averaged curve, with the bit-fail fraction at that point.  "solved"
counts the seeds whose final network has no test output off by 0.35 or more
(FANN's default bit-fail limit; parity8's FANN runs reach an MSE of 9e-17).

FANN's other training details come with other parts of fastnn and are used
when present (``--rprop-variant``, ``--flat-spot``, ``--steepness``; "auto"
uses them when this fastnn has them, and the output says which were used):

* ``RProp(variant="fann")``: FANN's own iRPROP- update
  (``fann_update_weights_irpropm``);
* ``Dense(flat_spot=0.01)``: the derivative from the output clipped to
  [0.01, 0.99];
* ``Dense(steepness=2 * s)``: FANN's sigmoid steepness s (0.5, FANN's
  default, is fastnn's plain sigmoid and needs nothing).

``--library fann`` trains FANN's own library instead (libfann, float, through
ctypes: bench/libfann.py) under the same protocol: for each seed, fastnn's
network draws the initial weights, libfann starts from them
(``fann_set_weight_array``) and trains with ``fann_train_epoch``
(FANN_TRAIN_RPROP, its default tanh error function and clipped sigmoid
derivative), and the test curve is taken as fastnn's.  FANN's published
figures then separate from the budget: the two libraries run the same
algorithm (tests/test_fann_rprop_vs_libfann.py holds them to the same
weights epoch by epoch).
"""
import argparse
import inspect
import json
import os
import sys
import time

import numpy as np

import fastnn as fn
from fastnn.datasets import load_fann_data

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_fann import DATA, LAYERS   # noqa: E402  (the sets and FANN's layers)
import libfann                        # noqa: E402  (FANN's C library, ctypes)

# FANN iRPROP- test MSE and bit-fail fraction (../shared/fann-datasets/README.md)
PUBLISHED = {"abelone": (0.0056, 0.0), "bank32fm": (0.0018, 0.0), "bank32nh": (0.0150, 0.0043),
             "building": (0.00631, 0.0001), "census-house": (0.0077, 0.0046),
             "diabetes": (0.163, 0.246), "gene": (0.0754, 0.089), "kin32fm": (0.0141, 0.0005),
             "mushroom": (5e-17, 0.0), "parity8": (9e-17, 0.0), "parity13": (0.0392, 0.055),
             "pumadyn-32fm": (0.00419, 0.0), "robot": (0.00903, 0.0081),
             "soybean": (0.0438, 0.050), "thyroid": (0.0109, 0.013),
             "two-spiral": (0.204, 0.313)}
BENCH_BIT_FAIL = 0.5     # FANN's benchmark: (t - o)^2 >= 0.25
SOLVED_BIT_FAIL = 0.35   # FANN's default bit_fail_limit


# -- what this fastnn has (the hooks for FANN's features from other parts) ------

def _has_param(func, name):
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def available_features():
    return {"fann_tanh": "fann_tanh" in fn.losses.LOSSES,
            "bias_init": _has_param(fn.Dense, "bias_init"),
            "max_time": _has_param(fn.Network.fit, "max_time"),
            "rprop_variant": _has_param(fn.RProp, "variant"),
            "flat_spot": _has_param(fn.Dense, "flat_spot"),
            "steepness": _has_param(fn.Dense, "steepness")}


def resolve(args, have):
    """The features this run uses; exits when one was asked for explicitly
    ("on", "fann", a value) and this fastnn has not got it."""
    def pick(flag, feature, value):
        if flag in ("off", "paper") or (flag == "auto" and not have[feature]):
            return None
        if not have[feature]:
            sys.exit(f"this fastnn has no {feature}: run with 'auto' or without the flag")
        return value

    loss = args.loss if args.loss != "auto" else ("fann_tanh" if have["fann_tanh"] else "mse")
    use = {"loss": loss, "bias_init": have["bias_init"],
           "rprop_variant": pick(args.rprop_variant, "rprop_variant", "fann"),
           "flat_spot": pick(args.flat_spot, "flat_spot", 0.01),
           "steepness": None}
    if args.steepness is not None and args.steepness != 0.5:
        use["steepness"] = pick("on", "steepness", args.steepness)
    if loss == "fann_tanh":
        pick("on", "fann_tanh", True)
    if args.max_time is not None:
        pick("on", "max_time", True)
    return use


def make_network(sizes, use, seed, dtype):
    uniform = (fn.initializers.Uniform(0.1) if hasattr(fn.initializers, "Uniform")
               else (lambda rng, n_in, n_out: rng.uniform(-0.1, 0.1, (n_in, n_out))))
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        kw = {"activation": "sigmoid", "init": uniform}
        if use["bias_init"]:
            kw["bias_init"] = uniform              # FANN draws the biases with the weights
        if use["flat_spot"] is not None:
            kw["flat_spot"] = use["flat_spot"]     # f' from the output clipped to [0.01, 0.99]
        if use["steepness"] is not None:
            kw["steepness"] = 2 * use["steepness"]   # FANN's sigmoid: 1/(1+exp(-2 s x))
        layers.append(fn.Dense(n_in, n_out, **kw))
    return fn.Network(layers, loss=use["loss"], dtype=dtype, seed=seed)


def make_optimizer(use):
    if use["rprop_variant"] is not None:
        return fn.RProp(variant=use["rprop_variant"])
    return fn.RProp()


class TestCurve(fn.Callback):
    """Test MSE and bit-fail fraction every ``every`` epochs (and at the end)."""

    def __init__(self, X, T, every):
        super().__init__()
        self.X, self.T, self.every = X, T.astype(np.float64), every
        self.epochs, self.mse, self.bit_fail = [], [], []

    def record(self, epoch):
        err = np.abs(self.model.predict(self.X).astype(np.float64) - self.T)
        self.epochs.append(epoch + 1)
        self.mse.append(float(np.mean(err ** 2)))
        self.bit_fail.append(float(np.mean(err >= BENCH_BIT_FAIL)))
        self.solved = bool((err < SOLVED_BIT_FAIL).all())

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.record(epoch)


def run_libfann(name, net, X_test, T_test, seed, args):
    """FANN's own library (libfann, float) trained on the set from the
    initial weights of fastnn's network ``net`` (the same draw per seed),
    its test curve taken as TestCurve takes fastnn's."""
    lib = libfann.load("float")
    if lib is None:
        sys.exit("libfann is not installed: apt-get install libfann-dev")
    ann = libfann.FannNet(lib, LAYERS[name])
    ann.set_weights([(layer.W, layer.b) for layer in net.layers])
    data = libfann.FannData(lib, os.path.join(DATA, name + ".train"))
    curve = TestCurve(X_test, T_test, args.eval_every)
    curve.model = ann
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        train_mse = ann.train_epoch(data)
        curve.on_epoch_end(epoch)
        if args.max_time is not None and time.perf_counter() - t0 > args.max_time:
            break
    seconds = time.perf_counter() - t0
    if not curve.epochs or curve.epochs[-1] != epoch + 1:
        curve.record(epoch)
    return {"seed": seed, "epochs": epoch + 1, "seconds": seconds, "stop_reason": None,
            "curve_epochs": curve.epochs, "test_mse": curve.mse,
            "test_bit_fail": curve.bit_fail, "final_train_loss": float(train_mse),
            "solved": curve.solved}


def run_set(name, args, use):
    X, T = load_fann_data(os.path.join(DATA, name + ".train"), dtype=args.dtype)
    X_test, T_test = load_fann_data(os.path.join(DATA, name + ".test"), dtype=args.dtype)
    sizes = LAYERS[name]
    runs = []
    for seed in range(args.seeds):
        net = make_network(sizes, use, seed, args.dtype)
        if args.library == "fann":
            runs.append(run_libfann(name, net, X_test, T_test, seed, args))
            continue
        curve = TestCurve(X_test, T_test, args.eval_every)
        fit_kw = {"max_time": args.max_time} if args.max_time is not None else {}
        t0 = time.perf_counter()
        hist = net.fit(X, T, epochs=args.epochs, optimizer=make_optimizer(use), shuffle=False,
                       n_threads=args.threads, callbacks=[curve], **fit_kw)
        seconds = time.perf_counter() - t0
        if not curve.epochs or curve.epochs[-1] != len(hist.epoch):
            curve.record(len(hist.epoch) - 1)
        runs.append({"seed": seed, "epochs": len(hist.epoch), "seconds": seconds,
                     "stop_reason": hist.stop_reason, "curve_epochs": curve.epochs,
                     "test_mse": curve.mse, "test_bit_fail": curve.bit_fail,
                     "final_train_loss": hist["loss"][-1], "solved": curve.solved})
    # the seed-averaged curve over the checkpoints every seed reached
    n = min(len(r["test_mse"]) for r in runs)
    mse = np.mean([r["test_mse"][:n] for r in runs], axis=0)
    bit_fail = np.mean([r["test_bit_fail"][:n] for r in runs], axis=0)
    best = int(np.argmin(mse))
    fann_mse, fann_bf = PUBLISHED[name]
    return {"set": name, "layers": sizes, "runs": runs,
            "best_mse": float(mse[best]), "best_epoch": runs[0]["curve_epochs"][best],
            "bit_fail_at_best": float(bit_fail[best]), "final_mse": float(mse[n - 1]),
            "fann_mse": fann_mse, "fann_bit_fail": fann_bf,
            "solved": sum(r["solved"] for r in runs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=sorted(LAYERS))
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3000,
                    help="epochs per run (an upper bound with --max-time)")
    ap.add_argument("--max-time", type=float, help="seconds of training per run")
    ap.add_argument("--eval-every", type=int, help="epochs between test evaluations "
                    "(default: epochs / 100)")
    ap.add_argument("--loss", choices=["auto", "fann_tanh", "mse"], default="auto")
    ap.add_argument("--rprop-variant", choices=["auto", "paper", "fann"], default="auto")
    ap.add_argument("--flat-spot", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--steepness", type=float,
                    help="FANN's sigmoid steepness (0.5, FANN's default, is the plain logistic)")
    ap.add_argument("--library", choices=["fastnn", "fann"], default="fastnn",
                    help="train with fastnn, or with FANN's own library (libfann, float) "
                    "from the same initial weights, epoch by epoch")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.eval_every is None:
        args.eval_every = max(1, args.epochs // 100)
    have = available_features()
    use = resolve(args, have)
    budget = (f"{args.max_time:g} s (at most {args.epochs} epochs)" if args.max_time is not None
              else f"{args.epochs} epochs")
    if args.library == "fann":
        print(f"libfann (FANN 2.2, float): fann_train_epoch with FANN_TRAIN_RPROP and FANN's "
              f"defaults, from the initial weights fastnn draws per seed; {args.seeds} seeds, "
              f"{budget}, test every {args.eval_every} epochs")
    else:
        print(f"fastnn {fn.__version__}: loss={use['loss']}, RProp variant="
              f"{use['rprop_variant'] or 'paper (fastnn iRPROP-)'}, flat spot="
              f"{use['flat_spot'] or 'off'}, steepness={use['steepness'] or 'plain sigmoid'}, "
              f"biases {'uniform +-0.1' if use['bias_init'] else 'zero'}; {args.seeds} seeds, "
              f"{budget}, test every {args.eval_every} epochs")
    print(f"{'set':<13} {'layers':<12} {'best test MSE':>13} {'(epoch)':>8} {'FANN':>8} "
          f"{'ratio':>6} {'bit fail':>8} {'FANN':>7} {'solved':>6} {'s/run':>6}")
    records = []
    for name in args.sets:
        rec = run_set(name, args, use)
        records.append(rec)
        ratio = rec["best_mse"] / rec["fann_mse"]
        seconds = np.mean([r["seconds"] for r in rec["runs"]])
        print(f"{name:<13} {'-'.join(map(str, rec['layers'])):<12} {rec['best_mse']:>13.3g} "
              f"{rec['best_epoch']:>8} {rec['fann_mse']:>8.3g} "
              f"{ratio if ratio < 1e4 else float('inf'):>6.2f} {rec['bit_fail_at_best']:>8.4f} "
              f"{rec['fann_bit_fail']:>7.4f} {rec['solved']:>3}/{args.seeds:<2} {seconds:>6.1f}",
              flush=True)
    if args.out:
        write_json(args.out, {"date": time.strftime("%Y-%m-%d"), "features": use,
                              "args": vars(args), "records": records})


def write_json(path, results):
    """One line per set; the test curves to 4 significant digits."""
    for rec in results["records"]:
        for run in rec["runs"]:
            for key in ("test_mse", "test_bit_fail"):
                run[key] = [float(f"{v:.4g}") for v in run[key]]
    with open(path, "w") as fh:
        head = {k: v for k, v in results.items() if k != "records"}
        fh.write(json.dumps(head)[:-1] + ', "records": [\n')
        fh.write(",\n".join(json.dumps(rec, separators=(",", ":"))
                            for rec in results["records"]))
        fh.write("]}\n")


if __name__ == "__main__":
    main()
