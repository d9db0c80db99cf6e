"""What ``fit(verbose=...)`` prints.

verbose=1 on a terminal: one progress line per epoch, redrawn in place with
``\\r`` (bar, samples done, ETA, running loss, samples/s) and finished with
the epoch's results.  ``fit`` then runs the engine in about ``UPDATES``
chunks of minibatches per epoch so the line can move; each chunk is one
engine call, so the cost stays far below the epoch's.

verbose=2, or verbose=1 when the output is not a terminal (a log file, a
pipe, a notebook capture): one line per epoch and no ``\\r`` at all.
"""
import shutil
import sys
import time

UPDATES = 20          # redraws per epoch at most
MIN_BAR, MAX_BAR = 10, 30


def _isatty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):   # no isatty, or a closed stream
        return False


def format_seconds(seconds):
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}:{s:02d}"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{s:02d}"


def format_logs(logs):
    return "  ".join(f"{k}={v:.4g}" if k == "lr" else f"{k}={v:.4f}" for k, v in logs.items())


class ProgressPrinter:
    """Prints fit's progress to ``stream`` (default: sys.stdout at creation).

    Parameters
    ----------
    verbose : {0, 1, 2}
    epochs : int
    n_samples : int
        Training rows per epoch.
    stream : file-like, optional
    """

    def __init__(self, verbose, epochs, n_samples, stream=None):
        self.stream = sys.stdout if stream is None else stream
        self.verbose = verbose
        self.live = verbose == 1 and _isatty(self.stream)
        self.epochs = epochs
        self.n_samples = n_samples
        self._width = 0        # length of the last live line, to blank it out
        self._next_draw = 0

    def epoch_begin(self, epoch):
        self._epoch = epoch
        self._t0 = time.perf_counter()
        self._next_draw = 0
        if self.live:
            self.update(0, None)

    def update(self, n_done, loss):
        """Redraw the live line after ``n_done`` samples (running mean ``loss``)."""
        if not self.live or n_done < self._next_draw:
            return
        # Whatever the chunking, at most about UPDATES redraws per epoch.
        self._next_draw = n_done + max(1, self.n_samples // UPDATES)
        elapsed = time.perf_counter() - self._t0
        n = self.n_samples
        tail = [f"{n_done:,}/{n:,}"]
        if n_done:
            rate = n_done / elapsed if elapsed > 0 else float("inf")
            tail.append(f"ETA {format_seconds(elapsed * (n - n_done) / n_done)}")
            if loss is not None:
                tail.append(f"loss={loss:.4f}")
            tail.append(f"{rate:,.0f} samples/s")
        head, tail = self._prefix(), " ".join(tail)
        # The bar takes what the terminal leaves, within [MIN_BAR, MAX_BAR].
        room = self._columns() - 1 - len(head) - len(tail) - 4
        width = max(MIN_BAR, min(MAX_BAR, room))
        filled = width * n_done // n
        bar = "=" * filled + (">" if filled < width else "") + "." * (width - filled - 1)
        self._draw(f"{head} [{bar}] {tail}", end="")

    def epoch_end(self, epoch, logs, seconds, n_done):
        if not self.verbose:
            return
        rate = n_done / seconds if seconds > 0 else float("inf")
        line = (f"{self._prefix()}  {format_logs(logs)}  {format_seconds(seconds)}  "
                f"{rate:,.0f} samples/s")
        if self.live:
            self._draw(line, end="\n")
            self._width = 0
        else:
            print(line, file=self.stream, flush=True)

    def close(self):
        """End a live line left unfinished (training stopped inside an epoch)."""
        if self.live and self._width:
            print(file=self.stream, flush=True)
            self._width = 0

    def _prefix(self):
        digits = len(str(self.epochs))
        return f"epoch {self._epoch + 1:>{digits}}/{self.epochs}"

    @staticmethod
    def _columns():
        return shutil.get_terminal_size((80, 24)).columns

    def _draw(self, line, end):
        # Keep within the terminal: a wrapped line cannot be redrawn with \r.
        columns = self._columns()
        if end == "" and len(line) >= columns:
            line = line[:max(columns - 1, 0)]
        pad = " " * max(0, self._width - len(line))
        self.stream.write("\r" + line + pad + end)
        self.stream.flush()
        self._width = len(line) if end == "" else 0
