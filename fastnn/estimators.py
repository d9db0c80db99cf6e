"""MLPClassifier and MLPRegressor: scikit-learn's estimators, trained by fastnn's engine.

Every parameter of ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``
exists here with the same name, default and meaning, and so does every fitted
attribute.  What runs where:

* ``solver="sgd"`` / ``"adam"``: each epoch is one call into fastnn's engine
  (a ``Network`` of ``Dense`` layers, fastnn's ``SGD`` / ``Adam``), which runs
  every minibatch without returning to Python.  The epoch-level logic is
  scikit-learn's, written here line for line: the learning-rate schedules
  (constant, invscaling, adaptive), the ``tol`` / ``n_iter_no_change``
  stopping, early stopping on a (stratified, as scikit-learn's) validation
  split with ``best_loss_``, ``validation_scores_`` and
  ``best_validation_score_``, the shuffling with ``random_state``, and
  ``batch_size="auto"`` = ``min(200, n_samples)``.
* ``solver="lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B")`` on the
  loss and gradient that fastnn's engine computes over the whole data set,
  with the L2 term added as scikit-learn adds it.

The weights are initialised as scikit-learn's ``_init_coef`` does (uniform in
+-sqrt(6 / (fan_in + fan_out)), factor 2 instead of 6 for the logistic
activation, intercepts too), drawn from ``check_random_state(random_state)``
in the same order, and the shuffling draws the same permutations; so with
float64 X the training steps are scikit-learn's up to floating-point rounding
(fastnn's kernels sum in another order).

As in scikit-learn, the model computes in X's precision: float32 X gives
float32 ``coefs_`` and predictions, float64 X (or any other dtype, converted
to float64) float64; the first fit decides and ``partial_fit`` /
``warm_start`` keep the fitted model's precision.

Extra parameters (after scikit-learn's): ``dtype`` (None, the default: follow
X as above; "float32" or "float64": force that precision of the weights and of
every computation, X being converted; float32 is fastnn's fast path),
``n_threads`` (the engine's thread count; None: fastnn's default) and
``dropout`` (the rate of dropout on the hidden layers' outputs during
training, 0 by default).

Differences from scikit-learn, by design:

* Sparse X is accepted and converted to a dense array (the engine is dense).
* ``partial_fit`` supports ``early_stopping=True`` (scikit-learn raises): each
  call holds out ``validation_fraction`` of the batch it is given (stratified
  when every class of a single-output classification batch has 2 samples or
  more), trains one epoch on the rest and scores the held-out part, which
  updates ``validation_scores_``, ``best_validation_score_`` and the best
  weights.  When the score has not improved by ``tol`` for more than
  ``n_iter_no_change`` calls, the learning rate is divided by 5 with
  ``learning_rate="adaptive"`` (as ``fit`` does); otherwise the best weights
  are restored into ``coefs_`` / ``intercepts_``, ``early_stopped_`` is True
  and the count restarts (a further call trains on from the best weights).
* There is no private ``_loss_grad_lbfgs`` (scikit-learn's ``test_gradient``
  calls it): the loss and gradient are the engine's, which fastnn's own tests
  check against finite differences.
* A loss that becomes NaN or infinite, without ``early_stopping``: training
  stops at once with scikit-learn's "Solver produced non-finite parameter
  weights" error (scikit-learn finishes the remaining epochs on NaN first).
  With ``early_stopping=True`` it goes on as in scikit-learn: the epoch's
  validation score is nan, and the best weights are restored at the end (a
  ConvergenceWarning says when the loss diverged); a nan score counts as no
  improvement, so training stops ``n_iter_no_change`` epochs later instead
  of running on NaN weights to ``max_iter``.
* ``solver="lbfgs"``: when L-BFGS-B's last line search finds no lower loss
  (after a trial point whose loss is infinite in the model's dtype, or where
  float32's rounding of the loss hides the gain) SciPy reports convergence;
  fastnn starts it again from there while that lowers the loss, and
  otherwise warns (ConvergenceWarning) instead of stopping silently.
* ``predict_log_proba`` is ``log(predict_proba(X))`` except where a
  probability underflows the model's dtype: there it is the log-softmax (or
  log-sigmoid) of the output's pre-activation, finite instead of -inf.
* The reported loss is fastnn's: the exact log-softmax for cross-entropy
  (scikit-learn clips probabilities at machine epsilon first); they differ
  only for probabilities below 1e-16.

This module needs scikit-learn (``pip install fastnn[sklearn]``).
"""
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.optimize
import scipy.sparse as sp
import scipy.special
from sklearn.base import (BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context,
                          is_classifier)
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import (_check_partial_fit_first_call, type_of_target,
                                      unique_labels)
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from . import _config
from ._validation import all_finite
from .callbacks import Callback
from .layers import Dense
from .network import Network
from .optimizers import SGD, Adam

try:
    from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
except ImportError:                                   # scikit-learn < 1.5
    def _get_additional_lbfgs_options_dict(key, value):
        return {key: value}

_STOCHASTIC_SOLVERS = ["sgd", "adam"]
# how many times lbfgs starts again after stopping with no lower loss found
_LBFGS_RESTARTS = 5

# scikit-learn's activation names -> fastnn's
HIDDEN_ACTIVATIONS = {"identity": "linear", "logistic": "sigmoid", "tanh": "tanh",
                      "relu": "relu"}
# out_activation_ -> (the output layer's activation in the engine, fastnn's loss).
# "exp": fastnn's poisson loss has a linear output z and predicts exp(z).
OUTPUTS = {"softmax": ("softmax", "cross_entropy"),
           "logistic": ("sigmoid", "binary_cross_entropy"),
           "identity": ("linear", "mse"),
           "exp": ("linear", "poisson")}


def _pack(coefs_, intercepts_):
    """Pack the parameters into a single float64 vector."""
    return np.hstack([np.asarray(p, np.float64).ravel() for p in list(coefs_) + list(intercepts_)])


def _dense_float(X, dtype):
    """X as a C-contiguous array of ``dtype`` (sparse input is densified)."""
    if sp.issparse(X):
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=dtype)


class _SGDSchedule:
    """scikit-learn's SGDOptimizer, epoch side: the learning rate and when to stop.

    The per-batch update (``v = momentum * v - lr * g``, Nesterov's variant)
    runs in the engine through ``self.optimizer``, a fastnn ``SGD``.
    """

    def __init__(self, learning_rate_init, lr_schedule, momentum, nesterov, power_t):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        if momentum < 1:
            self.optimizer = SGD(lr=self.learning_rate, momentum=momentum,
                                 nesterov=nesterov and momentum > 0)
        else:
            # scikit-learn allows momentum=1 (no decay of the velocity); fastnn's
            # SGD refuses it as a user-facing value, the engine computes it fine.
            self.optimizer = SGD(lr=self.learning_rate, momentum=0.5, nesterov=nesterov)
            self.optimizer.momentum = float(momentum)

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class _AdamSchedule:
    """scikit-learn's AdamOptimizer, epoch side; the update (with scikit-learn's
    placement of the bias corrections) runs in the engine."""

    def __init__(self, learning_rate_init, beta_1, beta_2, epsilon):
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.optimizer = Adam(lr=self.learning_rate, beta1=beta_1, beta2=beta_2, eps=epsilon,
                              bias_correction="step_size")

    def iteration_ends(self, time_step):
        pass

    def trigger_stopping(self, msg, verbose):
        if verbose:
            print(msg + " Stopping.")
        return True


class _ScikitLearnEpochs(Callback):
    """scikit-learn's epoch-level logic of the stochastic solvers, run by
    ``Network.fit`` at each epoch's start and end (the estimators train
    through Network.fit's loop): the learning rate of the epoch, loss_,
    loss_curve_, t_, n_iter_, the validation score, the tol /
    n_iter_no_change stopping and the max_iter warning, line for line as
    scikit-learn's ``_fit_stochastic``."""

    def __init__(self, est, schedule, validation, incremental):
        super().__init__()
        self.est, self.schedule, self.incremental = est, schedule, incremental
        self.validation = validation          # (X_val, y_val, sw_val) or Nones
        self.diverged_at = 0                  # the first epoch with a non-finite loss

    def on_epoch_begin(self, epoch, logs):
        self.schedule.optimizer.lr = self.schedule.learning_rate

    def on_epoch_end(self, epoch, logs):
        est, schedule = self.est, self.schedule
        if not np.isfinite(logs["loss"]):
            # only with early stopping (else fit raised): scikit-learn goes on
            self.diverged_at = self.diverged_at or est.n_iter_ + 1
        est.n_iter_ += 1
        est.loss_ = logs["loss"]
        est.t_ += self.params["n_samples"]
        est.loss_curve_.append(est.loss_)
        if est.verbose:
            print("Iteration %d, loss = %.8f" % (est.n_iter_, est.loss_))
        est._update_no_improvement_count(est.early_stopping, *self.validation)
        schedule.iteration_ends(est.t_)
        if est._no_improvement_count > est.n_iter_no_change:
            if est.early_stopping:
                msg = ("Validation score did not improve more than tol=%f for %d "
                       "consecutive epochs." % (est.tol, est.n_iter_no_change))
            else:
                msg = ("Training loss did not improve more than tol=%f for %d "
                       "consecutive epochs." % (est.tol, est.n_iter_no_change))
            if schedule.trigger_stopping(msg, est.verbose):
                est.early_stopped_ = True
                self.model.stop_training = True
                return
            est._no_improvement_count = 0
        if not self.incremental and est.n_iter_ == est.max_iter:
            warnings.warn("Stochastic Optimizer: Maximum iterations (%d) reached and the "
                          "optimization hasn't converged yet." % est.max_iter,
                          ConvergenceWarning)


class BaseMultilayerPerceptron(BaseEstimator):
    """Shared code of MLPClassifier and MLPRegressor (use those)."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left"),
                             Options(Real, {np.inf})],
        "max_fun": [Interval(Integral, 1, None, closed="left")],
        "dtype": [StrOptions({"float32", "float64"}), Options(type, {np.float32, np.float64}),
                  None],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "dropout": [Interval(Real, 0, 1, closed="left")],
    }

    # -- network -------------------------------------------------------------
    def _model_dtype(self, X_dtype, first_pass):
        """The precision of the model: ``dtype`` when given; else, as
        scikit-learn, X's (float32 or float64: validate_data made any other
        dtype float64) on a first fit, and the fitted model's afterwards (a
        model's dtype never changes silently under partial_fit/warm_start)."""
        if self.dtype is not None:
            return np.dtype(np.float64 if str(np.dtype(self.dtype)) == "float64" else np.float32)
        if not first_pass:
            fitted = np.asarray(self.coefs_[0]).dtype
            return fitted if fitted in (np.float32, np.float64) else np.dtype(np.float64)
        return np.dtype(np.float32 if X_dtype == np.float32 else np.float64)

    def _layer_activations(self):
        """The engine's activation of every layer of the fitted model."""
        hidden = HIDDEN_ACTIVATIONS[self.activation]
        return [hidden] * (self.n_layers_ - 2) + [OUTPUTS[self.out_activation_][0]]

    def _engine_loss(self):
        return OUTPUTS[self.out_activation_][1]

    def _new_network(self, layer_units, dtype, dropout=0.0, linear_output=False):
        acts = self._layer_activations()
        if linear_output:
            acts[-1] = "linear"
        layers = []
        for i, (n_in, n_out, act) in enumerate(zip(layer_units[:-1], layer_units[1:], acts)):
            kwargs = {}
            if dropout and i < len(acts) - 1:
                kwargs["dropout"] = dropout
            layers.append(Dense(n_in, n_out, activation=act, init="zeros", **kwargs))
        # The network's seed only drives dropout's masks: drawn from random_state
        # when there is dropout, so that without it the draws stay scikit-learn's.
        seed = int(self._random_state.randint(np.iinfo(np.int32).max)) if dropout else 0
        loss = "mse" if linear_output else self._engine_loss()      # (predict only)
        return Network(layers, loss=loss, dtype=dtype, seed=seed)

    def _check_dropout(self):
        if self.dropout and self.solver == "lbfgs":
            raise ValueError("dropout needs a stochastic solver ('sgd' or 'adam'), "
                             "got solver='lbfgs'")

    def _training_network(self, layer_units, dtype):
        """A Network over copies of coefs_/intercepts_ in ``dtype``; coefs_ and
        intercepts_ then are its (live) arrays, updated in place by training."""
        expected = [(a, b) for a, b in zip(layer_units[:-1], layer_units[1:])]
        got = [tuple(np.shape(W)) for W in self.coefs_]
        if got != expected:
            raise ValueError(f"the model has layers of shapes {got} but hidden_layer_sizes and "
                             f"the data ask for {expected}; warm_start and partial_fit need "
                             f"the same architecture and number of features/outputs")
        net = self._new_network(layer_units, dtype, self.dropout)
        for layer, W, b in zip(net.layers, self.coefs_, self.intercepts_):
            layer.W = W
            layer.b = b
        old = (list(self.coefs_), list(self.intercepts_))
        self.coefs_ = [layer.W for layer in net.layers]
        self.intercepts_ = [layer.b for layer in net.layers]
        # Best weights that were the live arrays (scikit-learn's coefs_ =
        # _best_coefs after early stopping) stay the live arrays.
        for name, was, now in (("_best_coefs", old[0], self.coefs_),
                               ("_best_intercepts", old[1], self.intercepts_)):
            best = getattr(self, name, None)
            if best is not None:
                setattr(self, name, [n if b is w else b for b, w, n in zip(best, was, now)])
        self._network = net
        return net

    def _inference_network(self, linear_output=False):
        """The network that runs predict: the one trained by fit when coefs_ and
        intercepts_ are still its arrays, else one built from them (not stored).
        ``linear_output``: one whose output layer gives the pre-activation."""
        net = self.__dict__.get("_network")
        coefs, intercepts = list(self.coefs_), list(self.intercepts_)
        if (not linear_output and net is not None
                and len(net.layers) == len(coefs) == len(intercepts)
                and all(l.W is W and l.b is b for l, W, b in zip(net.layers, coefs, intercepts))
                and [l.activation for l in net.layers] == self._layer_activations()):
            return net
        units = [np.shape(coefs[0])[0]] + [np.shape(W)[1] for W in coefs]
        dtype = np.asarray(coefs[0]).dtype
        net = self._new_network(units, dtype if dtype in (np.float32, np.float64) else np.float64,
                                linear_output=linear_output)
        for layer, W, b in zip(net.layers, coefs, intercepts):
            layer.W = W
            layer.b = b
        return net

    def _forward_pass_fast(self, X, check_input=True):
        """The output layer's values for X (probabilities, or predictions)."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                              dtype=(np.float64, np.float32))
        net = self._inference_network()
        # (the network's predict is the mean: exp(z) for the poisson loss)
        out = net.predict(_dense_float(X, net.dtype), n_threads=self.n_threads)
        return out.astype(X.dtype, copy=False)      # scikit-learn returns X's precision

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_network", None)       # rebuilt from coefs_ on load
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "coefs_" in state and "out_activation_" in state:
            try:
                self._network = self._inference_network()
                self.coefs_ = [l.W for l in self._network.layers]
                self.intercepts_ = [l.b for l in self._network.layers]
            except (ValueError, TypeError):
                pass

    # -- fit -----------------------------------------------------------------
    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        self.coefs_, self.intercepts_ = [], []
        for i in range(self.n_layers_ - 1):
            coef_init, intercept_init = self._init_coef(layer_units[i], layer_units[i + 1],
                                                        dtype)
            self.coefs_.append(coef_init)
            self.intercepts_.append(intercept_init)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        self.early_stopped_ = False
        self._dropout_epochs = 0
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _init_coef(self, fan_in, fan_out, dtype):
        """scikit-learn's Glorot-uniform draws, in its order, cast to ``dtype``."""
        factor = 6.0
        if self.activation == "logistic":
            factor = 2.0
        init_bound = np.sqrt(factor / (fan_in + fan_out))
        coef_init = self._random_state.uniform(-init_bound, init_bound, (fan_in, fan_out))
        intercept_init = self._random_state.uniform(-init_bound, init_bound, fan_out)
        return coef_init.astype(dtype, copy=False), intercept_init.astype(dtype, copy=False)

    def _fit(self, X, y, sample_weight=None, incremental=False, comm=None):
        from . import distributed
        comm = distributed.active(comm)
        if comm is not None and (self.solver not in _STOCHASTIC_SOLVERS or self.early_stopping):
            raise ValueError(f"fit(comm=...) trains with solver='sgd' or 'adam' without "
                             f"early_stopping; got solver={self.solver!r}, "
                             f"early_stopping={self.early_stopping}")
        self._comm = comm   # for _fit_stochastic and _validate_input, this call only
        try:
            if comm is None:
                return self._fit_local(X, y, sample_weight, incremental)
            with distributed.abort_on_error(comm):   # no rank left waiting
                return self._fit_local(X, y, sample_weight, incremental)
        finally:
            del self._comm

    def _fit_local(self, X, y, sample_weight, incremental):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        self._check_dropout()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        n_samples, n_features = X.shape
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [n_features] + hidden_layer_sizes + [self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        dtype = self._model_dtype(X.dtype, first_pass)
        if first_pass:
            self._initialize(y, layer_units, dtype)
        net = self._training_network(layer_units, dtype)
        X = _dense_float(X, net.dtype)
        n_threads = _config.get_num_threads(self.n_threads)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(net, X, y, sample_weight, incremental, n_threads)
        else:
            self._fit_lbfgs(net, X, y, sample_weight, n_threads)
        if not self._weights_are_finite():
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.")
        return self

    # -- the loss as scikit-learn reports it ------------------------------------
    def _epoch_loss(self, loss_sum, penalty_sum, n_done):
        """scikit-learn's loss_ of an epoch, from Network.fit's sums (the
        batches' mean losses once per row, penalty included): its squared
        error averages over the outputs, the penalty does not."""
        data = loss_sum - penalty_sum
        if self.out_activation_ == "identity":
            data /= self.n_outputs_
        return (data + penalty_sum) / n_done

    # -- stochastic solvers ----------------------------------------------------
    def _make_schedule(self):
        if self.solver == "sgd":
            return _SGDSchedule(self.learning_rate_init, self.learning_rate, self.momentum,
                                self.nesterovs_momentum, self.power_t)
        return _AdamSchedule(self.learning_rate_init, self.beta_1, self.beta_2, self.epsilon)

    def _validation_split(self, X, y, sample_weight, incremental):
        """scikit-learn's train/validation split (stratified for single-output
        classification; in partial_fit only when every class has 2 samples)."""
        should_stratify = is_classifier(self) and self.n_outputs_ == 1
        if should_stratify and incremental:
            _, counts = np.unique(y[:, 0], return_counts=True)
            should_stratify = counts.min() >= 2
        stratify = y if should_stratify else None
        if sample_weight is None:
            X_train, X_val, y_train, y_val = train_test_split(
                X, y, random_state=self._random_state, test_size=self.validation_fraction,
                stratify=stratify)
            sw_train = sw_val = None
        else:
            X_train, X_val, y_train, y_val, sw_train, sw_val = train_test_split(
                X, y, sample_weight, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=stratify)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        if is_classifier(self):
            y_val = self._label_binarizer.inverse_transform(y_val)
        return X_train, y_train, sw_train, X_val, y_val, sw_val

    def _fit_stochastic(self, net, X, y, sample_weight, incremental, n_threads):
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = self._make_schedule()
        early_stopping = self.early_stopping
        if early_stopping:
            X_train, y_train, sw_train, X_val, y_val, sw_val = self._validation_split(
                X, y, sample_weight, incremental)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            X_val = y_val = sw_val = None
        X_train = np.ascontiguousarray(X_train)
        if sw_train is not None:
            sw_train = np.ascontiguousarray(sw_train, dtype=np.float64)
        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            # per rank under MPI (Network.fit clips it to each rank's rows)
            batch_size = 200 if self._comm is not None else min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        self.early_stopped_ = False
        self.n_iter_ = 0
        epochs = _ScikitLearnEpochs(self, self._optimizer, (X_val, y_val, sw_val), incremental)
        sample_idx = np.arange(n_samples, dtype=np.int64)

        def order():
            # sklearn.utils.shuffle(sample_idx, random_state) without its checks
            # (300 us per epoch): the same draw, the same (compounded) order
            nonlocal sample_idx
            if not self.shuffle:
                return None
            idx = np.arange(n_samples)
            self._random_state.shuffle(idx)
            sample_idx = sample_idx[idx]
            return sample_idx

        net._penalty_per_weight_sum = True      # l2 is scikit-learn's alpha
        # new dropout masks each epoch, also across fit/partial_fit calls
        net._epochs_trained = getattr(self, "_dropout_epochs", 0)
        try:
            history = net._fit(
                X_train, y_train, epochs=1 if incremental else self.max_iter,
                batch_size=batch_size, optimizer=self._optimizer.optimizer, n_threads=n_threads,
                callbacks=[epochs], sample_weight=sw_train, l2=float(self.alpha), order=order,
                epoch_loss=self._epoch_loss, X_is_finite=True,
                # with early stopping a non-finite loss does not end training (as
                # in scikit-learn): the validation score is then nan
                on_not_finite="continue" if early_stopping else "raise", comm=self._comm)
        except FloatingPointError:
            raise ValueError("Solver produced non-finite parameter weights. The input data may"
                             " contain large values and need to be preprocessed.") from None
        finally:
            self._dropout_epochs = net._epochs_trained
        if history.interrupted:
            warnings.warn("Training interrupted by user.")
        if early_stopping and not incremental:
            self._restore_best()
        elif early_stopping and self.early_stopped_:
            # partial_fit's early stopping (fastnn's): best weights back, and
            # counting starts again for the calls that may follow
            self._restore_best()
            self._no_improvement_count = 0
        elif early_stopping and not self._weights_are_finite():
            self._restore_best()        # partial_fit: never leave NaN weights behind
        if epochs.diverged_at:
            warnings.warn(f"The loss became NaN or infinite in iteration {epochs.diverged_at}; "
                          f"the weights of the best validation score were restored. Try a smaller "
                          f"learning_rate_init, or scale the data.", ConvergenceWarning)

    def _weights_are_finite(self):
        return all(all_finite(w) for w in self.coefs_ + self.intercepts_)

    def _restore_best(self):
        """The best weights back into the live arrays (kept shared with
        _best_coefs afterwards, as scikit-learn's ``coefs_ = _best_coefs``)."""
        for live, best in zip(self.coefs_ + self.intercepts_,
                              self._best_coefs + self._best_intercepts):
            live[...] = best
        self._best_coefs = self.coefs_
        self._best_intercepts = self.intercepts_

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            val_score = self._score(X, y, sample_weight=sample_weight)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            # a nan score (non-finite predictions) is no improvement (scikit-learn's
            # comparison would reset the count and train max_iter epochs on NaN)
            if not last_valid_score >= (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    # -- lbfgs -----------------------------------------------------------------
    def _fit_lbfgs(self, net, X, y, sample_weight, n_threads):
        n_samples = X.shape[0]
        sw = None if sample_weight is None else np.ascontiguousarray(sample_weight, np.float64)
        sw_sum = n_samples if sw is None else sw.sum()
        # The loss and gradient of the data, from the engine; the penalty is
        # added here in float64 (the engine's would be in the model's dtype):
        # loss += alpha/2 |W|^2 / sw_sum, grad += alpha W / sw_sum.
        data_loss_and_gradients = net._loss_and_gradients(X, y, n_threads, sw, X_is_finite=True)
        params = self.coefs_ + self.intercepts_
        sizes = [p.size for p in params]
        bounds = np.cumsum([0] + sizes)
        n_coefs = len(self.coefs_)

        def loss_grad(packed):
            for p, a, b in zip(params, bounds[:-1], bounds[1:]):
                p[...] = packed[a:b].reshape(p.shape)
            loss, grads = data_loss_and_gradients()
            loss = self._epoch_loss(loss, 0.0, 1)      # as scikit-learn reports it
            grad = np.empty(bounds[-1])
            sq = 0.0
            for i, (g, a, b) in enumerate(zip([dW for dW, _ in grads] + [db for _, db in grads],
                                              bounds[:-1], bounds[1:])):
                g = g.astype(np.float64).ravel()
                if i < n_coefs:
                    w = packed[a:b]
                    sq += w @ w
                    g = g + self.alpha * w / sw_sum
                grad[a:b] = g
            loss += 0.5 * self.alpha * sq / sw_sum
            if not (np.isfinite(loss) and np.isfinite(grad).all()):
                # A trial point beyond what the model's dtype represents (in
                # float32, exp(z) overflows from z = 89 on).
                return np.inf, np.zeros_like(grad)
            return loss, grad

        # L-BFGS-B reports "converged" on the relative reduction of the loss
        # also when its last line search found no lower loss at all (the
        # reduction is exactly zero): after a trial point with an infinite loss
        # (the step is shrunk to nothing), or where the loss's rounding (about
        # 1e-7 of it in float32) is larger than what the step would gain.
        # Such a stop with the gradient above tol is no convergence: start
        # again from there with a fresh memory (its first step is a short one
        # along the gradient) while that lowers the loss, within max_iter and
        # max_fun; if it still ends so, say so with a ConvergenceWarning.
        iprint = 1 if self.verbose is True or self.verbose >= 1 else -1
        x0 = _pack(self.coefs_, self.intercepts_)
        n_iter = n_fun = 0
        f0 = np.inf
        for restart in range(_LBFGS_RESTARTS + 1):
            fs = [f0]                   # the loss at each iteration's end
            opt_res = scipy.optimize.minimize(
                loss_grad, x0, method="L-BFGS-B", jac=True,
                callback=lambda intermediate_result: fs.append(intermediate_result.fun),
                options={"maxfun": self.max_fun - n_fun, "maxiter": self.max_iter - n_iter,
                         "gtol": self.tol,
                         **_get_additional_lbfgs_options_dict("iprint", iprint)})
            n_iter += opt_res.nit
            n_fun += opt_res.nfev
            stalled = (opt_res.status == 0 and len(fs) >= 2 and fs[-1] == fs[-2]
                       and np.abs(opt_res.jac).max() > self.tol)
            if (not stalled or not opt_res.fun < f0 or n_iter >= self.max_iter
                    or n_fun >= self.max_fun):
                break
            x0, f0 = opt_res.x, opt_res.fun
        if stalled:
            warnings.warn(
                f"lbfgs stopped after {n_iter} iteration(s): no lower loss along its search "
                f"direction, with the gradient still at {np.abs(opt_res.jac).max():.3g} > "
                f"tol={self.tol}." + (
                    " In float32 the rounding of the loss hides smaller gains: fit with "
                    "dtype='float64' (or float64 X) for a tighter optimum."
                    if net.dtype == np.float32 else ""), ConvergenceWarning)
        opt_res.nit = n_iter
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        for p, a, b in zip(params, bounds[:-1], bounds[1:]):
            p[...] = opt_res.x[a:b].reshape(p.shape)

    # -- scikit-learn plumbing ---------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, comm=None):
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_features)
            The input data (sparse input is converted to a dense array).
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in
            regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Sample weights.
        comm : mpi4py communicator, default=None
            Data-parallel training over MPI, as ``Network.fit(comm=...)``:
            every rank calls ``fit`` with the same parameters and its own
            rows; ``batch_size`` is per rank ("auto": 200), the classes are
            those of all ranks' ``y``, and ``n_iter_``, ``t_`` and
            ``loss_curve_`` count all ranks' rows.  Solvers "sgd" and
            "adam" without ``early_stopping`` only.  See
            docs/several-machines.md.

        Returns
        -------
        self : object
            Returns a trained MLP model.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False, comm=comm)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic"
                                 " optimizers. %s is not stochastic." % self.solver)
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_COMMON_DOC = """
    hidden_layer_sizes : array-like of shape(n_layers - 2,), default=(100,)
        The ith element represents the number of neurons in the ith hidden layer.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation function for the hidden layer.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        The solver for weight optimization: 'lbfgs' (scipy's L-BFGS-B on
        fastnn's loss and gradient), 'sgd' or 'adam' (fastnn's engine).
    alpha : float, default=0.0001
        Strength of the L2 regularization term, divided by the sample size (the
        sum of the sample weights) when added to the loss.
    batch_size : int, default='auto'
        Size of minibatches for stochastic optimizers; "auto" is
        ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning rate schedule for weight updates (solver='sgd' only):
        'invscaling' is ``learning_rate_init / pow(t, power_t)`` with t the
        samples seen; 'adaptive' divides the rate by 5 each time
        ``n_iter_no_change`` consecutive epochs fail to improve by ``tol``.
    learning_rate_init : float, default=0.001
        The initial learning rate (solver='sgd' or 'adam').
    power_t : float, default=0.5
        The exponent for inverse scaling learning rate.
    max_iter : int, default=200
        Maximum number of iterations: epochs for 'sgd' and 'adam', iterations
        for 'lbfgs'.
    shuffle : bool, default=True
        Whether to shuffle samples in each iteration (solver='sgd' or 'adam').
    random_state : int, RandomState instance, default=None
        Determines the weight and bias initialization, the train-validation
        split of early stopping, and the batch sampling.
    tol : float, default=1e-4
        Tolerance for the optimization: training stops when the loss or score
        does not improve by at least ``tol`` for ``n_iter_no_change``
        consecutive iterations (unless learning_rate='adaptive').
    verbose : bool, default=False
        Whether to print progress messages to stdout ("Iteration N, loss = ...").
    warm_start : bool, default=False
        Reuse the solution of the previous call to fit as initialization.
    momentum : float, default=0.9
        Momentum for gradient descent update, in [0, 1] (solver='sgd').
    nesterovs_momentum : bool, default=True
        Whether to use Nesterov's momentum (solver='sgd', momentum > 0).
    early_stopping : bool, default=False
        Set aside ``validation_fraction`` of the training data and stop when
        the validation score does not improve by at least ``tol`` for
        ``n_iter_no_change`` consecutive epochs; the best weights are kept.
        Also works with partial_fit (see the module docstring).
    validation_fraction : float, default=0.1
        The proportion of training data set aside for early stopping.
    beta_1 : float, default=0.9
        Exponential decay rate of the first moment estimates in adam, in [0, 1).
    beta_2 : float, default=0.999
        Exponential decay rate of the second moment estimates in adam, in [0, 1).
    epsilon : float, default=1e-8
        Value for numerical stability in adam.
    n_iter_no_change : int, default=10
        Maximum number of epochs to not meet ``tol`` improvement.
    max_fun : int, default=15000
        Maximum number of loss function calls (solver='lbfgs').
    dtype : {'float32', 'float64'} or None, default=None
        fastnn: the precision of the weights and of every computation.  None:
        X's, as scikit-learn (float32 X: float32; float64 or any other dtype:
        float64), decided by the first fit and kept by partial_fit/warm_start.
    n_threads : int, default=None
        fastnn: threads of the engine (None: fastnn.get_num_threads()).
    dropout : float in [0, 1), default=0
        fastnn: dropout rate on the hidden layers' outputs during training.
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        The current loss computed with the loss function.
    best_loss_ : float or None
        The minimum loss reached by the solver throughout fitting (None with
        early_stopping=True: see best_validation_score_).
    loss_curve_ : list of shape (n_iter_,)
        The loss at the end of each epoch (solver='sgd' or 'adam').
    validation_scores_ : list of shape (n_iter_,) or None
        The score on the held-out validation set at each epoch (early_stopping).
    best_validation_score_ : float or None
        The best validation score (early_stopping).
    early_stopped_ : bool
        fastnn: True when the last fit or partial_fit stopped on the
        tol/n_iter_no_change criterion.
    t_ : int
        The number of training samples seen by the solver during fitting.
    coefs_ : list of shape (n_layers - 1,)
        coefs_[i] is the weight matrix of layer i, shape (n_in, n_out), in
        the model's dtype.
    intercepts_ : list of shape (n_layers - 1,)
        intercepts_[i] is the bias vector of layer i + 1.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when X has feature names that are all strings.
    n_iter_ : int
        The number of iterations the solver has run.
    n_layers_ : int
    n_outputs_ : int
    out_activation_ : str
        Name of the output activation function.
"""


class MLPClassifier(ClassifierMixin, BaseMultilayerPerceptron):
    __doc__ = f"""Multi-layer Perceptron classifier (scikit-learn's, on fastnn's engine).

    Optimizes the log-loss with LBFGS or stochastic gradient descent; softmax
    output for multi-class targets, logistic outputs for binary and
    multilabel ones.  See the module docstring for what runs where and
    where it differs from scikit-learn, by design.

    Parameters
    ----------{_COMMON_DOC}
    Attributes
    ----------
    classes_ : ndarray or list of ndarray of shape (n_classes,)
        Class labels for each output.{_ATTRIBUTES_DOC}"""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, dropout=0.0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.dropout = dropout

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            comm = getattr(self, "_comm", None)
            if comm is not None and y.ndim == 1:   # the classes of every rank's rows
                self._label_binarizer.fit(np.concatenate(comm.allgather(unique_labels(y))))
            else:
                self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, `y` has "
                        f"{classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predict using the multi-layer perceptron classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray, shape (n_samples,) or (n_samples, n_classes)
            The predicted classes.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array of shape (n_classes,), default=None
            Classes across all calls to partial_fit; required on the first call.

        Returns
        -------
        self : object
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """The log of the probability estimates.

        ``log(predict_proba(X))`` where the probability is a normal number of
        the model's dtype; where it underflows (below about 1e-38 in float32,
        1e-308 in float64, where log would give -inf or lose its digits), the
        log-softmax (``z - logsumexp(z)``, or the log-sigmoid for binary and
        multilabel outputs) of the output layer's pre-activation z: always
        finite, with no divide-by-zero warning.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        log_y_prob : ndarray of shape (n_samples, n_classes)
            The log-probability of each class, classes as in ``classes_``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False,
                          dtype=(np.float64, np.float32))
        y_prob = self._probabilities(self._forward_pass_fast(X, check_input=False))
        underflow = y_prob < np.finfo(y_prob.dtype).tiny   # y_prob: the model's dtype
        if not underflow.any():
            return np.log(y_prob, out=y_prob)
        # only then the pre-activations, from a network with a linear output
        net = self._inference_network(linear_output=True)
        Z = net.predict(_dense_float(X, net.dtype), n_threads=self.n_threads)
        if self.out_activation_ == "softmax":
            log_prob = scipy.special.log_softmax(Z, axis=1)
        elif self.n_outputs_ == 1:
            log_prob = np.hstack([scipy.special.log_expit(-Z), scipy.special.log_expit(Z)])
        else:
            log_prob = scipy.special.log_expit(Z)
        log_prob = log_prob.astype(y_prob.dtype, copy=False)
        np.log(y_prob, out=log_prob, where=~underflow)
        return log_prob

    def _probabilities(self, y_pred):
        """predict_proba's array from the output layer's values."""
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def predict_proba(self, X):
        """Probability estimates, shape (n_samples, n_classes), classes as in classes_."""
        check_is_fitted(self)
        return self._probabilities(self._forward_pass_fast(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, BaseMultilayerPerceptron):
    __doc__ = f"""Multi-layer Perceptron regressor (scikit-learn's, on fastnn's engine).

    Optimizes the squared error (or the Poisson deviance) with LBFGS or
    stochastic gradient descent.  See the module docstring for what runs where and
    where it differs from scikit-learn, by design.

    Parameters
    ----------
    loss : {{'squared_error', 'poisson'}}, default='squared_error'
        The loss: half the squared error, or half the Poisson deviance with a
        log link (exponential output; y must be >= 0).{_COMMON_DOC}
    Attributes
    ----------{_ATTRIBUTES_DOC}"""

    _parameter_constraints: dict = {
        **BaseMultilayerPerceptron._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dtype=None, n_threads=None, dropout=0.0):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.n_threads = n_threads
        self.dropout = dropout

    def predict(self, X):
        """Predict using the multi-layer perceptron model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predicted values.
        """
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    # As scikit-learn's MLPRegressor, partial_fit exists for every solver (with
    # lbfgs it runs an lbfgs fit from the current weights).
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Update the model with a single iteration over the given data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)
