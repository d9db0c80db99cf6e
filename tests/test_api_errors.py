"""Public API contract and input validation.

Covers: unknown activation / loss / init / kernel (ValueError naming the
choices); mismatched layer sizes; softmax on a hidden layer; cross_entropy
without softmax and binary_cross_entropy without sigmoid; wrong-shaped X
(1-D, wrong n_features); NaN/inf in X and y; labels out of range or not
integers; empty X; complex / string / object X (TypeError); X and y row
mismatch; non-positive epochs / batch_size / lr - every message names what
was expected and what came, and a failed fit leaves the weights untouched.
Also: a float32 network stays float32 when fed float64 X; C-contiguous X of
the right dtype is used without a copy; predict gives the same result on
Fortran-ordered and strided inputs; ``layer.W`` / ``layer.b`` are writable
and change predictions; ``fn.show_config()`` and ``python -m fastnn info``.

Tolerances: none - messages are matched with regular expressions and
results compared bit for bit.
"""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest

import fastnn as fn
from fastnn import _validation

from conftest import make_net

# The folder holding the fastnn these tests imported (installed or built in
# place), so that the subprocess runs the same one.
FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fn.__file__)))


def _clf(dtype=np.float32):
    return make_net((4, 6, 3), ("relu", "softmax"), loss="cross_entropy", dtype=dtype, seed=1)


def _reg(dtype=np.float32):
    return make_net((4, 5, 2), ("tanh", "linear"), loss="mse", dtype=dtype, seed=1)


X4 = np.random.default_rng(0).normal(size=(8, 4))
LABELS = np.array([0, 1, 2, 0, 1, 2, 0, 1])


# -- construction -------------------------------------------------------------

def test_unknown_activation_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown activation 'mish'; expected one of .*'relu'.*'tanh'"):
        fn.Dense(2, 3, activation="mish")
    with pytest.raises(TypeError, match="activation must be a string"):
        fn.Dense(2, 3, activation=3)


def test_unknown_loss_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge'; expected one of .*'cross_entropy'.*'mse'"):
        fn.Network([fn.Dense(2, 3)], loss="hinge")


def test_unknown_init_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown init 'bogus'; expected one of .*'glorot_uniform'.*'he_normal'"):
        fn.Dense(2, 3, init="bogus")


def test_unknown_kernel_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown kernel 'fast'; expected one of .*'avx2'.*'blas'"):
        fn.set_kernel("fast")


def test_aliases_are_accepted():
    assert fn.Dense(2, 3, activation="logistic").activation == "sigmoid"
    assert fn.Dense(2, 3, activation="identity").activation == "linear"
    assert fn.Dense(2, 3, activation="ramp").activation == "relu"


@pytest.mark.parametrize("n_in,n_out", [(0, 3), (3, 0), (-1, 2), (2.5, 2), (True, 2)])
def test_dense_sizes_must_be_positive_integers(n_in, n_out):
    with pytest.raises(ValueError, match=r"n_(in|out) must be a positive integer, got"):
        fn.Dense(n_in, n_out)


def test_mismatched_layer_sizes():
    with pytest.raises(ValueError, match=r"layer sizes do not match: layers\[0\] has 3 outputs "
                                         r"but layers\[1\] expects 4 inputs"):
        fn.Network([fn.Dense(2, 3), fn.Dense(4, 1)])


def test_softmax_only_on_the_output_layer():
    with pytest.raises(ValueError, match=r"softmax is only supported on the output layer; layers\[0\]"):
        fn.Network([fn.Dense(2, 3, activation="softmax"), fn.Dense(3, 2, activation="softmax")],
                   loss="cross_entropy")


def test_cross_entropy_needs_softmax():
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' needs a softmax output layer, "
                                         r"but the last layer's activation is 'sigmoid'"):
        fn.Network([fn.Dense(2, 3, activation="sigmoid")], loss="cross_entropy")
    with pytest.raises(ValueError, match=r"loss 'binary_cross_entropy' needs a sigmoid output "
                                         r"layer, but the last layer's activation is 'softmax'"):
        fn.Network([fn.Dense(2, 3, activation="softmax")], loss="binary_cross_entropy")


def test_network_layers_and_dtype():
    with pytest.raises(ValueError, match="at least one Dense layer"):
        fn.Network([])
    with pytest.raises(TypeError, match=r"layers\[1\] must be a Dense layer, got str"):
        fn.Network([fn.Dense(2, 2), "dense"])
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64', got 'float16'"):
        fn.Network([fn.Dense(2, 2)], dtype="float16")


# -- X and y ------------------------------------------------------------------

BAD_X = [
    ("1-D", np.ones(4), ValueError,
     r"X must be a 2-D array of shape \(n_samples, n_features\), got an array of shape \(4,\)"),
    ("3-D", np.ones((2, 4, 1)), ValueError, r"X must be a 2-D array .* shape \(2, 4, 1\)"),
    ("n_features", np.ones((8, 5)), ValueError,
     r"X has 5 features, but the network expects 4 .*got shape \(8, 5\)"),
    ("empty", np.ones((0, 4)), ValueError, r"X is empty: got an array of shape \(0, 4\)"),
    ("nan", np.where(np.eye(8, 4) > 0, np.nan, 1.0), ValueError, "X contains NaN or infinity"),
    ("inf", np.where(np.eye(8, 4) > 0, -np.inf, 1.0), ValueError, "X contains NaN or infinity"),
    ("complex", np.ones((8, 4), complex), TypeError,
     "X must hold real numbers, got an array of dtype complex128"),
    ("strings", np.full((8, 4), "1"), TypeError, "X must hold real numbers, got an array of dtype <U1"),
    ("object", np.ones((8, 4), object), TypeError, "X must hold real numbers, got an array of dtype object"),
    ("str", "abcd", TypeError, "X must be an array-like of numbers, got str"),
    ("None", None, TypeError, "X must be an array-like of numbers, got NoneType"),
]


@pytest.mark.parametrize("what,X,exc,msg", BAD_X, ids=[b[0] for b in BAD_X])
@pytest.mark.parametrize("method", ["fit", "predict", "forward", "evaluate", "gradients"])
def test_bad_X(what, X, exc, msg, method):
    net = _clf()
    before = [(l.W.copy(), l.b.copy()) for l in net.layers]
    # labels with as many rows as X, so that only X is wrong
    y = LABELS[:len(X)] if isinstance(X, np.ndarray) and X.ndim else LABELS
    call = {"fit": lambda: net.fit(X, y, optimizer=fn.SGD(lr=0.1)),
            "predict": lambda: net.predict(X),
            "forward": lambda: net.forward(X),
            "evaluate": lambda: net.evaluate(X, y),
            "gradients": lambda: net.gradients(X, y)}[method]
    with pytest.raises(exc, match=msg):
        call()
    for (W, b), layer in zip(before, net.layers):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


BAD_Y = [
    ("clf", "out of range", np.array([0, 1, 3, 0, 1, 2, 0, 1]), ValueError,
     r"class labels must be in \[0, 2\] for a network with 3 outputs; got labels from 0 to 3"),
    ("clf", "negative", np.array([0, 1, -1, 0, 1, 2, 0, 1]), ValueError,
     r"class labels must be in \[0, 2\] .*got labels from -1 to 2"),
    ("clf", "non-integer", np.array([0, 1, 1.5, 0, 1, 2, 0, 1]), ValueError,
     "y must hold integer class labels for cross_entropy; got non-integer values"),
    ("clf", "nan label", np.array([0, 1, np.nan, 0, 1, 2, 0, 1]), ValueError,
     "integer class labels"),
    ("clf", "rows", LABELS[:5], ValueError,
     r"X and y have different numbers of samples: X has 8, y has shape \(5,\)"),
    ("clf", "one-hot width", np.eye(8, 4), ValueError,
     r"y must have shape \(n_samples, 3\) one-hot rows, or \(n_samples,\) integer labels "
     r"for a network with 3 outputs; got shape \(8, 4\)"),
    ("clf", "strings", np.array(list("01201201")), TypeError, "y must hold numbers, got an array of dtype <U1"),
    ("reg", "nan", np.where(np.eye(8, 2) > 0, np.nan, 0.0), ValueError, "y contains NaN or infinity"),
    ("reg", "inf", np.where(np.eye(8, 2) > 0, np.inf, 0.0), ValueError, "y contains NaN or infinity"),
    ("reg", "width", np.zeros((8, 3)), ValueError,
     r"y must have shape \(n_samples, 2\) for a network with 2 outputs; got shape \(8, 3\)"),
    ("reg", "rows", np.zeros((9, 2)), ValueError,
     r"X and y have different numbers of samples: X has 8, y has shape \(9, 2\)"),
    ("reg", "complex", np.zeros((8, 2), complex), TypeError, "y must hold numbers, got an array of dtype complex128"),
    ("reg", "None", None, TypeError, "y must be an array-like, got NoneType"),
]


@pytest.mark.parametrize("net_kind,what,y,exc,msg", BAD_Y, ids=[f"{b[0]}-{b[1]}" for b in BAD_Y])
@pytest.mark.parametrize("method", ["fit", "evaluate", "gradients"])
def test_bad_y(net_kind, what, y, exc, msg, method):
    net = _clf() if net_kind == "clf" else _reg()
    before = [(l.W.copy(), l.b.copy()) for l in net.layers]
    call = {"fit": lambda: net.fit(X4, y, optimizer=fn.SGD(lr=0.1)),
            "evaluate": lambda: net.evaluate(X4, y),
            "gradients": lambda: net.gradients(X4, y)}[method]
    with pytest.raises(exc, match=msg):
        call()
    for (W, b), layer in zip(before, net.layers):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


def test_binary_cross_entropy_targets_in_unit_interval():
    net = make_net((4, 2), ("sigmoid",), loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"y must hold values in \[0, 1\] for binary_cross_entropy"):
        net.fit(X4, np.full((8, 2), 1.5))


def test_targets_in_every_accepted_form():
    net = _clf(np.float64)
    one_hot = np.eye(3)[LABELS]
    a = net.gradients(X4, LABELS)
    b = net.gradients(X4, one_hot)
    c = net.gradients(X4, LABELS.astype(np.float64))
    for (dWa, dba), (dWb, dbb), (dWc, dbc) in zip(a, b, c):
        np.testing.assert_array_equal(dWa, dWb)
        np.testing.assert_array_equal(dWa, dWc)
        np.testing.assert_array_equal(dba, dbb)
    reg1 = make_net((4, 1), ("linear",), dtype=np.float64)
    y = np.arange(8.0)
    assert reg1.evaluate(X4, y) == reg1.evaluate(X4, y.reshape(-1, 1))


# -- fit's own parameters --------------------------------------------------------

BAD_FIT = [
    (dict(epochs=0), ValueError, "epochs must be a positive integer, got 0"),
    (dict(epochs=-3), ValueError, "epochs must be a positive integer, got -3"),
    (dict(epochs=1.5), TypeError, "epochs must be a positive integer, got 1.5"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer, got 0"),
    (dict(batch_size=-8), ValueError, "batch_size must be a positive integer, got -8"),
    (dict(batch_size=True), TypeError, "batch_size must be a positive integer, got True"),
    (dict(n_threads=0), ValueError, "n_threads must be a positive integer, got 0"),
    (dict(optimizer="sgd"), TypeError, "optimizer must be a fastnn optimizer .* got str"),
    (dict(validation_data=X4), ValueError, r"validation_data must be a tuple \(X_val, y_val\)"),
    (dict(validation_data=(X4[:, :3], LABELS)), ValueError,
     "X_val has 3 features, but the network expects 4"),
]


@pytest.mark.parametrize("kwargs,exc,msg", BAD_FIT, ids=[next(iter(b[0])) + "=" + repr(next(iter(b[0].values())))[:12] for b in BAD_FIT])
def test_bad_fit_arguments_leave_weights_unchanged(kwargs, exc, msg):
    net = _clf()
    before = [(l.W.copy(), l.b.copy()) for l in net.layers]
    kwargs = dict({"optimizer": fn.SGD(lr=0.1)}, **kwargs)
    with pytest.raises(exc, match=msg):
        net.fit(X4, LABELS, **kwargs)
    for (W, b), layer in zip(before, net.layers):
        np.testing.assert_array_equal(layer.W, W)
        np.testing.assert_array_equal(layer.b, b)


@pytest.mark.parametrize("make,exc,msg", [
    (lambda: fn.SGD(lr=0), ValueError, r"lr must be a finite number > 0, got 0.0"),
    (lambda: fn.SGD(lr=-0.1), ValueError, r"lr must be a finite number > 0, got -0.1"),
    (lambda: fn.SGD(lr=float("nan")), ValueError, r"lr must be a finite number > 0, got nan"),
    (lambda: fn.SGD(lr="0.1"), TypeError, r"lr must be a real number, got '0.1'"),
    (lambda: fn.Adam(lr=0), ValueError, r"lr must be a finite number > 0, got 0.0"),
    (lambda: fn.Adam(lr=-1e-3), ValueError, r"lr must be a finite number > 0, got -0.001"),
    (lambda: fn.SGD(lr=0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\), got 1.0"),
    (lambda: fn.SGD(lr=0.1, momentum=-0.5), ValueError, r"momentum must be a finite number >= 0"),
    (lambda: fn.SGD(lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
    (lambda: fn.Adam(beta1=1.0), ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
    (lambda: fn.Adam(eps=0), ValueError, r"eps must be a finite number > 0, got 0.0"),
], ids=["sgd-lr0", "sgd-lr-neg", "sgd-lr-nan", "sgd-lr-str", "adam-lr0", "adam-lr-neg",
        "momentum1", "momentum-neg", "nesterov0", "beta1", "eps0"])
def test_bad_optimizer_hyperparameters(make, exc, msg):
    with pytest.raises(exc, match=msg):
        make()


def test_set_num_threads_validates():
    with pytest.raises(ValueError, match="n_threads must be a positive integer, got 0"):
        fn.set_num_threads(0)
    fn.set_num_threads(1)
    assert fn.get_num_threads() == 1


def test_predict_proba_needs_a_probability_output():
    with pytest.raises(ValueError, match=r"predict_proba needs a softmax or sigmoid output layer; "
                                         r"this network's output is 'linear'"):
        _reg().predict_proba(X4)
    p = _clf().predict_proba(X4)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)


# -- dtype, copies and memory layout --------------------------------------------

def test_float32_network_stays_float32_with_float64_input():
    net = _clf(np.float32)
    X = X4.astype(np.float64)
    assert net.predict(X).dtype == np.float32
    net.fit(X, LABELS, epochs=2, optimizer=fn.SGD(lr=0.1, momentum=0.5))
    net.fit(X, LABELS, epochs=1, optimizer=fn.Adam())
    for layer in net.layers:
        assert layer.W.dtype == np.float32 and layer.b.dtype == np.float32
        assert layer.W.flags.c_contiguous and layer.W.flags.writeable
    assert all(g.dtype == np.float32 for g, _ in net.gradients(X, LABELS))
    assert net.forward(X)[0].dtype == np.float32
    net64 = _clf(np.float64)
    assert net64.predict(X4.astype(np.float32)).dtype == np.float64


def test_right_dtype_c_contiguous_input_is_not_copied(dtype):
    X = np.ascontiguousarray(X4, dtype=dtype)
    checked = _validation.check_array(X, "X", dtype, n_features=4)
    assert np.shares_memory(checked, X)
    other = np.float64 if dtype == np.float32 else np.float32
    assert not np.shares_memory(_validation.check_array(X, "X", other), X)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_predict_on_fortran_and_strided_inputs(kernel, dtype, n_threads):
    net = make_net((7, 130, 3), ("tanh", "softmax"), loss="cross_entropy", dtype=dtype)
    big = np.random.default_rng(5).normal(size=(600, 14)).astype(dtype)
    X = np.ascontiguousarray(big[::2, ::2])                  # 300 rows, C-contiguous
    expected = net.predict(X, n_threads=n_threads)
    reversed_rows = np.ascontiguousarray(X[::-1])[::-1]      # negative row stride
    for variant in (np.asfortranarray(X), big[::2, ::2], reversed_rows):
        assert not variant.flags.c_contiguous
        np.testing.assert_array_equal(net.predict(variant, n_threads=n_threads), expected)
    # a transposed view is just another layout of the same numbers
    np.testing.assert_array_equal(net.predict(np.ascontiguousarray(X.T).T), expected)
    # input of the other dtype goes through one conversion
    other = X.astype(np.float64) if dtype == np.float32 else X.astype(np.float32)
    got = net.predict(other, n_threads=n_threads)
    assert got.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_array_equal(got, expected)     # float32 -> float64 -> float32 exact


def test_layer_weights_are_writable_and_used():
    net = _reg(np.float64)
    X = X4
    before = net.predict(X)
    layer = net.layers[1]
    assert layer.W.flags.writeable
    layer.W[0, 0] += 1.0                       # in place
    after = net.predict(X)
    assert not np.array_equal(before, after)
    np.testing.assert_allclose(after[:, 0] - before[:, 0], net.forward(X)[0][:, 0], rtol=1e-12)
    layer.W = np.zeros((5, 2))                 # assignment
    layer.b = [1.0, -2.0]
    np.testing.assert_array_equal(net.predict(X), np.tile([1.0, -2.0], (8, 1)))
    assert layer.W.dtype == np.float64 and layer.b.dtype == np.float64
    net32 = _reg(np.float32)
    net32.layers[0].W = np.ones((4, 5), dtype=np.float64)
    assert net32.layers[0].W.dtype == np.float32    # the network's dtype never changes
    with pytest.raises(ValueError, match=r"Dense.W must have shape \(5, 2\), got \(2, 5\)"):
        layer.W = np.zeros((2, 5))
    with pytest.raises(ValueError, match="Dense.W contains NaN or infinity"):
        layer.W = np.full((5, 2), np.nan)
    with pytest.raises(TypeError, match="Dense.b must hold real numbers"):
        layer.b = ["a", "b"]
    nobias = fn.Dense(2, 2, use_bias=False)
    fn.Network([nobias])
    with pytest.raises(ValueError, match="use_bias=False"):
        nobias.b = [0.0, 0.0]


# -- configuration and the command line ------------------------------------------

def test_show_config(capsys):
    fn.show_config()
    out = capsys.readouterr().out
    assert re.search(r"^fastnn \d+\.\d+", out, re.M)
    assert re.search(r"^kernels compiled and usable: .*blas", out, re.M)
    assert re.search(rf"^kernel selected: {fn.get_kernel()}", out, re.M)
    assert re.search(r"^OpenMP: (enabled|disabled)", out, re.M)
    assert re.search(r"^threads: \d+", out, re.M)
    fn.set_kernel("blas")
    fn.show_config()
    assert "kernel selected: blas" in capsys.readouterr().out


def _run_cli(*args, **env):
    env = dict(os.environ, PYTHONPATH=FASTNN_PARENT, **env)
    return subprocess.run([sys.executable, "-m", "fastnn", *args], cwd=tempfile.gettempdir(),
                          capture_output=True, text=True, timeout=60, env=env)



def test_cli_info():
    proc = _run_cli("info")
    assert proc.returncode == 0, proc.stderr
    assert "kernel selected:" in proc.stdout and "OpenMP:" in proc.stdout
    proc = _run_cli(FASTNN_KERNEL="generic")          # "info" is the default command
    assert proc.returncode == 0, proc.stderr
    assert "kernel selected: generic (forced by FASTNN_KERNEL)" in proc.stdout


def test_cli_usage_on_unknown_command():
    proc = _run_cli("frobnicate")
    assert proc.returncode == 2
    assert "usage: fastnn" in proc.stderr


def test_every_registry_takes_names_the_same_way():
    """Activations, losses, metrics and initialisers: case-insensitive names and
    aliases, a TypeError for a non-name, a ValueError naming the choices."""
    from fastnn import activations, initializers, losses, metrics
    assert activations.get("ReLU") is activations.get("relu")
    assert activations.get("Identity") is activations.get("linear")
    assert losses.get("MSE") is losses.get("squared_error")
    assert metrics.get("Accuracy") is metrics.get("accuracy")
    assert initializers.get("He_Normal") is initializers.get("he_normal")
    assert initializers.get("Xavier_Uniform") is initializers.get("glorot_uniform")
    for module, kind in [(activations, "activation"), (losses, "loss"), (metrics, "metric"),
                         (initializers, "init")]:
        with pytest.raises(TypeError, match=f"^{kind} must be a string, one of "):
            module.get(3.5)
        with pytest.raises(ValueError, match=f"^unknown {kind} 'nope'; expected one of "):
            module.get("nope")
