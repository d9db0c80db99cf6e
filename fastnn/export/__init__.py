"""Models that leave fastnn: ONNX and standalone C.

    import fastnn as fn
    proto = fn.export.to_onnx(net, "model.onnx")     # onnx.ModelProto
    fn.export.to_c(net, "model.h", name="model")     # C99 header, model_predict()

Both take a Network or a fitted MLPClassifier, MLPRegressor or Perceptron
(docs/deploying.md lists the inputs and outputs of each).
"""
from . import _c, _model, _onnx

__all__ = ["to_onnx", "to_c"]


def to_onnx(model, path=None, *, opset=None):
    """The ONNX model of ``model``, written to ``path`` when given.

    Parameters
    ----------
    model : Network, MLPClassifier, MLPRegressor or Perceptron (fitted)
    path : str or path-like, optional
        Where to write the serialized model.
    opset : int, optional
        The ONNX operator set (default 17; at least 13).

    Returns
    -------
    onnx.ModelProto
        Input ``input`` of shape (N, n_features) in the model's dtype (N
        dynamic).  Outputs: a Network ``output``; a classifier ``label``
        (its classes) and ``probabilities`` (as predict_proba); a regressor
        ``output`` (as predict, 1-D for a single target); a Perceptron
        ``label`` and ``scores`` (as decision_function).
    """
    proto = _onnx.build(_model.describe(model), opset)
    if path is not None:
        import onnx
        onnx.save_model(proto, _fspath(path))
    return proto


def to_c(model, path, *, name="model"):
    """Write ``model`` as a self-contained C99 header to ``path``.

    The header defines ``NAME_N_INPUTS`` and ``NAME_N_OUTPUTS`` (NAME is
    ``name`` upper-cased) and ``void name_predict(const T *x, T *y)`` (T is
    float for a float32 model, double for float64), which computes one row:
    a Network's output, a classifier's probabilities (2 for a binary one), a
    regressor's values, a Perceptron's decision scores.  No heap; link with
    -lm.

    Parameters
    ----------
    model : Network, MLPClassifier, MLPRegressor or Perceptron (fitted)
    path : str or path-like
    name : str, default "model"
        A C identifier prefixing every name the header defines.

    Returns
    -------
    str
        The header's text.
    """
    return _c.write(_model.describe(model), _fspath(path), name)


def _fspath(path):
    import os
    try:
        return os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or path-like, got {type(path).__name__}") from None
