"""fastnn.from_sklearn and fastnn.from_torch: the converted model predicts what
the original does (float64 to 1e-12, float32 to 1e-5), and what cannot be
converted is refused naming the first culprit."""
import warnings

import numpy as np
import pytest

import fastnn as fn


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(X, y)


@pytest.mark.parametrize("activation", ["identity", "logistic", "tanh", "relu"])
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "multilabel"])
def test_from_sklearn_classifier(kind, activation):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 5))
    s = X[:, 0] - X[:, 1]
    y = {"binary": (s > 0).astype(int),
         "multiclass": np.digitize(s, [-0.5, 0.5]),
         "strings": np.array(["lo", "mid", "hi"])[np.digitize(s, [-0.5, 0.5])],
         "multilabel": np.stack([s > 0, X[:, 2] > 0], 1).astype(int)}[kind]
    sk = _fit(MLPClassifier(hidden_layer_sizes=(6, 4), activation=activation, max_iter=50,
                            random_state=0), X, y)
    ours = fn.from_sklearn(sk)
    assert type(ours) is fn.MLPClassifier and ours.dtype == "float64"
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=1e-12,
                               atol=1e-13)
    np.testing.assert_array_equal(ours.classes_, sk.classes_)
    # converted copies: training the fastnn one leaves scikit-learn's alone
    before = [W.copy() for W in sk.coefs_]
    _fit(ours.set_params(warm_start=True, max_iter=2), X, y)
    for W, W0 in zip(sk.coefs_, before):
        np.testing.assert_array_equal(W, W0)


@pytest.mark.parametrize("n_targets", [1, 2])
def test_from_sklearn_regressor(n_targets):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPRegressor
    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 3))
    y = X[:, :n_targets] @ np.ones((n_targets, n_targets)) if n_targets > 1 else X[:, 0] * 2
    sk = _fit(MLPRegressor(hidden_layer_sizes=(5,), max_iter=60, random_state=0), X, y)
    ours = fn.from_sklearn(sk)
    assert type(ours) is fn.MLPRegressor
    np.testing.assert_allclose(ours.predict(X), sk.predict(X), rtol=1e-12, atol=1e-13)
    assert ours.predict(X).shape == sk.predict(X).shape


@pytest.mark.parametrize("n_classes", [2, 3])
def test_from_sklearn_perceptron(n_classes):
    pytest.importorskip("sklearn")
    from sklearn.linear_model import Perceptron
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    y = np.digitize(X[:, 0], [0] if n_classes == 2 else [-0.5, 0.5])
    sk = _fit(Perceptron(max_iter=20, random_state=0), X, y)
    ours = fn.from_sklearn(sk)
    assert type(ours) is fn.Perceptron
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    np.testing.assert_allclose(ours.decision_function(X), sk.decision_function(X),
                               rtol=1e-12, atol=1e-13)


def test_from_sklearn_refuses():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier
    with pytest.raises(ValueError, match="LogisticRegression"):
        fn.from_sklearn(LogisticRegression())
    with pytest.raises(ValueError, match="not fitted"):
        fn.from_sklearn(MLPClassifier())
    with pytest.raises(ValueError, match="scikit-learn's MLPClassifier"):
        fn.from_sklearn(fn.MLPClassifier())


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_from_torch_sequential(dtype):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    tdtype = getattr(torch, dtype)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Dropout(0.3),
                          nn.Linear(8, 8), nn.LeakyReLU(0.2),
                          nn.Linear(8, 7, bias=False), nn.ELU(0.5),
                          nn.Linear(7, 6), nn.Tanh(), nn.Identity(),
                          nn.Linear(6, 6), nn.Sigmoid(),
                          nn.Linear(6, 5), nn.Softplus(),
                          nn.Linear(5, 4),
                          nn.Linear(4, 3), nn.Softmax(dim=-1)).to(tdtype).eval()
    net = fn.from_torch(model)
    assert [l.activation for l in net.layers] == ["relu", "leaky_relu", "elu", "tanh",
                                                  "sigmoid", "softplus", "linear", "softmax"]
    assert net.dtype == dtype and net.loss == "cross_entropy"
    X = np.random.default_rng(0).normal(size=(50, 5)).astype(dtype)
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(net.predict(X), expected, rtol=tol, atol=tol)


def test_from_torch_refuses_naming_the_module():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with pytest.raises(ValueError, match=r"module 2 \(GELU"):
        fn.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.GELU(), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match=r"module 2 \(Sigmoid.*follow a Linear"):
        fn.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sigmoid()))
    with pytest.raises(ValueError, match=r"module 1 \(Conv1d"):
        fn.from_torch(nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1)))
    with pytest.raises(ValueError, match="softmax is only supported on the output layer"):
        fn.from_torch(nn.Sequential(nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 1)))
    with pytest.raises(ValueError, match="Sequential"):
        fn.from_torch(nn.ReLU())
    with pytest.raises(ValueError, match="no Linear"):
        fn.from_torch(nn.Sequential(nn.Identity()))
    single = fn.from_torch(nn.Linear(3, 2))
    assert single.n_inputs == 3 and single.n_outputs == 2
