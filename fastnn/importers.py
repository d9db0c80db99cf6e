"""Models that arrive in fastnn: from scikit-learn and from PyTorch.

``from_sklearn`` copies a fitted scikit-learn MLPClassifier, MLPRegressor or
Perceptron into the fastnn estimator of the same name (same parameters,
same fitted attributes, float64 as scikit-learn computes), so predict and
predict_proba agree up to rounding.  ``from_torch`` reads an
``nn.Sequential`` of ``Linear`` layers, each optionally followed by one
supported activation module, into a Network.  FANN's files are read by
fastnn.io.read_fann.
"""
import copy

import numpy as np

from .layers import Dense
from .network import Network

_SKLEARN = {"sklearn.neural_network._multilayer_perceptron.MLPClassifier": "MLPClassifier",
            "sklearn.neural_network._multilayer_perceptron.MLPRegressor": "MLPRegressor",
            "sklearn.linear_model._perceptron.Perceptron": "Perceptron"}
# scikit-learn state that does not carry over: its optimizer object (fastnn's
# solvers keep their own state; warm_start restarts the optimizer).
_NOT_COPIED = {"_optimizer"}


def from_sklearn(estimator):
    """The fitted fastnn estimator equivalent to a fitted scikit-learn one.

    Parameters
    ----------
    estimator : sklearn.neural_network.MLPClassifier, MLPRegressor or
        sklearn.linear_model.Perceptron, fitted

    Returns
    -------
    fastnn.MLPClassifier, fastnn.MLPRegressor or fastnn.Perceptron
        With the same parameters and fitted attributes (copies); an MLP gets
        ``dtype`` of its coefficients (float64 for scikit-learn's usual
        float64 data), so predictions match scikit-learn's up to rounding.
    """
    cls = type(estimator)
    target = _SKLEARN.get(f"{cls.__module__}.{cls.__qualname__}")
    if target is None:
        raise ValueError(f"from_sklearn converts scikit-learn's MLPClassifier, MLPRegressor "
                         f"and Perceptron; got {cls.__module__}.{cls.__qualname__}")
    fitted = "coefs_" if target != "Perceptron" else "coef_"
    if not hasattr(estimator, fitted):
        raise ValueError(f"this {cls.__name__} instance is not fitted yet: call 'fit' "
                         f"before converting it")
    import fastnn
    fastnn_cls = getattr(fastnn, target)
    params = estimator.get_params(deep=False)
    accepted = fastnn_cls().get_params(deep=False)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"fastnn.{target} has no parameter {', '.join(unknown)} of this "
                         f"scikit-learn version's {cls.__name__}")
    if target != "Perceptron":
        dtype = np.asarray(estimator.coefs_[0]).dtype
        params["dtype"] = "float32" if dtype == np.float32 else "float64"
    new = fastnn_cls(**params)
    for key, value in vars(estimator).items():
        if key not in params and key not in _NOT_COPIED:
            setattr(new, key, copy.deepcopy(value))
    if target != "Perceptron":       # the fastnn arrays the engine runs on
        new.coefs_ = [np.array(W, params["dtype"]) for W in new.coefs_]
        new.intercepts_ = [np.array(b, params["dtype"]) for b in new.intercepts_]
    return new


# torch module name -> (fastnn activation, alpha from the module or None)
def _torch_activation(module):
    name = type(module).__name__
    if name == "Sigmoid":
        return "sigmoid", None
    if name == "Tanh":
        return "tanh", None
    if name == "ReLU":
        return "relu", None
    if name == "LeakyReLU":
        return "leaky_relu", float(module.negative_slope)
    if name == "ELU":
        return "elu", float(module.alpha)
    if name == "Softplus" and float(module.beta) == 1.0:
        # torch switches to x above threshold (20): a difference below 2e-9
        return "softplus", None
    if name == "Softmax" and module.dim in (-1, 1):
        return "softmax", None
    return None, None


def _describe_module(index, module):
    text = repr(module).splitlines()[0]
    return f"module {index} ({text})"


def from_torch(module):
    """A Network with the same outputs as a PyTorch ``nn.Sequential``.

    Parameters
    ----------
    module : torch.nn.Sequential (or one torch.nn.Linear)
        ``Linear`` layers, each optionally followed by one of ``Sigmoid``,
        ``Tanh``, ``ReLU``, ``LeakyReLU``, ``ELU``, ``Softplus`` (beta=1),
        ``Softmax`` (dim=-1 or 1, last); ``Identity``, ``Dropout`` and
        ``Flatten`` are skipped (they do nothing to rows at inference).

    Returns
    -------
    Network
        float32 or float64 after the Linear weights, loss "mse" (or
        "cross_entropy" after a Softmax).

    Raises
    ------
    ValueError
        Naming the first module that cannot be converted.
    """
    try:
        import torch
    except ImportError as exc:
        raise ImportError("fastnn.from_torch needs PyTorch") from exc
    if isinstance(module, torch.nn.Linear):
        modules = [module]
    elif isinstance(module, torch.nn.Sequential):
        modules = list(module)
    else:
        raise ValueError(f"from_torch converts a torch.nn.Sequential of Linear layers and "
                         f"activations; got {type(module).__name__}")
    layers = []          # [W, b, activation, alpha, activation seen]
    dtypes = set()
    for i, m in enumerate(modules):
        if isinstance(m, (torch.nn.Identity, torch.nn.Dropout, torch.nn.Flatten)):
            continue
        if isinstance(m, torch.nn.Linear):
            W = m.weight.detach().cpu()
            dtypes.add(W.dtype)
            b = m.bias.detach().cpu().numpy().copy() if m.bias is not None else None
            layers.append([W.numpy().T.copy(), b, "linear", None, False])
            continue
        act, alpha = _torch_activation(m)
        if act is None:
            raise ValueError(f"from_torch cannot convert {_describe_module(i, m)}: fastnn "
                             f"reads Linear, Sigmoid, Tanh, ReLU, LeakyReLU, ELU, Softplus "
                             f"(beta=1), Softmax (dim=-1) and skips Identity, Dropout, "
                             f"Flatten")
        if not layers or layers[-1][4]:
            raise ValueError(f"from_torch cannot convert {_describe_module(i, m)}: an "
                             f"activation must follow a Linear layer (one per layer)")
        layers[-1][2:] = [act, alpha, True]
    if not layers:
        raise ValueError("from_torch found no Linear layer in the module")
    if dtypes - {torch.float32, torch.float64} or len(dtypes) > 1:
        raise ValueError(f"from_torch needs Linear weights all float32 or all float64, got "
                         f"{sorted(str(d) for d in dtypes)}")
    dtype = "float64" if dtypes == {torch.float64} else "float32"
    dense = [Dense(W.shape[0], W.shape[1], activation=act, use_bias=b is not None,
                   alpha=alpha) for W, b, act, alpha, _ in layers]
    loss = "cross_entropy" if layers[-1][2] == "softmax" else "mse"
    try:
        net = Network(dense, loss=loss, dtype=dtype)
    except ValueError as exc:
        raise ValueError(f"from_torch: {exc}") from None
    for layer, (W, b, *_) in zip(net.layers, layers):
        layer.W = W
        if b is not None:
            layer.b = b
    return net
