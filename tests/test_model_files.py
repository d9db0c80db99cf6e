"""Model files in the field: hostile files, memory, full disks, SIGTERM.

- Crafted headers (200,000-deep JSON, a short MT19937 key, a 5000-digit
  integer, a huge step or epoch count, the base class Optimizer, NaN or
  negative optimizer state, pickled data) are refused by ``load`` with a
  ValueError naming the file - never an IndexError, RecursionError or a
  failure later inside ``fit`` - and the message never suggests numpy's
  ``allow_pickle``.
- A zip bomb whose header declares a 40000 x 40000 layer is refused before
  anything near its size is allocated (tracemalloc: NumPy reports its
  buffers to it).
- Loading a float32 model allocates about the file's size (1x, not 2.7x).
- Save errors name the target path (ENOSPC simulated in the writer), and a
  SIGTERM during a save - with a handler that calls sys.exit, and with the
  default action that kills the process - leaves the old file and no
  ``.fastnn-*.tmp``.
"""
import errno
import io
import json
import os
import pickle
import re
import signal
import subprocess
import tempfile
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastnn as fn
import fastnn.io

from conftest import FASTNN_PARENT


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(path, arrays, header) of a model trained one epoch with Adam."""
    net = fn.Network([fn.Dense(5, 7, activation="relu"),
                      fn.Dense(7, 3, activation="softmax")], loss="cross_entropy", seed=0)
    X = np.random.default_rng(0).normal(size=(50, 5))
    net.fit(X, np.arange(50) % 3, epochs=1, optimizer=fn.Adam())
    path = tmp_path_factory.mktemp("good") / "good.fnn"
    net.save(path)
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    return path, arrays, json.loads(arrays["header"].tobytes())


def _write(path, arrays, header=None, **replace):
    arrays = dict(arrays, **replace)
    if header is not None:
        text = header if isinstance(header, str) else json.dumps(header)
        arrays["header"] = np.frombuffer(text.encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _changed(header, change):
    header = json.loads(json.dumps(header))
    change(header)
    return header


def _set(entry, key, value):
    def change(h):
        h[entry][key] = value
    return change


CRAFTED = {
    "200000-deep-json": lambda a, h: dict(header="[" * 200000 + "]" * 200000),
    "short-mt19937-key": lambda a, h: dict(header=_changed(h, lambda h: h.__setitem__(
        "rng", {"bit_generator": "MT19937", "state": {"key": [1, 2, 3], "pos": 3}}))),
    "5000-digit-integer": lambda a, h: dict(
        header=json.dumps(h)[:-1] + ', "extra": ' + "9" * 5000 + "}"),
    "huge-step": lambda a, h: dict(header=_changed(h, _set("optimizer", "step", 10 ** 30))),
    "step-beyond-2**63": lambda a, h: dict(header=_changed(h, _set("optimizer", "step",
                                                                   2 ** 63))),
    "huge-epoch-count": lambda a, h: dict(header=_changed(h, _set("noise", "epochs_trained",
                                                                  10 ** 20))),
    "base-class-Optimizer": lambda a, h: dict(header=_changed(h, lambda h: h.__setitem__(
        "optimizer", {"class": "Optimizer", "config": {}, "step": 0, "n_state": 0}))),
    "nan-optimizer-state": lambda a, h: dict(opt0_W1=np.full_like(a["opt0_W1"], np.nan)),
    "negative-second-moment": lambda a, h: dict(opt1_W0=-np.abs(a["opt1_W0"]) - 1),
    "infinite-weights": lambda a, h: dict(W1=np.full_like(a["W1"], np.inf)),
    "huge-alpha": lambda a, h: dict(header=_changed(h, lambda h: h["layers"][0].__setitem__(
        "alpha", 10 ** 400))),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_crafted_headers_are_refused_at_load(tmp_path, good, kind):
    path, arrays, header = good
    bad = _write(tmp_path / f"{kind}.fnn", arrays, **CRAFTED[kind](arrays, header))
    with pytest.raises(ValueError, match=re.escape(f"'{bad}' is not a valid fastnn model file: ")) \
            as info:
        fn.load(bad)
    assert "allow_pickle" not in str(info.value)


@pytest.mark.parametrize("what", ["pickled-network", "pickled-member", "single-npy"])
def test_pickled_data_is_refused_without_numpy_advice(tmp_path, good, what):
    path, arrays, header = good
    bad = tmp_path / "bad.fnn"
    if what == "pickled-network":
        bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    elif what == "pickled-member":
        _write(bad, arrays, W0=np.array([{"a": 1}, None], dtype=object))
    else:
        np.save(open(bad, "wb"), np.zeros(3))
    with pytest.raises(ValueError, match="is not a valid fastnn model file") as info:
        fn.load(bad)
    assert "allow_pickle" not in str(info.value)
    if what != "single-npy":
        assert "never unpickles" in str(info.value)


def _traced_peak(call):
    tracemalloc.start()
    try:
        try:
            call()
        except ValueError as exc:
            outcome = exc
        else:
            outcome = None
        return tracemalloc.get_traced_memory()[1], outcome
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("zip_sizes", ["honest", "understated"])
def test_zip_bomb_declaring_a_huge_layer_is_refused_before_allocating(tmp_path, good,
                                                                      zip_sizes):
    path, arrays, header = good
    header = _changed(header, lambda h: (h["layers"][0].update(n_in=40000, n_out=40000),
                                         h["layers"][1].update(n_in=40000),
                                         h.__setitem__("optimizer", None)))
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False,
                                               "shape": (40000, 40000)})
    w0 = npy.getvalue() + bytes(64 << 20)            # 64 MiB of zeros, deflated to ~64 KB
    head = io.BytesIO()
    np.lib.format.write_array(head, np.frombuffer(json.dumps(header).encode(), np.uint8))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("header.npy", head.getvalue())
        z.writestr("W0.npy", w0)
    data = buf.getvalue()
    if zip_sizes == "understated":   # the zip entry claims the member is small
        data = data.replace(len(w0).to_bytes(4, "little"), (1000).to_bytes(4, "little"))
    bomb = tmp_path / "bomb.fnn"
    bomb.write_bytes(data)
    assert bomb.stat().st_size < 1 << 20
    peak, exc = _traced_peak(lambda: fn.load(bomb))
    assert isinstance(exc, ValueError) and "not a valid fastnn model file" in str(exc)
    assert peak < 2 * bomb.stat().st_size + (1 << 20), f"{peak / 2**20:.1f} MiB allocated"


@pytest.mark.parametrize("optimizer", [None, "adam"])
def test_loading_allocates_about_the_file_size(tmp_path, optimizer):
    net = fn.Network([fn.Dense(256, 1024, activation="relu"),
                      fn.Dense(1024, 1024, activation="relu"),
                      fn.Dense(1024, 10, activation="softmax")], loss="cross_entropy", seed=0)
    if optimizer:
        net.fit(np.zeros((4, 256)), [0, 1, 2, 3], epochs=1, optimizer=fn.Adam())
    path = tmp_path / "big.fnn"
    net.save(path)
    size = path.stat().st_size
    loaded = []
    peak, exc = _traced_peak(lambda: loaded.append(fn.load(path)))
    assert exc is None
    assert peak < 1.15 * size + (1 << 20), f"load peaked at {peak / size:.2f}x the file size"
    X = np.random.default_rng(0).normal(size=(3, 256))
    np.testing.assert_array_equal(loaded[0].predict(X), net.predict(X))


def test_a_full_disk_names_the_target(tmp_path, monkeypatch, good):
    path = tmp_path / "model.fnn"
    path.write_bytes(b"old")
    real = np.savez

    def full_disk(f, **arrays):
        real(f, **arrays)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fastnn.io.np, "savez", full_disk)
    net = fn.load(good[0])
    with pytest.raises(OSError, match=re.escape(f"cannot save the model to '{path}': No space")) \
            as info:
        net.save(path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fnn"]


SIGTERM_DURING_SAVE = r'''
import os, signal, sys, time
import numpy as np
import fastnn as fn
import fastnn.io
mode, folder = sys.argv[1], sys.argv[2]
if mode == "named-temporary-file":
    fastnn.io._unnamed_file = lambda folder: None       # as without O_TMPFILE
if mode != "default-action":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))   # graceful shutdown
net = fn.Network([fn.Dense(512, 1024), fn.Dense(1024, 256)], seed=0)
real = np.savez

def savez(f, **arrays):
    f.write(bytes(8 << 20))                # part of a large model is on disk ...
    f.flush()
    os.kill(os.getpid(), signal.SIGTERM)   # ... when the scheduler stops the job
    time.sleep(30)
    real(f, **arrays)
fastnn.io.np.savez = savez
net.save(os.path.join(folder, "model.fnn"))
print("SAVED")
'''


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("mode", ["handler-calls-sys.exit", "default-action",
                                  "named-temporary-file"])
def test_sigterm_during_save_leaves_no_temporary_file(tmp_path, good, mode):
    if mode == "default-action":
        fd = fastnn.io._unnamed_file(str(tmp_path))
        if fd is None:
            pytest.skip("no O_TMPFILE here: a killed process leaves its named temporary file")
        os.close(fd)
    model = tmp_path / "model.fnn"
    model.write_bytes(good[0].read_bytes())
    env = dict(os.environ, PYTHONPATH=FASTNN_PARENT)
    proc = subprocess.run([sys.executable, "-c", SIGTERM_DURING_SAVE, mode, str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env,
                          cwd=tempfile.gettempdir())   # not the source tree (python -c imports from cwd)
    assert "SAVED" not in proc.stdout
    if mode == "default-action":
        assert proc.returncode == -signal.SIGTERM, proc.stderr
    else:
        assert proc.returncode == 143, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fnn"]
    assert model.read_bytes() == good[0].read_bytes()
