"""Optimizers: hyper-parameters and state; the update itself runs in the engine.

One class per optimizer declares its hyper-parameters and their defaults
once (the constructor's signature), checks them, and hands the engine its
update rule's code and hyper-parameter struct (``code``, ``engine_args()``:
the struct of fastnn/_engine_optim.pxi as a dict, every field by name).

State (velocities, moments, the step count) lives on the optimizer object, so
calling ``fit`` again with the same optimizer resumes where it stopped.  The
update rules are written out in NumPy in ``fastnn._reference``.  L2/L1
penalties (``fit(l2=..., l1=...)``) work with every optimizer: they are added
to the gradient the optimizer sees.
"""
import numpy as np

from . import _engine
from ._validation import check_positive_float, check_real

# Exported by fastnn itself: a new optimizer is listed here only.
__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "RProp", "Quickprop"]


def _check_unit_interval(value, name):
    """``value`` as a float in [0, 1)."""
    if not 0 <= check_positive_float(value, name, allow_zero=True) < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return float(value)


class Optimizer:
    """Base class.  Every constructor argument is stored as an attribute of the
    same name (save/load rebuilds optimizers from them)."""

    code = None         # the engine's update rule, a key of _engine.OPTIMIZER_CODES
    n_state = 0         # state buffers per parameter (at most 2)
    full_batch = False  # True: fit trains on the whole data set per step
    nonnegative_state = ()   # state buffers whose values are >= 0 (load checks them)

    def __init__(self):
        self.step = 0       # updates made so far
        self._state = None  # [[(W-shaped, b-shaped), ...] per buffer]

    def _initial_state(self, index):
        """The value state buffer ``index`` starts from."""
        return 0.0

    def state_for(self, layers):
        """State buffers for ``layers``, allocated on first use."""
        if self.n_state == 0:
            return [None, None]
        shapes = [(l.W.shape, None if l.b is None else l.b.shape, l.W.dtype) for l in layers]
        if self._state is None or self._shapes != shapes:
            # on a cache line, as the weights the engine's update streams with them
            self._state = [[(_engine.aligned_array(w, dt, self._initial_state(i)),
                             None if b is None else _engine.aligned_array(b, dt,
                                                                          self._initial_state(i)))
                            for w, b, dt in shapes] for i in range(self.n_state)]
            self._shapes = shapes
            self.step = 0
        return self._state + [None] * (2 - self.n_state)

    def engine_args(self):
        """The hyper-parameter struct of the engine's rule ``code``, as a dict
        (every field, no other key: the engine refuses both mistakes)."""
        raise NotImplementedError


class SGD(Optimizer):
    """Minibatch stochastic gradient descent.

    With momentum (scikit-learn's form): ``v = momentum * v - lr * g``, then
    ``W += v`` (or ``W += momentum * v - lr * g`` with nesterov).  Plain SGD
    adds ``-lr * X.T @ D`` straight into the weights, with no gradient buffer.
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        self.momentum = _check_unit_interval(momentum, "momentum")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.code = "sgd" if self.momentum == 0 else ("nesterov" if self.nesterov else "momentum")
        self.n_state = 0 if self.momentum == 0 else 1

    def engine_args(self):
        if self.momentum == 0:
            return dict(lr=self.lr)
        return dict(lr=self.lr, momentum=self.momentum)

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov})"


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015).

    Parameters
    ----------
    lr : float, default 0.001
    beta1, beta2 : float in [0, 1), default 0.9 and 0.999
        Decay rates of the first and second moment estimates.
    eps : float > 0, default 1e-8
    bias_correction : {"moments", "step_size"}, default "moments"
        Where the bias corrections go.  "moments" is Algorithm 1 of the paper
        (and PyTorch's Adam): ``m_hat = m / (1 - beta1^t)``, ``v_hat = v /
        (1 - beta2^t)``, ``W -= lr * m_hat / (sqrt(v_hat) + eps)``.
        "step_size" is the paper's "efficient" ordering of section 2, used
        by scikit-learn's MLP (and Keras 2): ``lr_t = lr * sqrt(1 - beta2^t)
        / (1 - beta1^t)``, ``W -= lr_t * m / (sqrt(v) + eps)``; the two differ
        only in how much ``eps`` weighs early on.
    """

    code = "adam"
    n_state = 2
    nonnegative_state = (1,)   # m, v: v >= 0
    BIAS_CORRECTIONS = ("moments", "step_size")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction="moments"):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        for value, name in ((beta1, "beta1"), (beta2, "beta2")):
            _check_unit_interval(value, name)
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive_float(eps, "eps")
        if bias_correction not in self.BIAS_CORRECTIONS:
            raise ValueError(f"bias_correction must be one of {list(self.BIAS_CORRECTIONS)}, "
                             f"got {bias_correction!r}")
        self.bias_correction = bias_correction

    def engine_args(self):
        return dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    step_size_correction=self.bias_correction == "step_size")

    def __repr__(self):
        extra = "" if self.bias_correction == "moments" else \
            f", bias_correction={self.bias_correction!r}"
        return (f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, "
                f"eps={self.eps}{extra})")


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; PyTorch's AdamW).

    Each step first shrinks the weights, ``W -= lr * weight_decay * W``, then
    makes the Adam step (Algorithm 1) from the gradient, which does not see
    the decay.  The decay applies to the weights, not to the biases (unlike
    torch.optim.AdamW given all of a model's parameters).

    Parameters
    ----------
    lr : float, default 0.001
    beta1, beta2 : float in [0, 1), default 0.9 and 0.999
    eps : float > 0, default 1e-8
    weight_decay : float >= 0, default 0.01
    """

    code = "adamw"

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr=lr, beta1=beta1, beta2=beta2, eps=eps)
        self.weight_decay = check_positive_float(weight_decay, "weight_decay", allow_zero=True)

    def engine_args(self):
        return dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    weight_decay=self.weight_decay)

    def __repr__(self):
        return (f"AdamW(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, eps={self.eps}, "
                f"weight_decay={self.weight_decay})")


class RMSprop(Optimizer):
    """RMSprop in PyTorch's form (Hinton's lecture 6e).

    ``s = rho * s + (1 - rho) * g**2``, then ``W -= lr * g / (sqrt(s) + eps)``;
    with momentum, ``buf = momentum * buf + g / (sqrt(s) + eps)`` and
    ``W -= lr * buf``.

    Parameters
    ----------
    lr : float, default 0.01
    rho : float in [0, 1), default 0.99
        Smoothing constant of the square average (PyTorch's ``alpha``).
    eps : float > 0, default 1e-8
    momentum : float in [0, 1), default 0.0
    """

    code = "rmsprop"
    nonnegative_state = (0,)   # the square average, then the momentum buffer

    def __init__(self, lr=0.01, rho=0.99, eps=1e-8, momentum=0.0):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        self.rho = _check_unit_interval(rho, "rho")
        self.eps = check_positive_float(eps, "eps")
        self.momentum = _check_unit_interval(momentum, "momentum")
        self.n_state = 2 if self.momentum > 0 else 1

    def engine_args(self):
        return dict(lr=self.lr, rho=self.rho, eps=self.eps, momentum=self.momentum)

    def __repr__(self):
        return (f"RMSprop(lr={self.lr}, rho={self.rho}, eps={self.eps}, "
                f"momentum={self.momentum})")


class RProp(Optimizer):
    """iRPROP- (Igel & Huesken, 2000), FANN's default training algorithm.

    Full batch: ``fit`` with RProp makes one step per epoch from the gradient
    of the whole training set, whatever ``batch_size`` says.  Each parameter
    has its own step size ``delta`` (starting at ``delta_zero``); per step,
    with g the gradient and g_prev the previous one (as kept below):

    - g * g_prev > 0: ``delta = min(delta * increase_factor, delta_max)``
    - g * g_prev < 0: ``delta = max(delta * decrease_factor, delta_min)`` and
      g is set to 0 (no step now, no sign change seen next time)
    - then ``W -= sign(g) * delta`` and g_prev = g.

    This is the rule of the paper (``variant="paper"``).  ``variant="fann"``
    is FANN 2.x's code (``fann_update_weights_irpropm``), which differs in
    details it does not document:

    - delta grows also when g * g_prev == 0 (the first step is
      ``delta_zero * increase_factor``);
    - the step is taken from ``max(delta, 1e-4)``, so a step size never
      vanishes whatever ``delta_min`` says (FANN's default is 0);
    - a weight whose gradient is 0 moves by ``+delta``, so also on a sign
      change (where g is set to 0): only a positive gradient steps down;
    - the weights (and biases) are kept within [-1500, 1500].

    Parameters
    ----------
    increase_factor : float > 1, default 1.2
    decrease_factor : float in (0, 1), default 0.5
    delta_min : float >= 0, default 0.0
    delta_max : float >= delta_min, default 50.0
    delta_zero : float > 0, default 0.1
        The initial step size (FANN's defaults throughout).
    variant : {"paper", "fann"}, default "paper"
    """

    n_state = 2          # previous gradient, step sizes
    nonnegative_state = (1,)
    full_batch = True
    VARIANTS = {"paper": "rprop", "fann": "rprop_fann"}

    def __init__(self, increase_factor=1.2, decrease_factor=0.5, delta_min=0.0,
                 delta_max=50.0, delta_zero=0.1, variant="paper"):
        super().__init__()
        self.increase_factor = check_positive_float(increase_factor, "increase_factor")
        if self.increase_factor <= 1:
            raise ValueError(f"increase_factor must be > 1, got {increase_factor}")
        self.decrease_factor = check_positive_float(decrease_factor, "decrease_factor")
        if self.decrease_factor >= 1:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        self.delta_min = check_positive_float(delta_min, "delta_min", allow_zero=True)
        self.delta_max = check_positive_float(delta_max, "delta_max")
        if self.delta_max < self.delta_min:
            raise ValueError(f"delta_max must be >= delta_min, got delta_max={delta_max} "
                             f"and delta_min={delta_min}")
        self.delta_zero = check_positive_float(delta_zero, "delta_zero")
        if variant not in self.VARIANTS:
            raise ValueError(f"variant must be one of {list(self.VARIANTS)}, got {variant!r}")
        self.variant = variant
        self.code = self.VARIANTS[variant]

    def _initial_state(self, index):
        return self.delta_zero if index == 1 else 0.0

    def engine_args(self):
        return dict(increase_factor=self.increase_factor, decrease_factor=self.decrease_factor,
                    delta_min=self.delta_min, delta_max=self.delta_max)

    def __repr__(self):
        extra = "" if self.variant == "paper" else f", variant={self.variant!r}"
        return (f"RProp(increase_factor={self.increase_factor}, "
                f"decrease_factor={self.decrease_factor}, delta_min={self.delta_min}, "
                f"delta_max={self.delta_max}, delta_zero={self.delta_zero}{extra})")


class Quickprop(Optimizer):
    """Quickprop (Fahlman, 1988) as FANN 2.x codes it (``fann_update_weights_quickprop``).

    Full batch, like RProp: one step per epoch from the whole training set.
    Each weight's next step comes from a parabola through its last two
    slopes.  With g the mean gradient over the n training samples (of the
    loss as fastnn defines it, the mean over samples) the slope is
    ``s = -g + decay * W / n`` (FANN's slope is summed over the samples and
    its decay added to that sum: this is it divided by n).  Then, with
    ``shrink = mu / (1 + mu)`` and the previous step d and slope s_prev:

    - d > 0.001: ``step = (lr * s if s > 0 else 0) + (mu * d if s > shrink *
      s_prev else d * s / (s_prev - s))``;
    - d < -0.001: the same with the signs of the comparisons reversed;
    - otherwise ``step = lr * s`` (FANN's epsilon = learning_rate / n times
      its summed slope);

    and ``W += step``, kept within [-1500, 1500] as FANN does.

    Parameters
    ----------
    lr : float > 0, default 0.7
        FANN's learning_rate.
    mu : float > 0, default 1.75
        The largest growth factor of a step.
    decay : float, default -0.0001
        FANN's quickprop_decay (negative: shrinks the weights).
    """

    code = "quickprop"
    n_state = 2          # previous slope, previous step
    full_batch = True

    def __init__(self, lr=0.7, mu=1.75, decay=-0.0001):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        self.mu = check_positive_float(mu, "mu")
        self.decay = check_real(decay, "decay")
        if not np.isfinite(self.decay):
            raise ValueError(f"decay must be a finite number, got {decay}")

    def engine_args(self):
        return dict(lr=self.lr, mu=self.mu, decay=self.decay)

    def __repr__(self):
        return f"Quickprop(lr={self.lr}, mu={self.mu}, decay={self.decay})"
