"""Network: an ordered list of Dense layers with a loss, trained by the engine."""
import sys
import time
from contextlib import contextmanager

import numpy as np
from threadpoolctl import ThreadpoolController

from . import _config, _engine, losses
from ._validation import (all_finite, check_array, check_dtype, check_positive_int,
                          check_real, check_targets)
from .layers import Dense
from .optimizers import SGD, Optimizer

_threadpools = None


@contextmanager
def _single_threaded_blas():
    """Keep BLAS at one thread while the engine runs its own threads."""
    global _threadpools
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    with _threadpools.limit(limits=1, user_api="blas"):
        yield


class History:
    """What ``fit`` records: ``history[name]`` is a list with one value per epoch."""

    def __init__(self):
        self.epoch = []
        self.history = {"loss": []}
        self.interrupted = False   # True when Ctrl-C stopped the training

    def append(self, epoch, **values):
        self.epoch.append(epoch)
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items() if v}
        return f"History(epochs={len(self.epoch)}, last={last})"


class Network:
    """A feed-forward network of Dense layers.

    Parameters
    ----------
    layers : list of Dense
        Consecutive layers must agree: ``layers[i].n_out == layers[i + 1].n_in``.
    loss : {"mse", "cross_entropy", "binary_cross_entropy"}
        cross_entropy needs a softmax output layer, binary_cross_entropy a
        sigmoid one.
    dtype : {"float32", "float64"}
        The dtype of every parameter and computation; it never changes.
    seed : int or None
        Seeds the weight initialisation and the shuffling of ``fit``.
    """

    def __init__(self, layers, loss="mse", dtype="float32", seed=None):
        layers = list(layers) if not isinstance(layers, Dense) else [layers]
        if not layers:
            raise ValueError("Network needs at least one Dense layer, got an empty list")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Dense):
                raise TypeError(f"layers[{i}] must be a Dense layer, got {type(layer).__name__}")
        for i in range(1, len(layers)):
            if layers[i].n_in != layers[i - 1].n_out:
                raise ValueError(
                    f"layer sizes do not match: layers[{i - 1}] has {layers[i - 1].n_out} "
                    f"outputs but layers[{i}] expects {layers[i].n_in} inputs")
        for i, layer in enumerate(layers[:-1]):
            if layer.activation == "softmax":
                raise ValueError(f"softmax is only supported on the output layer; "
                                 f"layers[{i}] of {len(layers)} uses it")
        if len(layers) > _engine.MAX_LAYERS:
            raise ValueError(f"at most {_engine.MAX_LAYERS} layers are supported, "
                             f"got {len(layers)}")
        self.loss = losses.canonical_name(loss)
        needed = losses.REQUIRED_OUTPUT.get(self.loss)
        if needed is not None and layers[-1].activation != needed:
            raise ValueError(f"loss {self.loss!r} needs a {needed} output layer, but the "
                             f"last layer's activation is {layers[-1].activation!r}")
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.layers = layers
        for layer in layers:
            layer.build(self.dtype, self._rng)

    # -- shapes and parameters ---------------------------------------------
    @property
    def n_inputs(self):
        return self.layers[0].n_in

    @property
    def n_outputs(self):
        return self.layers[-1].n_out

    def _params(self):
        """Weights and biases as C-contiguous arrays of the network's dtype."""
        for i, layer in enumerate(self.layers):
            for name, arr in (("W", layer.W), ("b", layer.b)):
                if arr is not None and (arr.dtype != self.dtype or not arr.flags.c_contiguous
                                        or not arr.flags.writeable):
                    raise ValueError(f"layers[{i}].{name} must stay a writable C-contiguous "
                                     f"{self.dtype} array; got {arr.dtype} (assign to "
                                     f"layer.{name} to convert)")
        return ([l.W for l in self.layers], [l.b for l in self.layers],
                [l.activation_code for l in self.layers])

    def _check_X(self, X, name="X"):
        return check_array(X, name, self.dtype, n_features=self.n_inputs)

    def _check_y(self, y, n_samples):
        return check_targets(y, self.loss, n_samples, self.n_outputs, self.dtype)

    # -- inference ---------------------------------------------------------
    def forward(self, X, n_threads=None):
        """Every layer's output for X: a list of (n_samples, n_out) arrays."""
        X = self._check_X(X)
        outputs = [np.empty((X.shape[0], l.n_out), self.dtype) for l in self.layers]
        self._run_forward(X, outputs, n_threads)
        return outputs

    def predict(self, X, n_threads=None):
        """The network's output for X, shape (n_samples, n_outputs)."""
        X = self._check_X(X)
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        self._run_forward(X, [None] * (len(self.layers) - 1) + [out], n_threads)
        return out

    def predict_proba(self, X, n_threads=None):
        """Class probabilities: the output of a softmax or sigmoid network."""
        if self.layers[-1].activation not in ("softmax", "sigmoid"):
            raise ValueError("predict_proba needs a softmax or sigmoid output layer; this "
                             f"network's output is {self.layers[-1].activation!r}")
        return self.predict(X, n_threads)

    def _run_forward(self, X, outputs, n_threads):
        W, b, acts = self._params()
        n_threads = _config.get_num_threads(n_threads)
        with _single_threaded_blas():
            _engine.forward(W, b, acts, X, outputs, n_threads, _config.kernel_code())

    def evaluate(self, X, y, n_threads=None):
        """{"loss": ..., "accuracy": ...} on (X, y); accuracy for classification losses."""
        X = self._check_X(X)
        T = self._check_y(y, X.shape[0])
        out = self.predict(X, n_threads).astype(np.float64)
        result = {"loss": _loss_value(self.loss, out, T.astype(np.float64))}
        if self.loss == "cross_entropy":
            result["accuracy"] = float(np.mean(out.argmax(1) == T.argmax(1)))
        elif self.loss == "binary_cross_entropy":
            result["accuracy"] = float(np.mean((out >= 0.5) == (T >= 0.5)))
        return result

    # -- training ----------------------------------------------------------
    def _trainer(self, batch_size, n_threads, optimizer, keep_gradients=False):
        W, b, acts = self._params()
        if optimizer is None:
            code, state = "none", [None, None]
        else:
            code, state = optimizer.code, optimizer.state_for(self.layers)
        return _engine.Trainer(W, b, acts, _engine.LOSS_CODES[self.loss], batch_size,
                               n_threads, _config.kernel_code(),
                               _engine.OPTIMIZER_CODES[code], state[0], state[1],
                               keep_gradients)

    def gradients(self, X, y, n_threads=None):
        """Gradient of the batch-mean loss over all of (X, y).

        Returns a list of ``(dW, db)`` per layer (db is None without bias);
        the weights are not changed.
        """
        X = self._check_X(X)
        T = self._check_y(y, X.shape[0])
        trainer = self._trainer(X.shape[0], _config.get_num_threads(n_threads), None,
                                keep_gradients=True)
        with _single_threaded_blas():
            trainer.run_epoch(X, T, None)
        return list(zip(trainer.grad_W, trainer.grad_b))

    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, optimizer=None,
            validation_data=None, verbose=0, n_threads=None, target_loss=None):
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array (n_samples, n_features)
        y : targets; integer labels or one-hot rows for cross_entropy,
            (n_samples, n_outputs) values otherwise.
        epochs, batch_size : int
        shuffle : bool
            Visit the samples in a new random order each epoch (seeded).
        optimizer : Optimizer, default SGD(lr=0.01)
            Its state persists across calls to ``fit``.
        validation_data : (X_val, y_val), optional
        verbose : 0 silent, 1 or 2 one line per epoch
        n_threads : int, optional
        target_loss : float, optional
            Stop once the training loss of an epoch is at or below this.

        Returns
        -------
        History
        """
        X = self._check_X(X)
        T = self._check_y(y, X.shape[0])
        epochs = check_positive_int(epochs, "epochs")
        batch_size = min(check_positive_int(batch_size, "batch_size"), X.shape[0])
        if optimizer is None:
            optimizer = SGD(lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn optimizer such as fastnn.SGD(lr=0.01), "
                            f"got {type(optimizer).__name__}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (X_val, y_val)")
            X_val = self._check_X(validation_data[0], "X_val")
            T_val = self._check_y(validation_data[1], X_val.shape[0])
        if target_loss is not None:
            target_loss = check_real(target_loss, "target_loss")
        n_threads = _config.get_num_threads(n_threads)
        trainer = self._trainer(batch_size, n_threads, optimizer)
        history = History()
        with _single_threaded_blas():
            for epoch in range(epochs):
                perm = self._rng.permutation(X.shape[0]) if shuffle else None
                trainer.set_optimizer(step=optimizer.step, **optimizer.engine_args())
                snapshot = self._snapshot(optimizer)
                t0 = time.perf_counter()
                loss_sum, n_done, status = trainer.run_epoch(X, T, perm)
                seconds = time.perf_counter() - t0
                n_batches = -(-n_done // batch_size)
                optimizer.step += n_batches
                # The engine checks each batch's loss.  The weights (and the
                # optimizer state) are checked here once per epoch: an update can
                # overflow them while the loss it came from was finite (the last
                # batch of an epoch, or a relu that turns -inf or NaN into 0).
                if status == "not_finite":
                    what = (f"the loss became NaN or infinite in epoch {epoch + 1}, "
                            f"batch {n_batches}")
                elif not all(all_finite(live) for live, _ in snapshot[0]):
                    what = (f"the weights became NaN or infinite in epoch {epoch + 1} (found "
                            f"after its batch {n_batches}, while the loss was still finite)")
                else:
                    what = None
                if what is not None:
                    self._restore(snapshot, optimizer)
                    raise FloatingPointError(
                        f"training diverged: {what}; the weights were restored to their "
                        f"values at the start of that epoch. Try a smaller learning "
                        f"rate (lr={getattr(optimizer, 'lr', '?')}) or scaled inputs.")
                if status == "interrupted":
                    # The model stays as of the last finished batch, usable and savable.
                    history.interrupted = True
                    print(f"fastnn: training interrupted in epoch {epoch + 1} after "
                          f"{n_batches} batches; the model keeps the weights of the last "
                          f"finished batch", file=sys.stderr, flush=True)
                    break
                values = {"loss": loss_sum / X.shape[0]}
                if validation_data is not None:
                    for name, value in self.evaluate(X_val, T_val, n_threads).items():
                        values["val_" + name] = value
                history.append(epoch, **values)
                if verbose:
                    shown = "  ".join(f"{k}={v:.4f}" for k, v in values.items())
                    print(f"epoch {epoch + 1}/{epochs}  {shown}  {seconds:.2f}s  "
                          f"{X.shape[0] / seconds:,.0f} samples/s", file=sys.stdout, flush=True)
                if target_loss is not None and values["loss"] <= target_loss:
                    break
        return history

    def _snapshot(self, optimizer):
        """Copies of the parameters and optimizer state, to undo a diverged epoch."""
        arrays = [a for l in self.layers for a in (l.W, l.b) if a is not None]
        if optimizer._state is not None:
            arrays += [a for buf in optimizer._state for pair in buf for a in pair
                       if a is not None]
        return [(a, a.copy()) for a in arrays], optimizer.step

    @staticmethod
    def _restore(snapshot, optimizer):
        pairs, optimizer.step = snapshot
        for live, saved in pairs:
            live[...] = saved   # in place: the engine and the user hold these arrays

    # -- persistence -------------------------------------------------------
    def save(self, path):
        """Write architecture, loss, dtype and weights to one portable file."""
        from .io import save
        save(self, path)

    def get_config(self):
        return {"loss": self.loss, "dtype": self.dtype.name,
                "layers": [l.get_config() for l in self.layers]}

    def __repr__(self):
        body = ",\n ".join(repr(l) for l in self.layers)
        return f"Network([\n {body}],\n loss={self.loss!r}, dtype={self.dtype.name!r})"


def _loss_value(loss, out, T):
    """Batch-mean loss from outputs (used by evaluate; training fuses it in the engine)."""
    tiny = np.finfo(np.float64).tiny
    if loss == "cross_entropy":
        return float(-np.sum(T * np.log(np.maximum(out, tiny))) / len(out))
    if loss == "binary_cross_entropy":
        o = np.clip(out, 1e-15, 1 - 1e-15)
        return float(-np.sum(T * np.log(o) + (1 - T) * np.log(1 - o)) / len(out))
    return float(0.5 * np.sum((out - T) ** 2) / len(out))
