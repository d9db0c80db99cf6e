#!/usr/bin/env bash
# Run fastnn under AddressSanitizer + UndefinedBehaviorSanitizer (GCC or clang
# on Linux).  See docs/shipping.md.  Slow: not part of .ci/run.
#
#   tools/sanitize.sh [pytest arguments]   (default: -q tests; paths are relative
#                                            to the repository, e.g. tests/test_io.py)
#
# 1. the stand-alone C kernel tests: make -C csrc/tests sanitize
# 2. the extension built with FASTNN_SANITIZE=1 in a copy of the tree, and the
#    Python test suite run against it with the ASan runtime preloaded
#    (python itself is not instrumented, so libasan must be loaded first).
# Any ASan or UBSan report stops the run with a non-zero exit.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cc="${CC:-gcc}"

echo "== C kernel tests with -fsanitize=address,undefined"
make -C "$repo/csrc/tests" sanitize CC="$cc"

echo "== the extension built with FASTNN_SANITIZE=1"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A copy of the tracked files (and uncommitted edits), never the in-place build.
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | \
   xargs -0 cp --parents -t "$work" 2>/dev/null) || cp -r "$repo/." "$work/"
rm -rf "$work/build" "$work"/fastnn/_engine*.so "$work/fastnn/_engine.c"
(cd "$work" && CC="$cc" FASTNN_SANITIZE=1 python3 setup.py build_ext --inplace -q 2>&1 |
   grep -E "^fastnn:|error" || true)
ls "$work"/fastnn/_engine*.so > /dev/null

asan_rt="$("$cc" -print-file-name=libasan.so)"
if [[ "$asan_rt" != /* ]]; then
  echo "sanitize.sh: ERROR: $cc does not know where libasan.so is" >&2
  exit 1
fi

if [[ $# -eq 0 ]]; then set -- -q tests; fi
echo "== pytest $* under ASan + UBSan (runtime: $asan_rt)"
cd "$work"
# detect_leaks=0: CPython frees little at exit, LeakSanitizer would report it
# all.  PYTHONMALLOC=malloc: Python's own objects go through malloc, so ASan
# sees them too.  halt_on_error: the first UBSan report fails the run.
# FASTNN_SANITIZED tells the tests to skip what ASan distorts (RSS bounds).
LD_PRELOAD="$asan_rt" \
ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
PYTHONMALLOC=malloc \
FASTNN_SANITIZED=1 \
  python3 -m pytest -p no:cacheprovider "$@"
echo "sanitize.sh: no ASan or UBSan report"
