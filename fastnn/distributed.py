"""Data-parallel training over MPI: ``Network.fit(..., comm=MPI.COMM_WORLD)``.

Synchronous data-parallel SGD (Horovod's pattern): every rank holds the same
weights and its own shard of the rows.  Step k of an epoch:

1. each rank computes the gradient of its k-th local batch with the engine
   (optimizer "none": no update), as the *sum* over its rows weighted by
   rows or sample weights - the mean times the batch's weight sum;
2. one ``comm.Allreduce`` (SUM) of one flat buffer of the network's dtype:
   every gradient, then the weight sum, the weighted loss sum, the row count
   and two flags (Ctrl-C, a callback's stop);
3. every rank divides by the global weight sum and applies the update with
   ``_engine.optimizer_update`` per parameter array (the penalty once, with
   the global weight sum).  All ranks apply the same update to the same
   reduced buffer: their weights stay bit-identical.

The step is then exactly one process training on the union of the ranks'
k-th batches.  Ranks whose shard has run out contribute zeros (weight 0);
the number of steps of an epoch is the largest over the ranks.  The engine's
fused plain-SGD path (the update inside the weight-gradient GEMM) is kept for
single-process fits: data-parallel needs the gradient buffer.

mpi4py is imported only when a communicator is given; fastnn never needs it
otherwise.  See docs/several-machines.md.
"""
import contextlib
import signal
import sys
import threading
import traceback

import numpy as np

from . import _engine

# The slots after the gradients in the step buffer.
_WEIGHT, _LOSS, _ROWS, _INTERRUPT, _STOP = range(5)
_N_EXTRA = 5
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
    names = list(result)
    local = np.array([n_rows] + [v if isinstance(v, (int, np.integer)) else v * n_rows
                                 for v in result.values()], np.float64)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=_mpi().SUM)
    out = {}
    for i, name in enumerate(names):
        v = result[name]
        out[name] = (int(round(total[i + 1])) if isinstance(v, (int, np.integer))
                     else float(total[i + 1] / total[0]))
    return out


class Interrupt:
    """Ctrl-C during a data-parallel fit: the first one asks every rank to stop
    after the step in progress (its flag travels in the step's allreduce); a
    second one raises KeyboardInterrupt, which aborts the job."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
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


class StepReducer:
    """The flat buffer of one step, its allreduce and the update."""

    def __init__(self, comm, net, optimizer, l2, l1, per_weight_sum):
        self.comm, self.net, self.optimizer = comm, net, optimizer
        self.l2, self.l1, self.per_weight_sum = l2, l1, per_weight_sum
        self.params = []   # (P as a 2-d view, is_weight, its state S1, S2 or None)
        state = optimizer.state_for(net.layers)
        for i, layer in enumerate(net.layers):
            for j, (arr, is_weight) in enumerate(((layer.W, True), (layer.b, False))):
                if arr is None:
                    continue
                s = [None if buf is None else buf[i][j].reshape(1, -1) if not is_weight
                     else buf[i][j] for buf in state]
                self.params.append((arr.reshape(arr.shape[0] if is_weight else 1, -1),
                                    is_weight, s[0], s[1]))
        sizes = [p.size for p, *_ in self.params]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        # The network's dtype: a float32 network sends half the bytes (the
        # sums at its end are then float32 too: exact counts up to 2**24).
        self.buf = np.zeros(self.offsets[-1] + _N_EXTRA, net.dtype)
        self.extra = self.buf[self.offsets[-1]:]
        self.grads = [np.empty_like(p) for p, *_ in self.params]
        self.code = _engine.OPTIMIZER_CODES[optimizer.code]
        self.MPI = _mpi()

    def fill(self, grad_W, grad_b, weight_sum, loss_mean, rows):
        """This rank's part: gradient sums (the engine's weighted means times
        the batch's weight sum), weight sum, weighted loss sum, rows."""
        self.extra[:] = 0.0
        if not rows:
            self.buf[:] = 0.0    # a rank whose shard has run out adds nothing
            return
        grads = [g for pair in zip(grad_W, grad_b) for g in pair if g is not None]
        for (lo, hi), g in zip(zip(self.offsets[:-1], self.offsets[1:]), grads):
            np.multiply(g.reshape(-1), weight_sum, out=self.buf[lo:hi])
        self.extra[_WEIGHT] = weight_sum
        self.extra[_LOSS] = loss_mean * weight_sum
        self.extra[_ROWS] = rows

    def reduce(self, interrupt, stop):
        self.extra[_INTERRUPT] = float(interrupt)
        self.extra[_STOP] = float(stop)
        self.comm.Allreduce(self.MPI.IN_PLACE, self.buf, op=self.MPI.SUM)
        return (self.extra[_INTERRUPT] > 0, self.extra[_STOP] > 0, int(self.extra[_ROWS]),
                float(self.extra[_WEIGHT]))

    def update(self):
        """Apply the reduced step; returns (mean loss, penalty) of the union
        batch, the penalty of the weights before the update."""
        opt = self.optimizer
        weight_sum = float(self.extra[_WEIGHT])
        inv = 1.0 / weight_sum if weight_sum > 0 else 0.0
        l2, l1 = self.l2, self.l1
        if self.per_weight_sum:
            l2, l1 = l2 * inv, l1 * inv
        hyper = opt.engine_args()
        sq = ab = 0.0
        for (lo, hi), (P, is_weight, S1, S2), G in zip(
                zip(self.offsets[:-1], self.offsets[1:]), self.params, self.grads):
            np.multiply(self.buf[lo:hi], inv, out=G.reshape(-1), casting="same_kind")
            s, a = _engine.optimizer_update(self.code, hyper, P, G, S1, S2, step=opt.step + 1,
                                            l2=l2, l1=l1, is_weight=is_weight,
                                            weight_sum=weight_sum)
            sq += s
            ab += a
        return float(self.extra[_LOSS]) * inv, 0.5 * l2 * sq + l1 * ab


def make_fit_loop(comm, net, trainer, optimizer, X, T, batch_size, order, callbacks, progress,
                  validation, metrics, target_loss, n_threads, epoch_loss, continue_not_finite,
                  max_time, sample_weight, l2, l1, per_weight_sum):
    """The fit loop of ``Network._fit`` for a data-parallel fit (see the module
    docstring); ``trainer`` computes gradients only (optimizer "none")."""
    from ._fit_loop import _FitLoop

    class DistributedFitLoop(_FitLoop):
        """_FitLoop whose minibatches are data-parallel steps and whose
        epoch results and stop decisions are reduced over the ranks."""

        def run(self, epochs):
            with Interrupt() as self.interrupt:
                return super().run(epochs)

        def _agree(self, stop, out_of_time):
            flags = np.array([stop, out_of_time], np.float64)
            comm.Allreduce(_mpi().IN_PLACE, flags, op=_mpi().MAX)
            return bool(flags[0]), bool(flags[1])

        def _evaluate(self, X, T):
            return reduce_evaluation(comm, super()._evaluate(X, T), X.shape[0])

        def _batches(self, epoch, perm, snapshot):
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
                reducer.fill(trainer.grad_W, trainer.grad_b, weight_sum, loss_mean, rows)
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
                self.progress.update(self.n_done, loss_sum / max(self.n_done, 1))
            return loss_sum, penalty_sum, "ok"

    loop = DistributedFitLoop(net, trainer, optimizer, X, T, batch_size, order, 1, callbacks,
                              progress, validation, metrics, target_loss, n_threads, False,
                              epoch_loss, continue_not_finite, max_time)
    loop.reducer = StepReducer(comm, net, optimizer, l2, l1, per_weight_sum)
    return loop
