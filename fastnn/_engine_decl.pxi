# Shared declarations of the engine (included by _engine.pyx).
#
# The C side (csrc/: kernels, activations, OpenMP shims), the engine's limits
# (every fixed capacity and tuning constant, named once here), the codes the
# Python layer passes, and the structs every piece shares: ``Layer`` (one
# layer's shape and raw pointers), ``Ctx`` (everything a training epoch
# reads), ``Batch`` (what each thread knows about the current minibatch),
# ``Poll`` (signal handling) and the run statuses.

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
        FNN_KERNEL_AMX
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
        double steepness
        double flat_lo, flat_hi
        void *Z
        Py_ssize_t ldz
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

# float32 products on the AMX tile unit (fnn_gemm.h, fnn_amx.c).
cdef extern from "fnn_gemm.h" nogil:
    int fnn_amx_available()
    size_t fnn_amx_packed_bytes(Py_ssize_t n, Py_ssize_t K)
    size_t fnn_amx_packed_offset(Py_ssize_t i, Py_ssize_t K)
    size_t fnn_amx_work_bytes(Py_ssize_t K)
    void fnn_amx_pack_a(int trans_a, Py_ssize_t M, Py_ssize_t K, const float *A, Py_ssize_t lda,
                        void *pa, int part, int n_parts)
    void fnn_amx_pack_b(int trans_b, Py_ssize_t N, Py_ssize_t K, const float *B, Py_ssize_t ldb,
                        void *pb, int part, int n_parts)
    void fnn_amx_gemm_pp(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const void *pa,
                         const void *pb, float *C, Py_ssize_t ldc, const fnn_epilogue *ep,
                         void *work)
    void fnn_amx_gemm_pb(Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float *A,
                         Py_ssize_t lda, const void *pb, float *C, Py_ssize_t ldc,
                         const fnn_epilogue *ep, void *work)

# Operands packed once for all the tiles of a training product (fnn_gemm.h:
# "Pre-packed operands").
cdef extern from "fnn_gemm.h" nogil:
    enum:
        FNN_PREPACK_A
        FNN_PREPACK_B
    int fnn_gemm_prepack(int kernel, size_t elem_size, int trans_a, int trans_b,
                         Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, Py_ssize_t lda,
                         Py_ssize_t tm, Py_ssize_t tn, const fnn_epilogue *ep)
    size_t fnn_gemm_packed_a_bytes(int kernel, size_t elem_size, Py_ssize_t M, Py_ssize_t K)
    void fnn_gemm_pack_a_s(int kernel, int trans_a, Py_ssize_t M, Py_ssize_t K,
                           const float *A, Py_ssize_t lda, float *pa, int part, int n_parts)
    void fnn_gemm_pack_a_d(int kernel, int trans_a, Py_ssize_t M, Py_ssize_t K,
                           const double *A, Py_ssize_t lda, double *pa, int part, int n_parts)
    void fnn_gemm_pp_s(int kernel, int trans_a, int trans_b, Py_ssize_t M, Py_ssize_t N,
                       Py_ssize_t K, const float *A, Py_ssize_t lda, const float *pa,
                       const float *B, Py_ssize_t ldb, const float *pb,
                       float *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)
    void fnn_gemm_pp_d(int kernel, int trans_a, int trans_b, Py_ssize_t M, Py_ssize_t N,
                       Py_ssize_t K, const double *A, Py_ssize_t lda, const double *pa,
                       const double *B, Py_ssize_t ldb, const double *pb,
                       double *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work)

cdef extern from "fnn_activations.h" nogil:
    enum:
        FNN_ACT_LINEAR
        FNN_ACT_SIGMOID
        FNN_ACT_SOFTMAX
        FNN_ACT_TANH
        FNN_ACT_SIGN
        FNN_ACT_COUNT
        FNN_ACT_FROM_INPUT
    const char *fnn_act_name(int act)
    int fnn_act_props(int act)
    double fnn_dact_layer_d(int act, double u, double p, double s, double lo, double hi)

cdef extern from "fnn_finite.h" nogil:
    int fnn_finite_s(const float *x, Py_ssize_t n)
    int fnn_finite_d(const double *x, Py_ssize_t n)

cdef extern from "fnn_colsum.h" nogil:
    void fnn_colsum_s(const float *d, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n, float *sums)
    void fnn_colsum_d(const double *d, Py_ssize_t ld, Py_ssize_t rows, Py_ssize_t n,
                      double *sums)

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
    int fnn_affinity_cores()

fnn_omp_watch_fork()


# ---------------------------------------------------------------------------
# Limits: the engine's fixed sizes and tuning constants, named once.

cpdef enum:
    # Python sees these as module attributes (network.py checks MAX_LAYERS; the
    # tests, where the row count changes the arithmetic).
    MAX_LAYERS = 64         # layers of a network: inference keeps per-layer arrays on the stack
    MAX_THREADS = 256       # per-thread scratch arrays (Python caps far lower: _config)
    AMX_MIN_ROWS = 192      # kernel "amx": float32 products of this many rows or more use
                            # AMX tiles (amx_product)
    AMX_MIN_COLS = 128      # ... and at least this many columns
    AMX_MIN_DEPTH = 128     # ... and terms per sum (measured: smaller products are faster
                            # on the FMAs, the tiles' six products per float32 product
                            # and their packing not paying off)
    AMX_STEP_MIN_COLS = 512     # a training step's products: at least this many columns
    AMX_STEP_MIN_DEPTH = 256    # and terms (on two threads smaller ones are slower on the
                                # tiles than on the FMAs, also with each thread packing its
                                # own operands: measured, 784-256-128-10 at batch 256 with
                                # all its products on the tiles 0.29 s per epoch on one
                                # thread, 0.20-0.21 on two, against 0.19 without; from
                                # 512 x 256 the tiles win on 1 and 2)
    AMX_GRADIENT_MIN_ROWS = 512 # ... except weight gradients (X.T @ D) of this many inputs
                                # or more, with AMX_MIN_COLS and AMX_MIN_DEPTH: their FMA
                                # path transposes X while packing it, the tiles' packing does
                                # that for free (measured, one thread: 784 x 256 x 256 1.4x
                                # as fast on the tiles, 784-256-128-10's epoch at batch 256
                                # 0.308 s instead of 0.333; two threads 0.205 and 0.201)

cdef enum:
    PREDICT_CHUNK = 256     # rows per inference task: one chunk runs the whole network
    PREDICT_TAIL_CHUNK = 64 # ... and per task of the last rows, with a team (predict_worker)
    BIAS_BLOCK = 256        # columns of a bias gradient summed at once (on the stack)
    CACHE_LINE = 64         # bytes: scratch and packed buffers start on one
    TAIL_ROWS = 64          # rows per task of the fused output stage (tail_stage)
    ROW_BLOCK = 16          # rows: per-thread row blocks start on a cache line (row_block)
    PACK_PARTS = 8          # tasks per operand packed for a whole product (pack_stage)
    MAX_PACK_OPS = 4        # operands packed in one stage: a phase's delta and two updates

DEF POLL_SECONDS = 0.02     # Python handles a signal at most this late, plus a tile's time

# Below this many flops per thread in one stage of a step, the barrier that
# ends the stage costs more than the thread saves (measured: a barrier is
# ~1 us on two idle cores, far more when the cores are shared).
DEF MIN_FLOPS_PER_THREAD_AND_STAGE = 2e6
# A predict's threads meet once, at the end of the call, but are then woken
# from sleep (tens of us idle, a scheduler time slice beside a busy process):
# a second thread only for at least this much work of its own (~0.1 ms).
DEF MIN_FLOPS_PER_PREDICT_THREAD = 2e7


# ---------------------------------------------------------------------------
# Codes shared with the Python layer.

cdef enum:
    LOSS_MSE = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2
    LOSS_POISSON = 3            # linear output z, log link: prediction exp(z)
    LOSS_FANN_TANH = 4          # FANN's tanh error function (FANN_ERRORFUNC_TANH)

# The codes as the Python layer names them (the optimizers' are in _engine_optim.pxi).
LOSS_CODES = {"mse": LOSS_MSE, "cross_entropy": LOSS_CROSS_ENTROPY,
              "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY, "poisson": LOSS_POISSON,
              "fann_tanh": LOSS_FANN_TANH}
# fnn_activations.h is the one list of activations: their codes, and those
# whose derivative is taken from the activation's input (kept while training).
ACTIVATION_CODES = {fnn_act_name(a).decode(): a for a in range(FNN_ACT_COUNT)}
ACTIVATIONS_FROM_INPUT = frozenset(fnn_act_name(a).decode() for a in range(FNN_ACT_COUNT)
                                   if fnn_act_props(a) & FNN_ACT_FROM_INPUT)
KERNELS = {"blas": FNN_KERNEL_BLAS, "generic": FNN_KERNEL_GENERIC,
           "avx2": FNN_KERNEL_AVX2, "avx512": FNN_KERNEL_AVX512, "amx": FNN_KERNEL_AMX}


# ---------------------------------------------------------------------------
# Shared structs.

ctypedef unsigned long long u64


cdef struct Layer:
    Py_ssize_t n_in, n_out
    int act
    double act_param
    double steepness         # f(s * (X @ W + b)); 1: none
    double flat_lo, flat_hi  # training: f' from Y clipped into [lo, hi] when lo < hi
    void *W         # (n_in, n_out) parameters
    void *b         # (n_out,) or NULL without bias
    void *A         # (max_rows, n_out) output of the layer, f(X @ W + b)
    void *Z         # (max_rows, n_out) its activation inputs while training, or NULL:
                    # kept only for the FNN_ACT_FROM_INPUT activations
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


# The thread governor's state (_engine_threads.pxi), kept by a Trainer
# across its runs: zero-initialised means nothing measured yet.
cdef struct Governor:
    double sec_per_row[2]   # [one thread, the team]: measured, 0 until then
    bint on_team            # the current choice
    double next_probe       # when to try the other count (in governed_seconds)
    double probe_wait       # seconds from the last try to the next; 0: a new governor
    Py_ssize_t n_weights, batch_size   # the run's shape: whose speeds sec_per_row are


cdef struct Ctx:
    int n_layers
    Layer *layers
    int kernel
    int loss
    int opt               # the update rule: OPT_* of _engine_optim.pxi
    void *hyper           # its hyper-parameters (a Hyper of _engine_optim.pxi)
    long long step0       # optimizer steps taken before this epoch
    long long n_steps     # steps (batches) finished by this run_epoch (written by thread 0)
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
    bint grad_sums        # gradients as sums over the batch's (weighted) rows, not
                          # means: a data-parallel step adds the ranks' sums
    double loss_sum       # written by thread 0
    int status            # STATUS_*: why the epoch ended
    bint check_inputs     # check every sample's inputs for NaN/inf as the batch is formed
    long bad_input        # set (atomically) by any thread that found one
    Poll poll             # signals: stop after the batch in progress ...
    bint abort_on_signal  # ... or at once (gradients: nothing to keep)
    Py_ssize_t n_done     # samples trained on so far (written by thread 0)
    char **work           # per-thread GEMM scratch
    char *pack            # operands packed once per product for all its tiles
                          # (shared by the team; NULL: none), pack_arena_bytes
    long claims[3 * MAX_THREADS]  # the team's claim counters (see claim)
    Governor governor     # one thread or the team, slice by slice (_engine_threads.pxi)


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


cdef enum:
    STATUS_OK = 0
    STATUS_NOT_FINITE = 1    # the loss of a batch was NaN or infinite
    STATUS_SIGNAL = 2        # a signal handler raised: stopped after the last finished batch
    STATUS_BAD_INPUT = 3     # a sample's inputs were NaN or infinite (check_inputs)
