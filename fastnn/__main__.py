"""The ``fastnn`` command (also ``python -m fastnn``): info, demo, --version, --help."""
import sys

USAGE = """\
usage: fastnn [--version] [--help] <command> [options]

commands:
  info    print the version, the GEMM kernels compiled and selected, OpenMP and
          the thread count (the default command)
  demo    train a network on scikit-learn's handwritten digits and report the
          test accuracy and speed; options: [--epochs N] [--batch-size N]
          [--threads N] (needs scikit-learn: pip install "fastnn[demo]")

environment: FASTNN_KERNEL=amx|avx512|avx2|generic|blas|auto, OMP_NUM_THREADS=N
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
    """show_config(); a bad FASTNN_KERNEL is shown with its error, not a traceback."""
    from . import _config
    _config.show_config()
    try:
        _config.get_kernel()
    except ValueError as exc:
        print(f"fastnn: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
