"""FANN's files: .net networks (fastnn.io.read_fann/write_fann) and .data sets
(fastnn.datasets), checked against the real FANN where libfann is installed
(Debian: apt-get install libfann-dev; it is loaded with ctypes), and malformed
files refused with a ValueError before any large allocation.
"""
import ctypes
import ctypes.util
import os
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn.datasets import load_fann_data, save_fann_data
from fastnn.io import read_fann, write_fann

DATASETS = Path(os.environ.get("FANN_DATASETS",
                               Path(__file__).resolve().parents[2] / "shared" / "fann-datasets"))


def _load_fann(kind):
    """libfloatfann or libdoublefann through ctypes, or None."""
    name = ctypes.util.find_library(kind)
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    real = ctypes.c_float if kind == "floatfann" else ctypes.c_double
    lib.fann_create_from_file.restype = ctypes.c_void_p
    lib.fann_create_from_file.argtypes = [ctypes.c_char_p]
    lib.fann_run.restype = ctypes.POINTER(real)
    lib.fann_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(real)]
    lib.fann_save.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fann_destroy.argtypes = [ctypes.c_void_p]
    lib.fann_get_num_output.argtypes = [ctypes.c_void_p]
    lib.fann_create_standard_array.restype = ctypes.c_void_p
    lib.fann_create_standard_array.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
    for setter in ("fann_set_activation_function_hidden", "fann_set_activation_function_output"):
        getattr(lib, setter).argtypes = [ctypes.c_void_p, ctypes.c_int]
    for setter in ("fann_set_activation_steepness_hidden", "fann_set_activation_steepness_output"):
        getattr(lib, setter).argtypes = [ctypes.c_void_p, real]
    lib.fann_randomize_weights.argtypes = [ctypes.c_void_p, real, real]
    lib.real, lib.dtype = real, (np.float32 if real is ctypes.c_float else np.float64)
    return lib


FANN = {kind: _load_fann(kind) for kind in ("floatfann", "doublefann")}
needs_fann = pytest.mark.skipif(FANN["floatfann"] is None,
                                reason="libfann is not installed (apt-get install libfann-dev)")


def fann_run(lib, path, X):
    ann = lib.fann_create_from_file(os.fsencode(path))
    assert ann, f"FANN could not load {path}"
    try:
        n_out = lib.fann_get_num_output(ann)
        out = []
        for row in np.asarray(X, lib.dtype):
            x = (lib.real * len(row))(*row)
            y = lib.fann_run(ann, x)
            out.append([y[k] for k in range(n_out)])
        return np.array(out, lib.dtype)
    finally:
        lib.fann_destroy(ann)


def fann_network(lib, path, sizes, hidden, output, steep_hidden, steep_output, seed):
    """A network created, randomized and saved by the real FANN."""
    arr = (ctypes.c_uint * len(sizes))(*sizes)
    ann = lib.fann_create_standard_array(len(sizes), arr)
    lib.fann_set_activation_function_hidden(ann, hidden)
    lib.fann_set_activation_function_output(ann, output)
    lib.fann_set_activation_steepness_hidden(ann, steep_hidden)
    lib.fann_set_activation_steepness_output(ann, steep_output)
    ctypes.CDLL(ctypes.util.find_library("c")).srand(seed)
    lib.fann_randomize_weights(ann, -1.5, 1.5)
    assert lib.fann_save(ann, os.fsencode(path)) == 0
    lib.fann_destroy(ann)


def inputs(n_features, seed=0):
    X = np.random.default_rng(seed).normal(size=(30, n_features)) * 2
    X[0] = 0
    return X


# FANN's codes: 0 linear, 1 threshold, 2 threshold symmetric, 3 sigmoid, 5 symmetric sigmoid
@needs_fann
@pytest.mark.parametrize("kind", ["floatfann", "doublefann"])
@pytest.mark.parametrize("hidden,output,steep_h,steep_o", [
    (3, 3, 0.5, 0.5), (5, 0, 1.0, 1.0), (3, 5, 0.7, 0.25), (5, 3, 1.3, 2.0), (3, 1, 0.5, 1.0),
    (5, 2, 0.9, 0.3)])
def test_read_networks_saved_by_fann(kind, hidden, output, steep_h, steep_o, tmp_path):
    lib = FANN[kind]
    if lib is None:
        pytest.skip(f"lib{kind} is not installed")
    path = tmp_path / "fann.net"
    fann_network(lib, path, [4, 7, 5, 3], hidden, output, steep_h, steep_o, seed=hidden)
    dtype = lib.dtype
    net = read_fann(path, dtype=dtype)
    X = inputs(4)
    expected, got = fann_run(lib, path, X), net.predict(X.astype(dtype))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    if output in (1, 2):           # thresholds: compare away from the jump
        assert np.mean(got == expected) > 0.9
    else:
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)


@needs_fann
def test_steepness_becomes_the_layers_and_back(tmp_path):
    """FANN's steepness s is the layer's (2 s for the sigmoid), the weights are
    FANN's own; written back, FANN computes what fastnn computes."""
    lib = FANN["doublefann"] or FANN["floatfann"]
    path = tmp_path / "fann.net"
    fann_network(lib, path, [4, 6, 2], 5, 3, 0.7, 0.25, seed=1)     # symmetric, sigmoid
    net = read_fann(path, dtype=lib.dtype)
    assert [(l.activation, l.steepness) for l in net.layers] == [("tanh", pytest.approx(0.7)),
                                                                 ("sigmoid", pytest.approx(0.5))]
    assert np.abs(net.layers[0].W).max() <= 1.5        # FANN's draws, not scaled
    X = inputs(4)
    rtol = 1e-5 if lib.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(net.predict(X.astype(lib.dtype)), fann_run(lib, path, X),
                               rtol=rtol, atol=rtol)
    write_fann(net, tmp_path / "again.net")
    assert "(5, 5, 6.99999" in (tmp_path / "again.net").read_text() or \
        "(5, 5, 7.00000" in (tmp_path / "again.net").read_text()
    np.testing.assert_allclose(fann_run(lib, tmp_path / "again.net", X),
                               net.predict(X.astype(lib.dtype)), rtol=rtol, atol=rtol)


@needs_fann
def test_read_sparse_network_saved_by_fann(tmp_path):
    """fann_create_sparse: the missing connections are zeros of the dense layers."""
    lib = FANN["floatfann"]
    lib.fann_create_sparse_array.restype = ctypes.c_void_p
    lib.fann_create_sparse_array.argtypes = [ctypes.c_float, ctypes.c_uint,
                                             ctypes.POINTER(ctypes.c_uint)]
    sizes = (ctypes.c_uint * 3)(6, 9, 2)
    ann = lib.fann_create_sparse_array(0.5, 3, sizes)
    lib.fann_set_activation_function_hidden(ann, 5)
    lib.fann_set_activation_function_output(ann, 3)
    lib.fann_randomize_weights(ann, -1.0, 1.0)
    lib.fann_save(ann, os.fsencode(tmp_path / "sparse.net"))
    lib.fann_destroy(ann)
    assert "connection_rate=0.5" in (tmp_path / "sparse.net").read_text()
    net = read_fann(tmp_path / "sparse.net")
    assert (net.layers[0].W == 0).any()
    X = inputs(6)
    np.testing.assert_allclose(net.predict(X.astype(np.float32)),
                               fann_run(lib, tmp_path / "sparse.net", X), rtol=1e-5, atol=1e-5)


@needs_fann
def test_shortcut_network_saved_by_fann_is_refused(tmp_path):
    lib = FANN["floatfann"]
    lib.fann_create_shortcut_array.restype = ctypes.c_void_p
    lib.fann_create_shortcut_array.argtypes = [ctypes.c_uint, ctypes.POINTER(ctypes.c_uint)]
    ann = lib.fann_create_shortcut_array(3, (ctypes.c_uint * 3)(2, 3, 1))
    lib.fann_save(ann, os.fsencode(tmp_path / "shortcut.net"))
    lib.fann_destroy(ann)
    with pytest.raises(ValueError, match="shortcut"):
        read_fann(tmp_path / "shortcut.net")


@needs_fann
@pytest.mark.parametrize("acts", [("sigmoid", "sigmoid"), ("tanh", "linear"),
                                  ("sigmoid", "tanh"), ("tanh", "sign"), ("linear", "step")])
def test_write_networks_fann_loads(acts, tmp_path):
    for kind in ("floatfann", "doublefann"):
        lib = FANN[kind]
        if lib is None:
            continue
        dtype = lib.dtype
        net = fn.Network([fn.Dense(3, 6, activation=acts[0]),
                          fn.Dense(6, 2, activation=acts[1], use_bias=acts[1] != "step")],
                         dtype=dtype, seed=4)
        net.layers[0].b = np.linspace(-1, 1, 6)
        path = tmp_path / f"{kind}.net"
        write_fann(net, path)
        X = inputs(3, seed=1)
        expected, got = net.predict(X.astype(dtype)), fann_run(lib, path, X)
        rtol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol)
        # and FANN's own save of it reads back to the same network
        ann = lib.fann_create_from_file(os.fsencode(path))
        lib.fann_save(ann, os.fsencode(tmp_path / "resaved.net"))
        lib.fann_destroy(ann)
        again = read_fann(tmp_path / "resaved.net", dtype=dtype)
        np.testing.assert_allclose(again.predict(X.astype(dtype)), expected, rtol=rtol,
                                   atol=rtol)


def test_write_read_round_trip_every_fann_activation(tmp_path):
    for act in ("sigmoid", "tanh", "linear", "relu", "leaky_relu", "step", "sign"):
        net = fn.Network([fn.Dense(4, 5, activation=act), fn.Dense(5, 2, activation="tanh")],
                         dtype="float64", seed=0)
        write_fann(net, tmp_path / "x.net")
        back = read_fann(tmp_path / "x.net", dtype="float64")
        X = inputs(4)
        np.testing.assert_allclose(back.predict(X), net.predict(X), rtol=1e-13, atol=1e-13)
        assert [l.activation for l in back.layers] == [act, "tanh"]


def test_write_refuses_what_fann_has_not(tmp_path):
    for act, alpha in (("elu", None), ("softplus", None), ("softmax", None),
                       ("leaky_relu", 0.2)):
        net = fn.Network([fn.Dense(2, 2, activation=act, alpha=alpha)], seed=0)
        with pytest.raises(ValueError, match="FANN has not"):
            write_fann(net, tmp_path / "x.net")


def _valid_net(tmp_path):
    net = fn.Network([fn.Dense(2, 3, activation="sigmoid"), fn.Dense(3, 1, activation="tanh")],
                     seed=0)
    write_fann(net, tmp_path / "ok.net")
    return (tmp_path / "ok.net").read_text()


def _replace_line(text, key, value):
    return "\n".join(f"{key}={value}" if line.startswith(key + "=") else line
                     for line in text.splitlines()) + "\n"


def _last_weight(text, value):
    head, _, last = text.rstrip("\n").rpartition(", ")
    return head + ", " + value + ") \n"


@pytest.mark.parametrize("edit,match", [
    (lambda t: "", "empty"),
    (lambda t: t.replace("FANN_FLO_2.1", "FANN_FIX_2.0\ndecimal_point=13"), "fixed-point"),
    (lambda t: t.replace("FANN_FLO_2.1", "HELLO"), "first line"),
    (lambda t: _replace_line(t, "network_type", "1"), "shortcut"),
    (lambda t: _replace_line(t, "layer_sizes", "3 4 x"), "layer_sizes"),
    (lambda t: _replace_line(t, "layer_sizes", "3 4 2 2"), "num_layers"),
    (lambda t: _replace_line(t, "num_layers", "2"), "num_layers"),
    (lambda t: _replace_line(t, "layer_sizes", "3 400000000 2"), "at most"),
    (lambda t: t.replace("(3, 3, ", "(3, 7, ", 1), "FANN_GAUSSIAN"),
    (lambda t: t.replace("(3, 3, ", "(3, 4, ", 1), "stepwise='exact'"),
    (lambda t: t.replace("(3, 3, ", "(3, 5, ", 1), "different activations"),
    (lambda t: t.replace("(3, 3, ", "(3, 99, ", 1), "code 99"),
    (lambda t: t.replace("(3, 3, ", "(3, 3; ", 1), "could not read"),
    (lambda t: t.replace("(3, 3, ", "(3000000, 3, ", 1), "connections"),
    (lambda t: t.replace("weight)=(0, ", "weight)=(9, "), "outside the previous layer"),
    (lambda t: t.replace("=(0, 0, ", "=(1, 0, "), "input neuron has inputs"),
    (lambda t: t.replace("e-01) ", "e-01 ", 1), "could not read"),
    (lambda t: t.replace("connections (connected_to_neuron, weight)", "connections"), "no conn"),
    (lambda t: t.rstrip("\n") + "(0, 1.0) \n", "more connections"),
    (lambda t: t.replace("e-01) ", "e999) ", 1), "steepness inf"),
    (lambda t: _last_weight(t, "1e999"), "NaN or infinite"),
    (lambda t: "\xff\xfe" + t, "not a text file"),
])
def test_malformed_networks(edit, match, tmp_path):
    path = tmp_path / "bad.net"
    path.write_bytes(edit(_valid_net(tmp_path)).encode("latin-1"))
    with pytest.raises(ValueError, match=match):
        read_fann(path)


def test_declared_sizes_checked_before_allocation(tmp_path):
    """A small file declaring a huge network fails before numpy is asked for it."""
    text = _valid_net(tmp_path)
    path = tmp_path / "huge.net"
    path.write_text(_replace_line(text, "layer_sizes", "100001 100001 2").replace(
        "num_layers=3", "num_layers=3"))
    with pytest.raises(ValueError, match="at most"):
        read_fann(path)
    path.write_text(text.replace("(3, 3, ", f"({10**15}, 3, ", 1))
    with pytest.raises(ValueError, match="connections line holds at most"):
        read_fann(path)


# -- .data files ---------------------------------------------------------------
def test_data_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        X, y = rng.normal(size=(20, 3)).astype(dtype), rng.normal(size=20).astype(dtype)
        X[0, 0] = 1e-30
        save_fann_data(X, y, tmp_path / "d.data")
        X2, y2 = load_fann_data(tmp_path / "d.data", dtype=dtype)
        np.testing.assert_array_equal(X2, X)
        np.testing.assert_array_equal(y2, y.reshape(-1, 1))


@pytest.mark.skipif(not DATASETS.is_dir(), reason=f"FANN's data sets not found in {DATASETS}")
@pytest.mark.parametrize("name,shape", [("parity8.train", (256, 8, 1)),
                                        ("two-spiral.train", (193, 2, 1)),
                                        ("diabetes.test", (384, 8, 2))])
def test_fann_benchmark_files(name, shape, tmp_path):
    X, y = load_fann_data(DATASETS / name)
    assert (X.shape[0], X.shape[1], y.shape[1]) == shape
    assert X.dtype == np.float64
    save_fann_data(X, y, tmp_path / "copy.data")
    X2, y2 = load_fann_data(tmp_path / "copy.data")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("text,match", [
    ("", "empty"),
    ("2 2\n1 2\n3\n", "samples inputs outputs"),
    ("1 2 1\n1 2 3\n4\n", "has 3 inputs"),
    ("1 2 1\n1 x\n4\n", "not all numbers"),
    ("2 2 1\n1 2\n4\n", "non-empty lines"),
    ("1000000000 1000 1000\n1 2\n3\n", "more than the file"),
    ("1 0 1\n\n4\n", ">= 1"),
    ("1 2 1\n1 nan\n4\n", "NaN"),
])
def test_malformed_data(text, match, tmp_path):
    path = tmp_path / "bad.data"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_fann_data(path)


@needs_fann
def test_data_written_reads_in_fann(tmp_path):
    lib = FANN["floatfann"]
    lib.fann_read_train_from_file.restype = ctypes.c_void_p
    lib.fann_read_train_from_file.argtypes = [ctypes.c_char_p]
    lib.fann_length_train_data.argtypes = [ctypes.c_void_p]
    lib.fann_num_input_train_data.argtypes = [ctypes.c_void_p]
    lib.fann_destroy_train.argtypes = [ctypes.c_void_p]
    X = np.random.default_rng(0).normal(size=(7, 3))
    save_fann_data(X, X[:, :2] > 0, tmp_path / "d.data")
    data = lib.fann_read_train_from_file(os.fsencode(tmp_path / "d.data"))
    assert data
    assert lib.fann_length_train_data(data) == 7 and lib.fann_num_input_train_data(data) == 3
    lib.fann_destroy_train(data)


def test_readers_allocate_about_the_file_size(tmp_path):
    """Peak Python allocation of a read stays within a small multiple of the file."""
    import tracemalloc
    net = fn.Network([fn.Dense(60, 80, activation="sigmoid"), fn.Dense(80, 4)], seed=0)
    write_fann(net, tmp_path / "n.net")
    X = np.random.default_rng(0).normal(size=(2000, 20))
    save_fann_data(X, X[:, :3], tmp_path / "d.data")
    for reader, path in ((read_fann, tmp_path / "n.net"), (load_fann_data, tmp_path / "d.data")):
        size = path.stat().st_size
        tracemalloc.start()
        try:
            reader(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 12 * size + (1 << 20), (reader.__name__, size, peak)


# ---------------------------------------------------------------------------
# FANN's training algorithms: RProp(variant="fann") and Quickprop against the
# real fann_train_epoch (FANN_TRAIN_RPROP = 2, FANN_TRAIN_QUICKPROP = 3)

def _fann_trainer(lib):
    for name in ("fann_set_training_algorithm", "fann_set_train_error_function"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    for name in ("fann_set_learning_rate", "fann_set_quickprop_decay", "fann_set_quickprop_mu",
                 "fann_set_rprop_increase_factor", "fann_set_rprop_decrease_factor",
                 "fann_set_rprop_delta_min", "fann_set_rprop_delta_max",
                 "fann_set_rprop_delta_zero"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_float]
    lib.fann_read_train_from_file.restype = ctypes.c_void_p
    lib.fann_read_train_from_file.argtypes = [ctypes.c_char_p]
    lib.fann_train_epoch.restype = ctypes.c_float
    lib.fann_train_epoch.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.fann_destroy_train.argtypes = [ctypes.c_void_p]
    return lib


def fann_train(lib, net_path, data_path, out_path, algorithm, epochs, settings):
    """``epochs`` of FANN's own fann_train_epoch on the network and data files;
    the trained network saved to ``out_path``.  The error function is linear
    (FANN's default for RPROP is its "tanh" one)."""
    ann = lib.fann_create_from_file(os.fsencode(net_path))
    data = lib.fann_read_train_from_file(os.fsencode(data_path))
    assert ann and data
    try:
        lib.fann_set_training_algorithm(ann, algorithm)
        lib.fann_set_train_error_function(ann, 0)          # FANN_ERRORFUNC_LINEAR
        for name, value in settings.items():
            getattr(lib, f"fann_set_{name}")(ann, value)
        for _ in range(epochs):
            lib.fann_train_epoch(ann, data)
        assert lib.fann_save(ann, os.fsencode(out_path)) == 0
    finally:
        lib.fann_destroy_train(data)
        lib.fann_destroy(ann)


# Hyper-parameters that FANN's floats hold exactly (FANN keeps them as float
# even in libdoublefann), with the FANN setter of each.
FANN_ALGORITHMS = {
    "rprop": (2, lambda: fn.RProp(variant="fann", increase_factor=1.25, decrease_factor=0.5,
                                  delta_min=0.0, delta_max=2.0, delta_zero=0.125),
              dict(rprop_increase_factor=1.25, rprop_decrease_factor=0.5, rprop_delta_min=0.0,
                   rprop_delta_max=2.0, rprop_delta_zero=0.125)),
    "quickprop": (3, lambda: fn.Quickprop(lr=0.75, mu=1.75, decay=-2.0 ** -13),
                  dict(learning_rate=0.75, quickprop_mu=1.75, quickprop_decay=-2.0 ** -13)),
}


@needs_fann
@pytest.mark.parametrize("kind", ["doublefann", "floatfann"])
@pytest.mark.parametrize("algorithm", FANN_ALGORITHMS)
def test_training_matches_fann(algorithm, kind, tmp_path):
    """Same starting weights, same data, a few epochs: the same weights as
    FANN's fann_train_epoch, to the rounding of the dtype (the gradient is
    summed in another order).  Sigmoid hidden units (FANN_SIGMOID, steepness
    0.5) stay within FANN's flat-spot clip [0.01, 0.99] of their derivative."""
    lib = FANN[kind]
    if lib is None:
        pytest.skip(f"lib{kind} is not installed")
    lib = _fann_trainer(lib)
    code, make, settings = FANN_ALGORITHMS[algorithm]
    dtype, epochs = lib.dtype, 6
    rng = np.random.default_rng(5)
    X = rng.integers(-4, 5, size=(16, 3)) / 8.0          # exact in the .data text
    y = np.column_stack([X[:, 0] - X[:, 1] * X[:, 2], np.abs(X[:, 1])]) + 0.25
    net = fn.Network([fn.Dense(3, 5, activation="sigmoid"), fn.Dense(5, 2, activation="linear")],
                     loss="mse", dtype=dtype, seed=2)
    for layer in net.layers:
        layer.W = layer.W * 0.5
        layer.b = rng.uniform(-0.2, 0.2, layer.b.shape)
    write_fann(net, tmp_path / "start.net")
    save_fann_data(X, y, tmp_path / "train.data")
    fann_train(lib, tmp_path / "start.net", tmp_path / "train.data", tmp_path / "trained.net",
               code, epochs, settings)
    expected = read_fann(tmp_path / "trained.net", dtype=dtype)
    optimizer = make()
    net.fit(X.astype(dtype), y.astype(dtype), epochs=epochs, optimizer=optimizer, shuffle=False)
    assert optimizer.step == epochs
    hidden = net.forward(X.astype(dtype))[0]
    assert 0.01 < hidden.min() and hidden.max() < 0.99, "outside FANN's flat-spot clip"
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    for got, want in zip(net.layers, expected.layers):
        scale = np.abs(want.W).max()
        np.testing.assert_allclose(got.W, want.W, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(got.b, want.b, rtol=rtol, atol=rtol * scale)
    # and the weights moved: the comparison is not of the starting point
    assert not np.allclose(net.layers[0].W, read_fann(tmp_path / "start.net", dtype=dtype)
                           .layers[0].W)
