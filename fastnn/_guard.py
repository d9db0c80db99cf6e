"""One network, several threads: which calls may run side by side.

``fit`` changes the weights with every batch, so it runs alone: it waits for
the calls already reading the network in other threads (predict, evaluate,
forward, gradients, save: short) to return, and while it trains, those calls
from any other thread - and a second ``fit`` - raise RuntimeError at once
instead of waiting for a whole training (or reading weights half-way through
an update).  The training thread itself may call them (callbacks validate and
save checkpoints), but not ``fit`` again.  Reading calls run side by side.
"""
import functools
import threading


class UseGuard:
    """The calls running on one network, by thread (see the module docstring)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)   # no reading call left
        self._readers = {}      # thread id -> number of reading calls it runs
        self._trainer = None    # id of the thread running fit

    def __reduce__(self):
        # A copy or an unpickled network starts with nobody using it.
        return (UseGuard, ())

    def enter_shared(self, what):
        me = threading.get_ident()
        with self._lock:
            if self._trainer is not None and self._trainer != me:
                raise RuntimeError(
                    f"Network.{what} was called while another thread is training this "
                    f"network (fit); its weights change with every batch. Call {what} once "
                    f"fit has returned, or from a callback of that fit (callbacks run in the "
                    f"training thread), or on a copy made before training (copy.deepcopy)")
            self._readers[me] = self._readers.get(me, 0) + 1

    def exit_shared(self):
        me = threading.get_ident()
        with self._lock:
            left = self._readers.pop(me) - 1
            if left:
                self._readers[me] = left
            elif not self._readers:
                self._idle.notify_all()

    def enter_exclusive(self, what):
        me = threading.get_ident()
        with self._lock:
            if self._trainer == me:
                raise RuntimeError(
                    f"Network.{what} was called during fit of the same network (from a "
                    f"callback?); a network cannot train inside its own training. Set "
                    f"model.stop_training = True and call {what} again once fit returns")
            if self._trainer is not None:
                raise RuntimeError(
                    f"Network.{what} was called while another thread is training this "
                    f"network (fit); a network trains in one thread at a time. Wait for "
                    f"that fit to return, or train a copy (copy.deepcopy) made before it")
            if me in self._readers:
                raise RuntimeError(f"Network.{what} was called from inside another call on "
                                   f"the same network")
            self._trainer = me
            try:
                while self._readers:       # calls of other threads, about to return
                    self._idle.wait()
            except BaseException:          # Ctrl-C while waiting
                self._trainer = None
                raise

    def exit_exclusive(self):
        with self._lock:
            self._trainer = None


def shared_use(method, name=None):
    """Network method that reads the network: runs beside other readers.
    ``name``: the call its errors name (default: the method's name)."""
    name = name or method.__name__

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        guard = self._guard
        guard.enter_shared(name)
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.exit_shared()
    return wrapper


def exclusive_use(method):
    """Network method that changes the network (fit): runs alone."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        guard = self._guard
        guard.enter_exclusive(method.__name__.lstrip("_"))   # _fit is fit's body
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.exit_exclusive()
    return wrapper
