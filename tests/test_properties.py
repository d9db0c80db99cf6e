"""Property-based tests (hypothesis) over architectures, shapes, dtypes and values.

Properties:
* ``predict`` / ``forward`` match ``_reference.forward`` within the error
  bound of conftest.forward_bound, for any architecture (1-3 layers, 1-70
  units, every activation, with or without bias), 1-300 rows (crossing the
  256-row inference chunk), either dtype, any kernel and 1 or 2 threads, and
  inputs of any scale with special values (0, -0, tiny, large) mixed in;
* ``gradients`` match ``_reference.gradients`` within conftest.gradient_bound
  for every loss, on the smooth activations (a kink - relu at 0 - may flip
  between two roundings, which a first-order bound cannot cover);
* bad values always raise the right type: NaN/inf anywhere, wrong feature
  count or ndim -> ValueError; complex, string or object data -> TypeError;
  labels out of range or not integers -> ValueError - and the weights stay;
* save/load round trips preserve the configuration and the predictions bit
  for bit.

Example counts are modest (the suite must stay fast) and the runs are
derandomized, so CI sees the same examples every time; set
FASTNN_HYPOTHESIS=explore for a longer randomized search.

Tolerances: the derived bounds of conftest.py, plus an absolute underflow term
(see _underflow: large inputs push softmax/sigmoid outputs below float32's
smallest normal number, which a relative model cannot describe); bit-identity
for the round trip.
"""
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnn as fn
from fastnn.activations import CODES

from conftest import (DTYPES, KERNEL_NAMES, assert_within, forward_bound,
                      gradient_bound, make_net, params64, targets)

if os.environ.get("FASTNN_HYPOTHESIS") == "explore":
    PROFILE = settings(max_examples=500, deadline=None,
                       suppress_health_check=[HealthCheck.too_slow])
else:
    PROFILE = settings(max_examples=30, deadline=None, derandomize=True, database=None,
                       suppress_health_check=[HealthCheck.too_slow])

# step and sign jump at 0: a rounding there moves the output by 1 (no bound).
FORWARD_ACTS = sorted(a for a in CODES if a not in ("step", "sign", "softmax"))
SMOOTH_ACTS = ["linear", "sigmoid", "tanh", "softplus"]
# The error model of conftest.py is relative (it has no underflow term), so the
# special values stay in the normal range: tiny, but not subnormal.
SPECIAL = st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 3e3, -3e3])


@st.composite
def networks(draw, hidden_acts=FORWARD_ACTS):
    """(net, loss) with random sizes, activations, biases, dtype and seed."""
    n_layers = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 70), min_size=n_layers + 1, max_size=n_layers + 1))
    acts = draw(st.lists(st.sampled_from(hidden_acts), min_size=n_layers - 1,
                         max_size=n_layers - 1))
    loss = draw(st.sampled_from(["mse", "cross_entropy", "binary_cross_entropy"]))
    out_act = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}.get(loss)
    if out_act is None:
        out_act = draw(st.sampled_from(hidden_acts + ["softmax"]))
    use_bias = draw(st.lists(st.booleans(), min_size=n_layers, max_size=n_layers))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2 ** 16))
    net = make_net(sizes, acts + [out_act], loss=loss, dtype=dtype, seed=seed,
                   use_bias=use_bias)
    return net, loss


@st.composite
def inputs(draw, n_features, max_rows=300):
    """Rows of any scale, with special values at drawn positions."""
    n = draw(st.integers(1, max_rows))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    X = np.random.default_rng(draw(st.integers(0, 2 ** 16))).normal(size=(n, n_features)) * scale
    for _ in range(draw(st.integers(0, 6))):
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, n_features - 1))] = draw(SPECIAL)
    return X


def _underflow(W, acts, X, dtype):
    """Absolute error terms for underflow, which conftest's relative model leaves
    out: a result that underflows (a softmax or sigmoid output below the
    smallest normal number, exp(-200) in float32) is off by up to ``tiny``
    (np.finfo's smallest normal) in absolute terms, and that error moves the
    next layer's outputs by at most Lip * K * max|W| times as much.  Returns
    the term for each layer's output (forward) and a floor for the gradients
    (the same propagation carried through the backward pass and the products
    with the layer inputs, squared for the two passes)."""
    tiny = float(np.finfo(dtype).tiny)
    extra, per_layer, growth = 0.0, [], 1.0
    for Wl, (act, alpha) in zip(W, acts):
        gain = max(1.0, alpha) * Wl.shape[0] * float(np.abs(Wl).max())
        extra = gain * extra + tiny
        per_layer.append(extra)
        growth *= 1.0 + gain
    return per_layer, tiny * growth ** 2 * (1.0 + float(np.abs(X).max())) * X.shape[0]


def _as_dtype(X, dtype):
    with np.errstate(under="ignore"):
        return X.astype(dtype)


@PROFILE
@given(data=st.data(), net_loss=networks(),
       kernel=st.sampled_from(KERNEL_NAMES), n_threads=st.sampled_from([1, 2]))
def test_predict_matches_reference(data, net_loss, kernel, n_threads):
    net, _ = net_loss
    Xd = _as_dtype(data.draw(inputs(net.n_inputs)), net.dtype)
    W, b, acts = params64(net)
    expected, bounds = forward_bound(W, b, acts, Xd.astype(np.float64), net.dtype)
    fn.set_kernel(kernel)
    try:
        outs = net.forward(Xd, n_threads=n_threads)
        pred = net.predict(Xd, n_threads=n_threads)
    finally:
        fn.set_kernel(None)
    under, _ = _underflow(W, acts, Xd, net.dtype)
    for l, (out, exp, bound) in enumerate(zip(outs, expected, bounds)):
        assert out.dtype == net.dtype
        assert_within(out, exp, bound + under[l], f"{kernel}: forward layer {l} of {net}")
    np.testing.assert_array_equal(pred, outs[-1])


@PROFILE
@given(data=st.data(), net_loss=networks(hidden_acts=SMOOTH_ACTS),
       kernel=st.sampled_from(KERNEL_NAMES), n_threads=st.sampled_from([1, 2]))
def test_gradients_match_reference(data, net_loss, kernel, n_threads):
    net, loss = net_loss
    X = _as_dtype(data.draw(inputs(net.n_inputs, max_rows=160)), net.dtype)
    n, k = X.shape[0], net.n_outputs
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 16)))
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        y = rng.integers(0, 2, (n, k)).astype(np.float64)
    else:
        y = rng.normal(size=(n, k))
    T = targets(loss, y, k)
    W, b, acts = params64(net)
    _, ref_grads, bounds = gradient_bound(W, b, acts, loss, X.astype(np.float64),
                                          T.astype(net.dtype).astype(np.float64), net.dtype)
    fn.set_kernel(kernel)
    try:
        grads = net.gradients(X, y, n_threads=n_threads)
    finally:
        fn.set_kernel(None)
    _, floor = _underflow(W, acts, X, net.dtype)
    for l, ((dW, db), (rW, rb), (EW, Eb)) in enumerate(zip(grads, ref_grads, bounds)):
        assert_within(dW, rW, EW + floor, f"{kernel}: dW[{l}] of {net}")
        if rb is None:
            assert db is None
        else:
            assert_within(db, rb, Eb + floor, f"{kernel}: db[{l}] of {net}")


BAD_X_KINDS = ["nan", "inf", "-inf", "features", "ndim", "complex", "strings", "objects"]


@PROFILE
@given(data=st.data(), net_loss=networks(), kind=st.sampled_from(BAD_X_KINDS),
       method=st.sampled_from(["fit", "predict", "forward", "evaluate", "gradients"]))
def test_bad_X_always_raises_the_right_error(data, net_loss, kind, method):
    net, loss = net_loss
    X = data.draw(inputs(net.n_inputs, max_rows=40))
    n, d = X.shape
    if kind in ("nan", "inf", "-inf"):
        X[data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, d - 1))] = float(kind)
        expected = ValueError
    elif kind == "features":
        X = np.ones((n, d + data.draw(st.sampled_from([-d, -1, 1, 5]))))
        expected = ValueError
    elif kind == "ndim":
        X = X.reshape(-1) if data.draw(st.booleans()) else X[:, :, None]
        expected = ValueError
    else:
        X = {"complex": X.astype(complex), "strings": X.astype(str),
             "objects": X.astype(object)}[kind]
        expected = TypeError
    y = np.zeros(n, int) if loss == "cross_entropy" else np.zeros((n, net.n_outputs))
    before = [l.W.copy() for l in net.layers]
    with pytest.raises(expected, match=r"\bX\b"):
        getattr(net, method)(*((X,) if method in ("predict", "forward") else (X, y)))
    for layer, W in zip(net.layers, before):
        np.testing.assert_array_equal(layer.W, W)


@PROFILE
@given(data=st.data(), n_out=st.integers(1, 9),
       kind=st.sampled_from(["too big", "negative", "fraction", "nan"]),
       method=st.sampled_from(["fit", "evaluate", "gradients"]))
def test_bad_labels_always_raise_value_error(data, n_out, kind, method):
    net = make_net((3, n_out), ("softmax",), loss="cross_entropy", seed=0)
    n = data.draw(st.integers(1, 30))
    y = np.random.default_rng(0).integers(0, n_out, n).astype(np.float64)
    where = data.draw(st.integers(0, n - 1))
    y[where] = {"too big": n_out + data.draw(st.integers(0, 10 ** 6)),
                "negative": -data.draw(st.integers(1, 10 ** 6)),
                "fraction": data.draw(st.floats(0.001, n_out - 0.001).filter(
                    lambda v: v != int(v))),
                "nan": np.nan}[kind]
    before = net.layers[0].W.copy()
    with pytest.raises(ValueError, match="label"):
        getattr(net, method)(np.ones((n, 3)), y)
    np.testing.assert_array_equal(net.layers[0].W, before)


@PROFILE
@given(net_loss=networks(), alpha=st.floats(0.01, 3.0))
def test_save_load_round_trip(net_loss, alpha):
    net, _ = net_loss
    for layer in net.layers:
        if layer.activation in ("leaky_relu", "elu"):
            layer.alpha = alpha      # a non-default parameter must survive too
    X = np.random.default_rng(0).normal(size=(7, net.n_inputs))
    before = net.predict(X)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.fnn")
        net.save(path)
        loaded = fn.load(path)
    assert loaded.get_config() == net.get_config()
    assert loaded.dtype == net.dtype
    for a, b in zip(net.layers, loaded.layers):
        np.testing.assert_array_equal(a.W, b.W)
        assert (a.b is None) == (b.b is None)
        if a.b is not None:
            np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_array_equal(loaded.predict(X), before)
