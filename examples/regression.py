"""Regression on scikit-learn's diabetes data: fastnn.MLPRegressor and a Network
with the mse loss and a cosine learning-rate schedule, against two baselines.

    python examples/regression.py

The data (442 patients, 10 standardised measurements, a disease-progression
score one year later) ship with scikit-learn.  On a data set this small and
noisy a linear model is hard to beat; the point is how the pieces fit
together, and that the networks do not overfit once regularised.
FASTNN_EXAMPLE_QUICK=1 trains for fewer epochs.
"""
import os
import warnings

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastnn as fn

QUICK = os.environ.get("FASTNN_EXAMPLE_QUICK", "") not in ("", "0")
EPOCHS = 20 if QUICK else 100


def report(name, y_true, y_pred):
    rmse = np.sqrt(mean_squared_error(y_true, y_pred))
    print(f"  {name:<46} R² = {r2_score(y_true, y_pred):6.3f}   RMSE = {rmse:5.1f}")


def main():
    X, y = load_diabetes(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    print(f"diabetes: {len(X_train)} training and {len(X_test)} test patients, "
          f"{X.shape[1]} features; target from {y.min():.0f} to {y.max():.0f}")

    results = []

    # Baselines: always predict the training mean; a linear model.
    mean = DummyRegressor().fit(X_train, y_train)
    results.append(("baseline: the training mean", mean.predict(X_test)))
    ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(X_train, y_train)
    results.append(("baseline: Ridge (linear)", ridge.predict(X_test)))

    # fastnn.MLPRegressor: scikit-learn's estimator on fastnn's engine.  A
    # strong L2 penalty (alpha) keeps 8 hidden units from fitting the noise.
    mlp = make_pipeline(StandardScaler(),
                        fn.MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", alpha=10.0,
                                        max_iter=200 if QUICK else 1000, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)   # the quick run stops early
        mlp.fit(X_train, y_train)
    results.append(("fastnn.MLPRegressor(8 hidden, lbfgs, alpha=10)", mlp.predict(X_test)))

    # A Network: 10 -> 32 tanh -> 1 linear, mean squared error.  Inputs and
    # target standardised with the training statistics.
    scaler = StandardScaler().fit(X_train)
    y_mean, y_std = y_train.mean(), y_train.std()
    T_train = ((y_train - y_mean) / y_std).reshape(-1, 1)
    net = fn.Network([fn.Dense(10, 32, activation="tanh"),
                      fn.Dense(32, 1, activation="linear")],
                     loss="mse", dtype="float64", seed=0)
    schedule = fn.CosineAnnealing(epochs=EPOCHS, warmup_epochs=5)
    history = net.fit(scaler.transform(X_train), T_train, epochs=EPOCHS, batch_size=32,
                      optimizer=fn.SGD(lr=0.05, momentum=0.9), lr_schedule=schedule, l2=0.03)
    lr = history.history["lr"]
    print(f"Network: {EPOCHS} epochs of SGD with momentum, cosine schedule with 5 warm-up "
          f"epochs (lr {lr[0]:.3g} -> peak {max(lr):.3g} -> {lr[-1]:.3g}), l2=0.03; "
          f"training loss {history.history['loss'][0]:.3f} -> {history.history['loss'][-1]:.3f}")
    pred = net.predict(scaler.transform(X_test)).ravel() * y_std + y_mean
    results.append(("fastnn.Network(10-32-1, mse, CosineAnnealing)", pred))

    print("\ntest set:")
    for name, y_pred in results:
        report(name, y_test, y_pred)
    best = max(results, key=lambda r: r2_score(y_test, r[1]))
    print(f"best: {best[0]}")


if __name__ == "__main__":
    main()
