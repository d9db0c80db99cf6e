"""FANN's float network files (``FANN_FLO_2.1`` ``.net``): read and write.

Exposed as ``fastnn.io.read_fann`` and ``fastnn.io.write_fann``.

A FANN layered network stores every layer with one extra bias neuron (value
1, the last of the layer; the output layer's is unused), one
``(num_inputs, activation_function, activation_steepness)`` triple per
neuron, and one ``(source_neuron, weight)`` pair per connection, neuron by
neuron.  FANN scales a neuron's sum by its steepness s before the
activation, and its sigmoid is 1/(1 + exp(-2·s·x)) (fann_activation.h): that
is fastnn's layer steepness (``Dense(steepness=...)``), so reading keeps the
weights as they are and gives each layer the steepness of its neurons:
FANN_SIGMOID becomes fastnn's sigmoid with steepness 2·s (FANN's default 0.5
is fastnn's 1, the plain logistic), FANN_SIGMOID_SYMMETRIC tanh with s, and
the linear, threshold and rectifier functions keep s.  The products 2·s·sum
and (2·s)·sum are the same numbers, so outputs are FANN's.  A layer whose
neurons have different steepnesses (or one that is not > 0) has them folded
into its weights instead (exact up to one rounding per weight).  One
difference remains: FANN clips the scaled sum to ±150/s, which only shows on
linear and rectifier neurons (sigmoids are saturated there).

Reading never allocates much more than the file's size: every count the
header declares is checked against what the file can hold before arrays are
made.
"""
import math
import os
import re

import numpy as np

from .datasets import _ascii_text
from .layers import Dense
from .network import Network

FLOAT_VERSION = "FANN_FLO_2.1"

# FANN's fann_activationfunc_enum (fann_data.h).
FANN_NAMES = ["FANN_LINEAR", "FANN_THRESHOLD", "FANN_THRESHOLD_SYMMETRIC", "FANN_SIGMOID",
              "FANN_SIGMOID_STEPWISE", "FANN_SIGMOID_SYMMETRIC",
              "FANN_SIGMOID_SYMMETRIC_STEPWISE", "FANN_GAUSSIAN", "FANN_GAUSSIAN_SYMMETRIC",
              "FANN_GAUSSIAN_STEPWISE", "FANN_ELLIOT", "FANN_ELLIOT_SYMMETRIC",
              "FANN_LINEAR_PIECE", "FANN_LINEAR_PIECE_SYMMETRIC", "FANN_SIN_SYMMETRIC",
              "FANN_COS_SYMMETRIC", "FANN_SIN", "FANN_COS", "FANN_LINEAR_PIECE_RECT",
              "FANN_LINEAR_PIECE_RECT_LEAKY"]
# FANN code -> (fastnn activation, alpha, factor): W_fastnn = factor * s * w_fann.
FROM_FANN = {0: ("linear", 0.0, 1.0), 1: ("step", 0.0, 1.0), 2: ("sign", 0.0, 1.0),
             3: ("sigmoid", 0.0, 2.0), 5: ("tanh", 0.0, 1.0),
             18: ("relu", 0.0, 1.0), 19: ("leaky_relu", 0.01, 1.0)}
# The piecewise-linear approximations, read as the exact function on request.
STEPWISE = {4: 3, 6: 5}
# fastnn activation -> (FANN code, steepness) with W_fann = W / (factor * s).
TO_FANN = {"sigmoid": (3, 0.5), "tanh": (5, 1.0), "linear": (0, 1.0), "step": (1, 1.0),
           "sign": (2, 1.0), "relu": (18, 1.0)}

# The header lines fann_create_from_fd reads in order before layer_sizes,
# with FANN 2.2's defaults (written by write_fann, checked by read_fann).
_HEADER_KEYS = [
    ("num_layers", None), ("learning_rate", "0.700000"), ("connection_rate", "1.000000"),
    ("network_type", "0"), ("learning_momentum", "0.000000"), ("training_algorithm", "2"),
    ("train_error_function", "1"), ("train_stop_function", "0"),
    ("cascade_output_change_fraction", "0.010000"), ("quickprop_decay", "-0.000100"),
    ("quickprop_mu", "1.750000"), ("rprop_increase_factor", "1.200000"),
    ("rprop_decrease_factor", "0.500000"), ("rprop_delta_min", "0.000000"),
    ("rprop_delta_max", "50.000000"), ("rprop_delta_zero", "0.100000"),
    ("cascade_output_stagnation_epochs", "12"), ("cascade_candidate_change_fraction", "0.010000"),
    ("cascade_candidate_stagnation_epochs", "12"), ("cascade_max_out_epochs", "150"),
    ("cascade_min_out_epochs", "50"), ("cascade_max_cand_epochs", "150"),
    ("cascade_min_cand_epochs", "50"), ("cascade_num_candidate_groups", "2"),
    ("bit_fail_limit", "3.49999994039535522461e-01"),
    ("cascade_candidate_limit", "1.00000000000000000000e+03"),
    ("cascade_weight_multiplier", "4.00000005960464477539e-01"),
    ("cascade_activation_functions_count", "10"),
    ("cascade_activation_functions", "3 5 7 8 10 11 14 15 16 17 "),
    ("cascade_activation_steepnesses_count", "4"),
    ("cascade_activation_steepnesses", "2.50000000000000000000e-01 5.00000000000000000000e-01 "
                                       "7.50000000000000000000e-01 1.00000000000000000000e+00 "),
]
_NEURONS_KEY = "neurons (num_inputs, activation_function, activation_steepness)"
_CONNECTIONS_KEY = "connections (connected_to_neuron, weight)"
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:inf|nan)"
_NEURON = re.compile(rf"\s*\(\s*(\d+)\s*,\s*(\d+)\s*,\s*({_NUMBER})\s*\)", re.I)
_CONNECTION = re.compile(rf"\s*\(\s*(\d+)\s*,\s*({_NUMBER})\s*\)", re.I)


def _fail(path, why):
    raise ValueError(f"{path!r} is not a FANN float network file fastnn can read: {why}")


def _records(path, line, pattern, count, what):
    """The ``count`` records of ``pattern`` filling ``line`` (an iterator of match groups)."""
    pos = 0
    for _ in range(count):
        m = pattern.match(line, pos)
        if m is None:
            snippet = line[pos:pos + 40].strip() or "the end of the line"
            _fail(path, f"expected {count} {what} but could not read one at {snippet!r}")
        pos = m.end()
        yield m.groups()
    if line[pos:].strip():
        _fail(path, f"more {what} than the {count} declared")


def read_fann(path, *, dtype="float32", stepwise="raise"):
    """Read a FANN float network (``.net`` file, ``FANN_FLO_2.1``) into a Network.

    Parameters
    ----------
    path : str or path-like
    dtype : {"float32", "float64"}, default "float32"
        FANN's libfann/libfloatfann computes in float, libdoublefann in double.
    stepwise : {"raise", "exact"}, default "raise"
        FANN_SIGMOID_STEPWISE and FANN_SIGMOID_SYMMETRIC_STEPWISE (FANN's
        default activations) are piecewise-linear approximations of the
        sigmoid and tanh that fastnn has not: "raise" refuses them, "exact"
        reads them as the exact functions (outputs then differ from FANN's
        by up to about 0.005 per stepwise neuron).

    Returns
    -------
    Network
        Same outputs as FANN's fann_run; its loss is "mse" (FANN's default).

    Raises
    ------
    ValueError
        For a malformed file, a fixed-point file, a shortcut (cascade)
        network, connections that skip a layer, activations fastnn has not,
        or neurons of one layer with different activations.
    """
    if stepwise not in ("raise", "exact"):
        raise ValueError(f"stepwise must be 'raise' or 'exact', got {stepwise!r}")
    path = os.fspath(path)
    text = _ascii_text(path, _fail)
    lines = text.splitlines()
    if not lines:
        _fail(path, "the file is empty")
    version = lines[0].strip()
    if version.startswith("FANN_FIX"):
        _fail(path, f"it is a fixed-point network ({version}); fastnn reads FANN's float "
                    f"files: save the network with fann_save, not fann_save_to_fixed")
    if version != FLOAT_VERSION:
        _fail(path, f"the first line is {version[:40]!r}, expected {FLOAT_VERSION!r}")
    values = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if sep and key not in values:
            values[key] = value
    for key in ("num_layers", "network_type", "connection_rate", "layer_sizes", _NEURONS_KEY,
                _CONNECTIONS_KEY):
        if key not in values:
            _fail(path, f"it has no {key}= line")
    if values["network_type"].strip() != "0":
        _fail(path, f"network_type={values['network_type'].strip()} is a shortcut (cascade) "
                    f"network, whose connections skip layers; fastnn reads layered "
                    f"networks (network_type=0)")
    sizes_text = values["layer_sizes"].split()
    if not all(s.isdigit() for s in sizes_text) or len(sizes_text) < 2:
        _fail(path, f"layer_sizes={values['layer_sizes'].strip()[:40]!r} is not a list of "
                    f"at least two positive integers")
    if values["num_layers"].strip() != str(len(sizes_text)):
        _fail(path, f"num_layers={values['num_layers'].strip()[:20]} but layer_sizes lists "
                    f"{len(sizes_text)} layers")
    sizes = [int(s) - 1 for s in sizes_text]        # without the bias neurons
    if min(sizes) < 1:
        _fail(path, "every layer needs at least one neuron besides its bias")
    n_neurons = sum(s + 1 for s in sizes)
    # "(a,b,c)" takes at least 7 characters, "(a,b)" 5 (fscanf's ", " matches no space).
    neurons_line, connections_line = values[_NEURONS_KEY], values[_CONNECTIONS_KEY]
    if n_neurons > len(neurons_line) // 7:
        _fail(path, f"layer_sizes declares {n_neurons} neurons but the neurons line "
                    f"holds at most {len(neurons_line) // 7}")
    n_inputs = np.empty(n_neurons, np.int64)
    codes = np.empty(n_neurons, np.int64)
    steepness = np.empty(n_neurons, np.float64)
    for k, (n_in, code, steep) in enumerate(_records(path, neurons_line, _NEURON, n_neurons,
                                                     "neurons")):
        n_inputs[k], codes[k], steepness[k] = int(n_in), min(int(code), 1 << 30), float(steep)
    if n_inputs[:sizes[0] + 1].any():
        _fail(path, "an input neuron has inputs")
    n_connections = int(n_inputs.sum())
    if n_connections > len(connections_line) // 5:
        _fail(path, f"the neurons declare {n_connections} connections but the connections "
                    f"line holds at most {len(connections_line) // 5}")
    dense = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    if dense > 16 * n_connections + 4096:
        _fail(path, f"the network has {n_connections} connections for {dense} weights: "
                    f"too sparse to read into dense layers")
    sources = np.empty(n_connections, np.int64)
    weights = np.empty(n_connections, np.float64)
    for k, (src, w) in enumerate(_records(path, connections_line, _CONNECTION, n_connections,
                                          "connections")):
        sources[k], weights[k] = min(int(src), 1 << 62), float(w)
    if not np.all(np.isfinite(weights)):
        _fail(path, "a connection weight is NaN or infinite")

    layers, first, k = [], sizes[0] + 1, 0          # first: index of the layer's first neuron
    prev_first = 0
    for l in range(1, len(sizes)):
        n_prev, n = sizes[l - 1], sizes[l]
        W = np.zeros((n_prev, n))
        b = np.zeros(n)
        kinds = set()
        alpha = 0.0
        # FANN's codes as read (stepwise='exact' reads the stepwise ones as the exact function)
        layer_codes = [STEPWISE.get(int(c), int(c)) if stepwise == "exact" else int(c)
                       for c in codes[first:first + n]]
        steeps = {FROM_FANN.get(c, (None, 0.0, 1.0))[2] * float(st)
                  for c, st in zip(layer_codes, steepness[first:first + n])}
        # one steepness for the layer: kept as the layer's; else folded into W and b
        layer_steepness = steeps.pop() if len(steeps) == 1 else None
        if layer_steepness is not None and not (math.isfinite(layer_steepness)
                                                and layer_steepness > 0):
            layer_steepness = None
        for j in range(n):
            count, code, s = int(n_inputs[first + j]), layer_codes[j], steepness[first + j]
            if count == 0:
                _fail(path, f"neuron {j} of layer {l} has no inputs")
            if code not in FROM_FANN:
                name = FANN_NAMES[code] if code < len(FANN_NAMES) else f"code {code}"
                hint = (" (FANN's default, a piecewise-linear approximation of the sigmoid; "
                        "read it as the exact function with stepwise='exact')"
                        if code in STEPWISE else "")
                _fail(path, f"neuron {j} of layer {l} uses {name}{hint}, which fastnn has not; "
                            f"it reads {', '.join(FANN_NAMES[c] for c in FROM_FANN)}")
            if not math.isfinite(s):
                _fail(path, f"neuron {j} of layer {l} has steepness {float(s)}")
            act, alpha, factor = FROM_FANN[code]
            kinds.add(act)
            scale = 1.0 if layer_steepness is not None else factor * s
            for c in range(k, k + count):
                src = sources[c] - prev_first
                if src < 0 or src > n_prev:
                    _fail(path, f"neuron {j} of layer {l} is connected to neuron {sources[c]}, "
                                f"outside the previous layer (shortcut connections are not "
                                f"supported)")
                if src == n_prev:
                    b[j] += scale * weights[c]       # the bias neuron
                else:
                    W[src, j] += scale * weights[c]
            k += count
        if len(kinds) > 1:
            _fail(path, f"the neurons of layer {l} use different activations "
                        f"({', '.join(sorted(kinds))}); a fastnn layer has one")
        # The bias neuron of every layer has no inputs.
        if n_inputs[first + n] != 0:
            _fail(path, f"the bias neuron of layer {l} has inputs")
        layers.append((W, b, kinds.pop(), alpha, layer_steepness or 1.0))
        prev_first, first = first, first + n + 1
    net = Network([Dense(W.shape[0], W.shape[1], activation=act,
                         alpha=alpha if act == "leaky_relu" else None, steepness=steep)
                   for W, b, act, alpha, steep in layers], loss="mse", dtype=dtype)
    for layer, (W, b, _, _, _) in zip(net.layers, layers):
        with np.errstate(over="ignore"):
            layer.W, layer.b = W.astype(net.dtype), b.astype(net.dtype)
    return net


def write_fann(net, path):
    """Write ``net`` as a FANN float network file (``FANN_FLO_2.1``) that FANN loads.

    sigmoid is written as FANN_SIGMOID with steepness 0.5 times the layer's
    (FANN's default 0.5 is the plain logistic), tanh as
    FANN_SIGMOID_SYMMETRIC with the layer's steepness, linear, step and sign
    as FANN_LINEAR, FANN_THRESHOLD and FANN_THRESHOLD_SYMMETRIC with it
    (the weights as they are), relu as FANN_LINEAR_PIECE_RECT and
    leaky_relu with alpha 0.01 as FANN_LINEAR_PIECE_RECT_LEAKY (those two
    need FANN 2.3; FANN 2.2 has no rectifier).  Weights are written with
    17 significant digits.  FANN clips a neuron's scaled sum to ±150/s, so
    linear and relu outputs beyond ±150 differ.

    Raises
    ------
    ValueError
        For activations FANN has not (elu, softplus, softmax, leaky_relu
        with another alpha).
    """
    if not isinstance(net, Network):
        raise TypeError(f"write_fann needs a fastnn Network, got {type(net).__name__}")
    codes = []
    for i, layer in enumerate(net.layers):
        if layer.activation == "leaky_relu" and layer.alpha == 0.01:
            codes.append((19, layer.steepness))
        elif layer.activation in TO_FANN:
            code, s = TO_FANN[layer.activation]
            codes.append((code, s * layer.steepness))
        else:
            extra = f" with alpha={layer.alpha}" if layer.activation == "leaky_relu" else ""
            raise ValueError(f"layers[{i}] uses {layer.activation}{extra}, which FANN has not; "
                             f"FANN files can hold {', '.join(sorted(TO_FANN))} and "
                             f"leaky_relu with alpha=0.01")
    sizes = [net.n_inputs] + [l.n_out for l in net.layers]
    out = [FLOAT_VERSION]
    for key, default in _HEADER_KEYS:
        out.append(f"{key}={len(sizes) if key == 'num_layers' else default}")
    out.append("layer_sizes=" + "".join(f"{n + 1} " for n in sizes))
    out.append("scale_included=0")
    neurons = ["(0, 0, 0.00000000000000000000e+00) "] * (sizes[0] + 1)
    connections = []
    first = 0                                # index of the previous layer's first neuron
    for layer, (code, s) in zip(net.layers, codes):
        factor = FROM_FANN[code][2] * s / layer.steepness       # 1: the weights as they are
        W = np.asarray(layer.W, np.float64) / factor
        b = (np.asarray(layer.b, np.float64) if layer.b is not None
             else np.zeros(layer.n_out)) / factor
        for j in range(layer.n_out):
            neurons.append(f"({layer.n_in + 1}, {code}, {s:.20e}) ")
            connections.extend(f"({first + i}, {W[i, j]:.17e}) " for i in range(layer.n_in))
            connections.append(f"({first + layer.n_in}, {b[j]:.17e}) ")
        neurons.append("(0, 0, 0.00000000000000000000e+00) ")     # the layer's bias neuron
        first += layer.n_in + 1
    out.append(f"{_NEURONS_KEY}=" + "".join(neurons))
    out.append(f"{_CONNECTIONS_KEY}=" + "".join(connections))
    with open(os.fspath(path), "w", encoding="ascii") as f:
        f.write("\n".join(out) + "\n")
