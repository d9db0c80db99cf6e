"""Sample weights, class weights and weight penalties (L2, L1, scikit-learn's alpha).

Covers, for every kernel, float32 and float64, 1 and 2 threads where the
engine is involved:

* ``gradients(sample_weight=w)`` with integer weights equals the gradient of
  the data set with each row repeated w times (rows of weight 0 dropped),
  computed independently by ``_reference.gradients`` in float64;
* unit weights train bit for bit like no weights;
* one step of plain SGD, SGD with momentum and Adam (both bias corrections)
  with ``l2``/``l1`` against the reference update ``W - lr * (dW + l2 W +
  l1 sign W)`` (biases never penalised: bit-identical to the unpenalised
  step), and the reported loss = weighted data loss + penalty;
* whole runs of scikit-learn's ``MLPClassifier``/``MLPRegressor`` (adam,
  sgd, sgd with momentum; softmax, logistic and identity outputs) with
  ``alpha`` and ``sample_weight``, from the same initial weights: the
  weights and the loss curve must match (float64);
* ``class_weight`` ("balanced" and dicts) against scikit-learn's
  ``compute_sample_weight`` / ``compute_class_weight``, and the errors;
* dropout: the engine's counter-based masks equal the NumPy reference's
  (_reference.dropout_keep_mask, an independent implementation of the same
  hash); keep rates within binomial bounds (overall, per unit, per sample;
  different across epochs and layers); training outputs are exactly A / (1 -
  rate) or 0 by the mask of each row's sample, whatever the batch position
  or thread count; mean preservation; gradients with the training mask
  against _reference.gradients(dropout=...); nothing dropped by predict,
  forward, evaluate or gradients;
* input noise: the engine's Box-Muller normals equal the reference's within
  a few ulps; their mean, variance, tails and pair correlations within 5
  standard errors; the noisy batch inputs are X[sample] + sigma * z(sample)
  whatever the batch position or thread count, and X is never modified.

Tolerances: gradients within conftest.gradient_bound of the engine's dtype
(for the repeated data set, whose longer sums make the bound conservative);
one update step within lr times that bound plus the rounding of the update
(for Adam, the update's sensitivity lr / (sqrt(v_hat) + eps) to its
gradient, as in test_engine_vs_reference); the scikit-learn runs are both
float64, within rtol(n) per step relative to the largest weight.  Dropout
gradients: ``masked_gradient_bound`` below, conftest.gradient_bound's error
propagation with each layer's output (and delta) multiplied by its dropout
factor, which adds one rounding.  Rates: 5 binomial standard deviations.
"""
import warnings

import numpy as np
import pytest

import fastnn as fn
from fastnn import _reference as ref

from fastnn import _config, _engine

from conftest import (DLIP, FUNC_ULPS, _lip, assert_within, eps, gradient_bound, make_net,
                      params64, random_targets, rtol, targets)

ARCHS = {
    "softmax-ce": ((6, 150, 4), ("tanh", "softmax"), "cross_entropy", True),
    "bce-nobias": ((5, 9, 2), ("relu", "sigmoid"), "binary_cross_entropy", (False, True)),
    "mse": ((3, 7, 8, 2), ("sigmoid", "elu", "linear"), "mse", True),
}


def _net(arch, dtype, seed=0):
    sizes, acts, loss, use_bias = ARCHS[arch]
    return make_net(sizes, acts, loss=loss, dtype=dtype, seed=seed, use_bias=use_bias)


def _data(arch, n, seed=1):
    sizes, _, loss, _ = ARCHS[arch]
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, sizes[0])), random_targets(rng, loss, n, sizes[-1])


# ---------------------------------------------------------------------------
# sample weights


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", ARCHS)
def test_weighted_gradient_is_the_gradient_of_repeated_rows(kernel, dtype, arch, n_threads):
    n = 41
    net = _net(arch, dtype)
    X, y = _data(arch, n)
    Xd = X.astype(dtype)
    w = np.random.default_rng(2).integers(0, 4, n)     # zeros drop rows, 3 triples them
    w[0] = 2
    grads = net.gradients(Xd, y, n_threads=n_threads, sample_weight=w)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    rep = np.repeat(np.arange(n), w)
    _, ref_grads, bounds = gradient_bound(W, b, acts, net.loss, Xd.astype(np.float64)[rep],
                                          T[rep], dtype)
    for l, ((dW, db), (rW, rb), (EW, Eb)) in enumerate(zip(grads, ref_grads, bounds)):
        assert_within(dW, rW, EW, f"dW[{l}]")
        if rb is not None:
            assert_within(db, rb, Eb, f"db[{l}]")
    # the reference's own weighted form agrees with the repeated rows
    _, ref_w = ref.gradients(W, b, acts, net.loss, Xd.astype(np.float64), T, sample_weight=w)
    for (rW, _), (rW2, _) in zip(ref_w, ref_grads):
        np.testing.assert_allclose(rW, rW2, rtol=1e-12, atol=1e-14)
    again = net.gradients(Xd, y, n_threads=3 - n_threads, sample_weight=w)
    for (dW, _), (dW2, _) in zip(grads, again):
        np.testing.assert_array_equal(dW, dW2)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_unit_weights_train_like_no_weights(kernel, dtype, n_threads):
    net1, net2 = _net("softmax-ce", dtype), _net("softmax-ce", dtype)
    X, y = _data("softmax-ce", 50)
    h1 = net1.fit(X, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1, momentum=0.5),
                  n_threads=n_threads)
    h2 = net2.fit(X, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1, momentum=0.5),
                  n_threads=n_threads, sample_weight=np.ones(50))
    for a, b in zip(net1.layers, net2.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=16 * eps(np.float64))


def test_weighted_loss_is_reported(dtype):
    net = _net("mse", dtype)
    X, y = _data("mse", 30)
    w = np.linspace(0.0, 2.0, 30)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    expected, _ = ref.gradients(W, b, acts, net.loss, X.astype(dtype).astype(np.float64), T,
                                sample_weight=w)
    hist = net.fit(X, y, epochs=1, batch_size=30, optimizer=fn.SGD(lr=0.01), sample_weight=w)
    assert hist.history["loss"][0] == pytest.approx(expected, rel=rtol(dtype, 30) * 10)


# ---------------------------------------------------------------------------
# weight penalties

PENALISED = {
    "sgd": lambda: fn.SGD(lr=0.1),
    "momentum": lambda: fn.SGD(lr=0.1, momentum=0.9),
    "adam": lambda: fn.Adam(lr=0.01),
    "adam-step-size": lambda: fn.Adam(lr=0.01, bias_correction="step_size"),
}


def _reference_step(optimizer, P, G):
    """The first step of ``optimizer`` from zero state; returns (new P, |dP/dG| factor)."""
    if isinstance(optimizer, fn.Adam):
        new, _, v = ref.adam_update(P, G, np.zeros_like(P), np.zeros_like(P), 1, optimizer.lr,
                                    optimizer.beta1, optimizer.beta2, optimizer.eps,
                                    optimizer.bias_correction)
        v_hat = v / (1 - optimizer.beta2)
        return new, 3 * optimizer.lr / (np.sqrt(v_hat) + optimizer.eps)
    return P - optimizer.lr * G, optimizer.lr      # momentum's first step: v = -lr g


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("opt", PENALISED)
@pytest.mark.parametrize("form", ["l2", "l1", "both", "alpha-weighted"])
def test_penalised_step(kernel, dtype, opt, form, n_threads):
    n = 37
    net = _net("softmax-ce", dtype)
    plain = _net("softmax-ce", dtype)
    X, y = _data("softmax-ce", n)
    Xd = X.astype(dtype)
    W, b, acts = params64(net)
    T = targets(net.loss, y, net.n_outputs)
    l2, l1 = {"l2": (0.3, 0.0), "l1": (0.0, 0.02), "both": (0.3, 0.02),
              "alpha-weighted": (5.0, 0.0)}[form]
    per_weight_sum = form == "alpha-weighted"
    sw = np.linspace(0.5, 1.5, n) if per_weight_sum else None
    kl2, kl1 = ref.penalty_coefficients(l2, l1, n, sw, per_weight_sum)
    if per_weight_sum:
        assert kl2 == pytest.approx(5.0 / sw.sum())
    optimizer = PENALISED[opt]()
    net._penalty_per_weight_sum = per_weight_sum   # private: scikit-learn's alpha form
    hist = net.fit(Xd, y, epochs=1, batch_size=n, optimizer=optimizer, n_threads=n_threads,
                   l2=l2, l1=l1, sample_weight=sw)
    plain.fit(Xd, y, epochs=1, batch_size=n, optimizer=PENALISED[opt](), n_threads=n_threads,
              sample_weight=sw)
    X64 = Xd.astype(np.float64)
    loss, grads = ref.gradients(W, b, acts, net.loss, X64, T, sample_weight=sw)
    _, _, bounds = gradient_bound(W, b, acts, net.loss, X64, T, dtype)
    if sw is not None:
        # weighted deltas are at most max(w) / mean(w) times the unweighted ones,
        # and the bound is linear in their size
        scale = sw.max() / sw.mean()
        bounds = [(EW * scale, None if Eb is None else Eb * scale) for EW, Eb in bounds]
    e = eps(dtype)
    for l, layer in enumerate(net.layers):
        G = ref.penalised_gradient(W[l], grads[l][0], kl2, kl1)
        expected, sensitivity = _reference_step(optimizer, W[l], G)
        bound = sensitivity * bounds[l][0] + 4 * e * (np.abs(W[l]) + np.abs(expected - W[l])
                                                      + optimizer.lr * np.abs(G))
        assert_within(layer.W, expected, 2 * bound, f"{opt} {form} W[{l}]")
        # biases are not penalised: the same bits as without the penalty
        np.testing.assert_array_equal(layer.b, plain.layers[l].b)
    expected_loss = loss + ref.weight_penalty(W, kl2, kl1)
    assert hist.history["loss"][0] == pytest.approx(expected_loss, rel=10 * rtol(dtype, n))


def test_penalty_shrinks_weights_without_data_gradient(dtype):
    """Targets equal to the outputs: only the penalty moves the weights."""
    net = fn.Network([fn.Dense(3, 4, activation="linear")], loss="mse", dtype=dtype, seed=0)
    X = np.random.default_rng(0).normal(size=(10, 3))
    y = net.predict(X).astype(np.float64)
    W0 = net.layers[0].W.astype(np.float64)
    net.fit(X, y, epochs=1, batch_size=10, optimizer=fn.SGD(lr=0.5), l2=0.2, l1=0.01)
    expected = W0 * (1 - 0.5 * 0.2) - 0.5 * 0.01 * np.sign(W0)
    np.testing.assert_allclose(net.layers[0].W, expected, rtol=8 * eps(dtype), atol=8 * eps(dtype))


# ---------------------------------------------------------------------------
# scikit-learn's MLP, run for run

SKLEARN_CASES = {
    # name: (estimator, y kind, hidden activation, fastnn output activation, loss)
    "classifier": ("MLPClassifier", "multiclass", "relu", "softmax", "cross_entropy"),
    "binary": ("MLPClassifier", "binary", "tanh", "sigmoid", "binary_cross_entropy"),
    "regressor": ("MLPRegressor", "regression", "logistic", "linear", "mse"),
}
SKLEARN_SOLVERS = {
    "adam": (dict(solver="adam"), lambda lr: fn.Adam(lr=lr, bias_correction="step_size")),
    "sgd": (dict(solver="sgd", momentum=0.0, nesterovs_momentum=False),
            lambda lr: fn.SGD(lr=lr)),
    "momentum": (dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
                 lambda lr: fn.SGD(lr=lr, momentum=0.9)),
}


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("solver", SKLEARN_SOLVERS)
@pytest.mark.parametrize("case", SKLEARN_CASES)
def test_matches_sklearn_mlp(case, solver, weighted):
    import inspect

    from sklearn import neural_network
    from sklearn.exceptions import ConvergenceWarning
    estimator, kind, hidden, out_act, loss = SKLEARN_CASES[case]
    if weighted and "sample_weight" not in inspect.signature(
            getattr(neural_network, estimator).fit).parameters:
        pytest.skip("this scikit-learn's MLP has no sample_weight (added in 1.7)")
    rng = np.random.default_rng(3)
    n, d, h, iters, batch, lr, alpha = 53, 5, 9, 3, 16, 0.01, 0.3
    X = rng.normal(size=(n, d))
    y = {"multiclass": rng.integers(0, 3, n), "binary": rng.integers(0, 2, n),
         "regression": rng.normal(size=n)}[kind]
    sw = rng.uniform(0.0, 2.0, n) if weighted else None
    skl_kw, make_opt = SKLEARN_SOLVERS[solver]
    est = getattr(neural_network, estimator)(
        hidden_layer_sizes=(h,), activation=hidden, alpha=alpha, batch_size=batch,
        learning_rate_init=lr, shuffle=False, warm_start=True, tol=0.0,
        n_iter_no_change=10 ** 6, max_iter=1, random_state=0, **skl_kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y, sample_weight=sw)                    # initialises the weights
        n_out = est.coefs_[-1].shape[1]
        net = fn.Network([fn.Dense(d, h, activation=hidden),
                          fn.Dense(h, n_out, activation=out_act)], loss=loss, dtype="float64")
        for layer, W, b in zip(net.layers, est.coefs_, est.intercepts_):
            layer.W, layer.b = W, b
        est.set_params(max_iter=iters)
        est.fit(X, y, sample_weight=sw)                    # warm start: the same weights
    net._penalty_per_weight_sum = True   # private: l2 is scikit-learn's alpha
    hist = net.fit(X, y, epochs=iters, batch_size=batch, shuffle=False,
                   optimizer=make_opt(lr), sample_weight=sw, l2=alpha)
    steps = iters * -(-n // batch)
    scale = max(np.abs(W).max() for W in est.coefs_)
    for l, layer in enumerate(net.layers):
        np.testing.assert_allclose(layer.W, est.coefs_[l], rtol=0,
                                   atol=steps * rtol(np.float64, n) * scale)
        np.testing.assert_allclose(layer.b, est.intercepts_[l], rtol=0,
                                   atol=steps * rtol(np.float64, n) * scale)
    np.testing.assert_allclose(hist.history["loss"], est.loss_curve_[-iters:],
                               rtol=steps * rtol(np.float64, n))


# ---------------------------------------------------------------------------
# class weights


def test_balanced_class_weight_matches_sklearn():
    from sklearn.utils.class_weight import compute_class_weight, compute_sample_weight
    rng = np.random.default_rng(0)
    y = rng.choice([0, 1, 3], size=40, p=[0.6, 0.3, 0.1])    # class 2 absent
    T = targets("cross_entropy", y, 4)
    sw = fn._weighting.class_weight_to_sample_weight("balanced", T, "cross_entropy")
    np.testing.assert_allclose(sw, compute_sample_weight("balanced", y), rtol=1e-15)
    base = rng.uniform(0.1, 2.0, 40)
    sw2 = fn._weighting.class_weight_to_sample_weight("balanced", T, "cross_entropy", base)
    try:
        cw = compute_class_weight("balanced", classes=np.unique(y), y=y, sample_weight=base)
    except TypeError:
        pytest.skip("this scikit-learn's compute_class_weight has no sample_weight")
    expected = base * cw[np.searchsorted(np.unique(y), y)]
    np.testing.assert_allclose(sw2, expected, rtol=1e-14)


def test_class_weight_dict_and_binary():
    y = np.array([0, 1, 1, 0, 1])
    T = targets("binary_cross_entropy", y, 1)
    sw = fn._weighting.class_weight_to_sample_weight({1: 3.0}, T, "binary_cross_entropy")
    np.testing.assert_array_equal(sw, [1, 3, 3, 1, 3])
    net = fn.Network([fn.Dense(2, 1, activation="sigmoid")], loss="binary_cross_entropy",
                     dtype="float64", seed=0)
    X = np.random.default_rng(0).normal(size=(5, 2))
    g1 = net.gradients(X, y, sample_weight=sw)
    net2 = fn.Network([fn.Dense(2, 1, activation="sigmoid")], loss="binary_cross_entropy",
                      dtype="float64", seed=0)
    a = net.fit(X, y, epochs=1, batch_size=5, class_weight={1: 3.0}, optimizer=fn.SGD(lr=1.0))
    b = net2.fit(X, y, epochs=1, batch_size=5, sample_weight=sw, optimizer=fn.SGD(lr=1.0))
    np.testing.assert_array_equal(net.layers[0].W, net2.layers[0].W)
    assert a.history["loss"] == b.history["loss"]
    assert g1[0][0].shape == (2, 1)


def _small_net(loss="cross_entropy", n_out=3):
    act = {"cross_entropy": "softmax", "binary_cross_entropy": "sigmoid", "mse": "linear"}[loss]
    return fn.Network([fn.Dense(2, n_out, activation=act)], loss=loss, seed=0)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sample_weight=np.ones(3)), ValueError, r"shape \(n_samples,\) = \(6,\), got shape"),
    (dict(sample_weight=np.ones((6, 1))), ValueError, "shape"),
    (dict(sample_weight=[1, 1, -1, 1, 1, 1]), ValueError, ">= 0"),
    (dict(sample_weight=[1, 1, np.nan, 1, 1, 1]), ValueError, "NaN"),
    (dict(sample_weight=np.zeros(6)), ValueError, "sums to 0"),
    (dict(sample_weight=["a"] * 6), TypeError, "real numbers"),
    (dict(class_weight="balance"), ValueError, "'balanced'"),
    (dict(class_weight=[1, 2, 3]), TypeError, "dict or 'balanced'"),
    (dict(class_weight={5: 1.0}), ValueError, r"labels in \[0, 2\]"),
    (dict(class_weight={0: -1.0}), ValueError, ">= 0"),
    (dict(class_weight={0: 0.0, 1: 0.0, 2: 0.0}), ValueError, "sum to 0"),
    (dict(l2=-0.1), ValueError, "l2"),
    (dict(l1=float("inf")), ValueError, "l1"),
    (dict(l2="0.1"), TypeError, "l2"),
])
def test_weight_and_penalty_errors(kwargs, error, match):
    net = _small_net()
    W0 = net.layers[0].W.copy()
    X, y = np.zeros((6, 2)), np.array([0, 1, 2, 0, 1, 2])
    with pytest.raises(error, match=match):
        net.fit(X, y, **kwargs)
    np.testing.assert_array_equal(net.layers[0].W, W0)     # raised before any change


def test_class_weight_needs_a_classification_loss_and_hard_labels():
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="only supported with the losses"):
        _small_net("mse", 1).fit(X, np.zeros(4), class_weight="balanced")
    soft = np.full((4, 3), 1 / 3)
    with pytest.raises(ValueError, match="not one-hot"):
        _small_net().fit(X, soft, class_weight="balanced")
    with pytest.raises(ValueError, match="0 or 1"):
        _small_net("binary_cross_entropy", 1).fit(X, [0, 0.5, 1, 1], class_weight={1: 2})
    with pytest.raises(ValueError, match="one output"):
        _small_net("binary_cross_entropy", 2).fit(X, np.zeros((4, 2)), class_weight="balanced")


def test_adam_bias_correction_is_validated():
    with pytest.raises(ValueError, match="bias_correction must be one of"):
        fn.Adam(bias_correction="sklearn")
    assert fn.Adam(bias_correction="step_size").bias_correction == "step_size"


# ---------------------------------------------------------------------------
# dropout

SIGMAS = 5.0


def _binomial_ok(kept, n, p_keep):
    return abs(kept / n - p_keep) <= SIGMAS * np.sqrt(p_keep * (1 - p_keep) / n)


@pytest.mark.parametrize("seed, epoch, layer, rate", [
    (0, 0, 0, 0.5), (2 ** 64 - 1, 7, 3, 0.1), (123456789, 2 ** 40, 0, 0.9), (5, 1, 62, 0.25)])
def test_dropout_mask_engine_equals_reference(seed, epoch, layer, rate):
    samples = np.array([0, 1, 2, 999, 2 ** 33 + 5, 2 ** 62])
    mine = _engine.dropout_keep_mask(seed, epoch, layer, samples, 300, rate)
    theirs = ref.dropout_keep_mask(seed, epoch, layer, samples, 300, rate)
    np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_keep_rate_statistics(rate):
    n, units, p = 3000, 64, 1 - rate
    keep = _engine.dropout_keep_mask(11, 0, 0, np.arange(n), units, rate)
    assert _binomial_ok(keep.sum(), keep.size, p)
    assert all(_binomial_ok(k, n, p) for k in keep.sum(axis=0)), "a unit's keep rate is off"
    rows = _engine.dropout_keep_mask(11, 0, 0, np.arange(200), 3000, rate)
    assert all(_binomial_ok(k, 3000, p) for k in rows.sum(axis=1)), "a sample's keep rate is off"
    # independent across epochs, layers, neighbouring units and samples: two
    # independent masks agree with probability p^2 + (1-p)^2
    agree = p * p + (1 - p) * (1 - p)
    for other in (_engine.dropout_keep_mask(11, 1, 0, np.arange(n), units, rate),
                  _engine.dropout_keep_mask(11, 0, 1, np.arange(n), units, rate),
                  _engine.dropout_keep_mask(12, 0, 0, np.arange(n), units, rate)):
        assert _binomial_ok((other == keep).sum(), keep.size, agree)
    assert _binomial_ok((keep[:, 1:] == keep[:, :-1]).sum(), n * (units - 1), agree)
    assert _binomial_ok((keep[1:] == keep[:-1]).sum(), (n - 1) * units, agree)


def _dropout_trainer(net, batch_size, n_threads, rates, seed, epoch):
    W, b, acts = net._params()
    trainer = _engine.Trainer(W, b, acts, _engine.LOSS_CODES[net.loss], batch_size, n_threads,
                              _config.kernel_code(), _engine.OPTIMIZER_CODES["none"],
                              keep_gradients=True, dropout=rates, seed=seed)
    trainer.set_epoch(epoch)
    return trainer


DROPOUT_RATES = [0.3, 0.6, 0.0]


@pytest.mark.parametrize("n_threads", [1, 2])
def test_dropout_outputs_follow_each_samples_mask(kernel, dtype, n_threads):
    """Whatever the batch position of a sample or the thread count: its row
    is A / (1 - rate) where its mask keeps a unit, 0 elsewhere."""
    net = make_net((6, 150, 40, 3), ("tanh", "relu", "softmax"), loss="cross_entropy",
                   dtype=dtype)
    X, y = _data("softmax-ce", 60)
    T = targets("cross_entropy", y % 3, 3).astype(dtype)
    Xd = X.astype(dtype)
    seed, epoch = 2 ** 63 + 12345, 4
    rng = np.random.default_rng(0)
    for perm in (np.arange(60), rng.permutation(60), rng.permutation(60)[:37]):
        trainer = _dropout_trainer(net, len(perm), n_threads, DROPOUT_RATES, seed, epoch)
        trainer.run_epoch(Xd, T, perm)
        for l, rate in enumerate(DROPOUT_RATES):
            A, out = (a[:len(perm)] for a in trainer.layer_outputs[l])
            if rate == 0:
                assert out is trainer.layer_outputs[l][1] or np.shares_memory(A, out)
                continue
            keep = ref.dropout_keep_mask(seed, epoch, l, perm, A.shape[1], rate)
            expected = np.where(keep, A * dtype(1 / (1 - rate)), dtype(0))
            np.testing.assert_array_equal(out, expected, err_msg=f"layer {l}")


def test_dropout_preserves_the_mean(dtype):
    """Identical samples: averaged over them, the dropped output is the output."""
    rate, n = 0.4, 4000
    net = make_net((3, 50, 2), ("sigmoid", "linear"), dtype=dtype)
    X = np.tile([[0.5, -1.0, 2.0]], (n, 1)).astype(dtype)
    trainer = _dropout_trainer(net, n, 1, [rate, 0.0], 7, 0)
    trainer.run_epoch(X, np.zeros((n, 2), dtype))
    A, out = trainer.layer_outputs[0]
    ratio = out.astype(np.float64).mean(axis=0) / A[0]
    # the kept fraction times 1 / (1 - rate), within 5 binomial sigmas
    bound = SIGMAS * np.sqrt(rate * (1 - rate) / n) / (1 - rate)
    assert np.all(np.abs(ratio - 1) <= bound), ratio


def masked_gradient_bound(W, b, acts, loss, X, T, mult, dtype):
    """conftest.gradient_bound's first-order error bounds, with layer outputs and
    deltas multiplied by the dropout factors ``mult`` (one rounding more)."""
    e = eps(dtype)
    n = X.shape[0]
    _, grads = ref.gradients(W, b, acts, loss, X, T, dropout=mult)
    outs, reads = ref.forward(W, b, acts, X, mult)
    A, EA = X, np.zeros_like(X)
    Eouts, Ereads = [], []
    for l, (Wl, bl, (act, alpha)) in enumerate(zip(W, b, acts)):
        mag = np.abs(A) @ np.abs(Wl) + (0 if bl is None else np.abs(bl))
        Ez = EA @ np.abs(Wl) + rtol(dtype, Wl.shape[0]) * mag
        if act == "softmax":
            E = 2 * outs[l] * Ez.max(axis=1, keepdims=True) + FUNC_ULPS * e * outs[l]
        else:
            E = _lip(act, alpha) * Ez + FUNC_ULPS * e * np.abs(outs[l])
        Eouts.append(E)
        if mult[l] is not None:
            E = E * mult[l] + e * np.abs(reads[l])
        Ereads.append(E)
        A, EA = reads[l], E
    O, EO = outs[-1], Eouts[-1]
    act, alpha = acts[-1]
    assert loss == "cross_entropy" or act != "softmax"
    if loss == "cross_entropy":
        D = (O - T) / n
        ED = EO / n + FUNC_ULPS * e * np.abs(D)
    else:
        d = ref.activation_derivative(act, O, alpha)
        D = (O - T) * d / n
        ED = (EO * np.abs(d) + np.abs(O - T) * DLIP[act] * EO) / n + FUNC_ULPS * e * np.abs(D)
    Ds, EDs = [None] * len(W), [None] * len(W)
    Ds[-1], EDs[-1] = D, ED
    for l in range(len(W) - 1, 0, -1):
        pact, palpha = acts[l - 1]
        d = ref.activation_derivative(pact, outs[l - 1], palpha)
        P = Ds[l] @ W[l].T
        EP = EDs[l] @ np.abs(W[l]).T + rtol(dtype, W[l].shape[1]) * (np.abs(Ds[l]) @ np.abs(W[l]).T)
        Dl = P * d
        EDl = EP * np.abs(d) + np.abs(P) * DLIP[pact] * Eouts[l - 1] + FUNC_ULPS * e * np.abs(Dl)
        if mult[l - 1] is not None:
            Dl = Dl * mult[l - 1]
            EDl = EDl * mult[l - 1] + e * np.abs(Dl)
        Ds[l - 1], EDs[l - 1] = Dl, EDl
    inputs, Einputs = [X] + reads[:-1], [np.zeros_like(X)] + Ereads[:-1]
    bounds = []
    for A, EA, D, ED, bl in zip(inputs, Einputs, Ds, EDs, b):
        EW = np.abs(A).T @ ED + EA.T @ np.abs(D) + rtol(dtype, n) * (np.abs(A).T @ np.abs(D))
        Eb = None if bl is None else ED.sum(axis=0) + rtol(dtype, n) * np.abs(D).sum(axis=0)
        bounds.append((EW, Eb))
    return grads, bounds


DROPOUT_ARCHS = {
    "tanh-relu-softmax": ((6, 150, 40, 3), ("tanh", "relu", "softmax"), "cross_entropy",
                          [0.3, 0.6, 0.0]),
    "sigmoid-elu-mse": ((4, 9, 17, 2), ("sigmoid", "elu", "linear"), "mse", [0.0, 0.5, 0.0]),
}


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", DROPOUT_ARCHS)
def test_dropout_gradients_against_reference(kernel, dtype, arch, n_threads):
    sizes, acts_, loss, rates = DROPOUT_ARCHS[arch]
    net = make_net(sizes, acts_, loss=loss, dtype=dtype)
    rng = np.random.default_rng(5)
    n = 45
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    y = random_targets(rng, loss, n, sizes[-1])
    T = targets(loss, y, sizes[-1])
    perm = rng.permutation(n)
    seed, epoch = 99, 3
    trainer = _dropout_trainer(net, n, n_threads, rates, seed, epoch)
    trainer.run_epoch(X, T.astype(dtype), perm)
    W, b, acts = params64(net)
    mult = ref.dropout_multipliers(seed, epoch, rates, perm, sizes[1:], dtype)
    grads, bounds = masked_gradient_bound(W, b, acts, loss, X[perm].astype(np.float64), T[perm],
                                          mult, dtype)
    for l, ((rW, rb), (EW, Eb)) in enumerate(zip(grads, bounds)):
        assert_within(trainer.grad_W[l], rW, EW, f"dW[{l}]")
        if rb is not None:
            assert_within(trainer.grad_b[l], rb, Eb, f"db[{l}]")
    # and the mask matters: without it the gradient is another one
    _, plain = ref.gradients(W, b, acts, loss, X[perm].astype(np.float64), T[perm])
    assert not np.allclose(plain[0][0], grads[0][0])


def test_no_dropout_when_predicting(dtype):
    def make(rate):
        return fn.Network([fn.Dense(5, 30, activation="relu", dropout=rate),
                           fn.Dense(30, 3, activation="softmax")],
                          loss="cross_entropy", dtype=dtype, seed=0)

    dropped, plain = make(0.5), make(0.0)
    X, y = _data("softmax-ce", 20)
    X, y = X[:, :5], y % 3
    np.testing.assert_array_equal(dropped.predict(X), plain.predict(X))
    for a, b in zip(dropped.forward(X), plain.forward(X)):
        np.testing.assert_array_equal(a, b)
    assert dropped.evaluate(X, y) == plain.evaluate(X, y)
    for (a, _), (b, _) in zip(dropped.gradients(X, y), plain.gradients(X, y)):
        np.testing.assert_array_equal(a, b)
    # but training does drop, with a new mask each epoch
    h1 = dropped.fit(X, y, epochs=2, batch_size=20, optimizer=fn.SGD(lr=1e-6), shuffle=False)
    h2 = plain.fit(X, y, epochs=2, batch_size=20, optimizer=fn.SGD(lr=1e-6), shuffle=False)
    assert h1.history["loss"][0] != h2.history["loss"][0]
    assert h1.history["loss"][0] != pytest.approx(h1.history["loss"][1], rel=1e-4)
    assert dropped._epochs_trained == 2


def test_dropout_seeded_training_is_reproducible():
    X, y = _data("softmax-ce", 64)

    def train(seed):
        net = fn.Network([fn.Dense(6, 40, activation="relu", dropout=0.5),
                          fn.Dense(40, 4, activation="softmax")],
                         loss="cross_entropy", dtype="float64", seed=seed)
        net.fit(X, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1))
        return net.layers[0].W

    np.testing.assert_array_equal(train(3), train(3))
    assert not np.array_equal(train(3), train(4))


@pytest.mark.parametrize("rate", [1.0, -0.1, "0.5", True, float("nan")])
def test_dropout_rate_errors(rate):
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\)"):
        fn.Dense(3, 4, dropout=rate)


def test_dropout_not_on_the_output_layer():
    with pytest.raises(ValueError, match="dropout is not allowed on the output layer"):
        fn.Network([fn.Dense(3, 4, activation="relu"), fn.Dense(4, 2, dropout=0.5)])
    assert fn.Dense(3, 4, dropout=0.25).get_config()["dropout"] == 0.25


# ---------------------------------------------------------------------------
# input noise

R_MAX = np.sqrt(-2.0 * np.log(2.0 ** -53))     # the largest Box-Muller radius, 8.6


def test_input_noise_engine_equals_reference():
    samples = np.array([0, 1, 7, 2 ** 45 + 3])
    for seed, epoch, width in ((0, 0, 1), (2 ** 64 - 1, 5, 8), (77, 2 ** 33, 13)):
        mine = _engine.standard_normal_noise(seed, epoch, samples, width)
        theirs = ref.standard_normal_noise(seed, epoch, samples, width)
        # log, sqrt, cos, sin of the same arguments: a few ulps of the radius
        assert_within(mine, theirs, FUNC_ULPS * eps(np.float64) * R_MAX, "noise")


def test_input_noise_statistics():
    n, width = 40000, 6
    z = _engine.standard_normal_noise(3, 0, np.arange(n), width)
    N = z.size
    assert abs(z.mean()) <= SIGMAS / np.sqrt(N)
    assert abs(z.var() - 1) <= SIGMAS * np.sqrt(2.0 / N)
    from scipy.stats import norm
    for t in (1.0, 2.0, 3.0):
        assert _binomial_ok(np.sum(np.abs(z) > t), N, 2 * norm.sf(t)), t
    for a, b in ((0, 1), (1, 2), (0, 5)):          # within and across Box-Muller pairs
        assert abs(np.mean(z[:, a] * z[:, b])) <= SIGMAS / np.sqrt(n)
    other = _engine.standard_normal_noise(3, 1, np.arange(n), width)   # next epoch
    assert abs(np.mean(z * other)) <= SIGMAS / np.sqrt(N)
    assert abs(np.mean(z[1:] * z[:-1])) <= SIGMAS / np.sqrt(N)        # neighbouring samples


@pytest.mark.parametrize("n_threads", [1, 2])
def test_noisy_inputs_per_sample(kernel, dtype, n_threads):
    """Each training row is X[sample] + sigma * z(sample), in any batch
    position and with any thread count; X stays untouched."""
    sigma, seed, epoch = 0.3, 2 ** 62 + 1, 2
    net = make_net((5, 150, 3), ("relu", "softmax"), loss="cross_entropy", dtype=dtype)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(50, 5)).astype(dtype)
    X0 = X.copy()
    T = targets("cross_entropy", rng.integers(0, 3, 50), 3).astype(dtype)
    seen = {}
    for perm in (None, rng.permutation(50), rng.permutation(50)[:21]):
        rows = np.arange(50) if perm is None else perm
        for threads in (n_threads, 3 - n_threads):
            trainer = _dropout_trainer(net, len(rows), threads, None, seed, epoch)
            trainer.set_input_noise(sigma)
            trainer.run_epoch(X, T, perm)
            got = trainer.batch_inputs[:len(rows)]
            z = ref.standard_normal_noise(seed, epoch, rows, 5)
            expected = X0[rows].astype(np.float64) + sigma * z
            bound = eps(dtype) * np.abs(expected) + sigma * FUNC_ULPS * eps(np.float64) * R_MAX
            assert_within(got, expected, bound, "noisy inputs")
            for r, sample in enumerate(rows):
                if sample in seen:
                    np.testing.assert_array_equal(got[r], seen[sample])
                seen[sample] = got[r].copy()
    np.testing.assert_array_equal(X, X0)


def test_fit_with_input_noise():
    X, y = _data("softmax-ce", 64)
    X = np.ascontiguousarray(X, dtype=np.float32)     # used by the engine without a copy
    X0 = X.copy()

    def train(noise, seed=0):
        net = fn.Network([fn.Dense(6, 20, activation="tanh"),
                          fn.Dense(20, 4, activation="softmax")],
                         loss="cross_entropy", seed=seed)
        hist = net.fit(X, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1),
                       input_noise=noise)
        return net.layers[0].W, hist.history["loss"]

    W_plain, loss_plain = train(0.0)
    W_noisy, loss_noisy = train(0.5)
    np.testing.assert_array_equal(X, X0)
    assert not np.array_equal(W_plain, W_noisy) and loss_plain != loss_noisy
    np.testing.assert_array_equal(train(0.5)[0], W_noisy)    # seeded: reproducible
    with pytest.raises(ValueError, match="input_noise must be a finite number >= 0"):
        fn.Network([fn.Dense(6, 4, activation="softmax")], loss="cross_entropy").fit(
            X, y, input_noise=-1.0)


# ---------------------------------------------------------------------------
# an epoch in parts (per-batch callbacks) keys everything on X's rows


@pytest.mark.parametrize("shuffled", [False, True])
def test_epoch_in_parts_equals_whole_epoch(kernel, shuffled):
    """run_epoch(X, T, perm, start=, stop=) over batch-aligned parts trains
    bit for bit like one call, with sample weights, dropout and input noise."""
    rng = np.random.default_rng(8)
    n, batch = 70, 8
    X = rng.normal(size=(n, 6)).astype(np.float32)
    T = targets("cross_entropy", rng.integers(0, 3, n), 3).astype(np.float32)
    sw = rng.uniform(0.0, 2.0, n)
    perm = rng.permutation(n) if shuffled else None

    def trained(parts):
        net = fn.Network([fn.Dense(6, 40, activation="relu", dropout=0.3),
                          fn.Dense(40, 3, activation="softmax")], loss="cross_entropy", seed=1)
        opt = fn.SGD(lr=0.1, momentum=0.9)
        trainer = net._trainer(batch, 2, opt, sample_weight=sw, l2=1e-3, input_noise=0.2)
        trainer.set_optimizer(opt.engine_args())
        trainer.set_epoch(3)
        total = 0.0
        for start, stop in parts:
            total += trainer.run_epoch(X, T, perm, start=start, stop=stop)[0]
        return net, total

    whole, loss = trained([(0, n)])
    split, loss_parts = trained([(0, 16), (16, 24), (24, 64), (64, n)])
    for a, b in zip(whole.layers, split.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)
    assert loss == pytest.approx(loss_parts, rel=1e-6)
    with pytest.raises(ValueError, match="0 <= start <= stop"):
        whole._trainer(batch, 1, fn.SGD()).run_epoch(X, T, perm, start=5, stop=n + 1)
