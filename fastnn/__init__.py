"""fastnn: fast fully-connected neural networks on the CPU.

    import fastnn as fn
    net = fn.Network([fn.Dense(64, 32, activation="relu"),
                      fn.Dense(32, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=10, batch_size=32, optimizer=fn.SGD(lr=0.1))
"""
__version__ = "0.1.0"


def _check_engine():
    """Import the compiled engine, or say why it is missing and what to do."""
    try:
        from . import _engine   # noqa: F401
    except ImportError:
        import os
        here = os.path.dirname(os.path.abspath(__file__))
        built = [f for f in os.listdir(here) if f.startswith("_engine.")
                 and f.endswith((".so", ".pyd"))]
        if built or not os.path.exists(os.path.join(here, "_engine.pyx")):
            raise
        # As numpy does from its source tree: the folder holding fastnn/ is
        # first on sys.path (the current directory), ahead of the installed one.
        raise ImportError(
            f"fastnn's compiled engine is not in {here}: Python is importing fastnn "
            f"from its source tree (the current directory, or PYTHONPATH), not the "
            f"installed package. Leave the source tree (cd to another directory) to use "
            f"the installed fastnn, or build the engine in place for development with: "
            f"pip install -e .") from None


_check_engine()
del _check_engine

from ._config import (get_kernel, get_num_threads, set_kernel, set_num_threads,
                      show_config)
from . import callbacks, datasets, export, initializers, metrics, schedules
from .callbacks import Callback, EarlyStopping, LambdaCallback
from .io import load
from .importers import from_sklearn, from_torch
from .layers import Dense
from .history import History
from .network import Network
from . import optimizers as _optimizers
from .optimizers import *  # noqa: F401,F403 - every optimizer (optimizers.__all__)
from .schedules import (AdaptiveLR, ConstantLR, CosineAnnealing, ExponentialDecay,
                        InverseScaling, LambdaLR, LRSchedule, ReduceLROnPlateau, StepDecay)

__all__ = ["Network", "Dense", "History", *_optimizers.__all__, "load", "from_sklearn", "from_torch",
           "Callback", "EarlyStopping", "LambdaCallback",
           "LRSchedule", "ConstantLR", "StepDecay", "ExponentialDecay", "CosineAnnealing",
           "InverseScaling", "AdaptiveLR", "ReduceLROnPlateau", "LambdaLR",
           "show_config", "set_num_threads", "get_num_threads", "set_kernel", "get_kernel"]

# The scikit-learn estimators load on first use, so that ``import fastnn``
# does not need scikit-learn (pip install "fastnn[sklearn]" for them).
_SKLEARN_ESTIMATORS = {"MLPClassifier": "estimators", "MLPRegressor": "estimators",
                       "Perceptron": "perceptron"}


def __getattr__(name):
    module_name = _SKLEARN_ESTIMATORS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fastnn' has no attribute {name!r}")
    import importlib
    try:
        module = importlib.import_module(f".{module_name}", __name__)
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "sklearn":
            raise ImportError(f"fastnn.{name} needs scikit-learn: "
                              f"pip install 'fastnn[sklearn]'") from exc
        raise
    return getattr(module, name)


def __dir__():
    return sorted(set(globals()) | set(_SKLEARN_ESTIMATORS))
