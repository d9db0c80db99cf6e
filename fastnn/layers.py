"""Dense: a fully-connected layer, A = f(X @ W + b)."""
import numbers

import numpy as np

from . import _engine, activations, initializers
from ._validation import check_finite


class Dense:
    """A fully-connected layer computing ``f(X @ W + b)``.

    Parameters
    ----------
    n_in, n_out : int
        Number of inputs and of neurons.
    activation : str, default "linear"
        One of fastnn.activations.CODES (or an alias such as "logistic").
        "softmax" is only allowed on the last layer.
    use_bias : bool, default True
    init : str or callable, default "glorot_uniform"
        Weight initialiser (see fastnn.initializers).
    bias_init : str or callable, default "zeros"
        Bias initialiser, called as ``bias_init(rng, 1, n_out)`` (a fan-in
        of 1) right after the weights are drawn.  FANN draws its biases with
        the weights (``fann_randomize_weights``): ``init=Uniform(0.1),
        bias_init=Uniform(0.1)`` is its benchmark's ±0.1.  The default draws
        nothing, so the weights of a seed do not change.
    alpha : float, optional
        Negative slope of leaky_relu (default 0.01) or alpha of elu (default 1).
    dropout : float in [0, 1), default 0.0
        Inverted dropout on this layer's output while training (``fit``):
        each output is zeroed with probability ``dropout`` and the others
        are scaled by ``1 / (1 - dropout)``, so nothing changes at
        prediction time (``predict``, ``forward``, ``evaluate`` and
        ``gradients`` never drop).  The masks are drawn from the network's
        seed, the epoch and the sample, whatever the threads or batches.
        Not allowed on a network's output layer.
    steepness : float > 0, default 1.0
        FANN's activation steepness s: the layer computes ``f(s * (X @ W +
        b))`` (and trains with f' times s).  FANN's sigmoid with steepness s
        is ``activation="sigmoid", steepness=2 * s`` (FANN's default 0.5 is
        the plain logistic, fastnn's 1); FANN's symmetric sigmoid is
        ``activation="tanh"`` (alias "sigmoid_symmetric") with the same s.
        1 costs nothing.
    flat_spot : float in [0, 0.5), default 0.0
        Flat-spot elimination while training a saturating activation (sigmoid,
        tanh): f' is taken from the output clipped to ``flat_spot`` of its
        range from either end, so a saturated unit still learns.  FANN's
        training always does it with 0.01: ``y`` in [0.01, 0.99] for the
        sigmoid, [-0.98, 0.98] for tanh.  Only the gradients change (not
        ``predict``); 0 (off) costs nothing.

    Attributes
    ----------
    W : ndarray (n_in, n_out), writable, of the network's dtype
        The array the engine trains: in-place writes and assignments
        (``layer.W = np.clip(layer.W, -1, 1)``, copied into it) both reach
        training, also from a callback during ``fit``.
    b : ndarray (n_out,), writable, or None without bias
    """

    def __init__(self, n_in, n_out, activation="linear", use_bias=True,
                 init="glorot_uniform", alpha=None, dropout=0.0, bias_init="zeros",
                 steepness=1.0, flat_spot=0.0):
        for value, name in ((n_in, "n_in"), (n_out, "n_out")):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"Dense: {name} must be a positive integer, got {value!r}")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.activation = activations.canonical_name(activation)
        self.use_bias = bool(use_bias)
        self.init = init
        self._init = initializers.get(init)
        self.bias_init = bias_init
        self._bias_init = initializers.get(bias_init)
        if alpha is None:
            alpha = activations.DEFAULT_ALPHA.get(self.activation, 0.0)
        if not isinstance(alpha, numbers.Real) or not np.isfinite(alpha):
            raise ValueError(f"Dense: alpha must be a finite number, got {alpha!r}")
        self.alpha = float(alpha)
        if (isinstance(dropout, (bool, np.bool_)) or not isinstance(dropout, numbers.Real)
                or not 0 <= dropout < 1):
            raise ValueError(f"Dense: dropout must be a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if (isinstance(steepness, (bool, np.bool_)) or not isinstance(steepness, numbers.Real)
                or not (np.isfinite(steepness) and steepness > 0)):
            raise ValueError(f"Dense: steepness must be a finite number > 0, got {steepness!r}")
        self.steepness = float(steepness)
        if (isinstance(flat_spot, (bool, np.bool_)) or not isinstance(flat_spot, numbers.Real)
                or not 0 <= flat_spot < 0.5):
            raise ValueError(f"Dense: flat_spot must be a number in [0, 0.5), got {flat_spot!r}")
        if flat_spot and activations.get(self.activation).output_range is None:
            saturating = sorted(n for n, a in activations.REGISTRY.items() if a.output_range)
            raise ValueError(f"Dense: flat_spot applies to the saturating activations "
                             f"{saturating}, got activation={self.activation!r}")
        self.flat_spot = float(flat_spot)
        self._W = None
        self._b = None

    def build(self, dtype, rng):
        """Allocate and initialise W and b in ``dtype`` (done by Network)."""
        W = np.asarray(self._init(rng, self.n_in, self.n_out))
        if W.shape != (self.n_in, self.n_out):
            raise ValueError(f"Dense: init returned shape {W.shape}, expected "
                             f"{(self.n_in, self.n_out)}")
        # its own writable buffer, on a cache line (see _engine.empty_aligned)
        self._W = _engine.aligned_array(W.shape, dtype, W)
        self._b = None
        if self.use_bias:
            b = np.asarray(self._bias_init(rng, 1, self.n_out))
            if b.shape not in ((1, self.n_out), (self.n_out,)):
                raise ValueError(f"Dense: bias_init returned shape {b.shape}, expected "
                                 f"{(1, self.n_out)}")
            self._b = _engine.aligned_array(self.n_out, dtype, b.reshape(self.n_out))

    def __setstate__(self, state):
        # A copy or an unpickled layer gets its arrays back aligned.
        self.__dict__.update(state)
        for name in ("_W", "_b"):
            arr = state.get(name)
            if arr is not None:
                setattr(self, name, _engine.aligned_array(arr.shape, arr.dtype, arr))

    def _assign(self, name, value):
        """Copy ``value`` into the layer's own array ``name``, in place.

        The engine (and any reference to ``layer.W``) holds that array, so an
        assignment - also in a callback while ``fit`` runs - changes the
        parameters that train, never a detached copy.  Values are converted
        to the network's dtype, which never changes."""
        live = getattr(self, "_" + name)
        if live is None:    # (a layer without bias: the b setter says so first)
            raise ValueError(f"Dense.{name} can be set once the layer is part of a Network "
                             f"(which gives it its dtype)")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"Dense.{name} must hold real numbers, got an array of dtype "
                            f"{arr.dtype}")
        if arr.shape != live.shape:
            raise ValueError(f"Dense.{name} must have shape {live.shape}, got {arr.shape}")
        converted = arr
        if arr.dtype != live.dtype:
            with np.errstate(over="ignore"):
                converted = arr.astype(live.dtype)   # float64 beyond float32's range: inf
        check_finite(converted, arr, f"Dense.{name}")
        np.copyto(live, converted)

    @property
    def W(self):
        """The weights, ``(n_in, n_out)``: the array the engine trains.

        Write it in place (``layer.W[...] = ...``, ``np.clip(layer.W, -c, c,
        out=layer.W)``) or assign to it (``layer.W = np.clip(layer.W, -c,
        c)``): both change the network, also from a callback during
        ``fit``.  An assignment copies the values into the existing array
        (converted to the network's dtype), so references to ``layer.W``
        see them; the shape must be ``(n_in, n_out)`` and the values finite.
        """
        return self._W

    @W.setter
    def W(self, value):
        self._assign("W", value)

    @property
    def b(self):
        """The biases, ``(n_out,)``, or None without bias; assigned like ``W``."""
        return self._b

    @b.setter
    def b(self, value):
        if not self.use_bias:
            raise ValueError("Dense.b cannot be set on a layer built with use_bias=False")
        self._assign("b", value)

    @property
    def activation_code(self):
        """What the engine reads: (code, alpha, steepness, flat-spot bounds lo, hi).
        Kept until one of the settings it comes from is assigned (see
        __setattr__): a registry lookup per layer would be a third of a small
        network's predict."""
        code = self.__dict__.get("_activation_code")
        if code is None:
            entry = activations.get(self.activation)
            lo, hi = entry.flat_spot_bounds(self.flat_spot) or (0.0, 0.0)
            code = self._activation_code = (entry.code, self.alpha, self.steepness, lo, hi)
        return code

    _CODE_SETTINGS = frozenset(("activation", "alpha", "steepness", "flat_spot"))

    def __setattr__(self, name, value):
        if name in Dense._CODE_SETTINGS:
            self.__dict__.pop("_activation_code", None)
        object.__setattr__(self, name, value)

    def get_config(self):
        return {"n_in": self.n_in, "n_out": self.n_out, "activation": self.activation,
                "use_bias": self.use_bias, "alpha": self.alpha, "dropout": self.dropout,
                "steepness": self.steepness, "flat_spot": self.flat_spot}

    def __repr__(self):
        extra = "" if self.use_bias else ", use_bias=False"
        if self.dropout:
            extra += f", dropout={self.dropout}"
        if self.steepness != 1:
            extra += f", steepness={self.steepness}"
        if self.flat_spot:
            extra += f", flat_spot={self.flat_spot}"
        return f"Dense({self.n_in}, {self.n_out}, activation={self.activation!r}{extra})"
