"""Model files: one portable .npz holding a JSON header and the weights, no pickle.

Layout (format version 2): ``header`` is the UTF-8 JSON of the architecture
(format name and version, dtype, loss, layers), of the optimizer of the last
``fit`` (class name, constructor arguments, step count, number of state
buffers) and of the shuffling generator's state, stored as a uint8 array;
``W0, b0, W1, ...`` are the parameters and ``opt{k}_W{i}, opt{k}_b{i}`` the
optimizer's state buffer k for layer i (momenta, Adam's moments).  Version 1
files (architecture and weights only) still load.

Loading never unpickles, never imports anything the file names (the
optimizer class must be one of fastnn.optimizers), checks the header and
every array's size, shape and dtype against the archive before allocating
anything, and reads the arrays straight into the network's buffers (see
``load`` for the limits).  Saving writes an unnamed file that only gets a
name when complete (see ``save``).
"""
import errno
import inspect
import json
import math
import numbers
import os
import secrets
import tempfile
import warnings
import zipfile

import numpy as np

from ._validation import all_finite

FORMAT = "fastnn"
VERSION = 2
READS = (1, 2)            # format versions this fastnn can load
MAX_STATE_BUFFERS = 8
# Bit generators whose state a file may restore (np.random classes, by name).
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "Philox", "SFC64", "MT19937")


def save(net, path):
    """Write ``net`` to ``path`` atomically (see Network.save).

    The file is written as an unnamed temporary file in the target's folder
    (Linux's O_TMPFILE) that only gets a name once it is complete, fsynced
    and about to replace the target: a save killed at any moment - even by
    SIGKILL or a default SIGTERM - leaves the old file (or none) and no
    temporary file.  Where O_TMPFILE is not available the temporary file
    has a name (``.fastnn-*.tmp``) from the start and is removed on any
    exception (a SIGTERM handler that calls sys.exit included), but not when
    the process is killed outright.  An OSError names ``path``.
    """
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
    try:
        _write_atomically(path, lambda f: np.savez(f, **arrays))
    except OSError as exc:
        if exc.filename is not None and os.fspath(exc.filename) == path:
            raise
        # Say which save failed: ENOSPC and friends name no file of their own.
        raise OSError(exc.errno, f"cannot save the model to {path!r}: "
                                 f"{exc.strerror or exc}", path) from exc


def _write_atomically(path, write):
    """Call ``write(file)`` on a new file that replaces ``path`` once complete."""
    folder = os.path.dirname(os.path.abspath(path))
    fd = _unnamed_file(folder)
    tmp = None
    try:
        if fd is None:
            # Write next to the target and rename: an interrupted save never
            # leaves a half-written model in place of a good one.
            fd, tmp = tempfile.mkstemp(prefix=".fastnn-", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            # mkstemp's file is owner-only; the model gets the usual mode.
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), _file_mode(path))
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if tmp is None:   # name the complete file, then move it in place
                tmp = _link_unnamed(f.fileno(), folder)
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    _fsync_folder(folder)


def _unnamed_file(folder):
    """A file descriptor of an unnamed file in ``folder`` (O_TMPFILE, which
    the kernel frees if the process dies), or None where there is none."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except OSError:   # a file system without O_TMPFILE (EOPNOTSUPP, EISDIR, EINVAL)
        return None


def _link_unnamed(fd, folder):
    """Give the unnamed file ``fd`` a temporary name in ``folder``."""
    # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names the file itself; os.link
    # uses linkat (not link, which would link the symlink) only given a dir_fd.
    folder_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        for _ in range(100):
            name = f".fastnn-{secrets.token_hex(8)}.tmp"
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder_fd,
                        follow_symlinks=True)
                return os.path.join(folder, name)
            except FileExistsError:
                continue
    finally:
        os.close(folder_fd)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", folder)


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
    """Raised inside a try block of the reader, reported through _fail."""


# Limits of load (documented in its docstring and in the guide).
MAX_HEADER_BYTES = 1 << 20
MAX_EXPANSION = 4        # the members of a file hold at most 4x its size once inflated
MAX_COUNT = 2 ** 53      # optimizer steps and trained epochs
READ_CHUNK = 1 << 18


def load(path):
    """Load a model written by ``Network.save``.

    Nothing in the file is trusted: ``load`` never unpickles and never
    imports anything the file names, and checks the header and every array
    (size, shape, dtype, finite values; optimizer state in range) before it
    is used.  Memory: the arrays are read straight into the network's and
    the optimizer's own buffers, so loading allocates about the file's size
    (plus 1 MiB); a file can never make ``load`` allocate more than
    ``MAX_EXPANSION`` (4) times its own size - the limit on what its members
    may declare once decompressed (``Network.save`` writes them
    uncompressed) - nor a header above 1 MiB.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a valid fastnn model (the message names the file and
        what is wrong).
    OSError
        The file cannot be read.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such model file: {os.fspath(path)!r}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        _check_kind(path, f.read(8))
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except Exception as exc:   # zipfile.BadZipFile, OSError, EOFError, ...
            _fail(path, f"cannot be read as an .npz archive ({type(exc).__name__}: {exc})")
        with archive:
            return _read(_Archive(path, archive, size))


def _check_kind(path, magic):
    """Refuse what is not a zip archive, saying what it is."""
    if magic.startswith(b"PK"):
        return
    if not magic:
        _fail(path, "it is empty")
    if magic.startswith(b"\x93NUMPY"):
        _fail(path, "it holds a single array (.npy), not a model archive")
    if magic[:1] == b"\x80":
        _fail(path, "it holds pickled Python objects; fastnn model files never do, and "
                    "fastnn.load never unpickles")
    _fail(path, "it is not an .npz (zip) archive")


class _Archive:
    """The members of a model file, each checked before anything is allocated
    for it: the sizes a member's .npy header declares must be exactly what
    its zip entry holds, and all entries together at most MAX_EXPANSION
    times the file's size."""

    def __init__(self, path, archive, file_size):
        self.path, self.zip = path, archive
        self.layout = {}      # key -> (shape, dtype, .npy header length)
        inflated = sum(info.file_size for info in archive.infolist())
        if inflated > MAX_EXPANSION * max(file_size, 1):
            _fail(path, f"its members hold {inflated} bytes once decompressed, more than "
                        f"{MAX_EXPANSION} times the file's {file_size} bytes (fastnn writes "
                        f"them uncompressed)")

    def check(self, key, shape=None, dtype=None, max_bytes=None):
        """Check the member ``key`` without reading its data: a numeric array
        of ``shape`` and ``dtype`` (when given), C order, whose data fill its
        zip entry exactly."""
        try:
            info = self.zip.getinfo(key + ".npy")
        except KeyError:
            _fail(self.path, f"array {key} is missing")
        fmt = np.lib.format
        try:
            with self.zip.open(info) as member:
                version = fmt.read_magic(member)
                read_header = {(1, 0): fmt.read_array_header_1_0,
                               (2, 0): fmt.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise _Refused(f"array {key} has an unsupported .npy version {version}")
                got_shape, fortran_order, got_dtype = read_header(member)
                header_length = member.tell()
        except _Refused as exc:
            _fail(self.path, str(exc))
        except Exception as exc:   # damaged member or .npy header
            _fail(self.path, f"array {key} cannot be read ({type(exc).__name__}: {exc})")
        if got_dtype.hasobject:
            _fail(self.path, f"array {key} holds Python objects (pickled data); fastnn "
                             f"model files never do, and fastnn.load never unpickles")
        if got_dtype.kind not in "uif":
            _fail(self.path, f"array {key} holds {got_dtype}, not numbers")
        if (shape is not None and got_shape != shape) or fortran_order or (
                dtype is not None and got_dtype != dtype):
            expected = f"{shape} {np.dtype(dtype)}" if shape is not None else "C order"
            _fail(self.path, f"array {key} has shape {got_shape} and dtype {got_dtype}"
                             f"{' in Fortran order' if fortran_order else ''}, "
                             f"expected {expected}")
        n_bytes = math.prod(got_shape) * got_dtype.itemsize
        if max_bytes is not None and n_bytes > max_bytes:
            _fail(self.path, f"array {key} declares {n_bytes} bytes of data, more than the "
                             f"{max_bytes} it may hold")
        if header_length + n_bytes != info.file_size:
            _fail(self.path, f"array {key} declares {n_bytes} bytes of data, but its archive "
                             f"member holds {info.file_size - header_length}")
        self.layout[key] = (got_shape, got_dtype, header_length)
        return got_shape, got_dtype

    def read_into(self, key, out):
        """Fill ``out`` (C-contiguous, as checked) with the data of ``key``,
        a chunk at a time: no copy of the array is ever made."""
        shape, dtype, header_length = self.layout[key]
        assert out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
        view = memoryview(out).cast("B")
        done = 0
        try:
            with self.zip.open(key + ".npy") as member:
                member.read(header_length)
                while done < len(view):
                    n = member.readinto(view[done:done + READ_CHUNK])
                    if not n:
                        break
                    done += n
                # Reading to the end also makes zipfile check the member's CRC.
                if done != len(view) or member.read(1):
                    raise _Refused(f"array {key} does not hold exactly {len(view)} bytes "
                                   f"of data")
        except _Refused as exc:
            _fail(self.path, str(exc))
        except Exception as exc:   # bad CRC, bad zip data, truncated
            _fail(self.path, f"array {key} cannot be read ({type(exc).__name__}: {exc})")
        return out

    def read(self, key, **check):
        shape, dtype = self.check(key, **check)
        return self.read_into(key, np.empty(shape, dtype))


def _read_header(archive):
    path = archive.path
    raw = archive.read("header", max_bytes=MAX_HEADER_BYTES)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        _fail(path, "the header is not a byte string")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except RecursionError:
        _fail(path, "the header nests too deeply")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(path, f"the header is not valid JSON ({exc})")
    except ValueError:   # an integer of thousands of digits (Python's int limit)
        _fail(path, "the header holds an integer too long to be a fastnn value")
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
    if header.get("dtype") not in ("float32", "float64"):
        _fail(path, f"unsupported dtype {header.get('dtype')!r}")
    return header


def _unset(rng, n_in, n_out):
    """The initialiser of loaded layers: zeros without a float64 copy (the
    weights are read into the layer's array right after)."""
    return np.broadcast_to(np.zeros((), np.float32), (n_in, n_out))


def _read(archive):
    from .layers import Dense
    from .network import Network

    path = archive.path
    header = _read_header(archive)
    dtype = np.dtype(header["dtype"])
    # First every member's size, shape and dtype, against the header; only
    # then are the network and the optimizer built (allocating their
    # arrays), and the data read into those arrays.
    keys = []
    for i, c in enumerate(header["layers"]):
        shapes = {"W": (c["n_in"], c["n_out"])}
        if c.get("use_bias", True):
            shapes["b"] = (c["n_out"],)
        for name, shape in shapes.items():
            archive.check(f"{name}{i}", shape=shape, dtype=dtype)
        keys.append(list(shapes))
    optimizer = None
    if header.get("optimizer") is not None:
        optimizer = _read_optimizer(path, header["optimizer"])
        for k in range(header["optimizer"]["n_state"]):
            for i, names in enumerate(keys):
                for name in names:
                    archive.check(f"opt{k}_{name}{i}", shape=archive.layout[f"{name}{i}"][0],
                                  dtype=dtype)
    rng = _read_rng(path, header["rng"]) if header.get("rng") is not None else None
    noise = _read_noise(path, header["noise"]) if header.get("noise") is not None else None
    try:
        layers = [Dense(c["n_in"], c["n_out"], activation=c["activation"],
                        use_bias=c["use_bias"], init=_unset, alpha=c["alpha"],
                        dropout=c.get("dropout", 0.0), steepness=c.get("steepness", 1.0),
                        flat_spot=c.get("flat_spot", 0.0))
                  for c in header["layers"]]
        net = Network(layers, loss=header["loss"], dtype=dtype)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        _fail(path, f"invalid model ({exc})")
    for i, (layer, names) in enumerate(zip(layers, keys)):
        if (layer.b is not None) != ("b" in names):
            _fail(path, f"layer {i} of the header is malformed (use_bias)")
        for name in names:
            if not all_finite(archive.read_into(f"{name}{i}", getattr(layer, name))):
                _fail(path, f"array {name}{i} holds NaN or infinity")
    if optimizer is not None:
        _read_optimizer_state(archive, optimizer, header["optimizer"], net)
        net.optimizer = optimizer
    if rng is not None:
        net._rng = rng
    if noise is not None:
        net._noise_key, net._epochs_trained = noise
    return net


def _is_count(value, limit=MAX_COUNT):
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _read_noise(path, entry):
    """(key or None, epochs trained) of the header's noise entry."""
    if not isinstance(entry, dict) or not _is_count(entry.get("epochs_trained")) \
            or not (entry.get("key") is None or _is_count(entry["key"], 2 ** 64 - 1)):
        _fail(path, "the noise entry of the header is malformed")
    return entry.get("key"), entry["epochs_trained"]


def _read_optimizer(path, entry):
    """The optimizer of the header entry, without its state; step and n_state checked."""
    from . import _engine, optimizers
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
            or not isinstance(entry.get("config"), dict):
        _fail(path, "the optimizer entry of the header is malformed")
    cls = getattr(optimizers, entry["class"], None)
    if not (isinstance(cls, type) and issubclass(cls, optimizers.Optimizer)) \
            or cls is optimizers.Optimizer:
        _fail(path, f"the optimizer class {entry['class']!r} is not a fastnn optimizer")
    step, n_state = entry.get("step"), entry.get("n_state")
    if not _is_count(step):
        _fail(path, f"the optimizer's step is not an integer in [0, 2**53]: {step!r}")
    if not _is_count(n_state, MAX_STATE_BUFFERS):
        _fail(path, f"the optimizer's n_state is not an integer in [0, {MAX_STATE_BUFFERS}]: "
                    f"{n_state!r}")
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
    except (TypeError, ValueError, OverflowError) as exc:
        _fail(path, f"invalid optimizer {entry['class']} ({exc})")
    if optimizer.code not in _engine.OPTIMIZER_CODES:
        _fail(path, f"the optimizer class {entry['class']!r} is not a fastnn optimizer")
    if n_state and n_state != optimizer.n_state:
        _fail(path, f"the optimizer {entry['class']} keeps {optimizer.n_state} state "
                    f"buffers, the file has {n_state}")
    optimizer.step = step
    return optimizer


def _read_optimizer_state(archive, optimizer, entry, net):
    """Read the state buffers (checked by archive.check) into the optimizer's own."""
    n_state, step = entry["n_state"], optimizer.step
    if not n_state:
        return
    buffers = optimizer.state_for(net.layers)[:n_state]   # allocated here, once
    optimizer.step = step                                  # (state_for resets it)
    for k, pairs in enumerate(buffers):
        for i, pair in enumerate(pairs):
            for name, live in zip(("W", "b"), pair):
                if live is None:
                    continue
                key = f"opt{k}_{name}{i}"
                archive.read_into(key, live)
                if not all_finite(live):
                    _fail(archive.path, f"the optimizer state {key} holds NaN or infinity")
                if k in optimizer.nonnegative_state and (live < 0).any():
                    _fail(archive.path, f"the optimizer state {key} holds negative values "
                                        f"({type(optimizer).__name__} keeps it >= 0)")


def _read_rng(path, state):
    if not isinstance(state, dict) or state.get("bit_generator") not in BIT_GENERATORS:
        _fail(path, "the random generator state of the header is malformed")
    try:
        bit_generator = getattr(np.random, state["bit_generator"])()
        bit_generator.state = state
    except (TypeError, ValueError, KeyError, OverflowError, IndexError,
            AttributeError) as exc:
        _fail(path, f"the random generator state is invalid ({type(exc).__name__}: {exc})")
    return np.random.Generator(bit_generator)


# FANN's .net files live in their own module (fastnn/fann.py).
from .fann import read_fann, write_fann  # noqa: E402, F401 (re-exported)
