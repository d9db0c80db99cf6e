"""The epochs of one ``fit``: engine calls, bookkeeping, callbacks, output.

``Network._fit`` checks and converts the inputs, builds the engine's
Trainer and hands both to a ``_FitLoop``, which runs the epochs: the engine
calls, the step count, the undo of a failed epoch, the divergence checks,
metrics, validation, callbacks, progress and the History.  The data-parallel
(``distributed``) and chunked (``_chunks``) fits subclass it.
"""
import sys
import time

import numpy as np

from . import _engine
from .history import History


class _BadInput(Exception):
    """The engine found a sample of X that is not finite (fit reports it)."""


# Epochs run by the engine many per call (Trainer.run_epochs) when nothing in
# Python is due between them; False: one call per epoch (the tests compare both).
ENGINE_EPOCHS = True

# How long one run_epochs call lasts, about: the number of epochs per call
# follows the measured time per epoch.  The engine runs Python's signal
# handlers every 20 ms whatever the length of a call; returning this often
# keeps each call's buffers (one loss per epoch) small and costs nothing
# next to 25 ms of training (a few microseconds per call).
CALL_SECONDS = 0.025


def engine_order(order, rng):
    """Mark the order function ``order`` as one the engine can draw itself:
    ``rng.permutation(n)`` each epoch, or X's own order when ``rng`` is None."""
    order.engine_rng = (rng,)
    return order


class _FitLoop:
    """The epochs of one ``fit``: engine calls, bookkeeping, callbacks, output."""

    def __init__(self, net, trainer, optimizer, X, T, batch_size, order, batches_per_call,
                 callbacks, progress, validation, metrics, target_loss, n_threads,
                 check_inputs, epoch_loss=None, continue_not_finite=False, max_time=None):
        self.net, self.trainer, self.optimizer = net, trainer, optimizer
        self.X, self.T, self.batch_size, self.order = X, T, batch_size, order
        self.epoch_loss = epoch_loss or (lambda loss_sum, penalty_sum, n_done: loss_sum / n_done)
        self.continue_not_finite = continue_not_finite
        self.rows_per_call = batches_per_call * batch_size
        self.per_batch = batches_per_call == 1 and any(cb.wants_batches for cb in callbacks)
        self.callbacks, self.progress = callbacks, progress
        self.validation, self.metrics = validation, metrics
        self.target_loss, self.max_time, self.n_threads = target_loss, max_time, n_threads
        self.check_inputs = check_inputs   # the engine checks X for NaN and infinity
        # Where training is: the epoch and its rows done (updated as batches finish).
        self.epoch, self.n_done = 0, 0
        # Minibatches whose update the network keeps, in this fit and in the
        # current epoch (see _epoch and fit's Notes), counted by the engine
        # itself (the steps run_epoch adds to its counts): no Ctrl-C can land
        # between a finished batch and its count.  Python never recounts
        # them: optimizer.step is derived from them here only (_sync), and
        # the messages quote kept[1].
        self.kept = np.zeros(2, np.int64)
        self.step0 = optimizer.step
        self._default_epoch_loss = epoch_loss is None
        self._saved = None        # run_epochs' copies of the parameters (undo)
        self._call = None         # the run_epochs call to settle (see _settle)
        self._epochs_per_call = 1

    def run(self, epochs):
        """Train up to ``epochs`` epochs; returns the History."""
        history = History()
        logs = {}
        t_start = time.perf_counter()
        try:
            history.stop_reason = "epochs"
            in_engine = self._engine_runs_epochs()
            epoch = 0
            while epoch < epochs:
                if self.net.stop_training:   # asked for by a callback
                    history.stop_reason = "stop_training"
                    break
                self.epoch = epoch
                if in_engine:
                    n_run, status, epoch_logs, out_of_time = self._epochs(
                        epoch, epochs - epoch, history, t_start)
                else:
                    status, epoch_logs = self._epoch(epoch, history)
                    n_run, out_of_time = 1, False
                if status == "interrupted":
                    history.interrupted, history.stop_reason = True, "interrupted"
                    break
                logs = epoch_logs
                epoch += n_run
                if self.target_loss is not None and logs["loss"] <= self.target_loss:
                    history.stop_reason = "target_loss"
                    break
                stop, out_of_time = self._agree(
                    self.net.stop_training, out_of_time or (
                        self.max_time is not None
                        and time.perf_counter() - t_start >= self.max_time))
                self.net.stop_training = stop
                if stop and epoch < epochs:
                    history.stop_reason = "stop_training"
                    break
                if out_of_time and epoch < epochs:
                    history.stop_reason = "max_time"
                    break
        except KeyboardInterrupt:
            # Ctrl-C outside the engine (between its calls, in a callback): the
            # weights are as of the last finished minibatch all the same.
            self._settle()
            history.interrupted, history.stop_reason = True, "interrupted"
        finally:
            self._sync()
            self.progress.close()
        if history.interrupted:
            n_batches = int(self.kept[1])
            print(f"fastnn: training interrupted in epoch {self.epoch + 1} after {n_batches} "
                  f"batches; stopped after the last finished batch", file=sys.stderr,
                  flush=True)
        for cb in self.callbacks:
            cb.on_train_end(dict(logs))
        return history

    def _engine_runs_epochs(self):
        """Whether the engine may run many epochs per call: nothing in Python
        is due between epochs (no callbacks, validation, metrics, output),
        an epoch is one engine call, and the engine can draw its order."""
        X, order = self.X, self.order
        return (ENGINE_EPOCHS and type(self) is _FitLoop
                and not self.callbacks and self.validation is None and not self.metrics
                and self.progress.verbose == 0 and not self.continue_not_finite
                and not self.per_batch and self.rows_per_call >= X.shape[0] > 0
                and hasattr(order, "engine_rng")
                and (self.target_loss is None or self._default_epoch_loss))

    def _epochs(self, epoch, remaining, history, t_start):
        """Up to ``remaining`` epochs from ``epoch`` in one engine call, doing
        what ``_epoch`` does in Python (Trainer.run_epochs); returns (epochs
        finished, status, the last one's logs, whether max_time stopped it)."""
        net, optimizer, trainer = self.net, self.optimizer, self.trainer
        rng = self.order.engine_rng[0]
        if self._saved is None:
            self._saved = net._snapshot(optimizer)[0]
        n = min(remaining, self._epochs_per_call)
        seconds = None
        if self.max_time is not None:
            seconds = self.max_time - (time.perf_counter() - t_start)
        losses, penalties = np.empty(n), np.empty(n)
        start = (None if rng is None else rng.bit_generator.state, net._epochs_trained)
        trainer.set_optimizer(optimizer.engine_args(), step=optimizer.step)
        self.kept[1] = 0
        trainer.epochs_begun = trainer.epochs_finished = 0   # (read by _settle)
        # What _settle reads (also after a Ctrl-C that lands in Python once
        # the engine has returned: then run() settles the call).
        self._call = (epoch, start, losses, penalties, history)
        self._settled = 0
        t0 = time.perf_counter()
        try:
            begun, outcome, self.n_done = trainer.run_epochs(
                self.X, self.T, n, net._epochs_trained, self.kept, losses, penalties,
                self._saved, rng, seconds=seconds, target=self.target_loss,
                check_inputs=self.check_inputs)
        finally:
            # also when a signal handler raised: the engine stopped after its
            # last finished batch, in its last epoch begun
            self._settle()
            if self.kept[1] == 0 and trainer.epochs_begun:
                self._rewind(start, trainer.epochs_begun - 1)
        self._call = None
        # Next call: about CALL_SECONDS (growing at most 16-fold per call).
        per_epoch = (time.perf_counter() - t0) / begun
        self._epochs_per_call = max(1, min(16 * n, int(CALL_SECONDS / max(per_epoch, 1e-9))))
        finished = trainer.epochs_finished
        logs = None
        if finished:
            logs = {name: values[-1] for name, values in history.history.items()}
        if finished == begun:
            return finished, "ok", logs, outcome == "max_time"
        # The last epoch begun ended early: as _train_epoch handles it.
        snapshot = (self._saved, self.step0 + int(self.kept[0]) - int(self.kept[1]))
        try:
            if outcome == "interrupted":
                self._check_weights(snapshot, self.epoch)
                return finished, "interrupted", logs, False
            if outcome == "bad_input":
                self._undo_epoch(snapshot)
                raise _BadInput()
            if outcome == "not_finite":
                self._diverged(snapshot, f"the loss became NaN or infinite in epoch "
                                         f"{self.epoch + 1}, batch {int(self.kept[1])}")
            self._check_weights(snapshot, self.epoch)   # "weights_not_finite": raises
            raise AssertionError(f"run_epochs: unexpected outcome {outcome!r}")
        except BaseException:
            if self.kept[1] == 0:
                self._rewind(start, begun - 1)
            raise

    def _settle(self):
        """The books after a run_epochs call, from what the engine recorded
        (idempotent): step and epoch counts, and the History of the epochs
        that finished."""
        if self._call is None:
            return
        epoch, start, losses, penalties, history = self._call
        trainer = self.trainer
        self._sync()
        begun, finished = trainer.epochs_begun, trainer.epochs_finished
        self.net._epochs_trained = start[1] + begun
        self.epoch = epoch + max(begun - 1, 0)
        if finished > self._settled:
            done, rows = self._settled, self.X.shape[0]
            if self._default_epoch_loss:
                loss = (losses[done:finished] / rows).tolist()
            else:
                loss = [self.epoch_loss(float(l), float(p), rows)
                        for l, p in zip(losses[done:finished], penalties[done:finished])]
            lr = getattr(self.optimizer, "lr", None)
            columns = {"loss": loss} if lr is None else {"loss": loss,
                                                         "lr": [lr] * (finished - done)}
            history.extend(range(epoch + done, epoch + finished), **columns)
            self._settled = finished

    def _rewind(self, start, n_epochs):
        """The epoch count and the shuffling generator as after the first
        ``n_epochs`` epochs of the call that began at ``start`` (an epoch
        undone or without a finished batch never began, as in _epoch)."""
        rng_state, epochs_trained = start
        self.net._epochs_trained = epochs_trained + n_epochs
        rng = self.order.engine_rng[0]
        if rng is not None:
            rng.bit_generator.state = rng_state
            for _ in range(n_epochs):
                self.order()

    def _check_weights(self, snapshot, epoch):
        """The engine checks each batch's loss; the weights (and optimizer state)
        are checked here once per epoch: an update can overflow them while the
        loss it came from was finite (the last batch of an epoch, or a relu
        that turns -inf or NaN into 0)."""
        if not _engine.arrays_finite([live for live, _ in snapshot[0]]):
            self._diverged(snapshot, f"the weights became NaN or infinite in epoch {epoch + 1} "
                                     f"(found after its batch "
                                     f"{int(self.kept[1])}, while the loss "
                                     f"was still finite)")

    @property
    def batches_kept(self):
        return int(self.kept[0])

    def _sync(self):
        """optimizer.step from the engine's count (idempotent: safe to repeat
        on every way out)."""
        self.optimizer.step = self.step0 + int(self.kept[0])

    def _undo_epoch(self, snapshot):
        """Weights and optimizer state back to the epoch's start."""
        self.net._restore(snapshot, self.optimizer)
        self.kept[0] -= self.kept[1]
        self.kept[1] = 0
        self._sync()

    def _diverged(self, snapshot, what):
        self._undo_epoch(snapshot)
        raise FloatingPointError(
            f"training diverged: {what}; the weights were restored to their values at the "
            f"start of that epoch. Try a smaller learning rate "
            f"(lr={getattr(self.optimizer, 'lr', '?')}) or scaled inputs.")

    def _epoch(self, epoch, history):
        """Train one epoch; returns (status, logs), logs None when interrupted.

        When an exception escapes with no batch of the epoch kept (raised
        before the first one finished, or the epoch was undone), the epoch
        count and the shuffling generator are put back: as if the epoch had
        never begun."""
        net = self.net
        start = (net._rng.bit_generator.state, net._epochs_trained)
        self.kept[1] = 0
        try:
            return self._train_epoch(epoch, history)
        except BaseException:
            if self.kept[1] == 0:
                net._rng.bit_generator.state, net._epochs_trained = start
            raise

    def _train_epoch(self, epoch, history):
        net, optimizer, trainer = self.net, self.optimizer, self.trainer
        X, T = self.X, self.T
        perm = self.order()
        trainer.set_epoch(net._epochs_trained)
        net._epochs_trained += 1
        for cb in self.callbacks:
            cb.on_epoch_begin(epoch, {})
        lr = getattr(optimizer, "lr", None)
        snapshot = net._snapshot(optimizer)
        self.progress.epoch_begin(epoch)
        self.n_done = 0
        t0 = time.perf_counter()
        loss_sum, penalty_sum, status = self._batches(epoch, perm, snapshot)
        if status == "interrupted":
            self._check_weights(snapshot, epoch)
            return status, None
        seconds = time.perf_counter() - t0
        if not self.continue_not_finite:
            self._check_weights(snapshot, epoch)
        logs = {"loss": self.epoch_loss(loss_sum, penalty_sum, self.n_done)}
        if self.metrics:
            train = self._evaluate(X, T)
            logs.update((m.name, train[m.name]) for m in self.metrics)
        if self.validation is not None:
            for name, value in self._evaluate(*self.validation).items():
                logs["val_" + name] = value
        if lr is not None:
            logs["lr"] = lr
        history.append(epoch, **logs)
        self.progress.epoch_end(epoch, logs, seconds, self.n_done)
        for cb in self.callbacks:
            cb.on_epoch_end(epoch, dict(logs))
        return status, logs

    def _evaluate(self, X, T):
        """``evaluate`` with the fit's metrics (the distributed loop reduces it)."""
        return self.net.evaluate(X, T, self.n_threads, metrics=self.metrics)

    def _agree(self, stop, out_of_time):
        """(stop, out_of_time) as every process sees them (one process: as given)."""
        return stop, out_of_time

    def _batches(self, epoch, perm, snapshot):
        """Train the epoch's minibatches in the order ``perm``; returns (loss
        sum, penalty sum, status) and counts the rows in ``self.n_done``."""
        self.batch = 0
        return self._train_rows(epoch, self.X, self.T, perm, snapshot, 0.0, 0.0)

    def _train_rows(self, epoch, X, T, perm, snapshot, loss_sum, penalty_sum):
        """``_batches`` on (X, T) (all of an epoch, or one chunk of it),
        adding to the sums; ``self.batch`` counts the epoch's batches."""
        net, optimizer, trainer = self.net, self.optimizer, self.trainer
        n = X.shape[0] if perm is None else len(perm)
        status = "ok"
        start = 0
        while start < n:
            stop = min(n, start + self.rows_per_call)
            # lr and the step count (Adam's bias correction) are read per call.
            trainer.set_optimizer(optimizer.engine_args(), step=optimizer.step)
            try:
                if perm is None:
                    # rows start..stop of X in place: sample weights and the
                    # dropout and noise keys follow the row, whatever the chunking
                    part_loss, part_done, _, status = trainer.run_epoch(
                        X, T, None, start=start, stop=stop, check_inputs=self.check_inputs,
                        counts=self.kept)
                else:
                    part_loss, part_done, _, status = trainer.run_epoch(
                        X, T, perm[start:stop], check_inputs=self.check_inputs,
                        counts=self.kept)
            finally:
                # also when a signal handler raised (SystemExit, TimeoutError,
                # ...): the engine stopped after its last finished batch
                self._sync()
            self.n_done += part_done
            start += part_done
            if status == "bad_input":
                # Only the first epoch can meet one (it visits every sample).
                self._undo_epoch(snapshot)
                raise _BadInput()
            loss_sum += part_loss
            penalty_sum += trainer.penalty_sum
            if status == "not_finite":
                if not self.continue_not_finite:
                    self._diverged(snapshot, "the loss became NaN or infinite in epoch "
                                   f"{epoch + 1}, batch {int(self.kept[1])}")
                status = "ok"    # the engine stopped after that batch: on with the next
            if part_done == 0:
                break            # (nothing left that the engine would train)
            if status == "interrupted":
                return loss_sum, penalty_sum, status
            if self.per_batch:
                batch_logs = {"batch": self.batch, "size": part_done,
                              "loss": part_loss / part_done}
                self.batch += 1
                for cb in self.callbacks:
                    if cb.wants_batches:
                        cb.on_batch_end(self.batch - 1, batch_logs)
                if net.stop_training:
                    break   # the epoch ends early; it is recorded as it is
            self.progress.update(self.n_done, loss_sum / self.n_done)
        return loss_sum, penalty_sum, status
