"""Activation functions: one registry entry per activation.

An entry holds everything fastnn knows about an activation in Python:

* its name and aliases, and the default of its parameter (``alpha``);
* its NumPy maths, ``f(x, alpha)`` and ``df(u, alpha)`` = f'(x) written in
  terms of ``u``: the output y = f(x), or x itself when the engine declares
  the activation ``from_input`` (its derivative the output does not
  determine, as for silu and gelu; the engine then keeps x while training).
  This NumPy code is the reference the tests compare the engine with
  (``fastnn._reference`` delegates to it);
* ``differentiable`` (False: zero gradient almost everywhere, fit refuses
  it), ``elementwise`` (False for softmax, taken over each row) and
  ``output_range`` (the bounds of a saturating activation, where
  ``Dense(flat_spot=...)`` clips the output before taking f');
* how it is written outside fastnn: ONNX nodes (``onnx``) and a C
  expression (``c``).

Its engine code and ``from_input`` come from the engine, whose C entry
(csrc/fnn_activations.h) is the one list of codes; nothing is numbered twice.

``onnx(g, x, alpha, dtype)`` adds nodes to ``g`` (a fastnn.export graph
builder: ``g.op(op_type, inputs, **attributes)`` returns the output's name,
``g.const(value)`` a scalar of the model's dtype) and returns the name of the
activated tensor.  ONNX Runtime's CPU provider has no float64 kernel for Elu
and Softplus, and the alpha attribute of LeakyRelu and Elu is a 32-bit
float, so in float64 those are composed from Exp/Log/Where/Max.

``c`` is a C expression of the activation's input ``{x}``, with ``{alpha}``
and the math functions ``{exp}``, ``{expm1}``, ``{log1p}``, ``{tanh}`` filled
in for the model's type (expf or exp, ...); it mirrors fnn_act_s/fnn_act_d.
softmax normalises a whole row: its ``c`` is None and the exporter writes the
loop (see fastnn.export._c).

Steepness (FANN's): a layer of steepness s computes f(s * (X @ W + b)); the
entries never see s, the engine, the reference and the exports scale the
input (and multiply f' by s).  FANN's sigmoid with steepness s is fastnn's
sigmoid with steepness 2 s (FANN's default 0.5 is the plain logistic), and
FANN's symmetric sigmoid, tanh(s x), is fastnn's tanh (alias
``sigmoid_symmetric``) with steepness s.
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import _engine
from ._registry import lookup


@dataclass(frozen=True)
class Activation:
    name: str
    f: Callable                     # NumPy f(x, alpha)
    df: Callable                    # NumPy f'(x) from u (the output, or x: from_input)
    onnx: Callable
    c: Optional[str]
    aliases: tuple = ()
    default_alpha: Optional[float] = None   # only the activations with a parameter
    differentiable: bool = True
    elementwise: bool = True
    output_range: Optional[tuple] = None    # (lo, hi) of a saturating activation

    @property
    def code(self):
        """The engine's code (csrc/fnn_activations.h, via _engine.ACTIVATION_CODES)."""
        return _engine.ACTIVATION_CODES[self.name]

    @property
    def from_input(self):
        """Whether f' is taken from the activation's input x rather than its output."""
        return self.name in _engine.ACTIVATIONS_FROM_INPUT

    def flat_spot_bounds(self, flat_spot):
        """[lo, hi] into which flat-spot elimination clips the output before
        f': ``flat_spot`` of the output range from either end (FANN, 0.01:
        [0.01, 0.99] for the sigmoid, [-0.98, 0.98] for tanh); None when 0."""
        if not flat_spot:
            return None
        lo, hi = self.output_range
        return lo + flat_spot * (hi - lo), hi - flat_spot * (hi - lo)


def _one(u):
    return u.dtype.type(1)


def _sigm(x):
    """The logistic without overflow (the branch np.where drops may overflow)."""
    one = _one(x)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(x >= 0, one / (one + np.exp(-x)), np.exp(x) / (one + np.exp(x)))


# -- linear ------------------------------------------------------------------
def _linear_f(x, alpha):
    return x.copy()


def _linear_df(y, alpha):
    return np.ones_like(y)


def _linear_onnx(g, x, alpha, dtype):
    return x


# -- sigmoid -----------------------------------------------------------------
def _sigmoid_f(x, alpha):
    return _sigm(x)


def _sigmoid_df(y, alpha):
    return y * (_one(y) - y)


def _sigmoid_onnx(g, x, alpha, dtype):
    return g.op("Sigmoid", [x])


# -- tanh --------------------------------------------------------------------
def _tanh_f(x, alpha):
    return np.tanh(x)


def _tanh_df(y, alpha):
    return _one(y) - y * y


def _tanh_onnx(g, x, alpha, dtype):
    return g.op("Tanh", [x])


# -- relu --------------------------------------------------------------------
def _relu_f(x, alpha):
    return np.where(x > 0, x, 0).astype(x.dtype)


def _relu_df(y, alpha):
    return (y > 0).astype(y.dtype)


def _relu_onnx(g, x, alpha, dtype):
    return g.op("Relu", [x])


# -- leaky_relu (alpha: the negative slope, as in PyTorch) --------------------
def _leaky_relu_f(x, alpha):
    return np.where(x > 0, x, x.dtype.type(alpha) * x)


def _leaky_relu_df(y, alpha):
    return np.where(y > 0, _one(y), y.dtype.type(alpha))


def _leaky_relu_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("LeakyRelu", [x], alpha=float(alpha))
    # LeakyRelu's alpha attribute is a 32-bit float: x > 0 ? x : alpha * x
    return g.op("Where", [g.op("Greater", [x, g.const(0)]), x, g.op("Mul", [g.const(alpha), x])])


# -- elu (alpha: the saturation) ----------------------------------------------
def _elu_f(x, alpha):
    return np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(np.minimum(x, 0)))


def _elu_df(y, alpha):
    return np.where(y > 0, _one(y), y + y.dtype.type(alpha))


def _elu_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("Elu", [x], alpha=float(alpha))
    # x > 0 ? x : alpha * (exp(min(x, 0)) - 1)
    negative = g.op("Mul", [g.const(alpha), g.op("Sub", [g.op("Exp", [g.op(
        "Min", [x, g.const(0)])]), g.const(1)])])
    return g.op("Where", [g.op("Greater", [x, g.const(0)]), x, negative])


# -- softplus ----------------------------------------------------------------
def _softplus_f(x, alpha):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def _softplus_df(y, alpha):
    return -np.expm1(-y)


def _softplus_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("Softplus", [x])
    # log(1 + exp(-|x|)) + max(x, 0): no overflow for large |x|
    tail = g.op("Log", [g.op("Add", [g.const(1), g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])])])
    return g.op("Add", [tail, g.op("Max", [x, g.const(0)])])


# -- step, sign: derivative zero almost everywhere (the Perceptron rule trains them)
def _step_f(x, alpha):
    return (x >= 0).astype(x.dtype)


def _step_onnx(g, x, alpha, dtype):
    return g.op("Where", [g.op("GreaterOrEqual", [x, g.const(0)]), g.const(1), g.const(0)])


def _sign_f(x, alpha):
    return np.where(x >= 0, _one(x), -_one(x))


def _sign_onnx(g, x, alpha, dtype):
    return g.op("Where", [g.op("GreaterOrEqual", [x, g.const(0)]), g.const(1), g.const(-1)])


def _zero_df(y, alpha):
    return np.zeros_like(y)


# -- softmax (over each row; the engine normalises, f' goes through the loss) --
def _softmax_f(x, alpha):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax_onnx(g, x, alpha, dtype):
    return g.op("Softmax", [x], axis=-1)


# -- silu: x * sigmoid(x); f' from x -------------------------------------------
def _silu_f(x, alpha):
    return x * _sigm(x)


def _silu_df(x, alpha):
    s = _sigm(x)
    return s * (_one(x) + x * (_one(x) - s))


def _silu_onnx(g, x, alpha, dtype):
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


# -- gelu, tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
# computed as x * sigmoid(2u) (the same function: 1 + tanh(u) = 2 sigmoid(2u)),
# which loses nothing to cancellation for negative x; f' from x
_GELU_C, _GELU_A = 0.7978845608028654, 0.044715


def _gelu_f(x, alpha):
    t = x.dtype.type
    return x * _sigm(t(2 * _GELU_C) * (x + t(_GELU_A) * x * x * x))


def _gelu_df(x, alpha):
    t = x.dtype.type
    x2 = x * x
    s = _sigm(t(2 * _GELU_C) * (x + t(_GELU_A) * x2 * x))
    return s + x * t(2 * _GELU_C) * s * (_one(x) - s) * (_one(x) + t(3 * _GELU_A) * x2)


def _gelu_onnx(g, x, alpha, dtype):
    # x * Sigmoid(2c (x + a x^3)): ONNX Runtime runs Sigmoid in float32 and float64
    # (opset 20's Gelu has no float64 kernel)
    cube = g.op("Mul", [g.op("Mul", [x, x]), x])
    u = g.op("Add", [x, g.op("Mul", [g.const(_GELU_A), cube])])
    return g.op("Mul", [x, g.op("Sigmoid", [g.op("Mul", [g.const(2 * _GELU_C), u])])])


_SIGM_C = "({x} >= 0 ? 1 / (1 + {exp}(-{x})) : {exp}({x}) / (1 + {exp}({x})))"

REGISTRY = {a.name: a for a in [
    Activation("linear", _linear_f, _linear_df, _linear_onnx, "{x}", aliases=("identity",)),
    Activation("sigmoid", _sigmoid_f, _sigmoid_df, _sigmoid_onnx, _SIGM_C,
               aliases=("logistic",), output_range=(0.0, 1.0)),
    Activation("tanh", _tanh_f, _tanh_df, _tanh_onnx, "{tanh}({x})",
               aliases=("sigmoid_symmetric",), output_range=(-1.0, 1.0)),
    Activation("relu", _relu_f, _relu_df, _relu_onnx, "({x} > 0 ? {x} : 0)", aliases=("ramp",)),
    Activation("leaky_relu", _leaky_relu_f, _leaky_relu_df, _leaky_relu_onnx,
               "({x} > 0 ? {x} : {alpha} * {x})", default_alpha=0.01),
    Activation("elu", _elu_f, _elu_df, _elu_onnx, "({x} > 0 ? {x} : {alpha} * {expm1}({x}))",
               default_alpha=1.0),
    Activation("softplus", _softplus_f, _softplus_df, _softplus_onnx,
               "({log1p}({exp}({x} > 0 ? -{x} : {x})) + ({x} > 0 ? {x} : 0))"),
    Activation("step", _step_f, _zero_df, _step_onnx, "({x} >= 0 ? 1 : 0)",
               differentiable=False),
    Activation("sign", _sign_f, _zero_df, _sign_onnx, "({x} >= 0 ? 1 : -1)",
               differentiable=False),
    Activation("softmax", _softmax_f, _linear_df, _softmax_onnx, None, elementwise=False),
    Activation("silu", _silu_f, _silu_df, _silu_onnx, "({x} * " + _SIGM_C + ")",
               aliases=("swish",)),
    Activation("gelu", _gelu_f, _gelu_df, _gelu_onnx,
               "({x} * " + _SIGM_C.replace("{x}", "(2 * 0.7978845608028654 * ({x} + 0.044715 "
                                                   "* {x} * {x} * {x}))") + ")"),
]}

# The names the rest of fastnn has always used, derived from the registry.
CODES = {name: a.code for name, a in REGISTRY.items()}
ALIASES = {alias: name for name, a in REGISTRY.items() for alias in a.aliases}
DEFAULT_ALPHA = {name: a.default_alpha for name, a in REGISTRY.items()
                 if a.default_alpha is not None}
NOT_DIFFERENTIABLE = {name for name, a in REGISTRY.items() if not a.differentiable}


def canonical_name(activation):
    """The canonical name of ``activation``, or a ValueError naming the choices."""
    return lookup("activation", activation, REGISTRY, ALIASES).name


def get(activation):
    """The registry entry of ``activation`` (a name or an alias)."""
    return REGISTRY[canonical_name(activation)]
