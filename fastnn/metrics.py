"""Metrics: what ``evaluate`` and ``fit``'s History report besides the loss.

One object per metric, named in ``evaluate(..., metrics=[...])`` and
``fit(..., metrics=[...])`` by its name or given as an object (which sets
its parameters, e.g. ``BitFail(limit=0.2)``):

=========  ===================================================================
accuracy   the fraction of the samples whose class is predicted right
           (classification losses: cross_entropy, binary_cross_entropy)
bit_fail   FANN's bit-fail count (``fann_get_bit_fail``): the number of output
           values, over all samples and outputs, with |t - o| >= limit
           (default 0.35, FANN's ``bit_fail_limit``); as FANN, the difference
           of a symmetric output (tanh) is halved first
=========  ===================================================================

Adding a metric: a subclass of ``Metric`` here, its instance in ``METRICS``;
see docs/contributing.md.
"""
import numbers

import numpy as np

from . import losses
from ._registry import lookup


class Metric:
    """One metric: its name, the losses it applies to, and its NumPy value."""

    name = None

    def check(self, loss):
        """Raise ValueError when the metric does not apply to ``loss`` (a Loss)."""

    def __call__(self, loss, act, O, T):
        """The metric of the output layer's values ``O`` (float64, before the
        loss's link) against the targets ``T``, for a network whose loss is
        ``loss`` and output activation ``act``."""
        raise NotImplementedError

    def __repr__(self):
        return f"fastnn.metrics.get({self.name!r})"


class Accuracy(Metric):
    name = "accuracy"

    def check(self, loss):
        if loss.metric != "accuracy":
            raise ValueError(f"metrics=['accuracy'] needs a classification loss "
                             f"({', '.join(losses.classification_losses())}), got "
                             f"loss={loss.name!r}")

    def __call__(self, loss, act, O, T):
        return loss.accuracy(O, T)


class BitFail(Metric):
    """FANN's bit-fail count: how many output values miss their target by at
    least ``limit`` (|t - o| >= limit, the difference halved for symmetric
    outputs as FANN does), over all samples and outputs; an int.  Divide by
    ``n_samples * n_outputs`` for FANN's benchmark's bit-fail fraction.

    Parameters
    ----------
    limit : float > 0, default 0.35
        FANN's default ``bit_fail_limit``.
    """

    name = "bit_fail"

    def __init__(self, limit=0.35):
        if (isinstance(limit, (bool, np.bool_)) or not isinstance(limit, numbers.Real)
                or not np.isfinite(limit) or limit <= 0):
            raise ValueError(f"BitFail: limit must be a finite number > 0, got {limit!r}")
        self.limit = float(limit)

    def __call__(self, loss, act, O, T):
        U, _ = losses.fann_difference(act, loss.predict(O.copy()), T)
        return int(np.count_nonzero(np.abs(U) >= self.limit))

    def __repr__(self):
        return f"fastnn.metrics.BitFail(limit={self.limit!r})"


METRICS = {metric.name: metric for metric in (Accuracy(), BitFail())}


def get(metric):
    """The Metric object of a name, or the Metric given."""
    if isinstance(metric, Metric):
        return metric
    return lookup("metric", metric, METRICS, also=", or a fastnn.metrics.Metric")


def get_list(metrics, loss):
    """The Metric objects of ``metrics`` (None, a name, or a list of names and
    objects), each checked against ``loss``; a name may appear once."""
    if metrics is None:
        return []
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    out = [get(m) for m in metrics]
    names = [m.name for m in out]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"metrics may name {name!r} once, got {list(metrics)!r}")
    for m in out:
        m.check(loss)
    return out


# One evaluate() over rows held in parts (chunks, MPI ranks): each part's
# result as sums, the sums added, and the means taken again - means (loss,
# accuracy) weighted by rows, counts (bit_fail) summed.

def _is_count(value):
    return isinstance(value, (int, np.integer))


def evaluation_sums(result, n_rows):
    """``[n_rows, then each mean times n_rows or each count]`` of an
    ``evaluate`` result on ``n_rows`` rows (float64)."""
    return np.array([n_rows] + [v if _is_count(v) else v * n_rows for v in result.values()],
                    np.float64)


def evaluation_from_sums(like, sums):
    """The result over every part from the added ``evaluation_sums``, with
    the names and kinds of ``like`` (one part's result)."""
    return {name: int(round(sums[i + 1])) if _is_count(v) else float(sums[i + 1] / sums[0])
            for i, (name, v) in enumerate(like.items())}
