"""Handwritten digits with a Network: Adam, a validation split, early stopping,
progress lines, the test accuracy, and the model saved and loaded again.

    python examples/digits_classification.py

Needs scikit-learn (its digits data set ships with it: no download).
FASTNN_EXAMPLE_QUICK=1 trains for a few epochs only.
"""
import os
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLE_QUICK", "") not in ("", "0")
EPOCHS = 5 if QUICK else 100


def main():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0                                   # pixels 0..16 -> 0..1
    # train_test_split shuffles, so the last 15 % of the training rows that
    # validation_split holds out are a random sample too.
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y)
    print(f"digits: {len(X_train)} training and {len(X_test)} test images of 8x8 pixels, "
          f"10 classes")

    net = fn.Network([fn.Dense(64, 128, activation="relu", init="he_uniform"),
                      fn.Dense(128, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    print(net)
    stopper = fn.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True,
                               verbose=1)
    print(f"\ntraining up to {EPOCHS} epochs with Adam; 15 % of the training rows held out "
          f"for validation; early stopping on val_loss (patience 5)")
    history = net.fit(X_train, y_train, epochs=EPOCHS, batch_size=32,
                      optimizer=fn.Adam(lr=0.002), validation_split=0.15,
                      callbacks=[stopper], verbose=1)
    print(f"training ended after {len(history.epoch)} epochs "
          f"(stop_reason={history.stop_reason!r}); best val_loss {stopper.best:.4f} "
          f"in epoch {stopper.best_epoch + 1}")

    result = net.evaluate(X_test, y_test)
    print(f"\ntest accuracy: {result['accuracy']:.4f}  test loss: {result['loss']:.4f}")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "digits.fnn")
        net.save(path)
        size = os.path.getsize(path)
        loaded = fn.load(path)
    same = np.array_equal(loaded.predict(X_test), net.predict(X_test))
    print(f"saved and loaded again ({size:,} bytes, optimizer {type(loaded.optimizer).__name__} "
          f"at step {loaded.optimizer.step}): predictions identical: {same}")
    if not same:
        raise SystemExit("the loaded model predicts differently")
    wrong = np.flatnonzero(loaded.predict(X_test).argmax(axis=1) != y_test)
    print(f"{len(wrong)} of {len(y_test)} test images misclassified")


if __name__ == "__main__":
    main()
