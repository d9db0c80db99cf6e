"""Perceptron: scikit-learn's linear Perceptron, trained by fastnn's compiled loop.

``fastnn.Perceptron`` takes the parameters of
``sklearn.linear_model.Perceptron`` with the same names, defaults and meaning,
and gives the same results: the epoch loop, the one-vs-all problems, the
random draws (validation split, per-problem shuffle seeds), the stopping
criterion and every floating-point operation of the per-sample update follow
scikit-learn's ``SGDClassifier(loss="perceptron", learning_rate="constant")``,
so ``coef_`` and ``intercept_`` come out identical for the same data and
``random_state``.  The per-sample loop runs in ``fastnn._perceptron``
(Cython, no GIL) and the one-vs-all problems run on ``n_jobs`` OpenMP threads.

One addition: ``average`` (as in ``SGDClassifier``): True or an integer
``n`` returns the averaged perceptron, the average of the weights over the
updates from sample ``n`` on (True: from the first).

This module needs scikit-learn (``pip install fastnn[sklearn]``).
"""
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model._base import LinearClassifierMixin, SparseCoefMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils import check_random_state, compute_class_weight
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call
from sklearn.utils.validation import _check_sample_weight, validate_data

from . import _perceptron

MAX_INT = np.iinfo(np.int32).max
SPARSE_INTERCEPT_DECAY = 0.01   # scikit-learn's, for CSR input


def _n_threads(n_jobs):
    """Threads for the one-vs-all problems: joblib's reading of n_jobs."""
    from joblib import effective_n_jobs
    return max(1, int(effective_n_jobs(n_jobs)))


class Perceptron(LinearClassifierMixin, SparseCoefMixin, BaseEstimator):
    """Linear perceptron classifier (scikit-learn's, with a compiled loop).

    Parameters
    ----------
    penalty : {'l2', 'l1', 'elasticnet'}, default=None
        The penalty (regularization term) to be used.
    alpha : float, default=0.0001
        Constant that multiplies the regularization term if regularization is used.
    l1_ratio : float, default=0.15
        The Elastic Net mixing parameter, ``0 <= l1_ratio <= 1``; only used
        if ``penalty='elasticnet'``.
    fit_intercept : bool, default=True
        Whether the intercept should be estimated or not.
    max_iter : int, default=1000
        The maximum number of passes over the training data (epochs); only
        used by ``fit``.
    tol : float or None, default=1e-3
        The stopping criterion: the iterations stop when
        ``loss > previous_loss - tol`` for ``n_iter_no_change`` epochs.
    shuffle : bool, default=True
        Whether the training data is shuffled after each epoch.
    verbose : int, default=0
        The verbosity level (the per-epoch lines are printed after the
        compiled loop returns).
    eta0 : float, default=1
        Constant by which the updates are multiplied.
    n_jobs : int, default=None
        Threads for the one-vs-all problems of a multi-class fit (None: 1,
        -1: all cores).  The result does not depend on it.
    random_state : int, RandomState instance or None, default=0
        Used to shuffle the training data and to split off the validation set.
    early_stopping : bool, default=False
        Set aside a stratified ``validation_fraction`` of the training data
        and stop when the validation accuracy does not improve by at least
        ``tol`` for ``n_iter_no_change`` consecutive epochs.
    validation_fraction : float, default=0.1
        Proportion of training data set aside for early stopping.
    n_iter_no_change : int, default=5
        Number of epochs with no improvement to wait before stopping.
    class_weight : dict, {class_label: weight} or "balanced", default=None
        Weights associated with classes ("balanced":
        ``n_samples / (n_classes * np.bincount(y))``).
    warm_start : bool, default=False
        Reuse the solution of the previous call to fit as initialization.
    average : bool or int, default=False
        fastnn's addition (scikit-learn's ``SGDClassifier`` parameter): when
        True, ``coef_`` and ``intercept_`` are the averages of the weights
        over all updates (the averaged perceptron); an int ``n`` starts the
        average once ``n`` samples have been seen.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (1, n_features) if n_classes == 2 else (n_classes, n_features)
    intercept_ : ndarray of shape (1,) if n_classes == 2 else (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when X has feature names that are all strings.
    n_iter_ : int
        Epochs run (the maximum over the one-vs-all problems).
    t_ : float
        Number of weight updates performed during training, plus one.
    """

    _parameter_constraints: dict = {
        "penalty": [StrOptions({"l2", "l1", "elasticnet"}), None],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "fit_intercept": ["boolean"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "shuffle": ["boolean"],
        "verbose": ["verbose"],
        "eta0": [Interval(Real, 0, None, closed="neither")],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "warm_start": ["boolean"],
        "average": [Interval(Integral, 0, None, closed="neither"), "boolean"],
    }

    def __init__(self, *, penalty=None, alpha=0.0001, l1_ratio=0.15, fit_intercept=True,
                 max_iter=1000, tol=1e-3, shuffle=True, verbose=0, eta0=1.0, n_jobs=None,
                 random_state=0, early_stopping=False, validation_fraction=0.1,
                 n_iter_no_change=5, class_weight=None, warm_start=False, average=False):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.average = average

    # -- public API ----------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Fit the perceptron with the perceptron rule for up to ``max_iter`` epochs.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Target values (class labels).
        coef_init : ndarray of shape (n_classes, n_features), default=None
            The initial coefficients to warm-start the optimization.
        intercept_init : ndarray of shape (n_classes,), default=None
            The initial intercept to warm-start the optimization.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights applied to individual samples (multiplied with class_weight).

        Returns
        -------
        self : object
        """
        if hasattr(self, "classes_"):
            # otherwise _partial_fit would take this for a later call
            delattr(self, "classes_")
        y = validate_data(self, y=y)
        classes = np.unique(y)
        if self.warm_start and hasattr(self, "coef_"):
            if coef_init is None:
                coef_init = self.coef_
            if intercept_init is None:
                intercept_init = self.intercept_
        else:
            self.coef_ = None
            self.intercept_ = None
        if self.average > 0:
            self._standard_coef = self.coef_
            self._standard_intercept = self.intercept_
            self._average_coef = None
            self._average_intercept = None
        self.t_ = 1.0
        self._partial_fit(X, y, self.max_iter, classes, sample_weight, coef_init,
                          intercept_init)
        if self.tol is not None and self.tol > -np.inf and self.n_iter_ == self.max_iter:
            warnings.warn("Maximum number of iteration reached before convergence. "
                          "Consider increasing max_iter to improve the fit.",
                          ConvergenceWarning)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """Perform one epoch of the perceptron rule on the given samples.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : ndarray of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        if not hasattr(self, "classes_"):
            if self.early_stopping:
                raise ValueError("early_stopping should be False with partial_fit")
            if self.class_weight == "balanced":
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit. In order "
                    "to use 'balanced' weights, use compute_class_weight('balanced', "
                    "classes=classes, y=y). In place of y you can use a large enough "
                    "sample of the full training set target to properly estimate the "
                    "class frequency distributions. Pass the resulting weights as the "
                    "class_weight parameter.")
        return self._partial_fit(X, y, 1, classes, sample_weight, None, None)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # -- training ------------------------------------------------------------
    def _partial_fit(self, X, y, max_iter, classes, sample_weight, coef_init,
                     intercept_init):
        first_call = not hasattr(self, "classes_")
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=[np.float64, np.float32],
                             order="C", accept_large_sparse=False, reset=first_call)
        n_samples, n_features = X.shape
        _check_partial_fit_first_call(self, classes)
        n_classes = self.classes_.shape[0]
        self._expanded_class_weight = compute_class_weight(
            self.class_weight, classes=self.classes_, y=y)
        try:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 allow_all_zero_weights=self.early_stopping)
        except TypeError:       # scikit-learn without allow_all_zero_weights
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype)
        if getattr(self, "coef_", None) is None or coef_init is not None:
            self._allocate_parameter_mem(n_classes, n_features, X.dtype, coef_init,
                                         intercept_init)
        elif n_features != self.coef_.shape[-1]:
            raise ValueError("Number of features %d does not match previous data %d."
                             % (n_features, self.coef_.shape[-1]))
        if not hasattr(self, "t_"):
            self.t_ = 1.0
        if n_classes > 2:
            self._fit_multiclass(X, y, sample_weight, max_iter)
        elif n_classes == 2:
            self._fit_binary(X, y, sample_weight, max_iter)
        else:
            raise ValueError("The number of classes has to be greater than one; got %d class"
                             % n_classes)
        return self

    def _allocate_parameter_mem(self, n_classes, n_features, dtype, coef_init,
                                intercept_init):
        """coef_/intercept_ (zeros or copies of the given ones) and the average buffers."""
        if n_classes > 2:
            if coef_init is not None:
                coef_init = np.array(coef_init, dtype=dtype, order="C")
                if coef_init.shape != (n_classes, n_features):
                    raise ValueError("Provided ``coef_`` does not match dataset. ")
                self.coef_ = coef_init
            else:
                self.coef_ = np.zeros((n_classes, n_features), dtype=dtype, order="C")
            if intercept_init is not None:
                intercept_init = np.array(intercept_init, dtype=dtype, order="C")
                if intercept_init.shape != (n_classes,):
                    raise ValueError("Provided intercept_init does not match dataset.")
                self.intercept_ = intercept_init
            else:
                self.intercept_ = np.zeros(n_classes, dtype=dtype, order="C")
        else:
            if coef_init is not None:
                coef_init = np.array(coef_init, dtype=dtype, order="C").ravel()
                if coef_init.shape != (n_features,):
                    raise ValueError("Provided coef_init does not match dataset.")
                self.coef_ = coef_init
            else:
                self.coef_ = np.zeros(n_features, dtype=dtype, order="C")
            if intercept_init is not None:
                intercept_init = np.array(intercept_init, dtype=dtype)
                if intercept_init.shape != (1,) and intercept_init.shape != ():
                    raise ValueError("Provided intercept_init does not match dataset.")
                self.intercept_ = intercept_init.reshape(1)
            else:
                self.intercept_ = np.zeros(1, dtype=dtype, order="C")
        if self.average > 0:
            self._standard_coef = self.coef_
            self._average_coef = np.zeros(self.coef_.shape, dtype=dtype, order="C")
            self._standard_intercept = self.intercept_
            self._average_intercept = np.zeros(self._standard_intercept.shape, dtype=dtype,
                                               order="C")

    def _make_validation_split(self, y, sample_mask):
        """Boolean mask of the validation rows (all False without early stopping)."""
        n_samples = y.shape[0]
        validation_mask = np.zeros(n_samples, dtype=np.bool_)
        if not self.early_stopping:
            return validation_mask
        cv = StratifiedShuffleSplit(test_size=self.validation_fraction,
                                    random_state=self.random_state)
        idx_train, idx_val = next(cv.split(np.zeros(shape=(y.shape[0], 1)), y))
        if not np.any(sample_mask[idx_val]):
            raise ValueError("The sample weights for validation set are all zero, consider "
                             "using a different random state.")
        if idx_train.shape[0] == 0 or idx_val.shape[0] == 0:
            raise ValueError(
                "Splitting %d samples into a train set and a validation set with "
                "validation_fraction=%r led to an empty set (%d and %d samples). Please "
                "either change validation_fraction, increase number of samples, or disable "
                "early_stopping." % (n_samples, self.validation_fraction,
                                     idx_train.shape[0], idx_val.shape[0]))
        validation_mask[idx_val] = True
        return validation_mask

    @staticmethod
    def _shuffle_seed(random_state):
        """The draws scikit-learn's fit_binary makes: make_dataset's seed
        (unused here), then the shuffle seed."""
        random_state.randint(1, np.iinfo(np.int32).max)
        return random_state.randint(MAX_INT)

    def _label_codes(self, y):
        """Index of each label in classes_, -1 for labels not in it."""
        idx = np.searchsorted(self.classes_, y)
        idx = np.minimum(idx, len(self.classes_) - 1)
        return np.where(self.classes_[idx] == y, idx, -1).astype(np.int64)

    def _fit_binary(self, X, y, sample_weight, max_iter):
        cw = self._expanded_class_weight
        random_state = check_random_state(self.random_state)
        random_state.randint(1, np.iinfo(np.int32).max)        # make_dataset's draw
        y_code = self._label_codes(y)
        y_i = np.where(y_code == 1, 1.0, -1.0).astype(X.dtype)
        validation_mask = self._make_validation_split(y_i, sample_mask=sample_weight > 0)
        seed = random_state.randint(MAX_INT)
        if not self.average:
            coef = self.coef_.reshape(1, -1)
            intercept = np.array([self.intercept_[0]], np.float64)
            average_coef = None
            average_intercept = np.zeros(1)
        else:
            coef = self._standard_coef.reshape(1, -1)
            intercept = np.array([self._standard_intercept[0]], np.float64)
            average_coef = self._average_coef.reshape(1, -1)
            average_intercept = np.array([self._average_intercept[0]], np.float64)
        n_iter = self._run(X, y_code, sample_weight, coef, intercept, average_coef,
                           average_intercept, positive=[1], weight_pos=[cw[1]],
                           weight_neg=[cw[0]], seeds=[seed], validation_mask=validation_mask,
                           max_iter=max_iter)
        if self.average:
            self._average_intercept[0] = average_intercept[0]
        self.t_ += n_iter * X.shape[0]
        self.n_iter_ = n_iter
        if self.average > 0:
            if self.average <= self.t_ - 1:
                self.coef_ = self._average_coef.reshape(1, -1)
                self.intercept_ = self._average_intercept
                # (as scikit-learn: the standard intercept is not stored here)
            else:
                self.coef_ = self._standard_coef.reshape(1, -1)
                self._standard_intercept = np.atleast_1d(intercept[0])
                self.intercept_ = self._standard_intercept
        else:
            self.coef_ = coef.reshape(1, -1)
            self.intercept_ = np.atleast_1d(intercept[0])

    def _fit_multiclass(self, X, y, sample_weight, max_iter):
        """One-vs-all: problem i separates classes_[i] from the others."""
        n_classes = len(self.classes_)
        validation_mask = self._make_validation_split(y, sample_mask=sample_weight > 0)
        random_state = check_random_state(self.random_state)
        seeds = random_state.randint(MAX_INT, size=n_classes)
        shuffle_seeds = [self._shuffle_seed(check_random_state(s)) for s in seeds]
        y_code = self._label_codes(y)
        cw = self._expanded_class_weight
        if not self.average:
            coef, intercept_src = self.coef_, self.intercept_
            average_coef = None
            average_intercept = np.zeros(n_classes)
        else:
            coef, intercept_src = self._standard_coef, self._standard_intercept
            average_coef = self._average_coef
            average_intercept = np.asarray(self._average_intercept, np.float64).copy()
        intercept = np.asarray(intercept_src, np.float64).copy()
        n_iter = self._run(X, y_code, sample_weight, coef, intercept, average_coef,
                           average_intercept, positive=np.arange(n_classes),
                           weight_pos=cw, weight_neg=np.ones(n_classes), seeds=shuffle_seeds,
                           validation_mask=validation_mask, max_iter=max_iter)
        if self.average:
            self._average_intercept[:] = average_intercept
        # as scikit-learn: the trained intercepts go to intercept_, whichever
        # array it is at this point
        self.intercept_[:] = intercept
        self.t_ += n_iter * X.shape[0]
        self.n_iter_ = n_iter
        if self.average > 0:
            if self.average <= self.t_ - 1.0:
                self.coef_ = self._average_coef
                self.intercept_ = self._average_intercept
            else:
                self.coef_ = self._standard_coef
                self._standard_intercept = np.atleast_1d(self.intercept_)
                self.intercept_ = self._standard_intercept

    def _run(self, X, y_code, sample_weight, coef, intercept, average_coef, average_intercept,
             positive, weight_pos, weight_neg, seeds, validation_mask, max_iter):
        """Train the problems in place with the compiled loop; returns n_iter_."""
        dtype = coef.dtype      # the precision of the model, set by the first fit
        if sp.issparse(X):
            data = np.ascontiguousarray(X.data, dtype=dtype)
            indptr = np.ascontiguousarray(X.indptr, dtype=np.intc)
            indices = np.ascontiguousarray(X.indices, dtype=np.intc)
            intercept_decay = SPARSE_INTERCEPT_DECAY
        else:
            data = np.ascontiguousarray(X, dtype=dtype).reshape(-1)
            indptr = indices = None
            intercept_decay = 1.0
        if average_coef is None:
            average_coef_arg = None
        else:
            average_coef_arg = average_coef
        tol = self.tol if self.tol is not None else -np.inf
        t0 = time.perf_counter()
        n_iter, stats = _perceptron.fit_problems(
            data, indptr, indices, X.shape[0], X.shape[1], y_code,
            np.asarray(positive, np.int64), np.ascontiguousarray(sample_weight, dtype=dtype),
            coef, average_coef_arg, intercept, average_intercept,
            np.asarray(weight_pos, np.float64), np.asarray(weight_neg, np.float64),
            np.asarray(seeds, np.uint32), validation_mask.astype(np.uint8),
            bool(self.early_stopping), int(self.n_iter_no_change), int(max_iter), float(tol),
            bool(self.fit_intercept), bool(self.shuffle),
            _perceptron.PENALTY_TYPES[self.penalty], float(self.alpha), float(self.l1_ratio),
            float(self.eta0), float(self.t_), intercept_decay, int(self.average),
            _n_threads(self.n_jobs))
        seconds = time.perf_counter() - t0
        if self.verbose:
            self._print_epochs(n_iter, stats, seconds)
        bad = n_iter < 0
        if bad.any():
            raise ValueError("Floating-point under-/overflow occurred at epoch #%d. Scaling "
                             "input data with StandardScaler or MinMaxScaler might help."
                             % (-n_iter[bad][0]))
        return int(n_iter.max())

    def _print_epochs(self, n_iter, stats, seconds):
        """scikit-learn's per-epoch lines, printed once the compiled loop returned."""
        for k in range(len(n_iter)):
            for e in range(abs(int(n_iter[k]))):
                norm, nnz, bias, count, loss, objective, score = stats[k, e]
                print("-- Epoch %d" % (e + 1))
                line = ("Norm: %.2f, NNZs: %d, Bias: %.6f, T: %d, Avg. loss: %f, Objective: %f"
                        % (norm, nnz, bias, count, loss, objective))
                if self.early_stopping:
                    line += ", Validation score: %f" % score
                print(line)
            if 0 < n_iter[k] < stats.shape[1]:
                print("Convergence after %d epochs took %.2f seconds" % (n_iter[k], seconds))
        print("Total training time: %.2f seconds." % seconds)
