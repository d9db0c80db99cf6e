"""Seeded weight initialisers: ``init(rng, n_in, n_out) -> float64 (n_in, n_out)``.

The draws are made in float64 and cast to the network's dtype, so float32 and
float64 networks built with the same seed start from the same weights.
``Dense(bias_init=...)`` takes the same initialisers for the biases, called
with ``n_in = 1``.
"""
import numpy as np

from ._registry import lookup


def glorot_uniform(rng, n_in, n_out):
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=(n_in, n_out))


def glorot_normal(rng, n_in, n_out):
    return rng.normal(0.0, np.sqrt(2.0 / (n_in + n_out)), size=(n_in, n_out))


def he_uniform(rng, n_in, n_out):
    limit = np.sqrt(6.0 / n_in)
    return rng.uniform(-limit, limit, size=(n_in, n_out))


def he_normal(rng, n_in, n_out):
    return rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_in, n_out))


def lecun_normal(rng, n_in, n_out):
    return rng.normal(0.0, np.sqrt(1.0 / n_in), size=(n_in, n_out))


def uniform(rng, n_in, n_out, limit=0.05):
    return rng.uniform(-limit, limit, size=(n_in, n_out))


def zeros(rng, n_in, n_out):
    return np.zeros((n_in, n_out))


class Uniform:
    """Uniform in [-limit, limit], whatever the fan-in: ``Uniform(0.1)`` is
    FANN's ``fann_randomize_weights(ann, -0.1, 0.1)`` (FANN's benchmark), for
    the weights and, as ``Dense(bias_init=Uniform(0.1))``, the biases."""

    def __init__(self, limit=0.05):
        if isinstance(limit, bool) or not isinstance(limit, (int, float, np.floating)) \
                or not np.isfinite(limit) or limit < 0:
            raise ValueError(f"Uniform: limit must be a finite number >= 0, got {limit!r}")
        self.limit = float(limit)

    def __call__(self, rng, n_in, n_out):
        return rng.uniform(-self.limit, self.limit, size=(n_in, n_out))

    def __repr__(self):
        return f"Uniform({self.limit!r})"


INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform,
                                          he_normal, lecun_normal, uniform, zeros)}
ALIASES = {"xavier_uniform": "glorot_uniform", "xavier_normal": "glorot_normal"}


def get(init):
    """The initialiser named ``init`` (or ``init`` itself when callable)."""
    if callable(init):
        return init
    return lookup("init", init, INITIALIZERS, ALIASES, also=", or a callable(rng, n_in, n_out)")
