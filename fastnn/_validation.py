"""Input checks, made once in Python before the engine runs.

Messages follow scikit-learn's wording: they name the parameter, what was
expected and what came.
"""
import numbers
import sys

import numpy as np

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype):
    """np.dtype of ``dtype``, which must be float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return dt


def check_array(X, name, dtype, ndim=2, n_features=None, finite=True):
    """``X`` as a C-contiguous, finite array of ``dtype`` (no copy when it already is).

    ``finite=False`` leaves out the check for NaN and infinity, for a caller
    that makes it in its own pass over the data (``fit``: the engine checks
    each sample as it forms a batch); it then calls :func:`check_finite`
    with the array given here when that pass finds one."""
    if (type(X) is np.ndarray and X.dtype == dtype and X.ndim == ndim and X.shape[0]
            and X.flags.c_contiguous and (n_features is None or X.shape[1] == n_features)
            and not finite):
        return X     # already what the engine takes (the serving case): nothing to check
    if isinstance(X, (str, bytes)) or X is None:
        raise TypeError(f"{name} must be an array-like of numbers, got {type(X).__name__}")
    if _is_sparse(X):
        raise TypeError(f"{name} must be a dense array, got a sparse {type(X).__name__}; "
                        f"convert it with {name}.toarray()")
    arr = _as_array(X, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of shape "
                         f"{'(n_samples, n_features)' if ndim == 2 else '(n_samples,)'}, "
                         f"got an array of shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty: got an array of shape {arr.shape}; "
                         f"at least one sample is required")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features, but the network expects "
                         f"{n_features} (shape (n_samples, {n_features})); got shape {arr.shape}")
    out = _converted(arr, dtype)
    if finite:
        check_finite(out, arr, name)
    return out


def _is_sparse(X):
    # A sparse matrix can only exist once scipy.sparse is imported: no import here.
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


def _as_array(X, name):
    """np.asarray(X), with an error naming ``name`` when X is not rectangular."""
    try:
        return np.asarray(X)
    except (ValueError, TypeError) as exc:   # ragged nested lists, odd objects
        raise ValueError(f"{name} must be a rectangular array-like of numbers; it cannot "
                         f"be converted to an array ({exc})") from None


def _converted(arr, dtype):
    """``arr`` as a C-contiguous array of ``dtype``; a value too large for it
    becomes inf without a warning (check_finite reports it)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(arr, dtype=dtype)


def check_finite(out, given, name):
    """Raise ValueError unless ``out`` (``given`` converted to the network's
    dtype) is finite; the message tells a NaN or infinity in ``given`` from a
    finite value too large for the dtype."""
    if all_finite(out):
        return
    if given.dtype != out.dtype and all_finite(given):
        big = np.max(np.abs(given))
        raise ValueError(f"{name} has values too large for {out.dtype.name} "
                         f"(largest finite: {np.finfo(out.dtype).max:.4g}); got a value of "
                         f"magnitude {big:.4g}")
    raise ValueError(f"{name} contains NaN or infinity")


def plan_finite_check(X, X_given, name, engine_can_check, known_finite=False):
    """The one policy for NaN and infinity in X; True when the engine must check.

    X (``X_given`` converted by ``check_array(finite=False)``) is checked in
    one pass only: not at all when the caller knows it is finite (the
    estimators: scikit-learn's ``validate_data`` checked it); by the engine,
    which checks each sample as it reads it (free next to a separate pass,
    which costs up to 5% of an epoch or 8% of a predict), when the caller can
    undo what ran before a bad sample without a trace (``engine_can_check``;
    it then calls :func:`raise_not_finite` when the engine found one);
    otherwise here, now."""
    if known_finite:
        return False
    if engine_can_check:
        return True
    check_finite(X, X_given, name)
    return False


def raise_not_finite(X, X_given, name):
    """Raise the error of :func:`check_finite` for X, in which the engine found
    a sample that is not finite."""
    check_finite(X, np.asarray(X_given), name)     # raises, naming the problem
    raise ValueError(f"{name} contains NaN or infinity")


def all_finite(arr):
    """True when no element is NaN or infinite, without a mask the size of arr."""
    # One fast pass: the sum is finite when every element is.  A non-finite
    # sum may also be an overflow of finite values, so an exact check decides.
    # (No warning for that overflow, nor for inf - inf: both are expected here.)
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(arr.sum()):
            return True
    flat = arr.reshape(-1)
    step = 1 << 20
    return all(np.isfinite(flat[i:i + step]).all() for i in range(0, flat.size, step))


def check_positive_int(value, name):
    if type(value) is int and value >= 1:
        return value     # the common case, without the abstract-class checks below
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def check_positive_float(value, name, allow_zero=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def check_real(value, name):
    """``value`` as a float: a real number, infinities allowed, NaN not."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if np.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    return value


def check_targets(y, loss, n_samples, n_outputs, dtype):
    """Targets as a dense (n_samples, n_outputs) array of ``dtype``.

    ``loss`` (a ``fastnn.losses.Loss``, or its name) decides what else is allowed: class
    labels (n_samples,) for a loss that ``takes_labels`` (cross_entropy: in
    [0, n_outputs), or one-hot rows), and which values (``check_values``).
    Every loss takes (n_samples, n_outputs) values, or (n_samples,) for a
    single output.
    """
    from . import losses      # (imported late: losses needs the compiled engine)
    loss = losses.get(loss)
    if isinstance(y, (str, bytes)) or y is None:
        raise TypeError(f"y must be an array-like, got {type(y).__name__}")
    if _is_sparse(y):
        raise TypeError(f"y must be a dense array, got a sparse {type(y).__name__}; "
                        f"convert it with y.toarray()")
    y = _as_array(y, "y")
    if y.dtype.kind not in "biuf":
        hint = ""
        if y.dtype.kind in "OSU" and loss.metric == "accuracy":
            hint = ("; encode the class labels as integers 0 .. n_classes - 1 (classes, y = "
                    "np.unique(y, return_inverse=True)), or use fastnn.MLPClassifier, which "
                    "takes labels of any type")
        raise TypeError(f"y must hold numbers, got an array of dtype {y.dtype}{hint}")
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"X and y have different numbers of samples: X has {n_samples}, "
                         f"y has shape {y.shape}")
    if loss.takes_labels and y.ndim == 1:
        return loss.labels_to_targets(y, n_outputs, dtype)
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        expected = f"(n_samples, {n_outputs})" + (" or (n_samples,)" if n_outputs == 1 else "")
        if loss.takes_labels:
            expected += " one-hot rows, or (n_samples,) integer labels"
        raise ValueError(f"y must have shape {expected} for a network with {n_outputs} "
                         f"outputs; got shape {y.shape}")
    T = _converted(y, dtype)
    check_finite(T, y, "y")
    loss.check_values(T)
    return T
