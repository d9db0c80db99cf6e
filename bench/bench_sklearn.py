"""fastnn.MLPClassifier against sklearn.neural_network.MLPClassifier, same parameters.

Example (one core, as the numbers in bench/README.md):

    taskset -c 0 python bench/bench_sklearn.py
    taskset -c 0 python bench/bench_sklearn.py --datasets mnist --epochs 5 --repeat 2

Cases:

* ``digits``: scikit-learn's digits (1797 x 64, scaled to [0, 1]), 80/20
  split, scikit-learn's default parameters (hidden (100,), adam, up to 200
  epochs with tol/n_iter_no_change stopping) plus random_state, and the same
  with solver="sgd".  Each library stops on its own criterion, so the table
  shows the epochs run and seconds per epoch next to the total.
* ``mnist``: a synthetic MNIST-shaped set, 60000 x 784 float32 in [0, 1]
  labelled by a random linear teacher (10 classes), hidden (256, 128), solver
  sgd and adam, exactly ``--epochs`` epochs (tol=0 and n_iter_no_change
  larger than the epochs, so neither stops early), batch_size "auto" (200).

Both run in this process on float32 data (scikit-learn then computes in
float32 too), fastnn with ``n_threads`` = ``--threads``; the BLAS thread
variables are set to ``--threads`` before NumPy loads.  Pin the process to
the cores you mean (``taskset -c 0`` for one).  Times are wall-clock seconds
of ``fit``, best of ``--repeat``; the ratio is scikit-learn's time over
fastnn's (> 1: fastnn is faster).
"""
import argparse
import json
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["digits", "mnist"],
                   choices=["digits", "mnist"])
    p.add_argument("--solvers", nargs="+", default=["sgd", "adam"], choices=["sgd", "adam"])
    p.add_argument("--epochs", type=int, default=3, help="epochs of the mnist case")
    p.add_argument("--samples", type=int, default=60000, help="rows of the mnist case")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="timed fits per case (best kept)")
    p.add_argument("--out", help="write the records to this JSON file")
    return p.parse_args(argv)


def set_thread_env(threads):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


def load_digits_case():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    import numpy as np
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


def synthetic_mnist(n_samples, seed=0):
    """MNIST-shaped data: 784 features in [0, 1], about 80% of them zero, and
    10 classes from a random linear teacher (learnable, not trivial)."""
    import numpy as np
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, 784), dtype=np.float32)
    X[X < 0.8] = 0.0
    X *= np.float32(1 / 0.2)
    np.clip(X, 0, 1, out=X)
    teacher = rng.normal(size=(784, 10)).astype(np.float32)
    y = (X @ teacher).argmax(axis=1)
    n_test = n_samples // 6
    return X[n_test:], X[:n_test], y[n_test:], y[:n_test]


def time_fit(make, X, y, repeat):
    import warnings
    from sklearn.exceptions import ConvergenceWarning
    best, model = None, None
    for _ in range(repeat):
        est = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            est.fit(X, y)
            seconds = time.perf_counter() - t0
        if best is None or seconds < best:
            best, model = seconds, est
    return best, model


def run_case(name, solver, params, data, args, records):
    import fastnn
    from sklearn.neural_network import MLPClassifier as SkMLP
    X_train, X_test, y_train, y_test = data
    row = {"dataset": name, "solver": solver, "n_samples": int(X_train.shape[0]),
           "n_features": int(X_train.shape[1]), "threads": args.threads,
           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}}
    makers = {
        "fastnn": lambda: fastnn.MLPClassifier(solver=solver, n_threads=args.threads, **params),
        "sklearn": lambda: SkMLP(solver=solver, **params),
    }
    for lib, make in makers.items():
        seconds, model = time_fit(make, X_train, y_train, args.repeat)
        row[lib] = {"seconds": seconds, "epochs": int(model.n_iter_),
                    "seconds_per_epoch": seconds / max(1, model.n_iter_),
                    "train_accuracy": float(model.score(X_train, y_train)),
                    "test_accuracy": float(model.score(X_test, y_test)),
                    "final_loss": float(model.loss_)}
    row["ratio"] = row["sklearn"]["seconds"] / row["fastnn"]["seconds"]
    row["ratio_per_epoch"] = (row["sklearn"]["seconds_per_epoch"]
                              / row["fastnn"]["seconds_per_epoch"])
    records.append(row)
    f, s = row["fastnn"], row["sklearn"]
    print(f"{name:7s} {solver:5s} | fastnn {f['seconds']:8.3f} s {f['epochs']:4d} ep "
          f"{f['seconds_per_epoch']:8.4f} s/ep acc {f['test_accuracy']:.4f} | sklearn "
          f"{s['seconds']:8.3f} s {s['epochs']:4d} ep {s['seconds_per_epoch']:8.4f} s/ep "
          f"acc {s['test_accuracy']:.4f} | ratio {row['ratio']:6.2f} "
          f"(per epoch {row['ratio_per_epoch']:6.2f})", flush=True)


def main(argv=None):
    args = parse_args(argv)
    set_thread_env(args.threads)      # before NumPy and scikit-learn load BLAS
    import numpy as np
    import sklearn
    import fastnn
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    print(f"fastnn {fastnn.__version__} (kernel {fastnn.get_kernel()}), scikit-learn "
          f"{sklearn.__version__}, numpy {np.__version__}; threads {args.threads}, cores "
          f"this process may use: {cores}", flush=True)
    if cores != args.threads:
        print(f"note: {cores} cores available for {args.threads} thread(s); pin with "
              f"taskset -c 0 for the one-core numbers", file=sys.stderr)
    records = []
    for name in args.datasets:
        if name == "digits":
            data = load_digits_case()
            params = dict(random_state=0)          # scikit-learn's defaults otherwise
        else:
            data = synthetic_mnist(args.samples)
            params = dict(hidden_layer_sizes=(256, 128), max_iter=args.epochs, tol=0.0,
                          n_iter_no_change=args.epochs + 1, random_state=0)
        for solver in args.solvers:
            extra = dict(learning_rate_init=0.01) if solver == "sgd" and name == "mnist" else {}
            run_case(name, solver, {**params, **extra}, data, args, records)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"records": records, "argv": sys.argv[1:]}, f, indent=1)


if __name__ == "__main__":
    main()
