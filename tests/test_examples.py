"""The scripts in examples/ and the code of docs/guide.md run, and say what they should.

Each example runs in its own Python process with FASTNN_EXAMPLE_QUICK=1 (its
short version), MPLBACKEND=Agg and a temporary working directory for the
files it writes; every ``python`` block of the guide runs, in order, in one
namespace, with tracebacks pointing at the guide's own line numbers.  The
processes are started together on first use (most of each one's time is
importing scikit-learn and matplotlib) and each test then waits for its own.

Checks: exit code 0, no traceback, and the key lines of the output - results
that a broken fastnn would change (accuracies, R², which gates a perceptron
learns, identical predictions after save/load, the plot file).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn as fn

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GUIDE = ROOT / "docs" / "guide.md"
# The folder holding the fastnn these tests imported (installed or built in place).
FASTNN_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(fn.__file__)))
TIMEOUT = 300

GUIDE_RUNNER = r'''
import re, sys
path = sys.argv[1]
text = open(path, encoding="utf-8").read()
blocks = [(text.count("\n", 0, m.start(1)), m.group(1))
          for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M)]
namespace = {"__name__": "__main__"}
for offset, code in blocks:
    # padded so that tracebacks show the line numbers of the guide itself
    exec(compile("\n" * offset + code, path, "exec"), namespace)
print(f"GUIDE OK: {len(blocks)} blocks", flush=True)
'''

SCRIPTS = {
    "digits_classification": ["sklearn"],
    "regression": ["sklearn"],
    "xor_learning_curve": [],
    "perceptron": ["sklearn"],
    "guide": ["sklearn", "matplotlib"],
}


def _have(module):
    try:
        __import__(module)
    except ImportError:
        return False
    return True


class _Runs:
    """The example processes, all started by the first test that needs one."""

    def __init__(self, tmp_path_factory):
        self.tmp_path_factory = tmp_path_factory
        self.procs = {}

    def _start_all(self):
        env = dict(os.environ, FASTNN_EXAMPLE_QUICK="1", MPLBACKEND="Agg",
                   PYTHONPATH=os.pathsep.join([FASTNN_PARENT] + [
                       p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        for name, needs in SCRIPTS.items():
            if not all(map(_have, needs)):
                continue
            cwd = self.tmp_path_factory.mktemp(name)
            if name == "guide":
                runner = cwd / "run_guide.py"
                runner.write_text(GUIDE_RUNNER)
                args = [sys.executable, str(runner), str(GUIDE)]
            else:
                args = [sys.executable, str(EXAMPLES / f"{name}.py")]
            proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            self.procs[name] = (proc, cwd)

    def result(self, name):
        """(stdout, stderr, working directory) of a finished run, asserted clean."""
        for module in SCRIPTS[name]:
            pytest.importorskip(module)
        if not self.procs:
            self._start_all()
        proc, cwd = self.procs[name]
        try:
            out, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"{name} did not finish in {TIMEOUT} s:\n{out}\n{err}")
        assert proc.returncode == 0, f"{name} exited with {proc.returncode}:\n{out}\n{err}"
        assert "Traceback" not in err, err
        return out, err, cwd

    def close(self):
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if not EXAMPLES.is_dir() or not GUIDE.is_file():
        pytest.skip("examples/ and docs/ are not next to tests/ (not a source checkout)")
    r = _Runs(tmp_path_factory)
    yield r
    r.close()


def _number(pattern, text):
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text}"
    return float(match.group(1))


def test_digits_classification(runs):
    out, _, _ = runs.result("digits_classification")
    assert "training up to 5 epochs" in out            # the quick switch was seen
    assert len(re.findall(r"^epoch \d/5  loss=\S+  val_loss=\S+  val_accuracy=", out,
                          re.M)) == 5, out             # one progress line per epoch
    assert _number(r"test accuracy: (\S+)", out) > 0.85
    assert "predictions identical: True" in out
    assert "optimizer Adam at step 180" in out        # 5 epochs of 36 batches, saved


def test_regression(runs):
    out, _, _ = runs.result("regression")
    r2 = {name.strip(): float(value) for name, value in
          re.findall(r"^  (.+?)\s+R² =\s*(\S+)", out, re.M)}
    assert len(r2) == 4, out
    mean = r2["baseline: the training mean"]
    assert abs(mean) < 0.05                            # a constant explains nothing
    for name, value in r2.items():
        if name.startswith("fastnn"):
            assert value > mean + 0.2, (name, out)     # the networks learned something
    assert re.search(r"cosine schedule with 5 warm-up epochs \(lr 0\.00833 -> peak 0\.05", out)


def test_xor_learning_curve(runs):
    out, _, cwd = runs.result("xor_learning_curve")
    assert "accuracy: 1.00" in out
    assert "stop_reason='target_loss'" in out
    outputs = [float(v) for v in re.findall(r"^  \d  \d \|   \d    \| (\S+)", out, re.M)]
    assert len(outputs) == 4 and outputs[0] < 0.5 < outputs[1] and outputs[2] > 0.5 > outputs[3]
    png = cwd / "xor_learning_curve.png"
    if _have("matplotlib"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(png) in out
    else:
        assert not png.exists()


def test_perceptron(runs):
    out, _, _ = runs.result("perceptron")
    assert "inputs [0.5, 0.6]: weighted sum 0.67 >= 0.5 -> output 1" in out
    assert "inputs [0.1, 0.2]: weighted sum 0.19 < 0.5 -> output 0" in out
    assert re.search(r"AND: .* -> learned$", out, re.M)
    assert re.search(r"OR: .* -> learned$", out, re.M)
    assert re.search(r"XOR: .* -> NOT learned", out)
    assert "training accuracy 1.000" in out             # linearly separable: no mistake left
    assert "on 100.0% of the points" in out


def test_guide_code_runs(runs):
    out, err, cwd = runs.result("guide")
    n_blocks = int(_number(r"GUIDE OK: (\d+) blocks", out))
    assert n_blocks == len(re.findall(r"^```python$", GUIDE.read_text(encoding="utf-8"), re.M))
    assert n_blocks >= 30
    assert "fastnn: training interrupted in epoch 1 after 10 batches" in err   # the Ctrl-C block
    assert (cwd / "learning_curve.png").is_file() and (cwd / "digits.fnn").is_file()
