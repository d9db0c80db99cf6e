"""Activation functions: one registry entry per activation.

An entry names the activation (and its aliases), gives its engine code, the
default of its parameter, whether backpropagation can train it, and how it is
written outside fastnn: as ONNX nodes (``onnx``) and as a C expression
(``c``).  The engine's maths lives in C (csrc/fnn_activations.h) and, for the
tests, in NumPy (fastnn/_reference.py).

``onnx(g, x, alpha, dtype)`` adds nodes to ``g`` (a fastnn.export graph
builder: ``g.op(op_type, inputs, **attributes)`` returns the output's name,
``g.const(value)`` a scalar of the model's dtype) and returns the name of the
activated tensor.  ONNX Runtime's CPU provider has no float64 kernel for Elu
and Softplus, and the alpha attribute of LeakyRelu and Elu is a 32-bit
float, so in float64 those are composed from Exp/Log/Where/Max.

``c`` is a C expression of the pre-activation ``{x}``, with ``{alpha}`` and
the math functions ``{exp}``, ``{expm1}``, ``{log1p}``, ``{tanh}`` filled in
for the model's type (expf or exp, ...); it mirrors fnn_act_s/fnn_act_d.
softmax normalises a whole row: its ``c`` is None and the exporter writes the
loop (see fastnn.export._c).
"""
from dataclasses import dataclass, field
from typing import Callable, Optional


@dataclass(frozen=True)
class Activation:
    name: str
    code: int                       # FNN_ACT_* in csrc/fnn_gemm.h
    onnx: Callable
    c: Optional[str]
    aliases: tuple = ()
    default_alpha: Optional[float] = None   # only the activations with a parameter
    differentiable: bool = True
    elementwise: bool = field(default=True)


def _sigmoid_onnx(g, x, alpha, dtype):
    return g.op("Sigmoid", [x])


def _tanh_onnx(g, x, alpha, dtype):
    return g.op("Tanh", [x])


def _relu_onnx(g, x, alpha, dtype):
    return g.op("Relu", [x])


def _leaky_relu_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("LeakyRelu", [x], alpha=float(alpha))
    # LeakyRelu's alpha attribute is a 32-bit float: x > 0 ? x : alpha * x
    return g.op("Where", [g.op("Greater", [x, g.const(0)]), x, g.op("Mul", [g.const(alpha), x])])


def _elu_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("Elu", [x], alpha=float(alpha))
    # x > 0 ? x : alpha * (exp(min(x, 0)) - 1)
    negative = g.op("Mul", [g.const(alpha), g.op("Sub", [g.op("Exp", [g.op(
        "Min", [x, g.const(0)])]), g.const(1)])])
    return g.op("Where", [g.op("Greater", [x, g.const(0)]), x, negative])


def _softplus_onnx(g, x, alpha, dtype):
    if dtype == "float32":
        return g.op("Softplus", [x])
    # log(1 + exp(-|x|)) + max(x, 0): no overflow for large |x|
    tail = g.op("Log", [g.op("Add", [g.const(1), g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])])])
    return g.op("Add", [tail, g.op("Max", [x, g.const(0)])])


def _linear_onnx(g, x, alpha, dtype):
    return x


def _step_onnx(g, x, alpha, dtype):
    return g.op("Where", [g.op("GreaterOrEqual", [x, g.const(0)]), g.const(1), g.const(0)])


def _sign_onnx(g, x, alpha, dtype):
    return g.op("Where", [g.op("GreaterOrEqual", [x, g.const(0)]), g.const(1), g.const(-1)])


def _softmax_onnx(g, x, alpha, dtype):
    return g.op("Softmax", [x], axis=-1)


REGISTRY = {a.name: a for a in [
    Activation("linear", 0, _linear_onnx, "{x}", aliases=("identity",)),
    Activation("sigmoid", 1, _sigmoid_onnx,
               "({x} >= 0 ? 1 / (1 + {exp}(-{x})) : {exp}({x}) / (1 + {exp}({x})))",
               aliases=("logistic",)),
    Activation("tanh", 2, _tanh_onnx, "{tanh}({x})"),
    Activation("relu", 3, _relu_onnx, "({x} > 0 ? {x} : 0)", aliases=("ramp",)),
    # alpha: the negative slope of leaky_relu (as in PyTorch), the saturation of elu
    Activation("leaky_relu", 4, _leaky_relu_onnx, "({x} > 0 ? {x} : {alpha} * {x})",
               default_alpha=0.01),
    Activation("elu", 5, _elu_onnx, "({x} > 0 ? {x} : {alpha} * {expm1}({x}))",
               default_alpha=1.0),
    Activation("softplus", 6, _softplus_onnx,
               "({log1p}({exp}({x} > 0 ? -{x} : {x})) + ({x} > 0 ? {x} : 0))"),
    # derivative zero almost everywhere: runs forward, the Perceptron rule trains it
    Activation("step", 7, _step_onnx, "({x} >= 0 ? 1 : 0)", differentiable=False),
    Activation("sign", 8, _sign_onnx, "({x} >= 0 ? 1 : -1)", differentiable=False),
    Activation("softmax", 9, _softmax_onnx, None, elementwise=False),
]}

# The names the rest of fastnn has always used, derived from the registry.
CODES = {name: a.code for name, a in REGISTRY.items()}
ALIASES = {alias: name for name, a in REGISTRY.items() for alias in a.aliases}
DEFAULT_ALPHA = {name: a.default_alpha for name, a in REGISTRY.items()
                 if a.default_alpha is not None}
NOT_DIFFERENTIABLE = {name for name, a in REGISTRY.items() if not a.differentiable}


def canonical_name(activation):
    """The canonical name of ``activation``, or a ValueError naming the choices."""
    if not isinstance(activation, str):
        raise TypeError(
            f"activation must be a string, one of {sorted(CODES) + sorted(ALIASES)}; "
            f"got {type(activation).__name__} {activation!r}")
    name = ALIASES.get(activation.lower(), activation.lower())
    if name not in CODES:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of "
            f"{sorted(CODES) + sorted(ALIASES)}")
    return name


def get(activation):
    """The registry entry of ``activation`` (a name or an alias)."""
    return REGISTRY[canonical_name(activation)]
