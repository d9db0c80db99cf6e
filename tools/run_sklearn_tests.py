"""Run scikit-learn's own tests of its MLP estimators and Perceptron against fastnn.

    python tools/run_sklearn_tests.py [--tests-dir DIR] [pytest options ...]
    SKLEARN_TESTS_GLOBAL_RANDOM_SEED=all python tools/run_sklearn_tests.py -k poisson

Copies scikit-learn's ``neural_network/tests/test_mlp.py`` and
``linear_model/tests/test_perceptron.py`` into a temporary folder with only
the import of ``MLPClassifier``, ``MLPRegressor`` and ``Perceptron`` pointed at
fastnn, and runs pytest there with scikit-learn's conftest as a plugin (for
its ``global_random_seed`` fixture: ``SKLEARN_TESTS_GLOBAL_RANDOM_SEED`` works
as in scikit-learn's own runs).  The files come from the installed
scikit-learn (its wheels ship them), or from ``--tests-dir``: a folder holding
both files, e.g. taken from a scikit-learn checkout at the installed version's
tag.

The tests that fail by design are marked as expected failures (strict: an
unexpected pass is reported too); see EXPECTED_FAILURES.  The exit status is
pytest's: 0 when nothing else fails; 2 (with a message) when the files cannot
be found or their import lines are not the expected ones.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

# test function -> why it fails with fastnn, by design
EXPECTED_FAILURES = {
    "test_gradient": "fastnn has no private _loss_grad_lbfgs (its gradient comes from the "
                     "engine; fastnn's own suite checks it against finite differences)",
    "test_mlp_partial_fit_after_fit": "fastnn's partial_fit supports early_stopping=True "
                                      "(scikit-learn raises)",
}

# (path inside the sklearn package, the import line, what it becomes)
FILES = [
    ("neural_network/tests/test_mlp.py",
     r"^from sklearn\.neural_network import MLPClassifier, MLPRegressor$",
     "from fastnn import MLPClassifier, MLPRegressor"),
    ("linear_model/tests/test_perceptron.py",
     r"^from sklearn\.linear_model import Perceptron$",
     "from fastnn import Perceptron"),
]

CONFTEST = '''\
"""Written by fastnn's tools/run_sklearn_tests.py: the expected failures."""
import pytest

EXPECTED_FAILURES = {expected!r}


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = EXPECTED_FAILURES.get(getattr(item, "originalname", item.name))
        if reason is not None:
            item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
'''


class NotAvailable(Exception):
    """scikit-learn's test files cannot be found or rewritten."""


def source_files(tests_dir=None):
    """The paths of scikit-learn's two test files (raises NotAvailable)."""
    if tests_dir is not None:
        paths = [Path(tests_dir) / Path(rel).name for rel, _, _ in FILES]
    else:
        try:
            import sklearn
        except ImportError as exc:
            raise NotAvailable("scikit-learn is not installed (pip install fastnn[sklearn])") \
                from exc
        root = Path(sklearn.__file__).parent
        paths = [root / rel for rel, _, _ in FILES]
    try:
        import sklearn.conftest  # noqa: F401  (its global_random_seed fixture)
    except ImportError as exc:
        raise NotAvailable(f"sklearn.conftest cannot be imported ({exc}): this "
                           f"scikit-learn does not ship its test configuration") from exc
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotAvailable(f"scikit-learn's test files are not there: {', '.join(missing)}; "
                           f"pass --tests-dir with a folder holding test_mlp.py and "
                           f"test_perceptron.py from scikit-learn's repository at the "
                           f"installed version's tag")
    return paths


def write_copies(paths, folder):
    """The test files with their estimator import pointed at fastnn, and the
    conftest marking the expected failures, written into ``folder``."""
    folder = Path(folder)
    for path, (_, pattern, replacement) in zip(paths, FILES):
        text, n = re.subn(pattern, replacement, path.read_text(), flags=re.MULTILINE)
        if n != 1:
            raise NotAvailable(f"{path}: expected one line matching {pattern!r}, found {n}; "
                               f"this scikit-learn's tests import the estimators differently")
        (folder / (path.stem + "_fastnn.py")).write_text(text)
    (folder / "conftest.py").write_text(CONFTEST.format(expected=EXPECTED_FAILURES))
    (folder / "pytest.ini").write_text("[pytest]\n")      # rootdir and config: this folder
    return sorted(str(p) for p in folder.glob("test_*_fastnn.py"))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=textwrap.dedent(__doc__).split("\n\n")[0],
        epilog="Other options are passed to pytest.")
    parser.add_argument("--tests-dir", help="folder holding scikit-learn's test_mlp.py and "
                                            "test_perceptron.py (default: the installed ones)")
    args, pytest_args = parser.parse_known_args(argv)
    try:
        paths = source_files(args.tests_dir)
    except NotAvailable as exc:
        print(f"run_sklearn_tests: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="fastnn-sklearn-tests-") as folder:
        try:
            tests = write_copies(paths, folder)
        except NotAvailable as exc:
            print(f"run_sklearn_tests: {exc}", file=sys.stderr)
            return 2
        cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "sklearn.conftest",
               "-rxX", *tests, *pytest_args]
        return subprocess.run(cmd, cwd=folder, env=os.environ.copy()).returncode


if __name__ == "__main__":
    sys.exit(main())
