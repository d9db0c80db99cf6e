"""fastnn info | demo  (also: python -m fastnn ...)"""
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "info"
    if command == "info":
        from . import show_config
        show_config()
        return 0
    if command == "demo":
        from .demo import main as demo
        return demo(argv[1:])
    print("usage: fastnn [info | demo [--epochs N] [--batch-size N] [--threads N]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
