"""XOR with a 2-4-1 network, and its learning curve drawn by History.plot().

    python examples/xor_learning_curve.py

XOR is the classic problem a single neuron cannot solve (its two classes are
not linearly separable) and a network with one hidden layer can.  Training
stops once the loss is below a target ("loop until the error is below a
threshold"); the learning curve is written to xor_learning_curve.png when
matplotlib is installed.  FASTNN_EXAMPLE_QUICK=1 allows fewer epochs.
"""
import os

import numpy as np

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLE_QUICK", "") not in ("", "0")
MAX_EPOCHS = 300 if QUICK else 2000
TARGET_LOSS = 0.02
PNG = "xor_learning_curve.png"


def main():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.float64)
    net = fn.Network([fn.Dense(2, 4, activation="tanh"),
                      fn.Dense(4, 1, activation="sigmoid")],
                     loss="binary_cross_entropy", seed=0)
    print("XOR with a 2-4-1 network (tanh hidden layer, sigmoid output, binary cross-entropy),")
    print(f"SGD with momentum on the 4 samples as one batch, until the loss is <= {TARGET_LOSS} "
          f"(at most {MAX_EPOCHS} epochs)")
    history = net.fit(X, y, epochs=MAX_EPOCHS, batch_size=4,
                      optimizer=fn.SGD(lr=0.1, momentum=0.9), target_loss=TARGET_LOSS)
    losses = history.history["loss"]
    print(f"{len(losses)} epochs (stop_reason={history.stop_reason!r}): loss {losses[0]:.4f} "
          f"-> {losses[-1]:.4f}")

    out = net.predict(X).ravel()
    print("\n x1 x2 | target | output")
    for (x1, x2), t, o in zip(X.astype(int), y.astype(int), out):
        print(f"  {x1}  {x2} |   {t}    | {o:.4f}")
    print(f"accuracy: {net.evaluate(X, y)['accuracy']:.2f}")

    try:
        import matplotlib
    except ImportError:
        print("\nmatplotlib is not installed: no plot (pip install matplotlib)")
        return
    matplotlib.use("Agg")        # write a file, open no window
    fig = history.plot()
    fig.axes[0].set_yscale("log")   # the loss spans two decades
    fig.tight_layout()
    fig.savefig(PNG, dpi=100)
    print(f"\nlearning curve written to {os.path.abspath(PNG)}")


if __name__ == "__main__":
    main()
