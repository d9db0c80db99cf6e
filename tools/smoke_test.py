"""Smoke test of an installed fastnn: import it, show where it came from and
its configuration, train a tiny network and check that it learned.

    python tools/smoke_test.py [--expect-openmp | --expect-serial]

Run it from outside the repository (CI copies it to a temporary folder), so
that ``import fastnn`` finds the installed package and not the source tree.
"""
import os
import sys

import numpy as np

import fastnn as fn


def main(argv):
    print(f"fastnn imported from {fn.__file__}")
    fn.show_config()
    from fastnn import _engine
    if "--expect-openmp" in argv and not _engine.openmp_enabled():
        sys.exit("smoke_test: expected an OpenMP build, got the serial engine")
    if "--expect-serial" in argv and _engine.openmp_enabled():
        sys.exit("smoke_test: expected the serial engine (FASTNN_NO_OPENMP=1), got OpenMP")
    here = os.path.abspath(os.getcwd())
    try:
        below_here = os.path.commonpath([here, os.path.abspath(fn.__file__)]) == here
    except ValueError:          # different drives (Windows): certainly not below
        below_here = False
    if below_here:
        print(f"smoke_test: note: fastnn was imported from below the current folder {here}")

    # XOR: the smallest problem that needs a hidden layer.
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    net = fn.Network([fn.Dense(2, 8, activation="tanh"),
                      fn.Dense(8, 2, activation="softmax")],
                     loss="cross_entropy", seed=0)
    history = net.fit(X, y, epochs=300, batch_size=4, optimizer=fn.SGD(lr=0.5, momentum=0.9),
                      n_threads=2)
    accuracy = net.evaluate(X, y)["accuracy"]
    print(f"XOR: loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}, "
          f"accuracy {accuracy}")
    if accuracy != 1.0:
        sys.exit("smoke_test: the tiny network did not learn XOR")
    print("smoke test passed")


if __name__ == "__main__":
    main(sys.argv[1:])
