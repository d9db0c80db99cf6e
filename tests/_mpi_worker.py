"""Run by tests/test_mpi.py under mpiexec: one data-parallel fit, whose
results every rank writes to OUT/rank<r>.npz.  Not a test module itself.

argv: OUT CASE.  Each rank takes its own rows of one data set, shards of
unequal sizes (SHARDS), rank r the r-th block of rows."""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import fastnn as fn
from fastnn import distributed

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
out, case = sys.argv[1], sys.argv[2]
# These networks are small: tests/test_mpi.py sets SPLIT_MIN_PARAMS=0 to
# have them take the split update of large networks too.
distributed.SPLIT_MIN_PARAMS = int(os.environ.get("SPLIT_MIN_PARAMS",
                                                  distributed.SPLIT_MIN_PARAMS))
SHARDS = {1: [33], 2: [23, 10], 3: [37, 20, 5]}[size]


def data():
    rng = np.random.default_rng(42)
    n = sum(SHARDS)
    X = rng.normal(size=(n, 5))
    y = rng.integers(0, 3, n)
    w = rng.uniform(0.2, 2.0, n)
    lo = sum(SHARDS[:rank])
    return X, y, w, slice(lo, lo + SHARDS[rank])


def network(dropout=0.0, dtype="float64"):
    return fn.Network([fn.Dense(5, 7, activation="tanh", dropout=dropout),
                       fn.Dense(7, 3, activation="softmax")],
                      loss="cross_entropy", dtype=dtype, seed=3)


CASES = {
    "sgd": dict(optimizer=lambda: fn.SGD(lr=0.1), fit=dict()),
    "adam_l2": dict(optimizer=lambda: fn.Adam(lr=0.01), fit=dict(l2=0.01)),
    "momentum_weights_l1": dict(optimizer=lambda: fn.SGD(lr=0.05, momentum=0.9),
                                fit=dict(l1=0.001), weights=True),
    "adam_float32": dict(optimizer=lambda: fn.Adam(lr=0.01), fit=dict(l2=0.01),
                         dtype="float32"),
}

X, y, w, mine = data()
if case in CASES:
    spec = CASES[case]
    net = network(dtype=spec.get("dtype", "float64"))
    if rank != 0:   # rank 0's weights are the ones broadcast
        for layer in net.layers:
            layer.W = layer.W + 1.0
    kw = dict(spec["fit"])
    if spec.get("weights"):
        kw["sample_weight"] = w[mine]
    own = [(l.W, l.b) for l in net.layers]
    opt = spec["optimizer"]()

    class Live(fn.callbacks.Callback):
        """predict in a callback sees the weights that train (on one machine
        they are in the shared-memory window during the fit)."""
        def on_epoch_end(self, epoch, logs):
            assert np.array_equal(self.model.predict(X[:2]), self.model.forward(X[:2])[-1])
            self.split = self.model.layers[0].W is not own[0][0]   # the window's copy
    live = Live()
    h = net.fit(X[mine], y[mine], epochs=3, batch_size=4, shuffle=False,
                optimizer=opt, comm=comm, metrics=["accuracy"], callbacks=[live], **kw)
    h.history["split"] = live.split
    # after fit: the layers' own arrays, holding the trained weights (also
    # for predict's few-rows path, which must not point into the freed window)
    assert all(l.W is W and l.b is b for l, (W, b) in zip(net.layers, own))
    assert np.array_equal(net.predict(X[:2]), net.forward(X[:2])[-1])
    state = {f"o{i}": a for i, a in enumerate(a for buf in (opt._state or []) for pair in buf
                                               for a in pair if a is not None)}
elif case == "local_sgd":    # average_every=2: weights averaged every 2 local steps
    net = network()
    if rank != 0:
        for layer in net.layers:
            layer.W = layer.W + 1.0
    h = net.fit(X[mine], y[mine], epochs=3, batch_size=4, shuffle=False,
                optimizer=fn.SGD(lr=0.1), comm=comm, average_every=2)
elif case == "local_adam_dropout":   # optimizer state averaged too; dropout, shuffling
    net = network(dropout=0.3)
    h = net.fit(X[mine], y[mine], epochs=3, batch_size=4, optimizer=fn.Adam(lr=0.01),
                input_noise=0.1, comm=comm, average_every=3, metrics=["accuracy"])
elif case in ("shuffle_dropout", "shuffle_blocks"):
    net = network(dropout=0.3)
    Xv, yv = X[mine][:3], y[mine][:3]
    h = net.fit(X[mine], y[mine], epochs=3, batch_size=4, optimizer=fn.Adam(lr=0.01),
                input_noise=0.1, validation_data=(Xv, yv), comm=comm, verbose=2,
                shuffle="blocks" if case == "shuffle_blocks" else True)
elif case == "diverge":    # every rank raises, with the weights of the epoch's start
    net = network()
    own = [l.W for l in net.layers]
    try:
        net.fit(X[mine], y[mine], epochs=3, batch_size=4, shuffle=False,
                optimizer=fn.SGD(lr=1e308), comm=comm)
        raise AssertionError("fit did not diverge")
    except FloatingPointError as exc:
        h = fn.History()
        h.history, h.stop_reason = {"error": str(exc)}, "diverged"
    assert all(l.W is W for l, W in zip(net.layers, own))
elif case == "stop_one_rank":
    class Stop(fn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if rank == size - 1 and epoch == 1:
                self.model.stop_training = True
    net = network()
    h = net.fit(X[mine], y[mine], epochs=5, batch_size=4, optimizer=fn.SGD(lr=0.1),
                callbacks=[Stop()], comm=comm)
elif case == "fail_one_rank":
    class Fail(fn.callbacks.Callback):
        def on_epoch_end(self, epoch, logs):
            if rank == 1 and epoch == 1:
                raise RuntimeError("boom on rank 1")
    net = network()
    h = net.fit(X[mine], y[mine], epochs=1000, batch_size=4, optimizer=fn.SGD(lr=0.1),
                callbacks=[Fail()], comm=comm)
elif case == "interrupt":
    class Ready(fn.callbacks.Callback):   # the pid once fit's Ctrl-C handler is in place
        def on_epoch_end(self, epoch, logs):
            if epoch == 0:
                with open(f"{out}/pid{rank}", "w") as f:
                    f.write(str(__import__("os").getpid()))
    net = network()
    h = net.fit(X[mine], y[mine], epochs=10 ** 6, batch_size=1, optimizer=fn.SGD(lr=0.01),
                callbacks=[Ready()], comm=comm)
    assert h.interrupted and h.stop_reason == "interrupted", h
elif case == "interrupt_twice":
    class Hold(fn.callbacks.Callback):    # rank 1 writes its pid, then waits for Ctrl-C
        def on_epoch_end(self, epoch, logs):
            if epoch == 0 and rank == 1:
                with open(f"{out}/pid{rank}", "w") as f:
                    f.write(str(__import__("os").getpid()))
                __import__("time").sleep(120)
    net = network()
    net.fit(X[mine], y[mine], epochs=10 ** 6, batch_size=1, optimizer=fn.SGD(lr=0.01),
            callbacks=[Hold()], comm=comm)
elif case == "one_process":   # size 1: the ordinary fit, bit for bit
    runs = []
    for c in (None, comm):
        net = network()
        h = net.fit(X, y, epochs=2, batch_size=4, optimizer=fn.Adam(lr=0.01), comm=c)
        runs.append((h.history, [l.W.copy() for l in net.layers]))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
elif case == "estimator":   # MLPClassifier.fit(comm=...); rank 1 sees no class 2
    Xe, ye = X[mine][:8], y[mine][:8].copy()   # equal shards: a replay in one order
    if rank == 1:
        ye[ye == 2] = 0
    clf = fn.MLPClassifier(hidden_layer_sizes=(7,), solver="adam", batch_size=4,
                           max_iter=3, shuffle=False, random_state=0, tol=0)
    clf.fit(Xe, ye, comm=comm)
    net = clf._network
    h = fn.History()
    h.history = {"loss": clf.loss_curve_, "classes": clf.classes_.tolist(),
                 "t_": clf.t_, "n_iter_": clf.n_iter_}
    h.stop_reason = "epochs"
    net.optimizer.step = clf.n_iter_
else:
    raise SystemExit(f"unknown case {case}")

arrays = {f"p{i}": a for i, a in enumerate(a for l in net.layers for a in (l.W, l.b))}
arrays.update(globals().get("state", {}))      # the optimizer state: o0, o1, ...
np.savez(f"{out}/rank{rank}.npz", history=json.dumps(h.history),
         stop_reason=h.stop_reason, step=getattr(net.optimizer, "step", 0), **arrays)
