"""What every exporter needs to know about a model, read once.

``describe(model)`` turns a Network, MLPClassifier, MLPRegressor or
Perceptron into a ``Model``: its dense layers (W of shape (n_in, n_out), b,
activation, alpha), its dtype and what follows the last layer (``kind``):

- "network": the last layer's output (exp() of it for loss="poisson":
  ``output_exp``), as ``Network.predict``;
- "classifier": probabilities and labels, as MLPClassifier's predict_proba
  and predict (``task`` "binary": one sigmoid unit, probabilities [1 - p, p],
  label ``classes[p > 0.5]``; "multiclass": softmax, label ``classes[argmax]``;
  "multilabel": sigmoid units, label ``p > 0.5`` per column as int64);
- "regressor": the values, exp() of them for the Poisson loss
  (``output_exp``), 1-D for a single target (``ravel``);
- "perceptron": decision scores and labels as LinearClassifierMixin's
  decision_function (1-D for two classes) and predict (binary: ``classes[s > 0]``).
"""
from dataclasses import dataclass

import numpy as np

from ..network import Network


@dataclass
class Layer:
    W: np.ndarray          # (n_in, n_out)
    b: np.ndarray          # (n_out,), zeros for a layer without bias
    activation: str
    alpha: float = 0.0
    steepness: float = 1.0   # f(s * (x @ W + b))


@dataclass
class Model:
    kind: str
    layers: list
    dtype: np.dtype
    task: str = ""
    classes: np.ndarray = None
    output_exp: bool = False
    ravel: bool = False

    @property
    def n_inputs(self):
        return self.layers[0].W.shape[0]

    @property
    def n_outputs(self):
        """Width of what to_c writes: the output layer's, 2 for a binary classifier."""
        n = self.layers[-1].W.shape[1]
        return 2 if self.kind == "classifier" and self.task == "binary" else n


def _network_layers(net):
    return [Layer(np.array(l.W), np.array(l.b) if l.b is not None
                  else np.zeros(l.n_out, net.dtype), l.activation, l.alpha, l.steepness)
            for l in net.layers]


def describe(model):
    """The Model of ``model``, or a ValueError saying why it cannot be exported."""
    if isinstance(model, Network):
        return Model("network", _network_layers(model), model.dtype,
                     output_exp=model.loss_function.link == "log")
    name = type(model).__name__
    module = type(model).__module__ or ""
    if not module.startswith("fastnn"):
        raise ValueError(f"cannot export a {module}.{name}: expected a fastnn Network, "
                         f"MLPClassifier, MLPRegressor or Perceptron (convert a "
                         f"scikit-learn estimator with fastnn.from_sklearn first)")
    if name in ("MLPClassifier", "MLPRegressor"):
        _check_fitted(model, "coefs_")
        net = model._inference_network()
        layers = _network_layers(net)
        if name == "MLPRegressor":
            return Model("regressor", layers, net.dtype, output_exp=model.out_activation_ == "exp",
                         ravel=model.n_outputs_ == 1)
        y_type = model._label_binarizer.y_type_
        classes = np.asarray(model.classes_)
        if y_type == "multiclass":
            task = "multiclass"
        elif y_type == "binary" and len(classes) == 2:
            task = "binary"
        elif y_type.startswith("multilabel"):
            task = "multilabel"
        else:
            raise ValueError(f"cannot export an MLPClassifier fitted on {y_type!r} targets "
                             f"with {len(classes)} classes")
        return Model("classifier", layers, net.dtype, task=task, classes=classes)
    if name == "Perceptron":
        _check_fitted(model, "coef_")
        coef = np.atleast_2d(np.asarray(model.coef_))
        dtype = coef.dtype if coef.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        layer = Layer(np.ascontiguousarray(coef.T, dtype), np.asarray(model.intercept_, dtype),
                      "linear")
        classes = np.asarray(model.classes_)
        return Model("perceptron", [layer], np.dtype(dtype), classes=classes,
                     task="binary" if coef.shape[0] == 1 else "multiclass")
    raise ValueError(f"cannot export a {name}: expected a Network, MLPClassifier, "
                     f"MLPRegressor or Perceptron")


def _check_fitted(model, attribute):
    if not hasattr(model, attribute):
        raise ValueError(f"this {type(model).__name__} instance is not fitted yet: call "
                         f"'fit' before exporting it")
