"""Peers for the fastnn MLP benchmark: one epoch of minibatch SGD and one
full-data prediction, implemented the natural way in each library.

Every peer exposes the same three functions, collected in ``PEERS``:

    model = init(params, threads)           # build the model (not timed)
    train_epoch(model, X, y, perm, batch)   # ONE epoch of SGD, lr=LR (timed)
    proba = predict(model, X)               # forward pass over all rows (timed)

``params`` is a list of ``(W, b)`` float32 arrays with ``W`` of shape
``(n_in, n_out)`` (fastnn's convention), built by :func:`init_params`, so every
peer starts from the same weights. Hidden layers are relu, the output is
softmax with cross-entropy averaged over the batch. SGD: lr=0.01, no
momentum, no weight decay.

``perm`` is the shuffled sample order of the epoch. NumPy, PyTorch and JAX
follow it; scikit-learn and fastnn shuffle internally (their public API has no
way to pass an order), which costs the same work.

Nothing here does timing, warm-up or thread setup: bench_mlp.py does that, and
must set the thread environment variables before this module imports the
libraries. The library imports are therefore inside the functions.
"""

import math
import warnings

import numpy as np

LR = 0.01


# --------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------

def make_data(n_samples=60000, n_features=784, n_classes=10, seed=0):
    """Synthetic data: standard-normal X (float32) and labels from a random
    linear teacher, so the task is learnable and the loss after training is a
    sanity check that each peer really trains (random labels would not be)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    teacher = rng.standard_normal((n_features, n_classes), dtype=np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    return X, y


def init_params(sizes, seed=0):
    """He-uniform weights (relu), zero biases, float32, W is (n_in, n_out)."""
    rng = np.random.default_rng(seed + 1)
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        lim = math.sqrt(6.0 / n_in)
        W = rng.uniform(-lim, lim, size=(n_in, n_out)).astype(np.float32)
        params.append((W, np.zeros(n_out, dtype=np.float32)))
    return params


def cross_entropy(proba, y):
    """Mean cross-entropy of predicted probabilities (used as a sanity check)."""
    p = proba[np.arange(len(y)), y]
    return float(-np.mean(np.log(np.maximum(p, 1e-12))))


def batches(n, batch):
    """Start/stop of each minibatch; the last one may be short (60000 % 256)."""
    return [(i, min(i + batch, n)) for i in range(0, n, batch)]


# --------------------------------------------------------------------------
# (a) hand-written NumPy, float32
# --------------------------------------------------------------------------

def numpy_init(params, threads):
    # copies: training updates the weights in place
    return {"W": [W.copy() for W, _ in params], "b": [b.copy() for _, b in params]}


def _softmax_inplace(Z):
    Z -= Z.max(axis=1, keepdims=True)
    np.exp(Z, out=Z)
    Z /= Z.sum(axis=1, keepdims=True)
    return Z


def numpy_train_epoch(model, X, y, perm, batch):
    Ws, bs = model["W"], model["b"]
    L = len(Ws)
    lr = np.float32(LR)
    # one gradient buffer per layer, reused by every batch (shape is batch-free)
    G = model.setdefault("G", [np.empty_like(W) for W in Ws])
    for start, stop in batches(len(perm), batch):
        idx = perm[start:stop]
        n = stop - start
        # forward: keep every layer's output; relu' is read from the output
        A = [X[idx]]
        for l in range(L):
            Z = A[-1] @ Ws[l]
            Z += bs[l]
            if l < L - 1:
                np.maximum(Z, 0, out=Z)
            else:
                _softmax_inplace(Z)
            A.append(Z)
        # output delta of softmax + mean cross-entropy: (P - T) / n
        D = A[-1]
        D[np.arange(n), y[idx]] -= 1.0
        D *= np.float32(1.0 / n)
        # backward: the hidden delta uses W[l] before W[l] is updated
        for l in range(L - 1, -1, -1):
            D_prev = (D @ Ws[l].T) if l > 0 else None
            if D_prev is not None:
                D_prev *= A[l] > 0
            np.matmul(A[l].T, D, out=G[l])
            G[l] *= lr
            Ws[l] -= G[l]
            bs[l] -= lr * D.sum(axis=0)
            D = D_prev


def numpy_predict(model, X, chunk=1024):
    # chunked: the intermediates of a chunk stay in cache, and a wide net
    # does not allocate 60000 x 1024 temporaries
    Ws, bs = model["W"], model["b"]
    out = np.empty((X.shape[0], Ws[-1].shape[1]), dtype=np.float32)
    for start, stop in batches(X.shape[0], chunk):
        A = X[start:stop]
        for l in range(len(Ws)):
            A = A @ Ws[l]
            A += bs[l]
            if l < len(Ws) - 1:
                np.maximum(A, 0, out=A)
        out[start:stop] = _softmax_inplace(A)
    return out


# --------------------------------------------------------------------------
# (b) PyTorch eager
# --------------------------------------------------------------------------

def torch_init(params, threads):
    import torch

    torch.set_num_threads(threads)
    layers = []
    for i, (W, b) in enumerate(params):
        lin = torch.nn.Linear(W.shape[0], W.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W.T))  # torch stores (out, in)
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)  # logits; CrossEntropyLoss applies softmax
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.0)
    return {"net": net, "opt": opt, "loss": torch.nn.CrossEntropyLoss(),
            "tensors": {}}


def _torch_tensors(model, X, y, perm):
    # from_numpy shares memory: the conversion is free and done once per array
    import torch

    cache = model["tensors"]
    key = (id(X), id(y))
    if cache.get("key") != key:
        cache.update(key=key, X=torch.from_numpy(X), y=torch.from_numpy(y))
    return cache["X"], cache["y"], torch.from_numpy(perm)


def torch_train_epoch(model, X, y, perm, batch):
    Xt, yt, pt = _torch_tensors(model, X, y, perm)
    net, opt, loss_fn = model["net"], model["opt"], model["loss"]
    for start, stop in batches(len(perm), batch):
        idx = pt[start:stop]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(Xt[idx]), yt[idx])
        loss.backward()
        opt.step()


def torch_predict(model, X):
    import torch

    with torch.inference_mode():
        return torch.softmax(model["net"](torch.from_numpy(X)), dim=1).numpy()


# --------------------------------------------------------------------------
# (c) JAX: jit of the whole train step
# --------------------------------------------------------------------------

def _jax_fns():
    import jax
    import jax.numpy as jnp

    def logits_fn(p, A):
        for W, b in p[:-1]:
            A = jax.nn.relu(A @ W + b)
        W, b = p[-1]
        return A @ W + b

    def loss_fn(p, Xb, yb):
        logp = jax.nn.log_softmax(logits_fn(p, Xb))
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    # The whole step is one jitted call: gather the batch rows on device
    # (dynamic_slice of the permutation at a traced offset, so one compile
    # serves every batch of the same size), value_and_grad, SGD update.
    # donate_argnums=0 lets XLA update the parameters in place.
    def step(p, X, y, perm, start, batch):
        idx = jax.lax.dynamic_slice(perm, (start,), (batch,))
        loss, g = jax.value_and_grad(loss_fn)(p, X[idx], y[idx])
        p = jax.tree_util.tree_map(lambda w, gw: w - LR * gw, p, g)
        return p, loss

    step_jit = jax.jit(step, static_argnames=("batch",), donate_argnums=0)
    predict_jit = jax.jit(lambda p, X: jax.nn.softmax(logits_fn(p, X)))
    return step_jit, predict_jit


def jax_init(params, threads):
    import jax.numpy as jnp

    step, predict = _jax_fns()
    p = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    return {"p": p, "step": step, "predict": predict, "dev": {}}


def _jax_device_data(model, X, y, perm):
    # device_put once per array (on CPU this is a copy made outside the timing:
    # bench_mlp.py calls the epoch once as a warm-up with the same X and y)
    import jax.numpy as jnp

    dev = model["dev"]
    key = (id(X), id(y))
    if dev.get("key") != key:
        dev.update(key=key, X=jnp.asarray(X), y=jnp.asarray(y.astype(np.int32)))
    return dev["X"], dev["y"], jnp.asarray(perm.astype(np.int32))


def jax_train_epoch(model, X, y, perm, batch):
    import jax

    Xd, yd, pd = _jax_device_data(model, X, y, perm)
    p, step = model["p"], model["step"]
    for start, stop in batches(len(perm), batch):
        # dispatch is asynchronous; the final block_until_ready waits for all
        p, _ = step(p, Xd, yd, pd, start, batch=stop - start)
    model["p"] = jax.block_until_ready(p)


def jax_predict(model, X):
    # X goes to the device once (cached, like the training data), so the
    # timed call measures the forward pass rather than a 188 MB host copy
    import jax
    import jax.numpy as jnp

    dev = model["dev"]
    if dev.get("pred_key") != id(X):
        dev.update(pred_key=id(X), pred_X=jnp.asarray(X))
    out = model["predict"](model["p"], dev["pred_X"])
    return np.asarray(jax.block_until_ready(out))


# --------------------------------------------------------------------------
# (d) scikit-learn MLPClassifier(solver="sgd")
# --------------------------------------------------------------------------

def sklearn_init(params, threads):
    # thread count is set through OMP/OPENBLAS env vars (and threadpoolctl
    # in bench_mlp.py); the estimator itself is single-threaded Python.
    from sklearn.neural_network import MLPClassifier

    hidden = tuple(W.shape[1] for W, _ in params[:-1])
    clf = MLPClassifier(
        hidden_layer_sizes=hidden, activation="relu", solver="sgd",
        learning_rate="constant", learning_rate_init=LR, momentum=0.0,
        nesterovs_momentum=False, alpha=0.0, max_iter=1, shuffle=True,
        tol=0.0, n_iter_no_change=10**9, early_stopping=False, random_state=0)
    return {"clf": clf, "params": params, "initialised": False}


def sklearn_train_epoch(model, X, y, perm, batch):
    # partial_fit runs exactly one epoch (it breaks after the first pass) and
    # shuffles with its own RNG: ``perm`` is not used.
    from sklearn.exceptions import ConvergenceWarning

    clf = model["clf"]
    clf.batch_size = batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if not model["initialised"]:
            # first call (the warm-up) creates coefs_; then load the shared
            # initial weights in place (the optimizer holds these arrays)
            clf.partial_fit(X, y, classes=np.arange(10))
            for l, (W, b) in enumerate(model["params"]):
                clf.coefs_[l][...] = W
                clf.intercepts_[l][...] = b
            model["initialised"] = True
        else:
            clf.partial_fit(X, y)


def sklearn_predict(model, X):
    return model["clf"].predict_proba(X)


# --------------------------------------------------------------------------
# fastnn (public API; the package may not be importable yet)
# --------------------------------------------------------------------------

def fastnn_init(params, threads):
    """FASTNN_KERNEL (blas, generic, avx2, avx512, amx) is set in the environment
    by bench_mlp.py for the ``fastnn-<kernel>`` peers, before the import."""
    import fastnn as fn

    if not hasattr(fn, "Network"):
        raise ImportError("fastnn is importable but has no Network yet")
    L = len(params)
    layers = [fn.Dense(W.shape[0], W.shape[1],
                       activation="relu" if l < L - 1 else "softmax")
              for l, (W, _) in enumerate(params)]
    net = fn.Network(layers, loss="cross_entropy", dtype="float32", seed=0)
    try:  # same start as the other peers; layer.W / layer.b are writable
        for layer, (W, b) in zip(net.layers, params):
            layer.W[...] = W
            layer.b[...] = b
    except Exception as exc:  # not fatal: timing does not depend on values
        warnings.warn(f"fastnn: could not load shared initial weights: {exc}")
    return {"net": net, "fn": fn, "threads": threads}


def fastnn_train_epoch(model, X, y, perm, batch):
    # fit shuffles internally (no way to pass ``perm``); one epoch per call
    fn = model["fn"]
    model["net"].fit(X, y, epochs=1, batch_size=batch,
                     optimizer=fn.SGD(lr=LR), shuffle=True, verbose=0,
                     n_threads=model["threads"])


def fastnn_predict(model, X):
    net, T = model["net"], model["threads"]
    if hasattr(net, "predict_proba"):
        return net.predict_proba(X, n_threads=T)
    return net.predict(X, n_threads=T)  # labels only: no loss sanity check


# --------------------------------------------------------------------------
# numpy-ref: fastnn's own NumPy reference (fastnn/_reference.py), the oracle
# of its tests: readable, not tuned - the baseline the first issue names.
# --------------------------------------------------------------------------

def numpy_ref_init(params, threads):
    import fastnn._reference as ref

    L = len(params)
    return {"ref": ref, "W": [W.copy() for W, _ in params],
            "b": [b.copy() for _, b in params],
            "acts": [("relu", 0.0)] * (L - 1) + [("softmax", 0.0)]}


def numpy_ref_train_epoch(model, X, y, perm, batch):
    T = model.get("T")
    if T is None or len(T) != len(y):
        T = np.zeros((len(y), model["W"][-1].shape[1]), dtype=np.float32)
        T[np.arange(len(y)), y] = 1
        model["T"] = T
    model["ref"].sgd_epoch(model["W"], model["b"], model["acts"], "cross_entropy",
                           X, T, batch, LR, perm)


def numpy_ref_predict(model, X):
    return model["ref"].forward(model["W"], model["b"], model["acts"], X)[-1]


# --------------------------------------------------------------------------

class Peer:
    def __init__(self, init, train_epoch, predict, follows_perm=True):
        self.init, self.train_epoch, self.predict = init, train_epoch, predict
        self.follows_perm = follows_perm


PEERS = {
    "numpy": Peer(numpy_init, numpy_train_epoch, numpy_predict),
    "torch": Peer(torch_init, torch_train_epoch, torch_predict),
    "jax": Peer(jax_init, jax_train_epoch, jax_predict),
    "sklearn": Peer(sklearn_init, sklearn_train_epoch, sklearn_predict, False),
    "fastnn": Peer(fastnn_init, fastnn_train_epoch, fastnn_predict, False),
    "numpy-ref": Peer(numpy_ref_init, numpy_ref_train_epoch, numpy_ref_predict),
}

FASTNN_KERNELS = ("blas", "generic", "avx2", "avx512", "amx")


def get_peer(name):
    """``fastnn-<kernel>`` is the fastnn peer; the kernel is an env var."""
    if name.startswith("fastnn-") and name[len("fastnn-"):] in FASTNN_KERNELS:
        return PEERS["fastnn"]
    return PEERS[name]
