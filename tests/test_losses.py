"""fastnn.losses: each Loss object's NumPy maths against finite differences and
against the engine, the poisson loss end to end, and the one fit driver.

Finite differences: central, h = 1e-6 on O(1) per-sample losses in float64,
truncation h^2/6 |L'''| ~ 1e-13 and rounding eps |L| / h ~ 1e-10: atol 1e-8.
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine, _reference as ref, losses

from conftest import DTYPES

# (loss, output activation) pairs the networks allow
PAIRS = [("mse", "linear"), ("mse", "tanh"), ("mse", "sigmoid"), ("mse", "softmax"),
         ("cross_entropy", "softmax"), ("binary_cross_entropy", "sigmoid"),
         ("poisson", "linear"), ("fann_tanh", "sigmoid"), ("fann_tanh", "tanh"),
         ("fann_tanh", "linear"), ("fann_tanh", "softmax")]


def _targets(loss, rng, n, k):
    if loss == "cross_entropy":
        return np.eye(k)[rng.integers(0, k, n)]
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, (n, k))
    if loss == "poisson":
        return rng.poisson(1.5, (n, k)).astype(float)
    return rng.normal(size=(n, k))


def test_registry_matches_the_engine():
    assert {name: l.code for name, l in losses.LOSSES.items()} == _engine.LOSS_CODES
    for name, loss in losses.LOSSES.items():
        assert losses.get(name) is loss and losses.get(name.upper()) is loss
        for alias in loss.aliases:
            assert losses.get(alias) is loss
        assert loss.metric in (None, "accuracy")
    assert losses.classification_losses() == ["cross_entropy", "binary_cross_entropy"]
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get("hinge")


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("loss,act", PAIRS, ids=[f"{l}-{a}" for l, a in PAIRS])
def test_delta_matches_finite_differences(loss, act, weighted):
    """delta = d(weighted mean loss)/d(pre-activation), row by row."""
    rng = np.random.default_rng(0)
    n, k, h = 5, 3, 1e-6
    Z = rng.normal(size=(n, k))
    T = _targets(loss, rng, n, k)
    w = rng.uniform(0.5, 2.0, n) if weighted else np.ones(n)
    obj = losses.get(loss)

    def mean_loss(Z):
        return np.sum(w * obj.loss(ref.activation(act, Z), T, act)) / w.sum()

    _, delta = obj.loss_and_delta(act, 0.0, ref.activation(act, Z), T,
                                  w if weighted else None)
    fd = np.zeros_like(Z)
    for i in range(n):
        for j in range(k):
            Zp, Zm = Z.copy(), Z.copy()
            Zp[i, j] += h
            Zm[i, j] -= h
            fd[i, j] = (mean_loss(Zp) - mean_loss(Zm)) / (2 * h)
    np.testing.assert_allclose(delta, fd, rtol=1e-6, atol=1e-8)
    # _reference.loss_and_delta is the object's
    np.testing.assert_array_equal(
        ref.loss_and_delta(loss, act, 0.0, ref.activation(act, Z), T)[1],
        obj.loss_and_delta(act, 0.0, ref.activation(act, Z), T)[1])


def test_poisson_is_scikit_learns_half_deviance():
    """The loss scikit-learn's MLPRegressor(loss="poisson") reports: its
    HalfPoissonLoss plus the constant that makes a perfect fit 0."""
    pytest.importorskip("sklearn")
    from sklearn._loss.loss import HalfPoissonLoss
    from sklearn.neural_network._base import poisson_loss
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(40, 1))
    y = rng.poisson(2.0, (40, 1)).astype(float)
    ours = losses.get("poisson").loss(Z, y)
    half = HalfPoissonLoss()
    theirs = half.loss(y[:, 0], Z[:, 0]) + half.constant_to_optimal_zero(y[:, 0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert losses.get("poisson").mean_loss(Z, y) == pytest.approx(
        poisson_loss(y, np.exp(Z)), rel=1e-12)
    np.testing.assert_allclose(losses.get("poisson").loss(np.log(y + 1.0), y + 1.0), 0,
                               atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("loss,act", PAIRS, ids=[f"{l}-{a}" for l, a in PAIRS])
def test_engine_matches_the_loss_object(loss, act, dtype, n_threads):
    """One layer: the engine's db is the sum of the object's delta rows and its
    dW = X.T @ delta; evaluate's loss is the object's mean loss."""
    rng = np.random.default_rng(2)
    n, k = 33, 3
    net = fn.Network([fn.Dense(4, k, activation=act)], loss=loss, dtype=dtype, seed=0)
    X = rng.normal(size=(n, 4)).astype(dtype)
    T = _targets(loss, rng, n, k)
    sw = rng.uniform(0.0, 2.0, n)
    O = net.forward(X)[-1].astype(np.float64)
    obj = net.loss_function
    tol = dict(rtol=2e-4, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)
    for weights in (None, sw):
        _, delta = obj.loss_and_delta(act, 0.0, O, T, weights)
        (dW, db), = net.gradients(X, T, n_threads=n_threads, sample_weight=weights)
        np.testing.assert_allclose(db, delta.sum(axis=0), **tol)
        np.testing.assert_allclose(dW, X.astype(np.float64).T @ delta, **tol)
    assert net.evaluate(X, T)["loss"] == pytest.approx(np.mean(obj.loss(O, T, act)),
                                                       rel=tol["rtol"])


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_poisson_network_fit_evaluate_predict(dtype):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 4))
    y = rng.poisson(np.exp(X @ [0.4, -0.3, 0.2, 0.0]))

    def trained(n_threads, dropout=0.0):
        net = fn.Network([fn.Dense(4, 8, activation="tanh", dropout=dropout),
                          fn.Dense(8, 1, activation="linear")],
                         loss="poisson", dtype=dtype, seed=0)
        hist = net.fit(X, y, epochs=15, batch_size=32, optimizer=fn.Adam(lr=0.01),
                       n_threads=n_threads)
        return net, hist

    net, hist = trained(1)
    assert hist["loss"][-1] < 0.8 * hist["loss"][0]
    Z = net.forward(X)[-1]
    pred = net.predict(X)
    assert pred.dtype == dtype
    np.testing.assert_allclose(pred, np.exp(Z), rtol=1e-6)      # the mean, exp(z)
    assert net.evaluate(X, y)["loss"] == pytest.approx(
        net.loss_function.mean_loss(Z.astype(np.float64), y.reshape(-1, 1).astype(float)))
    assert set(net.evaluate(X, y)) == {"loss"}               # no metric for regression
    # the same bits with 2 threads, and dropout trains too
    for a, b in zip(net.layers, trained(2)[0].layers):
        np.testing.assert_array_equal(a.W, b.W)
    dropped, hist = trained(1, dropout=0.3)
    assert np.isfinite(hist["loss"]).all() and hist["loss"][-1] < hist["loss"][0]


def test_poisson_network_errors_and_save(tmp_path):
    with pytest.raises(ValueError, match="needs a linear output layer"):
        fn.Network([fn.Dense(2, 1, activation="relu")], loss="poisson")
    net = fn.Network([fn.Dense(2, 1)], loss="poisson", seed=0)
    X = np.ones((3, 2))
    with pytest.raises(ValueError, match=">= 0 for the poisson loss"):
        net.fit(X, [1.0, -1.0, 2.0])
    with pytest.raises(ValueError, match="needs a classification loss"):
        net.fit(X, [1.0, 0.0, 2.0], metrics=["accuracy"])
    with pytest.raises(ValueError, match="class_weight is only supported"):
        net.fit(X, [1.0, 0.0, 2.0], class_weight="balanced")
    net.save(tmp_path / "p.fnn")
    back = fn.load(tmp_path / "p.fnn")
    assert back.loss == "poisson"
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_overflowing_poisson_prediction_stops_training():
    """exp(z) beyond float32 is an infinite loss: fit stops and undoes the epoch."""
    net = fn.Network([fn.Dense(1, 1)], loss="poisson", seed=0)
    net.layers[0].W = [[100.0]]
    before = net.layers[0].W.copy()
    with pytest.raises(FloatingPointError, match="loss became NaN or infinite"):
        net.fit(np.ones((4, 1)), np.ones(4), optimizer=fn.SGD(lr=0.1))
    np.testing.assert_array_equal(net.layers[0].W, before)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_train_through_network_fit(monkeypatch):
    """The stochastic solvers run Network._fit (one loop, one guard, one step
    count); lbfgs uses Network._loss_and_gradients."""
    pytest.importorskip("sklearn")
    calls = []
    real_fit = fn.Network._fit

    def spy(self, *args, **kwargs):
        calls.append(kwargs.get("epochs"))
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(fn.Network, "_fit", spy)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = rng.poisson(1.0, 60)
    est = fn.MLPRegressor(loss="poisson", hidden_layer_sizes=(4,), solver="sgd", max_iter=3,
                          random_state=0, learning_rate_init=0.01).fit(X, y)
    assert calls == [3]
    # the optimizer's step count is Network.fit's: one per batch, counted once
    assert est._optimizer.optimizer.step == 3 * 1
    est.partial_fit(X, y)
    assert calls == [3, 1] and est._optimizer.optimizer.step == 4


def test_fit_guard_names_fit():
    """_fit (fit's body, which the estimators call) carries the guard, under fit's name."""
    X, y = np.ones((8, 2)), np.ones(8)
    net = fn.Network([fn.Dense(2, 1)], seed=0)
    errors = []

    class Refit(fn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            with pytest.raises(RuntimeError) as info:
                self.model._fit(X, y)
            errors.append(str(info.value))

    net.fit(X, y, callbacks=[Refit()])
    assert errors and errors[0].startswith("Network.fit was called during fit")
