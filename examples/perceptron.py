"""The perceptron: one neuron with a threshold.

    python examples/perceptron.py

1. The classic single neuron as a fastnn Network: inputs (0.5, 0.6),
   weights (0.5, 0.7), threshold 0.5, step activation.
2. fastnn.Perceptron (scikit-learn's Perceptron, compiled) learning the AND
   and OR gates and a linearly separable cloud of points, and failing on XOR,
   which no single neuron can represent.
3. The learned weights copied into a Network with a step output, which then
   makes the same decisions.

Needs scikit-learn for part 2 and 3 (pip install "fastnn[sklearn]").
FASTNN_EXAMPLE_QUICK=1 uses fewer points.
"""
import os

import numpy as np

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLE_QUICK", "") not in ("", "0")
N_POINTS = 200 if QUICK else 2000


def threshold_neuron():
    print("1. A single neuron: output 1 when w1*x1 + w2*x2 >= threshold, else 0")
    neuron = fn.Network(fn.Dense(2, 1, activation="step"))   # step: 1 if z >= 0 else 0
    neuron.layers[0].W = [[0.5], [0.7]]                      # weights, shape (n_in, n_out)
    neuron.layers[0].b = [-0.5]                              # bias = -threshold
    for x in ([0.5, 0.6], [0.1, 0.2]):
        z = float(np.dot(x, [0.5, 0.7]))
        out = neuron.predict([x])[0, 0]
        print(f"   inputs {x}: weighted sum {z:.2f} {'>=' if z >= 0.5 else '<'} 0.5 "
              f"-> output {out:.0f}")


def gates():
    print("\n2. fastnn.Perceptron on the logic gates (the perceptron learning rule)")
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    for name, y in (("AND", [0, 0, 0, 1]), ("OR", [0, 1, 1, 1]), ("XOR", [0, 1, 1, 0])):
        p = fn.Perceptron(max_iter=100, tol=None, shuffle=False).fit(X, y)
        learned = p.predict(X)
        verdict = ("learned" if np.array_equal(learned, y)
                   else "NOT learned (not linearly separable)")
        print(f"   {name}: targets {y}, predictions {learned.tolist()} -> {verdict}")


def separable_cloud():
    print(f"\n   {N_POINTS} random points labelled by the line x2 = 0.5 * x1 + 0.2, "
          f"with a margin")
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(4 * N_POINTS, 2))
    distance = X[:, 1] - (0.5 * X[:, 0] + 0.2)
    X = X[np.abs(distance) > 0.1][:N_POINTS]                 # keep a margin around the line
    y = (X[:, 1] > 0.5 * X[:, 0] + 0.2).astype(int)
    p = fn.Perceptron(random_state=0).fit(X, y)
    accuracy = p.score(X, y)
    (w1, w2), b = p.coef_[0], p.intercept_[0]
    print(f"   fastnn.Perceptron: {p.n_iter_} epochs, training accuracy {accuracy:.3f}, "
          f"learned line x2 = {-w1 / w2:.3f} * x1 + {-b / w2:.3f}")
    return p, X


def as_network(p, X):
    print("\n3. The same neuron as a Network with a step output")
    net = fn.Network(fn.Dense(2, 1, activation="step"), dtype="float64")
    net.layers[0].W = p.coef_.T           # (1, 2) -> (n_in, n_out) = (2, 1)
    net.layers[0].b = p.intercept_
    same = np.mean(net.predict(X).ravel() == p.predict(X))
    print(f"   Network(Dense(2, 1, activation='step')) agrees with Perceptron.predict on "
          f"{same:.1%} of the points")


def main():
    threshold_neuron()
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("\nscikit-learn is not installed: skipping fastnn.Perceptron "
              "(pip install 'fastnn[sklearn]')")
        return
    gates()
    p, X = separable_cloud()
    as_network(p, X)


if __name__ == "__main__":
    main()
