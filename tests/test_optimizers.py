"""Every optimizer's update rule in the engine against fastnn._reference.

Covers:

* the engine's fused per-tile update (``_engine.optimizer_update`` runs
  ``optimizer_tile``, the code every fit uses) of SGD, momentum, Nesterov,
  Adam (both bias corrections), AdamW, RMSprop (with and without momentum)
  and RProp, over several steps of given gradients (with sign changes and
  exact zeros), with and without the L2/L1 penalty, for weights and for
  biases (never penalised or decayed), float32 and float64, against the
  NumPy update rules of ``_reference`` evaluated in float64;
* the same optimizers through ``fit`` (float64, several steps, state kept
  across calls to ``fit``) against reference gradients + update rules;
  RProp always trains full batch;
* 1 and 2 threads bit-identical (in test_training.py, with the other
  training features);
* constructor checks, and every constructor argument stored as an attribute
  of the same name (save/load rebuilds optimizers from them).

Tolerances.  Update rules: the engine evaluates each rule in its dtype, the
reference in float64 from the same (dtype-rounded) values.  Each step is a
few (< K_OPS = 16) roundings of terms whose sizes are tracked alongside the
reference with every term taken in absolute value (``magnitude``: |P| plus,
per step, |lr * g|, |momentum * v|, lr m_hat / (sqrt(v_hat) + eps), ...);
to first order the error after T steps is at most (K_OPS + T) * eps *
magnitude (every term's rounding, plus the rounding of P at each step).
Through ``fit``: as in test_engine_vs_reference, the sum over steps of the
update's sensitivity to its gradient times conftest.gradient_bound, plus the
rounding of the update, times AMPLIFY = 2 for the dynamics.
"""
import inspect

import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine
from fastnn import _reference as ref

from conftest import assert_within, eps, gradient_bound, make_net, params64, targets

K_OPS = 16
AMPLIFY = 2.0

OPTIMIZERS = {
    "sgd": lambda: fn.SGD(lr=0.1),
    "momentum": lambda: fn.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: fn.SGD(lr=0.05, momentum=0.8, nesterov=True),
    "adam": lambda: fn.Adam(lr=0.01),
    "adam-step-size": lambda: fn.Adam(lr=0.01, bias_correction="step_size"),
    "adamw": lambda: fn.AdamW(lr=0.01, weight_decay=0.5),
    "rmsprop": lambda: fn.RMSprop(lr=0.01),
    "rmsprop-momentum": lambda: fn.RMSprop(lr=0.01, rho=0.9, momentum=0.7),
    "rprop": lambda: fn.RProp(),
}


class ReferenceOptimizer:
    """One optimizer's update rule (from _reference) on one parameter array,
    with the magnitude of its terms for the error bound (see the docstring)."""

    def __init__(self, opt, P, l2=0.0, l1=0.0, is_weight=True):
        self.opt, self.P = opt, P.astype(np.float64)
        self.l2, self.l1 = (l2, l1) if is_weight else (0.0, 0.0)
        self.is_weight = is_weight
        self.s1 = np.full_like(self.P, opt._initial_state(0))
        self.s2 = np.full_like(self.P, opt._initial_state(1))
        self.mag = np.abs(self.P)           # |P| plus every step's terms
        self.m1 = np.zeros_like(self.P)     # magnitude of s1 (momentum-like states)
        self.m2 = np.zeros_like(self.P)
        self.step = 0

    def update(self, G):
        o, P, lr = self.opt, self.P, getattr(self.opt, "lr", 0.0)
        self.step += 1
        t = self.step
        g = ref.penalised_gradient(P, G, self.l2, self.l1)
        mg = np.abs(G) + self.l2 * np.abs(P) + self.l1 * (P != 0)
        if isinstance(o, fn.SGD) and o.momentum == 0:
            new = ref.sgd_update(P, g, lr)
            self.mag += lr * mg
        elif isinstance(o, fn.SGD):
            new, self.s1 = ref.momentum_update(P, g, self.s1, lr, o.momentum, o.nesterov)
            self.m1 = o.momentum * self.m1 + lr * mg
            self.mag += self.m1 + (o.momentum * self.m1 + lr * mg if o.nesterov else 0)
        elif isinstance(o, (fn.Adam, fn.AdamW)):
            if isinstance(o, fn.AdamW):
                wd = o.weight_decay if self.is_weight else 0.0
                new, self.s1, self.s2 = ref.adamw_update(P, g, self.s1, self.s2, t, lr,
                                                         o.beta1, o.beta2, o.eps, wd)
                self.mag += lr * wd * np.abs(P)
            else:
                new, self.s1, self.s2 = ref.adam_update(P, g, self.s1, self.s2, t, lr, o.beta1,
                                                        o.beta2, o.eps, o.bias_correction)
            self.m1 = o.beta1 * self.m1 + (1 - o.beta1) * mg
            v_hat = self.s2 / (1 - o.beta2 ** t)
            self.mag += lr * self.m1 / (1 - o.beta1 ** t) / (np.sqrt(v_hat) + o.eps)
        elif isinstance(o, fn.RMSprop):
            new, self.s1, self.s2 = ref.rmsprop_update(P, g, self.s1, self.s2, lr, o.rho, o.eps,
                                                       o.momentum)
            self.m2 = o.momentum * self.m2 + mg / (np.sqrt(self.s1) + o.eps)
            self.mag += lr * self.m2
        elif isinstance(o, fn.RProp):
            new, self.s1, self.s2 = ref.rprop_update(P, g, self.s1, self.s2, o.increase_factor,
                                                     o.decrease_factor, o.delta_min, o.delta_max)
            self.mag += self.s2
        else:
            raise AssertionError(o)
        self.P = new

    def bound(self, dtype):
        return (K_OPS + self.step) * eps(dtype) * self.mag


def _engine_state(opt, shape, dtype):
    if opt.n_state == 0:
        return None, None
    s = [np.full(shape, opt._initial_state(i), dtype) for i in range(opt.n_state)]
    return s[0], (s[1] if opt.n_state > 1 else None)


def _gradients(rng, shape, steps):
    """Gradients of moderate size with sign changes, and some exact zeros."""
    G = rng.normal(size=(steps,) + shape) * rng.choice([0.01, 1.0], size=(steps,) + shape)
    G[:, 0, 0] = 0.0
    G[2:4, -1, :] *= -1
    return G


@pytest.mark.parametrize("is_weight", [True, False], ids=["weights", "biases"])
@pytest.mark.parametrize("penalty", [(0.0, 0.0), (0.1, 0.0), (0.05, 0.01)],
                         ids=["none", "l2", "l2+l1"])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_update_rule(name, dtype, penalty, is_weight):
    rng = np.random.default_rng(7)
    shape, steps = (5, 19), 8
    opt = OPTIMIZERS[name]()
    P = rng.normal(size=shape).astype(dtype)
    P[1, 3] = 0.0                                     # sign(0) = 0 for L1
    reference = ReferenceOptimizer(opt, P, *penalty, is_weight=is_weight)
    S1, S2 = _engine_state(opt, shape, dtype)
    code = _engine.OPTIMIZER_CODES[opt.code]
    for t, G in enumerate(_gradients(rng, shape, steps), start=1):
        G = G.astype(dtype)
        reference.update(G.astype(np.float64))
        P_old = P.astype(np.float64)
        sums = _engine.optimizer_update(code, opt.engine_args(), P, G.copy(), S1, S2, step=t,
                                        l2=penalty[0], l1=penalty[1], is_weight=is_weight)
        assert_within(P, reference.P, reference.bound(dtype), f"{name} step {t}")
        if is_weight and penalty != (0.0, 0.0):
            # the loss's penalty sums, of the weights before the step (in double)
            np.testing.assert_allclose(sums, (np.sum(P_old ** 2), np.sum(np.abs(P_old))),
                                       rtol=P.size * eps(np.float64))
        else:
            assert sums == (0.0, 0.0)
    assert P.dtype == dtype


def test_penalty_sums_are_of_the_old_weights():
    P = np.array([[1.0, -2.0, 0.0]])
    sums = _engine.optimizer_update(_engine.OPTIMIZER_CODES["sgd"], {"lr": 1.0}, P,
                                    np.zeros_like(P), l2=0.1, l1=0.1)
    assert sums == (5.0, 3.0)
    np.testing.assert_allclose(P, [[1.0 - 0.1 - 0.1, -2.0 + 0.2 + 0.1, 0.0]], rtol=1e-15)


def test_rprop_follows_the_paper():
    """iRPROP-: grow on agreement, shrink and skip on a sign change, keep on zero."""
    opt = fn.RProp(delta_zero=0.1)
    P = np.zeros((1, 4))
    S1, S2 = _engine_state(opt, P.shape, np.float64)
    code = _engine.OPTIMIZER_CODES["rprop"]
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[1.0, -1.0, 0.0, 1.0]]), S1, S2)
    np.testing.assert_array_equal(P, [[-0.1, 0.1, 0.0, -0.1]])     # first step: delta_zero
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[2.0, 1.0, 1.0, 0.0]]), S1, S2)
    # agree: 0.1 * 1.2; flip: no step, delta 0.05; after zero: delta kept; zero: no step
    np.testing.assert_allclose(P, [[-0.1 - 0.12, 0.1, -0.1, -0.1]], rtol=1e-15)
    np.testing.assert_allclose(S2, [[0.12, 0.05, 0.1, 0.1]], rtol=1e-15)
    np.testing.assert_array_equal(S1, [[2.0, 0.0, 1.0, 0.0]])
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[1.0, 1.0, 1.0, 1.0]]), S1, S2)
    # after the skipped step the previous gradient is 0: delta kept, step taken
    np.testing.assert_allclose(P, [[-0.22 - 0.144, 0.05, -0.1 - 0.12, -0.2]], rtol=1e-15)
    # delta stays within [delta_min, delta_max]
    opt = fn.RProp(delta_max=0.15, delta_min=0.08)
    P = np.zeros((1, 2))
    S1, S2 = _engine_state(opt, P.shape, np.float64)
    for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]):
        _engine.optimizer_update(code, opt.engine_args(), P, np.array([g]), S1, S2)
    np.testing.assert_allclose(S2, [[0.15, 0.08]], rtol=1e-15)


# ---------------------------------------------------------------------------
# FANN's rules against a NumPy transcription of FANN's C (fann_train.c)

FANN_RULES = {"rprop_fann": lambda: fn.RProp(variant="fann"),
              "quickprop": lambda: fn.Quickprop(lr=0.4, mu=1.5, decay=-0.01)}


def _fann_transcription(opt, P, G, S1, S2, n):
    """The FANN function of ``opt`` in float64 from the engine's state: FANN's
    slopes are -n * gradient, its previous slopes -n * S1 (RProp keeps the
    gradient) or n * S1 (Quickprop keeps FANN's slope / n).  Returns the
    new (P, S1, S2) in the engine's terms, and the terms of the update's
    error bound: the magnitude of the step, and Quickprop's condition
    number of its quadratic estimate."""
    W, prev_steps = P.astype(np.float64), S2.astype(np.float64)
    slopes = -n * G.astype(np.float64)
    if isinstance(opt, fn.RProp):
        prev_slopes = -n * S1.astype(np.float64)
        W, steps, kept = ref.fann_irpropm_update(W, slopes, prev_steps, prev_slopes,
                                                 opt.increase_factor, opt.decrease_factor,
                                                 opt.delta_min, opt.delta_max)
        return W, kept / -n, steps, np.abs(steps), np.ones_like(W)
    prev_slopes = n * S1.astype(np.float64)
    old_steps = prev_steps.copy()
    cur = slopes + opt.decay * W
    W, steps, kept = ref.fann_quickprop_update(W, slopes, prev_steps, prev_slopes.copy(), n,
                                               opt.lr, opt.mu, opt.decay)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = 1 + (np.abs(prev_slopes) + np.abs(cur)) / np.abs(prev_slopes - cur)
        # the slope's own rounding, relative: its terms against their sum
        terms = np.abs(slopes) + np.abs(opt.decay * P.astype(np.float64))
        cond *= np.where(terms > 0, terms / np.abs(cur), 1.0)
    cond = np.where(np.abs(old_steps) > 0.001, cond, 1.0)
    return W, kept / n, steps, np.abs(steps) + opt.lr * np.abs(cur) / n, cond


def _fann_ambiguous(opt, S1, S2, G, n, dtype):
    """Where Quickprop's choice between its largest step and the quadratic
    estimate is too close to call in ``dtype`` (the engine and FANN's
    transcription may then rightly differ)."""
    if not isinstance(opt, fn.Quickprop):
        return np.zeros(G.shape, bool)
    prev, cur = S1.astype(np.float64), -G.astype(np.float64)
    shrink = opt.mu / (1 + opt.mu)
    return np.abs(cur - shrink * prev) <= 16 * eps(dtype) * (np.abs(cur) + np.abs(prev) + 1e-300)


@pytest.mark.parametrize("is_weight", [True, False], ids=["weights", "biases"])
@pytest.mark.parametrize("name", FANN_RULES)
def test_fann_rule_against_fann_transcription(name, dtype, is_weight):
    """Step by step from the engine's own state, so that every step is checked
    against FANN's code within that step's rounding (per dtype)."""
    rng = np.random.default_rng(3)
    shape, steps, n = (5, 19), 12, 13
    opt = FANN_RULES[name]()
    P = rng.normal(size=shape).astype(dtype)
    P[0, 1], P[0, 2] = 1499.97, -1499.93            # FANN's bound of +-1500
    S1, S2 = _engine_state(opt, shape, dtype)
    code = _engine.OPTIMIZER_CODES[opt.code]
    e = eps(dtype)
    grads = _gradients(rng, shape, steps)
    grads[5:, 1, :] = grads[4, 1, :]                 # steady slopes: Quickprop's largest steps
    for t, G in enumerate(grads.astype(dtype), start=1):
        W_ref, S1_ref, S2_ref, mag, cond = _fann_transcription(opt, P, G, S1, S2, n)
        slope_mag = np.abs(S1_ref) + np.abs(G) + abs(getattr(opt, "decay", 0)) * np.abs(P) / n
        skip = _fann_ambiguous(opt, S1, S2, G, n, dtype)
        _engine.optimizer_update(code, opt.engine_args(), P, G.copy(), S1, S2, step=t,
                                 is_weight=is_weight, weight_sum=n)
        bound = np.where(skip, np.inf, 8 * e * (np.abs(W_ref) + mag * cond))
        assert_within(P, W_ref, bound, f"{name} weights, step {t}")
        assert_within(S2, S2_ref, np.where(skip, np.inf, 8 * e * mag * cond),
                      f"{name} steps, step {t}")
        assert_within(S1, S1_ref, np.where(skip, np.inf, 8 * e * slope_mag),
                      f"{name} slopes, step {t}")
    assert np.abs(P).max() <= 1500


def test_rprop_fann_quirks():
    """FANN's iRPROP-: the first step is delta_zero * 1.2 (0 * g >= 0 grows it);
    a zero gradient and a sign change step by +delta; steps never below 1e-4."""
    opt = fn.RProp(variant="fann", delta_zero=0.1)
    P = np.zeros((1, 4))
    S1, S2 = _engine_state(opt, P.shape, np.float64)
    code = _engine.OPTIMIZER_CODES["rprop_fann"]
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[1.0, -1.0, 0.0, 1.0]]),
                             S1, S2)
    np.testing.assert_allclose(P, [[-0.12, 0.12, 0.12, -0.12]], rtol=1e-15)
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[1.0, 1.0, 0.0, -1.0]]),
                             S1, S2)
    # agree: 0.12 * 1.2 down; flip: 0.06 up (FANN: slope 0 steps by +delta)
    np.testing.assert_allclose(P, [[-0.12 - 0.144, 0.12 + 0.06, 0.12 + 0.144, -0.12 + 0.06]],
                               rtol=1e-15)
    np.testing.assert_array_equal(S1, [[1.0, 0.0, 0.0, 0.0]])
    S2[...] = 0.0                                      # FANN's floor of a step: 1e-4
    opt = fn.RProp(variant="fann", delta_min=0.0)
    before = P.copy()
    _engine.optimizer_update(code, opt.engine_args(), P, np.array([[-1.0, 1.0, 1.0, 1.0]]),
                             S1, S2)
    np.testing.assert_allclose(S2, [[5e-5, 1.2e-4, 1.2e-4, 1.2e-4]], rtol=1e-12)
    np.testing.assert_allclose(P - before, [[5e-5, -1.2e-4, -1.2e-4, -1.2e-4]], rtol=1e-9)


def test_quickprop_first_step_is_gradient_descent():
    """With no previous step, Quickprop's step is lr * slope: lr * (-g + decay * w / n)."""
    opt = fn.Quickprop(lr=0.5, decay=-0.01)
    P = np.array([[1.0, -2.0, 0.0]])
    S1, S2 = _engine_state(opt, P.shape, np.float64)
    G = np.array([[0.2, -0.4, 0.0]])
    _engine.optimizer_update(_engine.OPTIMIZER_CODES["quickprop"], opt.engine_args(), P,
                             G.copy(), S1, S2, weight_sum=4)
    slope = -G + (-0.01) * np.array([[1.0, -2.0, 0.0]]) / 4
    np.testing.assert_allclose(P, [[1.0, -2.0, 0.0]] + 0.5 * slope, rtol=1e-15)
    np.testing.assert_allclose(S1, slope, rtol=1e-15)
    np.testing.assert_allclose(S2, 0.5 * slope, rtol=1e-15)


@pytest.mark.parametrize("name", FANN_RULES)
def test_fann_rules_resume_from_a_model_file(name, tmp_path):
    """Full batch, one step per epoch; saved and loaded mid-way (state and
    step count in the model file), training goes on as if never stopped."""
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))

    def make():
        return fn.Network([fn.Dense(3, 6, activation="tanh"), fn.Dense(6, 2)], loss="mse",
                          dtype="float64", seed=3)

    straight, part = make(), make()
    straight.fit(X, y, epochs=6, batch_size=4, optimizer=FANN_RULES[name]())
    part.fit(X, y, epochs=2, batch_size=4, optimizer=FANN_RULES[name]())
    part.save(tmp_path / "m.fnn")
    resumed = fn.load(tmp_path / "m.fnn")
    assert resumed.optimizer.step == 2 and repr(resumed.optimizer) == repr(part.optimizer)
    resumed.fit(X, y, epochs=4, batch_size=4)
    assert resumed.optimizer.step == straight.optimizer.step == 6
    for a, b in zip(resumed.layers, straight.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)


def test_engine_takes_the_struct_and_returns_its_steps():
    """Trainer.set_optimizer takes Optimizer.engine_args() as the rule's struct
    (every field, no other); run_epoch returns the steps it took, and adds
    them to ``counts``: Python never recounts them."""
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    net = fn.Network([fn.Dense(3, 2)], loss="mse", dtype="float64", seed=0)
    opt = fn.SGD(lr=0.1, momentum=0.5)
    trainer = net._trainer(8, 1, opt)
    with pytest.raises(TypeError, match=r"unknown hyper-parameters \['beta1'\]"):
        trainer.set_optimizer(dict(opt.engine_args(), beta1=0.9))
    with pytest.raises(ValueError, match="momentum"):
        trainer.set_optimizer(dict(lr=0.1))
    trainer.set_optimizer(opt.engine_args(), step=opt.step)
    counts = np.zeros(2, np.int64)
    _, done, steps, status = trainer.run_epoch(X, T, None, start=2, stop=20, counts=counts)
    assert (done, steps, status) == (18, 3, "ok")
    assert list(counts) == [3, 3] and trainer.n_steps == 3


# ---------------------------------------------------------------------------
# through fit

FIT_ARCHS = {
    "tanh-softmax": ((7, 150, 4), ("tanh", "softmax"), "cross_entropy", True),
    "nobias-sigmoid-mse": ((5, 11, 3), ("sigmoid", "linear"), "mse", (False, True)),
}


def _sensitivity(opt, reference, l, i):
    """|d update / d gradient| of the step just made (see the module docstring)."""
    if isinstance(opt, (fn.Adam, fn.AdamW)):
        r = reference[l][i]
        v_hat = r.s2 / (1 - opt.beta2 ** r.step)
        return 3 * opt.lr / (np.sqrt(v_hat) + opt.eps)
    if isinstance(opt, fn.RMSprop):
        return 3 * opt.lr / (np.sqrt(reference[l][i].s1) + opt.eps) / (1 - opt.momentum)
    if isinstance(opt, fn.RProp):
        return 0.0          # only the sign counts; checked to be unambiguous
    return opt.lr * (1 + opt.momentum) / (1 - opt.momentum)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("arch", FIT_ARCHS)
@pytest.mark.parametrize("name", ["adamw", "rmsprop", "rmsprop-momentum", "rprop",
                                  "adam-step-size"])
def test_fit_against_reference_float64(kernel, name, arch, n_threads):
    dtype = np.float64
    sizes, acts_, loss, use_bias = FIT_ARCHS[arch]
    net = make_net(sizes, acts_, loss=loss, dtype=dtype, seed=0, use_bias=use_bias)
    rng = np.random.default_rng(1)
    n, batch_size, epochs = 30, 7, 3
    X = rng.normal(size=(n, sizes[0]))
    y = (rng.integers(0, sizes[-1], n) if loss == "cross_entropy"
         else rng.normal(size=(n, sizes[-1])))
    W, b, acts = params64(net)
    T = targets(loss, y, sizes[-1])
    optimizer = OPTIMIZERS[name]()
    full = optimizer.full_batch
    batches = [np.arange(n)] if full else [np.arange(s, min(s + batch_size, n))
                                           for s in range(0, n, batch_size)]
    params = [[W[l], b[l]] for l in range(len(W))]
    reference = [[None if p is None else ReferenceOptimizer(optimizer, p, is_weight=(i == 0))
                  for i, p in enumerate(pl)] for pl in params]
    bounds = [[None if p is None else np.zeros_like(p) for p in pl] for pl in params]
    e = eps(dtype)
    for _ in range(epochs):
        for idx in batches:
            cur_W = [r[0].P for r in reference]
            cur_b = [None if r[1] is None else r[1].P for r in reference]
            _, grads, gb = gradient_bound(cur_W, cur_b, acts, loss, X[idx], T[idx], dtype)
            for l in range(len(params)):
                for i in range(2):
                    r = reference[l][i]
                    if r is None:
                        continue
                    if full:   # the signs must be unambiguous for the comparison to hold
                        assert np.all(np.abs(grads[l][i]) > gb[l][i]), "ambiguous gradient sign"
                    P_old = r.P
                    r.update(grads[l][i])
                    bounds[l][i] += (_sensitivity(optimizer, reference, l, i) * gb[l][i]
                                     + 4 * e * (np.abs(P_old) + np.abs(r.P - P_old)))
    for _ in range(epochs):   # one fit per epoch: the optimizer's state carries over
        net.fit(X, y, epochs=1, batch_size=batch_size, shuffle=False, optimizer=optimizer,
                n_threads=n_threads)
    assert optimizer.step == epochs * len(batches)
    for l, layer in enumerate(net.layers):
        assert_within(layer.W, reference[l][0].P, AMPLIFY * bounds[l][0], f"{name} W[{l}]")
        if reference[l][1] is not None:
            assert_within(layer.b, reference[l][1].P, AMPLIFY * bounds[l][1], f"{name} b[{l}]")


def test_rprop_is_full_batch_and_learns_xor():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.float64)

    def make():
        return fn.Network([fn.Dense(2, 4, activation="tanh"),
                           fn.Dense(4, 1, activation="sigmoid")],
                          loss="binary_cross_entropy", seed=1)

    a, b = make(), make()
    opt_a, opt_b = fn.RProp(), fn.RProp()
    a.fit(X, y, epochs=5, batch_size=1, shuffle=False, optimizer=opt_a)
    b.fit(X, y, epochs=5, batch_size=4, shuffle=False, optimizer=opt_b)
    assert opt_a.step == opt_b.step == 5                   # one step per epoch
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.W, lb.W)
    a.fit(X, y, epochs=300, optimizer=opt_a)
    out = a.predict(X).ravel()
    assert np.all((out > 0.5) == (y > 0.5)), out


# ---------------------------------------------------------------------------
# construction


@pytest.mark.parametrize("opt", [
    fn.SGD(lr=0.3, momentum=0.5, nesterov=True),
    fn.Adam(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7, bias_correction="step_size"),
    fn.AdamW(lr=0.02, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.1),
    fn.RMSprop(lr=0.02, rho=0.9, eps=1e-6, momentum=0.3),
    fn.RProp(increase_factor=1.3, decrease_factor=0.4, delta_min=1e-6, delta_max=10.0,
             delta_zero=0.05),
    fn.RProp(delta_min=1e-6, variant="fann"),
    fn.Quickprop(lr=0.3, mu=2.0, decay=-0.001),
    fn.SGD(lr=0.2),
    fn.Adam(),
], ids=lambda o: repr(o))
def test_constructor_arguments_are_attributes(opt):
    names = list(inspect.signature(type(opt).__init__).parameters)[1:]
    rebuilt = type(opt)(**{name: getattr(opt, name) for name in names})
    assert repr(rebuilt) == repr(opt)
    assert rebuilt.engine_args() == opt.engine_args()
    assert (rebuilt.code, rebuilt.n_state) == (opt.code, opt.n_state)
    # the engine's struct of the rule has exactly these fields
    code = _engine.OPTIMIZER_CODES[opt.code]
    assert _engine.hyper_parameters(code, opt.engine_args()) == opt.engine_args()


@pytest.mark.parametrize("make, match", [
    (lambda: fn.AdamW(weight_decay=-1), "weight_decay must be a finite number >= 0"),
    (lambda: fn.AdamW(beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (lambda: fn.RMSprop(lr=0), "lr must be a finite number > 0"),
    (lambda: fn.RMSprop(rho=1.0), r"rho must be in \[0, 1\)"),
    (lambda: fn.RMSprop(momentum=-0.1), "momentum must be a finite number >= 0"),
    (lambda: fn.RMSprop(eps=0), "eps must be a finite number > 0"),
    (lambda: fn.RProp(increase_factor=1.0), "increase_factor must be > 1"),
    (lambda: fn.RProp(decrease_factor=1.0), r"decrease_factor must be in \(0, 1\)"),
    (lambda: fn.RProp(decrease_factor=0), "decrease_factor must be a finite number > 0"),
    (lambda: fn.RProp(delta_min=2.0, delta_max=1.0), "delta_max must be >= delta_min"),
    (lambda: fn.RProp(delta_zero=0.0), "delta_zero must be a finite number > 0"),
    (lambda: fn.RProp(variant="irprop+"), r"variant must be one of \['paper', 'fann'\]"),
    (lambda: fn.Quickprop(lr=0), "lr must be a finite number > 0"),
    (lambda: fn.Quickprop(mu=-1), "mu must be a finite number > 0"),
    (lambda: fn.Quickprop(decay=float("inf")), "decay must be a finite number"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_rmsprop_state_count_and_rprop_initial_steps():
    assert fn.RMSprop().n_state == 1 and fn.RMSprop(momentum=0.5).n_state == 2
    net = fn.Network([fn.Dense(3, 2)], dtype="float32", seed=0)
    opt = fn.RProp(delta_zero=0.25)
    prev, steps = opt.state_for(net.layers)
    assert np.all(prev[0][0] == 0) and np.all(steps[0][0] == np.float32(0.25))
    assert steps[0][1].shape == (2,) and steps[0][0].dtype == np.float32
