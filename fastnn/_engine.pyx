# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The training and inference engine.

Design
------
Python validates everything once and builds a ``Trainer`` per ``fit``: it
allocates the whole workspace (batch inputs, every layer's output and delta,
gradient and optimizer buffers, per-thread GEMM scratch) and fills a C array
of ``Layer`` descriptors with raw pointers.  ``run_epoch`` then releases the
GIL and runs every minibatch of the epoch without returning to Python.

Every matrix product is one call per tile of ``fnn_gemm_s/d`` (csrc/), which
applies the fused epilogue: ``f(acc + b)`` forward, ``acc * f'(Y)`` for the
hidden deltas, and ``W += -lr * acc`` for plain SGD.

One extension module, its source split by concern into the ``_engine_*.pxi``
files included below (in this order; each opens with its own design notes):

- ``_engine_decl.pxi``: the C declarations, the engine's limits (named once),
  the loss and optimizer codes and the structs every piece shares;
- ``_engine_team.pxi``: tiles, the thread team, signals, per-thread scratch;
- ``_engine_noise.pxi``: counter-based random numbers (dropout, input noise);
- ``_engine_optim.pxi``: the weight penalty and the optimizers' fused update;
- ``_engine_loss.pxi``: per-sample losses and output deltas;
- ``_engine_step.pxi``: one training step (forward, backward, the epoch loop);
- ``_engine_threads.pxi``: one thread or the team, slice by slice of a run,
  timed (a busy core makes a team slower than one thread);
- ``_engine_epochs.pxi``: many epochs in one call (the orders' draw, the undo
  copy and the checks between epochs, in C);
- ``_engine_trainer.pxi``: ``Trainer``, the workspace of one fit, ``run_epoch``;
- ``_engine_infer.pxi``: inference (``forward``);
- ``_engine_serve.pxi``: ``predict`` of a few rows in one C call (serving);
- ``_engine_update.pxi``: one optimizer update as a call (data-parallel steps);
- ``_engine_testing.pxi``: entry points for the tests.
"""
import threading
import warnings

import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel
from libc.math cimport exp, expf, log, sqrt, pow, isfinite, fabs, cos, sin, M_PI
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free, getenv

include "_engine_decl.pxi"
include "_engine_team.pxi"
include "_engine_noise.pxi"
include "_engine_optim.pxi"
include "_engine_loss.pxi"
include "_engine_step.pxi"
include "_engine_threads.pxi"
include "_engine_epochs.pxi"
include "_engine_trainer.pxi"
include "_engine_infer.pxi"
include "_engine_serve.pxi"
include "_engine_update.pxi"
include "_engine_testing.pxi"
