"""End-to-end training examples and thread-count determinism.

Covers: XOR learned by a 2-4-1 network (tanh hidden, sigmoid output,
binary cross-entropy, SGD with momentum; all 4 outputs on the right side of
0.5, for both dtypes and several seeds); the classic single neuron with
inputs (0.5, 0.6), weights (0.5, 0.7) and threshold 0.5 firing through
``predict``; scikit-learn's digits reaching >= 97% test accuracy; bit-identical
weights after several shuffled epochs with 1 and 2 threads for every kernel
(network 64-200-130-10, batch 150, so every product spans several 128-tiles);
``target_loss`` stopping and the History record; the same bit identity with
the training toolkit on (sample weights, L2/L1 penalties, dropout, input
noise) for every optimizer.

Tolerances: none - outcomes are thresholds fixed by the task (0.5, 97%) and
the thread-count comparison is bit for bit, as the design promises.
"""
import numpy as np
import pytest

import fastnn as fn

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_y = np.array([0, 1, 1, 0], dtype=np.float64)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_xor_is_learned(kernel, dtype, seed):
    net = fn.Network([fn.Dense(2, 4, activation="tanh"),
                      fn.Dense(4, 1, activation="sigmoid")],
                     loss="binary_cross_entropy", dtype=dtype, seed=seed)
    net.fit(XOR_X, XOR_y, epochs=500, batch_size=4, optimizer=fn.SGD(lr=0.5, momentum=0.9))
    out = net.predict(XOR_X).ravel()
    assert out.dtype == dtype
    assert np.all((out > 0.5) == (XOR_y > 0.5)), f"XOR not learned: outputs {out}"
    assert net.evaluate(XOR_X, XOR_y)["accuracy"] == 1.0


@pytest.mark.parametrize("n_threads", [1, 2])
def test_single_neuron_fires(kernel, dtype, n_threads):
    # 0.5 * 0.5 + 0.6 * 0.7 = 0.67 >= threshold 0.5  ->  fires
    neuron = fn.Network(fn.Dense(2, 1, activation="step"), dtype=dtype)
    neuron.layers[0].W = [[0.5], [0.7]]
    neuron.layers[0].b = [-0.5]
    out = neuron.predict([[0.5, 0.6]], n_threads=n_threads)
    assert out.shape == (1, 1) and out.dtype == dtype
    assert out[0, 0] == 1
    # and stays silent below the threshold: 0.1 * 0.5 + 0.2 * 0.7 = 0.19 < 0.5
    assert neuron.predict([[0.1, 0.2]], n_threads=n_threads)[0, 0] == 0
    sign = fn.Network(fn.Dense(2, 1, activation="sign"), dtype=dtype)
    sign.layers[0].W = [[0.5], [0.7]]
    sign.layers[0].b = [-0.5]
    np.testing.assert_array_equal(sign.predict([[0.5, 0.6], [0.1, 0.2]]), [[1], [-1]])


@pytest.mark.parametrize("n_threads", [1, 2])
def test_digits_accuracy(kernel, digits, n_threads):
    X_train, X_test, y_train, y_test = digits
    net = fn.Network([fn.Dense(64, 128, activation="relu", init="he_uniform"),
                      fn.Dense(128, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    history = net.fit(X_train, y_train, epochs=40, batch_size=32,
                      optimizer=fn.SGD(lr=0.1, momentum=0.9),
                      validation_data=(X_test, y_test), n_threads=n_threads)
    result = net.evaluate(X_test, y_test)
    assert result["accuracy"] >= 0.97, result
    assert history.history["val_accuracy"][-1] == result["accuracy"]
    assert len(history.history["loss"]) == 40
    assert history.history["loss"][-1] < history.history["loss"][0]
    pred = net.predict(X_test).argmax(axis=1)
    assert np.mean(pred == y_test) == result["accuracy"]


OPTS = {"sgd": lambda: fn.SGD(lr=0.05),
        "momentum": lambda: fn.SGD(lr=0.02, momentum=0.9),
        "adam": lambda: fn.Adam(lr=0.001)}


def _assert_same_bits(one, two):
    """Every parameter of two networks equal bit for bit (1 vs 2 threads)."""
    for l, (a, b) in enumerate(zip(one.layers, two.layers)):
        np.testing.assert_array_equal(a.W.view(np.uint8), b.W.view(np.uint8),
                                      err_msg=f"layer {l} W differs between 1 and 2 threads")
        np.testing.assert_array_equal(a.b.view(np.uint8), b.b.view(np.uint8),
                                      err_msg=f"layer {l} b differs between 1 and 2 threads")


@pytest.mark.parametrize("opt", OPTS)
def test_training_bit_identical_for_1_and_2_threads(kernel, dtype, digits, opt):
    X_train, _, y_train, _ = digits
    X_train, y_train = X_train[:600], y_train[:600]     # 4 batches of 150 rows per epoch

    def train(n_threads):
        net = fn.Network([fn.Dense(64, 200, activation="relu"),
                          fn.Dense(200, 130, activation="tanh"),
                          fn.Dense(130, 10, activation="softmax")],
                         loss="cross_entropy", dtype=dtype, seed=42)
        hist = net.fit(X_train, y_train, epochs=3, batch_size=150, shuffle=True,
                       optimizer=OPTS[opt](), n_threads=n_threads)
        return net, hist

    one, h1 = train(1)
    two, h2 = train(2)
    _assert_same_bits(one, two)
    assert h1.history["loss"] == h2.history["loss"]
    assert not np.array_equal(one.layers[0].W, fn.Network(
        [fn.Dense(64, 200, activation="relu"), fn.Dense(200, 130, activation="tanh"),
         fn.Dense(130, 10, activation="softmax")],
        loss="cross_entropy", dtype=dtype, seed=42).layers[0].W), "training changed nothing"


def test_target_loss_stops_early():
    net = fn.Network([fn.Dense(2, 4, activation="tanh"), fn.Dense(4, 1, activation="sigmoid")],
                     loss="binary_cross_entropy", seed=0)
    hist = net.fit(XOR_X, XOR_y, epochs=5000, batch_size=4,
                   optimizer=fn.SGD(lr=0.5, momentum=0.9), target_loss=0.05)
    losses = hist.history["loss"]
    assert len(losses) < 5000
    assert losses[-1] <= 0.05 and all(v > 0.05 for v in losses[:-1])
    assert hist.epoch == list(range(len(losses)))


# The training toolkit on top: sample weights, L2 and L1 penalties (and the
# scikit-learn per-batch form), dropout, input noise, with every optimizer
# (RProp: full batch).
TOOLKIT_OPTS = {"sgd": lambda: fn.SGD(lr=0.05),
                "momentum": lambda: fn.SGD(lr=0.02, momentum=0.9),
                "adam-step-size": lambda: fn.Adam(lr=0.001, bias_correction="step_size"),
                "adamw": lambda: fn.AdamW(lr=0.001, weight_decay=0.1),
                "rmsprop": lambda: fn.RMSprop(lr=0.001, momentum=0.5),
                "rprop": lambda: fn.RProp()}
TOOLKIT_FIT = {"sgd": dict(l2=1e-3, l1=1e-4, input_noise=0.05),
               "momentum": dict(l2=1e-2, input_noise=0.1),   # per weight sum: see below
               "adam-step-size": dict(l2=1e-3, l1=1e-4),
               "adamw": dict(l1=1e-4, input_noise=0.05),
               "rmsprop": dict(l2=1e-3, input_noise=0.05),
               "rprop": dict(l2=1e-3, input_noise=0.05)}


@pytest.mark.parametrize("opt", TOOLKIT_OPTS)
def test_toolkit_training_bit_identical_for_1_and_2_threads(kernel, dtype, digits, opt):
    X_train, _, y_train, _ = digits
    X_train, y_train = X_train[:600], y_train[:600]     # 4 batches of 150 rows per epoch
    sample_weight = np.random.default_rng(0).uniform(0.0, 2.0, 600)

    def train(n_threads):
        net = fn.Network([fn.Dense(64, 200, activation="relu", dropout=0.2),
                          fn.Dense(200, 130, activation="tanh", dropout=0.1),
                          fn.Dense(130, 10, activation="softmax")],
                         loss="cross_entropy", dtype=dtype, seed=42)
        net._penalty_per_weight_sum = opt == "momentum"   # scikit-learn's alpha form
        hist = net.fit(X_train, y_train, epochs=2, batch_size=150, shuffle=True,
                       optimizer=TOOLKIT_OPTS[opt](), n_threads=n_threads,
                       sample_weight=sample_weight, **TOOLKIT_FIT[opt])
        return net, hist

    one, h1 = train(1)
    two, h2 = train(2)
    _assert_same_bits(one, two)
    assert h1.history["loss"] == h2.history["loss"]


@pytest.mark.parametrize("engine_epochs", [True, False])
def test_a_full_batch_draws_no_order(monkeypatch, dtype, engine_epochs):
    """One batch of every row (batch_size >= n, or RProp): X's own order,
    nothing drawn from the network's generator; with dropout and input noise
    too, which are keyed on the seed, not drawn from it.  Smaller batches
    still draw a new order each epoch."""
    from fastnn import _fit_loop
    monkeypatch.setattr(_fit_loop, "ENGINE_EPOCHS", engine_epochs)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 6))
    y = (X[:, 0] > 0).astype(float)

    def fit(**kw):
        net = fn.Network([fn.Dense(6, 7, activation="tanh", dropout=0.2),
                          fn.Dense(7, 1, activation="sigmoid")], dtype=dtype, seed=5)
        before = net._rng.bit_generator.state
        net.fit(X, y, epochs=6, input_noise=0.1, **kw)
        return net, before, net._rng.bit_generator.state

    shuffled, before, after = fit(batch_size=40, optimizer=fn.SGD(0.1))
    assert after == before
    ordered = fit(batch_size=64, optimizer=fn.SGD(0.1), shuffle=False)[0]
    for a, b in zip(shuffled.layers, ordered.layers):
        np.testing.assert_array_equal(a.W, b.W)
        np.testing.assert_array_equal(a.b, b.b)
    _, before, after = fit(optimizer=fn.RProp())
    assert after == before
    _, before, after = fit(batch_size=39, optimizer=fn.SGD(0.1))
    assert after != before
