"""Callbacks: code that ``Network.fit`` runs at fixed points of the training.

A callback subclasses :class:`Callback` and overrides the hooks it needs.
``fit`` calls them in the order of its ``callbacks`` list::

    on_train_begin(logs)            once, before the first epoch
    on_epoch_begin(epoch, logs)     before each epoch (learning-rate schedules act here)
    on_batch_end(batch, logs)       after each minibatch, only if wants_batches is True
    on_epoch_end(epoch, logs)       after each epoch, with that epoch's results
    on_train_end(logs)              once, however the training ended

Stopping: any hook may set ``self.model.stop_training = True``; ``fit``
finishes the current batch (from ``on_batch_end``) or epoch and returns.

Batches cost a trip to Python: ``fit`` normally hands the engine a whole
epoch at once, and only when some callback sets the class attribute
``wants_batches = True`` does it run the engine one minibatch at a time.
The trained weights are the same either way (bit for bit).
"""
import numbers

import numpy as np

__all__ = ["Callback", "EarlyStopping", "LambdaCallback"]


class Callback:
    """Base class of everything passed in ``fit(callbacks=[...])``.

    Attributes
    ----------
    model : Network
        The network being trained (set by ``fit`` before ``on_train_begin``).
        ``model.optimizer`` is the optimizer of this fit; setting
        ``model.stop_training = True`` ends the training.
    params : dict
        What ``fit`` was asked to do: ``epochs``, ``batch_size``,
        ``n_samples`` (training rows), ``steps`` (minibatches per epoch),
        ``verbose``, ``do_validation`` and ``metrics`` (the names that the
        epoch logs will hold, e.g. ``["loss", "val_loss", "val_accuracy", "lr"]``).
    wants_batches : bool, class attribute
        True makes ``fit`` call ``on_batch_end`` after every minibatch, with
        ``logs = {"batch": i, "size": rows, "loss": mean loss of the batch}``.

    Notes
    -----
    The epoch logs hold ``loss`` (mean training loss over the epoch),
    ``accuracy`` (with ``fit(metrics=["accuracy"])``), ``val_loss`` and
    ``val_accuracy`` (with validation data; accuracy for classification
    networks) and ``lr`` (the learning rate the epoch used).
    """

    wants_batches = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params

    def on_train_begin(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


class LambdaCallback(Callback):
    """A callback made of plain functions, e.g.
    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``.

    Passing ``on_batch_end`` makes it a batch callback (``wants_batches``).
    """

    def __init__(self, on_train_begin=None, on_epoch_begin=None, on_batch_end=None,
                 on_epoch_end=None, on_train_end=None):
        super().__init__()
        hooks = dict(on_train_begin=on_train_begin, on_epoch_begin=on_epoch_begin,
                     on_batch_end=on_batch_end, on_epoch_end=on_epoch_end,
                     on_train_end=on_train_end)
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"{name} must be callable, got {type(fn).__name__}")
                setattr(self, name, fn)
        self.wants_batches = on_batch_end is not None


def _check_mode(mode, monitor):
    """'min' or 'max': 'auto' picks 'max' for accuracies, 'min' for losses."""
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


def check_monitor(monitor, params, who):
    """Raise before training when ``monitor`` will not be in the epoch logs."""
    available = params.get("metrics", [])
    if monitor not in available:
        hint = ""
        if monitor.startswith("val_") and not params.get("do_validation"):
            hint = " (pass validation_data= or validation_split= to fit)"
        raise ValueError(f"{who}: monitor={monitor!r} is not computed by this fit{hint}; "
                         f"available: {available}")


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    Parameters
    ----------
    monitor : str, default "val_loss"
        A name of the epoch logs: "loss", "val_loss", "val_accuracy", ...
        ``fit`` raises ValueError before training if it will not be computed.
    min_delta : float, default 0
        An epoch improves only if it beats the best value by more than this.
    patience : int, default 0
        Epochs without improvement after which training stops.
    mode : {"auto", "min", "max"}, default "auto"
        Whether smaller or larger is better; "auto" takes larger for names
        containing "acc", smaller otherwise.
    restore_best_weights : bool, default False
        When training ends - stopped by this callback or not, also on
        Ctrl-C - set the weights back to those of the best epoch.
    verbose : int, default 0
        1 prints a line when it stops training or restores weights.

    Attributes
    ----------
    best : float
        Best value of the monitored quantity so far.
    best_epoch : int
        The (0-based) epoch of ``fit`` that reached it.
    stopped_epoch : int or None
        The epoch after which it stopped the training, None if it did not.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, verbose=0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a string, got {type(monitor).__name__}")
        self.monitor = monitor
        self.min_delta = _check_nonnegative(min_delta, "min_delta")
        self.patience = _check_nonnegative_int(patience, "patience")
        self.mode = mode
        self._sign = 1.0 if _check_mode(mode, monitor) == "min" else -1.0
        self.restore_best_weights = bool(restore_best_weights)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        check_monitor(self.monitor, self.params, "EarlyStopping")
        self.wait = 0
        self.best = np.inf * self._sign
        self.best_epoch = None
        self.best_weights = None
        self.stopped_epoch = None

    def _improves(self, value):
        # In "min" orientation: better means value < best - min_delta.
        return self._sign * value < self._sign * self.best - self.min_delta

    def on_epoch_end(self, epoch, logs=None):
        value = float(logs[self.monitor])
        self.wait += 1
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = [(l.W.copy(), None if l.b is None else l.b.copy())
                                     for l in self.model.layers]
            return
        # This epoch did not improve, so wait >= 1: patience 0 and 1 both stop
        # at the first epoch without improvement (as in Keras).
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.verbose:
                print(f"EarlyStopping: {self.monitor} has not improved for {self.wait} "
                      f"epochs (best {self.best:.6g} in epoch {self.best_epoch + 1}); "
                      f"stopping after epoch {epoch + 1}", flush=True)

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            for layer, (W, b) in zip(self.model.layers, self.best_weights):
                layer.W[...] = W
                if b is not None:
                    layer.b[...] = b
            if self.verbose:
                print(f"EarlyStopping: restored the weights of epoch {self.best_epoch + 1} "
                      f"({self.monitor}={self.best:.6g})", flush=True)


def _check_nonnegative(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_nonnegative_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value}")
    return int(value)


def check_callbacks(callbacks):
    """``callbacks`` as a list of Callback instances."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    try:
        callbacks = list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of fastnn Callback objects, got "
                        f"{type(callbacks).__name__}") from None
    for i, cb in enumerate(callbacks):
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks[{i}] must be a fastnn Callback (see "
                            f"fastnn.callbacks), got {type(cb).__name__}")
    return callbacks
