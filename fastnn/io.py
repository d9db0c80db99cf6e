"""Model files: one portable .npz holding a JSON header and the weights, no pickle.

Layout: ``header`` is the UTF-8 JSON of the architecture (format name and
version, dtype, loss, layers), stored as a uint8 array; ``W0, b0, W1, ...``
are the parameters.  Loading never unpickles (allow_pickle=False) and checks
the header and every array's shape and dtype before building the network.
"""
import json
import math
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
            # mkstemp's file is owner-only; the model gets the usual mode.
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _file_mode(path))
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)


def _file_mode(path):
    """The mode of the file being replaced, else that of any new file (umask)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0o022)   # reading the umask means setting it; put it back
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fail(path, why):
    raise ValueError(f"{os.fspath(path)!r} is not a valid fastnn model file: {why}")


class _Refused(Exception):
    """Raised inside _read_array's try block, reported through _fail."""


def load(path):
    """Load a model written by ``Network.save``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {os.fspath(path)!r}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:   # zipfile.BadZipFile, OSError, ValueError, EOFError, ...
        _fail(path, f"cannot be read as an .npz archive ({type(exc).__name__}: {exc})")
    if not hasattr(archive, "files"):
        _fail(path, "it holds a single array, not an archive")
    with archive:
        return _read(path, archive)


MAX_HEADER_BYTES = 1 << 20
NPY_HEADER_SLACK = 1 << 16   # room for the .npy header in front of the data


def _member_size(path, archive, key):
    """Uncompressed size of the archive member behind ``key``, before reading it."""
    if key not in archive.files:
        _fail(path, f"array {key} is missing")
    try:
        return archive.zip.getinfo(key + ".npy").file_size
    except Exception as exc:
        _fail(path, f"array {key} cannot be found in the archive ({exc})")


def _read_array(path, archive, key, max_bytes, shape=None, dtype=None):
    """The array ``key``, read only once its size is known to be at most
    ``max_bytes`` and its .npy header declares ``shape`` and ``dtype`` (when
    given): a damaged header cannot make the loader allocate what it claims."""
    size = _member_size(path, archive, key)
    if size > max_bytes + NPY_HEADER_SLACK:
        _fail(path, f"array {key} takes {size} bytes, more than the {max_bytes} (and a "
                    f".npy header) it may hold")
    fmt = np.lib.format
    try:
        with archive.zip.open(key + ".npy") as member:
            version = fmt.read_magic(member)
            read_header = {(1, 0): fmt.read_array_header_1_0,
                           (2, 0): fmt.read_array_header_2_0}.get(version)
            if read_header is None:
                raise _Refused(f"array {key} has an unsupported .npy version {version}")
            got_shape, fortran_order, got_dtype = read_header(member)
            if got_dtype.hasobject or got_dtype.kind not in "uif":
                raise _Refused(f"array {key} holds {got_dtype}, not numbers")
            if (shape is not None and got_shape != shape) or fortran_order or (
                    dtype is not None and got_dtype != dtype):
                expected = f"{shape} {np.dtype(dtype)}" if shape is not None else "C order"
                raise _Refused(f"array {key} has shape {got_shape} and dtype {got_dtype}"
                               f"{' in Fortran order' if fortran_order else ''}, "
                               f"expected {expected}")
            n_bytes = math.prod(got_shape) * got_dtype.itemsize
            if n_bytes > max_bytes:
                raise _Refused(f"array {key} declares {n_bytes} bytes of data, more than the "
                               f"{max_bytes} it may hold")
            data = member.read(n_bytes)
            # Reading to the end also makes zipfile check the member's CRC.
            if len(data) != n_bytes or member.read(1 << 16):
                raise _Refused(f"array {key} does not hold exactly {n_bytes} bytes of data")
    except _Refused as exc:
        _fail(path, str(exc))
    except Exception as exc:   # damaged member: bad CRC, bad zip data, truncated, bad .npy header
        _fail(path, f"array {key} cannot be read ({type(exc).__name__}: {exc})")
    return np.frombuffer(data, dtype=got_dtype).reshape(got_shape)


def _read_header(path, archive):
    raw = _read_array(path, archive, "header", MAX_HEADER_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(path, "the header is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"the header is not valid JSON ({exc})")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(path, "the header does not name the fastnn format")
    if header.get("version") != VERSION:
        _fail(path, f"format version {header.get('version')!r} is not supported "
                    f"(this fastnn reads version {VERSION})")
    layers = header.get("layers")
    if not isinstance(layers, list) or not layers:
        _fail(path, "the header lists no layers")
    for i, c in enumerate(layers):
        if not isinstance(c, dict) or not all(
                isinstance(c.get(k), int) and not isinstance(c.get(k), bool) and c[k] > 0
                for k in ("n_in", "n_out")):
            _fail(path, f"layer {i} of the header has no valid n_in/n_out")
    return header


def _read(path, archive):
    from .layers import Dense
    from .network import Network

    header = _read_header(path, archive)
    if header.get("dtype") not in ("float32", "float64"):
        _fail(path, f"unsupported dtype {header.get('dtype')!r}")
    itemsize = np.dtype(header["dtype"]).itemsize
    # Every array is checked against the sizes the header declares before it
    # is read, and the network is only built once all of them are valid.
    params = []
    for i, c in enumerate(header["layers"]):
        shapes = {"W": (c["n_in"], c["n_out"])}
        if c.get("use_bias", True):
            shapes["b"] = (c["n_out"],)
        arrays = {}
        for name, shape in shapes.items():
            key = f"{name}{i}"
            arrays[name] = _read_array(path, archive, key, math.prod(shape) * itemsize,
                                       shape, np.dtype(header["dtype"]))
        params.append(arrays)
    try:
        layers = [Dense(c["n_in"], c["n_out"], activation=c["activation"],
                        use_bias=c["use_bias"], init="zeros", alpha=c["alpha"])
                  for c in header["layers"]]
        net = Network(layers, loss=header["loss"], dtype=header["dtype"])
        for layer, arrays in zip(layers, params):
            for name, arr in arrays.items():
                setattr(layer, name, arr)
    except (KeyError, TypeError, ValueError) as exc:
        _fail(path, f"invalid model ({exc})")
    return net
