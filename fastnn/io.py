"""Model files: one portable .npz holding a JSON header and the weights, no pickle.

Layout (format version 2): ``header`` is the UTF-8 JSON of the architecture
(format name and version, dtype, loss, layers), of the optimizer of the last
``fit`` (class name, constructor arguments, step count, number of state
buffers) and of the shuffling generator's state, stored as a uint8 array;
``W0, b0, W1, ...`` are the parameters and ``opt{k}_W{i}, opt{k}_b{i}`` the
optimizer's state buffer k for layer i (momenta, Adam's moments).  Version 1
files (architecture and weights only) still load.

Loading never unpickles (allow_pickle=False), never imports anything the
file names (the optimizer class must be one of fastnn.optimizers), and
checks the header and every array's size, shape and dtype before building
the network.
"""
import inspect
import json
import math
import numbers
import os
import tempfile
import warnings

import numpy as np

FORMAT = "fastnn"
VERSION = 2
READS = (1, 2)            # format versions this fastnn can load
MAX_STATE_BUFFERS = 8
# Bit generators whose state a file may restore (np.random classes, by name).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def save(net, path):
    header = dict(net.get_config(), format=FORMAT, version=VERSION)
    arrays = {"header": None}   # first in the archive; filled in below
    for i, layer in enumerate(net.layers):
        arrays[f"W{i}"] = layer.W
        if layer.b is not None:
            arrays[f"b{i}"] = layer.b
    optimizer = getattr(net, "optimizer", None)
    header["optimizer"] = None if optimizer is None else _optimizer_entry(net, optimizer, arrays)
    header["rng"] = _rng_state(net)
    # Dropout masks and input noise are keyed on (key, epoch): resuming needs both.
    header["noise"] = {"key": net._noise_key, "epochs_trained": net._epochs_trained}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
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


def _json_value(value):
    """``value`` as JSON (scalars, or lists of scalars), or raise TypeError."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and np.isfinite(value):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    raise TypeError(f"{value!r} cannot be stored")


def optimizer_config(optimizer):
    """The constructor arguments of ``optimizer``, read from its attributes of
    the same names (every fastnn optimizer keeps each argument that way)."""
    config = {}
    for name, param in inspect.signature(type(optimizer).__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(optimizer, name):
            raise TypeError(f"{type(optimizer).__name__} keeps no attribute {name!r} for its "
                            f"constructor argument of that name")
        try:
            config[name] = _json_value(getattr(optimizer, name))
        except TypeError as exc:
            raise TypeError(f"{type(optimizer).__name__}.{name}: {exc}") from None
    return config


def _optimizer_entry(net, optimizer, arrays):
    """The header entry of ``optimizer``; adds its state buffers to ``arrays``."""
    from . import optimizers
    cls = type(optimizer)
    if getattr(optimizers, cls.__name__, None) is not cls:
        warnings.warn(f"the optimizer {cls.__name__} is not one of fastnn.optimizers and is "
                      f"not saved; the model is", UserWarning, stacklevel=3)
        return None
    try:
        config = optimizer_config(optimizer)
    except TypeError as exc:
        warnings.warn(f"the optimizer is not saved: {exc}", UserWarning, stacklevel=3)
        return None
    state = optimizer._state
    if state is not None and not _state_fits(state, net):
        # Used with another network since: its state is not this one's.
        state = None
    for k, buffers in enumerate(state or []):
        for i, (sW, sb) in enumerate(buffers):
            arrays[f"opt{k}_W{i}"] = sW
            if sb is not None:
                arrays[f"opt{k}_b{i}"] = sb
    return {"class": cls.__name__, "config": config, "step": int(optimizer.step),
            "n_state": 0 if state is None else len(state)}


def _state_fits(state, net):
    for buffers in state:
        if len(buffers) != len(net.layers):
            return False
        for (sW, sb), layer in zip(buffers, net.layers):
            if sW.shape != layer.W.shape or sW.dtype != net.dtype:
                return False
            if (sb is None) != (layer.b is None) or (sb is not None and sb.shape != layer.b.shape):
                return False
    return True


def _rng_state(net):
    bit_generator = net._rng.bit_generator
    if type(bit_generator).__name__ not in BIT_GENERATORS:
        return None
    try:
        state = _json_value_tree(bit_generator.state)
    except TypeError:
        return None
    return state


def _json_value_tree(value):
    if isinstance(value, dict):
        return {str(k): _json_value_tree(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    return _json_value(value)


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
    if header.get("version") not in READS:
        _fail(path, f"format version {header.get('version')!r} is not supported "
                    f"(this fastnn reads versions {', '.join(map(str, READS))})")
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
                        use_bias=c["use_bias"], init="zeros", alpha=c["alpha"],
                        dropout=c.get("dropout", 0.0))
                  for c in header["layers"]]
        net = Network(layers, loss=header["loss"], dtype=header["dtype"])
        for layer, arrays in zip(layers, params):
            for name, arr in arrays.items():
                setattr(layer, name, arr)
    except (KeyError, TypeError, ValueError) as exc:
        _fail(path, f"invalid model ({exc})")
    if header.get("optimizer") is not None:
        net.optimizer = _read_optimizer(path, archive, header["optimizer"], net)
    if header.get("rng") is not None:
        net._rng = _read_rng(path, header["rng"])
    if header.get("noise") is not None:
        net._noise_key, net._epochs_trained = _read_noise(path, header["noise"])
    return net


def _read_noise(path, entry):
    """(key or None, epochs trained) of the header's noise entry."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    if not isinstance(entry, dict) or not is_int(entry.get("epochs_trained")) \
            or entry["epochs_trained"] < 0 \
            or not (entry.get("key") is None or (is_int(entry["key"]) and
                                                 0 <= entry["key"] < 2 ** 64)):
        _fail(path, "the noise entry of the header is malformed")
    return entry.get("key"), entry["epochs_trained"]


def _read_optimizer(path, archive, entry, net):
    """The optimizer of the header entry, with its step count and state buffers."""
    from . import optimizers
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
            or not isinstance(entry.get("config"), dict):
        _fail(path, "the optimizer entry of the header is malformed")
    cls = getattr(optimizers, entry["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)):
        _fail(path, f"the optimizer class {entry['class']!r} is not a fastnn optimizer")
    step, n_state = entry.get("step"), entry.get("n_state")
    for value, name in ((step, "step"), (n_state, "n_state")):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            _fail(path, f"the optimizer's {name} is not a non-negative integer: {value!r}")
    if n_state > MAX_STATE_BUFFERS:
        _fail(path, f"the optimizer declares {n_state} state buffers")
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in entry["config"].items()}
    try:
        # lr is the one argument training changes (schedules may bring it to
        # 0, which constructors refuse): construct with the default, then set.
        lr = config.pop("lr", None)
        optimizer = cls(**config)
        if lr is not None:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)) or \
                    not np.isfinite(lr) or lr < 0:
                raise ValueError(f"lr must be a finite number >= 0, got {lr!r}")
            optimizer.lr = float(lr)
    except (TypeError, ValueError) as exc:
        _fail(path, f"invalid optimizer {entry['class']} ({exc})")
    if n_state:
        if n_state != optimizer.n_state:
            _fail(path, f"the optimizer {entry['class']} keeps {optimizer.n_state} state "
                        f"buffers, the file has {n_state}")
        buffers = optimizer.state_for(net.layers)[:n_state]   # zeros of the right shapes
        for k, pairs in enumerate(buffers):
            for i, pair in enumerate(pairs):
                for name, live in zip(("W", "b"), pair):
                    if live is None:
                        continue
                    key = f"opt{k}_{name}{i}"
                    arr = _read_array(path, archive, key, live.nbytes)
                    if arr.shape != live.shape or arr.dtype != live.dtype:
                        _fail(path, f"array {key} has shape {arr.shape} and dtype {arr.dtype}, "
                                    f"expected {live.shape} {live.dtype}")
                    live[...] = arr
    optimizer.step = step
    return optimizer


def _read_rng(path, state):
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        _fail(path, "the random generator state of the header is malformed")
    try:
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        _fail(path, f"the random generator state is invalid ({exc})")
    return np.random.Generator(bit_generator)


# FANN's .net files live in their own module (fastnn/fann.py).
from .fann import read_fann, write_fann  # noqa: E402
