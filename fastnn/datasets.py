"""Data set files: FANN's ``.data`` training files.

The format (fann_train_data.c): a header line "samples inputs outputs",
then for every sample one line of its inputs and one of its outputs, all
numbers separated by white space.  FANN's benchmark sets (PROBEN1/DELVE)
come in it.
"""
import os

import numpy as np

from ._validation import check_dtype


def _fail(path, why):
    raise ValueError(f"{path!r} is not a FANN data file: {why}")


def _ascii_text(path, fail):
    """The whole text of a FANN file (``.data`` or ``.net``), which is ASCII;
    ``fail(path, why)`` raises the reader's own error otherwise."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        fail(path, "it is not a text file")


def load_fann_data(path, *, dtype="float64"):
    """Read a FANN ``.data`` file.

    Parameters
    ----------
    path : str or path-like
    dtype : {"float32", "float64"}, default "float64"

    Returns
    -------
    X : ndarray of shape (n_samples, n_inputs)
    y : ndarray of shape (n_samples, n_outputs)

    Raises
    ------
    ValueError
        When the header is not three non-negative integers, a line does not
        hold the numbers it should, or the file has fewer bytes than the
        numbers the header declares (checked before any array is made, so a
        file cannot make the reader allocate much more than its size).
    """
    path = os.fspath(path)
    dtype = check_dtype(dtype)
    text = _ascii_text(path, _fail)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        _fail(path, "the file is empty")
    header = lines[0].split()
    if len(header) != 3 or not all(h.isdigit() for h in header):
        _fail(path, f"the first line should be 'samples inputs outputs', got {lines[0][:60]!r}")
    n, n_in, n_out = (int(h) for h in header)
    if n_in < 1 or n_out < 1:
        _fail(path, f"the header declares {n_in} inputs and {n_out} outputs; both must be >= 1")
    # Each number takes at least two bytes (a digit and a separator).
    if n * (n_in + n_out) > len(text) // 2:
        _fail(path, f"the header declares {n} samples of {n_in} + {n_out} numbers, more than "
                    f"the file's {len(text)} bytes can hold")
    if len(lines) != 1 + 2 * n:
        _fail(path, f"the header declares {n} samples (one line of inputs and one of outputs "
                    f"each: {1 + 2 * n} lines), the file has {len(lines)} non-empty lines")
    X = np.empty((n, n_in), dtype)
    y = np.empty((n, n_out), dtype)
    for i in range(n):
        for row, target, width, what in ((1 + 2 * i, X, n_in, "inputs"),
                                         (2 + 2 * i, y, n_out, "outputs")):
            fields = lines[row].split()
            if len(fields) != width:
                _fail(path, f"sample {i} has {len(fields)} {what}, expected {width} "
                            f"(non-empty line {row + 1})")
            try:
                target[i] = [float(v) for v in fields]
            except ValueError:
                _fail(path, f"sample {i}'s {what} are not all numbers: {lines[row][:60]!r}")
    if not (np.isfinite(X).all() and np.isfinite(y).all()):
        _fail(path, "it contains NaN or infinity")
    return X, y


def save_fann_data(X, y, path):
    """Write (X, y) as a FANN ``.data`` file that FANN's fann_read_train_from_file reads.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_inputs)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    path : str or path-like

    Numbers are written with the shortest text that reads back exactly
    (float32 arrays with float32's, the rest as float64).
    """
    X, y = np.asarray(X), np.asarray(y)
    if y.ndim == 1:
        y = y.reshape(-1, 1)
    if X.ndim != 2 or y.ndim != 2:
        raise ValueError(f"X must be 2-D and y 1-D or 2-D, got shapes {X.shape} and {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y have different numbers of samples: {X.shape[0]} and "
                         f"{y.shape[0]}")
    if X.shape[1] < 1 or y.shape[1] < 1:
        raise ValueError(f"FANN data needs at least one input and one output column, got "
                         f"shapes {X.shape} and {y.shape}")
    arrays = []
    for a, name in ((X, "X"), (y, "y")):
        if a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold numbers, got dtype {a.dtype}")
        a = a if a.dtype == np.float32 else a.astype(np.float64)
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinity")
        arrays.append(a)

    def line(row):      # str of a NumPy float: the shortest text that reads back exactly
        return " ".join(str(v) for v in row)

    with open(os.fspath(path), "w", encoding="ascii") as f:
        f.write(f"{X.shape[0]} {X.shape[1]} {y.shape[1]}\n")
        for xr, yr in zip(*arrays):
            f.write(line(xr) + "\n" + line(yr) + "\n")
