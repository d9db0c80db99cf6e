"""Learning-rate schedules (fastnn.schedules).

Covers: the learning-rate sequence of every schedule against values
computed by hand (constant, step, exponential, cosine with and without
warm-up and min_lr, inverse scaling, lambda, scikit-learn's adaptive rule,
Keras's reduce-on-plateau with cooldown and min_lr); inverse scaling and
the adaptive rule against scikit-learn's own optimizer driven over the same
epochs; that ``fit`` trains each epoch with the scheduled rate (bit-identical
weights to epoch-by-epoch fits with the rate set by hand, SGD with momentum
and Adam, float32 and float64); a schedule continuing across fits; the
adaptive rule stopping training once the rate is at most 1e-6; errors.

Tolerances: rates computed by the same formula in another order may differ
in the last bits: ``rel=4 * eps(float64)``.  Weights are compared bit for
bit: the engine sees the same rate either way.
"""
import math
import types
import warnings

import numpy as np
import pytest

import fastnn as fn

REL = 4 * np.finfo(np.float64).eps

rng = np.random.default_rng(7)
X = rng.normal(size=(8, 3))
Y = rng.normal(size=(8, 2))


def small_net(dtype=np.float64, seed=0):
    return fn.Network([fn.Dense(3, 5, activation="tanh"), fn.Dense(5, 2)], dtype=dtype,
                      seed=seed)


def fit_rates(schedule, epochs, lr=0.1, **kwargs):
    """The learning rate of every epoch when ``fit`` runs ``schedule``."""
    net = small_net()
    hist = net.fit(X, Y, epochs=epochs, batch_size=4, optimizer=fn.SGD(lr=lr),
                   lr_schedule=schedule, **kwargs)
    return hist.history["lr"]


def drive(schedule, values, lr=0.1, monitor="loss", n_samples=8):
    """Run ``schedule``'s hooks over epochs whose monitored values are
    ``values``; returns the rate of every epoch and the fake model."""
    model = types.SimpleNamespace(optimizer=fn.SGD(lr=lr), stop_training=False, layers=[])
    schedule.set_model(model)
    schedule.set_params({"metrics": ["loss", "val_loss", "val_accuracy", "lr"],
                         "do_validation": True, "n_samples": n_samples})
    schedule.on_train_begin({})
    rates = []
    for epoch, value in enumerate(values):
        schedule.on_epoch_begin(epoch, {})
        rates.append(model.optimizer.lr)
        schedule.on_epoch_end(epoch, {monitor: value})
        if model.stop_training:
            break
    return rates, model


# -- sequences, by hand ---------------------------------------------------------

def test_constant():
    assert fit_rates(fn.ConstantLR(), 3, lr=0.1) == [0.1, 0.1, 0.1]
    assert fit_rates(fn.ConstantLR(lr=0.3), 3, lr=0.1) == [0.3, 0.3, 0.3]
    # no schedule: the optimizer's rate, recorded all the same
    assert fit_rates(None, 2, lr=0.02) == [0.02, 0.02]


def test_step_decay():
    assert fit_rates(fn.StepDecay(step_size=3, factor=0.5), 8, lr=0.1) == pytest.approx(
        [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025], rel=REL)
    assert fit_rates(fn.StepDecay(1, factor=0.1, lr=1.0), 3) == pytest.approx(
        [1.0, 0.1, 0.01], rel=REL)


def test_exponential_decay():
    assert fit_rates(fn.ExponentialDecay(factor=0.9, lr=0.2), 5) == pytest.approx(
        [0.2, 0.18, 0.162, 0.1458, 0.13122], rel=REL)


def test_cosine_with_warmup():
    # warm-up 1 epoch: 0.1 * 1/2; then cos over epochs 1..3: p = 0, 1/3, 2/3; then min_lr
    assert fit_rates(fn.CosineAnnealing(epochs=4, warmup_epochs=1), 6, lr=0.1) == \
        pytest.approx([0.05, 0.1, 0.075, 0.025, 0.0, 0.0], rel=REL, abs=1e-18)
    # warm-up 3 epochs: 1/4, 2/4, 3/4 of the peak, then the peak
    assert fit_rates(fn.CosineAnnealing(epochs=5, warmup_epochs=3, lr=0.2), 4) == \
        pytest.approx([0.05, 0.1, 0.15, 0.2], rel=REL)


def test_cosine_with_min_lr():
    # 0.01 + 0.09 * (1 + cos(pi * e / 3)) / 2
    assert fit_rates(fn.CosineAnnealing(epochs=3, min_lr=0.01), 5, lr=0.1) == pytest.approx(
        [0.1, 0.0775, 0.0325, 0.01, 0.01], rel=REL)


def test_inverse_scaling():
    # t = 0, 8, 16, 24 samples seen: 0.1 / sqrt(1), / sqrt(9), / sqrt(17), / sqrt(25)
    assert fit_rates(fn.InverseScaling(power_t=0.5), 4, lr=0.1) == pytest.approx(
        [0.1, 0.1 / 3, 0.1 / math.sqrt(17), 0.02], rel=REL)
    # t counts the training rows only: validation_split=0.25 leaves 6 of the 8
    assert fit_rates(fn.InverseScaling(power_t=1.0, lr=0.7), 3, validation_split=0.25) == \
        pytest.approx([0.7, 0.1, 0.7 / 13], rel=REL)


def test_lambda_and_plain_function():
    assert fit_rates(fn.LambdaLR(lambda e: 0.1 / (e + 1)), 3) == pytest.approx(
        [0.1, 0.05, 0.1 / 3], rel=REL)
    assert fit_rates(lambda e: [0.3, 0.2, 0.1][e], 3) == [0.3, 0.2, 0.1]


def test_adaptive_by_hand():
    # tol 0.1, n_iter_no_change 2: epochs 1, 2, 3 fail to beat the best by 0.1,
    # the third failure (count 3 > 2) divides the rate by 5 for epoch 4 on;
    # epoch 4 improves (count 0), epochs 5, 6, 7 fail again.
    losses = [1.0, 0.95, 0.93, 0.92, 0.5, 0.49, 0.48, 0.47, 0.46]
    rates, model = drive(fn.AdaptiveLR(tol=0.1, n_iter_no_change=2), losses, lr=0.1)
    assert rates == pytest.approx([0.1] * 4 + [0.02] * 4 + [0.004], rel=REL)
    assert not model.stop_training
    # "max" mode for a score: the best is the largest
    rates, _ = drive(fn.AdaptiveLR(tol=0.1, n_iter_no_change=1, monitor="val_accuracy"),
                     [0.5, 0.55, 0.58, 0.9, 0.95, 0.99], lr=1.0, monitor="val_accuracy")
    assert rates == pytest.approx([1.0, 1.0, 1.0, 0.2, 0.2, 0.2], rel=REL)


def test_adaptive_stops_once_the_rate_is_at_most_1e6():
    rates, model = drive(fn.AdaptiveLR(tol=1.0, n_iter_no_change=1), [1.0] * 20, lr=2e-5)
    # lr 2e-5 -> 4e-6 -> 8e-7, then the next trigger stops instead
    assert rates == pytest.approx([2e-5] * 3 + [4e-6] * 2 + [8e-7] * 2, rel=REL)
    assert model.stop_training


def test_reduce_on_plateau_by_hand():
    # patience 2, min_delta 0.01, cooldown 1, factor 0.5, min_lr 0.03
    values = [1.0, 0.995, 0.992, 0.98, 0.975, 0.972, 0.965, 0.5, 0.5, 0.5, 0.5, 0.5]
    sched = fn.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=0.01,
                                 cooldown=1, min_lr=0.03)
    rates, _ = drive(sched, values, lr=0.1)
    # e0 best 1.0; e1, e2 do not beat 1.0 - 0.01: wait 2 -> 0.05 from e3, cooldown 1;
    # e3 in cooldown (wait 0), improves: best 0.98; e4, e5 do not beat 0.97 ->
    # max(0.025, 0.03) = 0.03 from e6; e6 cooldown, improves; e7 improves;
    # e8, e9 do not -> the rate is already at min_lr and stays.
    assert rates == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.03] * 6, rel=REL)


def test_reduce_on_plateau_max_mode():
    sched = fn.ReduceLROnPlateau(monitor="val_accuracy", factor=0.1, patience=1)
    rates, _ = drive(sched, [0.5, 0.6, 0.6, 0.7, 0.65], lr=1.0, monitor="val_accuracy")
    assert rates == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1], rel=REL)


# -- against scikit-learn ----------------------------------------------------------

def _sklearn_rates(learning_rate, n_epochs, **kwargs):
    """Rate of each epoch of scikit-learn's SGD (one partial_fit per epoch) and
    its loss curve."""
    from sklearn.neural_network import MLPRegressor
    reg = MLPRegressor(hidden_layer_sizes=(4,), solver="sgd", learning_rate=learning_rate,
                       batch_size=10, shuffle=False, random_state=0, momentum=0.0, **kwargs)
    Xs = np.random.default_rng(0).normal(size=(40, 3))
    ys = Xs @ [1.0, 2.0, 3.0]
    rates = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_epochs):
            rates.append(getattr(reg, "_optimizer", None) and reg._optimizer.learning_rate)
            reg.partial_fit(Xs, ys)
    rates[0] = kwargs["learning_rate_init"]
    return rates, reg.loss_curve_


def test_inverse_scaling_matches_scikit_learn():
    expected, _ = _sklearn_rates("invscaling", 6, learning_rate_init=0.1, power_t=0.4)
    rates, _ = drive(fn.InverseScaling(power_t=0.4), [0.0] * 6, lr=0.1, n_samples=40)
    assert rates == pytest.approx(expected, rel=REL)


def test_adaptive_matches_scikit_learn():
    expected, losses = _sklearn_rates("adaptive", 25, learning_rate_init=0.01, tol=0.5,
                                      n_iter_no_change=2)
    rates, model = drive(fn.AdaptiveLR(tol=0.5, n_iter_no_change=2), losses, lr=0.01)
    assert len(set(rates)) >= 4, "the loss curve should trigger several drops"
    # scikit-learn's partial_fit keeps going where fit would stop; compare up to there
    assert rates == pytest.approx(expected[:len(rates)], rel=REL)


# -- fit trains with the scheduled rate ----------------------------------------------

OPTS = {"momentum": lambda lr: fn.SGD(lr=lr, momentum=0.9),
        "adam": lambda lr: fn.Adam(lr=lr)}


@pytest.mark.parametrize("opt", OPTS)
@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_uses_the_scheduled_rate(dtype, opt, shuffle):
    Xd = np.random.default_rng(1).normal(size=(37, 3))
    Yd = np.random.default_rng(2).normal(size=(37, 2))
    sched = fn.CosineAnnealing(epochs=5, warmup_epochs=2, min_lr=0.001)
    a = small_net(dtype)
    hist = a.fit(Xd, Yd, epochs=5, batch_size=8, shuffle=shuffle, optimizer=OPTS[opt](0.05),
                 lr_schedule=sched)
    rates = hist.history["lr"]
    assert len(set(rates)) == 5
    # the same epochs one fit at a time, with the rate set by hand
    b = small_net(dtype)
    optimizer = OPTS[opt](0.05)
    for rate in rates:
        optimizer.lr = rate
        b.fit(Xd, Yd, epochs=1, batch_size=8, shuffle=shuffle, optimizer=optimizer)
    # and at a constant rate, which must differ
    c = small_net(dtype)
    c.fit(Xd, Yd, epochs=5, batch_size=8, shuffle=shuffle, optimizer=OPTS[opt](0.05))
    for la, lb, lc in zip(a.layers, b.layers, c.layers):
        np.testing.assert_array_equal(la.W, lb.W)
        np.testing.assert_array_equal(la.b, lb.b)
        assert not np.array_equal(la.W, lc.W)
    assert a.optimizer.step == b.optimizer.step == 5 * 5


def test_schedule_continues_across_fits():
    sched = fn.StepDecay(step_size=2, factor=0.5)
    net = small_net()
    first = net.fit(X, Y, epochs=3, optimizer=fn.SGD(lr=0.1), lr_schedule=sched)
    second = net.fit(X, Y, epochs=3, lr_schedule=sched)    # net.optimizer, lr now 0.05
    assert first.history["lr"] + second.history["lr"] == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=REL)
    assert sched.epoch == 6
    # a new schedule starts over from the optimizer's current rate
    third = net.fit(X, Y, epochs=2, lr_schedule=fn.StepDecay(step_size=1, factor=0.5))
    assert third.history["lr"] == pytest.approx([0.025, 0.0125], rel=REL)


def test_schedule_in_callbacks_list():
    assert fit_rates(None, 3, callbacks=[fn.ExponentialDecay(0.5)]) == pytest.approx(
        [0.1, 0.05, 0.025], rel=REL)


def test_adaptive_stops_fit():
    # tol so large that no epoch ever improves after the first
    net = small_net()
    hist = net.fit(X, Y, epochs=50, optimizer=fn.SGD(lr=1e-5),
                   lr_schedule=fn.AdaptiveLR(tol=1e9, n_iter_no_change=1))
    # 1e-5 for 3 epochs, 2e-6 for 2, 4e-7 for 2, then the next trigger stops
    assert hist.history["lr"] == pytest.approx([1e-5] * 3 + [2e-6] * 2 + [4e-7] * 2, rel=REL)
    assert hist.stop_reason == "stop_training"


def test_plateau_lowers_the_rate_in_fit():
    net = small_net()
    hist = net.fit(X, Y, epochs=6, optimizer=fn.SGD(lr=0.01), validation_data=(X, Y),
                   lr_schedule=fn.ReduceLROnPlateau(patience=2, min_delta=1e9, factor=0.5))
    assert hist.history["lr"] == pytest.approx([0.01] * 3 + [0.005] * 2 + [0.0025], rel=REL)


# -- errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("make,exc,msg", [
    (lambda: fn.StepDecay(0), ValueError, "step_size must be a positive integer"),
    (lambda: fn.StepDecay(2, factor=1.5), ValueError, r"factor must be in \(0, 1\]"),
    (lambda: fn.ExponentialDecay(0), ValueError, "factor must be a finite number > 0"),
    (lambda: fn.CosineAnnealing(5, warmup_epochs=5), ValueError,
     r"warmup_epochs must be an integer in \[0, epochs=5\)"),
    (lambda: fn.CosineAnnealing(5, min_lr=-1), ValueError, "min_lr must be a finite number"),
    (lambda: fn.ConstantLR(lr=0), ValueError, "lr must be a finite number > 0"),
    (lambda: fn.InverseScaling(power_t="x"), TypeError, "power_t must be a real number"),
    (lambda: fn.LambdaLR(3), TypeError, "LambdaLR needs a callable"),
    (lambda: fn.AdaptiveLR(n_iter_no_change=0), ValueError, "n_iter_no_change must be a"),
    (lambda: fn.ReduceLROnPlateau(factor=1.0), ValueError, "factor must be < 1"),
    (lambda: fn.ReduceLROnPlateau(mode="up"), ValueError, "mode must be 'auto', 'min' or"),
])
def test_bad_schedule_arguments(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(lr_schedule="cosine"), TypeError, "lr_schedule must be a fastnn schedule"),
    (dict(lr_schedule=fn.StepDecay(2), callbacks=[fn.ConstantLR()]), ValueError,
     "at most one learning-rate schedule per fit, got 2"),
    (dict(lr_schedule=fn.ReduceLROnPlateau()), ValueError,
     r"monitor='val_loss' is not computed by this fit \(pass validation_data="),
    (dict(lr_schedule=fn.CosineAnnealing(3, min_lr=0.5)), ValueError,
     "min_lr=0.5 is larger than the peak lr=0.1"),
])
def test_bad_fit_schedules_leave_the_network_unchanged(kwargs, exc, msg):
    net = small_net()
    before = [l.W.copy() for l in net.layers]
    with pytest.raises(exc, match=msg):
        net.fit(X, Y, epochs=2, optimizer=fn.SGD(lr=0.1), **kwargs)
    for W, layer in zip(before, net.layers):
        np.testing.assert_array_equal(layer.W, W)
    assert net.optimizer is None


def test_bad_rate_from_a_function():
    net = small_net()
    with pytest.raises(ValueError, match="the learning rate of epoch 1 must be a finite"):
        net.fit(X, Y, epochs=3, optimizer=fn.SGD(lr=0.1), lr_schedule=lambda e: [0.1, -1][e])
