# The Trainer: workspace and state of one fit (included by _engine.pyx).
#
# Built once per ``fit``: it allocates every buffer of the run and fills the
# ``Layer`` descriptors and the ``Ctx``; ``run_epoch`` then releases the GIL
# and runs a whole epoch (run_team, in _engine_threads.pxi), ``run_epochs`` many
# (run_epochs_loop, in _engine_epochs.pxi).

cdef class Trainer:
    """Workspace and state of one ``fit``; see the module docstring.

    Parameters
    ----------
    weights, biases : lists of C-contiguous arrays, updated in place
        (a bias may be None).
    activations : list of (code, param) per layer.
    loss : int, one of the LOSS_* codes.
    batch_size : int
    n_threads : int
    kernel : int, one of KERNELS' values.
    optimizer : int, one of the OPT_* codes.
    state1, state2 : lists of (W-shaped, b-shaped or None) optimizer buffers
        per layer, or None when the optimizer keeps no such state.
    keep_gradients : bool
        Keep gradient buffers (``grad_W``, ``grad_b``) even for plain SGD.
    grad_buffer : 1-D C-contiguous array of the weights' dtype, or None
        Optimizer "none" only (a data-parallel step): ``grad_W`` and
        ``grad_b`` are views of its start, in the order W0, b0, W1, b1, ...
        (its remaining entries are the caller's), and they receive the
        gradients as *sums* over the batch's rows (times the sample
        weights), not means: the ranks' buffers then add up in one allreduce.
    dropout : list of float in [0, 1) per layer, or None
        Inverted dropout on each layer's output while training: a unit is
        kept with probability 1 - rate and then scaled by 1 / (1 - rate).
        Its mask is a hash of (seed, epoch, layer, sample index, unit).
    seed : int in [0, 2**64)
        Key of the training noise; the epoch comes from ``set_epoch``.

    Settings that may change between epochs (all default to off):

    - ``set_optimizer(hyper, step)``: the update rule's hyper-parameters
      (``Optimizer.engine_args()``) and the count of past steps.
    - ``set_penalty(l2, l1, per_weight_sum=False)``: weight penalty (weights
      only, never biases).  The gradient of a batch gets ``l2 * W + l1 *
      sign(W)`` and its loss ``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` (of the
      weights before the batch's update), as PyTorch's ``weight_decay``.
      With ``per_weight_sum=True`` both coefficients are divided by the
      batch's number of rows, or its sum of sample weights: that is
      scikit-learn's MLP ``alpha`` (pass ``l2=alpha``), whose gradient is
      ``(X.T @ deltas + alpha * W) / s`` and whose loss adds
      ``0.5 * alpha * sum(W**2) / s``.  A batch whose weights sum to zero
      gets neither data gradient nor penalty in that form.
    - ``set_sample_weight(w)``: a float64 (n_rows of X,) array, or None.  A
      batch's loss is its weighted mean ``sum(w_i * loss_i) / sum(w_i)``
      and its deltas are the output deltas times ``w_i / sum(w_i)``
      (scikit-learn's MLP); the epoch's ``loss_sum`` adds each batch's
      weighted mean loss once per row of the batch (scikit-learn's
      ``accumulated_loss``), so without weights it is the plain sum.

    - ``set_input_noise(std)``: Gaussian noise N(0, std^2) added to each
      training input, drawn like the dropout masks (stream 0); the batch is
      then always gathered into the workspace, never written into X.
    - ``set_epoch(epoch)``: the epoch index keying the training noise (the
      same epoch and sample give the same mask, however the epoch is split
      into calls of ``run_epoch``).

    ``penalty_sum`` is the penalty part of the last ``run_epoch``'s loss_sum
    (again counted once per row of each batch).  ``layer_outputs`` holds,
    per layer, the (batch_size, n_out) buffers (A, what the next layer
    reads) of the last batch, and ``batch_inputs`` the gathered (or noisy)
    inputs of the last batch when it needed them, for tests.
    """
    cdef Ctx ctx
    cdef Hyper hyper
    cdef Layer *layers
    cdef char **work
    cdef list keep
    cdef object dtype
    cdef int n_threads
    cdef object sample_weight
    cdef public object grad_W, grad_b, grad_buffer
    cdef public list layer_outputs
    cdef public object batch_inputs
    cdef public Py_ssize_t epochs_begun, epochs_finished

    def __cinit__(self, list weights, list biases, list activations, int loss,
                  Py_ssize_t batch_size, int n_threads, int kernel, int optimizer,
                  list state1=None, list state2=None, bint keep_gradients=False,
                  list dropout=None, u64 seed=0, grad_buffer=None):
        cdef Py_ssize_t l, n_layers = len(weights), n_penalty_tiles = 0, at = 0
        cdef Layer *L
        self.dtype = weights[0].dtype
        self.keep = []
        self.sample_weight = None
        self.n_threads = threads_for_batch(weights, batch_size, n_threads)
        self.layers = <Layer *>malloc(n_layers * sizeof(Layer))
        self.work = <char **>malloc(self.n_threads * sizeof(char *))
        if self.layers == NULL or self.work == NULL:
            raise MemoryError()
        memset(self.layers, 0, n_layers * sizeof(Layer))
        memset(&self.ctx, 0, sizeof(Ctx))
        memset(&self.hyper, 0, sizeof(Hyper))
        if optimizer not in STATE_BUFFERS:
            raise ValueError(f"unknown optimizer code {optimizer}")
        given = (state1 is not None) + (state1 is not None and state2 is not None)
        if given < STATE_BUFFERS[optimizer]:
            raise ValueError(f"optimizer code {optimizer} needs {STATE_BUFFERS[optimizer]} "
                             f"state buffers, got {given}")
        need_grad = keep_gradients or optimizer != OPT_SGD
        if grad_buffer is not None:
            n_params = sum(W.size + (0 if b is None else b.size) for W, b in zip(weights, biases))
            if (optimizer != OPT_NONE or grad_buffer.ndim != 1 or grad_buffer.dtype != self.dtype
                    or not grad_buffer.flags.c_contiguous or grad_buffer.size < n_params):
                raise ValueError(f"grad_buffer must be a contiguous 1-D {self.dtype} array of "
                                 f"at least {n_params} entries, with optimizer 'none'")
            self.ctx.grad_sums = True
        self.grad_buffer = grad_buffer
        self.grad_W, self.grad_b = [], []
        self.layer_outputs = []
        if dropout is not None and (len(dropout) != n_layers or dropout[n_layers - 1] != 0):
            raise ValueError("dropout needs one rate per layer, and none on the output layer")
        for l in range(n_layers):
            W, b = weights[l], biases[l]
            L = &self.layers[l]
            set_params(L, W, b, activations[l])
            A = empty_aligned((batch_size, L.n_out), self.dtype)
            D = empty_aligned((batch_size, L.n_out), self.dtype)
            self.keep += [W, b, A, D]
            L.A, L.D = cnp.PyArray_DATA(A), cnp.PyArray_DATA(D)
            if fnn_act_props(L.act) & FNN_ACT_FROM_INPUT:
                # f' needs the activation's inputs: one more buffer, only here
                Z = empty_aligned((batch_size, L.n_out), self.dtype)
                self.keep.append(Z)
                L.Z = cnp.PyArray_DATA(Z)
            rate = 0.0 if dropout is None else float(dropout[l])
            if not 0 <= rate < 1:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate} for layer {l}")
            Aout = A
            if rate > 0:
                Aout = empty_aligned((batch_size, L.n_out), self.dtype)
                L.dropout = True
                L.keep_below = <u64>round((1.0 - rate) * 2.0 ** 53)
                L.dropout_scale = 1.0 / (1.0 - rate)
                self.keep.append(Aout)
            L.Aout = cnp.PyArray_DATA(Aout)
            self.layer_outputs.append((A, Aout))
            L.penalty_tile0 = n_penalty_tiles
            n_penalty_tiles += n_tiles(kernel, L.n_in, L.n_out)
            if grad_buffer is not None:
                gW = grad_buffer[at:at + W.size].reshape(W.shape)
                at += W.size
                gb = None if b is None else grad_buffer[at:at + L.n_out]
                at += 0 if b is None else L.n_out
            elif need_grad:
                gW = aligned_array((L.n_in, L.n_out), self.dtype, 0)
                gb = aligned_array(L.n_out, self.dtype, 0) if b is not None else None
            if need_grad:
                self.grad_W.append(gW)
                self.grad_b.append(gb)
                L.gW, L.gb = cnp.PyArray_DATA(gW), data_or_null(gb)
            if state1 is not None:
                self.keep += list(state1[l])
                L.s1W, L.s1b = data_or_null(state1[l][0]), data_or_null(state1[l][1])
            if state2 is not None:
                self.keep += list(state2[l])
                L.s2W, L.s2b = data_or_null(state2[l][0]), data_or_null(state2[l][1])
        n_in, n_out = weights[0].shape[0], weights[n_layers - 1].shape[1]
        Xb = empty_aligned((batch_size, n_in), self.dtype)
        Tb = empty_aligned((batch_size, n_out), self.dtype)
        row_loss = np.empty(batch_size, np.float64)
        penalty_parts = np.zeros(2 * n_penalty_tiles, np.float64)
        self.keep += [Xb, Tb, row_loss, penalty_parts]
        self.batch_inputs = Xb
        self.keep += alloc_work(self.work, self.n_threads, kernel, self.dtype.itemsize)
        arena_bytes = pack_arena_bytes(kernel, self.dtype.itemsize,
                                       [weights[0].shape[0]] + [W.shape[1] for W in weights],
                                       batch_size)
        if arena_bytes > 0:
            arena = np.empty(arena_bytes + CACHE_LINE, np.uint8)
            self.keep.append(arena)
            self.ctx.pack = <char *>aligned(arena)
        self.ctx.n_layers = n_layers
        self.ctx.layers = self.layers
        self.ctx.kernel = kernel
        self.ctx.loss = loss
        self.ctx.opt = optimizer
        self.ctx.hyper = &self.hyper
        self.ctx.batch_size = batch_size
        self.ctx.Xb, self.ctx.Tb = cnp.PyArray_DATA(Xb), cnp.PyArray_DATA(Tb)
        self.ctx.row_loss = <double *>cnp.PyArray_DATA(row_loss)
        self.ctx.penalty_parts = <double *>cnp.PyArray_DATA(penalty_parts)
        self.ctx.n_penalty_tiles = n_penalty_tiles
        self.ctx.work = self.work
        self.ctx.seed = seed
        self.ctx.epoch_key = noise_epoch_key(seed, 0)

    def __dealloc__(self):
        free(self.layers)
        free(self.work)

    def set_optimizer(self, dict hyper, long long step=0):
        """The update rule's hyper-parameters for the next epoch, and the
        count of past steps.

        ``hyper`` is ``Optimizer.engine_args()``: every field of the rule's
        struct (_engine_optim.pxi), by name; the Python optimizer owns the
        defaults.
        """
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        set_hyper(&self.hyper, self.ctx.opt, hyper)
        self.ctx.step0 = step

    def set_penalty(self, double l2=0.0, double l1=0.0, bint per_weight_sum=False):
        """Weight penalty for the next epochs (see the class docstring)."""
        if not (l2 >= 0 and l1 >= 0 and isfinite(l2) and isfinite(l1)):
            raise ValueError(f"l2 and l1 must be finite numbers >= 0, got {l2} and {l1}")
        self.ctx.l2, self.ctx.l1 = l2, l1
        self.ctx.penalty_per_weight_sum = per_weight_sum

    def set_sample_weight(self, sample_weight):
        """Per-sample weights (float64, one per row of the X given to run_epoch), or None."""
        if sample_weight is None:
            self.sample_weight = None
            self.ctx.sample_weight = NULL
            return
        sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
        if sw.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D, got shape {sw.shape}")
        self.sample_weight = sw
        self.ctx.sample_weight = <const double *>cnp.PyArray_DATA(sw)

    def set_input_noise(self, double std):
        """Gaussian noise of standard deviation ``std`` added to every training
        input (keyed like dropout: seed, epoch, sample, feature); 0: none."""
        if not (std >= 0 and isfinite(std)):
            raise ValueError(f"input_noise must be a finite number >= 0, got {std}")
        self.ctx.input_noise = std

    def set_epoch(self, long long epoch):
        """The epoch index of the next run_epoch calls (keys the training noise)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.ctx.epoch_key = noise_epoch_key(self.ctx.seed, epoch)

    @property
    def penalty_sum(self):
        return self.ctx.penalty_sum

    def run_epoch(self, X, T, perm=None, bint check_signals=True, Py_ssize_t start=0,
                  stop=None, bint check_inputs=False, cnp.int64_t[::1] counts=None):
        """Train on every minibatch of (X, T) in the order ``perm`` (row
        indices, all of X's rows or some of them; None: X's own order).

        ``start``, ``stop``: train on ``perm[start:stop]`` only (or on rows
        start..stop-1 of X when perm is None).  To train an epoch in parts,
        pass the whole X with these (or slices of perm) rather than slices of
        X: the row of X is the sample index that sample weights, dropout
        masks and input noise are keyed on.

        Returns (sum of the per-sample losses, number of samples trained on,
        number of steps (batches) trained, status): status is "ok",
        "not_finite" when the loss of a batch was not finite (training stopped
        after that batch) or "interrupted" on Ctrl-C (training stopped after
        the last finished batch).  The steps are the engine's own count: the
        caller adds them to the optimizer's, never recounts them.

        ``check_signals``: run Python's signal handlers while training (when
        called from the main thread).  A KeyboardInterrupt from one gives
        "interrupted"; any other exception a handler raised is raised here,
        after the last finished batch (``n_done`` then tells how many samples
        were trained on).  For ``gradients`` (optimizer "none") the work stops
        at once and every exception is raised.

        ``counts``: an int64 array to whose every entry the number of steps
        (batches) trained is added before this returns or raises.  The
        caller's books then cannot miss a finished batch: Python runs signal
        handlers between bytecodes, never inside this call once the team has
        stopped.

        ``check_inputs``: check each sample's row of X for NaN and infinity
        as its batch is formed, which costs nothing next to a separate pass
        over X; status "bad_input" when one is not finite (training stopped
        before that batch: the batches before it were trained on).
        """
        cdef cnp.int64_t[::1] order
        cdef Py_ssize_t n = X.shape[0] if perm is None else len(perm)
        cdef Py_ssize_t end = n if stop is None else stop
        if self.sample_weight is not None and self.sample_weight.shape[0] != X.shape[0]:
            raise ValueError(f"sample_weight has {self.sample_weight.shape[0]} entries but "
                             f"X has {X.shape[0]} rows")
        if not 0 <= start <= end <= n:
            raise ValueError(f"start and stop must satisfy 0 <= start <= stop <= {n}, got "
                             f"start={start}, stop={stop}")
        self.ctx.X = cnp.PyArray_DATA(X)
        self.ctx.T = cnp.PyArray_DATA(T)
        self.ctx.first, self.ctx.n = start, end
        self.ctx.perm = NULL
        if perm is not None:
            # ``perm`` may list only some rows (a slice of an epoch's order).
            order = perm
            self.ctx.perm = <const long long *>&order[0] if order.shape[0] else NULL
        self.ctx.loss_sum = 0.0
        self.ctx.penalty_sum = 0.0
        self.ctx.n_done = 0
        self.ctx.n_steps = 0
        self.ctx.status = STATUS_OK
        poll_init(&self.ctx.poll, check_signals)
        self.ctx.abort_on_signal = self.ctx.opt == OPT_NONE
        self.ctx.check_inputs = check_inputs
        self.ctx.bad_input = 0
        memset(self.ctx.claims, 0, sizeof(self.ctx.claims))
        cdef bint is_double = self.dtype == np.float64
        cdef int nt = start_team(self.n_threads)
        cdef Py_ssize_t i
        with nogil:
            run_team(&self.ctx, is_double, nt)
        if counts is not None:
            for i in range(counts.shape[0]):
                counts[i] += self.ctx.n_steps
        if self.ctx.poll.raised:
            exc = pending_exception()
            if self.ctx.abort_on_signal or not isinstance(exc, KeyboardInterrupt):
                raise exc
            if self.ctx.status == STATUS_SIGNAL:
                return self.ctx.loss_sum, self.ctx.n_done, self.ctx.n_steps, "interrupted"
        status = {STATUS_OK: "ok", STATUS_NOT_FINITE: "not_finite",
                  STATUS_BAD_INPUT: "bad_input"}[self.ctx.status]
        return self.ctx.loss_sum, self.ctx.n_done, self.ctx.n_steps, status

    def run_epochs(self, X, T, Py_ssize_t n_epochs, long long epoch0, cnp.int64_t[::1] counts,
                   double[::1] loss_sums, double[::1] penalty_sums, list saved, rng=None, *,
                   bint check_weights=True, seconds=None, target=None,
                   bint check_inputs=False):
        """Up to ``n_epochs`` whole epochs over every row of (X, T) in one
        call: many ``run_epoch`` calls with what fit does in Python between
        them done in C (_engine_epochs.pxi), for when no Python is due there.

        Epoch ``e`` of the call has index ``epoch0 + e`` (``set_epoch``) and
        the order ``rng.permutation(n)`` (rng: a NumPy Generator nobody else
        uses meanwhile; None: X's own order).  Before it, each ``live`` array
        of the (live, copy) pairs ``saved`` (parameters, optimizer state) is
        copied into ``copy``; after it, with ``check_weights``, they are
        checked for NaN and infinity.  No epoch but the first begins after
        ``seconds`` (None: no limit), nor after one whose ``loss_sum /
        n_done`` is at most ``target``.  The step count advances by each
        epoch's steps.  ``counts[0]`` gets each epoch's steps added as it
        ends and ``counts[1]`` is the current epoch's, right when this
        returns or raises; ``loss_sums[e]``, ``penalty_sums[e]``: epoch e's
        sums (as run_epoch's).

        Returns (epochs begun, outcome, samples trained in the last one):
        outcome "ok" (all done), "max_time", "target_loss",
        "weights_not_finite" (after the last epoch begun), or that epoch's
        run_epoch status ("not_finite", "interrupted", "bad_input").
        Signals are handled as in run_epoch; ``epochs_begun`` and
        ``epochs_finished`` (ended normally: the History's) are set also
        when it raises.
        """
        cdef Epochs E
        cdef Py_ssize_t i, n = X.shape[0]
        cdef bint is_double
        cdef int nt
        cdef cnp.ndarray perm = np.empty(n, np.int64)
        self.epochs_begun = self.epochs_finished = 0
        if self.sample_weight is not None and self.sample_weight.shape[0] != n:
            raise ValueError(f"sample_weight has {self.sample_weight.shape[0]} entries but "
                             f"X has {n} rows")
        if counts.shape[0] != 2 or loss_sums.shape[0] < n_epochs or \
                penalty_sums.shape[0] < n_epochs or n_epochs < 1 or n == 0:
            raise ValueError("run_epochs needs n_epochs >= 1, rows, 2 counts and n_epochs sums")
        memset(&E, 0, sizeof(Epochs))
        E.saved = <Saved *>malloc(max(1, len(saved)) * sizeof(Saved))
        if E.saved == NULL:
            raise MemoryError()
        try:
            for i, (live, copy) in enumerate(saved):
                if not (live.flags.c_contiguous and copy.flags.c_contiguous
                        and live.dtype == copy.dtype and live.size == copy.size
                        and live.dtype in (np.float32, np.float64)):
                    raise ValueError("saved arrays must be C-contiguous float pairs of one size")
                E.saved[i].live = cnp.PyArray_DATA(live)
                E.saved[i].copy = cnp.PyArray_DATA(copy)
                E.saved[i].size = live.size
                E.saved[i].is_double = live.dtype == np.float64
            E.n_saved = len(saved)
            E.n_epochs, E.epoch0 = n_epochs, epoch0
            E.counts = <long long *>&counts[0]
            E.loss_sums, E.penalty_sums = &loss_sums[0], &penalty_sums[0]
            E.check_weights = check_weights
            E.n_rows = n
            E.perm = <long long *>cnp.PyArray_DATA(perm)
            E.bitgen = NULL if rng is None else \
                <bitgen_t *>PyCapsule_GetPointer(rng.bit_generator.capsule, "BitGenerator")
            E.target = NAN if target is None else <double>target
            self.ctx.X = cnp.PyArray_DATA(X)
            self.ctx.T = cnp.PyArray_DATA(T)
            self.ctx.perm = NULL if rng is None else <const long long *>E.perm
            poll_init(&self.ctx.poll, True)
            self.ctx.abort_on_signal = False
            self.ctx.check_inputs = check_inputs
            is_double = self.dtype == np.float64
            nt = start_team(self.n_threads)
            E.deadline = fnn_wtime() + (INFINITY if seconds is None else <double>seconds)
            with nogil:
                run_epochs_loop(&self.ctx, &E, is_double, nt)
        finally:
            self.epochs_begun, self.epochs_finished = E.n_begun, E.n_finished
            free(E.saved)
        if self.ctx.poll.raised:
            exc = pending_exception()
            if not isinstance(exc, KeyboardInterrupt):
                raise exc
        outcome = {EPOCHS_DONE: "ok", EPOCHS_WEIGHTS: "weights_not_finite",
                   EPOCHS_TIME: "max_time", EPOCHS_TARGET: "target_loss"}.get(E.outcome)
        if outcome is None:
            outcome = {STATUS_NOT_FINITE: "not_finite", STATUS_SIGNAL: "interrupted",
                       STATUS_BAD_INPUT: "bad_input"}[self.ctx.status]
        return E.n_begun, outcome, self.ctx.n_done

    @property
    def n_done(self):
        """Samples trained on by the last run_epoch (also when it raised)."""
        return self.ctx.n_done

    @property
    def n_steps(self):
        """Steps (batches) trained by the last run_epoch (also when it raised)."""
        return self.ctx.n_steps
