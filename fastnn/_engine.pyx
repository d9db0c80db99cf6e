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
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport parallel
from libc.math cimport exp, log, sqrt, pow, isfinite
from libc.string cimport memcpy, memset
from libc.stdlib cimport malloc, free
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "Python.h":
    # Declared without "except -1": the engine clears the error itself and
    # reports Ctrl-C through its status.
    int PyErr_CheckSignals()
    void PyErr_Clear()

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

cdef extern from "fnn_omp.h" nogil:
    int fnn_omp_enabled()
    int fnn_omp_max_threads()
    int fnn_omp_thread_num()
    int fnn_omp_num_threads()
    void fnn_omp_barrier()

fnn_set_blas(<fnn_sgemm_fn>sgemm, <fnn_dgemm_fn>dgemm)

cdef enum:
    LOSS_MSE = 0
    LOSS_CROSS_ENTROPY = 1
    LOSS_BINARY_CROSS_ENTROPY = 2

cdef enum:
    OPT_SGD = 0        # plain SGD, straight into the weights
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3
    OPT_NONE = 4       # gradients only (Network.gradients)

# The codes as the Python layer names them.
LOSS_CODES = {"mse": LOSS_MSE, "cross_entropy": LOSS_CROSS_ENTROPY,
              "binary_cross_entropy": LOSS_BINARY_CROSS_ENTROPY}
OPTIMIZER_CODES = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV,
                   "adam": OPT_ADAM, "none": OPT_NONE}
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
    MAX_TILE_N = 512
    BIAS_BLOCK = 256        # columns of a bias gradient summed at once (on the stack)
    PREDICT_CHUNK = 256     # rows per inference task: one chunk runs the whole network


cdef inline Py_ssize_t tile_m(int kernel, Py_ssize_t M) noexcept nogil:
    if kernel == FNN_KERNEL_BLAS:
        return BLAS_TILE
    return M if M <= MAX_TILE_M else ROW_TILE


cdef inline Py_ssize_t tile_n(int kernel, Py_ssize_t N) noexcept nogil:
    if kernel == FNN_KERNEL_BLAS:
        return BLAS_TILE
    cdef Py_ssize_t tn = ((N + 3) // 4 + 31) // 32 * 32     # a quarter, in whole vectors
    return min(max(tn, <Py_ssize_t>MIN_TILE_N), <Py_ssize_t>MAX_TILE_N)


def openmp_enabled():
    """True when the extension was compiled with OpenMP."""
    return bool(fnn_omp_enabled())


def openmp_max_threads():
    """What OpenMP would use by default (OMP_NUM_THREADS or the core count)."""
    return fnn_omp_max_threads()


def kernel_available(str name):
    """True when this build has the kernel ``name`` and this CPU can run it."""
    return bool(fnn_kernel_available(KERNELS[name]))


cdef struct Layer:
    Py_ssize_t n_in, n_out
    int act
    double act_param
    void *W         # (n_in, n_out) parameters
    void *b         # (n_out,) or NULL without bias
    void *A         # (max_rows, n_out) output of the layer
    void *D         # (max_rows, n_out) delta of the layer
    void *gW        # gradient buffers: NULL for plain SGD, which updates in place
    void *gb
    void *s1W       # optimizer state: velocity (momentum) or first moment (Adam)
    void *s1b
    void *s2W       # second moment (Adam)
    void *s2b


cdef struct Ctx:
    int n_layers
    Layer *layers
    int kernel
    int loss
    int opt
    double lr, momentum, beta1, beta2, eps
    long long step0       # optimizer steps taken before this epoch
    # the epoch's data
    const void *X         # (n, n_in) samples
    const void *T         # (n, n_out) targets
    const long long *perm # order of the samples, or NULL for 0..n-1
    Py_ssize_t n, batch_size
    void *Xb              # gathered batch inputs / targets (when perm != NULL)
    void *Tb
    double *row_loss      # (batch_size,) per-sample loss of the current batch
    double loss_sum       # written by thread 0
    int status            # STATUS_*: why the epoch ended
    bint check_signals    # look for Ctrl-C between batches
    Py_ssize_t n_done     # samples trained on so far (written by thread 0)
    char **work           # per-thread GEMM scratch


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


cdef void gemm_tasks(floating *proto, int kernel, int ta, int tb,
                     Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                     floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work,
                     int tid, int nt) noexcept nogil:
    """This thread's share of the tiles of one product (no barrier)."""
    cdef Py_ssize_t t = tid, count = n_tiles(kernel, M, N)
    while t < count:
        gemm_tile(proto, kernel, t, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work)
        t += nt


# ---------------------------------------------------------------------------
# One training step, run by every thread of the team.

cdef inline const floating *layer_input(Ctx *c, floating *X, Py_ssize_t l) noexcept nogil:
    return X if l == 0 else <const floating *>c.layers[l - 1].A


cdef void forward_layers(Ctx *c, const floating *X, Py_ssize_t rows, int tid, int nt) noexcept nogil:
    cdef Py_ssize_t l
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
        gemm_tasks(<floating *>NULL, c.kernel, 0, 0, rows, L.n_out, L.n_in,
                   inp, L.n_in, <const floating *>L.W, L.n_out,
                   <floating *>L.A, L.n_out, &ep, c.work[tid], tid, nt)
        fnn_omp_barrier()
        inp = <const floating *>L.A


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
    dLoss/d(pre-activation) of the batch-mean loss.
    """
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t j
    cdef double lse, loss = 0.0, g, dot, oj
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


cdef void output_stage(Ctx *c, const floating *T, Py_ssize_t rows, int tid, int nt) noexcept nogil:
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t r, k = L.n_out
    cdef double inv_rows = 1.0 / rows
    r = tid
    while r < rows:
        c.row_loss[r] = output_row(c, <floating *>L.A + r * k, <floating *>L.D + r * k,
                                   T + r * k, k, inv_rows)
        r += nt


cdef void optimizer_tile(Ctx *c, floating *P, floating *G, floating *S1, floating *S2,
                         Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                         long long step) noexcept nogil:
    """Fused in-place update of one tile of parameters from its gradient."""
    cdef Py_ssize_t i, j, o
    cdef floating lr = <floating>c.lr, mu = <floating>c.momentum
    cdef floating b1 = <floating>c.beta1, b2 = <floating>c.beta2, eps = <floating>c.eps
    cdef floating c1, c2, g, v, mhat, vhat
    if c.opt == OPT_ADAM:
        c1 = <floating>(1.0 / (1.0 - pow(c.beta1, <double>step)))
        c2 = <floating>(1.0 / (1.0 - pow(c.beta2, <double>step)))
    for i in range(rows):
        for j in range(cols):
            o = i * ld + j
            g = G[o]
            if c.opt == OPT_SGD:
                P[o] -= lr * g
            elif c.opt == OPT_MOMENTUM or c.opt == OPT_NESTEROV:
                # scikit-learn's form: v = mu * v - lr * g
                v = mu * S1[o] - lr * g
                S1[o] = v
                if c.opt == OPT_NESTEROV:
                    P[o] += mu * v - lr * g
                else:
                    P[o] += v
            elif c.opt == OPT_ADAM:
                S1[o] = b1 * S1[o] + (1 - b1) * g
                S2[o] = b2 * S2[o] + (1 - b2) * g * g
                mhat = S1[o] * c1
                vhat = S2[o] * c2
                P[o] -= lr * mhat / (<floating>sqrt(vhat) + eps)


cdef void update_layer_tile(Ctx *c, Py_ssize_t l, Py_ssize_t t, const floating *X,
                            Py_ssize_t rows, long long step, void *work) noexcept nogil:
    """Tile ``t`` of layer l's weights (and its bias columns): gradient and update."""
    cdef Layer *L = &c.layers[l]
    cdef const floating *inp = layer_input(c, <floating *>X, l)
    cdef const floating *D = <const floating *>L.D
    cdef Tile tile = tile_bounds(c.kernel, t, L.n_in, L.n_out)
    cdef Py_ssize_t i0 = tile.i0, j0 = tile.j0, mb = tile.mb, nb = tile.nb
    cdef Py_ssize_t r, j
    cdef floating *gb
    cdef floating *bias
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_STORE
    if c.opt == OPT_SGD and L.gW == NULL:
        # plain SGD: W += -lr * X.T @ D straight into the weights
        ep.alpha = -c.lr
        ep.beta = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.W, L.n_out, &ep, work)
    else:
        ep.alpha = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.gW, L.n_out, &ep, work)
        if c.opt != OPT_NONE:
            optimizer_tile(c, <floating *>L.W + i0 * L.n_out + j0,
                           <floating *>L.gW + i0 * L.n_out + j0,
                           <floating *>L.s1W + i0 * L.n_out + j0 if L.s1W != NULL else NULL,
                           <floating *>L.s2W + i0 * L.n_out + j0 if L.s2W != NULL else NULL,
                           mb, nb, L.n_out, step)
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
        optimizer_tile(c, bias, gb,
                       <floating *>L.s1b + j0 if L.s1b != NULL else NULL,
                       <floating *>L.s2b + j0 if L.s2b != NULL else NULL,
                       1, nb, nb, step)


cdef void backward_stage(Ctx *c, const floating *X, Py_ssize_t rows, long long step,
                         int tid, int nt) noexcept nogil:
    """Hidden deltas and updates, layer by layer from the output.

    Phase l computes D[l-1] = (D[l] @ W[l].T) * f'(A[l-1]) with the old W[l],
    and in the same phase updates W[l+1], whose delta work is done.
    """
    cdef Py_ssize_t l, t, t_delta, t_upd
    cdef Layer *L
    cdef Layer *P
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
        t = tid
        while t < t_delta + t_upd:
            if t < t_delta:
                ep.act = P.act
                ep.act_param = P.act_param
                ep.Y = P.A
                ep.ldy = P.n_out
                gemm_tile(<floating *>NULL, c.kernel, t, 0, 1, rows, L.n_in, L.n_out,
                          <const floating *>L.D, L.n_out, <const floating *>L.W, L.n_out,
                          <floating *>P.D, P.n_out, &ep, c.work[tid])
            else:
                update_layer_tile(c, l + 1, t - t_delta, <const floating *>X, rows, step,
                                  c.work[tid])
            t += nt
        fnn_omp_barrier()
        if l == 0:
            t = tid
            t_upd = n_tiles(c.kernel, L.n_in, L.n_out)
            while t < t_upd:
                update_layer_tile(c, 0, t, <const floating *>X, rows, step, c.work[tid])
                t += nt
            fnn_omp_barrier()
        l -= 1


cdef void gather_rows(floating *dst, const floating *src, const long long *idx,
                      Py_ssize_t rows, Py_ssize_t width, int tid, int nt) noexcept nogil:
    cdef Py_ssize_t r
    r = tid
    while r < rows:
        memcpy(dst + r * width, src + idx[r] * width, width * sizeof(floating))
        r += nt


cdef enum:
    STATUS_OK = 0
    STATUS_NOT_FINITE = 1    # the loss of a batch was NaN or infinite
    STATUS_INTERRUPTED = 2   # Ctrl-C: stopped after the last finished batch


cdef bint interrupted() noexcept nogil:
    """True when a signal handler raised (Ctrl-C); the error is cleared and
    reported by the caller through the status instead."""
    cdef int pending
    with gil:
        pending = PyErr_CheckSignals()
        if pending != 0:
            PyErr_Clear()
    return pending != 0


cdef void train_worker(Ctx *c, floating *proto, int tid, int nt) noexcept nogil:
    """Every minibatch of one epoch; run by each thread of the team."""
    cdef Py_ssize_t start, rows, r, n_in = c.layers[0].n_in
    cdef Py_ssize_t n_out = c.layers[c.n_layers - 1].n_out
    cdef const floating *X
    cdef const floating *T
    cdef long long step = c.step0
    cdef double s
    start = 0
    while start < c.n:
        rows = min(c.batch_size, c.n - start)
        step += 1
        if c.perm != NULL:
            gather_rows(<floating *>c.Xb, <const floating *>c.X, c.perm + start, rows, n_in, tid, nt)
            gather_rows(<floating *>c.Tb, <const floating *>c.T, c.perm + start, rows, n_out, tid, nt)
            X = <const floating *>c.Xb
            T = <const floating *>c.Tb
            fnn_omp_barrier()
        else:
            X = <const floating *>c.X + start * n_in
            T = <const floating *>c.T + start * n_out
        forward_layers(c, X, rows, tid, nt)
        output_stage(c, T, rows, tid, nt)
        fnn_omp_barrier()
        backward_stage(c, X, rows, step, tid, nt)
        # Every thread sums the same row losses (written before the barriers
        # above), so all of them stop at the same batch when it is not finite.
        s = 0.0
        for r in range(rows):
            s += c.row_loss[r]
        if tid == 0:
            c.loss_sum += s
            c.n_done += rows
        start += rows
        if not isfinite(s):
            if tid == 0:
                c.status = STATUS_NOT_FINITE
            break
        # Ctrl-C: thread 0 (the caller's thread, which handles signals) looks
        # once per batch; the barrier publishes its answer to the team.
        if tid == 0 and c.check_signals and interrupted():
            c.status = STATUS_INTERRUPTED
        fnn_omp_barrier()
        if c.status == STATUS_INTERRUPTED:
            break


cdef void run_team(Ctx *c, bint is_double, int n_threads) noexcept nogil:
    cdef int tid, nt
    if n_threads <= 1 or not fnn_omp_enabled():
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
    return int(max(1, min(n_threads, flops / stages / MIN_FLOPS_PER_THREAD_AND_STAGE)))


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
    """
    cdef Ctx ctx
    cdef Layer *layers
    cdef char **work
    cdef list keep
    cdef object dtype
    cdef int n_threads
    cdef public object grad_W, grad_b

    def __cinit__(self, list weights, list biases, list activations, int loss,
                  Py_ssize_t batch_size, int n_threads, int kernel, int optimizer,
                  list state1=None, list state2=None, bint keep_gradients=False):
        cdef Py_ssize_t l, n_layers = len(weights)
        cdef Layer *L
        self.dtype = weights[0].dtype
        self.keep = []
        self.n_threads = threads_for_batch(weights, batch_size, n_threads)
        self.layers = <Layer *>malloc(n_layers * sizeof(Layer))
        self.work = <char **>malloc(self.n_threads * sizeof(char *))
        if self.layers == NULL or self.work == NULL:
            raise MemoryError()
        memset(self.layers, 0, n_layers * sizeof(Layer))
        memset(&self.ctx, 0, sizeof(Ctx))
        need_grad = keep_gradients or optimizer != OPT_SGD
        self.grad_W, self.grad_b = [], []
        for l in range(n_layers):
            W, b = weights[l], biases[l]
            L = &self.layers[l]
            set_params(L, W, b, activations[l])
            A = np.empty((batch_size, L.n_out), self.dtype)
            D = np.empty((batch_size, L.n_out), self.dtype)
            self.keep += [W, b, A, D]
            L.A, L.D = cnp.PyArray_DATA(A), cnp.PyArray_DATA(D)
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
        self.keep += [Xb, Tb, row_loss]
        self.keep += alloc_work(self.work, self.n_threads, kernel, self.dtype.itemsize)
        self.ctx.n_layers = n_layers
        self.ctx.layers = self.layers
        self.ctx.kernel = kernel
        self.ctx.loss = loss
        self.ctx.opt = optimizer
        self.ctx.batch_size = batch_size
        self.ctx.Xb, self.ctx.Tb = cnp.PyArray_DATA(Xb), cnp.PyArray_DATA(Tb)
        self.ctx.row_loss = <double *>cnp.PyArray_DATA(row_loss)
        self.ctx.work = self.work

    def __dealloc__(self):
        free(self.layers)
        free(self.work)

    def set_optimizer(self, double lr, double momentum=0.0, double beta1=0.9,
                      double beta2=0.999, double eps=1e-8, long long step=0):
        """Hyper-parameters for the next epoch; ``step`` is the count of past steps."""
        self.ctx.lr, self.ctx.momentum = lr, momentum
        self.ctx.beta1, self.ctx.beta2, self.ctx.eps = beta1, beta2, eps
        self.ctx.step0 = step

    def run_epoch(self, X, T, perm=None, bint check_signals=True):
        """Train on every minibatch of (X, T) in the order ``perm`` (row
        indices, all of X's rows or some of them; None: X's own order).

        Returns (sum of the per-sample losses, number of samples trained on,
        status): status is "ok", "not_finite" when the loss of a batch was not
        finite (training stopped after that batch) or "interrupted" on Ctrl-C
        (training stopped after the last finished batch).
        """
        cdef cnp.int64_t[::1] order
        self.ctx.X = cnp.PyArray_DATA(X)
        self.ctx.T = cnp.PyArray_DATA(T)
        self.ctx.n = X.shape[0]
        self.ctx.perm = NULL
        if perm is not None:
            # ``perm`` may list only some rows (a slice of an epoch's order).
            order = perm
            self.ctx.n = order.shape[0]
            self.ctx.perm = <const long long *>&order[0] if order.shape[0] else NULL
        self.ctx.loss_sum = 0.0
        self.ctx.n_done = 0
        self.ctx.status = STATUS_OK
        self.ctx.check_signals = check_signals
        cdef bint is_double = self.dtype == np.float64
        cdef int nt = self.n_threads
        with nogil:
            run_team(&self.ctx, is_double, nt)
        status = {STATUS_OK: "ok", STATUS_NOT_FINITE: "not_finite",
                  STATUS_INTERRUPTED: "interrupted"}[self.ctx.status]
        return self.ctx.loss_sum, self.ctx.n_done, status


# ---------------------------------------------------------------------------
# Inference: independent chunks of rows, each through the whole network.

cdef void forward_chunk(floating *proto, Layer *layers, int n_layers, int kernel,
                        void **packed, const floating *X, Py_ssize_t rows, floating **outs,
                        floating *scratch, Py_ssize_t ld_scratch,
                        void *work) noexcept nogil:
    """Rows of X through every layer.  ``outs[l]`` (when not NULL) receives
    layer l's output; other layers go through two halves of ``scratch``
    (rows ``ld_scratch`` apart).  ``packed[l]``: layer l's W pre-packed for
    ``kernel``, or NULL."""
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


cdef void predict_worker(floating *proto, Layer *layers, int n_layers, int kernel,
                         void **packed, const floating *X, Py_ssize_t n, floating **outs,
                         char *scratch, Py_ssize_t ld_scratch, char **work,
                         int tid, int nt) noexcept nogil:
    cdef Py_ssize_t chunk, r0, l, n_chunks = (n + PREDICT_CHUNK - 1) // PREDICT_CHUNK
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
        r0 = chunk * PREDICT_CHUNK
        for l in range(n_layers):
            my_outs[l] = outs[l] + r0 * layers[l].n_out if outs[l] != NULL else NULL
        forward_chunk(proto, layers, n_layers, kernel, packed, X + r0 * layers[0].n_in,
                      min(<Py_ssize_t>PREDICT_CHUNK, n - r0), my_outs,
                      my_scratch, ld_scratch, work[tid])
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
            int n_threads, int kernel):
    """Run X through the network.

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
    n_threads = int(max(1, min(n_threads, 256, (n + PREDICT_CHUNK - 1) // PREDICT_CHUNK,
                               flops / MIN_FLOPS_PER_THREAD_AND_STAGE)))
    if not fnn_omp_enabled():
        n_threads = 1
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
    with nogil:
        if n_threads == 1:
            if is_double:
                predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                               <const double *>x, n, <double **>outs, scr, ld_scr, work, 0, 1)
            else:
                predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                               <const float *>x, n, <float **>outs, scr, ld_scr, work, 0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                nt = fnn_omp_num_threads()
                if is_double:
                    predict_worker(<double *>NULL, layers, n_layers, kernel, packed,
                                   <const double *>x, n, <double **>outs, scr, ld_scr, work,
                                   tid, nt)
                else:
                    predict_worker(<float *>NULL, layers, n_layers, kernel, packed,
                                   <const float *>x, n, <float **>outs, scr, ld_scr, work,
                                   tid, nt)


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
    n_threads = max(1, min(n_threads, 256)) if fnn_omp_enabled() else 1
    works = alloc_work(work, n_threads, kernel, C.itemsize)
    with nogil:
        if n_threads == 1:
            gemm_tasks(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                       A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work[0], 0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                nt = fnn_omp_num_threads()
                gemm_tasks(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                           A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work[tid],
                           tid, nt)
