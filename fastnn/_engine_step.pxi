# One training step, run by every thread of the team (included by _engine.pyx).
#
# A minibatch: gather (and check) its rows, forward layer by layer with the
# fused epilogue (dropout applied to each tile while it is in cache), the
# output deltas and losses, then the hidden deltas and the updates from the
# output back (update_layer_tile: the weight gradient's GEMM, then the
# optimizer's pass).  ``train_worker`` loops over the epoch's minibatches.

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


cdef inline bint aborted(Ctx *c, int tid) noexcept nogil:
    """Whether to stop claiming tiles: only where a batch may be abandoned
    (abort_on_signal), and then thread 0 also runs the handlers between tiles."""
    if not c.abort_on_signal:
        return False
    if tid == 0:
        return poll_signals(&c.poll)
    return poll_stopped(&c.poll)


cdef inline bint tail_fused(Ctx *c) noexcept nogil:
    """Whether the output layer runs in tail_stage: a narrow one (a single
    column tile), on fastnn's own kernels (whose blocks do not depend on
    their position; BLAS's may)."""
    cdef Layer *L = &c.layers[c.n_layers - 1]
    return c.kernel != FNN_KERNEL_BLAS and tile_n(c.kernel, L.n_out) >= L.n_out


cdef inline fnn_epilogue forward_epilogue(const Layer *L) noexcept nogil:
    """Layer L's training forward: f(acc + b), its inputs kept in Z when it keeps them."""
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_BIAS_ACT
    ep.act, ep.act_param, ep.steepness = L.act, L.act_param, L.steepness
    ep.bias = L.b
    ep.Z, ep.ldz = L.Z, L.n_out
    return ep


cdef inline fnn_epilogue delta_epilogue(const Layer *P) noexcept nogil:
    """The delta into layer P: acc * s f'(.) of P's output (flat spot included)."""
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_DERIV
    ep.act, ep.act_param, ep.steepness = P.act, P.act_param, P.steepness
    ep.flat_lo, ep.flat_hi = P.flat_lo, P.flat_hi
    ep.Y = P.Z if P.Z != NULL else P.A   # see fnn_gemm.h: FNN_EPI_DERIV
    ep.ldy = P.n_out
    return ep


cdef void tail_stage(Ctx *c, const Batch *b, const floating *X, const floating *T,
                     Team *team) noexcept nogil:
    """The output layer's forward, the losses and output deltas, and the delta
    into the layer below, by blocks of TAIL_ROWS rows: one stage (and one
    barrier) instead of three, whose work each depends on a row's own values
    only.  As separate stages they split badly over threads: the narrow
    forward is a single tile, and the rows of a 10-wide output are a few
    cache lines (measured, 784-256-128-10 at batch 256: 47 us on one thread,
    as much on two).  Every value is computed as the separate stages did
    (a block's entries do not depend on its position: fnn_gemm.h)."""
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Layer *P = &c.layers[c.n_layers - 2] if c.n_layers > 1 else NULL
    cdef Py_ssize_t t, rows = b.rows, count = (b.rows + TAIL_ROWS - 1) // TAIL_ROWS
    cdef long k
    cdef Tile blk
    cdef fnn_epilogue fwd, delta
    cdef void *work = c.work[team.tid]
    fwd = forward_epilogue(L)
    if P != NULL:
        delta = delta_epilogue(P)
    k = begin_stage(team)
    t = claim(team, k, count)
    while t < count and not aborted(c, team.tid):
        blk.i0, blk.j0 = t * TAIL_ROWS, 0
        blk.mb, blk.nb = min(<Py_ssize_t>TAIL_ROWS, rows - blk.i0), L.n_out
        gemm_block(<floating *>NULL, c.kernel, blk, 0, 0, L.n_in,
                   layer_input(c, <floating *>X, c.n_layers - 1), L.n_in,
                   <const floating *>L.W, L.n_out, <floating *>L.A, L.n_out, &fwd, work,
                   NO_PACKING)
        output_rows(c, b, T, blk.i0, blk.i0 + blk.mb)
        if P != NULL:
            blk.nb = L.n_in
            gemm_block(<floating *>NULL, c.kernel, blk, 0, 1, L.n_out,
                       <const floating *>L.D, L.n_out, <const floating *>L.W, L.n_out,
                       <floating *>P.D, P.n_out, &delta, work, NO_PACKING)
            if P.dropout:   # as backward_stage does
                dropout_tile(c, b, c.n_layers - 2, <floating *>P.D, <const floating *>P.D, blk)
        t = claim(team, k, count)
    fnn_omp_barrier()


cdef void forward_layers(Ctx *c, const Batch *b, const floating *X, Team *team,
                         Py_ssize_t n_layers) noexcept nogil:
    """Layers 0 .. n_layers-1 forward."""
    cdef Py_ssize_t l, t, count, rows = b.rows
    cdef long k
    cdef Layer *L
    cdef fnn_epilogue ep
    cdef const floating *inp = X
    cdef PackOp ops[MAX_PACK_OPS]
    cdef int n_ops
    cdef size_t used
    cdef Packed packed
    for l in range(n_layers):
        L = &c.layers[l]
        ep = forward_epilogue(L)
        n_ops, used = 0, 0
        packed = plan_packing(<floating *>NULL, c.kernel, c.pack, ops, &n_ops, &used, 0, 0,
                              rows, L.n_out, L.n_in, inp, L.n_in, <const floating *>L.W,
                              L.n_out, &ep)
        pack_stage(<floating *>NULL, c.kernel, ops, n_ops, team)
        count = n_tiles(c.kernel, rows, L.n_out)
        k = begin_stage(team)
        t = claim(team, k, count)
        while t < count and not aborted(c, team.tid):
            gemm_tile(<floating *>NULL, c.kernel, t, 0, 0, rows, L.n_out, L.n_in,
                      inp, L.n_in, <const floating *>L.W, L.n_out,
                      <floating *>L.A, L.n_out, &ep, c.work[team.tid], packed)
            if L.dropout:      # while the tile is still in cache
                dropout_tile(c, b, l, <floating *>L.Aout, <const floating *>L.A,
                             tile_bounds(c.kernel, t, rows, L.n_out))
            t = claim(team, k, count)
        fnn_omp_barrier()
        inp = <const floating *>L.Aout


cdef inline bint sgd_in_place(Ctx *c, Layer *L) noexcept nogil:
    """Plain SGD: the update is a GEMM with beta = 1 straight into W."""
    return c.opt == OPT_SGD and L.gW == NULL


cdef Packed plan_update(Ctx *c, const Batch *b, Py_ssize_t l, const floating *X,
                        PackOp *ops, int *n_ops, size_t *used) noexcept nogil:
    """plan_packing for layer l's weight gradient, X.T @ D (update_layer_tile)."""
    cdef Layer *L = &c.layers[l]
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_STORE
    ep.alpha = 1.0
    ep.beta = 1.0 if sgd_in_place(c, L) else 0.0
    return plan_packing(<floating *>NULL, c.kernel, c.pack, ops, n_ops, used, 1, 0,
                        L.n_in, L.n_out, b.rows, layer_input(c, <floating *>X, l), L.n_in,
                        <const floating *>L.D, L.n_out, &ep)


cdef void update_layer_tile(Ctx *c, const Batch *b, Py_ssize_t l, Py_ssize_t t,
                            const floating *X, void *work, Packed packed) noexcept nogil:
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
    cdef double lr
    cdef fnn_epilogue ep
    memset(&ep, 0, sizeof(ep))
    ep.kind = FNN_EPI_STORE
    if sgd_in_place(c, L):
        # plain SGD: W += -lr * X.T @ D straight into the weights, after the
        # penalty's shrink of the same tile
        lr = sgd_lr(c)
        penalty[0] = penalty[1] = 0.0
        if b.l2 != 0 or b.l1 != 0:
            for i in range(mb):
                shrink_row(<floating *>L.W + (i0 + i) * L.n_out + j0, nb,
                           <floating>(1.0 - lr * b.l2), <floating>(lr * b.l1), penalty)
        ep.alpha = -lr
        ep.beta = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.W, L.n_out, &ep, work, packed)
    else:
        ep.alpha = 1.0
        gemm_tile(<floating *>NULL, c.kernel, t, 1, 0, L.n_in, L.n_out, rows,
                  inp, L.n_in, D, L.n_out, <floating *>L.gW, L.n_out, &ep, work, packed)
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
        if floating is float:
            fnn_colsum_s(D + j0 + jb, L.n_out, rows, nj, sums)
        else:
            fnn_colsum_d(D + j0 + jb, L.n_out, rows, nj, sums)
        for j in range(nj):
            if gb != NULL:
                gb[jb + j] = sums[j]
            else:
                bias[jb + j] -= <floating>sgd_lr(c) * sums[j]
        jb += BIAS_BLOCK
    if gb != NULL and c.opt != OPT_NONE:
        optimizer_tile(c, b, bias, gb,
                       <floating *>L.s1b + j0 if L.s1b != NULL else NULL,
                       <floating *>L.s2b + j0 if L.s2b != NULL else NULL,
                       1, nb, nb, NULL)


cdef void backward_stage(Ctx *c, const Batch *b, const floating *X, Team *team,
                         bint tail_done) noexcept nogil:
    """Hidden deltas and updates, layer by layer from the output.

    Phase l computes D[l-1] = (D[l] @ W[l].T) * f'(A[l-1]) with the old W[l],
    and in the same phase updates W[l+1], whose delta work is done; the last
    phase (l = 0) updates W[1] and W[0] together.  ``tail_done``: tail_stage
    computed the first phase's delta, and that phase (with no update) is skipped.
    """
    cdef Py_ssize_t l, t, t_delta, t_upd, t_first, count, rows = b.rows
    cdef long k
    cdef Layer *L
    cdef Layer *P
    cdef void *work = c.work[team.tid]
    cdef fnn_epilogue ep
    cdef PackOp ops[MAX_PACK_OPS]
    cdef int n_ops
    cdef size_t used
    cdef Packed p_delta, p_upd, p_first
    l = c.n_layers - 1
    if tail_done and l > 0:
        l -= 1
    while l >= 0:
        L = &c.layers[l]
        n_ops, used = 0, 0
        p_delta = p_upd = p_first = NO_PACKING
        t_delta = 0
        if l > 0:
            P = &c.layers[l - 1]
            t_delta = n_tiles(c.kernel, rows, L.n_in)
            ep = delta_epilogue(P)
            p_delta = plan_packing(<floating *>NULL, c.kernel, c.pack, ops, &n_ops, &used, 0, 1,
                                   rows, L.n_in, L.n_out, <const floating *>L.D, L.n_out,
                                   <const floating *>L.W, L.n_out, &ep)
        t_upd = 0
        if l + 1 < c.n_layers:
            t_upd = n_tiles(c.kernel, c.layers[l + 1].n_in, c.layers[l + 1].n_out)
            p_upd = plan_update(c, b, l + 1, X, ops, &n_ops, &used)
        t_first = 0
        if l == 0:
            t_first = n_tiles(c.kernel, L.n_in, L.n_out)
            p_first = plan_update(c, b, 0, X, ops, &n_ops, &used)
        pack_stage(<floating *>NULL, c.kernel, ops, n_ops, team)
        count = t_delta + t_upd + t_first
        k = begin_stage(team)
        t = claim(team, k, count)
        while t < count and not aborted(c, team.tid):
            if t < t_delta:
                gemm_tile(<floating *>NULL, c.kernel, t, 0, 1, rows, L.n_in, L.n_out,
                          <const floating *>L.D, L.n_out, <const floating *>L.W, L.n_out,
                          <floating *>P.D, P.n_out, &ep, work, p_delta)
                if P.dropout:
                    # f'(A) came from the undropped output; the mask and scale
                    # of the forward pass complete the chain rule.
                    dropout_tile(c, b, l - 1, <floating *>P.D, <const floating *>P.D,
                                 tile_bounds(c.kernel, t, rows, L.n_in))
            elif t < t_delta + t_upd:
                update_layer_tile(c, b, l + 1, t - t_delta, X, work, p_upd)
            else:
                update_layer_tile(c, b, 0, t - t_delta - t_upd, X, work, p_first)
            t = claim(team, k, count)
        if l == 0 and team.tid == 0 and poll_signals(&c.poll):
            # Before the batch's last barrier, which publishes it to the team:
            # everyone stops after this batch (train_worker).
            c.status = STATUS_SIGNAL
        fnn_omp_barrier()
        l -= 1


cdef void gather_rows(floating *dst, const floating *src, const long long *idx,
                      Py_ssize_t rows, Py_ssize_t width, int tid, int nt) noexcept nogil:
    cdef Py_ssize_t r
    cdef RowBlock blk = row_block(rows, tid, nt)
    for r in range(blk.r0, blk.r1):
        memcpy(dst + r * width, src + idx[r] * width, width * sizeof(floating))


cdef inline bint row_finite(const floating *x, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return fnn_finite_s(x, n)
    else:
        return fnn_finite_d(x, n)


cdef void check_rows(long *bad_input, const floating *rows_data, Py_ssize_t rows,
                     Py_ssize_t width, int tid, int nt) noexcept nogil:
    """Set the shared flag when one of this thread's rows (row_block) is not
    finite: the rows this thread gathered (gather_rows, noisy_rows split them
    alike), so no barrier is needed between them."""
    cdef Py_ssize_t r
    cdef RowBlock blk = row_block(rows, tid, nt)
    for r in range(blk.r0, blk.r1):
        if not row_finite(rows_data + r * width, width):
            fnn_atomic_store(bad_input, 1)


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
    cdef bint fused
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
        fused = tail_fused(c)
        forward_layers(c, &b, X, &team, c.n_layers - 1 if fused else c.n_layers)
        if fused:
            tail_stage(c, &b, X, T, &team)
        else:
            output_stage(c, &b, T, tid, nt)
            fnn_omp_barrier()
        backward_stage(c, &b, X, &team, fused)
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
            c.n_steps += 1
        start += rows
        if not isfinite(s):
            if tid == 0:
                c.status = STATUS_NOT_FINITE
            break
        # Set by thread 0 before the last barrier of backward_stage.
        if c.status == STATUS_SIGNAL:
            break


cdef void run_region(Ctx *c, bint is_double, int n_threads) noexcept nogil:
    """Run train_worker in one parallel region of n_threads (as start_team()
    allowed); run_team (_engine_threads.pxi) decides, slice by slice."""
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




def arrays_finite(list arrays):
    """True when every element of these C-contiguous float32/float64 arrays
    (None entries skipped) is finite: fit's check of the parameters after
    each epoch, one vectorised pass in C instead of a NumPy reduction per
    array (which cost more than a whole epoch of a tiny network)."""
    cdef object a
    for a in arrays:
        if a is None:
            continue
        if not a.flags.c_contiguous or a.dtype not in (np.float32, np.float64):
            if not np.isfinite(a).all():
                return False
        elif a.dtype == np.float32:
            if not fnn_finite_s(<const float *>cnp.PyArray_DATA(a), a.size):
                return False
        elif not fnn_finite_d(<const double *>cnp.PyArray_DATA(a), a.size):
            return False
    return True
