"""Optimizers: hyper-parameters and state; the update itself runs in the engine.

State (velocities, moments, the step count) lives on the optimizer object, so
calling ``fit`` again with the same optimizer resumes where it stopped.
"""
import numpy as np

from ._validation import check_positive_float


class Optimizer:
    code = None   # engine code, see _engine.OPTIMIZER_CODES
    n_state = 0   # state buffers per parameter

    def __init__(self):
        self.step = 0       # updates made so far
        self._state = None  # [[(W-shaped, b-shaped), ...] per buffer]

    def state_for(self, layers):
        """State buffers for ``layers``, allocated (zeros) on first use."""
        if self.n_state == 0:
            return [None, None]
        shapes = [(l.W.shape, None if l.b is None else l.b.shape, l.W.dtype) for l in layers]
        if self._state is None or self._shapes != shapes:
            self._state = [[(np.zeros(w, dt), None if b is None else np.zeros(b, dt))
                            for w, b, dt in shapes] for _ in range(self.n_state)]
            self._shapes = shapes
            self.step = 0
        return self._state + [None] * (2 - self.n_state)

    def engine_args(self):
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
        self.momentum = check_positive_float(momentum, "momentum", allow_zero=True)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.code = "sgd" if self.momentum == 0 else ("nesterov" if self.nesterov else "momentum")
        self.n_state = 0 if self.momentum == 0 else 1

    def engine_args(self):
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
    BIAS_CORRECTIONS = ("moments", "step_size")

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, bias_correction="moments"):
        super().__init__()
        self.lr = check_positive_float(lr, "lr")
        for value, name in ((beta1, "beta1"), (beta2, "beta2")):
            if not 0 <= check_positive_float(value, name, allow_zero=True) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = check_positive_float(eps, "eps")
        if bias_correction not in self.BIAS_CORRECTIONS:
            raise ValueError(f"bias_correction must be one of {list(self.BIAS_CORRECTIONS)}, "
                             f"got {bias_correction!r}")
        self.bias_correction = bias_correction

    def engine_args(self):
        return dict(lr=self.lr, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                    adam_lr_correction=self.bias_correction == "step_size")

    def __repr__(self):
        extra = "" if self.bias_correction == "moments" else \
            f", bias_correction={self.bias_correction!r}"
        return (f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2}, "
                f"eps={self.eps}{extra})")
