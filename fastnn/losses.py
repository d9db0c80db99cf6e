"""Losses: one object per loss, after scikit-learn's ``sklearn/_loss``.

Each loss declares, in one place, everything the rest of fastnn asks about it:

* ``name`` and ``aliases``; its engine code (``code``: the engine fuses the
  loss with its output delta, ``output_row`` in ``_engine.pyx``);
* ``output``: the output activation it needs (None: any), and ``link``:
  how the output layer's values relate to the prediction (``predict``);
* ``check_values``: what the target values may be (after the shape checks of
  ``_validation.check_targets``), and for classification losses how
  integer labels become targets and targets class labels (``class_weight``);
* ``loss`` and ``loss_and_delta``: the NumPy loss and output delta - the
  reference the tests compare the engine with, and what ``evaluate`` reports;
* ``metric``: "accuracy" for the classification losses, None otherwise.

=====================  =============================================================
mse                    E = mean over samples of 1/2 * sum_k (t_k - o_k)^2 (any output)
cross_entropy          E = mean over samples of -sum_k t_k log p_k   (softmax output)
binary_cross_entropy   E = mean over samples of -sum_k [t_k log o_k + (1 - t_k) log(1 - o_k)]
                       (sigmoid output)
poisson                E = mean over samples of sum_k [exp(z_k) - t_k z_k + t_k log t_k - t_k]
                       (linear output z, log link: the prediction is exp(z); half
                       the Poisson deviance, scikit-learn's MLPRegressor(loss="poisson"))
fann_tanh              FANN's "tanh" error function (FANN_ERRORFUNC_TANH, FANN's default):
                       E = mean over samples of sum_k L(u_k), u = o - t (halved for
                       tanh outputs, as FANN halves its symmetric ones), whose
                       gradient dL/du = log((1 + u) / (1 - u)) is FANN's transformed
                       error, 17 beyond |u| > 0.9999999 (any output but softmax)
=====================  =============================================================

Adding a loss: a subclass here (registered in ``LOSSES``) and its code and
``output_row`` branch in the engine; see docs/contributing.md.
"""
import numpy as np

from . import _engine, activations
from ._registry import lookup


class Loss:
    """One loss: its names, engine code, output, targets, NumPy maths and metric."""

    name = None
    aliases = ()
    output = None           # the output activation the loss needs; None: any
    link = "identity"       # prediction = the output layer's values
    metric = None           # "accuracy" for classification losses
    takes_labels = False    # y may be (n_samples,) integer class labels

    @property
    def code(self):
        """The engine's code of this loss (``_engine.LOSS_CODES``)."""
        return _engine.LOSS_CODES[self.name]

    # -- targets -------------------------------------------------------------
    def check_values(self, T):
        """Raise ValueError when the (finite, dense) targets ``T`` are not valid."""

    def labels_to_targets(self, y, n_outputs, dtype):
        """Dense targets from (n_samples,) class labels (``takes_labels`` losses)."""
        raise NotImplementedError

    def class_labels(self, T):
        """(integer class label of each row of ``T``, number of classes): what
        ``class_weight`` weighs; classification losses only."""
        raise ValueError(f"class_weight is only supported with the losses "
                         f"{classification_losses()}; this network's loss is {self.name!r}")

    # -- maths ---------------------------------------------------------------
    def loss(self, O, T, act=None):
        """Per-sample losses (n_samples,) from the output layer's values ``O``
        (``act``: the output activation; only fann_tanh's value depends on it)."""
        raise NotImplementedError

    def gradient(self, act, alpha, O, T):
        """d(loss_i)/d(pre-activation) of each sample's loss, shape of ``O``."""
        raise NotImplementedError

    def loss_and_delta(self, act, alpha, O, T, sample_weight=None):
        """Per-sample losses and the output delta d(mean loss)/d(pre-activation).

        ``O`` is the output layer's values (probabilities for softmax; ``act``
        and ``alpha`` its activation).  With ``sample_weight`` the mean is
        weighted, ``sum(w_i * loss_i) / sum(w_i)``, so the delta of row i is
        scaled by ``w_i / sum(w)`` instead of ``1 / n`` (the per-sample losses
        returned stay unweighted).
        """
        n = O.shape[0]
        if sample_weight is None:
            def weigh(G):
                return G / n
        else:
            w = np.asarray(sample_weight, np.float64)
            scale = (w / w.sum() if w.sum() > 0 else np.zeros_like(w)).reshape(-1, 1)

            def weigh(G):      # scaled in float64, kept in O's dtype (float32 stays float32)
                return (G * scale).astype(O.dtype)
        return self.loss(O, T, act), self._delta(act, alpha, O, T, weigh)

    def _delta(self, act, alpha, O, T, weigh):
        return weigh(self.gradient(act, alpha, O, T)).astype(O.dtype, copy=False)

    def mean_loss(self, O, T, act=None):
        """The batch-mean loss (``evaluate``)."""
        return float(np.mean(self.loss(O, T, act)))

    def predict(self, O):
        """The prediction from the output layer's values (in place when it changes them)."""
        return O

    def accuracy(self, O, T):
        """Fraction of the samples whose class is predicted right (classification)."""
        raise NotImplementedError

    def __repr__(self):
        return f"fastnn.losses.get({self.name!r})"


class SquaredError(Loss):
    name = "mse"
    aliases = ("squared_error",)

    def loss(self, O, T, act=None):
        return 0.5 * np.sum((O - T) ** 2, axis=1)

    def gradient(self, act, alpha, O, T):
        return self._delta(act, alpha, O, T, lambda G: G)

    def _delta(self, act, alpha, O, T, weigh):
        G = weigh(O - T)
        if act == "softmax":                  # through the softmax Jacobian
            return O * (G - np.sum(G * O, axis=1, keepdims=True))
        return G * activations.get(act).df(O, alpha)


class _Classification(Loss):
    metric = "accuracy"

    def gradient(self, act, alpha, O, T):
        return O - T                          # the loss fused with its output activation


class CrossEntropy(_Classification):
    name = "cross_entropy"
    aliases = ("categorical_crossentropy", "log_loss")
    output = "softmax"
    takes_labels = True

    def loss(self, O, T, act=None):
        # O = 0 only where the engine's log-softmax is below the dtype's range
        return -np.sum(T * np.log(np.maximum(O, np.finfo(O.dtype).tiny)), axis=1)

    def labels_to_targets(self, y, n_outputs, dtype):
        if y.dtype.kind == "f":
            if not np.isfinite(y).all() or (y != np.round(y)).any():
                raise ValueError("y must hold integer class labels for cross_entropy; "
                                 "got non-integer values")
        # Range first, in y's own dtype: a cast of a huge label would wrap around.
        lo, hi = y.min(), y.max()
        if lo < 0 or hi >= n_outputs:
            raise ValueError(f"class labels must be in [0, {n_outputs - 1}] for a network "
                             f"with {n_outputs} outputs; got labels from {float(lo):g} "
                             f"to {float(hi):g}")
        T = np.zeros((len(y), n_outputs), dtype=dtype)
        T[np.arange(len(y)), y.astype(np.int64)] = 1
        return T

    def class_labels(self, T):
        hot = T == 1
        if not (hot.sum(axis=1) == 1).all() or not ((T == 0) | hot).all():
            raise ValueError("class_weight needs hard class labels: y must hold integer "
                             "labels or one-hot rows, got rows that are not one-hot")
        return hot.argmax(axis=1), T.shape[1]

    def accuracy(self, O, T):
        return float(np.mean(O.argmax(1) == T.argmax(1)))


class BinaryCrossEntropy(_Classification):
    name = "binary_cross_entropy"
    aliases = ("binary_crossentropy",)
    output = "sigmoid"

    def loss(self, O, T, act=None):
        # clipped as the engine clips (the log of 0 or 1 - 1)
        eps = 1e-7 if O.dtype == np.float32 else 1e-15
        Oc = np.clip(O, eps, 1 - eps)
        return -np.sum(T * np.log(Oc) + (1 - T) * np.log(1 - Oc), axis=1)

    def check_values(self, T):
        if ((T < 0) | (T > 1)).any():
            raise ValueError("y must hold values in [0, 1] for binary_cross_entropy")

    def class_labels(self, T):
        if T.shape[1] != 1:
            raise ValueError(f"class_weight with binary_cross_entropy needs a network with "
                             f"one output, got {T.shape[1]} outputs")
        t = T[:, 0]
        if not ((t == 0) | (t == 1)).all():
            raise ValueError("class_weight needs hard class labels: y must hold 0 or 1 for "
                             "binary_cross_entropy, got other values")
        return t.astype(np.int64), 2

    def accuracy(self, O, T):
        return float(np.mean((O >= 0.5) == (T >= 0.5)))


class Poisson(Loss):
    """Half the Poisson deviance with a log link, as scikit-learn's
    ``HalfPoissonLoss`` plus its constant ``t log t - t`` (which
    ``MLPRegressor(loss="poisson")`` reports): 0 for a perfect prediction."""

    name = "poisson"
    aliases = ("poisson_deviance",)
    output = "linear"
    link = "log"

    @staticmethod
    def _mean(O):
        """exp(O) in float64, infinite where it overflows O's dtype (as the engine)."""
        with np.errstate(over="ignore"):
            P = np.exp(O.astype(np.float64))
        P[P > np.finfo(O.dtype).max] = np.inf
        return P

    def loss(self, O, T, act=None):
        with np.errstate(divide="ignore", invalid="ignore"):
            t_log_t = np.where(T > 0, T * np.log(T), 0.0)    # scipy's xlogy(T, T)
        return np.sum(self._mean(O) - T + t_log_t - T * O.astype(np.float64), axis=1)

    def gradient(self, act, alpha, O, T):
        return self._mean(O) - T

    def check_values(self, T):
        if (T < 0).any():
            raise ValueError(f"y must hold values >= 0 for the poisson loss, got a "
                             f"minimum of {T.min():g}")

    def predict(self, O):
        with np.errstate(over="ignore"):
            return np.exp(O, out=O)


# FANN halves the difference t - o of its symmetric outputs (fann_update_MSE)
# before its error function and bit-fail count; fastnn's outputs in [-1, 1].
FANN_SYMMETRIC = ("tanh", "sign")


def fann_difference(act, O, T):
    """(o - t, scaled as FANN scales it for the output ``act``, and the scale)."""
    s = 0.5 if act in FANN_SYMMETRIC else 1.0
    return s * (O - T), s


class FannTanh(Loss):
    """FANN's "tanh" error function (FANN_ERRORFUNC_TANH, FANN's default for
    training), as ``fann_compute_MSE`` applies it: the output error u = o - t
    (halved for symmetric outputs, s = 1/2) becomes log((1 + u) / (1 - u))
    (17 in magnitude beyond |u| > 0.9999999), which multiplies the output's
    derivative.  That transformed error is the gradient dL/du of

        L(u) = (1 + u) log(1 + u) + (1 - u) log(1 - u)    (~ u^2 near 0, 2 log 2 at |u| = 1)

    continued by lines of slope 17 beyond the clip; the per-sample loss is
    sum_k L(s u_k) / s.  Big errors weigh much more than under mse, small ones
    about twice (mse is u^2 / 2).  FANN itself reports the MSE while training
    with it; fastnn reports this loss (use ``evaluate`` or
    ``fastnn.metrics`` for others)."""

    name = "fann_tanh"
    aliases = ("fann_errorfunc_tanh",)
    CLIP = 0.9999999
    LAMBDA_CLIP = (1 + CLIP) * np.log1p(CLIP) + (1 - CLIP) * np.log1p(-CLIP)

    def loss(self, O, T, act=None):
        U, s = fann_difference(act, O.astype(np.float64), T)
        a = np.abs(U)
        inside = np.minimum(a, self.CLIP)
        L = np.where(a > self.CLIP, self.LAMBDA_CLIP + 17.0 * (a - self.CLIP),
                     (1 + inside) * np.log1p(inside) + (1 - inside) * np.log1p(-inside))
        return np.sum(L, axis=1) / s

    def error(self, U):
        """FANN's transformed error of the (scaled) differences ``U = o - t``."""
        inside = np.clip(U, -self.CLIP, self.CLIP)
        return np.where(U > self.CLIP, 17.0, np.where(U < -self.CLIP, -17.0,
                                                      np.log1p(inside) - np.log1p(-inside)))

    def gradient(self, act, alpha, O, T):
        return self._delta(act, alpha, O, T, lambda G: G)

    def _delta(self, act, alpha, O, T, weigh):
        G = weigh(self.error(fann_difference(act, O.astype(np.float64), T)[0]))
        if act == "softmax":                  # through the softmax Jacobian
            return (O * (G - np.sum(G * O, axis=1, keepdims=True))).astype(O.dtype, copy=False)
        return (G * activations.get(act).df(O, alpha)).astype(O.dtype, copy=False)


LOSSES = {loss.name: loss for loss in (SquaredError(), CrossEntropy(), BinaryCrossEntropy(),
                                       Poisson(), FannTanh())}
ALIASES = {alias: loss.name for loss in LOSSES.values() for alias in loss.aliases}


def classification_losses():
    return [name for name, loss in LOSSES.items() if loss.metric == "accuracy"]


def get(loss):
    """The Loss object of a name or alias (case-insensitive), or of a Loss."""
    if isinstance(loss, Loss):
        return loss
    return lookup("loss", loss, LOSSES, ALIASES)


def canonical_name(loss):
    """The canonical name of a loss name or alias."""
    return get(loss).name
