"""fastnn: fast fully-connected neural networks on the CPU.

    import fastnn as fn
    net = fn.Network([fn.Dense(64, 32, activation="relu"),
                      fn.Dense(32, 10, activation="softmax")],
                     loss="cross_entropy", seed=0)
    net.fit(X, y, epochs=10, batch_size=32, optimizer=fn.SGD(lr=0.1))
"""
__version__ = "0.1.0"

from ._config import (get_kernel, get_num_threads, set_kernel, set_num_threads,
                      show_config)
from . import callbacks, schedules
from .callbacks import Callback, EarlyStopping, LambdaCallback
from .io import load
from .layers import Dense
from .network import History, Network
from .optimizers import SGD, Adam, AdamW, Optimizer, RMSprop, RProp
from .schedules import (AdaptiveLR, ConstantLR, CosineAnnealing, ExponentialDecay,
                        InverseScaling, LambdaLR, LRSchedule, ReduceLROnPlateau, StepDecay)

__all__ = ["Network", "Dense", "History", "SGD", "Adam", "AdamW", "RMSprop", "RProp",
           "Optimizer", "load",
           "Callback", "EarlyStopping", "LambdaCallback",
           "LRSchedule", "ConstantLR", "StepDecay", "ExponentialDecay", "CosineAnnealing",
           "InverseScaling", "AdaptiveLR", "ReduceLROnPlateau", "LambdaLR",
           "show_config", "set_num_threads", "get_num_threads", "set_kernel", "get_kernel"]
