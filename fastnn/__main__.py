"""The ``fastnn`` command (also ``python -m fastnn``): info, demo, --version, --help."""
import io
import os
import sys

USAGE = """\
usage: fastnn [--version] [--help] <command> [options]

commands:
  info    print the version, the GEMM kernels compiled and selected, OpenMP and
          the thread count (the default command)
  demo    train a network on scikit-learn's handwritten digits and report the
          test accuracy and speed; options: [--epochs N] [--batch-size N]
          [--threads N] (needs scikit-learn: pip install "fastnn[demo]")

environment: FASTNN_KERNEL=avx512|avx2|generic|blas|auto, OMP_NUM_THREADS=N
"""


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "info"
    if command in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if command in ("-V", "--version"):
        from . import __version__
        print(f"fastnn {__version__}")
        return 0
    if command == "info":
        return _info()
    if command == "demo":
        from .demo import main as demo
        return demo(argv[1:])
    print(f"fastnn: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def _info():
    """show_config(); a bad setting (FASTNN_KERNEL) is shown with its error, not a traceback."""
    from . import _config
    try:
        _config.show_config()
        return 0
    except ValueError as exc:
        error = exc
    # Show the rest of the configuration as it would be without the bad value.
    bad = os.environ.pop(_config.KERNEL_ENV, None)
    out = io.StringIO()
    try:
        _config.show_config(file=out)
    except ValueError:
        out = io.StringIO()   # another bad setting: the error alone says it
    finally:
        if bad is not None:
            os.environ[_config.KERNEL_ENV] = bad
    for line in out.getvalue().splitlines():
        if line.startswith("kernel selected:"):
            line = f"kernel selected: none ({_config.KERNEL_ENV}={bad!r} is not valid)"
        print(line)
    print(f"fastnn: error: {error}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
