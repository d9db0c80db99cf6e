"""Data larger than memory: fit on a memory-mapped X never copies it (the
process's anonymous memory, not the mapped file's pages, stays far below X's
size), and shuffle="blocks" reads X in blocks of consecutive rows."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn
from fastnn.network import SHUFFLE_BLOCK_BYTES, _shuffler

MEASURE = textwrap.dedent("""
    import sys
    import numpy as np
    import fastnn as fn

    def anon_mb():   # private memory: a copy of X would land here, mapped pages do not
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024

    class Peak(fn.callbacks.Callback):
        wants_batches = True
        peak = 0.0
        def on_batch_end(self, batch, logs):
            if batch % 50 == 0:
                Peak.peak = max(Peak.peak, anon_mb())

    X = np.load(sys.argv[1], mmap_mode="r")
    y = np.arange(X.shape[0]) % 4
    net = fn.Network([fn.Dense(X.shape[1], 8, activation="relu"),
                      fn.Dense(8, 4, activation="softmax")], loss="cross_entropy", seed=0)
    before = anon_mb()
    net.fit(X, y, epochs=1, batch_size=256, shuffle=sys.argv[2] if sys.argv[2] == "blocks"
            else sys.argv[2] == "True", n_threads=1, metrics=["accuracy"],
            validation_split=0.1, callbacks=[Peak()])
    print(max(Peak.peak, anon_mb()) - before)
""")


@pytest.mark.parametrize("shuffle", ["True", "blocks"])
def test_fit_on_a_memory_mapped_X_does_not_copy_it(tmp_path, shuffle):
    n, d = 40_000, 512                        # 80 MB of float32
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for i in range(0, n, 10_000):
        X[i:i + 10_000] = np.random.default_rng(i).normal(size=(10_000, d))
    X.flush()
    del X
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), shuffle],
                         capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)   # not the source tree: python -c imports from its cwd
    assert out.returncode == 0, out.stderr
    grew_mb = float(out.stdout.split()[-1])
    assert grew_mb < 20, f"anonymous memory grew by {grew_mb:.0f} MB for an 80 MB X"


def test_shuffle_blocks_permutes_blocks_of_consecutive_rows():
    X = np.zeros((1000, SHUFFLE_BLOCK_BYTES // 8 // 64), np.float64)   # 64 rows per block
    orders = [_shuffler(np.random.default_rng(0), X, 16, "blocks")() for _ in range(2)]
    order = orders[0]
    assert sorted(order) == list(range(1000))
    blocks = order.reshape(-1, 8)[:, 0] // 64     # (not all: the last block is short)
    for b in range(len(order) // 64 - 1):
        chunk = order[b * 64:(b + 1) * 64]
        if chunk.max() < 960:
            assert chunk.max() - chunk.min() == 63     # one block, its rows shuffled
    assert not np.array_equal(order, np.arange(1000))
    assert blocks.size


def test_shuffle_blocks_trains_and_rejects_other_strings():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 2, 300)
    net = fn.Network([fn.Dense(4, 2, activation="softmax")], loss="cross_entropy", seed=0)
    h = net.fit(X, y, epochs=3, batch_size=16, shuffle="blocks", optimizer=fn.Adam(lr=0.05))
    assert h["loss"][-1] < h["loss"][0]
    with pytest.raises(ValueError, match="shuffle must be True, False or 'blocks'"):
        net.fit(X, y, shuffle="rows")


# -- fit on (X, y) chunks ----------------------------------------------------
def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)), rng.integers(0, 3, n), rng.uniform(0.5, 2, n)


def _net(dropout=0.0):
    return fn.Network([fn.Dense(4, 6, activation="tanh", dropout=dropout),
                       fn.Dense(6, 3, activation="softmax")],
                      loss="cross_entropy", dtype="float64", seed=0)


class _PyDataset:
    """Keras's PyDataset protocol: __len__ and __getitem__ (one chunk each)."""

    def __init__(self, X, y, rows):
        self.X, self.y, self.rows = X, y, rows

    def __len__(self):
        return -(-len(self.y) // self.rows)

    def __getitem__(self, i):
        s = slice(i * self.rows, (i + 1) * self.rows)
        return self.X[s], self.y[s]


@pytest.mark.parametrize("form", ["list", "sequence", "generator function"])
def test_chunks_train_as_the_whole_array_when_batches_align(form):
    # chunks of 100 rows, batches of 10, no shuffling: the same batches as
    # fit on the whole array, so the same weights and History
    X, y, w = _data()
    expected = _net()
    h0 = expected.fit(X, y, sample_weight=w, epochs=3, batch_size=10, shuffle=False,
                      optimizer=fn.Adam(lr=0.01), metrics=["accuracy"])
    parts = [(X[i:i + 100], y[i:i + 100], w[i:i + 100]) for i in range(0, 300, 100)]
    if form == "list":
        chunks = parts
    elif form == "sequence":
        chunks = _PyDataset(X, y, 100)
        h0 = (expected := _net()).fit(X, y, epochs=3, batch_size=10, shuffle=False,
                                      optimizer=fn.Adam(lr=0.01), metrics=["accuracy"])
    else:
        def chunks():
            yield from parts
    net = _net()
    h = net.fit(chunks, epochs=3, batch_size=10, shuffle=False, optimizer=fn.Adam(lr=0.01),
                metrics=["accuracy"])
    for a, b in zip(net.layers, expected.layers):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h["loss"], h0["loss"], rtol=1e-12)
    assert h["accuracy"] == pytest.approx(h0["accuracy"], abs=1e-12)


def test_chunks_with_shuffle_dropout_callbacks_and_validation():
    X, y, _ = _data(250)
    seen = []
    cb = fn.callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(logs["size"]))
    net = _net(dropout=0.2)
    h = net.fit(_PyDataset(X, y, 64), epochs=2, batch_size=16, optimizer=fn.Adam(lr=0.01),
                validation_data=(X[:50], y[:50]), callbacks=[cb], input_noise=0.05)
    assert len(h["loss"]) == 2 and len(h["val_loss"]) == 2
    # 4 chunks (64, 64, 64, 58 rows) per epoch, batches never span two
    assert sorted(seen[:len(seen) // 2]) == sorted([16] * 15 + [10])
    assert np.isfinite(h["loss"]).all()


def test_a_one_shot_iterator_trains_on_every_chunk():
    # fit reads the first chunk to check shapes; an iterator (read once)
    # must still train on it: the same weights as the list of chunks
    X, y, _ = _data(40)
    parts = [(X[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10)]
    expected, net = _net(), _net()
    h0 = expected.fit(parts, epochs=1, batch_size=5, shuffle=False, optimizer=fn.SGD(lr=0.1))
    h = net.fit(iter(parts), epochs=1, batch_size=5, shuffle=False, optimizer=fn.SGD(lr=0.1))
    for a, b in zip(net.layers, expected.layers):
        np.testing.assert_array_equal(a.W, b.W)
    assert h["loss"] == h0["loss"]
    with pytest.raises(ValueError, match="read only once, for training metrics"):
        _net().fit(iter(parts), epochs=1, metrics=["accuracy"])


def test_training_metrics_of_chunks_draw_no_shuffling():
    # the shuffled orders come from the network's generator once per epoch:
    # asking for the training accuracy must not change them
    X, y, _ = _data(120)
    nets = [_net(), _net()]
    for net, metrics in zip(nets, (None, ["accuracy"])):
        net.fit(_PyDataset(X, y, 40), epochs=3, batch_size=8, optimizer=fn.SGD(lr=0.1),
                metrics=metrics)
    for a, b in zip(*(n.layers for n in nets)):
        np.testing.assert_array_equal(a.W, b.W)


def test_chunk_errors():
    X, y, _ = _data(40)
    gen = ((X[i:i + 10], y[i:i + 10]) for i in range(0, 40, 10))
    with pytest.raises(ValueError, match="can be read only once"):
        _net().fit(gen, epochs=2)
    with pytest.raises(ValueError, match="each chunk must be a tuple"):
        _net().fit([X[:10]], epochs=1)
    with pytest.raises(ValueError, match="X of chunk 1 has 3 features"):
        _net().fit([(X[:10], y[:10]), (X[:10, :3], y[:10])], epochs=1)
    with pytest.raises(ValueError, match="does not take validation_split"):
        _net().fit([(X, y)], validation_split=0.2)
    with pytest.raises(ValueError, match="no chunks"):
        _net().fit([], epochs=1)
    with pytest.raises(TypeError, match="y must be an array-like, got NoneType"):
        _net().fit(X)


def test_train_on_disk_example_runs(tmp_path):
    script = Path(__file__).resolve().parent.parent / "examples" / "train_on_disk.py"
    if not script.exists():
        pytest.skip("examples/ is not next to tests/ (not a source checkout)")
    env = dict(os.environ, FASTNN_EXAMPLE_QUICK="1")
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "X.npy")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "private memory grew by" in out.stdout and "(X, y) chunks: loss" in out.stdout
