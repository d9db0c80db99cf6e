"""docs/deploying.md runs: its python blocks in order in one namespace (in a
fresh process, in a temporary folder for the files they write; blocks
tagged ``python torch`` only where PyTorch is installed), then its C program
is compiled warning-free against the header they wrote and must print the
probabilities the page's ``print`` showed."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn as fn

DOC = Path(__file__).resolve().parent.parent / "docs" / "deploying.md"
FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fn.__file__)))

RUNNER = r'''
import re, sys
path, with_torch = sys.argv[1], sys.argv[2] == "1"
text = open(path, encoding="utf-8").read()
namespace = {"__name__": "__main__"}
for m in re.finditer(r"^```(python(?: torch)?)\n(.*?)^```", text, re.S | re.M):
    if m.group(1) == "python torch" and not with_torch:
        continue
    offset = text.count("\n", 0, m.start(2))   # tracebacks show the page's line numbers
    exec(compile("\n" * offset + m.group(2), path, "exec"), namespace)
print("DOC OK", flush=True)
'''


def _have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not DOC.exists(), reason="docs/deploying.md is not next to the tests")
def test_deploying_page_runs(tmp_path):
    for module in ("onnx", "onnxruntime", "sklearn"):
        pytest.importorskip(module)
    env = dict(os.environ, PYTHONPATH=FASTNN_PARENT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", RUNNER, str(DOC), "1" if _have("torch") else "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0 and "DOC OK" in run.stdout, run.stdout + run.stderr
    printed = re.search(r"\[\[(.*?)\]\]", run.stdout, re.S)
    assert printed, run.stdout
    expected = np.array(printed.group(1).split(), float)

    cc = next((shutil.which(c) for c in (os.environ.get("CC", "cc"), "gcc", "clang")
               if shutil.which(c)), None)
    if cc is None:
        pytest.skip("no C compiler for the page's C program")
    text = DOC.read_text(encoding="utf-8")
    program = re.search(r"^```c\n(.*?)^```", text, re.S | re.M).group(1)
    (tmp_path / "main.c").write_text(program)
    build = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2",
                            "main.c", "-o", "main", "-lm"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, timeout=60)
    got = np.array([float(line.split(":")[1]) for line in out.stdout.splitlines()])
    np.testing.assert_allclose(got, expected, atol=2e-6)
