"""Model files: one portable .npz holding a JSON header and the weights, no pickle.

Layout: ``header`` is the UTF-8 JSON of the architecture (format name and
version, dtype, loss, layers), stored as a uint8 array; ``W0, b0, W1, ...``
are the parameters.  Loading never unpickles (allow_pickle=False) and checks
the header and every array's shape and dtype before building the network.
"""
import json
import os
import tempfile

import numpy as np

FORMAT = "fastnn"
VERSION = 1


def save(net, path):
    header = dict(net.get_config(), format=FORMAT, version=VERSION)
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        if layer.b is not None:
            arrays[f"b{i}"] = layer.b
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # Write next to the target and rename: an interrupted save never leaves a
    # half-written model in place of a good one.
    fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _fail(path, why):
    raise ValueError(f"{os.fspath(path)!r} is not a valid fastnn model file: {why}")


def load(path):
    """Load a model written by ``Network.save``."""
    from .layers import Dense
    from .network import Network

    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        _fail(path, f"cannot be read as an .npz archive ({exc})")
    if not hasattr(archive, "files"):
        _fail(path, "it holds a single array, not an archive")
    with archive:
        try:
            header = json.loads(bytes(archive["header"]).decode())
        except Exception as exc:
            _fail(path, f"missing or unreadable header ({exc})")
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            _fail(path, "the header does not name the fastnn format")
        if header.get("version") != VERSION:
            _fail(path, f"format version {header.get('version')!r} is not supported "
                        f"(this fastnn reads version {VERSION})")
        try:
            layers = [Dense(c["n_in"], c["n_out"], activation=c["activation"],
                            use_bias=c["use_bias"], init="zeros", alpha=c["alpha"])
                      for c in header["layers"]]
            net = Network(layers, loss=header["loss"], dtype=header["dtype"])
        except (KeyError, TypeError, ValueError) as exc:
            _fail(path, f"invalid architecture in the header ({exc})")
        for i, layer in enumerate(layers):
            names = [("W", f"W{i}")] + ([("b", f"b{i}")] if layer.use_bias else [])
            for attr, key in names:
                if key not in archive.files:
                    _fail(path, f"array {key} is missing")
                arr = archive[key]
                expected = getattr(layer, attr)
                if arr.shape != expected.shape or arr.dtype != expected.dtype:
                    _fail(path, f"array {key} has shape {arr.shape} and dtype {arr.dtype}, "
                                f"expected {expected.shape} {expected.dtype}")
                setattr(layer, attr, arr)
    return net
