"""Per-sample weights for ``fit``: checks, and class weights turned into sample weights.

The engine takes one float64 weight per sample and normalises each batch by
the sum of its weights, as scikit-learn's MLP does (see _engine.Trainer).
"""
import numbers

import numpy as np

from . import losses


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


def class_weight_to_sample_weight(class_weight, T, loss, sample_weight=None):
    """Per-sample weights from ``class_weight`` (times ``sample_weight`` when given).

    ``loss`` (a name or a ``fastnn.losses.Loss``) gives each row's class
    label (``Loss.class_labels``).

    ``class_weight`` is a dict {label: weight} (labels absent from it weigh 1)
    or "balanced": ``sum(w) / (n_classes * sum of w over the class)`` over the
    classes present in y, with w the sample weights (1 each by default) - the
    weighted form of ``n_samples / (n_classes * np.bincount(y))``, as
    scikit-learn's ``compute_class_weight``.
    """
    labels, n_labels = losses.get(loss).class_labels(T)   # raises for regression losses
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
