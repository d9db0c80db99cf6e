"""Learning-rate schedules: callbacks that set the optimizer's ``lr`` between epochs.

Pass one to ``fit(lr_schedule=...)`` (or in ``fit(callbacks=[...])``; a fit
takes at most one schedule).  The engine reads ``optimizer.lr`` at the start
of every epoch, so a schedule only has to change that attribute:

* epoch functions (:class:`ConstantLR`, :class:`StepDecay`,
  :class:`ExponentialDecay`, :class:`CosineAnnealing`, :class:`InverseScaling`,
  :class:`LambdaLR`) set ``lr = lr_at(epoch)`` before each epoch;
* plateau rules (:class:`AdaptiveLR`, :class:`ReduceLROnPlateau`) look at
  the epoch's results and lower ``lr`` for the next epoch.

The initial rate ``lr`` of an epoch function defaults to the optimizer's
``lr`` when the first fit starts.  A schedule counts the epochs it has run
(``schedule.epoch``): pass the same object to a later ``fit`` to continue
where it stopped, a new one to start over.  Schedules are not saved with the
model; to resume a schedule after ``fastnn.load``, create it with the base
rate and set its ``epoch``.

``fit`` records the rate each epoch used in ``History.history["lr"]``.
"""
import math
import numbers

import numpy as np

from ._validation import check_positive_float, check_positive_int
from .callbacks import (Callback, _check_mode, _check_nonnegative, _check_nonnegative_int,
                        check_monitor)

__all__ = ["LRSchedule", "ConstantLR", "StepDecay", "ExponentialDecay", "CosineAnnealing",
           "InverseScaling", "LambdaLR", "AdaptiveLR", "ReduceLROnPlateau"]


def _check_rate(value, name="lr"):
    """A learning rate: a finite number >= 0 (0 freezes the weights)."""
    return check_positive_float(value, name, allow_zero=True)


def _optimizer_lr(model, who):
    optimizer = model.optimizer
    if not hasattr(optimizer, "lr"):
        raise ValueError(f"{who} sets a learning rate, but {type(optimizer).__name__} "
                         f"has no attribute lr")
    return optimizer.lr


class LRSchedule(Callback):
    """Base class: a schedule sets ``model.optimizer.lr``.

    Subclasses that are functions of the epoch implement ``lr_at(epoch)``;
    the others override the callback hooks.

    Attributes
    ----------
    epoch : int
        Epochs run under this schedule (across fits); the next epoch gets
        ``lr_at(epoch)``.
    """

    def __init__(self, lr=None):
        super().__init__()
        self.lr = None if lr is None else check_positive_float(lr, "lr")
        self.epoch = 0

    def lr_at(self, epoch):
        """The learning rate of epoch ``epoch`` (0-based)."""
        raise NotImplementedError

    def on_train_begin(self, logs=None):
        current = _optimizer_lr(self.model, type(self).__name__)
        if self.lr is None:
            self.lr = float(current)

    def on_epoch_begin(self, epoch, logs=None):
        value = self.lr_at(self.epoch)
        self.model.optimizer.lr = _check_rate(value, f"{type(self).__name__}: the learning "
                                                     f"rate of epoch {self.epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.epoch += 1

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return {"lr": self.lr}


class ConstantLR(LRSchedule):
    """The same rate every epoch: ``lr`` (default: the optimizer's)."""

    def lr_at(self, epoch):
        return self.lr


class StepDecay(LRSchedule):
    """``lr * factor ** (epoch // step_size)``: multiply by ``factor`` every
    ``step_size`` epochs.

    Parameters
    ----------
    step_size : int
        Epochs between two drops.
    factor : float in (0, 1], default 0.1
    lr : float, optional
        Initial rate; default: the optimizer's.
    """

    def __init__(self, step_size, factor=0.1, lr=None):
        super().__init__(lr)
        self.step_size = check_positive_int(step_size, "step_size")
        self.factor = _check_factor(factor)

    def lr_at(self, epoch):
        return self.lr * self.factor ** (epoch // self.step_size)

    def _repr_args(self):
        return {"step_size": self.step_size, "factor": self.factor, "lr": self.lr}


class ExponentialDecay(LRSchedule):
    """``lr * factor ** epoch``.

    Parameters
    ----------
    factor : float in (0, 1]
    lr : float, optional
        Initial rate; default: the optimizer's.
    """

    def __init__(self, factor, lr=None):
        super().__init__(lr)
        self.factor = _check_factor(factor)

    def lr_at(self, epoch):
        return self.lr * self.factor ** epoch

    def _repr_args(self):
        return {"factor": self.factor, "lr": self.lr}


class CosineAnnealing(LRSchedule):
    """Linear warm-up, then a half cosine from ``lr`` down to ``min_lr``.

    With W = ``warmup_epochs`` and E = ``epochs``::

        epoch e < W:       lr * (e + 1) / (W + 1)
        W <= e < E:        min_lr + (lr - min_lr) * (1 + cos(pi * (e - W) / (E - W))) / 2
        e >= E:            min_lr

    Parameters
    ----------
    epochs : int
        Length of the schedule, warm-up included (usually fit's ``epochs``).
    min_lr : float, default 0
    warmup_epochs : int, default 0
        Must be smaller than ``epochs``.
    lr : float, optional
        Peak rate; default: the optimizer's.
    """

    def __init__(self, epochs, min_lr=0.0, warmup_epochs=0, lr=None):
        super().__init__(lr)
        self.epochs = check_positive_int(epochs, "epochs")
        self.min_lr = _check_rate(min_lr, "min_lr")
        if isinstance(warmup_epochs, (bool, np.bool_)) or not isinstance(
                warmup_epochs, numbers.Integral) or not 0 <= warmup_epochs < self.epochs:
            raise ValueError(f"warmup_epochs must be an integer in [0, epochs={self.epochs}), "
                             f"got {warmup_epochs!r}")
        self.warmup_epochs = int(warmup_epochs)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.min_lr > self.lr:
            raise ValueError(f"CosineAnnealing: min_lr={self.min_lr} is larger than the peak "
                             f"lr={self.lr}")

    def lr_at(self, epoch):
        W, E = self.warmup_epochs, self.epochs
        if epoch < W:
            return self.lr * (epoch + 1) / (W + 1)
        if epoch >= E:
            return self.min_lr
        return self.min_lr + (self.lr - self.min_lr) * (1 + math.cos(math.pi * (epoch - W)
                                                                     / (E - W))) / 2

    def _repr_args(self):
        return {"epochs": self.epochs, "min_lr": self.min_lr,
                "warmup_epochs": self.warmup_epochs, "lr": self.lr}


class InverseScaling(LRSchedule):
    """scikit-learn's ``learning_rate="invscaling"``: ``lr / (t + 1) ** power_t``
    with t the number of training samples seen before the epoch.

    As in scikit-learn, t grows by the number of training samples at the end
    of each epoch, so the first epoch runs at ``lr``, the second at
    ``lr / (n_samples + 1) ** power_t``, and so on.

    Parameters
    ----------
    power_t : float, default 0.5
    lr : float, optional
        Initial rate (scikit-learn's ``learning_rate_init``); default: the
        optimizer's.

    Attributes
    ----------
    t : int
        Samples seen so far (scikit-learn's ``t_``).
    """

    def __init__(self, power_t=0.5, lr=None):
        super().__init__(lr)
        self.power_t = check_positive_float(power_t, "power_t", allow_zero=True)
        self.t = 0

    def lr_at(self, epoch):
        # A function of the samples seen, not of the epoch number.
        return self.lr / (self.t + 1) ** self.power_t

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self.t += self.params["n_samples"]

    def _repr_args(self):
        return {"power_t": self.power_t, "lr": self.lr}


class LambdaLR(LRSchedule):
    """Any function of the epoch: ``lr = fn(epoch)`` (0-based epoch count of
    this schedule)."""

    def __init__(self, fn):
        super().__init__(None)
        if not callable(fn):
            raise TypeError(f"LambdaLR needs a callable fn(epoch) -> lr, got "
                            f"{type(fn).__name__}")
        self.fn = fn

    def lr_at(self, epoch):
        return self.fn(epoch)

    def _repr_args(self):
        return {"fn": self.fn}


class AdaptiveLR(LRSchedule):
    """scikit-learn's ``learning_rate="adaptive"``.

    Keeps the rate while the monitored value improves.  After each epoch, an
    epoch that does not beat the best value so far by ``tol`` counts as one
    without improvement (any other resets the count); the best value is
    updated whenever it is beaten at all.  When the count exceeds
    ``n_iter_no_change``, the rate is divided by 5 and the count restarts -
    unless the rate is already at most 1e-6, in which case training stops
    (``model.stop_training``), as scikit-learn's does.

    Parameters
    ----------
    tol : float, default 1e-4
    n_iter_no_change : int, default 10
        scikit-learn's default is 10 too: the rate drops after 11 epochs
        without improvement.
    monitor : str, default "loss"
        scikit-learn monitors the training loss, or the validation score
        when ``early_stopping=True`` (here e.g. "val_accuracy").
    mode : {"auto", "min", "max"}, default "auto"
        "auto": larger is better for names containing "acc".
    """

    divisor = 5.0   # scikit-learn divides (lr / 5 is not always lr * 0.2 in floating point)
    min_lr = 1e-6

    def __init__(self, tol=1e-4, n_iter_no_change=10, monitor="loss", mode="auto"):
        super().__init__(None)
        self.tol = _check_nonnegative(tol, "tol")
        self.n_iter_no_change = check_positive_int(n_iter_no_change, "n_iter_no_change")
        self.monitor = monitor
        self.mode = mode
        self._sign = 1.0 if _check_mode(mode, monitor) == "min" else -1.0
        self.best = np.inf * self._sign
        self.count = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        check_monitor(self.monitor, self.params, "AdaptiveLR")

    def on_epoch_begin(self, epoch, logs=None):
        pass   # the rate changes only at epoch ends

    def on_epoch_end(self, epoch, logs=None):
        self.epoch += 1
        value = self._sign * float(logs[self.monitor])   # smaller is better from here on
        best = self._sign * self.best
        self.count = self.count + 1 if value > best - self.tol else 0
        if value < best:
            self.best = float(logs[self.monitor])
        if self.count > self.n_iter_no_change:
            optimizer = self.model.optimizer
            if optimizer.lr <= self.min_lr:
                self.model.stop_training = True
            else:
                optimizer.lr = optimizer.lr / self.divisor
                self.count = 0

    def _repr_args(self):
        return {"tol": self.tol, "n_iter_no_change": self.n_iter_no_change,
                "monitor": self.monitor, "mode": self.mode}


class ReduceLROnPlateau(LRSchedule):
    """Multiply the rate by ``factor`` when ``monitor`` has stopped improving
    (Keras's ReduceLROnPlateau).

    An epoch improves when it beats the best value by more than
    ``min_delta``.  After ``patience`` epochs without improvement the rate
    becomes ``max(lr * factor, min_lr)`` (if it is above ``min_lr``), and
    the next ``cooldown`` epochs are not counted.

    Parameters
    ----------
    monitor : str, default "val_loss"
    factor : float in (0, 1), default 0.1
    patience : int, default 10
    min_delta : float, default 1e-4
    cooldown : int, default 0
    min_lr : float, default 0
    mode : {"auto", "min", "max"}, default "auto"
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, min_delta=1e-4,
                 cooldown=0, min_lr=0.0, mode="auto"):
        super().__init__(None)
        self.monitor = monitor
        self.factor = _check_factor(factor)
        if self.factor == 1.0:
            raise ValueError("factor must be < 1 for ReduceLROnPlateau, got 1.0")
        self.patience = check_positive_int(patience, "patience")
        self.min_delta = _check_nonnegative(min_delta, "min_delta")
        self.cooldown = _check_nonnegative_int(cooldown, "cooldown")
        self.min_lr = _check_rate(min_lr, "min_lr")
        self.mode = mode
        self._sign = 1.0 if _check_mode(mode, monitor) == "min" else -1.0
        self.best = np.inf * self._sign
        self.wait = 0
        self.cooldown_counter = 0

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        check_monitor(self.monitor, self.params, "ReduceLROnPlateau")

    def on_epoch_begin(self, epoch, logs=None):
        pass   # the rate changes only at epoch ends

    def on_epoch_end(self, epoch, logs=None):
        self.epoch += 1
        value = float(logs[self.monitor])
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.wait = 0
        if self._sign * value < self._sign * self.best - self.min_delta:
            self.best, self.wait = value, 0
        elif self.cooldown_counter == 0:
            self.wait += 1
            if self.wait >= self.patience:
                optimizer = self.model.optimizer
                if optimizer.lr > self.min_lr:
                    optimizer.lr = max(optimizer.lr * self.factor, self.min_lr)
                    self.cooldown_counter = self.cooldown
                    self.wait = 0

    def _repr_args(self):
        return {"monitor": self.monitor, "factor": self.factor, "patience": self.patience,
                "min_delta": self.min_delta, "cooldown": self.cooldown, "min_lr": self.min_lr,
                "mode": self.mode}


def _check_factor(factor):
    value = check_positive_float(factor, "factor")
    if value > 1:
        raise ValueError(f"factor must be in (0, 1], got {factor}")
    return value


def as_schedule(lr_schedule):
    """``fit``'s ``lr_schedule``: an LRSchedule, or a function epoch -> lr."""
    if lr_schedule is None or isinstance(lr_schedule, LRSchedule):
        return lr_schedule
    if callable(lr_schedule) and not isinstance(lr_schedule, Callback):
        return LambdaLR(lr_schedule)
    raise TypeError(f"lr_schedule must be a fastnn schedule (e.g. fastnn.StepDecay(10)) or a "
                    f"function epoch -> lr, got {type(lr_schedule).__name__}")
