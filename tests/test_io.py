"""Model files: Network.save / fastnn.load.

Covers: the round trip (identical predictions, dtype, architecture,
activation parameters and loss preserved) for float32 and float64 and a
layer without bias; the file being a plain .npz (zip) with no pickled
member; loading a pickle (of the network, or a pickled .npy), garbage, an
empty or truncated file, a wrong header or a mismatched array raising
ValueError - and never unpickling anything.

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

from conftest import make_net


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
       "wrong-format", "bad-architecture", "wrong-shape", "wrong-dtype", "missing-array"]


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
