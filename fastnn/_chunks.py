"""``fit`` on data given in chunks: ``net.fit(chunks)`` with no ``y``.

For data that NumPy cannot map (many files, compressed files, a database):
``chunks`` yields ``(X, y)`` or ``(X, y, sample_weight)`` tuples of arrays,
one chunk in memory at a time.  Accepted forms, read afresh each epoch:

- a sequence: ``len(chunks)`` and ``chunks[i]`` (a list, or a Keras-like
  ``PyDataset``); with ``shuffle`` the chunks come in a new order each epoch;
- a function of no argument returning an iterable of chunks (e.g. a
  generator function reading files);
- any other iterable that yields its chunks again on each ``iter()`` (a
  generator or iterator can be read once: ``epochs=1`` only).

Minibatches never span two chunks (a chunk's last batch may be short), and
with ``shuffle`` the rows of each chunk are visited in a new random order.
The training noise (dropout, input_noise) is keyed by epoch, chunk number and
row of the chunk.  Progress, callbacks, History, Ctrl-C and the
undo-on-error rules are those of ``fit``: the epochs run in ``_FitLoop``.
"""
import collections.abc
import itertools

import numpy as np

from ._weighting import check_sample_weight
from .metrics import evaluation_from_sums, evaluation_sums

# The noise keys of an epoch: epoch * CHUNK_KEYS + chunk number.
CHUNK_KEYS = 1 << 24


def is_chunked(X, y):
    """Whether ``fit(X, y)`` is given chunks: no y, and X not an array."""
    if y is not None or isinstance(X, np.ndarray) or hasattr(X, "__array__"):
        return False
    return (callable(X) or isinstance(X, collections.abc.Iterable)
            or (hasattr(X, "__len__") and hasattr(X, "__getitem__")))


class Chunks:
    """The chunks of one ``fit``, checked one at a time by ``net``."""

    def __init__(self, source, net, shuffle, epochs, rng, metrics=False):
        self.source, self.net, self.shuffle, self.rng = source, net, bool(shuffle), rng
        self.sequence = (not callable(source) and hasattr(source, "__len__")
                         and hasattr(source, "__getitem__"))
        self.once = not self.sequence and not callable(source) and iter(source) is source
        if self.once and (epochs > 1 or metrics):
            raise ValueError(
                "fit got an iterator of (X, y) chunks (a generator?), which can be read "
                "only once, for " + ("epochs > 1" if epochs > 1 else "training metrics "
                                     "(computed over the chunks after the epoch)")
                + "; pass a list or a sequence of chunks, or a function that returns a "
                "new iterable of chunks (e.g. a generator function)")

    def _raw(self, shuffle):
        if self.sequence:
            order = (self.rng.permutation(len(self.source)) if shuffle
                     else range(len(self.source)))
            return (self.source[int(i)] for i in order)
        return iter(self.source() if callable(self.source) else self.source)

    def check(self, chunk, i):
        """(X, T, sample_weight or None) of chunk number ``i``, checked."""
        if not isinstance(chunk, (tuple, list)) or len(chunk) not in (2, 3):
            raise ValueError(f"each chunk must be a tuple (X, y) or (X, y, sample_weight); "
                             f"chunk {i} is {type(chunk).__name__}"
                             + (f" of length {len(chunk)}" if hasattr(chunk, "__len__") else ""))
        X = self.net._check_X(chunk[0], f"X of chunk {i}")
        T = self.net._check_y(chunk[1], X.shape[0])
        w = None if len(chunk) == 2 else check_sample_weight(chunk[2], X.shape[0])
        return X, T, w

    def __iter__(self):
        """(i, X, T, w, order) per chunk of one epoch; with ``shuffle`` the
        chunks' and rows' orders are drawn here, and only here."""
        for i, X, T, w in self.checked(self.shuffle):
            yield i, X, T, w, (self.rng.permutation(X.shape[0]) if self.shuffle else None)

    def checked(self, shuffle=False):
        """(i, X, T, w) per chunk, in the given order (no draw without shuffle)."""
        for i, chunk in enumerate(self._raw(shuffle)):
            yield (i, *self.check(chunk, i))

    def first(self):
        """The first chunk, checked (fit's checks of shapes and arguments).  A
        one-shot iterator gets it back in front, for the epoch to train on."""
        if self.once:
            first = next(self.source, None)
            if first is not None:
                self.source = itertools.chain([first], self.source)
                return self.check(first, 0)[:2]
        else:
            for _, X, T, _ in self.checked():
                return X, T
        raise ValueError("fit got no chunks: the iterable of (X, y) chunks is empty")


def make_fit_loop(chunks, loop_args):
    """A _FitLoop whose epochs run over ``chunks``."""
    from ._fit_loop import _FitLoop

    class ChunkedFitLoop(_FitLoop):
        def _batches(self, epoch, perm, snapshot):
            self.batch = 0
            loss_sum = penalty_sum = 0.0
            epoch_key = self.net._epochs_trained - 1   # as _train_epoch set it
            status = "ok"
            for i, X, T, w, order in chunks:
                self.trainer.set_sample_weight(w)
                self.trainer.set_epoch(epoch_key * CHUNK_KEYS + i)
                loss_sum, penalty_sum, status = self._train_rows(
                    epoch, X, T, order, snapshot, loss_sum, penalty_sum)
                if status == "interrupted" or self.net.stop_training:
                    break
            return loss_sum, penalty_sum, status

        def _evaluate(self, X, T):
            if X is not chunks:
                return super()._evaluate(X, T)
            # the training data's metrics: over every chunk
            part, total = {}, 0.0
            for _, Xc, Tc, _ in chunks.checked():
                part = super()._evaluate(Xc, Tc)
                total = total + evaluation_sums(part, Xc.shape[0])
            return evaluation_from_sums(part, total) if part else {}

    return ChunkedFitLoop(*loop_args)
