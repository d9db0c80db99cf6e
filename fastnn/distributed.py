"""Data-parallel training over MPI: ``Network.fit(..., comm=MPI.COMM_WORLD)``.

Synchronous data-parallel SGD (Horovod's pattern): every rank trains the
same weights on its own shard of the rows.  Step k of an epoch:

1. each rank computes the gradient of its k-th local batch with the engine
   (optimizer "none": no update), as the *sum* over its rows weighted by
   rows or sample weights, written straight into one flat buffer of the
   network's dtype (``StepBuffer``), followed by the weight sum, the
   weighted loss sum, the row count and two flags (Ctrl-C, a callback's
   stop);
2. the ranks' buffers are added: on one machine they are slots of one MPI
   shared-memory window, read directly after a barrier; otherwise one
   in-place ``comm.Allreduce`` (SUM);
3. the update, by ``_engine.optimizer_update``, which adds the slots (in
   rank order) and scales by 1 / the global weight sum in the same pass
   (the penalty with the global weight sum).  On one machine, for networks
   of at least SPLIT_MIN_PARAMS parameters, the ranks split it
   (``SharedParameters``): each rank's copy of the weights and one copy of
   the optimizer state live in the window, each rank updates its share of
   the rows, and after a barrier copies the other shares from their
   owners' copies (a reduce-scatter and an allgather through shared
   memory).  Otherwise every rank applies the whole update to its own
   copy.  Either way every parameter is computed from the same sums in the
   same order: the ranks' weights stay bit-identical.

The step is then exactly one process training on the union of the ranks'
k-th batches.  Ranks whose shard has run out contribute zeros (weight 0);
the number of steps of an epoch is the largest over the ranks.  The engine's
fused plain-SGD path (the update inside the weight-gradient GEMM) is kept for
single-process fits: data-parallel needs the gradient buffer.

With ``average_every`` = k > 1 (local SGD, ``WeightAverager``) the ranks
instead train k ordinary steps each and then average their weights and
optimizer state through the same buffer.

mpi4py is imported only when a communicator is given; fastnn never needs it
otherwise.  See docs/several-machines.md.
"""
import contextlib
import os
import signal
import sys
import threading
import traceback

import numpy as np

from . import _engine
from .metrics import evaluation_from_sums, evaluation_sums

# The slots after the gradients in the step buffer ...
_WEIGHT, _LOSS, _ROWS, _INTERRUPT, _STOP = range(5)
# ... and after the weights and optimizer state with average_every > 1.
_A_ROWS, _A_LOSS, _A_PENALTY, _A_INTERRUPT, _A_STOP, _A_NOT_FINITE = range(6)
_N_EXTRA = 6
# Arrays in the shared-memory window start on a cache line, as the engine's own.
_CACHE_LINE = 64
# From this many parameters, ranks on one machine split the update between
# them (SharedParameters): below it the whole update is a few microseconds,
# less than the split's own bookkeeping.
SPLIT_MIN_PARAMS = 1 << 16
# Mixed into the dropout/noise key per rank: masks keyed on the local row
# index would otherwise repeat on every rank.
_RANK_KEY_STEP = 0x9E3779B97F4A7C15


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:   # pragma: no cover - comm given without mpi4py
        raise ImportError("fit(comm=...) needs mpi4py; install it with: "
                          "pip install 'fastnn[mpi]'") from exc
    return MPI


def active(comm):
    """The communicator when training is data-parallel (given, size > 1), else None."""
    if comm is None:
        return None
    for name in ("Get_size", "Get_rank", "Allreduce", "Bcast", "Abort"):
        if not hasattr(comm, name):
            raise TypeError(f"comm must be an mpi4py communicator such as "
                            f"MPI.COMM_WORLD, got {type(comm).__name__}")
    return comm if comm.Get_size() > 1 else None


@contextlib.contextmanager
def abort_on_error(comm):
    """An exception on one rank would leave the others waiting forever in the
    next collective (MPI has no timeout): report it on stderr and end the
    whole job with ``comm.Abort(1)``.  A FloatingPointError (a diverged
    epoch) is decided on the reduced loss and the identical weights, so
    every rank raises it at the same step: it propagates normally."""
    try:
        yield
    except FloatingPointError:
        raise
    except BaseException as exc:
        rank, size = comm.Get_rank(), comm.Get_size()
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        print(f"{text}fastnn: rank {rank} of {size} failed in fit ({type(exc).__name__}: "
              f"{exc}); aborting every rank with comm.Abort(1)", file=sys.stderr, flush=True)
        comm.Abort(1)
        raise   # pragma: no cover - Abort does not return


def agree_config(comm, config):
    """Raise ValueError on every rank when the ranks' fit arguments differ
    (a mismatch would otherwise hang or train nonsense)."""
    configs = comm.allgather(config)
    if any(c != configs[0] for c in configs):
        diff = [r for r, c in enumerate(configs) if c != configs[0]]
        raise ValueError(f"fit(comm=...): every rank must call fit with the same network "
                         f"and arguments (but its own X, y); ranks {diff} differ from rank 0: "
                         f"{configs[diff[0]]} != {configs[0]}")


def broadcast_start(comm, net, optimizer):
    """Rank 0's weights, optimizer state and step count, shuffling generator,
    epoch count and noise key, on every rank (in place)."""
    arrays = [a for l in net.layers for a in (l.W, l.b) if a is not None]
    state = optimizer.state_for(net.layers)
    arrays += [a for buf in state if buf is not None for pair in buf for a in pair
               if a is not None]
    for a in arrays:
        comm.Bcast(a, root=0)
    key = net._training_noise_key() if comm.Get_rank() == 0 else None
    (optimizer.step, net._rng.bit_generator.state, net._epochs_trained,
     net._noise_key) = comm.bcast((optimizer.step, net._rng.bit_generator.state,
                                   net._epochs_trained, key), root=0)


def rank_noise_key(key, rank):
    return (key + rank * _RANK_KEY_STEP) % 2 ** 64


def shard_order(comm, net, X, batch_size, shuffle):
    """The per-epoch order of this rank's rows (as ``shuffle`` asks): drawn
    from a generator seeded by a value that every rank draws alike from the
    (broadcast) network generator, and the rank - so every rank permutes its
    own shard, and ``net._rng`` stays the same on every rank."""
    from .network import _shuffler
    if not shuffle:
        return lambda: None
    shared = int(net._rng.integers(0, 2 ** 63))
    rng = np.random.default_rng([shared, comm.Get_rank()])
    return _shuffler(rng, X, batch_size, shuffle)


def global_rows(comm, n_rows):
    return int(comm.allreduce(int(n_rows)))


def reduce_evaluation(comm, result, n_rows):
    """Results of ``evaluate`` on each rank's rows, over all ranks: means
    (loss, accuracy) weighted by rows, counts (bit_fail) summed."""
    local = evaluation_sums(result, n_rows)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=_mpi().SUM)
    return evaluation_from_sums(result, total)


class CtrlCTwice(BaseException):
    """A second Ctrl-C on one rank during a data-parallel fit.  Not a
    KeyboardInterrupt: the fit loop turns that into a clean stop of this
    rank alone, and the other ranks would wait for it forever; this one
    reaches abort_on_error, which ends the job."""


class Interrupt:
    """Ctrl-C during a data-parallel fit: the first one asks every rank to stop
    after the step in progress (its flag travels in the step's allreduce); a
    second one raises CtrlCTwice, which aborts the job."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise CtrlCTwice("Ctrl-C pressed twice")
        self.requested = True
        print("fastnn: Ctrl-C: every rank stops after this step (press again to abort "
              "the job)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class StepBuffer:
    """The flat buffer of one step, where the engine writes this rank's
    gradient sums (``Trainer``'s ``grad_buffer``): every gradient (W0, b0,
    W1, b1, ...), then the step's _N_EXTRA numbers, in the network's dtype (a
    float32 network sends half the bytes; its sums are then float32 too:
    exact counts up to 2**24).

    When every rank runs on this machine (the usual case for a few ranks),
    the buffers are slots of one MPI shared-memory window: no allreduce and
    no copy, each rank's update reads every rank's slot directly and adds
    them in rank order.  With ``average_every`` = 1 and at least
    SPLIT_MIN_PARAMS parameters the window also holds every rank's copy of
    the parameters and one copy of the optimizer state (``shared``, a
    ``SharedParameters``: the update split between the ranks), and per rank
    and update parity the (sum P^2, sum |P|) of its share (``penalties``,
    float64).
    Otherwise (or with FASTNN_MPI_SHARED_MEMORY=0) the buffer is private and
    one in-place ``comm.Allreduce`` adds them.  Both give every rank the
    same sums, so bit-identical weights."""

    def __init__(self, comm, net, optimizer, average_every=1):
        MPI = _mpi()
        self.comm, self.rank, self.average_every = comm, comm.Get_rank(), average_every
        n = sum(a.size for a in averaged_arrays(net, optimizer, average_every)) + _N_EXTRA
        self.window = self.shared = None
        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        shared = (node.Get_size() == comm.Get_size()
                  and os.environ.get("FASTNN_MPI_SHARED_MEMORY", "1") != "0")
        if not agree_flag(comm, shared):
            node.Free()
            self.buffer = np.zeros(n, net.dtype)
            self.slots = None
            return
        self.node, self.node_rank, n_ranks = node, node.Get_rank(), node.Get_size()
        # The window: every rank's slot, then for the split update the
        # penalties, every rank's copy of the parameters, and one copy of
        # the optimizer state.
        specs = [((n,), net.dtype)] * n_ranks
        params, state = [], []
        split = average_every == 1 and n - _N_EXTRA >= SPLIT_MIN_PARAMS
        if split:
            params, state = parameter_arrays(net), state_arrays(net, optimizer)
            specs += [((n_ranks, 2, 2), np.dtype(np.float64))]
            specs += [(a.shape, a.dtype) for a in params] * n_ranks
            specs += [(a.shape, a.dtype) for a in state]
        offsets, total = [], 0
        for shape, dtype in specs:
            offsets.append(total)
            total += -(-int(np.prod(shape)) * dtype.itemsize // _CACHE_LINE) * _CACHE_LINE
        # All of it allocated by node rank 0, which leaves the layout to us.
        self.window = MPI.Win.Allocate_shared(
            total + _CACHE_LINE if self.node_rank == 0 else 0, 1, comm=node)
        self.window.Lock_all(MPI.MODE_NOCHECK)
        mem, _ = self.window.Shared_query(0)
        raw = np.ndarray((total + _CACHE_LINE,), np.uint8, buffer=mem)
        skip = -raw.ctypes.data % _CACHE_LINE
        arrays = [raw[skip + at:skip + at + int(np.prod(shape)) * dtype.itemsize]
                  .view(dtype).reshape(shape) for (shape, dtype), at in zip(specs, offsets)]
        self.slots = arrays[:n_ranks]
        self.buffer = self.slots[self.node_rank]
        self.buffer[:] = 0.0
        if split:
            self.penalties = arrays[n_ranks]
            at, k = n_ranks + 1, len(params)
            copies = [arrays[at + r * k:at + (r + 1) * k] for r in range(n_ranks)]
            self.shared = SharedParameters(net, optimizer, params, state, copies,
                                           arrays[at + n_ranks * k:], self.node_rank)
        self.barrier()

    def barrier(self):
        """Every rank's writes to the window visible to every rank."""
        self.window.Sync()
        self.node.Barrier()
        self.window.Sync()

    def free(self):
        """Collective: the parameters back in the network's own arrays, and
        the window released (at the end of the fit, on every rank)."""
        if self.window is not None:
            if self.shared is not None:
                self.barrier()           # no rank writes the window any more
                self.shared.restore()
                self.shared = None
            self.barrier()               # every rank has read it
            self.window.Unlock_all()
            self.window.Free()
            self.node.Free()
            self.window = None


class SharedParameters:
    """The parameters and optimizer state in the shared-memory window during
    a data-parallel fit on one machine: each rank's copy of the parameters
    (``copies[rank]``; the others read it) and one copy of the optimizer
    state, which take the place of the layers' ``_W``, ``_b`` and the
    optimizer's ``_state`` for the fit, starting from node rank 0's values
    (which ``broadcast_start`` made every rank's).  Each rank updates its
    share of the rows in its copy (and of the state, which only the update
    reads) and then copies the other shares from their ranks' copies: the
    weights each rank computes with stay its own (a GEMM that reads
    weights another core has just written is slower than one streaming
    copy of them).  ``restore`` copies the values back into the network's
    own arrays and puts those back: after ``fit``, ``layer.W`` is the array
    it was before, holding the trained values, on every rank.

    A reference to ``layer.W`` kept from before ``fit`` therefore sees the
    trained values only once ``fit`` returns; ``layer.W`` read during the
    fit (in a callback) is the live copy.  (Undoing a diverged epoch writes
    the shared state on every rank at once: the same values.)"""

    def __init__(self, net, optimizer, params, state, copies, state_views, rank):
        self.net, self.optimizer, self.copies = net, optimizer, copies
        self.owned, self.views = params + state, copies[rank] + state_views
        self.layers = [(l._W, l._b) for l in net.layers]
        self.state = optimizer._state
        for mine, view in zip(params, copies[rank]):
            np.copyto(view, mine)
        if rank == 0:
            for mine, view in zip(state, state_views):
                np.copyto(view, mine)
        it = iter(self.views)
        for layer in net.layers:
            layer._W = next(it)
            if layer._b is not None:
                layer._b = next(it)
        if optimizer._state is not None:
            optimizer._state = [[(next(it), None if b is None else next(it)) for _, b in buf]
                                for buf in optimizer._state]
        self._forget_pointers()

    def _forget_pointers(self):
        # Network.predict's few-rows path keeps pointers to the layers'
        # arrays: it is made again on use, over the arrays of the moment.
        self.net.__dict__.pop("_few_rows", None)

    def restore(self):
        for mine, view in zip(self.owned, self.views):
            np.copyto(mine, view)
        for layer, (W, b) in zip(self.net.layers, self.layers):
            layer._W, layer._b = W, b
        self.optimizer._state = self.state
        self._forget_pointers()


def parameter_arrays(net):
    """The layers' W and b, in layer order."""
    return [a for l in net.layers for a in (l.W, l.b) if a is not None]


def state_arrays(net, optimizer):
    """The optimizer's state buffers (allocated), in layer order."""
    return [a for buf in optimizer.state_for(net.layers) if buf is not None
            for pair in buf for a in pair if a is not None]


def averaged_arrays(net, optimizer, average_every):
    """What a step sums over the ranks: the gradients (as the parameters),
    or with ``average_every`` > 1 the parameters and the optimizer state."""
    arrays = parameter_arrays(net)
    if average_every > 1:
        arrays += state_arrays(net, optimizer)
    return arrays


def rows_share(arrays, n_parts, part):
    """The rows (start, stop) of each 2-d array that ``part`` of ``n_parts``
    updates: whole rows, about the same number of elements per part, every
    row in exactly one part."""
    total = sum(a.size for a in arrays)
    lo, hi = total * part // n_parts, total * (part + 1) // n_parts
    out, at = [], 0
    for a in arrays:
        rows, cols = a.shape
        first = lambda bound: min(rows, max(0, -(-(bound - at) // cols)))
        out.append((first(lo), first(hi)))
        at += a.size
    return out


def agree_flag(comm, flag):
    """True on every rank when it is true on every rank."""
    return bool(comm.allreduce(int(flag), op=_mpi().MIN))


class StepReducer:
    """One step's reduction and update on the ``StepBuffer``.

    No pass over the gradients besides the reduction and the update: the
    engine writes them as sums straight into the step buffer, and the update
    adds the ranks' sums (shared memory) or takes the allreduce's, and
    scales them by 1 / the global weight sum, in its own pass
    (``optimizer_update``'s ``more_G`` and ``grad_scale``).  With the
    parameters in the window (``StepBuffer.shared``) each rank updates only
    its share of their rows (``rows_share``): the same values, element by
    element, as a whole update, in half the time on 2 ranks."""

    def __init__(self, comm, net, step, optimizer, l2, l1, per_weight_sum):
        self.comm, self.net, self.optimizer, self.step = comm, net, optimizer, step
        self.l2, self.l1, self.per_weight_sum = l2, l1, per_weight_sum
        sources = step.slots if step.slots is not None else [step.buffer]
        state = optimizer.state_for(net.layers)
        params = []   # (P as a 2-d view, [G's views in the sources], is_weight, S1, S2)
        at = 0
        for i, layer in enumerate(net.layers):
            for j, (arr, is_weight) in enumerate(((layer.W, True), (layer.b, False))):
                if arr is None:
                    continue
                s = [None if buf is None else buf[i][j].reshape(1, -1) if not is_weight
                     else buf[i][j] for buf in state]
                shape = (arr.shape[0], -1) if is_weight else (1, -1)
                grads = [src[at:at + arr.size].reshape(shape) for src in sources]
                at += arr.size
                params.append((arr.reshape(shape), grads, is_weight, s[0], s[1]))
        self.gather = []   # (this rank's rows, the owner's rows) of the other shares
        if step.shared is not None:   # this rank's rows of each array, only
            arrays = [P for P, *_ in params]
            n_ranks = len(sources)
            shares = [rows_share(arrays, n_ranks, r) for r in range(n_ranks)]
            params = [(P[a:b], [g[a:b] for g in grads], is_weight,
                       None if S1 is None else S1[a:b], None if S2 is None else S2[a:b])
                      for (P, grads, is_weight, S1, S2), (a, b)
                      in zip(params, shares[step.node_rank]) if b > a]
            for r in range(n_ranks):
                if r != step.node_rank:
                    self.gather += [(P.reshape(P.shape[0], -1)[a:b],
                                     Q.reshape(P.shape[0], -1)[a:b])
                                    for P, Q, (a, b) in zip(arrays, step.shared.copies[r],
                                                            shares[r]) if b > a]
        self.params = params
        self.buf = step.buffer
        self.extra = self.buf[at:]
        self.extras = [src[at:] for src in sources]
        self.total = np.zeros(_N_EXTRA)   # the reduced extra numbers
        self.parity = 0                   # which of the two penalty cells (shared)
        self.code = _engine.OPTIMIZER_CODES[optimizer.code]
        self.MPI = _mpi()

    def fill(self, weight_sum, loss_mean, rows):
        """This rank's part besides the gradient sums, which the engine wrote
        (or zeros, when it had no rows): weight sum, weighted loss sum, rows."""
        self.extra[:] = 0.0
        if not rows:
            self.buf[:] = 0.0    # a rank whose shard has run out adds nothing
            return
        self.extra[_WEIGHT] = weight_sum
        self.extra[_LOSS] = loss_mean * weight_sum
        self.extra[_ROWS] = rows

    def reduce(self, interrupt, stop):
        self.extra[_INTERRUPT] = float(interrupt)
        self.extra[_STOP] = float(stop)
        if self.step.slots is None:
            self.comm.Allreduce(self.MPI.IN_PLACE, self.buf, op=self.MPI.SUM)
            self.total[:] = self.extra
        else:
            self.step.barrier()
            self.total[:] = 0.0
            for extra in self.extras:     # in rank order, as the update adds
                self.total += extra
        t = self.total
        return t[_INTERRUPT] > 0, t[_STOP] > 0, int(t[_ROWS]), float(t[_WEIGHT])

    def update(self):
        """Apply the reduced step; returns (mean loss, penalty) of the union
        batch, the penalty of the weights before the update."""
        opt, step = self.optimizer, self.step
        weight_sum = float(self.total[_WEIGHT])
        inv = 1.0 / weight_sum if weight_sum > 0 else 0.0
        l2, l1 = self.l2, self.l1
        if self.per_weight_sum:
            l2, l1 = l2 * inv, l1 * inv
        hyper = opt.engine_args()
        sq = ab = 0.0
        for P, grads, is_weight, S1, S2 in self.params:
            s, a = _engine.optimizer_update(self.code, hyper, P, grads[0], S1, S2,
                                            step=opt.step + 1, l2=l2, l1=l1,
                                            is_weight=is_weight, weight_sum=weight_sum,
                                            grad_scale=inv, more_G=grads[1:])
            sq += s
            ab += a
        if step.shared is not None:
            penalised = l2 != 0.0 or l1 != 0.0
            if penalised:
                # The shares' penalties, added in rank order after the
                # barrier.  Two cells per rank, alternating: a rank writes
                # this step's while another may still read the last one's.
                step.penalties[step.node_rank, self.parity] = sq, ab
            step.barrier()
            if penalised:
                sq = ab = 0.0
                for s, a in step.penalties[:, self.parity].tolist():
                    sq += s
                    ab += a
                self.parity ^= 1
            for mine, theirs in self.gather:   # the other ranks' shares of the update
                np.copyto(mine, theirs)
        elif step.slots is not None:
            step.barrier()    # every rank has read the slots: they may be written again
        return float(self.total[_LOSS]) * inv, 0.5 * l2 * sq + l1 * ab


class WeightAverager:
    """Local SGD (``average_every`` = k > 1): each rank trains k steps on its
    own batches with the engine's ordinary (fused) update, then every rank's
    weights and optimizer state are replaced by their average over the
    ranks, weighted by the rows each trained since the last average (a rank
    whose shard has run out counts for nothing).  One exchange of the
    ``StepBuffer`` per k steps: the allreduce time divided by k, at the
    price of steps that no longer equal one process on the union batches."""

    def __init__(self, comm, net, step, optimizer):
        self.comm, self.step = comm, step
        sources = step.slots if step.slots is not None else [step.buffer]
        self.mine = step.node_rank if step.slots is not None else 0
        self.parts = []   # (the array's flat view, its views in the sources)
        at = 0
        for a in averaged_arrays(net, optimizer, step.average_every):
            flat = a.reshape(-1)
            assert np.shares_memory(flat, a)
            self.parts.append((flat, [src[at:at + a.size] for src in sources]))
            at += a.size
        self.extras = [src[at:] for src in sources]
        self.total = np.zeros(_N_EXTRA)
        self.MPI = _mpi()

    def exchange(self, rows, loss_sum, penalty_sum, interrupt, stop, not_finite):
        """Average over the ranks; returns the totals (_A_* slots) of the
        period: rows, loss sum, penalty sum and the flags (> 0: on some rank)."""
        for flat, views in self.parts:
            np.multiply(flat, rows, out=views[self.mine])
        extra = self.extras[self.mine]
        extra[:] = 0.0
        extra[[_A_ROWS, _A_LOSS, _A_PENALTY, _A_INTERRUPT, _A_STOP, _A_NOT_FINITE]] = (
            rows, loss_sum, penalty_sum, interrupt, stop, not_finite)
        if self.step.slots is None:
            self.comm.Allreduce(self.MPI.IN_PLACE, self.step.buffer, op=self.MPI.SUM)
            self.total[:] = extra
        else:
            self.step.barrier()
            self.total[:] = 0.0
            for e in self.extras:      # in rank order, as the averages below
                self.total += e
        inv = 1.0 / self.total[_A_ROWS]
        for flat, views in self.parts:
            if len(views) == 1:
                np.multiply(views[0], flat.dtype.type(inv), out=flat)
            else:
                np.add(views[0], views[1], out=flat)
                for v in views[2:]:
                    flat += v
                flat *= flat.dtype.type(inv)
        if self.step.slots is not None:
            self.step.barrier()    # every rank has read the slots: they may be written again
        return self.total


def make_fit_loop(comm, net, trainer, optimizer, X, T, batch_size, order, callbacks, progress,
                  validation, metrics, target_loss, n_threads, epoch_loss, continue_not_finite,
                  max_time, sample_weight, l2, l1, per_weight_sum, step):
    """The fit loop of ``Network._fit`` for a data-parallel fit (see the module
    docstring); ``trainer`` computes gradients only (optimizer "none")."""
    from ._fit_loop import _FitLoop

    class DistributedFitLoop(_FitLoop):
        """_FitLoop whose minibatches are data-parallel steps and whose
        epoch results and stop decisions are reduced over the ranks."""

        def run(self, epochs):
            # The window is freed collectively: on the ways out that every
            # rank takes together (any other exception aborts the job).
            with Interrupt() as self.interrupt:
                try:
                    history = super().run(epochs)
                except FloatingPointError:
                    self.step_buffer.free()
                    raise
            self.step_buffer.free()
            return history

        def _agree(self, stop, out_of_time):
            flags = np.array([stop, out_of_time], np.float64)
            comm.Allreduce(_mpi().IN_PLACE, flags, op=_mpi().MAX)
            return bool(flags[0]), bool(flags[1])

        def _evaluate(self, X, T):
            return reduce_evaluation(comm, super()._evaluate(X, T), X.shape[0])

        def _batches(self, epoch, perm, snapshot):
            if step.average_every > 1:
                return self._local_batches(epoch, perm, snapshot)
            net, trainer, reducer = self.net, self.trainer, self.reducer
            X, T, n, b = self.X, self.T, self.X.shape[0], self.batch_size
            n_local = -(-n // b)
            n_steps = int(comm.allreduce(n_local, op=_mpi().MAX))
            loss_sum = penalty_sum = 0.0
            for k in range(n_steps):
                start, stop = min(n, k * b), min(n, (k + 1) * b)
                rows, loss_mean, weight_sum = stop - start, 0.0, 0.0
                if rows and not self.interrupt.requested:
                    part = perm[start:stop] if perm is not None else slice(start, stop)
                    loss, rows, _, status = trainer.run_epoch(
                        X, T, perm, start=start, stop=stop)
                    loss_mean = loss / rows if rows else 0.0
                    weight_sum = float(rows if sample_weight is None
                                       else sample_weight[part].sum())
                reducer.fill(weight_sum, loss_mean, rows)
                interrupted, stop_all, rows_all, _ = reducer.reduce(
                    self.interrupt.requested, net.stop_training)
                if interrupted:
                    return loss_sum, penalty_sum, "interrupted"
                if stop_all:   # a callback of the last step asked, on some rank
                    net.stop_training = True
                    break      # the epoch ends early, on every rank
                mean_loss, penalty = reducer.update()
                self.kept += 1
                self._sync()
                self.n_done += rows_all
                step_loss = (mean_loss + penalty) * rows_all
                loss_sum += step_loss
                penalty_sum += penalty * rows_all
                if not np.isfinite(step_loss) and not self.continue_not_finite:
                    self._diverged(snapshot, "the loss became NaN or infinite in epoch "
                                   f"{epoch + 1}, step {int(self.kept[1])}")
                if self.per_batch:
                    logs = {"batch": k, "size": rows_all,
                            "loss": step_loss / rows_all if rows_all else 0.0}
                    for cb in self.callbacks:
                        if cb.wants_batches:
                            cb.on_batch_end(k, logs)
                    if step.shared is not None:
                        step.barrier()   # a callback may write the shared optimizer state
                self.progress.update(self.n_done, loss_sum / max(self.n_done, 1))
            return loss_sum, penalty_sum, "ok"

        def _local_batches(self, epoch, perm, snapshot):
            """The epoch as periods of ``average_every`` local steps, each
            ended by an average over the ranks (WeightAverager)."""
            net, trainer, opt = self.net, self.trainer, self.optimizer
            X, T, n, b, k = self.X, self.T, self.X.shape[0], self.batch_size, step.average_every
            n_steps = int(comm.allreduce(-(-n // b), op=_mpi().MAX))
            loss_sum = penalty_sum = 0.0
            for period, first in enumerate(range(0, n_steps, k)):
                n_period = min(k, n_steps - first)
                begin = start = min(n, first * b)
                stop = min(n, (first + n_period) * b)
                loss = penalty = 0.0
                not_finite = False
                trainer.set_optimizer(opt.engine_args(), step=opt.step)
                while start < stop and not self.interrupt.requested:
                    part_loss, done, _, status = trainer.run_epoch(
                        X, T, perm, start=start, stop=stop)
                    if status == "interrupted":   # a Ctrl-C past the handler: abort
                        raise CtrlCTwice("Ctrl-C during a step")
                    loss += part_loss
                    penalty += trainer.penalty_sum
                    start += done
                    if status == "not_finite":
                        not_finite = True
                        if not self.continue_not_finite:
                            break
                    if done == 0:
                        break
                total = self.averager.exchange(start - begin, loss, penalty,
                                               self.interrupt.requested, net.stop_training,
                                               not_finite)
                self.kept += n_period
                self._sync()
                rows_all = int(total[_A_ROWS])
                self.n_done += rows_all
                loss_sum += float(total[_A_LOSS])
                penalty_sum += float(total[_A_PENALTY])
                if total[_A_NOT_FINITE] > 0 and not self.continue_not_finite:
                    self._diverged(snapshot, "the loss became NaN or infinite in epoch "
                                   f"{epoch + 1}, steps {first + 1}-{first + n_period}")
                if total[_A_INTERRUPT] > 0:
                    return loss_sum, penalty_sum, "interrupted"
                if total[_A_STOP] > 0:
                    net.stop_training = True
                    break
                if self.per_batch:   # batch callbacks see one "batch" per period
                    logs = {"batch": period, "size": rows_all,
                            "loss": float(total[_A_LOSS]) / rows_all if rows_all else 0.0}
                    for cb in self.callbacks:
                        if cb.wants_batches:
                            cb.on_batch_end(period, logs)
                self.progress.update(self.n_done, loss_sum / max(self.n_done, 1))
            return loss_sum, penalty_sum, "ok"

    loop = DistributedFitLoop(net, trainer, optimizer, X, T, batch_size, order, 1, callbacks,
                              progress, validation, metrics, target_loss, n_threads, False,
                              epoch_loss, continue_not_finite, max_time)
    if step.average_every > 1:
        loop.averager = WeightAverager(comm, net, step, optimizer)
    else:
        loop.reducer = StepReducer(comm, net, step, optimizer, l2, l1, per_weight_sum)
    loop.step_buffer = step
    return loop
