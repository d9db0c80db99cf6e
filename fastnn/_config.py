"""Run-time configuration: thread count and GEMM kernel, and show_config()."""
import os
import platform

from . import _engine

_num_threads = None
_kernel = None
KERNEL_ENV = "FASTNN_KERNEL"
# Best first; "blas" (scipy's BLAS) is the reference path.
KERNEL_PREFERENCE = ("avx512", "avx2", "generic", "blas")


def _available_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def set_num_threads(n_threads):
    """Default thread count of every call that computes (None: automatic)."""
    global _num_threads
    if n_threads is not None:
        from ._validation import check_positive_int
        n_threads = check_positive_int(n_threads, "n_threads")
    _num_threads = n_threads


def get_num_threads(n_threads=None):
    """The thread count a call uses: its own ``n_threads``, else set_num_threads(),
    else OMP_NUM_THREADS, else the cores this process may run on."""
    from ._validation import check_positive_int
    if n_threads is not None:
        return check_positive_int(n_threads, "n_threads")
    if _num_threads is not None:
        return _num_threads
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return _available_cores()


def available_kernels():
    return [k for k in KERNEL_PREFERENCE if _engine.kernel_available(k)]


def set_kernel(name):
    """Force a GEMM kernel ("avx512", "avx2", "generic", "blas"), or None for the best."""
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
    env = os.environ.get(KERNEL_ENV, "").strip().lower()
    if env and env != "auto":
        _check_kernel(env, KERNEL_ENV)
        return env
    # The first usable one; stopping there keeps scipy (the "blas" kernel's
    # BLAS, loaded when it is asked about) out of ``import fastnn``.
    return next(k for k in KERNEL_PREFERENCE if _engine.kernel_available(k))


def kernel_code():
    return _engine.KERNELS[get_kernel()]


def show_config(file=None):
    """Print the version, the kernels, OpenMP and the thread count."""
    from . import __version__
    lines = [
        f"fastnn {__version__}",
        f"python {platform.python_version()} on {platform.machine()} ({platform.system()})",
        f"kernels compiled and usable: {', '.join(available_kernels())}",
        f"kernel selected: {get_kernel()}"
        + (f" (forced by {KERNEL_ENV})" if os.environ.get(KERNEL_ENV) and _kernel is None else ""),
        f"OpenMP: {'enabled' if _engine.openmp_enabled() else 'disabled (serial build)'}",
        f"threads: {get_num_threads()} (cores available: {_available_cores()})",
    ]
    print("\n".join(lines), file=file)
