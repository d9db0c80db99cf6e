"""Per-sample weights for ``fit``: checks, and class weights turned into sample weights.

The engine takes one float64 weight per sample and normalises each batch by
the sum of its weights, as scikit-learn's MLP does (see _engine.Trainer).
"""
import numbers

import numpy as np

CLASS_WEIGHT_LOSSES = ("cross_entropy", "binary_cross_entropy")


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` as a float64 (n_samples,) array of finite values >= 0, not all 0."""
    if isinstance(sample_weight, (str, bytes)):
        raise TypeError(f"sample_weight must be an array-like of numbers, got "
                        f"{type(sample_weight).__name__}")
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        sample_weight = np.full(n_samples, float(sample_weight))
    sw = np.asarray(sample_weight)
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers, got an array of dtype "
                        f"{sw.dtype}")
    if sw.shape != (n_samples,):
        raise ValueError(f"sample_weight must have shape (n_samples,) = ({n_samples},), "
                         f"got shape {sw.shape}")
    sw = np.ascontiguousarray(sw, dtype=np.float64)
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if (sw < 0).any():
        raise ValueError(f"sample_weight must be >= 0, got a minimum of {sw.min()}")
    if not sw.sum() > 0:
        raise ValueError("sample_weight sums to 0: at least one sample must have a "
                         "positive weight")
    return sw


def class_labels(T, loss):
    """Integer class label of each row of the dense targets ``T``.

    cross_entropy: the index of the 1 in each one-hot row; binary_cross_entropy
    (one output): the 0/1 target itself.
    """
    if loss == "cross_entropy":
        hot = T == 1
        if not (hot.sum(axis=1) == 1).all() or not ((T == 0) | hot).all():
            raise ValueError("class_weight needs hard class labels: y must hold integer "
                             "labels or one-hot rows, got rows that are not one-hot")
        return hot.argmax(axis=1)
    if T.shape[1] != 1:
        raise ValueError(f"class_weight with binary_cross_entropy needs a network with "
                         f"one output, got {T.shape[1]} outputs")
    t = T[:, 0]
    if not ((t == 0) | (t == 1)).all():
        raise ValueError("class_weight needs hard class labels: y must hold 0 or 1 for "
                         "binary_cross_entropy, got other values")
    return t.astype(np.int64)


def class_weight_to_sample_weight(class_weight, T, loss, sample_weight=None):
    """Per-sample weights from ``class_weight`` (times ``sample_weight`` when given).

    ``class_weight`` is a dict {label: weight} (labels absent from it weigh 1)
    or "balanced": ``sum(w) / (n_classes * sum of w over the class)`` over the
    classes present in y, with w the sample weights (1 each by default) - the
    weighted form of ``n_samples / (n_classes * np.bincount(y))``, as
    scikit-learn's ``compute_class_weight``.
    """
    if loss not in CLASS_WEIGHT_LOSSES:
        raise ValueError(f"class_weight is only supported with the losses "
                         f"{list(CLASS_WEIGHT_LOSSES)}; this network's loss is {loss!r}")
    labels = class_labels(T, loss)
    n_labels = T.shape[1] if loss == "cross_entropy" else 2
    base = np.ones(len(labels)) if sample_weight is None else sample_weight
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be a dict or 'balanced', got "
                             f"{class_weight!r}")
        counts = np.bincount(labels, weights=base, minlength=n_labels)
        present = np.bincount(labels, minlength=n_labels) > 0
        with np.errstate(divide="ignore"):
            per_class = np.where(counts > 0, base.sum() / (present.sum() * counts), 0.0)
    elif isinstance(class_weight, dict):
        per_class = np.ones(n_labels)
        for label, weight in class_weight.items():
            if (isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral)
                    or not 0 <= label < n_labels):
                raise ValueError(f"class_weight keys must be class labels in "
                                 f"[0, {n_labels - 1}], got {label!r}")
            if (isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real)
                    or not np.isfinite(weight) or weight < 0):
                raise ValueError(f"class_weight values must be finite numbers >= 0, got "
                                 f"{weight!r} for class {label}")
            per_class[int(label)] = float(weight)
    else:
        raise TypeError(f"class_weight must be a dict or 'balanced', got "
                        f"{type(class_weight).__name__}")
    sw = base * per_class[labels]
    if not sw.sum() > 0:
        raise ValueError("the sample weights from class_weight sum to 0: at least one "
                         "sample must have a positive weight")
    return np.ascontiguousarray(sw, dtype=np.float64)
