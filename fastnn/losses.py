"""Loss functions by name, and which output activation each one needs.

mse                    E = mean over samples of 1/2 * sum_k (t_k - o_k)^2
cross_entropy          E = mean over samples of -sum_k t_k log p_k   (softmax output)
binary_cross_entropy   E = mean over samples of -sum_k [t_k log o_k + (1 - t_k) log(1 - o_k)]
                                                                      (sigmoid output)
The engine fuses each loss with its output delta (csrc-side in _engine.pyx).
"""

LOSSES = ("mse", "cross_entropy", "binary_cross_entropy")
ALIASES = {"squared_error": "mse", "categorical_crossentropy": "cross_entropy",
           "log_loss": "cross_entropy", "binary_crossentropy": "binary_cross_entropy"}
# The output activation each loss requires (mse takes any).
REQUIRED_OUTPUT = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}


def canonical_name(loss):
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a string, one of {list(LOSSES)}; "
                        f"got {type(loss).__name__} {loss!r}")
    name = ALIASES.get(loss.lower(), loss.lower())
    if name not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; expected one of "
                         f"{list(LOSSES) + sorted(ALIASES)}")
    return name
