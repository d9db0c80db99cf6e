"""History: what ``fit`` records, one value per epoch."""


class History:
    """What ``fit`` records, one value per epoch.

    Attributes
    ----------
    history : dict of lists
        ``"loss"`` (mean training loss of the epoch), each metric of
        ``fit(metrics=[...])`` on the training data (``"accuracy"``,
        ``"bit_fail"``), ``"val_loss"`` and ``"val_accuracy"`` (with
        validation data; accuracy for classification networks), ``"val_"``
        and the name of each asked metric on the validation data, and
        ``"lr"`` (the learning rate the epoch used).
    epoch : list of int
        The 0-based epoch numbers of this fit.
    interrupted : bool
        True when Ctrl-C stopped the training (the model keeps the weights
        of the last finished minibatch).
    stop_reason : str
        Why training ended: "epochs" (all done), "target_loss", "max_time",
        "stop_training" (a callback), or "interrupted".
    """

    def __init__(self):
        self.epoch = []
        self.history = {"loss": []}
        self.interrupted = False   # True when Ctrl-C stopped the training
        self.stop_reason = None

    def append(self, epoch, **values):
        self.epoch.append(epoch)
        for name, value in values.items():
            self.history.setdefault(name, []).append(value)

    def extend(self, epochs, **columns):
        """``append`` for many epochs: a list of values per name."""
        self.epoch.extend(epochs)
        for name, values in columns.items():
            self.history.setdefault(name, []).extend(values)

    def __getitem__(self, name):
        return self.history[name]

    def plot(self, figsize=None):
        """Learning curves: loss (and val_loss), accuracies, learning rate.

        One panel per group that was recorded, against the epoch (1-based).
        Needs matplotlib (``pip install matplotlib``).

        Returns
        -------
        matplotlib.figure.Figure
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise ImportError("History.plot needs matplotlib, which is not installed; "
                              "install it with: pip install matplotlib") from exc
        groups = [("loss", ["loss", "val_loss"]), ("accuracy", ["accuracy", "val_accuracy"]),
                  ("learning rate", ["lr"])]
        panels = [(title, [k for k in keys if self.history.get(k)])
                  for title, keys in groups]
        panels = [(title, keys) for title, keys in panels if keys]
        if not panels:
            raise ValueError("History.plot: nothing was recorded (no finished epoch)")
        fig, axes = plt.subplots(1, len(panels), squeeze=False,
                                 figsize=figsize or (4.5 * len(panels), 3.5))
        epochs = [e + 1 for e in self.epoch]
        for ax, (title, keys) in zip(axes[0], panels):
            for key in keys:
                ax.plot(epochs, self.history[key], marker="." if len(epochs) < 30 else None,
                        label=key)
            if title == "learning rate" and all(v > 0 for v in self.history["lr"]):
                ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(title)
            ax.grid(True, alpha=0.3)
            ax.legend()
        fig.tight_layout()
        return fig

    def __repr__(self):
        last = {k: v[-1] for k, v in self.history.items() if v}
        extra = f", stop_reason={self.stop_reason!r}" if self.stop_reason else ""
        return f"History(epochs={len(self.epoch)}, last={last}{extra})"
