"""fastnn.Perceptron against scikit-learn's Perceptron (the independent implementation).

fastnn's compiled loop performs the same floating-point operations in the
same order as scikit-learn's ``_plain_sgd``, so the comparisons are exact
(``np.array_equal``), not within a tolerance: any reordering, missed cast
or different random draw shows up as a difference.
"""
import pickle
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
import scipy.sparse as sp  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.linear_model import Perceptron as SkPerceptron  # noqa: E402
from sklearn.linear_model import SGDClassifier  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnn  # noqa: E402
from fastnn import _perceptron  # noqa: E402
from fastnn.perceptron import Perceptron  # noqa: E402
from conftest import NO_SKLEARN, run_python  # noqa: E402

DTYPES = [np.float32, np.float64]


@pytest.fixture(scope="module")
def datasets():
    Xd, yd = load_digits(return_X_y=True)
    Xb, yb = load_breast_cancer(return_X_y=True)
    Xi, yi = load_iris(return_X_y=True)
    # a binary problem with string labels, and a small multi-class one
    return {"digits": (Xd[:600], yd[:600]), "cancer": (Xb, np.where(yb, "yes", "no")),
            "iris": (Xi, yi)}


def assert_same_model(ours, theirs):
    assert ours.coef_.dtype == theirs.coef_.dtype
    assert ours.intercept_.dtype == theirs.intercept_.dtype
    np.testing.assert_array_equal(ours.coef_, theirs.coef_)
    np.testing.assert_array_equal(ours.intercept_, theirs.intercept_)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)


def fit_both(params, X, y, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = Perceptron(**params).fit(X, y, **fit_params)
        theirs = SkPerceptron(**params).fit(X, y, **fit_params)
    return ours, theirs


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("name", ["digits", "cancer", "iris"])
def test_identical_without_penalty_or_shuffle(datasets, name, dtype):
    X, y = datasets[name]
    ours, theirs = fit_both(dict(penalty=None, shuffle=False), X.astype(dtype), y)
    assert_same_model(ours, theirs)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_array_equal(ours.decision_function(X), theirs.decision_function(X))


PARAMS = [
    dict(),
    dict(penalty="l2", alpha=1e-3),
    dict(penalty="l1", alpha=1e-3),
    dict(penalty="elasticnet", alpha=1e-3, l1_ratio=0.4),
    dict(early_stopping=True, validation_fraction=0.2, n_iter_no_change=3),
    dict(penalty="l2", alpha=1e-2, early_stopping=True),
    dict(class_weight="balanced"),
    dict(fit_intercept=False, eta0=0.1),
    dict(tol=None, max_iter=7, random_state=3),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_identical_with_every_option(datasets, params, dtype):
    for name in ("digits", "cancer"):
        X, y = datasets[name]
        assert_same_model(*fit_both(params, X.astype(dtype), y))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_identical_on_sparse_input(datasets, dtype):
    X, y = datasets["digits"]
    X = sp.csr_matrix(X.astype(dtype))
    for params in (dict(), dict(penalty="elasticnet"), dict(shuffle=False, average=True)):
        ours = Perceptron(**params).fit(X, y)
        if "average" in params:
            theirs = SGDClassifier(loss="perceptron", learning_rate="constant", eta0=1.0,
                                   penalty=None, random_state=0, **params).fit(X, y)
        else:
            theirs = SkPerceptron(**params).fit(X, y)
        assert_same_model(ours, theirs)


def test_sample_weight_and_random_state_instance(datasets):
    X, y = datasets["digits"]
    sw = np.random.default_rng(0).uniform(0.1, 2.0, len(y))
    params = dict(early_stopping=True)
    ours = Perceptron(random_state=np.random.RandomState(5), **params).fit(X, y, sample_weight=sw)
    theirs = SkPerceptron(random_state=np.random.RandomState(5), **params).fit(
        X, y, sample_weight=sw)
    assert_same_model(ours, theirs)


@pytest.mark.parametrize("average", [True, 1, 250])
def test_average_is_sgd_average(datasets, average):
    """average=True/n: the averaged perceptron, as SGDClassifier(average=...)."""
    for name in ("digits", "cancer"):
        X, y = datasets[name]
        ours = Perceptron(average=average).fit(X, y)
        theirs = SGDClassifier(loss="perceptron", learning_rate="constant", eta0=1.0,
                               penalty=None, average=average, random_state=0).fit(X, y)
        assert_same_model(ours, theirs)


@pytest.mark.parametrize("average", [False, True, 300])
def test_partial_fit_identical(datasets, average):
    X, y = datasets["digits"]
    classes = np.unique(y)
    ours = Perceptron(average=average)
    theirs = SGDClassifier(loss="perceptron", learning_rate="constant", eta0=1.0,
                           penalty=None, average=average, random_state=0)
    for start in range(0, 600, 200):
        rows = slice(start, start + 200)
        ours.partial_fit(X[rows], y[rows], classes=classes)
        theirs.partial_fit(X[rows], y[rows], classes=classes)
        assert_same_model(ours, theirs)


def test_warm_start_and_coef_init(datasets):
    X, y = datasets["digits"]
    ours, theirs = Perceptron(warm_start=True, max_iter=3), SkPerceptron(warm_start=True,
                                                                          max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for rows in (slice(None), slice(None, None, -1)):
            ours.fit(X[rows], y[rows])
            theirs.fit(X[rows], y[rows])
            assert_same_model(ours, theirs)
        rng = np.random.default_rng(1)
        coef0, b0 = rng.normal(size=(10, X.shape[1])), rng.normal(size=10)
        ours = Perceptron().fit(X, y, coef_init=coef0, intercept_init=b0)
        theirs = SkPerceptron().fit(X, y, coef_init=coef0.copy(), intercept_init=b0.copy())
    assert_same_model(ours, theirs)


def test_threads_do_not_change_the_result(datasets):
    X, y = datasets["digits"]
    one = Perceptron(n_jobs=1, penalty="l1").fit(X, y)
    two = Perceptron(n_jobs=2, penalty="l1").fit(X, y)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.intercept_, two.intercept_)


def test_shuffle_is_scikit_learns_xorshift_fisher_yates():
    """The visiting order, against a Python transcription of SequentialDataset.shuffle."""
    def reference(n, seed, epochs):
        ind = list(range(n))
        for _ in range(epochs):
            s = seed
            for i in range(n - 1):
                if s == 0:
                    s = 1
                s ^= (s << 13) & 0xFFFFFFFF
                s ^= s >> 17
                s ^= (s << 5) & 0xFFFFFFFF
                j = i + (s % 2147483648) % (n - i)
                ind[i], ind[j] = ind[j], ind[i]
        return ind
    for n, seed, epochs in [(1, 3, 1), (7, 12345, 1), (50, 0, 2), (33, 2 ** 31 - 2, 3)]:
        assert list(_perceptron.shuffled_index(n, seed, epochs)) == reference(n, seed, epochs)


def test_overflow_is_reported(datasets):
    X, y = datasets["digits"]
    with pytest.raises(ValueError, match="Floating-point under-/overflow"):
        Perceptron(eta0=1e308, max_iter=5).fit(X * 1e300, y)


def test_errors_in_scikit_learns_wording(datasets):
    X, y = datasets["digits"]
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
        Perceptron(early_stopping=True).partial_fit(X, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        Perceptron().partial_fit(X, y)
    with pytest.raises(ValueError, match="has to be greater than one"):
        Perceptron().fit(X, np.zeros(len(X)))
    clf = Perceptron(max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :10], y)
    with pytest.raises(ValueError, match="penalty"):
        Perceptron(penalty="l3").fit(X, y)


def test_verbose_prints_scikit_learns_epoch_lines(datasets, capsys):
    X, y = datasets["cancer"]
    Perceptron(verbose=1, max_iter=30).fit(X, y)
    out = capsys.readouterr().out
    assert out.startswith("-- Epoch 1\nNorm: ")
    assert "Avg. loss: " in out and "Convergence after" in out


def test_pickle_round_trip(datasets):
    X, y = datasets["digits"]
    clf = Perceptron(max_iter=5, tol=None).fit(X, y)
    clone = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone.decision_function(X), clf.decision_function(X))
    clone.partial_fit(X, y)          # and it trains on where it stopped
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(clone.coef_, clf.coef_)


def test_fastnn_namespace_and_import_without_sklearn():
    assert fastnn.Perceptron is Perceptron
    error = run_python(NO_SKLEARN.format(name="Perceptron"))["error"]
    assert error is not None and "fastnn[sklearn]" in error


# scikit-learn itself expects these to fail for Perceptron (its instance_generator
# lists them: sample_weight is not equivalent to repeating samples in SGD).
@parametrize_with_checks(
    [Perceptron(max_iter=5)],
    expected_failed_checks=lambda est: {
        "check_sample_weight_equivalence_on_dense_data":
            "as scikit-learn's Perceptron: weights are not repetitions in SGD",
        "check_sample_weight_equivalence_on_sparse_data":
            "as scikit-learn's Perceptron: weights are not repetitions in SGD",
    })
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
