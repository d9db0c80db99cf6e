"""Small problems: time per epoch of full-batch iRPROP- training on FANN's
benchmark sets (../shared/fann-datasets), fastnn against FANN's own C library.

    taskset -c 0 python bench/bench_fann.py --out bench/results_fann_speed.json

FANN (Debian's libfann-dev, float build, loaded with ctypes) trains with
``fann_train_on_data`` for a fixed number of epochs in one call (desired error
0, so it never stops early): no Python between its epochs.  fastnn trains the
same layers (sigmoid everywhere, float32, and FANN's flat spot: FANN takes
the sigmoid's derivative from the output clipped to [0.01, 0.99], which is
``Dense(flat_spot=0.01)``; ``--no-flat-spot`` trains without it) with
``RProp`` for the same number of epochs in one ``fit`` call (verbose 0, no
callbacks: the engine runs many epochs per call).

Without the flat spot, training on abelone drives hidden units so far into
the sigmoid's tail that thousands of their outputs are subnormal floats
(below 1.2e-38), and arithmetic on subnormals is several times slower on
this CPU: abelone then costs about three times as much per row (see the
README).  Both networks are
FANN's benchmark configuration (bench README / ../shared/fann-datasets/
README.md); the figure is the median over ``--repeat`` runs of the time per
epoch, one thread.
"""
import argparse
import ctypes
import ctypes.util
import json
import os
import time

import numpy as np

import fastnn as fn
from fastnn.datasets import load_fann_data

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.environ.get("FANN_DATASETS",
                      os.path.join(HERE, "..", "..", "shared", "fann-datasets"))
LAYERS = {"abelone": [10, 16, 1], "bank32fm": [32, 16, 1], "bank32nh": [32, 16, 1],
          "building": [14, 16, 3], "census-house": [16, 16, 1], "diabetes": [8, 4, 2],
          "gene": [120, 4, 2, 3], "kin32fm": [32, 16, 1], "mushroom": [125, 32, 2],
          "parity8": [8, 16, 1], "parity13": [13, 26, 1], "pumadyn-32fm": [32, 10, 1],
          "robot": [48, 96, 3], "soybean": [82, 16, 8, 19], "thyroid": [21, 16, 8, 3],
          "two-spiral": [2, 20, 10, 1]}
FANN_SIGMOID, FANN_TRAIN_RPROP = 3, 2


def load_fann():
    name = ctypes.util.find_library("floatfann")
    if name is None:
        raise SystemExit("libfann is not installed: apt-get install libfann-dev")
    lib = ctypes.CDLL(name)
    lib.fann_create_standard_array.restype = ctypes.c_void_p
    lib.fann_create_standard_array.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
    lib.fann_read_train_from_file.restype = ctypes.c_void_p
    lib.fann_read_train_from_file.argtypes = [ctypes.c_char_p]
    for f in ("fann_set_activation_function_hidden", "fann_set_activation_function_output",
              "fann_set_training_algorithm"):
        getattr(lib, f).argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.fann_randomize_weights.argtypes = [ctypes.c_void_p, ctypes.c_float, ctypes.c_float]
    lib.fann_train_on_data.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint,
                                       ctypes.c_uint, ctypes.c_float]
    lib.fann_destroy.argtypes = [ctypes.c_void_p]
    lib.fann_destroy_train.argtypes = [ctypes.c_void_p]
    return lib


def time_fann(lib, path, sizes, epochs):
    arr = (ctypes.c_uint * len(sizes))(*sizes)
    ann = lib.fann_create_standard_array(len(sizes), arr)
    lib.fann_set_activation_function_hidden(ann, FANN_SIGMOID)
    lib.fann_set_activation_function_output(ann, FANN_SIGMOID)
    lib.fann_set_training_algorithm(ann, FANN_TRAIN_RPROP)
    lib.fann_randomize_weights(ann, -0.1, 0.1)
    data = lib.fann_read_train_from_file(os.fsencode(path))
    t0 = time.perf_counter()
    lib.fann_train_on_data(ann, data, epochs, 0, 0.0)
    seconds = time.perf_counter() - t0
    lib.fann_destroy_train(data)
    lib.fann_destroy(ann)
    return seconds / epochs


def time_fastnn(X, y, sizes, epochs, flat_spot=0.01):
    layers = [fn.Dense(a, b, activation="sigmoid", init="uniform", flat_spot=flat_spot)
              for a, b in zip(sizes[:-1], sizes[1:])]
    net = fn.Network(layers, loss="mse", dtype="float32", seed=0)
    opt = fn.RProp()
    net.fit(X, y, epochs=2, optimizer=opt, n_threads=1)    # warm-up
    t0 = time.perf_counter()
    net.fit(X, y, epochs=epochs, optimizer=opt, n_threads=1, shuffle=False)
    return (time.perf_counter() - t0) / epochs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=sorted(LAYERS))
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-flat-spot", action="store_true",
                    help="fastnn without FANN's flat spot (plain sigmoid derivative)")
    ap.add_argument("--out")
    args = ap.parse_args()
    flat_spot = 0.0 if args.no_flat_spot else 0.01
    lib = load_fann()
    records = []
    print(f"{'set':<14} {'rows':>6} {'layers':<14} {'FANN us/epoch':>14} "
          f"{'fastnn us/epoch':>16} {'fastnn faster':>14}")
    for name in args.sets:
        path = os.path.join(DATA, name + ".train")
        X, y = load_fann_data(path, dtype="float32")
        sizes = LAYERS[name]
        f, s = [], []
        for _ in range(args.repeat):
            f.append(time_fann(lib, path, sizes, args.epochs))
            s.append(time_fastnn(X, y, sizes, args.epochs, flat_spot))
        rec = {"set": name, "rows": int(X.shape[0]), "layers": sizes, "epochs": args.epochs,
               "flat_spot": flat_spot,
               "fann_us": float(np.median(f)) * 1e6, "fastnn_us": float(np.median(s)) * 1e6}
        rec["ratio"] = rec["fann_us"] / rec["fastnn_us"]
        records.append(rec)
        print(f"{name:<14} {rec['rows']:>6} {'-'.join(map(str, sizes)):<14} "
              f"{rec['fann_us']:>14.1f} {rec['fastnn_us']:>16.1f} {rec['ratio']:>13.2f}x")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "records": records}, fh, indent=1)


if __name__ == "__main__":
    main()
