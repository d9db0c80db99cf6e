"""Network: an ordered list of Dense layers with a loss, trained by the engine."""
import functools
import numbers
from contextlib import nullcontext

import numpy as np
from threadpoolctl import ThreadpoolController

from . import _chunks, _config, _engine, activations, losses, metrics as metrics_
from ._validation import (check_array, check_dtype, check_finite,
                          check_positive_float, check_positive_int, check_real, check_targets,
                          plan_finite_check, raise_not_finite)
from ._weighting import check_sample_weight, class_weight_to_sample_weight
from ._guard import UseGuard, exclusive_use, shared_use
from ._fit_loop import _BadInput, _FitLoop, engine_order
from .callbacks import check_callbacks
from .layers import Dense
from .optimizers import SGD, Optimizer
from .progress import UPDATES, ProgressPrinter
from .schedules import LRSchedule, as_schedule

_threadpools = None


_NO_CONTEXT = nullcontext()


def _single_threaded_blas(kernel=None):
    """Keep BLAS at one thread while the engine runs its own threads on the
    "blas" kernel, whose every tile is a BLAS call.  fastnn's own kernels make
    no BLAS call: BLAS's limits are then left alone (threadpoolctl's limits
    are process-wide, and changing and restoring them here would undo a
    ``threadpool_limits`` that another thread set meanwhile), and the context
    costs nothing (a one-row predict is a few microseconds)."""
    global _threadpools
    if (kernel or _config.get_kernel()) != "blas":
        return _NO_CONTEXT
    if _threadpools is None:
        _threadpools = ThreadpoolController()
    return _threadpools.limit(limits=1, user_api="blas")


class Network:
    """A feed-forward network of Dense layers.

    One network may be used from several threads: ``predict``, ``evaluate``,
    ``forward``, ``gradients`` and ``save`` run side by side, while ``fit``
    runs alone - called from another thread during a fit, any of them (and a
    second ``fit``) raises RuntimeError; callbacks of the fit may call them
    all but ``fit``.

    Parameters
    ----------
    layers : list of Dense
        Consecutive layers must agree: ``layers[i].n_out == layers[i + 1].n_in``.
    loss : {"mse", "cross_entropy", "binary_cross_entropy", "poisson", "fann_tanh"}
        cross_entropy needs a softmax output layer, binary_cross_entropy a
        sigmoid one, poisson a linear one (log link: the layer computes z and
        ``predict`` returns the mean prediction exp(z); y must be >= 0).
        fann_tanh is FANN's default "tanh" error function (any output but
        softmax makes sense; for FANN's configuration a sigmoid one).
        See ``fastnn.losses``.
    dtype : {"float32", "float64"}
        The dtype of every parameter and computation; it never changes.
    seed : int or None
        Seeds the weight initialisation and the shuffling of ``fit``.
    """

    # Private, for scikit-learn-style training: fit divides l2 and l1 by each
    # batch's number of rows (or sum of sample weights), which makes ``l2``
    # scikit-learn's ``alpha`` (see ``_engine.Trainer``).
    _penalty_per_weight_sum = False

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
        if layers[-1].dropout:
            raise ValueError(f"dropout is not allowed on the output layer; "
                             f"layers[{len(layers) - 1}] has dropout={layers[-1].dropout}")
        if len(layers) > _engine.MAX_LAYERS:
            raise ValueError(f"at most {_engine.MAX_LAYERS} layers are supported, "
                             f"got {len(layers)}")
        self.loss = losses.canonical_name(loss)
        needed = self.loss_function.output
        if needed is not None and layers[-1].activation != needed:
            raise ValueError(f"loss {self.loss!r} needs a {needed} output layer, but the "
                             f"last layer's activation is {layers[-1].activation!r}")
        self.dtype = check_dtype(dtype)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self.layers = layers
        for layer in layers:
            layer.build(self.dtype, self._rng)
        self._noise_key = None      # see _training_noise_key
        self._epochs_trained = 0    # keys each epoch's training noise
        self.optimizer = None        # the optimizer of the last fit, saved with the model
        self.stop_training = False   # set by a callback to end fit
        self._guard = UseGuard()     # fit runs alone; see _guard

    # -- shapes and parameters ---------------------------------------------
    @property
    def loss_function(self):
        """The ``fastnn.losses.Loss`` object of ``loss`` (looked up again only
        when ``loss`` changes: predict asks for it on every call)."""
        cached = self.__dict__.get("_loss_function")
        if cached is None or cached[0] != self.loss:
            cached = (self.loss, losses.get(self.loss))
            self._loss_function = cached
        return cached[1]

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
                    got = (f"{arr.dtype}" + ("" if arr.flags.c_contiguous else ", not C-contiguous")
                           + ("" if arr.flags.writeable else ", read-only"))
                    raise ValueError(f"layers[{i}].{name} must stay a writable C-contiguous "
                                     f"{self.dtype} array, got {got}; set new values with "
                                     f"layer.{name} = values (copied into the layer's array, "
                                     f"converted to {self.dtype})")
        return self._engine_layers()

    def _engine_layers(self):
        """The engine's per-layer lists: weights, biases, activation codes."""
        W, b, acts = [], [], []
        for layer in self.layers:
            W.append(layer.W)
            b.append(layer.b)
            acts.append(layer.activation_code)
        return W, b, acts

    def _check_X(self, X, name="X", finite=True):
        return check_array(X, name, self.dtype, n_features=self.n_inputs, finite=finite)

    def _check_y(self, y, n_samples):
        return check_targets(y, self.loss_function, n_samples, self.n_outputs, self.dtype)

    # -- inference ---------------------------------------------------------
    @shared_use
    def forward(self, X, n_threads=None):
        """Every layer's output for X: a list of (n_samples, n_out) arrays."""
        X_given, X = X, self._check_X(X, finite=False)
        outputs = [np.empty((X.shape[0], l.n_out), self.dtype) for l in self.layers]
        self._run_forward(X, X_given, outputs, n_threads)
        return outputs

    def predict(self, X, n_threads=None):
        """The network's prediction for X, shape (n_samples, n_outputs): the output
        layer's values, or for loss="poisson" the mean exp(z) of its values z."""
        # A few ready rows: one C call (_engine_serve.pxi).  They are one chunk,
        # which runs on one thread whatever a valid n_threads says.
        if n_threads is None or (type(n_threads) is int and n_threads > 0):
            few_rows = self.__dict__.get("_few_rows") or self._make_few_rows()
            out = few_rows(X, _config.kernel_code())
            if out is not None:
                return self.loss_function.predict(out)
        return self._predict_any(X, n_threads)

    @functools.partial(shared_use, name="predict")
    def _predict_any(self, X, n_threads):
        return self.loss_function.predict(self._predict(X, self._check_X(X, finite=False),
                                                        n_threads))

    def _make_few_rows(self):
        self._few_rows = _engine.FewRowsPredictor(self.layers, self._guard, self.dtype)
        return self._few_rows

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_few_rows", None)   # a C object over this network's arrays: made on use
        return state

    def _predict(self, X_given, X, n_threads):
        """predict for X = check_array(X_given, finite=False)."""
        out = np.empty((X.shape[0], self.n_outputs), self.dtype)
        self._run_forward(X, X_given, [None] * (len(self.layers) - 1) + [out], n_threads)
        return out

    @shared_use
    def predict_proba(self, X, n_threads=None):
        """Class probabilities: the output of a softmax or sigmoid network."""
        if self.layers[-1].activation not in ("softmax", "sigmoid"):
            raise ValueError("predict_proba needs a softmax or sigmoid output layer; this "
                             f"network's output is {self.layers[-1].activation!r}")
        return self.predict(X, n_threads)

    def _run_forward(self, X, X_given, outputs, n_threads):
        """Fill ``outputs``; the engine checks X (``X_given`` converted, see
        check_array) for NaN and infinity as it reads each chunk of rows,
        which costs nothing next to a separate pass (about 8% of a predict).
        The layers' arrays need no check here: each layer owns them (an
        assignment copies into them), and inference only reads them."""
        W, b, acts = self._engine_layers()
        n_threads = _config.get_num_threads(n_threads)
        kernel = _config.get_kernel()
        with _single_threaded_blas(kernel):
            finite = _engine.forward(W, b, acts, X, outputs, n_threads, _engine.KERNELS[kernel],
                                     check_inputs=True)
        if not finite:
            raise_not_finite(X, X_given, "X")

    @shared_use
    def evaluate(self, X, y, n_threads=None, metrics=None):
        """{"loss": ..., "accuracy": ...} on (X, y); accuracy for classification losses.

        The loss is the mean of the loss's per-sample values (computed in
        float64 from the output layer's values).  ``metrics`` (names or
        ``fastnn.metrics`` objects, e.g. ``["bit_fail"]`` or
        ``[fastnn.metrics.BitFail(limit=0.2)]``) adds one entry per metric,
        under its name."""
        loss = self.loss_function
        metrics = metrics_.get_list(metrics, loss)
        X_given, X = X, self._check_X(X, finite=False)
        T = self._check_y(y, X.shape[0])
        out = self._predict(X_given, X, n_threads).astype(np.float64)
        T = T.astype(np.float64)
        act = self.layers[-1].activation
        result = {"loss": loss.mean_loss(out, T, act)}
        if loss.metric == "accuracy":
            metrics = [metrics_.get("accuracy")] + [m for m in metrics if m.name != "accuracy"]
        for metric in metrics:
            result[metric.name] = metric(loss, act, out, T)
        return result

    # -- training ----------------------------------------------------------
    def _training_noise_key(self):
        """64-bit key of the dropout masks (and input noise): from the seed when
        it is an integer, else drawn once from the network's generator."""
        if self._noise_key is None:
            if isinstance(self.seed, numbers.Integral) and not isinstance(self.seed, bool):
                # a child of the seed's sequence: independent of the shuffling stream
                seq = np.random.SeedSequence(int(self.seed), spawn_key=(0xD20,))
                self._noise_key = int(seq.generate_state(1, np.uint64)[0])
            else:
                self._noise_key = int(self._rng.integers(0, 2 ** 63))
        return self._noise_key

    def _trainer(self, batch_size, n_threads, optimizer, keep_gradients=False,
                 sample_weight=None, l2=0.0, l1=0.0, penalty_per_weight_sum=False,
                 input_noise=0.0, step=None):
        """The engine's Trainer; ``step`` (a data-parallel fit's
        ``distributed.StepBuffer``): this rank's training noise, and (unless
        it averages weights every k > 1 steps) gradients only, as sums into
        its buffer, for ``distributed``'s update."""
        W, b, acts = self._params()
        grad_buffer = None
        if optimizer is None:     # gradients(): the network as it predicts, no noise
            code, state, dropout, key = "none", [None, None], None, 0
        else:
            code, state = optimizer.code, optimizer.state_for(self.layers)
            dropout = [l.dropout for l in self.layers]
            key = self._training_noise_key() if any(dropout) or input_noise else 0
            if step is not None:
                from .distributed import rank_noise_key
                key = rank_noise_key(key, step.rank)
                if step.average_every == 1:
                    code, state = "none", [None, None]
                    keep_gradients, grad_buffer = True, step.buffer
        trainer = _engine.Trainer(W, b, acts, self.loss_function.code, batch_size,
                                  n_threads, _config.kernel_code(),
                                  _engine.OPTIMIZER_CODES[code], state[0], state[1],
                                  keep_gradients, dropout, key, grad_buffer)
        trainer.set_sample_weight(sample_weight)
        trainer.set_penalty(l2, l1, penalty_per_weight_sum)
        trainer.set_input_noise(input_noise)
        return trainer

    @shared_use
    def gradients(self, X, y, n_threads=None, sample_weight=None):
        """Gradient of the batch-mean loss over all of (X, y).

        With ``sample_weight``, of the weighted mean ``sum(w_i * loss_i) /
        sum(w_i)`` (see ``fit``).  Returns a list of ``(dW, db)`` per layer (db
        is None without bias); the weights are not changed.
        """
        return self._loss_and_gradients(X, y, n_threads, sample_weight)()[1]

    def _loss_and_gradients(self, X, y, n_threads=None, sample_weight=None,
                            X_is_finite=False):
        """For ``gradients``, and for optimizers outside fastnn (the estimators'
        L-BFGS): checks (X, y) once and returns a function of no argument
        that gives ``(mean loss, [(dW, db), ...])`` at the current weights.
        It reuses one engine workspace: the arrays of a call are overwritten
        by the next.  ``X_is_finite``: see ``_fit``."""
        X = self._check_X(X, finite=not X_is_finite)
        T = self._check_y(y, X.shape[0])
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, T.shape[0])
        with _single_threaded_blas():
            trainer = self._trainer(X.shape[0], _config.get_num_threads(n_threads), None,
                                    keep_gradients=True, sample_weight=sample_weight)

        @shared_use
        def gradients(self):
            with _single_threaded_blas():
                loss_sum, n_done, _, _ = trainer.run_epoch(X, T, None)
            return loss_sum / n_done, list(zip(trainer.grad_W, trainer.grad_b))
        return lambda: gradients(self)

    def fit(self, X, y=None, epochs=1, batch_size=32, shuffle=True, optimizer=None,
            validation_data=None, verbose=0, n_threads=None, target_loss=None, *,
            validation_split=None, callbacks=None, lr_schedule=None, metrics=None,
            sample_weight=None, class_weight=None, l2=0.0, l1=0.0, input_noise=0.0,
            max_time=None, comm=None, average_every=1):
        """Train with minibatch gradient descent.

        Parameters
        ----------
        X : array (n_samples, n_features), or an iterable of (X, y) chunks
            An array is used without a copy when it is C-contiguous and of
            the network's dtype, also a memory-mapped one
            (``np.load(path, mmap_mode="r")``; see ``shuffle="blocks"``).
            For data that NumPy cannot map, leave out ``y`` and give chunks:
            a sequence of ``(X, y)`` or ``(X, y, sample_weight)`` tuples (a
            list, a Keras-like ``PyDataset``), a function returning an
            iterable of them (a generator function), or an iterable read
            afresh each epoch; one chunk is in memory at a time, batches
            never span two chunks.  Not with ``comm``, ``validation_split``,
            ``sample_weight``, ``class_weight`` or a full-batch optimizer.
            See ``fastnn._chunks``.
        y : targets; integer labels or one-hot rows for cross_entropy,
            (n_samples, n_outputs) values otherwise.  None for chunks.
        epochs, batch_size : int
            A full-batch optimizer (RProp) always uses batch_size = n_samples.
        shuffle : bool or "blocks"
            Visit the samples in a new random order each epoch (seeded).
            When one batch holds every sample (``batch_size`` at least the
            number of samples, or a full-batch optimizer), the samples are
            visited in X's order and no order is drawn: an epoch's one step
            depends on the order only through rounding, and on a tiny
            network the draw and the copy of X cost more than the rest of
            the epoch.  The network's generator then advances only for what
            else draws from it (dropout and input noise never do: they are
            keyed on the seed, the epoch and the sample).
            "blocks": for X on disk (``np.load(path, mmap_mode="r")``),
            shuffle the order of blocks of consecutive rows (8 MiB of X
            each, at least ``batch_size`` rows), then the rows inside each
            block, so that X is read mostly sequentially.
        optimizer : Optimizer, optional
            SGD, Adam, AdamW, RMSprop or RProp.  Default: the optimizer of
            this network's last ``fit`` (also after ``fastnn.load``), else
            ``SGD(lr=0.01)``.  Its state (momenta, step count) persists across
            calls to ``fit``; the network keeps it as ``net.optimizer``.
        validation_data : (X_val, y_val), optional
            Evaluated after each epoch: ``val_loss`` (and ``val_accuracy``
            for classification) in the History.
        verbose : {0, 1, 2}
            0 silent; 1 a progress line redrawn in place on a terminal (one
            line per epoch otherwise); 2 one line per epoch.
        n_threads : int, optional
        target_loss : float, optional
            Stop once the training loss of an epoch is at or below this.
        max_time : float > 0, optional
            Stop once this many seconds of wall-clock time have passed since
            training began (as FANN's benchmark trains for a time budget):
            checked after each epoch, which always finishes (its validation
            and callbacks included), so the fit may run over by up to one
            epoch; ``History.stop_reason`` is then "max_time".  ``epochs``
            still bounds the number of epochs (pass a large one).
        validation_split : float in (0, 1), optional
            Hold out the *last* fraction of the rows of (X, y) - taken before
            any shuffling, as Keras does, and without copying X - as
            validation data.  Shuffle the rows first if they are ordered.
            Not together with ``validation_data``.
        callbacks : list of fastnn.callbacks.Callback, optional
            Run at the start and end of training, of each epoch and (for
            callbacks with ``wants_batches``) of each minibatch.  A callback
            stops training by setting ``model.stop_training = True``.
        lr_schedule : fastnn.schedules.LRSchedule or callable, optional
            Sets the optimizer's ``lr`` between epochs, e.g.
            ``fastnn.CosineAnnealing(epochs)``; a function ``epoch -> lr``
            is also accepted.  At most one schedule per fit (this one or
            one in ``callbacks``).
        metrics : list of str or fastnn.metrics.Metric, optional
            Also record these metrics of each epoch on the training data
            (costs one forward pass over X per epoch, about a third of an
            epoch's time), and with validation data on it (``"val_"`` and the
            name): ``"accuracy"`` (classification only), ``"bit_fail"``
            (FANN's bit-fail count; ``fastnn.metrics.BitFail(limit=...)``
            sets its limit).  See ``fastnn.metrics``.
        sample_weight : array (n_samples,), optional
            Non-negative weight of each sample.  Each batch minimises its
            weighted mean loss ``sum(w_i * loss_i) / sum(w_i)`` (its gradient
            is normalised by the batch's weight sum), as scikit-learn's MLP.
        class_weight : dict {label: weight} or "balanced", optional
            cross_entropy and binary_cross_entropy only: multiplies each
            sample's weight by its class's weight (labels missing from the
            dict weigh 1); "balanced" is scikit-learn's
            ``n_samples / (n_classes * np.bincount(y))`` (weighted by
            ``sample_weight`` when given).
        l2, l1 : float >= 0, default 0
            Penalty on the weights (not the biases), as PyTorch's
            ``weight_decay``: each batch's gradient gets ``l2 * W + l1 *
            sign(W)`` and its loss ``l2 / 2 * sum(W**2) + l1 * sum(|W|)``
            (included in the reported loss).  Works with every optimizer.
        input_noise : float >= 0, default 0
            Data augmentation: Gaussian noise of this standard deviation is
            added to every training input, freshly drawn each epoch (from the
            network's seed, the epoch, the sample and the feature, so it does
            not depend on threads or batches).  X itself is never modified.
        comm : mpi4py communicator, optional
            Data-parallel training over MPI (``comm=MPI.COMM_WORLD`` under
            ``mpiexec -n N``; needs ``pip install 'fastnn[mpi]'``).  Every
            rank calls ``fit`` with the same network and arguments and its
            own rows (X, y, sample_weight; shards of any sizes, at least one
            row each) and, if any, its own validation rows.  Rank 0's
            weights, optimizer state and generator are broadcast first; step
            k then averages the gradient over the union of every rank's k-th
            local batch of ``batch_size`` rows (weighted by rows or sample
            weights), exactly as one process training on that union batch,
            and every rank ends each step with bit-identical weights.  The
            loss, metrics and validation results are reduced over the ranks
            (every rank gets the same History; progress lines come from rank
            0 only); a callback's stop on any rank stops all.  An exception
            on one rank ends the whole job (``comm.Abort``) after reporting
            it; Ctrl-C stops every rank after the step in progress.  See
            docs/several-machines.md.
        average_every : int >= 1, default 1
            With ``comm``: 1 averages the gradients at every step (the
            above).  k > 1 is local SGD: each rank takes k ordinary steps on
            its own batches, then every rank's weights and optimizer state
            are replaced by their average over the ranks (weighted by the
            rows each trained since the last average; also at each epoch's
            end): one exchange per k steps instead of one per step, but the
            steps no longer equal one process's.  Batch callbacks then see
            one batch per k steps.  Without ``comm``, ignored.

        Returns
        -------
        History

        Notes
        -----
        Ctrl-C stops training after the last finished minibatch and
        ``fit`` returns normally, with ``History.interrupted`` set; the
        model and ``net.optimizer`` are consistent and can be saved.

        Any other exception that escapes ``fit`` - raised by a callback, an
        ``lr_schedule``, the validation, or a signal handler (``sys.exit`` in
        a SIGTERM handler, say; the engine stops after the batch in
        progress) - leaves the network as at the last finished minibatch,
        exactly as if training had been stopped there: weights, optimizer
        state and step count, and the epoch count and shuffling generator
        (an epoch in which no batch finished is not counted).  When no batch
        of this ``fit`` finished, that is the network as before the call,
        ``net.optimizer`` included.  A diverged epoch (FloatingPointError)
        is undone as a whole, so the network is as at the end of the epoch
        before.  The next ``fit`` then trains exactly as that of a network
        that never saw the failure.
        """
        return self._fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                         optimizer=optimizer, validation_data=validation_data, verbose=verbose,
                         n_threads=n_threads, target_loss=target_loss,
                         validation_split=validation_split, callbacks=callbacks,
                         lr_schedule=lr_schedule, metrics=metrics, sample_weight=sample_weight,
                         class_weight=class_weight, l2=l2, l1=l1, input_noise=input_noise,
                         max_time=max_time, comm=comm, average_every=average_every)

    @exclusive_use
    def _fit(self, X, y, epochs=1, batch_size=32, shuffle=True, optimizer=None,
             validation_data=None, verbose=0, n_threads=None, target_loss=None,
             validation_split=None, callbacks=None, lr_schedule=None, metrics=None,
             sample_weight=None, class_weight=None, l2=0.0, l1=0.0, input_noise=0.0,
             max_time=None, *, order=None, epoch_loss=None, on_not_finite="raise", X_is_finite=False,
             comm=None, average_every=1):
        """``fit``, with what scikit-learn's semantics need (the estimators' fit
        runs here too: one training loop, one guard, one step count):

        order : callable () -> int64 array or None, optional
            Called at each epoch's start for the order of the samples (None:
            X's own), instead of ``shuffle``'s draw from the network's seed.
        epoch_loss : callable (loss_sum, penalty_sum, n_done) -> float, optional
            The epoch's reported loss from the sum of the batches' mean losses
            once per row (penalty included) and its penalty part; default
            ``loss_sum / n_done``.
        on_not_finite : {"raise", "continue"}
            What a batch with a non-finite loss does: "raise" undoes the epoch
            and raises FloatingPointError; "continue" trains the epoch's
            other batches (and the weights are not checked), as
            scikit-learn's MLP with early stopping.
        X_is_finite : bool
            The caller has checked X for NaN and infinity (see
            ``_validation.plan_finite_check``).
        comm, average_every : see ``fit``; ``order`` then gives the order of
            this rank's rows.
        """
        from . import distributed
        comm = distributed.active(comm)
        if not (isinstance(average_every, numbers.Integral) and average_every >= 1):
            raise ValueError(f"average_every must be an integer >= 1, got {average_every!r}")
        with _NO_CONTEXT if comm is None else distributed.abort_on_error(comm):
            return self._fit_here(X, y, epochs, batch_size, shuffle, optimizer,
                                  validation_data, verbose, n_threads, target_loss,
                                  validation_split, callbacks, lr_schedule, metrics,
                                  sample_weight, class_weight, l2, l1, input_noise, max_time,
                                  order, epoch_loss, on_not_finite, X_is_finite, comm,
                                  int(average_every))

    def _fit_here(self, X, y, epochs, batch_size, shuffle, optimizer, validation_data,
                  verbose, n_threads, target_loss, validation_split, callbacks, lr_schedule,
                  metrics, sample_weight, class_weight, l2, l1, input_noise, max_time, order,
                  epoch_loss, on_not_finite, X_is_finite, comm, average_every=1):
        """``_fit`` once ``comm`` is resolved (None: one process)."""
        from . import distributed
        flat = [i for i, l in enumerate(self.layers)
                if l.activation in activations.NOT_DIFFERENTIABLE]
        if flat:
            raise ValueError(
                f"fit needs differentiable activations, but layers{flat} use "
                f"{self.layers[flat[0]].activation!r}, whose gradient is zero everywhere; "
                f"train with e.g. 'sigmoid' or 'tanh' and predict with step/sign, or use "
                f"fastnn.Perceptron for the perceptron learning rule")
        if isinstance(shuffle, str) and shuffle != "blocks":
            raise ValueError(f"shuffle must be True, False or 'blocks', got {shuffle!r}")
        epochs = check_positive_int(epochs, "epochs")
        chunks = None
        if _chunks.is_chunked(X, y):
            unsupported = [name for name, value in (
                ("comm", comm), ("validation_split", validation_split),
                ("sample_weight", sample_weight), ("class_weight", class_weight),
                ("order", order)) if value is not None]
            if unsupported:
                raise ValueError(f"fit on (X, y) chunks does not take {unsupported[0]} (give "
                                 f"each chunk's sample weights as (X, y, sample_weight))")
            chunks = _chunks.Chunks(X, self, shuffle, epochs, self._rng,
                                    metrics=bool(metrics))
            X, T = chunks.first()
            X_given, X_is_finite = X, True    # each chunk is checked as it is read
        else:
            X_given = X
            X = self._check_X(X, finite=False)   # NaN and infinity: see engine_checks_X below
            T = self._check_y(y, X.shape[0])
        check_positive_int(batch_size, "batch_size")
        verbose = _check_verbose(verbose)
        optimizer = self._resolve_optimizer(optimizer)
        if chunks is not None and optimizer.full_batch:
            raise ValueError(f"{type(optimizer).__name__} trains on the whole data set per "
                             f"step; it cannot train on (X, y) chunks")
        if validation_data is not None and validation_split is not None:
            raise ValueError("pass validation_data or validation_split, not both")
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, T.shape[0])
        l2 = check_positive_float(l2, "l2", allow_zero=True)
        l1 = check_positive_float(l1, "l1", allow_zero=True)
        input_noise = check_positive_float(input_noise, "input_noise", allow_zero=True)
        validation = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (X_val, y_val)")
            X_val = self._check_X(validation_data[0], "X_val")
            validation = (X_val, self._check_y(validation_data[1], X_val.shape[0]))
        elif validation_split is not None:
            X, T, X_val, T_val = _split_validation(X, T, validation_split)
            if sample_weight is not None:
                sample_weight = sample_weight[:X.shape[0]]
            validation = (X_val, T_val)
        if class_weight is not None:   # "balanced" counts the training rows only
            sample_weight = class_weight_to_sample_weight(class_weight, T, self.loss_function,
                                                          sample_weight)
        batch_size_given = batch_size
        if chunks is None:
            batch_size = min(batch_size, X.shape[0])
        if optimizer.full_batch:
            batch_size = X.shape[0]     # RProp: one step per epoch on the whole data set
        metrics = metrics_.get_list(metrics, self.loss_function)
        if target_loss is not None:
            target_loss = check_real(target_loss, "target_loss")
        if max_time is not None:
            max_time = check_positive_float(max_time, "max_time")
        callbacks = check_callbacks(callbacks)
        schedule = as_schedule(lr_schedule)
        if schedule is not None:
            callbacks = [schedule] + callbacks
        n_schedules = sum(isinstance(cb, LRSchedule) for cb in callbacks)
        if n_schedules > 1:
            raise ValueError(f"at most one learning-rate schedule per fit, got {n_schedules} "
                             f"(lr_schedule and callbacks together)")
        n_threads = _config.get_num_threads(n_threads)

        logged = ["loss"] + [m.name for m in metrics]
        if validation is not None:
            logged += ["val_loss"] + (["val_accuracy"] if self.loss_function.metric else [])
            logged += ["val_" + m.name for m in metrics if m.name != "accuracy"]
        if hasattr(optimizer, "lr"):
            logged.append("lr")
        n_batches = -(-X.shape[0] // batch_size)
        n_samples = X.shape[0]
        if chunks is not None:
            n_batches = n_samples = None    # not known before an epoch has read them
        if comm is not None:
            distributed.agree_config(comm, (
                repr(self), epochs, batch_size_given,
                str(shuffle), type(optimizer).__name__, optimizer.engine_args(),
                validation is not None, logged, sample_weight is not None, l2, l1,
                input_noise, target_loss, max_time, on_not_finite, average_every,
                [type(cb).__name__ for cb in callbacks]))
            n_samples = distributed.global_rows(comm, n_samples)
            n_batches = int(comm.allreduce(n_batches, op=distributed._mpi().MAX))
            if comm.Get_rank() != 0:
                verbose = 0    # progress lines from rank 0 only
        params = {"epochs": epochs, "batch_size": batch_size, "n_samples": n_samples,
                  "steps": n_batches, "verbose": verbose,
                  "do_validation": validation is not None, "metrics": logged}
        progress = ProgressPrinter(verbose, epochs, n_samples or 0)
        if chunks is not None:
            progress.live = False    # one line per epoch: the epoch's size is unknown
        # NaN and infinity in X (see plan_finite_check): the engine may check
        # the samples as it forms batches when a bad one can be undone without
        # a trace: nothing runs in between (no callbacks, no live progress line).
        X_given = np.asarray(X_given)   # no copy for an array (a list is converted again)
        engine_checks_X = plan_finite_check(
            X, X_given[:X.shape[0]], "X",
            engine_can_check=not callbacks and not progress.live and comm is None,
            known_finite=X_is_finite)
        if validation_split is not None:
            plan_finite_check(validation[0], X_given[X.shape[0]:], "X", engine_can_check=False,
                              known_finite=X_is_finite)
        if on_not_finite not in ("raise", "continue"):
            raise ValueError(f"on_not_finite must be 'raise' or 'continue', got "
                             f"{on_not_finite!r}")
        # The engine runs a whole epoch per call unless Python must see the
        # batches: one at a time for batch callbacks, chunks for a live line.
        if any(cb.wants_batches for cb in callbacks):
            batches_per_call = 1
        elif chunks is not None:
            batches_per_call = (1 << 40) // batch_size    # a whole chunk per call
        elif progress.live:
            batches_per_call = -(-n_batches // UPDATES)
        else:
            batches_per_call = n_batches

        previous_optimizer = self.optimizer
        undo = (previous_optimizer, optimizer._state is None, self._rng.bit_generator.state,
                self._epochs_trained)
        self.optimizer, self.stop_training = optimizer, False
        if comm is not None:
            distributed.broadcast_start(comm, self, optimizer)
        try:
            for cb in callbacks:
                cb.set_model(self)
                cb.set_params(params)
            for cb in callbacks:
                cb.on_train_begin({})
        except BaseException:
            self.optimizer = previous_optimizer
            raise
        step = (None if comm is None
                else distributed.StepBuffer(comm, self, optimizer, average_every))
        with _single_threaded_blas():
            trainer = self._trainer(batch_size, n_threads, optimizer,
                                    sample_weight=sample_weight, l2=l2, l1=l1,
                                    penalty_per_weight_sum=self._penalty_per_weight_sum,
                                    input_noise=input_noise,
                                    step=step)
            if order is None and comm is not None:
                order = distributed.shard_order(comm, self, X, batch_size, shuffle)
            elif order is None:
                # One batch of every row: its gradient does not depend on the
                # order (but for rounding), so none is drawn (see shuffle).
                whole = chunks is None and batch_size >= X.shape[0]
                order = _shuffler(self._rng, X, batch_size, False if whole else shuffle)
            if chunks is not None:
                loop = _chunks.make_fit_loop(chunks, (
                    self, trainer, optimizer, chunks, None, batch_size, lambda: None,
                    batches_per_call, callbacks, progress, validation, metrics, target_loss,
                    n_threads, False, epoch_loss, on_not_finite == "continue", max_time))
            elif comm is None:
                loop = _FitLoop(self, trainer, optimizer, X, T, batch_size, order,
                                batches_per_call, callbacks, progress, validation, metrics,
                                target_loss, n_threads, engine_checks_X, epoch_loss,
                                on_not_finite == "continue", max_time)
            else:
                loop = distributed.make_fit_loop(
                    comm, self, trainer, optimizer, X, T, batch_size, order, callbacks,
                    progress, validation, metrics, target_loss, n_threads, epoch_loss,
                    on_not_finite == "continue", max_time, sample_weight, l2, l1,
                    self._penalty_per_weight_sum, step)
            try:
                return loop.run(epochs)
            except _BadInput:
                self._undo_fit(optimizer, undo)
                check_finite(X, X_given[:X.shape[0]], "X")   # raises, naming the problem
                raise ValueError("X plus input_noise is not finite (X is, so input_noise "
                                 f"={input_noise} is too large for {self.dtype.name})") from None
            except BaseException:
                # See Notes: the loop left the network as at its last finished
                # batch; with none, that is the network before the call.
                loop._sync()
                if loop.batches_kept == 0:
                    self._undo_fit(optimizer, undo)
                raise

    def _undo_fit(self, optimizer, undo):
        """Back to the state before fit when no batch of it is kept (none
        finished, or the first epoch was undone: _FitLoop then restored the
        weights and the optimizer state of that epoch's start, fit's start)."""
        self.optimizer, fresh_optimizer, rng_state, self._epochs_trained = undo
        self._rng.bit_generator.state = rng_state
        if fresh_optimizer:
            optimizer._state = None

    def _resolve_optimizer(self, optimizer):
        if optimizer is None:
            return self.optimizer if self.optimizer is not None else SGD(lr=0.01)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastnn optimizer such as fastnn.SGD(lr=0.01), "
                            f"got {type(optimizer).__name__}")
        return optimizer

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
    @shared_use
    def save(self, path):
        """Write the model to one portable file (no pickle): architecture, loss,
        dtype, weights, and what resuming training needs - the optimizer of
        the last fit (``net.optimizer``: class, arguments, step count, state)
        and the state of the shuffling generator.  ``fastnn.load`` reads it;
        ``fit`` without an optimizer then continues exactly where it stopped
        (learning-rate schedules are not saved).

        The file replaces ``path`` only once complete and on disk; on Linux
        it has no name until then, so even a killed process leaves no
        temporary file (elsewhere a ``.fastnn-*.tmp`` is removed on any
        exception).  An OSError (a full disk...) names ``path``.  ``load``
        allocates about the file's size and never more than 4 times it,
        whatever the file declares (see ``fastnn.load``)."""
        from .io import save
        save(self, path)

    def get_config(self):
        return {"loss": self.loss, "dtype": self.dtype.name,
                "layers": [l.get_config() for l in self.layers]}

    def __repr__(self):
        body = ",\n ".join(repr(l) for l in self.layers)
        return f"Network([\n {body}],\n loss={self.loss!r}, dtype={self.dtype.name!r})"


def _check_verbose(verbose):
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    return int(verbose)


SHUFFLE_BLOCK_BYTES = 8 << 20   # shuffle="blocks": rows per block, in bytes of X


def _shuffler(rng, X, batch_size, shuffle):
    """The per-epoch order of the rows of X that ``shuffle`` asks for, drawn
    from ``rng``: a function of no argument (None: X's own order)."""
    n = X.shape[0]
    if not shuffle:
        return engine_order(lambda: None, None)
    if shuffle != "blocks":
        return engine_order(lambda: rng.permutation(n), rng)
    block = max(batch_size, SHUFFLE_BLOCK_BYTES // max(1, X.strides[0]))
    starts = np.arange(0, n, block)

    def blocks():
        # blocks in a random order, then the rows inside each block
        order = np.empty(n, np.int64)
        at = 0
        for start in starts[rng.permutation(len(starts))]:
            rows = start + rng.permutation(min(block, n - start))
            order[at:at + len(rows)] = rows
            at += len(rows)
        return order
    return blocks


def _split_validation(X, T, validation_split):
    """(X_train, T_train, X_val, T_val): the last fraction of the rows, as views."""
    fraction = check_positive_float(validation_split, "validation_split")
    if fraction >= 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}")
    n = X.shape[0]
    n_train = int(round(n * (1.0 - fraction)))
    if not 0 < n_train < n:
        raise ValueError(f"validation_split={validation_split} of {n} samples leaves "
                         f"{n_train} for training and {n - n_train} for validation; both "
                         f"need at least one")
    # Row slices of C-contiguous arrays stay C-contiguous: no copy of X.
    return X[:n_train], T[:n_train], X[n_train:], T[n_train:]
