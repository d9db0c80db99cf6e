"""The thread governor (fastnn/_engine_threads.pxi): a training run with a
team is cut into slices of whole batches, each on one thread or the team,
whichever the machine's load makes faster.  Which count runs a slice must
never change a result: these tests run every batch as its own slice,
alternating one thread and two, and compare with plain one-thread and
two-thread runs bit for bit.
"""
import numpy as np
import pytest

import fastnn as fn
from fastnn import _engine

from conftest import assert_same_weights, make_net, weights

# 1,000 rows in batches of 128 (the last one short); big enough that
# threads_for_batch gives a batch of this net two threads.
SIZES = (100, 300, 10)


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1000, SIZES[0])).astype(dtype)
    return X, rng.integers(0, SIZES[-1], 1000)


CONFIGS = {
    "sgd": dict(optimizer=lambda: fn.SGD(lr=0.05)),          # the fused update
    "momentum + l2": dict(optimizer=lambda: fn.SGD(lr=0.05, momentum=0.9), l2=1e-3),
    "adam + dropout + noise": dict(optimizer=lambda: fn.Adam(lr=1e-3), dropout=0.2,
                                   input_noise=0.1),
    "rprop, sample weights": dict(optimizer=lambda: fn.RProp(), weighted=True),
}


def _fit(dtype, n_threads, config):
    net = make_net(SIZES, ("relu", "softmax"), loss="cross_entropy", dtype=dtype, seed=3)
    if config.get("dropout"):
        net.layers[0].dropout = config["dropout"]
    X, y = _data(dtype)
    kwargs = {}
    if config.get("weighted"):
        kwargs["sample_weight"] = np.random.default_rng(1).uniform(0.5, 2.0, len(X))
    if config.get("input_noise"):
        kwargs["input_noise"] = config["input_noise"]
    if config.get("l2"):
        kwargs["l2"] = config["l2"]
    history = net.fit(X, y, epochs=3, batch_size=128, optimizer=config["optimizer"](),
                      verbose=0, n_threads=n_threads, **kwargs)
    return net, history.history["loss"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_slices_alternating_one_thread_and_two_change_nothing(name, dtype, alternating):
    config = CONFIGS[name]
    _require_a_team(make_net(SIZES, ("relu", "softmax"), dtype=dtype))
    net_alt, loss_alt = _fit(dtype, 2, config)
    _engine.alternate_threads_for_tests(False)
    for n_threads in (1, 2):
        net, loss = _fit(dtype, n_threads, config)
        assert_same_weights(weights(net), weights(net_alt))
        assert loss == loss_alt


@pytest.mark.parametrize("n_threads", [3, 5])
def test_teams_of_any_size_change_nothing(n_threads, monkeypatch, alternating):
    """Each thread claims its own block of a stage's tasks first, then the
    others' (_engine_team.pxi, claim): with blocks of unequal sizes every task
    still runs once.  More threads than this machine's cores, allowed here
    for the test (the thread count is otherwise capped at the cores); every
    other batch on the team, against one thread throughout."""
    from fastnn import _config
    sizes = (300, 520, 10)      # wide enough for threads_for_batch to give 5 threads
    rng = np.random.default_rng(4)
    X = rng.normal(size=(700, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], 700)
    if not _engine.openmp_enabled():
        pytest.skip("a serial engine")
    assert _engine.threads_for_batch([np.empty(s) for s in zip(sizes, sizes[1:])],
                                     128, n_threads) == n_threads
    monkeypatch.setattr(_config, "_available_cores", lambda: n_threads)
    runs = []
    for threads in (1, n_threads):
        _engine.alternate_threads_for_tests(threads > 1)
        net = make_net(sizes, ("relu", "softmax"), loss="cross_entropy", seed=5)
        history = net.fit(X, y, epochs=2, batch_size=128, verbose=0, n_threads=threads,
                          optimizer=fn.SGD(lr=0.05, momentum=0.9), l2=1e-3)
        runs.append((weights(net), history.history["loss"]))
    assert_same_weights(runs[1][0], runs[0][0])
    assert runs[1][1] == runs[0][1]


def test_the_governor_keeps_the_faster_count_and_tries_the_other_less_often():
    # (seconds per row on one thread, on the team, on the team, next try, wait)
    state = (0.0, 0.0, True, 0.0, 0.01)
    state = _engine.governor_update_for_tests(state, True, False, 100, 1e-3, 0.0)
    assert state[1] == pytest.approx(1e-5) and state[2]
    # a try of one thread at 1.8e-5 s/row: the team stays, the wait doubles
    state = _engine.governor_update_for_tests(state, False, True, 50, 0.9e-3, 0.02)
    assert state[0] == pytest.approx(1.8e-5) and state[2]
    assert state[4] == pytest.approx(0.02) and state[3] == pytest.approx(0.04)
    # the team slows down (a busy core): the running average follows
    for k in range(20):
        state = _engine.governor_update_for_tests(state, True, False, 100, 5e-3, 0.03)
    assert state[1] == pytest.approx(5e-5, rel=1e-2) and state[2]
    # the next try finds one thread faster: switch, and try again soon
    state = _engine.governor_update_for_tests(state, False, True, 50, 0.9e-3, 0.05)
    assert not state[2] and state[4] == pytest.approx(0.005)
    # a try of the team that loses 0.1 s waits at least 30 times that
    state = _engine.governor_update_for_tests(state, True, True, 50, 0.1 + 50 * 1.8e-5, 0.1)
    assert not state[2] and state[4] == pytest.approx(3.0)


def test_a_run_on_a_team_is_timed():
    net = make_net(SIZES, ("relu", "softmax"), loss="cross_entropy", seed=3)
    X, y = _data(np.float32)
    T = np.eye(SIZES[-1], dtype=np.float32)[y]
    _require_a_team(net)
    trainer = net._trainer(128, 2, fn.SGD(lr=0.01))
    trainer.run_epoch(X, T, None)
    one, team, on_team = _engine.governor_state(trainer)
    assert one > 0 or team > 0


def _require_a_team(net):
    if not _engine.openmp_enabled() or _engine.team_size(2) < 2:
        pytest.skip("a team of two is not available here (serial engine, or one core)")
    if _engine.threads_for_batch([layer.W for layer in net.layers], 128, 2) < 2:
        raise AssertionError("SIZES no longer gives a batch two threads")
