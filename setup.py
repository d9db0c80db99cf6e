"""Build of fastnn's compiled engine.

OpenMP is probed by compiling and running a small program; when that fails
(or FASTNN_NO_OPENMP=1) the engine is built serial and a warning is printed.
No -march flag: the SIMD kernels pick their instruction set per file and the
best one is chosen at run time, so one build runs on any x86-64.
"""
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
CSRC = HERE / "csrc"

OPENMP_PROBE = r"""
#include <omp.h>
#include <stdio.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    printf("%d\n", n);
    return n >= 1 ? 0 : 1;
}
"""


def _env_flags(*names):
    """Flags from the environment variables the real compile also uses
    (e.g. CPPFLAGS=-I$(brew --prefix libomp)/include on macOS)."""
    return [f for name in names for f in os.environ.get(name, "").split()]


def openmp_flags():
    """Compile and link flags for OpenMP, or None when it does not work."""
    if os.environ.get("FASTNN_NO_OPENMP", "") not in ("", "0"):
        print("fastnn: FASTNN_NO_OPENMP is set: building the serial engine")
        return None
    if sys.platform == "win32":
        # MSVC (and clang-cl) take /openmp and ship the runtime (vcomp140.dll);
        # setuptools drives cl.exe itself, so there is no probe to run here.
        return ["/openmp"], []
    if sys.platform == "darwin":
        # Apple clang: the preprocessor flag plus Homebrew's libomp (found via
        # CPPFLAGS/LDFLAGS); LLVM clang or GCC: plain -fopenmp.
        candidates = [(["-Xpreprocessor", "-fopenmp"], ["-lomp"]),
                      (["-fopenmp"], ["-fopenmp"])]
    else:
        candidates = [(["-fopenmp"], ["-fopenmp"])]
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cflags, ldflags = _env_flags("CFLAGS", "CPPFLAGS"), _env_flags("LDFLAGS")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text(OPENMP_PROBE)
        exe = Path(tmp) / "probe"
        for omp_c, omp_l in candidates:
            cmd = cc.split() + cflags + omp_c + [str(src), "-o", str(exe)] + ldflags + omp_l
            try:
                subprocess.run(cmd, check=True, capture_output=True)
                subprocess.run([str(exe)], check=True, capture_output=True)
            except (OSError, subprocess.CalledProcessError):
                continue
            print(f"fastnn: OpenMP enabled ({' '.join(omp_c)})")
            return omp_c, omp_l
    print("fastnn: WARNING: the compiler cannot build OpenMP programs; "
          "building the serial engine (n_threads will be ignored)")
    return None


def extensions():
    c_sources = sorted(str(p.relative_to(HERE)) for p in CSRC.glob("fnn_*.c"))
    # a changed header (the kernels' templates among them) rebuilds the engine
    c_headers = sorted(str(p.relative_to(HERE)) for p in CSRC.glob("fnn_*.h"))
    # MSVC needs C11 mode for ``restrict`` and ``_Pragma`` (VS 2019 16.8+).
    compile_args = ["-O3", "-std=c11"] if sys.platform != "win32" else ["/O2", "/std:c11"]
    link_args = []
    macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
    omp = openmp_flags()
    if omp is not None:
        compile_args += omp[0]
        link_args += omp[1]
    if os.environ.get("FASTNN_SANITIZE"):
        flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g"]
        compile_args += flags
        link_args += flags
    ext = Extension(
        "fastnn._engine",
        sources=["fastnn/_engine.pyx"] + c_sources,
        depends=c_headers,
        include_dirs=[str(CSRC), np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    perceptron = Extension(
        "fastnn._perceptron",
        sources=["fastnn/_perceptron.pyx"],
        include_dirs=[np.get_include()],
        define_macros=macros,
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    return cythonize([ext, perceptron], language_level=3,
                     compiler_directives={"embedsignature": True})


setup(ext_modules=extensions())
