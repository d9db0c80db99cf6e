# Losses and output deltas (included by _engine.pyx).
#
# The loss of each sample and its output delta are computed in one pass
# over the output row (softmax + cross-entropy gives ``P - T``).  Per-sample
# weights scale the output deltas, normalised by the batch's weight sum, as
# scikit-learn's MLP does.

from libc.math cimport log1p

# FANN's tanh error function (fann_compute_MSE) clips its transformed error
# to +-17 where |u| > 0.9999999; LAMBDA_CLIP is the loss at that point.
cdef double FANN_TANH_CLIP = 0.9999999
cdef double FANN_TANH_LAMBDA_CLIP = ((1.0 + FANN_TANH_CLIP) * log1p(FANN_TANH_CLIP)
                                     + (1.0 - FANN_TANH_CLIP) * log1p(-FANN_TANH_CLIP))


cdef inline double fann_tanh_error(double u) noexcept nogil:
    """FANN's transformed error of u = o - t, the derivative of fann_tanh_loss:
    log((1 + u) / (1 - u)), +-17 beyond +-0.9999999."""
    if u > FANN_TANH_CLIP:
        return 17.0
    if u < -FANN_TANH_CLIP:
        return -17.0
    return log1p(u) - log1p(-u)


cdef inline double fann_tanh_loss(double u, double *error) noexcept nogil:
    """(1 + u) log(1 + u) + (1 - u) log(1 - u), continued by lines of slope 17,
    and its derivative fann_tanh_error(u) into ``error``, from one pair of logs."""
    cdef double a = fabs(u), lp, lm
    if a > FANN_TANH_CLIP:
        error[0] = 17.0 if u > 0 else -17.0
        return FANN_TANH_LAMBDA_CLIP + 17.0 * (a - FANN_TANH_CLIP)
    lp = log1p(u)
    lm = log1p(-u)
    error[0] = lp - lm
    return (1.0 + u) * lp + (1.0 - u) * lm

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


cdef inline void softmax_row(floating *o, Py_ssize_t k) noexcept nogil:
    """The softmax of a row of logits, in place: exp(o_j - max) / sum, one exp
    per value in the row's own precision (inference; training takes
    log_sum_exp, which its cross-entropy needs anyway)."""
    cdef Py_ssize_t j
    cdef floating mx = o[0], inv
    cdef double s = 0.0
    for j in range(1, k):
        if o[j] > mx:
            mx = o[j]
    for j in range(k):
        if floating is float:
            o[j] = expf(o[j] - mx)
        else:
            o[j] = exp(o[j] - mx)
        s += o[j]
    inv = <floating>(1.0 / s)
    for j in range(k):
        o[j] *= inv


cdef inline double output_dact(const Layer *L, const floating *o, Py_ssize_t j) noexcept nogil:
    """f' of the output layer's unit j of the row ``o`` (of L.A): from the
    output, or from the same row of the kept inputs L.Z; clipped into the
    flat spot (fnn_activations.h).  The steepness is in output_row's scale."""
    cdef double u = o[j] if L.Z == NULL else (<const floating *>L.Z)[(o - <const floating *>L.A) + j]
    return fnn_dact_layer_d(L.act, u, L.act_param, 1.0, L.flat_lo, L.flat_hi)


cdef double output_row(Ctx *c, floating *o, floating *d, const floating *t,
                       Py_ssize_t k, double inv_rows) noexcept nogil:
    """Loss of one sample and its output delta, fused.

    ``o`` holds the output layer's values (logits when it is a softmax, which
    this turns into probabilities in place); ``d`` receives
    dLoss/d(pre-activation) of the batch-mean loss, which is ``inv_rows``
    times that of this sample's loss (1 / rows, or the sample's weight over
    the batch's weight sum, times the layer's steepness: the loss's
    derivative is taken with respect to s * z).
    """
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t j
    cdef double lse, loss = 0.0, g, dot, oj, p, s
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
    if c.loss == LOSS_FANN_TANH:
        # FANN's tanh error function: the loss sum_k L(s (o_k - t_k)) / s,
        # whose dE/do_k is FANN's transformed error; FANN halves the
        # difference of its symmetric outputs (s = 1/2)
        s = 0.5 if L.act == FNN_ACT_TANH or L.act == FNN_ACT_SIGN else 1.0
        if L.act == FNN_ACT_SOFTMAX:             # through the softmax Jacobian
            dot = 0.0
            for j in range(k):
                loss += fann_tanh_loss(<double>o[j] - t[j], &g)
                dot += g * o[j]
            for j in range(k):
                d[j] = <floating>(o[j] * (fann_tanh_error(<double>o[j] - t[j]) - dot)
                                  * inv_rows)
        else:
            for j in range(k):
                loss += fann_tanh_loss(s * (<double>o[j] - t[j]), &g) / s
                d[j] = <floating>(g * output_dact(L, o, j) * inv_rows)
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
            d[j] = <floating>((o[j] - t[j]) * output_dact(L, o, j) * inv_rows)
    return loss


cdef void output_stage(Ctx *c, const Batch *b, const floating *T, int tid, int nt) noexcept nogil:
    """Per-sample losses (times the sample's weight) and output deltas of
    this thread's rows (row_block)."""
    cdef RowBlock blk = row_block(b.rows, tid, nt)
    output_rows(c, b, T, blk.r0, blk.r1)


cdef void mse_rows(Ctx *c, const Layer *L, const floating *T, Py_ssize_t r0,
                   Py_ssize_t r1, double inv_rows) noexcept nogil:
    """output_row's mean squared error (no softmax, no sample weights) for
    rows r0..r1-1 in one loop, operation for operation as there: on a tiny
    network a call per row cost as much as the rows' arithmetic.  A sigmoid
    output's f' (no kept inputs, no flat spot) is fnn_dact_layer_d's
    1 * (u * (1 - u)), written out."""
    cdef Py_ssize_t r, j, k = L.n_out
    cdef const floating *o = <const floating *>L.A + r0 * k
    cdef floating *d = <floating *>L.D + r0 * k
    cdef const floating *t = T + r0 * k
    cdef double loss, g, u
    cdef bint sigmoid = L.act == FNN_ACT_SIGMOID and L.Z == NULL and not L.flat_lo < L.flat_hi
    if sigmoid and k == 1:
        # one output (0.0 + x is x: a loss is never -0)
        for r in range(r1 - r0):
            g = <double>o[r] - t[r]
            c.row_loss[r0 + r] = 0.5 * g * g
            u = o[r]
            d[r] = <floating>((o[r] - t[r]) * (u * (1.0 - u)) * inv_rows)
        return
    for r in range(r0, r1):
        loss = 0.0
        for j in range(k):
            g = <double>o[j] - t[j]
            loss += 0.5 * g * g
        if sigmoid:
            for j in range(k):
                u = o[j]
                d[j] = <floating>((o[j] - t[j]) * (u * (1.0 - u)) * inv_rows)
        else:
            for j in range(k):
                d[j] = <floating>((o[j] - t[j]) * output_dact(L, o, j) * inv_rows)
        c.row_loss[r] = loss
        o += k
        d += k
        t += k


cdef void output_rows(Ctx *c, const Batch *b, const floating *T, Py_ssize_t r0,
                      Py_ssize_t r1) noexcept nogil:
    """Per-sample losses (times the sample's weight) and output deltas of rows r0..r1-1."""
    cdef Layer *L = &c.layers[c.n_layers - 1]
    cdef Py_ssize_t r, k = L.n_out, rows = b.rows
    # the steepness s rides on the deltas' scale: d loss / dz = s d loss / d(s z);
    # data-parallel steps (grad_sums) take sums, scaled once all ranks added theirs
    cdef double inv_rows = L.steepness * (1.0 if c.grad_sums else 1.0 / rows), w, loss
    cdef double inv_weight = L.steepness * (1.0 if c.grad_sums else b.inv_weight)
    if c.sample_weight == NULL and c.loss == LOSS_MSE and L.act != FNN_ACT_SOFTMAX:
        mse_rows(c, L, T, r0, r1, inv_rows)
        return
    for r in range(r0, r1):
        if c.sample_weight == NULL:
            c.row_loss[r] = output_row(c, <floating *>L.A + r * k, <floating *>L.D + r * k,
                                       T + r * k, k, inv_rows)
        else:
            # scikit-learn: deltas * weight, gradients / the batch's weight sum
            w = c.sample_weight[sample_of(b, r)]
            loss = output_row(c, <floating *>L.A + r * k, <floating *>L.D + r * k,
                              T + r * k, k, w * inv_weight)
            c.row_loss[r] = w * loss if w != 0 else 0.0   # 0 * inf would be NaN

