"""Run-time configuration: thread count and GEMM kernel, and show_config()."""
import functools
import os
import platform

from . import _engine
from ._validation import check_positive_int

_num_threads = None
_kernel = None
KERNEL_ENV = "FASTNN_KERNEL"
# Best first; "blas" (scipy's BLAS) is the reference path.
KERNEL_PREFERENCE = ("amx", "avx512", "avx2", "generic", "blas")


def _available_cores():
    """The cores this process may run on: its CPU affinity, and a container's
    CPU quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) when lower."""
    cores = _engine.affinity_cores()
    if not cores:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:
            cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota is not None else max(1, cores)


@functools.lru_cache(maxsize=None)
def _cgroup_cpu_quota():
    """ceil(quota / period) of this container's CPU bandwidth limit, or None.
    Read once per process: it costs two file reads (about 50 us, ten times a
    one-row predict), and a container's limit is set when it starts."""
    def read(path):
        try:
            with open(path) as f:
                return f.read().split()
        except (OSError, ValueError):
            return None
    v2 = read("/sys/fs/cgroup/cpu.max")
    if v2 and len(v2) == 2 and v2[0] != "max":
        quota, period = v2
    else:
        quota = (read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or [None])[0]
        period = (read("/sys/fs/cgroup/cpu/cpu.cfs_period_us") or [None])[0]
    try:
        quota, period = int(quota), int(period)
    except (TypeError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return -(-quota // period)


def set_num_threads(n_threads):
    """Default thread count of every call that computes (None: automatic)."""
    global _num_threads
    if n_threads is not None:
        n_threads = check_positive_int(n_threads, "n_threads")
    _num_threads = n_threads


def get_num_threads(n_threads=None):
    """The thread count a call uses.

    Its own ``n_threads``, else set_num_threads(), else what the OpenMP
    runtime would use (``OMP_NUM_THREADS``, or a
    ``threadpoolctl.threadpool_limits`` in force in this thread, as
    scikit-learn's OpenMP code reads it), else the cores this process may run
    on - and never more than those cores: the engine's threads meet at a
    barrier after every stage of a step, and a thread without a core of its
    own makes the others wait a scheduler time slice at each one.  In a
    process made by ``fork()`` it is 1 (see the guide, "Forked workers").
    """
    cores = _available_cores()
    if n_threads is not None:
        n = check_positive_int(n_threads, "n_threads")
    elif _num_threads is not None:
        n = _num_threads
    else:
        n = _omp_env_threads(_engine.environ_value("OMP_NUM_THREADS")) or cores
        if _engine.openmp_enabled():
            n = min(n, _engine.openmp_max_threads())
    if _engine.forked_child():
        return 1
    return max(1, min(n, cores))


@functools.lru_cache(maxsize=8)
def _omp_env_threads(value):
    """The thread count OMP_NUM_THREADS asks for (its first level), or None."""
    first = (value or "").split(",")[0].strip()
    return int(first) if first.isdigit() and int(first) > 0 else None


def available_kernels():
    return [k for k in KERNEL_PREFERENCE if _engine.kernel_available(k)]


def set_kernel(name):
    """Force a GEMM kernel ("amx", "avx512", "avx2", "generic", "blas"), or None for the best."""
    global _kernel
    if name is not None:
        _check_kernel(name, "set_kernel")
    _kernel = name


def _check_kernel(name, source):
    if name not in KERNEL_PREFERENCE:
        raise ValueError(f"{source}: unknown kernel {name!r}; expected one of "
                         f"{list(KERNEL_PREFERENCE)}")
    if not _engine.kernel_available(name):
        raise ValueError(f"{source}: kernel {name!r} is not available on this build/CPU; "
                         f"available: {available_kernels()}")


def get_kernel():
    """Name of the kernel in use: set_kernel(), else $FASTNN_KERNEL, else the best."""
    if _kernel is not None:
        return _kernel
    env = _engine.environ_value(KERNEL_ENV)
    return _kernel_from_env(env) if env else _best_kernel()


@functools.lru_cache(maxsize=8)
def _kernel_from_env(value):
    name = value.strip().lower()
    if not name or name == "auto":
        return _best_kernel()
    _check_kernel(name, KERNEL_ENV)
    return name


@functools.lru_cache(maxsize=None)
def _best_kernel():
    # The first usable one; stopping there keeps scipy (the "blas" kernel's
    # BLAS, loaded when it is asked about) out of ``import fastnn``.
    return next(k for k in KERNEL_PREFERENCE if _engine.kernel_available(k))


def kernel_code():
    return _engine.KERNELS[get_kernel()]


def show_config(file=None):
    """Print the version, the kernels, OpenMP and the thread count; a
    FASTNN_KERNEL that names no usable kernel is shown as such."""
    from . import __version__
    try:
        kernel = get_kernel() + (f" (forced by {KERNEL_ENV})"
                                 if _engine.environ_value(KERNEL_ENV) and _kernel is None else "")
    except ValueError:
        kernel = f"none ({KERNEL_ENV}={_engine.environ_value(KERNEL_ENV)!r} is not valid)"
    lines = [
        f"fastnn {__version__}",
        f"python {platform.python_version()} on {platform.machine()} ({platform.system()})",
        f"kernels compiled and usable: {', '.join(available_kernels())}",
        f"kernel selected: {kernel}",
        f"OpenMP: {'enabled' if _engine.openmp_enabled() else 'disabled (serial build)'}",
        f"threads: {get_num_threads()} (cores available: {_available_cores()}"
        + ("; forked child: one thread" if _engine.forked_child() else "") + ")",
    ]
    print("\n".join(lines), file=file)
