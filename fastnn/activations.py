"""Activation functions by name: the codes the engine uses and their parameters.

The maths lives in C (csrc/fnn_activations.h) and, for the tests, in NumPy
(fastnn/_reference.py); this module only names them.
"""

# name -> engine code (see the FNN_ACT_* enum in csrc/fnn_gemm.h)
CODES = {
    "linear": 0,
    "sigmoid": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,
    "elu": 5,
    "softplus": 6,
    "step": 7,
    "sign": 8,
    "softmax": 9,
}
ALIASES = {"identity": "linear", "logistic": "sigmoid", "ramp": "relu"}

# The activations with a parameter, and its default: the negative slope of
# leaky_relu (as in PyTorch) and the saturation value of elu.
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0}

# Activations whose derivative is zero almost everywhere: a network using them
# runs forward, but backpropagation cannot train it (the Perceptron rule can).
NOT_DIFFERENTIABLE = {"step", "sign"}


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
