# Tiles and the thread team (included by _engine.pyx).
#
# Threads: one OpenMP team per epoch.  Every stage of a step (gather, forward
# per layer, loss, backward, update) is split into a fixed list of tasks that
# depends on the shapes only, never on the number of threads; threads claim
# the tasks of a stage from shared counters (claim: each its own block
# first) and an orphaned barrier separates the stages.  A task always does the same arithmetic in the same
# order whoever runs it, so results are bit-identical for any ``n_threads``.
#
# Signals: thread 0 of a team runs in the caller's thread, and when that is
# Python's main thread it runs the signal handlers (``PyErr_CheckSignals``)
# at most every POLL_SECONDS.  When a handler raised, its exception stays set
# in the caller's thread, the team stops (inference and ``gradients`` at the
# next tile or chunk, training after the batch in progress, so the model is as
# at the last finished batch) and the call raises it.  ``fit`` turns a
# KeyboardInterrupt into a normal return (``run_epoch``'s "interrupted").


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


# The kernel "amx" runs large float32 products on the AMX tile unit
# (csrc/fnn_amx.c: float32 accuracy, 1.1-1.5x the FMAs' speed on large
# products; the rest on the AVX-512 kernel).  Both operands are then packed
# once per product in the tiles' layout (plan_packing), and the same output
# tiles as the FMA kernel's read their blocks from there (gemm_block): the
# choice depends on the product's shape and role only, never on the thread
# count.
cdef enum ProductRole:
    PREDICT_PRODUCT     # each thread on its own rows
    STEP_PRODUCT        # a training step's forward or delta, shared by the team
    GRADIENT_PRODUCT    # a training step's weight gradient, X.T @ D


cdef inline bint amx_product(int kernel, size_t itemsize, Py_ssize_t M, Py_ssize_t N,
                             Py_ssize_t K, ProductRole role) noexcept nogil:
    """Whether the product runs on the tiles (the limits: _engine_decl.pxi)."""
    cdef bint wide
    if not (kernel == FNN_KERNEL_AMX and itemsize == sizeof(float) and M >= AMX_MIN_ROWS
            and N >= AMX_MIN_COLS and K >= AMX_MIN_DEPTH):
        return False
    if role != PREDICT_PRODUCT:
        wide = N >= AMX_STEP_MIN_COLS and K >= AMX_STEP_MIN_DEPTH
        if not (wide or (role == GRADIENT_PRODUCT and M >= AMX_GRADIENT_MIN_ROWS)):
            return False
    return fnn_amx_available()      # (asks the OS once, if no one has yet)


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


def affinity_cores():
    """The CPUs this process may run on (its affinity mask), or 0 when unknown."""
    return fnn_affinity_cores()


def environ_value(str name):
    """``os.environ.get(name)``, read from the C environment (which
    ``os.environ`` assignments update): os.environ's lookup costs about a
    microsecond, too much for every one-row predict."""
    cdef bytes key = name.encode()
    cdef const char *value = getenv(key)
    return None if value == NULL else value.decode("utf-8", "surrogateescape")


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
    """Tile ``t`` of an M x N product, numbered down the columns of tiles
    (so that a thread's block of tiles, see claim, is whole columns: the
    same weight columns in the forward and in the update)."""
    cdef Py_ssize_t tm = tile_m(kernel, M), tn = tile_n(kernel, N)
    cdef Py_ssize_t n_tm = (M + tm - 1) // tm
    cdef Tile tile
    tile.i0, tile.j0 = (t % n_tm) * tm, (t // n_tm) * tn
    tile.mb, tile.nb = min(tm, M - tile.i0), min(tn, N - tile.j0)
    return tile


# Operands packed once per product.  Each tile call of fastnn's kernels packs
# the operands it reads (B always, A for the weight updates and for rows a
# multiple of 4 KiB apart), so with several column tiles every tile packed
# the same A rows again, and with several row tiles the same B columns
# (4 times each for the 1024-wide layers).  A training product whose tiles
# would do that (fnn_gemm_prepack) gets a stage of its own first: the team
# packs the operand once into the shared arena (Ctx.pack, PACK_PARTS tasks
# per operand), and after a barrier every tile reads its panels from there.
# Packing copies values, so results do not change.
cdef struct Packed:
    const void *pa      # op(A) packed whole, or NULL
    const void *pb      # op(B) packed whole, or NULL
    bint amx            # both, by fnn_amx_pack_a/b: the product runs on AMX tiles


cdef struct PackOp:
    bint is_a
    bint amx            # in the AMX tiles' layout (fnn_amx_pack_a/b)
    int trans
    Py_ssize_t n, K     # op(A) is n x K, or op(B) is K x n
    const void *src
    Py_ssize_t ld
    void *dst


cdef inline size_t whole_lines(size_t nbytes) noexcept nogil:
    """``nbytes`` rounded up to whole cache lines (buffers placed one after
    another in an arena all start on a line)."""
    return (nbytes + CACHE_LINE - 1) // CACHE_LINE * CACHE_LINE


cdef inline size_t packed_bytes(int kernel, size_t itemsize, bint is_a, Py_ssize_t n,
                                Py_ssize_t K) noexcept nogil:
    """Bytes one packed operand takes in the arena (whole cache lines), in
    whichever layout the product uses."""
    cdef size_t nb = (fnn_gemm_packed_a_bytes(kernel, itemsize, n, K) if is_a
                      else fnn_gemm_packed_b_bytes(kernel, itemsize, n, K))
    if kernel == FNN_KERNEL_AMX and itemsize == sizeof(float):
        nb = max(nb, fnn_amx_packed_bytes(n, K))
    return whole_lines(nb)


cdef void *add_pack_op(int kernel, size_t itemsize, char *arena, PackOp *ops, int *n_ops,
                       size_t *used, bint is_a, bint amx, int trans, Py_ssize_t n, Py_ssize_t K,
                       const void *src, Py_ssize_t ld) noexcept nogil:
    """Append one operand to pack at the arena's next free byte; returns where."""
    cdef PackOp *op = &ops[n_ops[0]]
    op.is_a, op.amx, op.trans, op.n, op.K, op.src, op.ld = is_a, amx, trans, n, K, src, ld
    op.dst = arena + used[0]
    used[0] += packed_bytes(kernel, itemsize, is_a, n, K)
    n_ops[0] += 1
    return op.dst


cdef Packed plan_packing(floating *proto, int kernel, char *arena, PackOp *ops, int *n_ops,
                         size_t *used, int ta, int tb, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                         const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                         const fnn_epilogue *ep) noexcept nogil:
    """Which operands of this product to pack once (added to ops, placed in
    the arena after ``used`` bytes); every thread computes the same plan."""
    cdef Packed p
    cdef int flags = 0
    p.pa = p.pb = NULL
    # (in a step, op(A) is transposed in the weight gradients only)
    p.amx = arena != NULL and amx_product(kernel, sizeof(floating), M, N, K,
                                          GRADIENT_PRODUCT if ta else STEP_PRODUCT)
    if p.amx:
        flags = FNN_PREPACK_A | FNN_PREPACK_B
    elif arena != NULL:
        flags = fnn_gemm_prepack(kernel, sizeof(floating), ta, tb, M, N, K, lda,
                                 tile_m(kernel, M), tile_n(kernel, N), ep)
    if flags & FNN_PREPACK_A:
        p.pa = add_pack_op(kernel, sizeof(floating), arena, ops, n_ops, used,
                           True, p.amx, ta, M, K, A, lda)
    if flags & FNN_PREPACK_B:
        p.pb = add_pack_op(kernel, sizeof(floating), arena, ops, n_ops, used,
                           False, p.amx, tb, N, K, B, ldb)
    return p


cdef void gemm_tile(floating *proto, int kernel, Py_ssize_t t, int ta, int tb,
                    Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                    const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                    floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work,
                    Packed packed) noexcept nogil:
    """Tile ``t`` of C = epilogue(op(A) @ op(B)); ``packed``: the operands
    packed whole for the product (plan_packing), or NULLs."""
    gemm_block(proto, kernel, tile_bounds(kernel, t, M, N), ta, tb, K, A, lda, B, ldb,
               C, ldc, ep, work, packed)


cdef void gemm_block(floating *proto, int kernel, Tile tile, int ta, int tb, Py_ssize_t K,
                     const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                     floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work,
                     Packed packed) noexcept nogil:
    """The block ``tile`` of C = epilogue(op(A) @ op(B)) (gemm_tile)."""
    cdef Py_ssize_t i0 = tile.i0, j0 = tile.j0, mb = tile.mb, nb = tile.nb
    cdef fnn_epilogue e = ep[0]
    cdef const floating *pa = <const floating *>packed.pa
    cdef const floating *pb = <const floating *>packed.pb
    if e.bias != NULL:
        e.bias = (<const floating *>e.bias) + j0
    if e.Y != NULL:
        e.Y = (<const floating *>e.Y) + i0 * e.ldy + j0
    if e.Z != NULL:
        e.Z = (<floating *>e.Z) + i0 * e.ldz + j0
    if packed.amx:
        if floating is float:   # (amx_product: float32 only)
            fnn_amx_gemm_pp(mb, nb, K, <const char *>pa + fnn_amx_packed_offset(i0, K),
                            <const char *>pb + fnn_amx_packed_offset(j0, K),
                            C + i0 * ldc + j0, ldc, &e, work)
        return
    if pa == NULL and pb == NULL:
        gemm(proto, kernel, ta, tb, mb, nb, K,
             A + (i0 if ta else i0 * lda), lda,
             B + (j0 * ldb if tb else j0), ldb,
             C + i0 * ldc + j0, ldc, &e, work)
        return
    # the packed panels of this tile start at row i0 and column j0 (fnn_gemm.h)
    if floating is float:
        fnn_gemm_pp_s(kernel, ta, tb, mb, nb, K, A + (i0 if ta else i0 * lda), lda,
                      pa + i0 * K if pa != NULL else NULL,
                      B + (j0 * ldb if tb else j0), ldb, pb + j0 * K if pb != NULL else NULL,
                      C + i0 * ldc + j0, ldc, &e, work)
    else:
        fnn_gemm_pp_d(kernel, ta, tb, mb, nb, K, A + (i0 if ta else i0 * lda), lda,
                      pa + i0 * K if pa != NULL else NULL,
                      B + (j0 * ldb if tb else j0), ldb, pb + j0 * K if pb != NULL else NULL,
                      C + i0 * ldc + j0, ldc, &e, work)


# Per-row work of a step (gathering the batch, checking it, the losses and
# output deltas) is split into one block of consecutive rows per thread, cut
# at multiples of ROW_BLOCK rows: rows as narrow as 10 classes would otherwise
# put two threads' rows on one cache line (measured: the output stage was no
# faster on two threads than on one with rows dealt out in turn).
cdef struct RowBlock:
    Py_ssize_t r0, r1


cdef inline RowBlock row_block(Py_ssize_t rows, int tid, int nt) noexcept nogil:
    """Rows r0 <= r < r1 of thread ``tid`` of ``nt``."""
    cdef RowBlock blk
    cdef Py_ssize_t per = ((rows + nt - 1) // nt + ROW_BLOCK - 1) // ROW_BLOCK * ROW_BLOCK
    blk.r0 = min(rows, tid * per)
    blk.r1 = min(rows, blk.r0 + per)
    return blk


# Threads claim the tasks of a stage (tiles, packing parts, row blocks)
# from shared counters, so a thread that finishes early takes more.  Which
# thread runs a task never changes its result (tasks are fixed by the
# shapes), only the balance and where the data is: each thread first takes
# the tasks of its own block, [tid * count / nt, (tid + 1) * count / nt),
# then the rest of the others' blocks in turn.  The tasks of each stage are
# numbered so that a thread's block touches the same data stage after stage
# (tile_bounds: whole columns of tiles, the same weight columns in the
# forward and the update; pack_stage: the same share of each operand; the
# row blocks of the output stage: the rows this thread gathered), which
# stays in that core's cache instead of crossing to the other core's
# (measured, 784-256-128-10 at batch 256 on two threads: 0.190 s per epoch
# instead of 0.197-0.209 with one shared counter, the micro-kernels' CPU
# time 5% above one thread's instead of 23%).
cdef struct Team:
    int tid, nt
    long *counters       # 3 x MAX_THREADS claim counters shared by the team, zero at the start
    long long stage      # claimed stages this thread has begun
    int victim           # the block this thread claims from: its own (0), then the next ones


cdef inline Team make_team(long *counters, int tid, int nt) noexcept nogil:
    cdef Team team
    team.tid, team.nt, team.counters, team.stage, team.victim = tid, nt, counters, 0, 0
    return team


cdef inline long begin_stage(Team *team) noexcept nogil:
    """Start the next claimed stage; returns the index of its counters.

    Every thread runs the same sequence of stages with a barrier after each.
    Stage s uses counters s % 3 (one per block); thread 0 zeroes those of
    stage s + 1 now, which were last used by stage s - 2: every thread has
    passed the barrier that ended stage s - 1, and the barrier ending stage
    s publishes the zeros before anyone claims from them.
    """
    cdef long long s = team.stage
    cdef long *next_counters = &team.counters[((s + 1) % 3) * MAX_THREADS]
    cdef int v
    team.stage += 1
    team.victim = 0
    if team.tid == 0:
        for v in range(team.nt):
            fnn_atomic_store(&next_counters[v], 0)
    return s % 3


cdef inline Py_ssize_t claim(Team *team, long k, Py_ssize_t count) noexcept nogil:
    """The next task of stage ``k``'s ``count`` for this thread (its own
    block first, see above), or ``count`` when every task is taken."""
    cdef long *counters = &team.counters[k * MAX_THREADS]
    cdef Py_ssize_t first, end, t
    cdef int block
    if team.nt == 1:    # alone: no atomics, no blocks (tiny networks claim often)
        t = counters[0]
        counters[0] = t + 1
        return min(t, count)
    while team.victim < team.nt:
        block = (team.tid + team.victim) % team.nt
        first, end = block * count // team.nt, (block + 1) * count // team.nt
        t = first + fnn_atomic_fetch_add(&counters[block], 1)
        if t < end:
            return t
        team.victim += 1
    return count


cdef Packed NO_PACKING
NO_PACKING.pa = NO_PACKING.pb = NULL
NO_PACKING.amx = False


cdef void gemm_tasks(floating *proto, int kernel, int ta, int tb,
                     Py_ssize_t M, Py_ssize_t N, Py_ssize_t K,
                     const floating *A, Py_ssize_t lda, const floating *B, Py_ssize_t ldb,
                     floating *C, Py_ssize_t ldc, const fnn_epilogue *ep, void *work,
                     Team *team) noexcept nogil:
    """The tiles of one product this thread claims (a stage; no barrier)."""
    cdef Py_ssize_t count = n_tiles(kernel, M, N)
    cdef long k = begin_stage(team)
    cdef Py_ssize_t t = claim(team, k, count)
    while t < count:
        gemm_tile(proto, kernel, t, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work, NO_PACKING)
        t = claim(team, k, count)


cdef void pack_stage(floating *proto, int kernel, const PackOp *ops, int n_ops,
                     Team *team) noexcept nogil:
    """Pack the planned operands (a claimed stage and its barrier; nothing
    when there are none, on every thread alike).  Task t packs part
    t // n_ops of operand t % n_ops: a thread's block of tasks (claim) is
    the same share of every operand, the columns of op(B) its tiles read."""
    cdef Py_ssize_t t, count = n_ops * PACK_PARTS
    cdef int part
    cdef long k
    cdef const PackOp *op
    if n_ops == 0:
        return
    k = begin_stage(team)
    t = claim(team, k, count)
    while t < count:
        op = &ops[t % n_ops]
        part = t // n_ops
        if op.amx:
            if op.is_a:
                fnn_amx_pack_a(op.trans, op.n, op.K, <const float *>op.src, op.ld, op.dst,
                               part, PACK_PARTS)
            else:
                fnn_amx_pack_b(op.trans, op.n, op.K, <const float *>op.src, op.ld, op.dst,
                               part, PACK_PARTS)
        elif floating is float:
            if op.is_a:
                fnn_gemm_pack_a_s(kernel, op.trans, op.n, op.K, <const float *>op.src, op.ld,
                                  <float *>op.dst, part, PACK_PARTS)
            else:
                fnn_gemm_pack_b_s(kernel, op.trans, op.n, op.K, <const float *>op.src, op.ld,
                                  <float *>op.dst, part, PACK_PARTS)
        else:
            if op.is_a:
                fnn_gemm_pack_a_d(kernel, op.trans, op.n, op.K, <const double *>op.src, op.ld,
                                  <double *>op.dst, part, PACK_PARTS)
            else:
                fnn_gemm_pack_b_d(kernel, op.trans, op.n, op.K, <const double *>op.src, op.ld,
                                  <double *>op.dst, part, PACK_PARTS)
        t = claim(team, k, count)
    fnn_omp_barrier()


def pack_arena_bytes(int kernel, size_t itemsize, list sizes, Py_ssize_t batch_size):
    """Bytes of the shared arena for a network of layer ``sizes`` (n_in,
    n_out, ...) trained in batches of at most ``batch_size`` rows: the most
    that one stage may pack (forward l: its input rows and W[l]; backward
    phase l: the delta's D[l] and W[l], the updates' inputs and deltas),
    whatever is decided.  Pages never packed into are never touched."""
    cdef Py_ssize_t l, n = len(sizes) - 1, rows = batch_size
    cdef size_t stage, most = 0
    for l in range(n):
        most = max(most, packed_bytes(kernel, itemsize, True, rows, sizes[l])
                   + packed_bytes(kernel, itemsize, False, sizes[l + 1], sizes[l]))
        stage = 0
        if l > 0:
            stage = (packed_bytes(kernel, itemsize, True, rows, sizes[l + 1])
                     + packed_bytes(kernel, itemsize, False, sizes[l], sizes[l + 1]))
        for u in ((l + 1,) if l + 1 < n else ()) + ((0,) if l == 0 else ()):
            stage += (packed_bytes(kernel, itemsize, True, sizes[u], rows)
                      + packed_bytes(kernel, itemsize, False, sizes[u + 1], rows))
        most = max(most, stage)
    return most


def threads_for_batch(list weights, Py_ssize_t batch_size, int n_threads):
    """Threads worth using for a training step: small networks stay serial."""
    if n_threads <= 1 or not fnn_omp_enabled():
        return 1
    flops = 6.0 * batch_size * sum(W.shape[0] * W.shape[1] for W in weights)
    stages = 2 * len(weights) + 1
    return int(max(1, min(n_threads, MAX_THREADS, flops / stages / MIN_FLOPS_PER_THREAD_AND_STAGE)))


def empty_aligned(shape, dtype):
    """np.empty whose data starts on a cache line: the kernels' vector loads
    and stores are a line wide (AVX-512), and NumPy aligns to 16 bytes, which
    splits every one of them over two lines."""
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    cdef Py_ssize_t nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + CACHE_LINE, np.uint8)
    cdef Py_ssize_t start = <Py_ssize_t>(<char *>aligned(raw) - <char *>cnp.PyArray_DATA(raw))
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_array(shape, dtype, values):
    """empty_aligned, filled with ``values`` (a scalar, or an array that
    broadcasts to ``shape``, converted to ``dtype``)."""
    out = empty_aligned(shape, dtype)
    out[...] = values
    return out


cdef void *aligned(object arr):
    return <void *>(((<size_t>cnp.PyArray_DATA(arr)) + (CACHE_LINE - 1))
                     & ~(<size_t>(CACHE_LINE - 1)))


cdef void *data_or_null(object arr):
    return NULL if arr is None else cnp.PyArray_DATA(arr)


cdef void set_params(Layer *L, object W, object b, object activation):
    """A layer's shape, activation and parameter pointers (W, b stay owned by the caller).

    ``activation``: (code, param), optionally followed by the steepness and
    the flat spot's (lo, hi) bounds (Dense.activation_code)."""
    L.n_in, L.n_out = W.shape[0], W.shape[1]
    L.act, L.act_param = activation[0], activation[1]
    L.steepness = activation[2] if len(activation) > 2 else 1.0
    L.flat_lo, L.flat_hi = activation[3:5] if len(activation) > 4 else (0.0, 0.0)
    L.W = cnp.PyArray_DATA(W)
    L.b = data_or_null(b)


cdef list alloc_work(char **work, int n_threads, int kernel, size_t itemsize):
    """One 64-byte aligned GEMM scratch per thread; returns the arrays to keep alive."""
    cdef int i
    buffers = [np.empty(fnn_gemm_work_bytes(kernel, itemsize) + CACHE_LINE, np.uint8)
               for _ in range(n_threads)]
    for i in range(n_threads):
        work[i] = <char *>aligned(buffers[i])
    return buffers


# ---------------------------------------------------------------------------
# Signals (see the top of this file).

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

