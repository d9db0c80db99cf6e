# Test entry points (included by _engine.pyx): one product through the tiles,
# threads and epilogues; an optimizer's hyper-parameters; the training noise
# and the epochs' orders as the engine draws them; the thread governor.

def gemm_tiled(floating[:, ::1] A, floating[:, ::1] B, floating[:, ::1] C, *,
               bint trans_a=False, bint trans_b=False, int kind=0, int act=0,
               double act_param=0.0, double alpha=1.0, double beta=0.0,
               floating[::1] bias=None, floating[:, ::1] Y=None,
               int n_threads=1, int kernel=0, double steepness=0.0,
               double flat_lo=0.0, double flat_hi=0.0, floating[:, ::1] Z=None,
               bint prepack=False):
    """C = epilogue(op(A) @ op(B)) with the engine's tiling and threads
    (the epilogue's fields: see csrc/fnn_gemm.h; ``Z``, M x N, receives the
    activation inputs of a BIAS_ACT product).  ``prepack``: pack the
    operands the training step would pack once for all the tiles
    (plan_packing) and return which (FNN_PREPACK_A | FNN_PREPACK_B), else 0."""
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
    cdef long counters[3 * MAX_THREADS]
    cdef char *arena = NULL
    cdef int flags = 0
    memset(counters, 0, sizeof(counters))
    if prepack:
        arena_buf = np.empty(packed_bytes(kernel, C.itemsize, True, M, K)
                             + packed_bytes(kernel, C.itemsize, False, N, K) + CACHE_LINE, np.uint8)
        arena = <char *>aligned(arena_buf)
        flags = fnn_gemm_prepack(kernel, C.itemsize, trans_a, trans_b, M, N, K, A.shape[1],
                                 tile_m(kernel, M), tile_n(kernel, N), &ep)
    with nogil:
        if n_threads == 1:
            tiled_worker(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                         A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work, arena,
                         counters, 0, 1)
        else:
            with parallel(num_threads=n_threads):
                tid = fnn_omp_thread_num()
                nt = fnn_omp_num_threads()
                tiled_worker(<floating *>NULL, kernel, trans_a, trans_b, M, N, K, &A[0, 0],
                             A.shape[1], &B[0, 0], B.shape[1], &C[0, 0], N, &ep, work, arena,
                             counters, tid, nt)
    return flags


cdef void tiled_worker(floating *proto, int kernel, int ta, int tb,
                       Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                       const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                       floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, char **work,
                       char *arena, long *counters, int tid, int nt) noexcept nogil:
    cdef Team team = make_team(counters, tid, nt)
    cdef PackOp ops[2]
    cdef int n_ops = 0
    cdef size_t used = 0
    cdef Packed packed
    cdef Py_ssize_t t
    cdef long k
    if arena == NULL:
        gemm_tasks(proto, kernel, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work[tid], &team)
        return
    # as a step of training does it (forward_layers, backward_stage)
    packed = plan_packing(proto, kernel, arena, ops, &n_ops, &used, ta, tb, M, N, K,
                          A, lda, B, ldb, ep)
    pack_stage(proto, kernel, ops, n_ops, &team)
    cdef Py_ssize_t count = n_tiles(kernel, M, N)
    k = begin_stage(&team)
    t = claim(&team, k, count)
    while t < count:
        gemm_tile(proto, kernel, t, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work[tid], packed)
        t = claim(&team, k, count)


cdef extern from "fnn_kernels.h" nogil:
    void fnn_kvexp_avx2_s(int which, const float *x, float *y, Py_ssize_t n)
    void fnn_kvexp_avx512_s(int which, const float *x, float *y, Py_ssize_t n)


def vector_exp(const float[::1] x, str kernel, bint minus_one=False):
    """The float32 vector exp (or expm1) of the "avx2" or "avx512" kernel
    (csrc/fnn_activations.h), elementwise, as a new array."""
    if kernel not in ("avx2", "avx512") or not fnn_kernel_available(KERNELS[kernel]):
        raise ValueError(f"kernel {kernel!r} has no vector exp here")
    out = np.empty(x.shape[0], np.float32)
    cdef float[::1] y = out
    cdef bint avx2 = kernel == "avx2"
    if x.shape[0] == 0:
        return out
    with nogil:
        if avx2:
            fnn_kvexp_avx2_s(minus_one, &x[0], &y[0], x.shape[0])
        else:
            fnn_kvexp_avx512_s(minus_one, &x[0], &y[0], x.shape[0])
    return out


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


def alternate_threads_for_tests(bint on):
    """Train every batch as its own slice, alternating one thread and the
    team (_engine_threads.pxi), which must give the same results; returns
    the previous setting."""
    global alternate_for_tests
    previous = alternate_for_tests
    alternate_for_tests = on
    return previous


def governor_state(trainer):
    """(seconds per row on one thread, on the team, on the team now) of a
    Trainer's thread governor."""
    cdef Trainer t = trainer
    g = t.ctx.governor
    return g.sec_per_row[0], g.sec_per_row[1], bool(g.on_team)


def governor_update_for_tests(state, bint team, bint probe, Py_ssize_t rows, double seconds,
                              double now):
    """One governor_update on ``state`` = (seconds per row on one thread, on
    the team, on the team now, next try, wait); returns the new state."""
    cdef Governor g
    memset(&g, 0, sizeof(Governor))
    g.sec_per_row[0], g.sec_per_row[1], g.on_team, g.next_probe, g.probe_wait = state
    governor_update(&g, team, probe, rows, seconds, now)
    return g.sec_per_row[0], g.sec_per_row[1], bool(g.on_team), g.next_probe, g.probe_wait
