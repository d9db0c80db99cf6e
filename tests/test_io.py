"""Model files: Network.save / fastnn.load.

Covers: the round trip (identical predictions, dtype, architecture,
activation parameters and loss preserved) for float32 and float64 and a
layer without bias; the file being a plain .npz (zip) with no pickled
member; loading a pickle (of the network, or a pickled .npy), garbage, an
empty or truncated file, a wrong header or a mismatched array raising
ValueError - and never unpickling anything.  The optimizer of the last fit
(class, constructor arguments, step count, state buffers) and the shuffling
generator round-trip exactly; version 1 files (no optimizer) still load;
damaged optimizer entries (unknown class, invalid arguments, wrong number,
shape or size of state buffers, negative step, malformed generator state)
are refused; an optimizer fastnn cannot rebuild is left out with a warning.

Tolerances: none - weights are stored exactly, so predictions must be
bit-identical after the round trip.
"""
import io
import os
import pickle
import zipfile

import numpy as np
import pytest

import fastnn as fn

from conftest import assert_same_weights, make_net, weights


def _net(dtype):
    return make_net((5, 7, 4, 3), ("leaky_relu", "elu", "softmax"), loss="cross_entropy",
                    dtype=dtype, seed=3, use_bias=(True, False, True))


@pytest.mark.parametrize("use_path_object", [False, True])
def test_round_trip(tmp_path, dtype, use_path_object):
    net = _net(dtype)
    X = np.random.default_rng(0).normal(size=(20, 5))
    before = net.predict(X)
    path = tmp_path / "model.fnn"
    net.save(path if use_path_object else str(path))
    loaded = fn.load(path if use_path_object else str(path))
    assert loaded.dtype == net.dtype == np.dtype(dtype)
    assert loaded.loss == "cross_entropy"
    assert loaded.get_config() == net.get_config()
    assert [l.alpha for l in loaded.layers] == [0.1, 0.8, 0.0]
    assert loaded.layers[1].b is None and not loaded.layers[1].use_bias
    for a, b in zip(net.layers, loaded.layers):
        assert b.W.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a.W, b.W)
        if a.b is not None:
            assert b.b.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(a.b, b.b)
    after = loaded.predict(X)
    assert after.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(before, after)
    # the loaded network trains like any other
    loaded.fit(X, np.arange(20) % 3, epochs=1, optimizer=fn.SGD(lr=0.1))
    assert not np.array_equal(loaded.predict(X), before)


def test_file_is_a_zip_without_pickles(tmp_path):
    net = _net(np.float32)
    path = tmp_path / "model.fnn"
    net.save(path)
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as archive:      # would raise on a pickled member
        for name in archive.files:
            assert archive[name].dtype != object
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            assert name.endswith(".npy")
            # every member is a plain .npy whose header declares no object dtype
            assert b"'descr': '|O'" not in z.read(name)[:128]
    assert not any(p.name.startswith(".fastnn-") for p in tmp_path.iterdir()), "temp file left"


class _Boom:
    """Unpickling this creates a marker file: proof that load() unpickled."""
    marker = None

    def __reduce__(self):
        return (open, (str(_Boom.marker), "w"))


def _bad_file(tmp_path, kind):
    path = tmp_path / f"{kind}.fnn"
    net = _net(np.float64)
    if kind.startswith("optimizer-") or kind == "bad-rng":
        net.fit(np.random.default_rng(0).normal(size=(9, 5)), np.arange(9) % 3, epochs=2,
                batch_size=4, optimizer=fn.Adam(0.01))
    if kind == "pickled-network":
        path.write_bytes(pickle.dumps(net))
    elif kind == "pickle-payload":
        path.write_bytes(pickle.dumps(_Boom()))
    elif kind == "pickled-npy":
        np.save(open(path, "wb"), np.array([_Boom()], dtype=object), allow_pickle=True)
    elif kind == "npz-with-pickled-member":
        buf = io.BytesIO()
        np.savez(buf, header=np.array([_Boom()], dtype=object))
        path.write_bytes(buf.getvalue())
    elif kind == "garbage":
        path.write_bytes(os.urandom(64) + b"not a model")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind in ("truncated", "half"):
        net.save(path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2] if kind == "half" else data[:-30])
    elif kind == "corrupted-weights":
        net.save(path)
        data = bytearray(path.read_bytes())
        start = data.index(b"W0.npy") + 200           # inside W0's stored bytes
        data[start:start + 8] = b"\xff" * 8
        path.write_bytes(bytes(data))
    elif kind == "plain-npy":
        np.save(open(path, "wb"), np.zeros(3))
    elif kind == "foreign-npz":
        np.savez(open(path, "wb"), a=np.zeros(3))
    elif kind == "wrong-version":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, version=99))
    elif kind == "wrong-format":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, format="other"))
    elif kind == "bad-architecture":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, layers=[dict(h["layers"][0], activation="nope")]
                                             + h["layers"][1:]))
    elif kind == "wrong-shape":
        net.save(path)
        _rewrite_arrays(path, W0=np.zeros((2, 2)))
    elif kind == "wrong-dtype":
        net.save(path)
        _rewrite_arrays(path, W0=net.layers[0].W.astype(np.float32))
    elif kind == "missing-array":
        net.save(path)
        _rewrite_arrays(path, drop="b2")
    elif kind == "optimizer-unknown-class":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, optimizer=dict(h["optimizer"], **{
            "class": "load"})))
    elif kind == "optimizer-bad-config":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, optimizer=dict(h["optimizer"], config=dict(
            h["optimizer"]["config"], beta1=1.5))))
    elif kind == "optimizer-unknown-argument":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, optimizer=dict(h["optimizer"], config=dict(
            h["optimizer"]["config"], amsgrad=True))))
    elif kind == "optimizer-state-count":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, optimizer=dict(h["optimizer"], n_state=1)))
    elif kind == "optimizer-negative-step":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, optimizer=dict(h["optimizer"], step=-1)))
    elif kind == "optimizer-state-shape":
        net.save(path)
        _rewrite_arrays(path, opt1_W0=np.zeros((7, 5)))
    elif kind == "optimizer-state-dtype":
        net.save(path)
        _rewrite_arrays(path, opt0_b2=np.zeros(3, np.float32))
    elif kind == "optimizer-state-oversized":
        net.save(path)
        _rewrite_arrays(path, opt0_W1=np.zeros((7, 4, 1000)))
    elif kind == "optimizer-state-missing":
        net.save(path)
        _rewrite_arrays(path, drop="opt1_b0")
    elif kind == "bad-rng":
        net.save(path)
        _rewrite_header(path, lambda h: dict(h, rng=dict(h["rng"], state={"state": "x"})))
    return path


def _rewrite_header(path, change):
    import json
    with np.load(path) as a:
        arrays = {k: a[k] for k in a.files}
    header = change(json.loads(bytes(arrays["header"]).decode()))
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(open(path, "wb"), **arrays)


def _rewrite_arrays(path, drop=None, **replace):
    with np.load(path) as a:
        arrays = {k: a[k] for k in a.files if k != drop}
    arrays.update(replace)
    np.savez(open(path, "wb"), **arrays)


BAD = ["pickled-network", "pickle-payload", "pickled-npy", "npz-with-pickled-member",
       "garbage", "empty", "truncated", "half", "corrupted-weights", "plain-npy", "foreign-npz", "wrong-version",
       "wrong-format", "bad-architecture", "wrong-shape", "wrong-dtype", "missing-array",
       "optimizer-unknown-class", "optimizer-bad-config", "optimizer-unknown-argument",
       "optimizer-state-count", "optimizer-negative-step", "optimizer-state-shape",
       "optimizer-state-dtype", "optimizer-state-oversized", "optimizer-state-missing",
       "bad-rng"]


@pytest.mark.parametrize("kind", BAD)
def test_load_rejects_bad_files(tmp_path, kind):
    _Boom.marker = tmp_path / "UNPICKLED"
    path = _bad_file(tmp_path, kind)
    assert not _Boom.marker.exists()
    with pytest.raises(ValueError, match="is not a valid fastnn model file"):
        fn.load(path)
    assert not _Boom.marker.exists(), "load() unpickled the file"


def test_load_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.fnn"
    with pytest.raises((ValueError, FileNotFoundError), match="nowhere.fnn"):
        fn.load(path)


# -- the optimizer and the generator ---------------------------------------------------

OPTIMIZERS = {"sgd": lambda: fn.SGD(lr=0.05),
              "momentum": lambda: fn.SGD(lr=0.05, momentum=0.8),
              "nesterov": lambda: fn.SGD(lr=0.05, momentum=0.8, nesterov=True),
              "adam": lambda: fn.Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7),
              "rprop-fann": lambda: fn.RProp(delta_zero=0.05, variant="fann"),
              "quickprop": lambda: fn.Quickprop(lr=0.3, mu=1.5, decay=-0.001)}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_optimizer_round_trip(tmp_path, dtype, name):
    net = _net(dtype)
    net.fit(np.random.default_rng(0).normal(size=(11, 5)), np.arange(11) % 3, epochs=3,
            batch_size=4, optimizer=OPTIMIZERS[name]())
    net.save(tmp_path / "m.fnn")
    loaded = fn.load(tmp_path / "m.fnn")
    a, b = net.optimizer, loaded.optimizer
    assert type(a) is type(b) and repr(a) == repr(b)
    assert vars(a).keys() == vars(b).keys()
    assert b.step == a.step == (3 if a.full_batch else 9)   # full batch: one step per epoch
    if a._state is None:
        assert b._state is None
    else:
        assert len(a._state) == len(b._state) == a.n_state
        for bufs_a, bufs_b in zip(a._state, b._state):
            for (Wa, ba), (Wb, bb) in zip(bufs_a, bufs_b):
                assert Wb.dtype == np.dtype(dtype)
                np.testing.assert_array_equal(Wa, Wb)
                if ba is None:
                    assert bb is None
                else:
                    np.testing.assert_array_equal(ba, bb)
    # the shuffling generator continues where it was
    assert loaded._rng.integers(1 << 62) == net._rng.integers(1 << 62)


def test_model_without_optimizer(tmp_path):
    net = _net(np.float32)
    net.save(tmp_path / "m.fnn")
    loaded = fn.load(tmp_path / "m.fnn")
    assert loaded.optimizer is None


def test_rate_brought_to_zero_by_a_schedule_is_kept(tmp_path):
    net = _net(np.float64)
    X = np.random.default_rng(0).normal(size=(6, 5))
    net.fit(X, np.arange(6) % 3, epochs=3, optimizer=fn.SGD(lr=0.1, momentum=0.5),
            lr_schedule=lambda epoch: [0.1, 0.05, 0.0][epoch])
    net.save(tmp_path / "m.fnn")
    assert fn.load(tmp_path / "m.fnn").optimizer.lr == 0.0


def test_foreign_optimizer_is_left_out_with_a_warning(tmp_path):
    class MySGD(fn.SGD):
        pass

    net = _net(np.float64)
    net.fit(np.ones((4, 5)), np.arange(4) % 3, optimizer=MySGD(lr=0.1, momentum=0.5))
    with pytest.warns(UserWarning, match="MySGD is not one of fastnn.optimizers"):
        net.save(tmp_path / "m.fnn")
    loaded = fn.load(tmp_path / "m.fnn")
    assert loaded.optimizer is None
    np.testing.assert_array_equal(loaded.layers[0].W, net.layers[0].W)


def test_optimizer_config_reads_every_constructor_argument():
    from fastnn.io import optimizer_config
    assert optimizer_config(fn.SGD(lr=0.2, momentum=0.5, nesterov=True)) == {
        "lr": 0.2, "momentum": 0.5, "nesterov": True}
    assert optimizer_config(fn.Adam()) == {"lr": 0.001, "beta1": 0.9, "beta2": 0.999,
                                           "eps": 1e-8, "bias_correction": "moments"}
    # every fastnn optimizer rebuilds from its config
    for opt in (fn.AdamW(lr=0.01, weight_decay=0.1), fn.RMSprop(momentum=0.5), fn.RProp()):
        config = optimizer_config(opt)
        rebuilt = type(opt)(**config)
        assert optimizer_config(rebuilt) == config

    class Forgetful(fn.SGD):
        def __init__(self, lr=0.1, decay=0.5):
            super().__init__(lr)

    with pytest.raises(TypeError, match="Forgetful keeps no attribute 'decay'"):
        optimizer_config(Forgetful())


def test_version_1_files_still_load(tmp_path):
    net = _net(np.float64)
    path = tmp_path / "v1.fnn"
    # the layout of format version 1: header (no optimizer, no generator), W{i}, b{i}
    header = dict(net.get_config(), format="fastnn", version=1)
    import json
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), np.uint8)}
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        if layer.b is not None:
            arrays[f"b{i}"] = layer.b
    np.savez(open(path, "wb"), **arrays)
    loaded = fn.load(path)
    assert loaded.optimizer is None
    X = np.random.default_rng(1).normal(size=(4, 5))
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))


def test_dropout_training_resumes_exactly_after_load(tmp_path):
    """Dropout masks are keyed on (key, epoch): a loaded model continues the sequence."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(64, 5)), rng.integers(0, 3, 64)

    def make():
        return fn.Network([fn.Dense(5, 7, "relu", dropout=0.3), fn.Dense(7, 3, "softmax")],
                          loss="cross_entropy", dtype="float64", seed=11)

    straight = make()
    straight.fit(X, y, epochs=4, batch_size=16, optimizer=fn.SGD(lr=0.1, momentum=0.9))
    resumed = make()
    resumed.fit(X, y, epochs=2, batch_size=16, optimizer=fn.SGD(lr=0.1, momentum=0.9))
    resumed.save(tmp_path / "m.fnn")
    loaded = fn.load(tmp_path / "m.fnn")
    assert loaded.layers[0].dropout == 0.3
    loaded.fit(X, y, epochs=2, batch_size=16)
    assert_same_weights(weights(straight), weights(loaded))


@pytest.mark.parametrize("noise", [{"key": -1, "epochs_trained": 0}, {"key": 1},
                                   {"key": None, "epochs_trained": "3"}, [1, 2]])
def test_malformed_noise_entry_is_refused(tmp_path, noise):
    import json
    net = _net(np.float64)
    path = tmp_path / "m.fnn"
    net.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    header = json.loads(arrays["header"].tobytes())
    header["noise"] = noise
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:     # (np.savez would append .npz to a name)
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="noise entry"):
        fn.load(path)
