"""FANN's own C library (Debian's libfann-dev, FANN 2.2) through ctypes, for
the benchmarks and for the tests that hold fastnn's FANN training to
FANN's.

A ``FannNet`` is ``fann_create_standard`` with FANN's benchmark settings
(sigmoid of steepness 0.5 on every layer, iRPROP-, FANN's tanh error
function); its weights are read and written as fastnn's ``(W, b)`` per
layer, so both libraries can start from the same weights.  FANN numbers its
neurons layer after layer, each layer ending with its bias neuron; a
connection (from, to) is the weight W[from, to] of fastnn's layer, or its
bias b[to] when ``from`` is the previous layer's bias neuron.

``load()`` returns None when libfann is not installed (the callers skip).
"""
import ctypes
import ctypes.util
import os

import numpy as np

FANN_TRAIN_RPROP = 2
FANN_SIGMOID = 3
FANN_SIGMOID_SYMMETRIC = 5
FANN_ERRORFUNC_TANH = 1


def load(kind="float"):
    """libfann's ``kind`` build ("float" or "double") with the prototypes
    used here, or None when it is not installed."""
    name = ctypes.util.find_library(kind + "fann")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    ft = ctypes.c_double if kind == "double" else ctypes.c_float

    class Connection(ctypes.Structure):      # struct fann_connection
        _fields_ = [("from_neuron", ctypes.c_uint), ("to_neuron", ctypes.c_uint),
                    ("weight", ft)]

    lib.Connection, lib.fann_type = Connection, ft
    lib.dtype = np.float64 if kind == "double" else np.float32
    vp, uint = ctypes.c_void_p, ctypes.c_uint
    protos = {
        "fann_create_standard_array": (vp, [uint, ctypes.POINTER(uint)]),
        "fann_read_train_from_file": (vp, [ctypes.c_char_p]),
        "fann_set_activation_function_hidden": (None, [vp, uint]),
        "fann_set_activation_function_output": (None, [vp, uint]),
        "fann_set_activation_steepness_hidden": (None, [vp, ft]),
        "fann_set_activation_steepness_output": (None, [vp, ft]),
        "fann_set_training_algorithm": (None, [vp, uint]),
        "fann_set_train_error_function": (None, [vp, uint]),
        "fann_set_bit_fail_limit": (None, [vp, ft]),
        "fann_get_total_connections": (uint, [vp]),
        "fann_get_connection_array": (None, [vp, ctypes.POINTER(Connection)]),
        "fann_set_weight_array": (None, [vp, ctypes.POINTER(Connection), uint]),
        "fann_train_epoch": (ctypes.c_float, [vp, vp]),
        "fann_test_data": (ctypes.c_float, [vp, vp]),
        "fann_get_bit_fail": (uint, [vp]),
        "fann_run": (ctypes.POINTER(ft), [vp, ctypes.POINTER(ft)]),
        "fann_destroy": (None, [vp]),
        "fann_destroy_train": (None, [vp]),
    }
    for fname, (res, args) in protos.items():
        func = getattr(lib, fname)
        func.restype, func.argtypes = res, args
    return lib


class FannData:
    """A FANN training file read by FANN (``fann_read_train_from_file``)."""

    def __init__(self, lib, path):
        self.lib = lib
        self.ptr = lib.fann_read_train_from_file(os.fsencode(path))
        if not self.ptr:
            raise OSError(f"libfann could not read {path}")

    def __del__(self):
        if getattr(self, "ptr", None):
            self.lib.fann_destroy_train(self.ptr)


class FannNet:
    """``fann_create_standard(sizes)`` trained as FANN's benchmark trains:
    ``activation`` (FANN's code) of ``steepness`` on every layer, iRPROP-
    with FANN's defaults, FANN's tanh error function."""

    def __init__(self, lib, sizes, activation=FANN_SIGMOID, steepness=0.5):
        self.lib, self.sizes = lib, [int(n) for n in sizes]
        arr = (ctypes.c_uint * len(sizes))(*self.sizes)
        self.ann = lib.fann_create_standard_array(len(sizes), arr)
        lib.fann_set_activation_function_hidden(self.ann, activation)
        lib.fann_set_activation_function_output(self.ann, activation)
        lib.fann_set_activation_steepness_hidden(self.ann, steepness)
        lib.fann_set_activation_steepness_output(self.ann, steepness)
        lib.fann_set_training_algorithm(self.ann, FANN_TRAIN_RPROP)
        lib.fann_set_train_error_function(self.ann, FANN_ERRORFUNC_TANH)
        self.first = np.cumsum([0] + [n + 1 for n in self.sizes])[:-1]
        self.connections = (lib.Connection * lib.fann_get_total_connections(self.ann))()

    def _where(self):
        """(layer, row i, column j) of each connection; i == n_in is the bias."""
        self.lib.fann_get_connection_array(self.ann, self.connections)
        for c in self.connections:
            layer = int(np.searchsorted(self.first, c.to_neuron, side="right")) - 1
            yield c, layer - 1, c.from_neuron - self.first[layer - 1], \
                c.to_neuron - self.first[layer]

    def get_weights(self):
        """[(W, b), ...] per layer, float64, fastnn's layout."""
        out = [(np.zeros((a, b)), np.zeros(b)) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        for c, layer, i, j in self._where():
            W, b = out[layer]
            if i == W.shape[0]:
                b[j] = c.weight
            else:
                W[i, j] = c.weight
        return out

    def set_weights(self, weights):
        """Load [(W, b), ...] (fastnn's layout) into the network."""
        for c, layer, i, j in self._where():
            W, b = weights[layer]
            c.weight = float(b[j]) if i == W.shape[0] else float(W[i, j])
        self.lib.fann_set_weight_array(self.ann, self.connections, len(self.connections))

    def train_epoch(self, data):
        """One epoch of FANN's training; FANN's MSE over the epoch (before the step)."""
        return self.lib.fann_train_epoch(self.ann, data.ptr)

    def predict(self, X):
        X = np.ascontiguousarray(X, dtype=self.lib.dtype)
        out = np.empty((X.shape[0], self.sizes[-1]))
        ptr = ctypes.POINTER(self.lib.fann_type)
        for r in range(X.shape[0]):
            res = self.lib.fann_run(self.ann, X[r].ctypes.data_as(ptr))
            out[r] = np.ctypeslib.as_array(res, (self.sizes[-1],))
        return out

    def __del__(self):
        if getattr(self, "ann", None):
            self.lib.fann_destroy(self.ann)
