"""fastnn.export.to_onnx: the checker passes and ONNX Runtime gives predict's results.

Every activation in both dtypes (float32 to 1e-5, float64 to 1e-12: the
graph computes the same operations in another order), every loss, and the
estimators: MLPClassifier (binary, multiclass, multilabel, string classes),
MLPRegressor (one and several targets, Poisson) and Perceptron.
"""
import warnings

import numpy as np
import pytest

import fastnn as fn
from fastnn.activations import CODES

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
DTYPES = [np.float32, np.float64]


def run(proto, X):
    onnx.checker.check_model(proto, full_check=True)
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X})))


def data(n_features, dtype, n=64, seed=0, scale=3.0):
    X = np.random.default_rng(seed).normal(size=(n, n_features)) * scale
    X[0] = 0.0                                # exact zeros: kinks of relu, step, sign
    return X.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", sorted(CODES))
def test_network_every_activation(act, dtype):
    hidden = "tanh" if act == "softmax" else act
    alpha = {"leaky_relu": 0.2, "elu": 0.7}.get(act)
    net = fn.Network([fn.Dense(5, 8, activation=hidden, alpha=alpha),
                      fn.Dense(8, 8, activation=hidden, alpha=alpha),
                      fn.Dense(8, 3, activation=act, alpha=alpha)], dtype=dtype, seed=3)
    X = data(5, dtype)
    out = run(fn.export.to_onnx(net), X)
    assert list(out) == ["output"]
    assert out["output"].dtype == dtype and out["output"].shape == (64, 3)
    np.testing.assert_allclose(out["output"], net.predict(X), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "silu", "gelu", "linear", "softmax"])
def test_network_steepness(act, dtype):
    """A layer's steepness s: a Mul before the activation, f(s * (x @ W + b))."""
    net = fn.Network([fn.Dense(5, 8, activation="tanh", steepness=0.5),
                      fn.Dense(8, 3, activation=act, steepness=1.7)], dtype=dtype, seed=3)
    X = data(5, dtype)
    np.testing.assert_allclose(run(fn.export.to_onnx(net), X)["output"], net.predict(X),
                               **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,act", [("mse", "linear"), ("cross_entropy", "softmax"),
                                      ("binary_cross_entropy", "sigmoid"),
                                      ("poisson", "linear")])
def test_network_every_loss_trained(loss, act, dtype, tmp_path):
    X = data(4, dtype, n=80)
    y = (X[:, :2] > 0).astype(dtype) if loss != "cross_entropy" else (X[:, 0] > 0).astype(int)
    n_out = 2
    net = fn.Network([fn.Dense(4, 6, activation="relu", use_bias=False),
                      fn.Dense(6, n_out, activation=act)], loss=loss, dtype=dtype, seed=0)
    net.fit(X, y, epochs=3, batch_size=16, optimizer=fn.Adam(lr=0.01))
    path = tmp_path / "net.onnx"
    proto = fn.export.to_onnx(net, path)
    assert path.exists() and onnx.load(str(path)) == proto
    np.testing.assert_allclose(run(proto, X)["output"], net.predict(X), **TOL[dtype])


def test_dynamic_batch_and_input_name():
    net = fn.Network([fn.Dense(3, 2, activation="sigmoid")], seed=0)
    proto = fn.export.to_onnx(net)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert proto.graph.input[0].name == "input"
    assert dims[0].dim_param and dims[1].dim_value == 3
    for n in (1, 7):
        X = data(3, np.float32, n=n)
        np.testing.assert_allclose(run(proto, X)["output"], net.predict(X), **TOL[np.float32])


def test_opset_choices():
    net = fn.Network([fn.Dense(3, 2, activation="softmax")], seed=0)
    X = data(3, np.float32)
    for opset in (13, 21):
        proto = fn.export.to_onnx(net, opset=opset)
        np.testing.assert_allclose(run(proto, X)["output"], net.predict(X), **TOL[np.float32])
    for bad in (12, "17", 10_000):
        with pytest.raises(ValueError, match="opset"):
            fn.export.to_onnx(net, opset=bad)


def _classification(kind, n=120, n_features=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    score = X[:, 0] + 0.5 * X[:, 1]
    if kind == "binary":
        y = (score > 0).astype(int) * 3 + 2               # classes 2 and 5
    elif kind == "multiclass":
        y = np.digitize(score, [-0.7, 0, 0.7])
    elif kind == "strings":
        y = np.array(["cat", "dog", "émeu"])[np.digitize(score, [-0.5, 0.5])]
    elif kind == "binary_strings":
        y = np.where(score > 0, "yes", "no")
    else:                                                 # multilabel
        y = np.stack([score > 0, X[:, 2] > 0, X[:, 3] + X[:, 0] > 0], axis=1).astype(int)
    return X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings", "binary_strings",
                                  "multilabel"])
def test_mlp_classifier(kind, dtype):
    pytest.importorskip("sklearn")
    X, y = _classification(kind)
    clf = fn.MLPClassifier(hidden_layer_sizes=(7, 5), activation="tanh", max_iter=30,
                           random_state=0, dtype=dtype.__name__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    X = X.astype(dtype)
    out = run(fn.export.to_onnx(clf), X)
    assert list(out) == ["label", "probabilities"]
    np.testing.assert_array_equal(out["label"], clf.predict(X))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(X), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,n_targets", [("squared_error", 1), ("squared_error", 3),
                                            ("poisson", 1)])
def test_mlp_regressor(loss, n_targets, dtype):
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 4))
    y = np.abs(X[:, :n_targets] * 2 + 1)
    if n_targets == 1:
        y = y.ravel()
    reg = fn.MLPRegressor(loss=loss, hidden_layer_sizes=(8,), activation="relu", max_iter=40,
                          random_state=0, dtype=dtype.__name__)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    X = X.astype(dtype)
    out = run(fn.export.to_onnx(reg), X)
    assert list(out) == ["output"]
    assert out["output"].shape == reg.predict(X).shape
    np.testing.assert_allclose(out["output"], reg.predict(X), **TOL[dtype])


@pytest.mark.filterwarnings("ignore:Maximum number of iteration")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["binary", "multiclass", "strings"])
def test_perceptron(kind, dtype):
    pytest.importorskip("sklearn")
    X, y = _classification(kind)
    X = X.astype(dtype)
    clf = fn.Perceptron(max_iter=20, random_state=0).fit(X, y)
    out = run(fn.export.to_onnx(clf), X)
    assert list(out) == ["label", "scores"]
    np.testing.assert_array_equal(out["label"], clf.predict(X))
    np.testing.assert_allclose(out["scores"], clf.decision_function(X), **TOL[dtype])


def test_unsupported_models_are_refused():
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier
    with pytest.raises(ValueError, match="from_sklearn"):
        fn.export.to_onnx(MLPClassifier())
    with pytest.raises(ValueError, match="not fitted"):
        fn.export.to_onnx(fn.MLPClassifier())
    with pytest.raises(ValueError, match="expected"):
        fn.export.to_onnx(object())
