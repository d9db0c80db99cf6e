# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The training and inference engine.

Design
------
Python validates everything once and builds a ``Trainer`` per ``fit``: it
allocates the whole workspace (batch inputs, every layer's output and delta,
gradient and optimizer buffers, per-thread GEMM scratch) and fills a C array
of ``Layer`` descriptors with raw pointers.  ``run_epoch`` then releases the
GIL and runs every minibatch of the epoch without returning to Python.

Threads: one OpenMP team per epoch.  Every stage of a step (gather, forward
per layer, loss, backward, update) is split into a fixed list of tasks that
depends on the shapes only, never on the number of threads; thread ``tid``
takes tasks ``tid, tid + nt, ...`` and an orphaned barrier separates the
stages.  A task always does the same arithmetic in the same order whoever
runs it, so results are bit-identical for any ``n_threads``.

Every matrix product is one call per tile of ``fnn_gemm_s/d`` (csrc/), which
applies the fused epilogue: ``f(acc + b)`` forward, ``acc * f'(Y)`` for the
hidden deltas, and ``W += -lr * acc`` for plain SGD.

Regularisation and weighting run inside the same passes: per-sample weights
scale the output deltas (normalised by the batch's weight sum, as
scikit-learn's MLP does), and the L2/L1 penalty of the weights is added to
their gradient in the optimizer's pass over each tile (for plain SGD, which
has no gradient buffer, as a shrink of the tile before its GEMM), which also
sums the penalty of the old weights for the reported loss.

Signals: thread 0 of a team runs in the caller's thread, and when that is
Python's main thread it runs the signal handlers (``PyErr_CheckSignals``)
at most every POLL_SECONDS.  When a handler raised, its exception stays set
in the caller's thread, the team stops (inference and ``gradients`` at the
next tile or chunk, training after the batch in progress, so the model is as
at the last finished batch) and the call raises it.  ``fit`` turns a
KeyboardInterrupt into a normal return (``run_epoch``'s "interrupted").

Training noise (dropout masks, input noise) comes from a counter-based
generator: a 64-bit hash (splitmix64's finaliser) of (seed, epoch, stream,
sample index, unit), so a sample's mask depends neither on the thread count
nor on where the sample falls in the batches, and the backward pass
recomputes exactly the mask of the forward pass instead of storing it.
"""
import threading
import warnings

import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel
from libc.math cimport exp, log, sqrt, pow, isfinite, fabs, cos, sin, M_PI
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free

cdef extern from "Python.h":
    # Declared without "except -1": called without the GIL's caller being able
    # to raise; a handler's exception stays set and raise_pending() raises it
    # once the team has stopped.
    int PyErr_CheckSignals()
    void *PyCapsule_GetPointer(object capsule, const char *name) except? NULL
    const char *PyCapsule_GetName(object capsule) except? NULL

cnp.import_array()

cdef extern from "fnn_gemm.h" nogil:
    enum:
        FNN_KERNEL_BLAS
        FNN_KERNEL_GENERIC
        FNN_KERNEL_AVX2
        FNN_KERNEL_AVX512
        FNN_ACT_LINEAR
        FNN_ACT_SOFTMAX
        FNN_EPI_STORE
        FNN_EPI_BIAS_ACT
        FNN_EPI_DERIV
    ctypedef struct fnn_epilogue:
        int kind
        int act
        double act_param
        double alpha
        double beta
        const void *bias
        const void *Y
        Py_ssize_t ldy
    ctypedef void (*fnn_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                                  float *, int *, float *, float *, int *)
    ctypedef void (*fnn_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                                  double *, int *, double *, double *, int *)
    void fnn_gemm_s(int kernel, int trans_a, int trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                    const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
                    float *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)
    void fnn_gemm_d(int kernel, int trans_a, int trans_b, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                    const double *A, Py_ssize_t lda, const double *B, Py_ssize_t ldb,
                    double *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)
    size_t fnn_gemm_work_bytes(int kernel, size_t elem_size)
    void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
    int fnn_kernel_available(int kernel)

# Pre-packed weights for inference (fnn_gemm.h: "Pre-packed B").
cdef extern from "fnn_gemm.h" nogil:
    size_t fnn_gemm_packed_b_bytes(int kernel, size_t elem_size, Py_ssize_t N, Py_ssize_t K)
    void fnn_gemm_pack_b_s(int kernel, int trans_b, Py_ssize_t N, Py_ssize_t K,
                           const float *B, Py_ssize_t ldb, float *pb, int part, int n_parts)
    void fnn_gemm_pack_b_d(int kernel, int trans_b, Py_ssize_t N, Py_ssize_t K,
                           const double *B, Py_ssize_t ldb, double *pb, int part, int n_parts)
    void fnn_gemm_pb_s(int kernel, int trans_a, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const float *A, Py_ssize_t lda, const float *pb,
                       float *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)
    void fnn_gemm_pb_d(int kernel, int trans_a, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const double *A, Py_ssize_t lda, const double *pb,
                       double *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)

cdef extern from "fnn_activations.h" nogil:
    double fnn_dact_d(int act, double y, double p)

cdef extern from "fnn_finite.h" nogil:
    int fnn_finite_s(const float *x, Py_ssize_t n)
    int fnn_finite_d(const double *x, Py_ssize_t n)

cdef extern from "fnn_omp.h" nogil:
    int fnn_omp_enabled()
    int fnn_omp_max_threads()
    int fnn_omp_thread_num()
    int fnn_omp_num_threads()
    void fnn_omp_barrier()
    long fnn_atomic_fetch_add(long *p, long v)
    void fnn_atomic_store(long *p, long v)
    long fnn_atomic_load(long *p)
    double fnn_wtime()
    int fnn_omp_watch_fork()
    int fnn_omp_forked_child()
    int fnn_omp_team_size(int n, int *err)

fnn_omp_watch_fork()

cdef enum:
    LOSS_MSE = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2
    LOSS_POISSON = 3            # linear output z, log link: prediction exp(z)

cdef enum:
    OPT_SGD = 0        # plain SGD, straight into the weights
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3
    OPT_NONE = 4       # gradients only (Network.gradients)
    OPT_ADAMW = 5      # Adam with decoupled weight decay
    OPT_RMSPROP = 6
    OPT_RPROP = 7      # iRPROP-, full batch

# The codes as the Python layer names them.
LOSS_CODES = {"mse": LOSS_MSE, "cross_entropy": LOSS_CROSS_ENTROPY,
              "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY, "poisson": LOSS_POISSON}
OPTIMIZER_CODES = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV,
                   "adam": OPT_ADAM, "none": OPT_NONE, "adamw": OPT_ADAMW,
                   "rmsprop": OPT_RMSPROP, "rprop": OPT_RPROP}
KERNELS = {"blas": FNN_KERNEL_BLAS, "generic": FNN_KERNEL_GENERIC,
           "avx2": FNN_KERNEL_AVX2, "avx512": FNN_KERNEL_AVX512}

# Fixed output tiles of every product.  They depend on the kernel and the
# shapes only, never on the thread count, which is what keeps results
# independent of it.
#  - BLAS packs both operands on every call: few, large calls.
#  - fastnn's kernels read A in place and pack B once per call, so a tile
#    spans all rows of a batch-sized product (B packed once per batch) and the
#    columns are cut into about four tiles (at least 128 wide) for the threads.
cdef enum:
    BLAS_TILE = 512
    MAX_TILE_M = 512        # taller products (weight updates) are cut in rows
    ROW_TILE = 256
    MIN_TILE_N = 128
    MIN_SPLIT_N = 64        # narrower halves cost more in packing than they save
    MAX_TILE_N = 512
    BIAS_BLOCK = 256        # columns of a bias gradient summed at once (on the stack)
    PREDICT_CHUNK = 256     # rows per inference task: one chunk runs the whole network
    MAX_THREADS = 256       # per-thread scratch arrays (Python caps far lower: _config)


cdef inline Py_ssize_t tile_m(int kernel, Py_ssize_t M) noexcept nogil:
    if kernel == FNN_KERNEL_BLAS:
        return BLAS_TILE
    return M if M <= MAX_TILE_M else ROW_TILE


cdef inline Py_ssize_t tile_n(int kernel, Py_ssize_t N) noexcept nogil:
    if kernel == FNN_KERNEL_BLAS:
        return BLAS_TILE
    cdef Py_ssize_t tn = ((N + 3) // 4 + 31) // 32 * 32     # a quarter, in whole vectors
    tn = min(max(tn, <Py_ssize_t>MIN_TILE_N), <Py_ssize_t>MAX_TILE_N)
    if tn >= N and N >= 2 * MIN_SPLIT_N:
        # at least two tiles, so that two threads can share a layer as narrow as 128
        tn = ((N + 1) // 2 + 31) // 32 * 32
    return tn


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(fnn_omp_enabled())


def openmp_max_threads():
    """What OpenMP would use by default (OMP_NUM_THREADS or the core count)."""
    return fnn_omp_max_threads()


def forked_child():
    """True in a process made by fork() after fastnn was imported: it computes
    on one thread (GNU libgomp's threads do not survive a fork)."""
    return bool(fnn_omp_forked_child())


_os_refused_threads = False


cdef int start_team(int n_threads):
    """The team to start for ``n_threads`` (see fnn_omp.h): 1 in a forked
    child, fewer when the OS refuses threads (warned about once)."""
    global _os_refused_threads
    cdef int err = 0
    cdef int nt = fnn_omp_team_size(n_threads, &err)
    if err != 0 and not _os_refused_threads:
        _os_refused_threads = True
        import os
        warnings.warn(f"fastnn: the operating system refused to start more threads "
                      f"({os.strerror(err)}); running on {nt} of the {n_threads} asked for "
                      f"(the results are the same)", RuntimeWarning, stacklevel=3)
    return nt


def team_size(int n_threads):
    """How many of ``n_threads`` a parallel region may start now (for callers
    outside this module, e.g. the Perceptron's OpenMP loop): see start_team."""
    return start_team(max(1, n_threads))


def kernel_available(str name):
    """True when this build has the kernel ``name`` and this CPU can run it
    (for "blas": once scipy's BLAS is loaded, which this call tries)."""
    if name == "blas" and not fnn_kernel_available(FNN_KERNEL_BLAS):
        _load_blas()
    return bool(fnn_kernel_available(KERNELS[name]))


cdef void *_capsule_pointer(capsule):
    return PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))


def _load_blas():
    """Hand scipy's ?gemm to the BLAS path.  Done on first use, not at import:
    importing scipy.linalg is most of the time ``import fastnn`` would take."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return      # the "blas" kernel stays unavailable
    capi = cython_blas.__pyx_capi__
    fnn_set_blas(<fnn_sgemm_fn>_capsule_pointer(capi["sgemm"]),
                 <fnn_dgemm_fn>_capsule_pointer(capi["dgemm"]))


ctypedef unsigned long long u64


cdef struct Layer:
    Py_ssize_t n_in, n_out
    int act
    double act_param
    void *W         # (n_in, n_out) parameters
    void *b         # (n_out,) or NULL without bias
    void *A         # (max_rows, n_out) output of the layer, f(X @ W + b)
    void *Aout      # what the next layer reads: A, or A after dropout (own buffer)
    bint dropout    # inverted dropout on the output while training
    u64 keep_below  # a unit is kept when its 53 random bits are below this
    double dropout_scale   # 1 / (1 - rate)
    void *D         # (max_rows, n_out) delta of the layer
    void *gW        # gradient buffers: NULL for plain SGD, which updates in place
    void *gb
    void *s1W       # optimizer state: velocity (momentum), first moment (Adam, AdamW),
    void *s1b       # square average (RMSprop) or previous gradient (RProp)
    void *s2W       # second moment (Adam, AdamW), momentum buffer (RMSprop)
    void *s2b       # or step sizes (RProp)
    Py_ssize_t penalty_tile0   # this layer's first slot in Ctx.penalty_parts


cdef struct Poll:
    bint on          # the caller is Python's main thread and wants signals handled
    double next      # when thread 0 next runs the handlers (fnn_wtime)
    long raised      # set (atomically) once a handler raised: the team stops


cdef struct Ctx:
    int n_layers
    Layer *layers
    int kernel
    int loss
    int opt
    double lr, momentum, beta1, beta2, eps
    bint adam_lr_correction    # Adam: corrections folded into the step size (scikit-learn)
    double weight_decay   # AdamW's decoupled decay, weights only
    double rho            # RMSprop's smoothing constant
    double rprop_increase, rprop_decrease, rprop_min, rprop_max
    long long step0       # optimizer steps taken before this epoch
    # weight penalty: grad += l2 * W + l1 * sign(W), loss += l2/2 sum W^2 + l1 sum |W|
    double l2, l1
    bint penalty_per_weight_sum   # l2, l1 divided by each batch's weight sum (sklearn's alpha)
    double *penalty_parts # (sum W^2, sum |W|) of the old weights, per weight tile
    Py_ssize_t n_penalty_tiles
    double penalty_sum    # the epoch's penalty part of loss_sum (written by thread 0)
    const double *sample_weight   # (n_rows of X,) or NULL: every sample weighs 1
    u64 seed              # of the training noise
    u64 epoch_key         # noise_epoch_key(seed, epoch) of the current epoch
    # the epoch's data
    const void *X         # (n, n_in) samples
    const void *T         # (n, n_out) targets
    const long long *perm # order of the samples, or NULL for 0..n-1
    Py_ssize_t first, n, batch_size   # train on positions first..n-1 (of perm, or of X)
    void *Xb              # gathered batch inputs (perm != NULL or input noise) and
    void *Tb              # targets (perm != NULL)
    double input_noise    # standard deviation of the Gaussian noise added to inputs
    double *row_loss      # (batch_size,) per-sample loss of the current batch
    double loss_sum       # written by thread 0
    int status            # STATUS_*: why the epoch ended
    bint check_inputs     # check every sample's inputs for NaN/inf as the batch is formed
    long bad_input        # set (atomically) by any thread that found one
    Poll poll             # signals: stop after the batch in progress ...
    bint abort_on_signal  # ... or at once (gradients: nothing to keep)
    Py_ssize_t n_done     # samples trained on so far (written by thread 0)
    char **work           # per-thread GEMM scratch
    long claims[3]        # tile claim counters of the team (see begin_stage)


cdef inline void gemm(floating *proto, int kernel, int ta, int tb,
                      Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                      const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                      floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work) noexcept nogil:
    if floating is float:
        fnn_gemm_s(kernel, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work)
    else:
        fnn_gemm_d(kernel, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work)


cdef inline Py_ssize_t n_tiles(int kernel, Py_ssize_t M, Py_ssize_t N) noexcept nogil:
    cdef Py_ssize_t tm = tile_m(kernel, M), tn = tile_n(kernel, N)
    return ((M + tm - 1) // tm) * ((N + tn - 1) // tn)


cdef struct Tile:
    Py_ssize_t i0, j0, mb, nb   # first row and column, rows and columns


cdef inline Tile tile_bounds(int kernel, Py_ssize_t t, Py_ssize_t M, Py_ssize_t N) noexcept nogil:
    """Tile ``t`` (row-major over the tile grid) of an M x N product."""
    cdef Py_ssize_t tm = tile_m(kernel, M), tn = tile_n(kernel, N)
    cdef Py_ssize_t n_tn = (N + tn - 1) // tn
    cdef Tile tile
    tile.i0, tile.j0 = (t // n_tn) * tm, (t % n_tn) * tn
    tile.mb, tile.nb = min(tm, M - tile.i0), min(tn, N - tile.j0)
    return tile


cdef void gemm_tile(floating *proto, int kernel, Py_ssize_t t, int ta, int tb,
                    Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                    const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                    floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work) noexcept nogil:
    """Tile ``t`` of C = epilogue(op(A) @ op(B))."""
    cdef Tile tile = tile_bounds(kernel, t, M, N)
    cdef Py_ssize_t i0 = tile.i0, j0 = tile.j0, mb = tile.mb, nb = tile.nb
    cdef fnn_epilogue e = ep[0]
    if e.bias != NULL:
        e.bias = (<const floating *>e.bias) + j0
    if e.Y != NULL:
        e.Y = (<const floating *>e.Y) + i0 * e.ldy + j0
    gemm(proto, kernel, ta, tb, mb, nb, K,
         A + (i0 if ta else i0 * lda), lda,
         B + (j0 * ldb if tb else j0), ldb,
         C + i0 * ldc + j0, ldc, &e, work)


# Threads claim the tiles of a stage from a shared counter, so a thread that
# finishes early takes the next tile.  Which thread computes a tile never
# changes its result (tiles are fixed by the shapes), only the balance.
cdef struct Team:
    int tid, nt
    long *counters       # 3 claim counters shared by the team, zero at the start
    long long stage      # claimed stages this thread has begun


cdef inline Team make_team(long *counters, int tid, int nt) noexcept nogil:
    cdef Team team
    team.tid, team.nt, team.counters, team.stage = tid, nt, counters, 0
    return team


cdef inline long begin_stage(Team *team) noexcept nogil:
    """Start the next claimed stage; returns the index of its counter.

    Every thread runs the same sequence of stages with a barrier after each.
    Stage s uses counter s % 3; thread 0 zeroes the counter of stage s + 1
    now, which was last used by stage s - 2: every thread has passed the
    barrier that ended stage s - 1, and the barrier ending stage s publishes
    the zero before anyone claims from it.
    """
    cdef long long s = team.stage
    team.stage += 1
    if team.tid == 0:
        fnn_atomic_store(&team.counters[(s + 1) % 3], 0)
    return s % 3


cdef inline Py_ssize_t claim(Team *team, long counter) noexcept nogil:
    return fnn_atomic_fetch_add(&team.counters[counter], 1)


cdef void gemm_tasks(floating *proto, int kernel, int ta, int tb,
                     Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                     floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work,
                     Team *team) noexcept nogil:
    """The tiles of one product this thread claims (a stage; no barrier)."""
    cdef Py_ssize_t count = n_tiles(kernel, M, N)
    cdef long k = begin_stage(team)
    cdef Py_ssize_t t = claim(team, k)
    while t < count:
        gemm_tile(proto, kernel, t, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work)
        t = claim(team, k)


# ---------------------------------------------------------------------------
# Signals (see the module docstring).

DEF POLL_SECONDS = 0.02     # Python handles a signal at most this late, plus a tile's time


cdef int poll_init(Poll *p, bint on) except -1:
    p.on = on and threading.get_ident() == threading.main_thread().ident
    p.next = 0.0
    p.raised = 0
    return 0


cdef bint poll_signals(Poll *p) noexcept nogil:
    """Thread 0: run Python's signal handlers if POLL_SECONDS have passed;
    True once one raised (its exception then stays set in this thread)."""
    cdef double now
    if fnn_atomic_load(&p.raised):
        return True
    if not p.on:
        return False
    now = fnn_wtime()
    if now < p.next:
        return False
    p.next = now + POLL_SECONDS
    with gil:
        if PyErr_CheckSignals() != 0:
            fnn_atomic_store(&p.raised, 1)
    return fnn_atomic_load(&p.raised) != 0


cdef inline bint poll_stopped(Poll *p) noexcept nogil:
    return fnn_atomic_load(&p.raised) != 0


cdef int raise_pending() except -1:
    """Raise the exception a signal handler left set during poll_signals."""
    return -1


cdef object pending_exception():
    """The exception a signal handler left set during poll_signals (cleared)."""
    try:
        raise_pending()
    except BaseException as exc:
        return exc


# ---------------------------------------------------------------------------
# Counter-based random numbers for the training noise: every value is a hash
# of where it is used (mirrored in NumPy by _reference.noise_bits).

cdef inline u64 mix64(u64 z) noexcept nogil:
    """splitmix64's finaliser: a bijective 64-bit hash with full avalanche."""
    z = (z ^ (z >> 30)) * <u64>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <u64>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline u64 noise_epoch_key(u64 seed, long long epoch) noexcept nogil:
    return mix64(seed + <u64>0x9E3779B97F4A7C15 * <u64>(epoch + 1))


cdef inline u64 noise_row_key(u64 epoch_key, Py_ssize_t stream, long long sample) noexcept nogil:
    """Key of one sample in one stream (0: input noise, l + 1: dropout of layer l)."""
    cdef u64 stream_key = mix64(epoch_key ^ (<u64>0xD1B54A32D192ED03 * <u64>(stream + 1)))
    return mix64(stream_key + <u64>0x9E3779B97F4A7C15 * <u64>(sample + 1))


cdef inline u64 noise_bits(u64 row_key, Py_ssize_t unit) noexcept nogil:
    return mix64(row_key + <u64>0x9E3779B97F4A7C15 * <u64>(unit + 1))


cdef inline double standard_normal(u64 row_key, Py_ssize_t j) noexcept nogil:
    """N(0, 1) for unit j: Box-Muller on the uniforms of the pair (2k, 2k + 1)
    that holds j (cosine for the even unit, sine for the odd one)."""
    cdef Py_ssize_t k = j - (j & 1)
    cdef double u1 = (<double>(noise_bits(row_key, k) >> 11) + 1.0) * (1.0 / 9007199254740992.0)
    cdef double u2 = <double>(noise_bits(row_key, k + 1) >> 11) * (1.0 / 9007199254740992.0)
    cdef double r = sqrt(-2.0 * log(u1))      # u1 in (0, 1]: finite
    return r * (sin(2.0 * M_PI * u2) if j & 1 else cos(2.0 * M_PI * u2))


# ---------------------------------------------------------------------------
# One training step, run by every thread of the team.

# What every thread knows about the current minibatch (each thread computes
# the same values in the same order, so no barrier is needed to share them).
cdef struct Batch:
    Py_ssize_t start, rows
    const long long *perm   # sample index of row r: perm[r], or start + r when NULL
    long long step          # optimizer step, counting from 1
    double weight_sum       # sum of the rows' sample weights (rows without weights)
    double inv_weight       # 1 / weight_sum, or 0 for a batch that weighs nothing
    double l2, l1           # this batch's penalty coefficients


cdef inline long long sample_of(const Batch *b, Py_ssize_t r) noexcept nogil:
    return b.perm[r] if b.perm != NULL else b.start + r


cdef void start_batch(Ctx *c, Batch *b, Py_ssize_t start, Py_ssize_t rows,
                      long long step) noexcept nogil:
    cdef Py_ssize_t r
    cdef double w = 0.0
    b.start, b.rows, b.step = start, rows, step
    b.perm = c.perm + start if c.perm != NULL else NULL
    if c.sample_weight != NULL:
        for r in range(rows):
            w += c.sample_weight[sample_of(b, r)]
    else:
        w = <double>rows
    b.weight_sum = w
    b.inv_weight = 1.0 / w if w > 0 else 0.0
    b.l2, b.l1 = c.l2, c.l1
    if c.penalty_per_weight_sum:
        b.l2 *= b.inv_weight
        b.l1 *= b.inv_weight
    if c.opt == OPT_NONE:
        b.l2 = b.l1 = 0.0

cdef inline const floating *layer_input(Ctx *c, floating *X, Py_ssize_t l) noexcept nogil:
    return X if l == 0 else <const floating *>c.layers[l - 1].Aout


cdef void dropout_tile(Ctx *c, const Batch *b, Py_ssize_t l, floating *dst, const floating *src,
                       Tile tile) noexcept nogil:
    """dst = src * mask / (1 - rate) on one tile of a (rows, n_out) array of
    layer l: the forward output (src = A, dst = Aout) or, with the very same
    mask, a delta in place (dst = src = D)."""
    cdef Layer *L = &c.layers[l]
    cdef Py_ssize_t r, j, o
    cdef u64 key
    cdef floating scale = <floating>L.dropout_scale
    for r in range(tile.i0, tile.i0 + tile.mb):
        key = noise_row_key(c.epoch_key, l + 1, sample_of(b, r))
        o = r * L.n_out
        for j in range(tile.j0, tile.j0 + tile.nb):
            if (noise_bits(key, j) >> 11) < L.keep_below:
                dst[o + j] = src[o + j] * scale
            else:
                dst[o + j] = 0


cdef inline bint aborted(Ctx *c, int tid) noexcept nogil:
    """Whether to stop claiming tiles: only where a batch may be abandoned
    (abort_on_signal), and then thread 0 also runs the handlers between tiles."""
    if not c.abort_on_signal:
        return False
    if tid == 0:
        return poll_signals(&c.poll)
    return poll_stopped(&c.poll)


cdef void forward_layers(Ctx *c, const Batch *b, const floating *X, Team *team) noexcept nogil:
    cdef Py_ssize_t l, t, count, rows = b.rows
    cdef long k
    cdef Layer *L
    cdef fnn_epilogue ep
    cdef const floating *inp = X
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_BIAS_ACT
    for l in range(c.n_layers):
        L = &c.layers[l]
        ep.act = L.act
        ep.act_param = L.act_param
        ep.bias = L.b
        count = n_tiles(c.kernel, rows, L.n_out)
        k = begin_stage(team)
        t = claim(team, k)
        while t < count and not aborted(c, team.tid):
            gemm_tile(<floating *>NULL, c.kernel, t, 0, 0, rows, L.n_out, L.n_in,
                      inp, L.n_in, <const floating *>L.W, L.n_out,
                      <floating *>L.A, L.n_out, &ep, c.work[team.tid])
            if L.dropout:      # while the tile is still in cache
                dropout_tile(c, b, l, <floating *>L.Aout, <const floating *>L.A,
                             tile_bounds(c.kernel, t, rows, L.n_out))
            t = claim(team, k)
        fnn_omp_barrier()
        inp = <const floating *>L.Aout


cdef inline double log_sum_exp(const floating *z, Py_ssize_t k) noexcept nogil:
    """log(sum_j exp(z_j)), shifted by the maximum so that nothing overflows."""
    cdef Py_ssize_t j
    cdef double mx = z[0], s = 0.0
    for j in range(1, k):
        if z[j] > mx:
            mx = z[j]
    for j in range(k):
        s += exp(z[j] - mx)
    return mx + log(s)


cdef double output_row(Ctx *c, floating *o, floating *d, const floating *t,
                       Py_ssize_t k, double inv_rows) noexcept nogil:
    """Loss of one sample and its output delta, fused.

    ``o`` holds the output layer's values (logits when it is a softmax, which
    this turns into probabilities in place); ``d`` receives
    dLoss/d(pre-activation) of the batch-mean loss, which is ``inv_rows``
    times that of this sample's loss (1 / rows, or the sample's weight over
    the batch's weight sum).
    """
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t j
    cdef double lse, loss = 0.0, g, dot, oj, p
    cdef double eps = 1e-7 if floating is float else 1e-15
    if L.act == FNN_ACT_SOFTMAX:
        lse = log_sum_exp(o, k)
        if c.loss == LOSS_CROSS_ENTROPY:
            for j in range(k):
                if t[j] != 0:
                    loss += t[j] * (lse - o[j])
        for j in range(k):
            o[j] = <floating>exp(o[j] - lse)
        if c.loss == LOSS_CROSS_ENTROPY:
            for j in range(k):
                d[j] = <floating>((o[j] - t[j]) * inv_rows)
            return loss
    if c.loss == LOSS_BINARY_CROSS_ENTROPY:      # sigmoid output, checked in Python
        for j in range(k):
            oj = min(max(<double>o[j], eps), 1.0 - eps)
            loss -= t[j] * log(oj) + (1.0 - t[j]) * log(1.0 - oj)
            d[j] = <floating>((o[j] - t[j]) * inv_rows)
        return loss
    if c.loss == LOSS_POISSON:                   # linear output z, checked in Python
        # half the Poisson deviance, exp(z) - t z + t log t - t, and its delta
        # exp(z) - t, in double; a prediction exp(z) beyond the model's dtype
        # is infinite, and so is the loss (which stops training)
        for j in range(k):
            p = exp(<double>o[j])
            if not isfinite(<floating>p):
                p = <floating>p
            loss += p - t[j] + (t[j] * (log(t[j]) - o[j]) if t[j] > 0 else 0.0)
            d[j] = <floating>((p - t[j]) * inv_rows)
        return loss
    # mean squared error: E = 1/2 sum_k (o_k - t_k)^2
    for j in range(k):
        g = <double>o[j] - t[j]
        loss += 0.5 * g * g
    if L.act == FNN_ACT_SOFTMAX:                 # through the softmax Jacobian
        dot = 0.0
        for j in range(k):
            dot += (o[j] - t[j]) * o[j]
        for j in range(k):
            d[j] = <floating>(o[j] * ((o[j] - t[j]) - dot) * inv_rows)
    else:
        for j in range(k):
            d[j] = <floating>((o[j] - t[j]) * fnn_dact_d(L.act, o[j], L.act_param) * inv_rows)
    return loss


cdef void output_stage(Ctx *c, const Batch *b, const floating *T, int tid, int nt) noexcept nogil:
    """Per-sample losses (times the sample's weight) and output deltas."""
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t r, k = L.n_out, rows = b.rows
    cdef double inv_rows = 1.0 / rows, w, loss
    r = tid
    while r < rows:
        if c.sample_weight == NULL:
            c.row_loss[r] = output_row(c, <floating *>L.A + r * k, <floating *>L.D + r * k,
                                       T + r * k, k, inv_rows)
        else:
            # scikit-learn: deltas * weight, gradients / the batch's weight sum
            w = c.sample_weight[sample_of(b, r)]
            loss = output_row(c, <floating *>L.A + r * k, <floating *>L.D + r * k,
                              T + r * k, k, w * b.inv_weight)
            c.row_loss[r] = w * loss if w != 0 else 0.0   # 0 * inf would be NaN
        r += nt


cdef inline floating sign_of(floating x) noexcept nogil:
    """-1, 0 or 1 (0 for 0, as torch.sign)."""
    return <floating>((x > 0) - (x < 0))


cdef void penalise_row(floating *P, floating *G, Py_ssize_t n, floating l2, floating l1,
                       double *sums) noexcept nogil:
    """G += l2 * P + l1 * sign(P); sums += (sum P^2, sum |P|) of the old P."""
    cdef Py_ssize_t j
    cdef double sq = 0.0, ab = 0.0
    cdef floating p
    for j in range(n):
        p = P[j]
        sq += <double>p * p
        ab += fabs(<double>p)
        G[j] += l2 * p + l1 * sign_of(p)
    sums[0] += sq
    sums[1] += ab


cdef void shrink_row(floating *P, Py_ssize_t n, floating keep, floating l1_step,
                     double *sums) noexcept nogil:
    """Plain SGD's penalty step before its GEMM: P = P * (1 - lr l2) - lr l1 sign(P).

    Exact, because the gradient that the GEMM adds next does not depend on P.
    """
    cdef Py_ssize_t j
    cdef double sq = 0.0, ab = 0.0
    cdef floating p
    for j in range(n):
        p = P[j]
        sq += <double>p * p
        ab += fabs(<double>p)
        P[j] = p * keep - l1_step * sign_of(p)
    sums[0] += sq
    sums[1] += ab


cdef void optimizer_tile(Ctx *c, const Batch *b, floating *P, floating *G, floating *S1,
                         floating *S2, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                         double *penalty) noexcept nogil:
    """Fused in-place update of one tile of parameters from its gradient.

    ``penalty`` is NULL for biases; for weights it receives the (sum W^2,
    sum |W|) of the tile before the update when this batch has a penalty,
    which is then added to the gradient, row by row while the row is in L1.
    """
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>c.lr, mu = <floating>c.momentum
    cdef floating b1 = <floating>c.beta1, b2 = <floating>c.beta2, eps = <floating>c.eps
    # 1 - beta in double: in float32, float32(0.999) is off by 1e-5 relative to 1 - 0.999
    cdef floating omb1 = <floating>(1.0 - c.beta1), omb2 = <floating>(1.0 - c.beta2)
    cdef floating l2 = <floating>b.l2, l1 = <floating>b.l1
    cdef floating c1 = 1, c2 = 1, step_lr = lr, g, v
    cdef floating *p
    cdef floating *gr
    cdef floating *s1
    cdef floating *s2
    cdef floating rho = <floating>c.rho, omrho = <floating>(1.0 - c.rho), decay = 1, d, prod
    cdef floating inc = <floating>c.rprop_increase, dec = <floating>c.rprop_decrease
    cdef floating dmin = <floating>c.rprop_min, dmax = <floating>c.rprop_max
    cdef bint penalised = penalty != NULL and (b.l2 != 0 or b.l1 != 0)
    if penalty != NULL:
        penalty[0] = penalty[1] = 0.0
        if c.opt == OPT_ADAMW:
            decay = <floating>(1.0 - c.lr * c.weight_decay)   # weights only
    if c.opt == OPT_ADAM or c.opt == OPT_ADAMW:
        if c.adam_lr_correction:
            # Kingma & Ba's "efficient" ordering (scikit-learn):
            # lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), W -= lr_t m / (sqrt(v) + eps)
            step_lr = <floating>(c.lr * sqrt(1.0 - pow(c.beta2, <double>b.step))
                                 / (1.0 - pow(c.beta1, <double>b.step)))
        else:
            c1 = <floating>(1.0 / (1.0 - pow(c.beta1, <double>b.step)))
            c2 = <floating>(1.0 / (1.0 - pow(c.beta2, <double>b.step)))
    for i in range(rows):
        p, gr = P + i * ld, G + i * ld
        s1 = S1 + i * ld if S1 != NULL else NULL
        s2 = S2 + i * ld if S2 != NULL else NULL
        if penalised:
            penalise_row(p, gr, cols, l2, l1, penalty)
        if c.opt == OPT_SGD:
            for j in range(cols):
                p[j] -= lr * gr[j]
        elif c.opt == OPT_MOMENTUM:
            # scikit-learn's form: v = mu * v - lr * g
            for j in range(cols):
                v = mu * s1[j] - lr * gr[j]
                s1[j] = v
                p[j] += v
        elif c.opt == OPT_NESTEROV:
            for j in range(cols):
                g = gr[j]
                v = mu * s1[j] - lr * g
                s1[j] = v
                p[j] += mu * v - lr * g
        elif c.opt == OPT_ADAM and c.adam_lr_correction:
            for j in range(cols):
                g = gr[j]
                s1[j] = b1 * s1[j] + omb1 * g
                s2[j] = b2 * s2[j] + omb2 * g * g
                p[j] -= step_lr * s1[j] / (<floating>sqrt(s2[j]) + eps)
        elif c.opt == OPT_ADAM:
            for j in range(cols):
                g = gr[j]
                s1[j] = b1 * s1[j] + omb1 * g
                s2[j] = b2 * s2[j] + omb2 * g * g
                p[j] -= lr * (s1[j] * c1) / (<floating>sqrt(s2[j] * c2) + eps)
        elif c.opt == OPT_ADAMW:
            # Loshchilov & Hutter / PyTorch: W *= 1 - lr * wd, then the Adam step
            for j in range(cols):
                g = gr[j]
                s1[j] = b1 * s1[j] + omb1 * g
                s2[j] = b2 * s2[j] + omb2 * g * g
                p[j] = p[j] * decay - lr * (s1[j] * c1) / (<floating>sqrt(s2[j] * c2) + eps)
        elif c.opt == OPT_RMSPROP and s2 != NULL:
            # PyTorch's form: buf = mu * buf + g / (sqrt(avg) + eps), W -= lr * buf
            for j in range(cols):
                g = gr[j]
                s1[j] = rho * s1[j] + omrho * g * g
                s2[j] = mu * s2[j] + g / (<floating>sqrt(s1[j]) + eps)
                p[j] -= lr * s2[j]
        elif c.opt == OPT_RMSPROP:
            for j in range(cols):
                g = gr[j]
                s1[j] = rho * s1[j] + omrho * g * g
                p[j] -= lr * g / (<floating>sqrt(s1[j]) + eps)
        elif c.opt == OPT_RPROP:
            # iRPROP- (Igel & Huesken 2000): s1 = previous gradient, s2 = step size
            for j in range(cols):
                g = gr[j]
                prod = g * s1[j]
                d = s2[j]
                if prod > 0:
                    d = min(d * inc, dmax)
                elif prod < 0:
                    d = max(d * dec, dmin)
                    g = 0     # no step, and no sign change seen next time
                if g > 0:
                    p[j] -= d
                elif g < 0:
                    p[j] += d
                s1[j] = g
                s2[j] = d


cdef void update_layer_tile(Ctx *c, const Batch *b, Py_ssize_t l, Py_ssize_t t,
                            const floating *X, void *work) noexcept nogil:
    """Tile ``t`` of layer l's weights (and its bias columns): gradient and update."""
    cdef Layer *L = &c.layers[l]
    cdef const floating *inp = layer_input(c, <floating *>X, l)
    cdef const floating *D = <const floating *>L.D
    cdef Tile tile = tile_bounds(c.kernel, t, L.n_in, L.n_out)
    cdef Py_ssize_t i0 = tile.i0, j0 = tile.j0, mb = tile.mb, nb = tile.nb
    cdef Py_ssize_t r, j, i, rows = b.rows
    cdef floating *gb
    cdef floating *bias
    cdef double *penalty = c.penalty_parts + 2 * (L.penalty_tile0 + t)
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_STORE
    if c.opt == OPT_SGD and L.gW == NULL:
        # plain SGD: W += -lr * X.T @ D straight into the weights, after the
        # penalty's shrink of the same tile
        penalty[0] = penalty[1] = 0.0
        if b.l2 != 0 or b.l1 != 0:
            for i in range(mb):
                shrink_row(<floating *>L.W + (i0 + i) * L.n_out + j0, nb,
                           <floating>(1.0 - c.lr * b.l2), <floating>(c.lr * b.l1), penalty)
        ep.alpha = -c.lr
        ep.beta = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.W, L.n_out, &ep, work)
    else:
        ep.alpha = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.gW, L.n_out, &ep, work)
        if c.opt != OPT_NONE:
            optimizer_tile(c, b, <floating *>L.W + i0 * L.n_out + j0,
                           <floating *>L.gW + i0 * L.n_out + j0,
                           <floating *>L.s1W + i0 * L.n_out + j0 if L.s1W != NULL else NULL,
                           <floating *>L.s2W + i0 * L.n_out + j0 if L.s2W != NULL else NULL,
                           mb, nb, L.n_out, penalty)
    if L.b == NULL or i0 != 0:
        return
    # The bias gradient is the column sum of D, taken in row order.
    gb = <floating *>L.gb + j0 if L.gb != NULL else NULL
    bias = <floating *>L.b + j0
    cdef floating sums[BIAS_BLOCK]
    cdef Py_ssize_t jb, nj
    jb = 0
    while jb < nb:
        # Each column is summed in row order, whatever the blocking.
        nj = min(<Py_ssize_t>BIAS_BLOCK, nb - jb)
        memset(sums, 0, nj * sizeof(floating))
        for r in range(rows):
            for j in range(nj):
                sums[j] += D[r * L.n_out + j0 + jb + j]
        for j in range(nj):
            if gb != NULL:
                gb[jb + j] = sums[j]
            else:
                bias[jb + j] -= <floating>c.lr * sums[j]
        jb += BIAS_BLOCK
    if gb != NULL and c.opt != OPT_NONE:
        optimizer_tile(c, b, bias, gb,
                       <floating *>L.s1b + j0 if L.s1b != NULL else NULL,
                       <floating *>L.s2b + j0 if L.s2b != NULL else NULL,
                       1, nb, nb, NULL)


cdef void backward_stage(Ctx *c, const Batch *b, const floating *X, Team *team) noexcept nogil:
    """Hidden deltas and updates, layer by layer from the output.

    Phase l computes D[l-1] = (D[l] @ W[l].T) * f'(A[l-1]) with the old W[l],
    and in the same phase updates W[l+1], whose delta work is done; the last
    phase (l = 0) updates W[1] and W[0] together.
    """
    cdef Py_ssize_t l, t, t_delta, t_upd, t_first, rows = b.rows
    cdef long k
    cdef Layer *L
    cdef Layer *P
    cdef void *work = c.work[team.tid]
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_DERIV
    l = c.n_layers - 1
    while l >= 0:
        L = &c.layers[l]
        t_delta = 0
        if l > 0:
            P = &c.layers[l - 1]
            t_delta = n_tiles(c.kernel, rows, L.n_in)
        t_upd = 0
        if l + 1 < c.n_layers:
            t_upd = n_tiles(c.kernel, c.layers[l + 1].n_in, c.layers[l + 1].n_out)
        t_first = n_tiles(c.kernel, L.n_in, L.n_out) if l == 0 else 0
        k = begin_stage(team)
        t = claim(team, k)
        while t < t_delta + t_upd + t_first and not aborted(c, team.tid):
            if t < t_delta:
                ep.act = P.act
                ep.act_param = P.act_param
                ep.Y = P.A
                ep.ldy = P.n_out
                gemm_tile(<floating *>NULL, c.kernel, t, 0, 1, rows, L.n_in, L.n_out,
                          <const floating *>L.D, L.n_out, <const floating *>L.W, L.n_out,
                          <floating *>P.D, P.n_out, &ep, work)
                if P.dropout:
                    # f'(A) came from the undropped output; the mask and scale
                    # of the forward pass complete the chain rule.
                    dropout_tile(c, b, l - 1, <floating *>P.D, <const floating *>P.D,
                                 tile_bounds(c.kernel, t, rows, L.n_in))
            elif t < t_delta + t_upd:
                update_layer_tile(c, b, l + 1, t - t_delta, X, work)
            else:
                update_layer_tile(c, b, 0, t - t_delta - t_upd, X, work)
            t = claim(team, k)
        if l == 0 and team.tid == 0 and poll_signals(&c.poll):
            # Before the batch's last barrier, which publishes it to the team:
            # everyone stops after this batch (train_worker).
            c.status = STATUS_SIGNAL
        fnn_omp_barrier()
        l -= 1


cdef void gather_rows(floating *dst, const floating *src, const long long *idx,
                      Py_ssize_t rows, Py_ssize_t width, int tid, int nt) noexcept nogil:
    cdef Py_ssize_t r
    r = tid
    while r < rows:
        memcpy(dst + r * width, src + idx[r] * width, width * sizeof(floating))
        r += nt


cdef inline bint row_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fnn_finite_s(x, n)
    else:
        return fnn_finite_d(x, n)


cdef void check_rows(long *bad_input, const floating *rows_data, Py_ssize_t rows,
                     Py_ssize_t width, int tid, int nt) noexcept nogil:
    """Set the shared flag when one of the rows (rows tid, tid + nt, ...) is not finite."""
    cdef Py_ssize_t r = tid
    while r < rows:
        if not row_finite(rows_data + r * width, width):
            fnn_atomic_store(bad_input, 1)
        r += nt


cdef void noisy_rows(Ctx *c, const Batch *b, floating *dst, const floating *X, Py_ssize_t width,
                     int tid, int nt) noexcept nogil:
    """dst[r] = X[sample of r] + input_noise * N(0, 1) per feature, keyed on
    (seed, epoch, sample, feature); the user's X is only read."""
    cdef Py_ssize_t r, j
    cdef const floating *x
    cdef floating *d
    cdef u64 key
    r = tid
    while r < b.rows:
        key = noise_row_key(c.epoch_key, 0, sample_of(b, r))
        x = X + sample_of(b, r) * width
        d = dst + r * width
        for j in range(width):
            d[j] = <floating>(x[j] + c.input_noise * standard_normal(key, j))
        r += nt


cdef enum:
    STATUS_OK = 0
    STATUS_NOT_FINITE = 1    # the loss of a batch was NaN or infinite
    STATUS_SIGNAL = 2        # a signal handler raised: stopped after the last finished batch
    STATUS_BAD_INPUT = 3     # a sample's inputs were NaN or infinite (check_inputs)


cdef double batch_penalty(Ctx *c, const Batch *b) noexcept nogil:
    """The penalty term of this batch's loss, from the old weights' sums
    (taken before the update), added in tile order."""
    cdef Py_ssize_t t
    cdef double sq = 0.0, ab = 0.0
    if b.l2 == 0 and b.l1 == 0:
        return 0.0
    for t in range(c.n_penalty_tiles):
        sq += c.penalty_parts[2 * t]
        ab += c.penalty_parts[2 * t + 1]
    return 0.5 * b.l2 * sq + b.l1 * ab


cdef void train_worker(Ctx *c, floating *proto, int tid, int nt) noexcept nogil:
    """Every minibatch of one epoch; run by each thread of the team."""
    cdef Py_ssize_t start, rows, r, n_in = c.layers[0].n_in
    cdef Py_ssize_t n_out = c.layers[c.n_layers - 1].n_out
    cdef const floating *X
    cdef const floating *T
    cdef long long step = c.step0
    cdef double s, penalty
    cdef Batch b
    cdef Team team = make_team(c.claims, tid, nt)
    start = c.first
    while start < c.n:
        rows = min(c.batch_size, c.n - start)
        step += 1
        start_batch(c, &b, start, rows, step)
        X = <const floating *>c.X + start * n_in
        T = <const floating *>c.T + start * n_out
        if c.perm != NULL or c.input_noise > 0:
            if c.input_noise > 0:
                noisy_rows(c, &b, <floating *>c.Xb, <const floating *>c.X, n_in, tid, nt)
            else:
                gather_rows(<floating *>c.Xb, <const floating *>c.X, c.perm + start, rows, n_in,
                            tid, nt)
            X = <const floating *>c.Xb
            if c.check_inputs:   # the rows just gathered are still in this core's L1
                check_rows(&c.bad_input, X, rows, n_in, tid, nt)
            if c.perm != NULL:
                gather_rows(<floating *>c.Tb, <const floating *>c.T, c.perm + start, rows, n_out,
                            tid, nt)
                T = <const floating *>c.Tb
            fnn_omp_barrier()
        elif c.check_inputs:
            check_rows(&c.bad_input, X, rows, n_in, tid, nt)
            fnn_omp_barrier()
        if c.bad_input:   # every thread sees it after the barrier: all stop here
            if tid == 0:
                c.status = STATUS_BAD_INPUT
            break
        forward_layers(c, &b, X, &team)
        output_stage(c, &b, T, tid, nt)
        fnn_omp_barrier()
        backward_stage(c, &b, X, &team)
        # Every thread sums the same row losses (written before the barriers
        # above), so all of them stop at the same batch when it is not finite.
        s = 0.0
        for r in range(rows):
            s += c.row_loss[r]
        if c.sample_weight != NULL:
            # scikit-learn: the batch's weighted mean, counted once per row
            s = s * b.inv_weight * rows
        penalty = rows * batch_penalty(c, &b)
        s += penalty
        if tid == 0:
            c.loss_sum += s
            c.penalty_sum += penalty
            c.n_done += rows
        start += rows
        if not isfinite(s):
            if tid == 0:
                c.status = STATUS_NOT_FINITE
            break
        # Set by thread 0 before the last barrier of backward_stage.
        if c.status == STATUS_SIGNAL:
            break


cdef void run_team(Ctx *c, bint is_double, int n_threads) noexcept nogil:
    """Run train_worker on a team of n_threads (as start_team() allowed)."""
    cdef int tid, nt
    if n_threads <= 1:
        if is_double:
            train_worker(c, <double *>NULL, 0, 1)
        else:
            train_worker(c, <float *>NULL, 0, 1)
        return
    with parallel(num_threads=n_threads):
        # The team OpenMP actually gave us may be smaller than asked for.
        tid = fnn_omp_thread_num()
        nt = fnn_omp_num_threads()
        if is_double:
            train_worker(c, <double *>NULL, tid, nt)
        else:
            train_worker(c, <float *>NULL, tid, nt)


# Below this many flops per thread in one stage of a step, the barrier that
# ends the stage costs more than the thread saves (measured: a barrier is
# ~1 us on two idle cores, far more when the cores are shared).
DEF MIN_FLOPS_PER_THREAD_AND_STAGE = 2e6


def threads_for_batch(list weights, Py_ssize_t batch_size, int n_threads):
    """Threads worth using for a training step: small networks stay serial."""
    if n_threads <= 1 or not fnn_omp_enabled():
        return 1
    flops = 6.0 * batch_size * sum(W.shape[0] * W.shape[1] for W in weights)
    stages = 2 * len(weights) + 1
    return int(max(1, min(n_threads, MAX_THREADS, flops / stages / MIN_FLOPS_PER_THREAD_AND_STAGE)))


cdef void *aligned(object arr):
    return <void *>(((<size_t>cnp.PyArray_DATA(arr)) + 63) & ~(<size_t>63))


cdef void *data_or_null(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(arr)


cdef void set_params(Layer *L, object W, object b, object activation):
    """A layer's shape, activation and parameter pointers (W, b stay owned by the caller)."""
    L.n_in, L.n_out = W.shape[0], W.shape[1]
    L.act, L.act_param = activation
    L.W = cnp.PyArray_DATA(W)
    L.b = data_or_null(b)


cdef list alloc_work(char **work, int n_threads, int kernel, size_t itemsize):
    """One 64-byte aligned GEMM scratch per thread; returns the arrays to keep alive."""
    cdef int i
    buffers = [np.empty(fnn_gemm_work_bytes(kernel, itemsize) + 64, np.uint8)
               for _ in range(n_threads)]
    for i in range(n_threads):
        work[i] = <char *>aligned(buffers[i])
    return buffers


cdef class Trainer:
    """Workspace and state of one ``fit``; see the module docstring.

    Parameters
    ----------
    weights, biases : lists of C-contiguous arrays, updated in place
        (a bias may be None).
    activations : list of (code, param) per layer.
    loss : int, one of the LOSS_* codes.
    batch_size : int
    n_threads : int
    kernel : int, one of KERNELS' values.
    optimizer : int, one of the OPT_* codes.
    state1, state2 : lists of (W-shaped, b-shaped or None) optimizer buffers
        per layer, or None when the optimizer keeps no such state.
    keep_gradients : bool
        Keep gradient buffers (``grad_W``, ``grad_b``) even for plain SGD.
    dropout : list of float in [0, 1) per layer, or None
        Inverted dropout on each layer's output while training: a unit is
        kept with probability 1 - rate and then scaled by 1 / (1 - rate).
        Its mask is a hash of (seed, epoch, layer, sample index, unit).
    seed : int in [0, 2**64)
        Key of the training noise; the epoch comes from ``set_epoch``.

    Settings that may change between epochs (all default to off):

    - ``set_optimizer(...)``: the optimizer's hyper-parameters and step count.
    - ``set_penalty(l2, l1, per_weight_sum=False)``: weight penalty (weights
      only, never biases).  The gradient of a batch gets ``l2 * W + l1 *
      sign(W)`` and its loss ``l2 / 2 * sum(W**2) + l1 * sum(|W|)`` (of the
      weights before the batch's update), as PyTorch's ``weight_decay``.
      With ``per_weight_sum=True`` both coefficients are divided by the
      batch's number of rows, or its sum of sample weights: that is
      scikit-learn's MLP ``alpha`` (pass ``l2=alpha``), whose gradient is
      ``(X.T @ deltas + alpha * W) / s`` and whose loss adds
      ``0.5 * alpha * sum(W**2) / s``.  A batch whose weights sum to zero
      gets neither data gradient nor penalty in that form.
    - ``set_sample_weight(w)``: a float64 (n_rows of X,) array, or None.  A
      batch's loss is its weighted mean ``sum(w_i * loss_i) / sum(w_i)``
      and its deltas are the output deltas times ``w_i / sum(w_i)``
      (scikit-learn's MLP); the epoch's ``loss_sum`` adds each batch's
      weighted mean loss once per row of the batch (scikit-learn's
      ``accumulated_loss``), so without weights it is the plain sum.

    - ``set_input_noise(std)``: Gaussian noise N(0, std^2) added to each
      training input, drawn like the dropout masks (stream 0); the batch is
      then always gathered into the workspace, never written into X.
    - ``set_epoch(epoch)``: the epoch index keying the training noise (the
      same epoch and sample give the same mask, however the epoch is split
      into calls of ``run_epoch``).

    ``penalty_sum`` is the penalty part of the last ``run_epoch``'s loss_sum
    (again counted once per row of each batch).  ``layer_outputs`` holds,
    per layer, the (batch_size, n_out) buffers (A, what the next layer
    reads) of the last batch, and ``batch_inputs`` the gathered (or noisy)
    inputs of the last batch when it needed them, for tests.
    """
    cdef Ctx ctx
    cdef Layer *layers
    cdef char **work
    cdef list keep
    cdef object dtype
    cdef int n_threads
    cdef object sample_weight
    cdef public object grad_W, grad_b
    cdef public list layer_outputs
    cdef public object batch_inputs

    def __cinit__(self, list weights, list biases, list activations, int loss,
                  Py_ssize_t batch_size, int n_threads, int kernel, int optimizer,
                  list state1=None, list state2=None, bint keep_gradients=False,
                  list dropout=None, u64 seed=0):
        cdef Py_ssize_t l, n_layers = len(weights), n_penalty_tiles = 0
        cdef Layer *L
        self.dtype = weights[0].dtype
        self.keep = []
        self.sample_weight = None
        self.n_threads = threads_for_batch(weights, batch_size, n_threads)
        self.layers = <Layer *>malloc(n_layers * sizeof(Layer))
        self.work = <char **>malloc(self.n_threads * sizeof(char *))
        if self.layers == NULL or self.work == NULL:
            raise MemoryError()
        memset(self.layers, 0, n_layers * sizeof(Layer))
        memset(&self.ctx, 0, sizeof(Ctx))
        need_grad = keep_gradients or optimizer != OPT_SGD
        self.grad_W, self.grad_b = [], []
        self.layer_outputs = []
        if dropout is not None and (len(dropout) != n_layers or dropout[n_layers - 1] != 0):
            raise ValueError("dropout needs one rate per layer, and none on the output layer")
        for l in range(n_layers):
            W, b = weights[l], biases[l]
            L = &self.layers[l]
            set_params(L, W, b, activations[l])
            A = np.empty((batch_size, L.n_out), self.dtype)
            D = np.empty((batch_size, L.n_out), self.dtype)
            self.keep += [W, b, A, D]
            L.A, L.D = cnp.PyArray_DATA(A), cnp.PyArray_DATA(D)
            rate = 0.0 if dropout is None else float(dropout[l])
            if not 0 <= rate < 1:
                raise ValueError(f"dropout rates must be in [0, 1), got {rate} for layer {l}")
            Aout = A
            if rate > 0:
                Aout = np.empty((batch_size, L.n_out), self.dtype)
                L.dropout = True
                L.keep_below = <u64>round((1.0 - rate) * 2.0 ** 53)
                L.dropout_scale = 1.0 / (1.0 - rate)
                self.keep.append(Aout)
            L.Aout = cnp.PyArray_DATA(Aout)
            self.layer_outputs.append((A, Aout))
            L.penalty_tile0 = n_penalty_tiles
            n_penalty_tiles += n_tiles(kernel, L.n_in, L.n_out)
            if need_grad:
                gW = np.zeros_like(W)
                gb = np.zeros(L.n_out, self.dtype) if b is not None else None
                self.grad_W.append(gW)
                self.grad_b.append(gb)
                L.gW, L.gb = cnp.PyArray_DATA(gW), data_or_null(gb)
            if state1 is not None:
                self.keep += list(state1[l])
                L.s1W, L.s1b = data_or_null(state1[l][0]), data_or_null(state1[l][1])
            if state2 is not None:
                self.keep += list(state2[l])
                L.s2W, L.s2b = data_or_null(state2[l][0]), data_or_null(state2[l][1])
        n_in, n_out = weights[0].shape[0], weights[n_layers - 1].shape[1]
        Xb = np.empty((batch_size, n_in), self.dtype)
        Tb = np.empty((batch_size, n_out), self.dtype)
        row_loss = np.empty(batch_size, np.float64)
        penalty_parts = np.zeros(2 * n_penalty_tiles, np.float64)
        self.keep += [Xb, Tb, row_loss, penalty_parts]
        self.batch_inputs = Xb
        self.keep += alloc_work(self.work, self.n_threads, kernel, self.dtype.itemsize)
        self.ctx.n_layers = n_layers
        self.ctx.layers = self.layers
        self.ctx.kernel = kernel
        self.ctx.loss = loss
        self.ctx.opt = optimizer
        self.ctx.batch_size = batch_size
        self.ctx.Xb, self.ctx.Tb = cnp.PyArray_DATA(Xb), cnp.PyArray_DATA(Tb)
        self.ctx.row_loss = <double *>cnp.PyArray_DATA(row_loss)
        self.ctx.penalty_parts = <double *>cnp.PyArray_DATA(penalty_parts)
        self.ctx.n_penalty_tiles = n_penalty_tiles
        self.ctx.work = self.work
        self.ctx.seed = seed
        self.ctx.epoch_key = noise_epoch_key(seed, 0)

    def __dealloc__(self):
        free(self.layers)
        free(self.work)

    def set_optimizer(self, double lr=0.0, double momentum=0.0, double beta1=0.9,
                      double beta2=0.999, double eps=1e-8, long long step=0,
                      bint adam_lr_correction=False, double weight_decay=0.0,
                      double rho=0.99, double increase_factor=1.2,
                      double decrease_factor=0.5, double delta_min=0.0,
                      double delta_max=50.0):
        """Hyper-parameters for the next epoch; ``step`` is the count of past steps.

        ``adam_lr_correction``: Adam with its bias corrections folded into
        the step size (scikit-learn's ordering) instead of Algorithm 1's.
        ``weight_decay``: AdamW's; ``rho`` (and ``momentum``): RMSprop's;
        ``increase_factor`` ... ``delta_max``: RProp's.
        """
        self.ctx.lr, self.ctx.momentum = lr, momentum
        self.ctx.beta1, self.ctx.beta2, self.ctx.eps = beta1, beta2, eps
        self.ctx.adam_lr_correction = adam_lr_correction
        self.ctx.weight_decay = weight_decay
        self.ctx.rho = rho
        self.ctx.rprop_increase, self.ctx.rprop_decrease = increase_factor, decrease_factor
        self.ctx.rprop_min, self.ctx.rprop_max = delta_min, delta_max
        self.ctx.step0 = step

    def set_penalty(self, double l2=0.0, double l1=0.0, bint per_weight_sum=False):
        """Weight penalty for the next epochs (see the class docstring)."""
        if not (l2 >= 0 and l1 >= 0 and isfinite(l2) and isfinite(l1)):
            raise ValueError(f"l2 and l1 must be finite numbers >= 0, got {l2} and {l1}")
        self.ctx.l2, self.ctx.l1 = l2, l1
        self.ctx.penalty_per_weight_sum = per_weight_sum

    def set_sample_weight(self, sample_weight):
        """Per-sample weights (float64, one per row of the X given to run_epoch), or None."""
        if sample_weight is None:
            self.sample_weight = None
            self.ctx.sample_weight = NULL
            return
        sw = np.ascontiguousarray(sample_weight, dtype=np.float64)
        if sw.ndim != 1:
            raise ValueError(f"sample_weight must be 1-D, got shape {sw.shape}")
        self.sample_weight = sw
        self.ctx.sample_weight = <const double *>cnp.PyArray_DATA(sw)

    def set_input_noise(self, double std):
        """Gaussian noise of standard deviation ``std`` added to every training
        input (keyed like dropout: seed, epoch, sample, feature); 0: none."""
        if not (std >= 0 and isfinite(std)):
            raise ValueError(f"input_noise must be a finite number >= 0, got {std}")
        self.ctx.input_noise = std

    def set_epoch(self, long long epoch):
        """The epoch index of the next run_epoch calls (keys the training noise)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.ctx.epoch_key = noise_epoch_key(self.ctx.seed, epoch)

    @property
    def penalty_sum(self):
        return self.ctx.penalty_sum

    def run_epoch(self, X, T, perm=None, bint check_signals=True, Py_ssize_t start=0,
                  stop=None, bint check_inputs=False, cnp.int64_t[::1] counts=None):
        """Train on every minibatch of (X, T) in the order ``perm`` (row
        indices, all of X's rows or some of them; None: X's own order).

        ``start``, ``stop``: train on ``perm[start:stop]`` only (or on rows
        start..stop-1 of X when perm is None).  To train an epoch in parts,
        pass the whole X with these (or slices of perm) rather than slices of
        X: the row of X is the sample index that sample weights, dropout
        masks and input noise are keyed on.

        Returns (sum of the per-sample losses, number of samples trained on,
        status): status is "ok", "not_finite" when the loss of a batch was not
        finite (training stopped after that batch) or "interrupted" on Ctrl-C
        (training stopped after the last finished batch).

        ``check_signals``: run Python's signal handlers while training (when
        called from the main thread).  A KeyboardInterrupt from one gives
        "interrupted"; any other exception a handler raised is raised here,
        after the last finished batch (``n_done`` then tells how many samples
        were trained on).  For ``gradients`` (optimizer "none") the work stops
        at once and every exception is raised.

        ``counts``: an int64 array to whose every entry the number of batches
        trained is added before this returns or raises.  The caller's books
        then cannot miss a finished batch: Python runs signal handlers
        between bytecodes, never inside this call once the team has stopped.

        ``check_inputs``: check each sample's row of X for NaN and infinity
        as its batch is formed, which costs nothing next to a separate pass
        over X; status "bad_input" when one is not finite (training stopped
        before that batch: the batches before it were trained on).
        """
        cdef cnp.int64_t[::1] order
        cdef Py_ssize_t n = X.shape[0] if perm is None else len(perm)
        cdef Py_ssize_t end = n if stop is None else stop
        if self.sample_weight is not None and self.sample_weight.shape[0] != X.shape[0]:
            raise ValueError(f"sample_weight has {self.sample_weight.shape[0]} entries but "
                             f"X has {X.shape[0]} rows")
        if not 0 <= start <= end <= n:
            raise ValueError(f"start and stop must satisfy 0 <= start <= stop <= {n}, got "
                             f"start={start}, stop={stop}")
        self.ctx.X = cnp.PyArray_DATA(X)
        self.ctx.T = cnp.PyArray_DATA(T)
        self.ctx.first, self.ctx.n = start, end
        self.ctx.perm = NULL
        if perm is not None:
            # ``perm`` may list only some rows (a slice of an epoch's order).
            order = perm
            self.ctx.perm = <const long long *>&order[0] if order.shape[0] else NULL
        self.ctx.loss_sum = 0.0
        self.ctx.penalty_sum = 0.0
        self.ctx.n_done = 0
        self.ctx.status = STATUS_OK
        poll_init(&self.ctx.poll, check_signals)
        self.ctx.abort_on_signal = self.ctx.opt == OPT_NONE
        self.ctx.check_inputs = check_inputs
        self.ctx.bad_input = 0
        memset(self.ctx.claims, 0, sizeof(self.ctx.claims))
        cdef bint is_double = self.dtype == np.float64
        cdef int nt = start_team(self.n_threads)
        cdef Py_ssize_t i, batches
        with nogil:
            run_team(&self.ctx, is_double, nt)
        if counts is not None:
            batches = (self.ctx.n_done + self.ctx.batch_size - 1) // self.ctx.batch_size
            for i in range(counts.shape[0]):
                counts[i] += batches
        if self.ctx.poll.raised:
            exc = pending_exception()
            if self.ctx.abort_on_signal or not isinstance(exc, KeyboardInterrupt):
                raise exc
            if self.ctx.status == STATUS_SIGNAL:
                return self.ctx.loss_sum, self.ctx.n_done, "interrupted"
        status = {STATUS_OK: "ok", STATUS_NOT_FINITE: "not_finite",
                  STATUS_BAD_INPUT: "bad_input"}[self.ctx.status]
        return self.ctx.loss_sum, self.ctx.n_done, status

    @property
    def n_done(self):
        """Samples trained on by the last run_epoch (also when it raised)."""
        return self.ctx.n_done


# ---------------------------------------------------------------------------
# Inference: independent chunks of rows, each through the whole network.

cdef void forward_chunk(floating *proto, Layer *layers, int n_layers, int kernel,
                        void **packed, const floating *X, Py_ssize_t rows, floating **outs,
                        floating *scratch, Py_ssize_t ld_scratch,
                        void *work, Poll *poll) noexcept nogil:
    """Rows of X through every layer.  ``outs[l]`` (when not NULL) receives
    layer l's output; other layers go through two halves of ``scratch``
    (rows ``ld_scratch`` apart).  ``packed[l]``: layer l's W pre-packed for
    ``kernel``, or NULL.  ``poll``: thread 0's, which runs the signal
    handlers between layers (a chunk of a wide network takes milliseconds);
    the chunk is abandoned when one raised."""
    cdef Py_ssize_t l, r, j, k, ld_in = layers[0].n_in, ld_out
    cdef Layer *L
    cdef const floating *inp = X
    cdef floating *out
    cdef floating *o
    cdef fnn_epilogue ep
    cdef double lse
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_BIAS_ACT
    for l in range(n_layers):
        L = &layers[l]
        if outs[l] != NULL:
            out, ld_out = outs[l], L.n_out
        else:
            out, ld_out = scratch + (l % 2) * PREDICT_CHUNK * ld_scratch, ld_scratch
        ep.act, ep.act_param, ep.bias = L.act, L.act_param, L.b
        if packed[l] != NULL:
            if floating is float:
                fnn_gemm_pb_s(kernel, 0, rows, L.n_out, L.n_in, inp, ld_in,
                              <const float *>packed[l], out, ld_out, &ep, work)
            else:
                fnn_gemm_pb_d(kernel, 0, rows, L.n_out, L.n_in, inp, ld_in,
                              <const double *>packed[l], out, ld_out, &ep, work)
        else:
            gemm(proto, kernel, 0, 0, rows, L.n_out, L.n_in, inp, ld_in,
                 <const floating *>L.W, L.n_out, out, ld_out, &ep, work)
        if L.act == FNN_ACT_SOFTMAX:
            k = L.n_out
            for r in range(rows):
                o = out + r * ld_out
                lse = log_sum_exp(o, k)
                for j in range(k):
                    o[j] = <floating>exp(o[j] - lse)
        inp, ld_in = out, ld_out
        if poll != NULL and poll_signals(poll):
            return


cdef void predict_worker(floating *proto, Layer *layers, int n_layers, int kernel,
                         void **packed, const floating *X, Py_ssize_t n, floating **outs,
                         char *scratch, Py_ssize_t ld_scratch, char **work,
                         long *bad_input, Poll *poll, int tid, int nt) noexcept nogil:
    cdef Py_ssize_t chunk, r0, rows, l, n_chunks = (n + PREDICT_CHUNK - 1) // PREDICT_CHUNK
    cdef floating *my_outs[64]
    cdef floating *my_scratch = <floating *>(scratch) + tid * 2 * PREDICT_CHUNK * ld_scratch
    cdef bint any_packed = False
    # Every thread packs its share of every W (a copy: any split gives the
    # same buffers), then all wait until the packs are complete.
    for l in range(n_layers):
        if packed[l] != NULL:
            any_packed = True
            if floating is float:
                fnn_gemm_pack_b_s(kernel, 0, layers[l].n_out, layers[l].n_in,
                                  <const float *>layers[l].W, layers[l].n_out,
                                  <float *>packed[l], tid, nt)
            else:
                fnn_gemm_pack_b_d(kernel, 0, layers[l].n_out, layers[l].n_in,
                                  <const double *>layers[l].W, layers[l].n_out,
                                  <double *>packed[l], tid, nt)
    if any_packed and nt > 1:
        fnn_omp_barrier()
    chunk = tid
    while chunk < n_chunks:
        if poll_stopped(poll):    # a signal handler raised: the call raises it
            break
        r0 = chunk * PREDICT_CHUNK
        rows = min(<Py_ssize_t>PREDICT_CHUNK, n - r0)
        if bad_input != NULL:
            # Check the chunk's inputs just before the first layer reads them
            # (which then finds them in cache); after a bad one, stop.
            if fnn_atomic_load(bad_input):
                break
            check_rows(bad_input, X + r0 * layers[0].n_in, rows, layers[0].n_in, 0, 1)
            if fnn_atomic_load(bad_input):
                break
        for l in range(n_layers):
            my_outs[l] = outs[l] + r0 * layers[l].n_out if outs[l] != NULL else NULL
        forward_chunk(proto, layers, n_layers, kernel, packed, X + r0 * layers[0].n_in,
                      rows, my_outs, my_scratch, ld_scratch, work[tid],
                      poll if tid == 0 else NULL)
        chunk += nt


MAX_LAYERS = 64


cdef Py_ssize_t scratch_ld(Py_ssize_t width, Py_ssize_t itemsize) noexcept nogil:
    """Leading dimension of the inference scratch: whole cache lines, and never
    a multiple of 4 KiB, whose rows would share a handful of cache sets (the
    kernels would then copy every block of A before using it)."""
    cdef Py_ssize_t per_line = 64 // itemsize
    cdef Py_ssize_t ld = (width + per_line - 1) // per_line * per_line
    if (ld * itemsize) % 4096 == 0:
        ld += per_line
    return ld


def forward(list weights, list biases, list activations, X, list outputs,
            int n_threads, int kernel, bint check_inputs=False, bint check_signals=True):
    """Run X through the network.

    ``check_signals``: run Python's signal handlers while working (when
    called from the main thread); an exception one raised stops the work and
    is raised here.

    ``check_inputs``: check every row of X for NaN and infinity as it is
    used, instead of a separate pass over X; returns False (and leaves the
    outputs incomplete) when one is not finite, True otherwise.

    ``outputs[l]`` is an (n, n_out_l) C-contiguous array that receives layer
    l's output, or None for a layer whose output is not wanted (those go
    through per-thread scratch).  The last entry must be an array.

    With fastnn's own kernels and more than one chunk of rows, every W is
    packed once for the whole call (the chunks would otherwise each pack it
    again); the products are bit-identical either way.
    """
    cdef int n_layers = len(weights), l, tid, nt
    cdef Py_ssize_t n = X.shape[0], width = 1, ld_scr
    cdef Layer layers[64]
    cdef void *outs[64]
    cdef void *packed[64]
    cdef char *work[256]
    cdef size_t packed_total = 0
    cdef size_t packed_offset[64]
    cdef bint is_double = X.dtype == np.float64
    if n_layers > MAX_LAYERS:
        raise ValueError(f"at most {MAX_LAYERS} layers are supported, got {n_layers}")
    memset(layers, 0, sizeof(layers))
    memset(packed, 0, sizeof(packed))
    itemsize = X.dtype.itemsize
    for l in range(n_layers):
        set_params(&layers[l], weights[l], biases[l], activations[l])
        outs[l] = data_or_null(outputs[l])
        width = max(width, layers[l].n_out)
        # One chunk packs each W once anyway: pre-pack only for several.
        packed_offset[l] = packed_total
        if n > PREDICT_CHUNK:
            packed_total += (fnn_gemm_packed_b_bytes(kernel, itemsize, layers[l].n_out,
                                                     layers[l].n_in) + 63) // 64 * 64
    # One chunk per task, and no thread for less work than a parallel region costs.
    flops = 2.0 * n * sum(W.shape[0] * W.shape[1] for W in weights)
    n_threads = int(max(1, min(n_threads, MAX_THREADS, (n + PREDICT_CHUNK - 1) // PREDICT_CHUNK,
                               flops / MIN_FLOPS_PER_THREAD_AND_STAGE)))
    n_threads = start_team(n_threads)
    ld_scr = scratch_ld(width, itemsize)
    scratch = np.empty(n_threads * 2 * PREDICT_CHUNK * ld_scr * itemsize + 64, np.uint8)
    works = alloc_work(work, n_threads, kernel, itemsize)
    packed_buf = np.empty(packed_total + 64, np.uint8)
    cdef char *pk = <char *>aligned(packed_buf)
    for l in range(n_layers):
        if n > PREDICT_CHUNK and fnn_gemm_packed_b_bytes(kernel, itemsize, layers[l].n_out,
                                                         layers[l].n_in) > 0:
            packed[l] = pk + packed_offset[l]
    cdef char *scr = <char *>aligned(scratch)
    cdef const void *x = cnp.PyArray_DATA(X)
    cdef long bad_input = 0
    cdef long *bad = &bad_input if check_inputs else NULL
    cdef Poll poll
    poll_init(&poll, check_signals)
    with nogil:
        if n_threads == 1:
            if is_double:
                predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                               <const double *>x, n, <double **>outs, scr, ld_scr, work,
                               bad, &poll, 0, 1)
            else:
                predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                               <const float *>x, n, <float **>outs, scr, ld_scr, work,
                               bad, &poll, 0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                nt = fnn_omp_num_threads()
                if is_double:
                    predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                                   <const double *>x, n, <double **>outs, scr, ld_scr, work,
                                   bad, &poll, tid, nt)
                else:
                    predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                                   <const float *>x, n, <float **>outs, scr, ld_scr, work,
                                   bad, &poll, tid, nt)
    if poll.raised:
        raise_pending()
    return bad_input == 0


# ---------------------------------------------------------------------------
# Test entry points: one product through the tiles, threads and epilogues.

def gemm_tiled(floating[:, ::1] A, floating[:, ::1] B, floating[:, ::1] C, *,
               bint trans_a=False, bint trans_b=False, int kind=0, int act=0,
               double act_param=0.0, double alpha=1.0, double beta=0.0,
               floating[::1] bias=None, floating[:, ::1] Y=None,
               int n_threads=1, int kernel=0):
    """C = epilogue(op(A) @ op(B)) with the engine's tiling and threads."""
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1]
    cdef Py_ssize_t K = A.shape[0] if trans_a else A.shape[1]
    cdef fnn_epilogue ep
    cdef int tid, nt
    cdef char *work[256]
    if (A.shape[1] if trans_a else A.shape[0]) != M or (B.shape[0] if trans_b else B.shape[1]) != N \
            or (B.shape[1] if trans_b else B.shape[0]) != K:
        raise ValueError("operand shapes do not match")
    memset(&ep, 0, sizeof(ep))
    ep.kind, ep.act, ep.act_param, ep.alpha, ep.beta = kind, act, act_param, alpha, beta
    if bias is not None:
        ep.bias = &bias[0]
    if Y is not None:
        ep.Y, ep.ldy = &Y[0, 0], Y.shape[1]
    n_threads = start_team(max(1, min(n_threads, MAX_THREADS)))
    works = alloc_work(work, n_threads, kernel, C.itemsize)
    cdef long counters[3]
    memset(counters, 0, sizeof(counters))
    with nogil:
        if n_threads == 1:
            tiled_worker(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                         A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work, counters,
                         0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                nt = fnn_omp_num_threads()
                tiled_worker(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                             A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work,
                             counters, tid, nt)


cdef void tiled_worker(floating *proto, int kernel, int ta, int tb,
                       Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                       floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, char **work,
                       long *counters, int tid, int nt) noexcept nogil:
    cdef Team team = make_team(counters, tid, nt)
    gemm_tasks(proto, kernel, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work[tid], &team)


def optimizer_update(int optimizer, floating[:, ::1] P, floating[:, ::1] G,
                     floating[:, ::1] S1=None, floating[:, ::1] S2=None, *,
                     long long step=1, double l2=0.0, double l1=0.0, bint is_weight=True,
                     **hyper):
    """One update of the parameters ``P`` from the gradient ``G`` by the
    engine's fused pass (``optimizer_tile``), with the optimizer state S1, S2.

    ``hyper`` holds the keywords of ``Trainer.set_optimizer``.  ``is_weight``
    applies the penalty (l2, l1), which is added to G in place.  For
    ``OPT_SGD`` this is the gradient-buffer form.  Returns the old P's
    (sum P^2, sum |P|) when the update is penalised, else (0, 0).
    """
    cdef Ctx c
    cdef Batch b
    cdef double penalty[2]
    if G.shape[0] != P.shape[0] or G.shape[1] != P.shape[1]:
        raise ValueError("P and G must have the same shape")
    if (S1 is not None and (S1.shape[0] != P.shape[0] or S1.shape[1] != P.shape[1])) or \
            (S2 is not None and (S2.shape[0] != P.shape[0] or S2.shape[1] != P.shape[1])):
        raise ValueError("S1 and S2 must have P's shape")
    if optimizer not in OPTIMIZER_CODES.values() or optimizer == OPT_NONE:
        raise ValueError(f"unknown optimizer code {optimizer}")
    memset(&c, 0, sizeof(Ctx))
    memset(&b, 0, sizeof(Batch))
    c.opt = optimizer
    settings = dict(lr=0.0, momentum=0.0, beta1=0.9, beta2=0.999, eps=1e-8,
                    adam_lr_correction=False, weight_decay=0.0, rho=0.99,
                    increase_factor=1.2, decrease_factor=0.5, delta_min=0.0, delta_max=50.0)
    unknown = set(hyper) - set(settings)
    if unknown:
        raise TypeError(f"unknown hyper-parameters {sorted(unknown)}")
    settings.update(hyper)
    c.lr, c.momentum = settings["lr"], settings["momentum"]
    c.beta1, c.beta2, c.eps = settings["beta1"], settings["beta2"], settings["eps"]
    c.adam_lr_correction = settings["adam_lr_correction"]
    c.weight_decay, c.rho = settings["weight_decay"], settings["rho"]
    c.rprop_increase, c.rprop_decrease = settings["increase_factor"], settings["decrease_factor"]
    c.rprop_min, c.rprop_max = settings["delta_min"], settings["delta_max"]
    b.step, b.l2, b.l1 = step, l2, l1
    penalty[0] = penalty[1] = 0.0
    if P.shape[0] == 0 or P.shape[1] == 0:
        return 0.0, 0.0
    if (S1 is None and optimizer != OPT_SGD) or (S2 is None and optimizer in (
            OPT_ADAM, OPT_ADAMW, OPT_RPROP)):
        raise ValueError("this optimizer needs its state buffers S1 (and S2)")
    with nogil:
        optimizer_tile(&c, &b, &P[0, 0], &G[0, 0],
                       &S1[0, 0] if S1 is not None else NULL,
                       &S2[0, 0] if S2 is not None else NULL,
                       P.shape[0], P.shape[1], P.shape[1],
                       penalty if is_weight else NULL)
    return penalty[0], penalty[1]


def dropout_keep_mask(u64 seed, long long epoch, Py_ssize_t layer, samples,
                      Py_ssize_t n_units, double rate):
    """The keep mask (n_samples, n_units) of layer ``layer``'s dropout for the
    given sample indices, as the engine draws it (for the tests)."""
    cdef cnp.int64_t[::1] idx = np.ascontiguousarray(samples, dtype=np.int64)
    out = np.empty((idx.shape[0], n_units), dtype=np.uint8)
    cdef unsigned char[:, ::1] m = out
    cdef u64 keep_below = <u64>round((1.0 - rate) * 2.0 ** 53)
    cdef u64 ek = noise_epoch_key(seed, epoch), key
    cdef Py_ssize_t r, j
    for r in range(idx.shape[0]):
        key = noise_row_key(ek, layer + 1, idx[r])
        for j in range(n_units):
            m[r, j] = (noise_bits(key, j) >> 11) < keep_below
    return out.astype(bool)


def standard_normal_noise(u64 seed, long long epoch, samples, Py_ssize_t n_features):
    """The N(0, 1) values (n_samples, n_features) that input noise scales, as
    the engine draws them for the given sample indices (for the tests)."""
    cdef cnp.int64_t[::1] idx = np.ascontiguousarray(samples, dtype=np.int64)
    out = np.empty((idx.shape[0], n_features))
    cdef double[:, ::1] z = out
    cdef u64 ek = noise_epoch_key(seed, epoch), key
    cdef Py_ssize_t r, j
    for r in range(idx.shape[0]):
        key = noise_row_key(ek, 0, idx[r])
        for j in range(n_features):
            z[r, j] = standard_normal(key, j)
    return out
