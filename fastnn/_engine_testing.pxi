# Test entry points (included by _engine.pyx): one product through the tiles,
# threads and epilogues; one optimizer update; the training noise as the
# engine draws it.

def gemm_tiled(floating[:, ::1] A, floating[:, ::1] B, floating[:, ::1] C, *,
               bint trans_a=False, bint trans_b=False, int kind=0, int act=0,
               double act_param=0.0, double alpha=1.0, double beta=0.0,
               floating[::1] bias=None, floating[:, ::1] Y=None,
               int n_threads=1, int kernel=0, double steepness=0.0,
               double flat_lo=0.0, double flat_hi=0.0, floating[:, ::1] Z=None):
    """C = epilogue(op(A) @ op(B)) with the engine's tiling and threads
    (the epilogue's fields: see csrc/fnn_gemm.h; ``Z``, M x N, receives the
    activation inputs of a BIAS_ACT product)."""
    cdef Py_ssize_t M = C.shape[0], N = C.shape[1]
    cdef Py_ssize_t K = A.shape[0] if trans_a else A.shape[1]
    cdef fnn_epilogue ep
    cdef int tid, nt
    cdef char *work[MAX_THREADS]
    if (A.shape[1] if trans_a else A.shape[0]) != M or (B.shape[0] if trans_b else B.shape[1]) != N \
            or (B.shape[1] if trans_b else B.shape[0]) != K:
        raise ValueError("operand shapes do not match")
    memset(&ep, 0, sizeof(ep))
    ep.kind, ep.act, ep.act_param, ep.alpha, ep.beta = kind, act, act_param, alpha, beta
    if bias is not None:
        ep.bias = &bias[0]
    if Y is not None:
        ep.Y, ep.ldy = &Y[0, 0], Y.shape[1]
    ep.steepness, ep.flat_lo, ep.flat_hi = steepness, flat_lo, flat_hi
    if Z is not None:
        if Z.shape[0] != M or Z.shape[1] != N:
            raise ValueError("Z must have C's shape")
        ep.Z, ep.ldz = &Z[0, 0], Z.shape[1]
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


cdef void summed_update(Ctx *c, const Batch *b, floating *P, floating **Gs, int n_g,
                        floating *S1, floating *S2, Py_ssize_t rows, Py_ssize_t cols,
                        floating scale, floating *scratch, Py_ssize_t n_scratch,
                        double *penalty) noexcept nogil:
    """optimizer_tile on scale * (Gs[0] + Gs[1] + ...), a few rows at a time:
    each block's sum is formed in ``scratch`` (in L1) just before the
    rule's pass over it - no extra pass over memory, and the Gs unchanged."""
    cdef Py_ssize_t i0 = 0, i, n, m, at, block = max(1, n_scratch // cols)
    cdef int q
    cdef floating *g
    cdef floating *g0
    cdef double part[2]
    while i0 < rows:
        n = min(block, rows - i0)
        at, m = i0 * cols, n * cols
        g0 = Gs[0] + at
        if n_g == 1:
            for i in range(m):
                scratch[i] = g0[i] * scale
        else:                        # the addends in their given order
            g = Gs[1] + at
            for i in range(m):
                scratch[i] = g0[i] + g[i]
            for q in range(2, n_g):
                g = Gs[q] + at
                for i in range(m):
                    scratch[i] += g[i]
            for i in range(m):
                scratch[i] *= scale
        optimizer_tile(c, b, P + at, scratch, S1 + at if S1 != NULL else NULL,
                       S2 + at if S2 != NULL else NULL, n, cols, cols,
                       part if penalty != NULL else NULL)
        if penalty != NULL:
            penalty[0] += part[0]
            penalty[1] += part[1]
        i0 += n


def optimizer_update(int optimizer, dict hyper, floating[:, ::1] P, floating[:, ::1] G,
                     floating[:, ::1] S1=None, floating[:, ::1] S2=None, *,
                     long long step=1, double l2=0.0, double l1=0.0, bint is_weight=True,
                     double weight_sum=1.0, double grad_scale=1.0, list more_G=None):
    """One update of the parameters ``P`` from the gradient ``G`` by the
    engine's fused pass (``optimizer_tile``), with the optimizer state S1, S2.

    ``hyper`` is ``Optimizer.engine_args()`` (see ``Trainer.set_optimizer``).
    ``is_weight`` applies the penalty (l2, l1), which is added to G in place.
    ``weight_sum``: the batch's number of rows (or sum of sample weights).
    For ``OPT_SGD`` this is the gradient-buffer form.  Returns the old P's
    (sum P^2, sum |P|) when the update is penalised, else (0, 0).

    ``grad_scale``, ``more_G`` (arrays of G's shape): the gradient is
    ``grad_scale * (G + more_G[0] + more_G[1] + ...)``, added in that order
    a few rows at a time in the same pass, and G is then left unchanged (a
    data-parallel step: the ranks' gradient sums times 1 / the weight sum).
    """
    cdef Ctx c
    cdef Batch b
    cdef Hyper h
    cdef double penalty[2]
    if G.shape[0] != P.shape[0] or G.shape[1] != P.shape[1]:
        raise ValueError("P and G must have the same shape")
    if (S1 is not None and (S1.shape[0] != P.shape[0] or S1.shape[1] != P.shape[1])) or \
            (S2 is not None and (S2.shape[0] != P.shape[0] or S2.shape[1] != P.shape[1])):
        raise ValueError("S1 and S2 must have P's shape")
    if optimizer not in STATE_BUFFERS or optimizer == OPT_NONE:
        raise ValueError(f"unknown optimizer code {optimizer}")
    if (S1 is not None) + (S1 is not None and S2 is not None) < STATE_BUFFERS[optimizer]:
        raise ValueError("this optimizer needs its state buffers S1 (and S2)")
    memset(&c, 0, sizeof(Ctx))
    memset(&b, 0, sizeof(Batch))
    memset(&h, 0, sizeof(Hyper))
    set_hyper(&h, optimizer, hyper)
    c.opt = optimizer
    c.hyper = &h
    b.step, b.l2, b.l1 = step, l2, l1
    b.weight_sum, b.inv_weight = weight_sum, (1.0 / weight_sum if weight_sum > 0 else 0.0)
    penalty[0] = penalty[1] = 0.0
    if P.shape[0] == 0 or P.shape[1] == 0:
        return 0.0, 0.0
    if grad_scale == 1.0 and not more_G:
        with nogil:
            optimizer_tile(&c, &b, &P[0, 0], &G[0, 0],
                           &S1[0, 0] if S1 is not None else NULL,
                           &S2[0, 0] if S2 is not None else NULL,
                           P.shape[0], P.shape[1], P.shape[1],
                           penalty if is_weight else NULL)
        return penalty[0], penalty[1]
    cdef floating[:, ::1] Gq
    cdef int q, n_g = 1 + (len(more_G) if more_G else 0)
    cdef Py_ssize_t n_scratch = max(2048, P.shape[1])
    if floating is float:
        scratch = np.empty(n_scratch, np.float32)
    else:
        scratch = np.empty(n_scratch, np.float64)
    cdef floating[::1] sv = scratch
    cdef floating **Gs = <floating **>malloc(n_g * sizeof(floating *))
    if Gs == NULL:
        raise MemoryError()
    try:
        Gs[0] = &G[0, 0]
        for q in range(1, n_g):
            Gq = more_G[q - 1]
            if Gq.shape[0] != P.shape[0] or Gq.shape[1] != P.shape[1]:
                raise ValueError("more_G must hold arrays of P's shape")
            Gs[q] = &Gq[0, 0]
        with nogil:
            summed_update(&c, &b, &P[0, 0], Gs, n_g,
                          &S1[0, 0] if S1 is not None else NULL,
                          &S2[0, 0] if S2 is not None else NULL,
                          P.shape[0], P.shape[1], <floating>grad_scale, &sv[0], n_scratch,
                          penalty if is_weight else NULL)
    finally:
        free(Gs)
    return penalty[0], penalty[1]


def hyper_parameters(int optimizer, dict hyper):
    """The struct of rule ``optimizer`` as the engine reads it from ``hyper``
    (for the tests: every field, by name)."""
    cdef Hyper h
    memset(&h, 0, sizeof(Hyper))
    return set_hyper(&h, optimizer, hyper)


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


def permutation(rng, Py_ssize_t n):
    """``rng.permutation(n)`` as ``run_epochs`` draws it, from the same
    generator (for the tests, which compare it with NumPy's)."""
    out = np.empty(n, np.int64)
    cdef bitgen_t *g = <bitgen_t *>PyCapsule_GetPointer(rng.bit_generator.capsule,
                                                        "BitGenerator")
    with rng.bit_generator.lock:
        draw_permutation(g, <long long *>cnp.PyArray_DATA(out), n)
    return out
