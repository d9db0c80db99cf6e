"""fastnn.export.to_c: the header compiles warning-free and computes predict's values.

Each header is compiled with the system C compiler (and clang where present)
under -std=c99 -Wall -Wextra -Werror -pedantic, into a program that reads
rows as hexadecimal floats on stdin and prints each output with %a (exact
both ways); its results are compared with predict on random rows, zeros and
rows of large magnitude (float32 to 1e-5, float64 to 1e-12, relative to the
largest output for the large rows, where sums of huge terms cancel).
"""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fastnn as fn
from fastnn.activations import CODES

COMPILERS = [c for c in (os.environ.get("CC", "cc"), "gcc", "clang") if shutil.which(c)]
COMPILERS = list(dict.fromkeys(shutil.which(c) for c in COMPILERS))
pytestmark = pytest.mark.skipif(not COMPILERS or sys.platform == "win32",
                                reason="no C compiler (cc, gcc or clang) on PATH")
FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O1"]
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]

MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "model.h"

int main(void)
{
    char buf[128];
    {T} x[{NAME}_N_INPUTS], y[{NAME}_N_OUTPUTS];
    int i;
    for (;;) {
        for (i = 0; i < {NAME}_N_INPUTS; ++i) {
            if (scanf("%127s", buf) != 1) return 0;
            x[i] = ({T})strtod(buf, NULL);
        }
        {name}_predict(x, y);
        for (i = 0; i < {NAME}_N_OUTPUTS; ++i) printf("%a ", (double)y[i]);
        printf("\n");
    }
}
"""


def compile_and_run(model, X, tmp_path, name="model"):
    """The header's outputs for the rows of X, from every compiler."""
    fn.export.to_c(model, tmp_path / "model.h", name=name)
    ctype = "float" if X.dtype == np.float32 else "double"
    (tmp_path / "main.c").write_text(MAIN.replace("{T}", ctype).replace("{NAME}", name.upper())
                                     .replace("{name}", name))
    stdin = "\n".join(" ".join(float(v).hex() for v in row) for row in X) + "\n"
    results = []
    for cc in COMPILERS:
        exe = tmp_path / f"prog_{os.path.basename(cc)}"
        build = subprocess.run([cc, *FLAGS, "-o", str(exe), str(tmp_path / "main.c"), "-lm"],
                               capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert build.returncode == 0, f"{cc} failed:\n{build.stderr}"
        run = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stderr
        results.append(np.array([[float.fromhex(v) for v in line.split()]
                                 for line in run.stdout.splitlines()], X.dtype))
    return results


def rows(n_features, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, n_features)) * 3
    X[0] = 0.0
    big = 1e30 if dtype == np.float64 else 1e15
    X[1], X[2] = big, -big
    X[3] = rng.normal(size=n_features) * big
    return X.astype(dtype)


def check(got, expected, dtype):
    rtol = RTOL[dtype]
    np.testing.assert_allclose(got[4:], expected[4:], rtol=rtol, atol=rtol)
    scale = max(1.0, float(np.abs(expected[:4]).max()))
    np.testing.assert_allclose(got[:4], expected[:4], rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", sorted(CODES))
def test_network_every_activation(act, dtype, tmp_path):
    hidden = "elu" if act == "softmax" else act
    alpha = {"leaky_relu": 0.2, "elu": 0.7}.get(act)
    net = fn.Network([fn.Dense(5, 9, activation=hidden, alpha=alpha),
                      fn.Dense(9, 3, activation=act, alpha=alpha, use_bias=False)],
                     dtype=dtype, seed=2)
    net.layers[0].b = np.linspace(-1, 1, 9)
    X = rows(5, dtype)
    for got in compile_and_run(net, X, tmp_path, name="net_" + act):
        check(got, net.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "relu", "silu", "gelu", "linear", "softmax"])
def test_network_steepness(act, dtype, tmp_path):
    """A layer's steepness s: the header computes f(s * (x @ W + b))."""
    net = fn.Network([fn.Dense(5, 9, activation="tanh", steepness=0.5),
                      fn.Dense(9, 3, activation=act, steepness=1.7)], dtype=dtype, seed=2)
    X = rows(5, dtype)
    for got in compile_and_run(net, X, tmp_path, name="steep_" + act):
        check(got, net.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_poisson_writes_the_mean(dtype, tmp_path):
    """loss="poisson": the header computes predict's exp(z), as the network."""
    net = fn.Network([fn.Dense(5, 4, activation="tanh"), fn.Dense(4, 2, activation="linear")],
                     loss="poisson", dtype=dtype, seed=1)
    X = rows(5, dtype)
    for got in compile_and_run(net, X, tmp_path, name="net_poisson"):
        check(got, net.predict(X), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_estimators(dtype, tmp_path):
    pytest.importorskip("sklearn")
    import warnings
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4))
    cases = [
        (fn.MLPClassifier, np.where(X[:, 0] > 0, "a", "b"), "predict_proba"),
        (fn.MLPClassifier, np.digitize(X[:, 0], [-0.5, 0.5]), "predict_proba"),
        (fn.MLPRegressor, X[:, 0] * 2, "predict"),
        (fn.MLPRegressor, np.abs(X[:, :2]), "predict"),
    ]
    for i, (cls, y, method) in enumerate(cases):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = cls(hidden_layer_sizes=(6,), max_iter=20, random_state=0,
                        dtype=dtype.__name__).fit(X, y)
            if i == 3:       # the Poisson loss: exp of the output layer
                model = cls(loss="poisson", hidden_layer_sizes=(6,), max_iter=20,
                            random_state=0, dtype=dtype.__name__).fit(X, y)
        Xd = rows(4, dtype, seed=i)
        expected = getattr(model, method)(Xd).reshape(len(Xd), -1)
        for got in compile_and_run(model, Xd, tmp_path):
            check(got, expected, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        perceptron = fn.Perceptron(max_iter=10, random_state=0).fit(
            X.astype(dtype), np.digitize(X[:, 1], [-0.5, 0.5]))
    Xd = rows(4, dtype)
    for got in compile_and_run(perceptron, Xd, tmp_path):
        check(got, perceptron.decision_function(Xd), dtype)


def test_header_text_and_names(tmp_path):
    net = fn.Network([fn.Dense(3, 2, activation="tanh")], seed=0)
    text = fn.export.to_c(net, tmp_path / "tiny.h", name="tiny")
    assert text == (tmp_path / "tiny.h").read_text()
    assert "#define TINY_N_INPUTS 3" in text and "#define TINY_N_OUTPUTS 2" in text
    assert "static inline void tiny_predict(const float *x, float *y)" in text
    assert "malloc" not in text
    for bad in ("2fast", "a-b", "", None):
        with pytest.raises(ValueError, match="C identifier"):
            fn.export.to_c(net, tmp_path / "bad.h", name=bad)
