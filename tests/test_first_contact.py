"""First contact: what a new user meets in the first minutes.

- ``import fastnn`` from a source tree without a built engine (the clone's
  root after a non-editable ``pip install .``) raises an ImportError that says
  what is going on and what to do - not "cannot import name '_engine' from
  partially initialized module" (checked in a subprocess, from a temporary
  copy of the package's source files);
- every ``python`` block of README.md runs as written, in its own process;
- ``fastnn --version``, ``fastnn --help``, and ``fastnn info`` with a bad
  FASTNN_KERNEL (the configuration and the error, no traceback);
- ``fit``'s public signature holds no private parameter; string labels get
  a message saying how to encode them.
"""
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn

from conftest import FASTNN_PARENT

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(fn.__file__).resolve().parent


def _run(args, cwd, env=None, timeout=300):
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("PYTHONPATH", "FASTNN_KERNEL", "OMP_NUM_THREADS")}
    full_env.update(env or {})
    return subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def test_import_from_a_source_tree_without_engine_says_what_to_do(tmp_path):
    source = tmp_path / "fastnn"
    source.mkdir()
    for f in PACKAGE.iterdir():
        if f.suffix in (".py", ".pyx", ".pxd"):
            shutil.copy(f, source / f.name)
    # An editable install's finder would win over the current directory: as
    # after a plain `pip install .`, only sys.path (cwd first) decides.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if '__editable__' not in str(getattr(f, '__module__', ''))]; import fastnn")
    proc = _run([sys.executable, "-c", code], cwd=tmp_path)
    assert proc.returncode == 1
    assert "partially initialized" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastnn's compiled engine is not in "), proc.stderr
    assert "source tree" in last and "cd to another directory" in last
    assert "pip install -e ." in last


def _readme_blocks():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path):
    pytest.importorskip("sklearn")
    blocks = _readme_blocks()
    assert blocks, "README.md has no python block"
    proc = _run([sys.executable, "-c", "\n".join(blocks)], cwd=tmp_path,
                env={"PYTHONPATH": FASTNN_PARENT})
    assert proc.returncode == 0, proc.stderr
    accuracy = float(re.search(r"'accuracy': ([0-9.]+)", proc.stdout).group(1))
    assert accuracy > 0.9
    assert (tmp_path / "digits.fnn").is_file()


def _cli(*args, env=None):
    return _run([sys.executable, "-m", "fastnn", *args], cwd=os.path.expanduser("~"),
                env={"PYTHONPATH": FASTNN_PARENT, **(env or {})}, timeout=120)


def test_version_and_help():
    proc = _cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"fastnn {fn.__version__}"
    for flag in ("--help", "-h"):
        proc = _cli(flag)
        assert proc.returncode == 0 and proc.stdout.startswith("usage: fastnn")
        assert "info" in proc.stdout and "demo" in proc.stdout
    proc = _cli("frobnicate")
    assert proc.returncode == 2 and "unknown command 'frobnicate'" in proc.stderr


def test_info_with_a_bad_kernel_prints_the_configuration_and_the_error():
    proc = _cli("info", env={"FASTNN_KERNEL": "bogus"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stdout.startswith(f"fastnn {fn.__version__}")
    assert "kernels compiled and usable:" in proc.stdout and "threads:" in proc.stdout
    assert "kernel selected: none (FASTNN_KERNEL='bogus' is not valid)" in proc.stdout
    assert "fastnn: error: FASTNN_KERNEL: unknown kernel 'bogus'" in proc.stderr
    assert _cli("info").returncode == 0


def test_fit_signature_is_public_only():
    params = inspect.signature(fn.Network.fit).parameters
    assert not [name for name in params if name.startswith("_")]


@pytest.mark.parametrize("loss", ["cross_entropy", "binary_cross_entropy"])
def test_string_labels_say_how_to_encode_them(loss):
    out = "softmax" if loss == "cross_entropy" else "sigmoid"
    net = fn.Network([fn.Dense(2, 2, activation=out)], loss=loss)
    with pytest.raises(TypeError, match=r"y must hold numbers, got an array of dtype <U3; "
                                        r"encode the class labels as integers .* "
                                        r"np.unique\(y, return_inverse=True\).* "
                                        r"fastnn.MLPClassifier"):
        net.fit(np.zeros((3, 2)), ["cat", "dog", "cat"])
