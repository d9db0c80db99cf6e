# One optimizer update as a call of its own (included by _engine.pyx): the
# fused per-tile rule of _engine_optim.pxi over a whole parameter array.  A
# data-parallel step (fastnn/distributed.py) updates this way once the ranks'
# gradient sums are added; the tests check each rule through it.

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
        elif n_g == 2:               # (2 ranks) one pass: the same sums as below
            g = Gs[1] + at
            for i in range(m):
                scratch[i] = (g0[i] + g[i]) * scale
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
