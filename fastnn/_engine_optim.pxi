# The optimizers and the weight penalty (included by _engine.pyx).
#
# One update rule = one code (the enum and OPTIMIZER_CODES), one struct of
# hyper-parameters, one tile function and one branch in each of
# ``set_hyper`` and ``optimizer_tile``, all in this file.  The Python
# optimizer (fastnn/optimizers.py) owns the defaults: its ``engine_args()``
# is this struct as a dict (Cython converts it, and refuses a missing
# field), so the engine repeats no default.  ``optimizer_tile`` picks the
# rule once per tile; each rule is one fused in-place pass over the tile's
# parameters, gradient and state (S1, S2: rows of ``ld`` elements).
#
# The L2/L1 penalty of the weights is added to their gradient row by row
# while the row is in L1 (for plain SGD, which has no gradient buffer, as a
# shrink of the tile before its GEMM), which also sums the penalty of the old
# weights for the reported loss.

cdef enum:
    OPT_SGD = 0        # plain SGD, straight into the weights
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3
    OPT_NONE = 4       # gradients only (Network.gradients): no update
    OPT_ADAMW = 5      # Adam with decoupled weight decay
    OPT_RMSPROP = 6
    OPT_RPROP = 7      # iRPROP- as in the paper, full batch
    OPT_RPROP_FANN = 8 # iRPROP- as FANN 2.x codes it
    OPT_QUICKPROP = 9  # FANN's Quickprop, full batch

# The codes as the Python layer names them (Optimizer.code).
OPTIMIZER_CODES = {"sgd": OPT_SGD, "momentum": OPT_MOMENTUM, "nesterov": OPT_NESTEROV,
                   "adam": OPT_ADAM, "none": OPT_NONE, "adamw": OPT_ADAMW,
                   "rmsprop": OPT_RMSPROP, "rprop": OPT_RPROP, "rprop_fann": OPT_RPROP_FANN,
                   "quickprop": OPT_QUICKPROP}
# The state buffers (S1, then S2) a rule cannot run without.
STATE_BUFFERS = {OPT_SGD: 0, OPT_NONE: 0, OPT_MOMENTUM: 1, OPT_NESTEROV: 1, OPT_ADAM: 2,
                 OPT_ADAMW: 2, OPT_RMSPROP: 1, OPT_RPROP: 2, OPT_RPROP_FANN: 2,
                 OPT_QUICKPROP: 2}


# ---------------------------------------------------------------------------
# Hyper-parameters: one struct per rule, field names as Optimizer.engine_args().

cdef struct SGDHyper:
    double lr

cdef struct MomentumHyper:        # momentum and nesterov
    double lr, momentum

cdef struct AdamHyper:
    double lr, beta1, beta2, eps
    bint step_size_correction     # corrections folded into the step size (scikit-learn)

cdef struct AdamWHyper:
    double lr, beta1, beta2, eps, weight_decay

cdef struct RMSpropHyper:
    double lr, rho, eps, momentum

cdef struct RPropHyper:           # both variants
    double increase_factor, decrease_factor, delta_min, delta_max

cdef struct QuickpropHyper:
    double lr, mu, decay

cdef union Hyper:
    SGDHyper sgd
    MomentumHyper momentum
    AdamHyper adam
    AdamWHyper adamw
    RMSpropHyper rmsprop
    RPropHyper rprop
    QuickpropHyper quickprop


cdef dict set_hyper(Hyper *h, int opt, dict values):
    """``h`` for rule ``opt`` from ``values`` (Optimizer.engine_args()): every
    field of the rule's struct, and no other key.  Returns the struct as read."""
    if opt == OPT_SGD:
        h.sgd = values
        known = h.sgd
    elif opt == OPT_MOMENTUM or opt == OPT_NESTEROV:
        h.momentum = values
        known = h.momentum
    elif opt == OPT_ADAM:
        h.adam = values
        known = h.adam
    elif opt == OPT_ADAMW:
        h.adamw = values
        known = h.adamw
    elif opt == OPT_RMSPROP:
        h.rmsprop = values
        known = h.rmsprop
    elif opt == OPT_RPROP or opt == OPT_RPROP_FANN:
        h.rprop = values
        known = h.rprop
    elif opt == OPT_QUICKPROP:
        h.quickprop = values
        known = h.quickprop
    elif opt == OPT_NONE:
        known = {}
    else:
        raise ValueError(f"unknown optimizer code {opt}")
    unknown = set(values) - set(known)
    if unknown:
        raise TypeError(f"unknown hyper-parameters {sorted(unknown)} for this optimizer; "
                        f"it takes {sorted(known)}")
    return known


cdef inline double sgd_lr(const Ctx *c) noexcept nogil:
    """Plain SGD's learning rate (its GEMM writes into the weights itself)."""
    return (<const Hyper *>c.hyper).sgd.lr


# ---------------------------------------------------------------------------
# The weight penalty.

cdef inline floating sign_of(floating x) noexcept nogil:
    """-1, 0 or 1 (0 for 0, as torch.sign)."""
    return <floating>((x > 0) - (x < 0))


cdef struct Penalty:
    double *sums       # (sum W^2, sum |W|) of the tile's old weights; NULL for biases
    double l2, l1      # this batch's coefficients


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


cdef inline void penalise(const Penalty *pen, floating *p, floating *g,
                          Py_ssize_t n) noexcept nogil:
    """The penalty of one row of weights, before the rule's pass over it."""
    if pen.sums != NULL and (pen.l2 != 0 or pen.l1 != 0):
        penalise_row(p, g, n, <floating>pen.l2, <floating>pen.l1, pen.sums)


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


# ---------------------------------------------------------------------------
# The update rules.  Each: (its hyper-parameters, the batch, the penalty, the
# tile: P, G, S1, S2 with rows x cols elements in rows of ld).

cdef void sgd_tile(const SGDHyper *h, const Batch *b, const Penalty *pen,
                   floating *P, floating *G, floating *S1, floating *S2,
                   Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """W -= lr * g (the gradient-buffer form of plain SGD)."""
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>h.lr
    cdef floating *p
    cdef floating *g
    for i in range(rows):
        p, g = P + i * ld, G + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            p[j] -= lr * g[j]


cdef void momentum_tile(const MomentumHyper *h, const Batch *b, const Penalty *pen,
                        floating *P, floating *G, floating *S1, floating *S2,
                        Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """scikit-learn's form: v = mu * v - lr * g, W += v (S1 = v)."""
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>h.lr, mu = <floating>h.momentum, v
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    for i in range(rows):
        p, g, s1 = P + i * ld, G + i * ld, S1 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            v = mu * s1[j] - lr * g[j]
            s1[j] = v
            p[j] += v


cdef void nesterov_tile(const MomentumHyper *h, const Batch *b, const Penalty *pen,
                        floating *P, floating *G, floating *S1, floating *S2,
                        Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """v = mu * v - lr * g, W += mu * v - lr * g (S1 = v)."""
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>h.lr, mu = <floating>h.momentum, v, gj
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    for i in range(rows):
        p, g, s1 = P + i * ld, G + i * ld, S1 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            gj = g[j]
            v = mu * s1[j] - lr * gj
            s1[j] = v
            p[j] += mu * v - lr * gj


cdef void adam_tile(const AdamHyper *h, const Batch *b, const Penalty *pen,
                    floating *P, floating *G, floating *S1, floating *S2,
                    Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """Adam (S1 = m, S2 = v), with its bias corrections on the moments
    (Algorithm 1) or folded into the step size (the paper's section 2)."""
    cdef Py_ssize_t i, j
    cdef floating b1 = <floating>h.beta1, b2 = <floating>h.beta2, eps = <floating>h.eps
    # 1 - beta in double: in float32, float32(0.999) is off by 1e-5 relative to 1 - 0.999
    cdef floating omb1 = <floating>(1.0 - h.beta1), omb2 = <floating>(1.0 - h.beta2)
    cdef floating lr = <floating>h.lr, c1, c2, step_lr, gj
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    step_lr = <floating>(h.lr * sqrt(1.0 - pow(h.beta2, <double>b.step))
                         / (1.0 - pow(h.beta1, <double>b.step)))
    c1 = <floating>(1.0 / (1.0 - pow(h.beta1, <double>b.step)))
    c2 = <floating>(1.0 / (1.0 - pow(h.beta2, <double>b.step)))
    for i in range(rows):
        p, g, s1, s2 = P + i * ld, G + i * ld, S1 + i * ld, S2 + i * ld
        penalise(pen, p, g, cols)
        if h.step_size_correction:
            # lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), W -= lr_t m / (sqrt(v) + eps)
            for j in range(cols):
                gj = g[j]
                s1[j] = b1 * s1[j] + omb1 * gj
                s2[j] = b2 * s2[j] + omb2 * gj * gj
                p[j] -= step_lr * s1[j] / (<floating>sqrt(s2[j]) + eps)
        else:
            for j in range(cols):
                gj = g[j]
                s1[j] = b1 * s1[j] + omb1 * gj
                s2[j] = b2 * s2[j] + omb2 * gj * gj
                p[j] -= lr * (s1[j] * c1) / (<floating>sqrt(s2[j] * c2) + eps)


cdef void adamw_tile(const AdamWHyper *h, const Batch *b, const Penalty *pen,
                     floating *P, floating *G, floating *S1, floating *S2,
                     Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """Loshchilov & Hutter / PyTorch: W *= 1 - lr * wd (weights only), then
    Adam's Algorithm 1 step."""
    cdef Py_ssize_t i, j
    cdef floating b1 = <floating>h.beta1, b2 = <floating>h.beta2, eps = <floating>h.eps
    cdef floating omb1 = <floating>(1.0 - h.beta1), omb2 = <floating>(1.0 - h.beta2)
    cdef floating lr = <floating>h.lr, c1, c2, gj, decay = 1
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    if pen.sums != NULL:
        decay = <floating>(1.0 - h.lr * h.weight_decay)
    c1 = <floating>(1.0 / (1.0 - pow(h.beta1, <double>b.step)))
    c2 = <floating>(1.0 / (1.0 - pow(h.beta2, <double>b.step)))
    for i in range(rows):
        p, g, s1, s2 = P + i * ld, G + i * ld, S1 + i * ld, S2 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            gj = g[j]
            s1[j] = b1 * s1[j] + omb1 * gj
            s2[j] = b2 * s2[j] + omb2 * gj * gj
            p[j] = p[j] * decay - lr * (s1[j] * c1) / (<floating>sqrt(s2[j] * c2) + eps)


cdef void rmsprop_tile(const RMSpropHyper *h, const Batch *b, const Penalty *pen,
                       floating *P, floating *G, floating *S1, floating *S2,
                       Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """PyTorch's form: s = rho s + (1 - rho) g^2 (S1); W -= lr g / (sqrt(s) + eps),
    or with momentum (S2 = buf): buf = mu buf + g / (sqrt(s) + eps), W -= lr buf."""
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>h.lr, mu = <floating>h.momentum, eps = <floating>h.eps
    cdef floating rho = <floating>h.rho, omrho = <floating>(1.0 - h.rho), gj
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    for i in range(rows):
        p, g, s1 = P + i * ld, G + i * ld, S1 + i * ld
        penalise(pen, p, g, cols)
        if S2 != NULL:
            s2 = S2 + i * ld
            for j in range(cols):
                gj = g[j]
                s1[j] = rho * s1[j] + omrho * gj * gj
                s2[j] = mu * s2[j] + gj / (<floating>sqrt(s1[j]) + eps)
                p[j] -= lr * s2[j]
        else:
            for j in range(cols):
                gj = g[j]
                s1[j] = rho * s1[j] + omrho * gj * gj
                p[j] -= lr * gj / (<floating>sqrt(s1[j]) + eps)


cdef void rprop_tile(const RPropHyper *h, const Batch *b, const Penalty *pen,
                     floating *P, floating *G, floating *S1, floating *S2,
                     Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """iRPROP- (Igel & Huesken 2000): S1 = previous gradient, S2 = step sizes."""
    cdef Py_ssize_t i, j
    cdef floating inc = <floating>h.increase_factor, dec = <floating>h.decrease_factor
    cdef floating dmin = <floating>h.delta_min, dmax = <floating>h.delta_max, gj, d, prod
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    for i in range(rows):
        p, g, s1, s2 = P + i * ld, G + i * ld, S1 + i * ld, S2 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            gj = g[j]
            prod = gj * s1[j]
            d = s2[j]
            if prod > 0:
                d = min(d * inc, dmax)
            elif prod < 0:
                d = max(d * dec, dmin)
                gj = 0     # no step, and no sign change seen next time
            if gj > 0:
                p[j] -= d
            elif gj < 0:
                p[j] += d
            s1[j] = gj
            s2[j] = d


# FANN's constants (fann_train.c): the floor of a step before it is scaled,
# the bound of every weight, and Quickprop's "was the last step zero" margin.
DEF FANN_MIN_STEP = 0.0001
DEF FANN_MAX_WEIGHT = 1500.0
DEF FANN_ZERO_STEP = 0.001


cdef void rprop_fann_tile(const RPropHyper *h, const Batch *b, const Penalty *pen,
                          floating *P, floating *G, floating *S1, floating *S2,
                          Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """FANN 2.x's fann_update_weights_irpropm, with g = -FANN's slope / n
    (same signs): the step grows also when g * g_prev == 0, a step is taken
    from max(previous step, 1e-4), a weight with g <= 0 moves by +step (so
    also on a sign change, where g is then set to 0), weights stay within
    +-1500.  S1 = previous gradient, S2 = step sizes."""
    cdef Py_ssize_t i, j
    cdef floating inc = <floating>h.increase_factor, dec = <floating>h.decrease_factor
    cdef floating dmin = <floating>h.delta_min, dmax = <floating>h.delta_max, gj, d, w
    cdef floating floor = <floating>FANN_MIN_STEP, bound = <floating>FANN_MAX_WEIGHT
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    for i in range(rows):
        p, g, s1, s2 = P + i * ld, G + i * ld, S1 + i * ld, S2 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            gj = g[j]
            d = max(s2[j], floor)
            if gj * s1[j] >= 0:
                d = min(d * inc, dmax)
            else:
                d = max(d * dec, dmin)
                gj = 0
            if gj > 0:             # FANN: slope < 0
                w = p[j] - d
                p[j] = w if w >= -bound else -bound
            else:
                w = p[j] + d
                p[j] = w if w <= bound else bound
            s1[j] = gj
            s2[j] = d


cdef void quickprop_tile(const QuickpropHyper *h, const Batch *b, const Penalty *pen,
                         floating *P, floating *G, floating *S1, floating *S2,
                         Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld) noexcept nogil:
    """FANN 2.x's fann_update_weights_quickprop (Fahlman 1988), in terms of the
    mean gradient g: FANN's slope summed over the n samples, plus decay * w,
    divided by n, is s = -g + decay * w / n, and its epsilon * slope is
    lr * s.  S1 = previous s, S2 = previous step; weights stay within +-1500."""
    cdef Py_ssize_t i, j
    cdef floating lr = <floating>h.lr, mu = <floating>h.mu
    cdef floating decay = <floating>(h.decay * b.inv_weight)
    cdef floating shrink = <floating>(h.mu / (1.0 + h.mu))
    cdef floating zero_step = <floating>FANN_ZERO_STEP, bound = <floating>FANN_MAX_WEIGHT
    cdef floating w, prev_step, slope, prev_slope, step
    cdef floating *p
    cdef floating *g
    cdef floating *s1
    cdef floating *s2
    for i in range(rows):
        p, g, s1, s2 = P + i * ld, G + i * ld, S1 + i * ld, S2 + i * ld
        penalise(pen, p, g, cols)
        for j in range(cols):
            w = p[j]
            prev_step = s2[j]
            slope = decay * w - g[j]
            prev_slope = s1[j]
            step = 0
            if prev_step > zero_step:
                if slope > 0:
                    step += lr * slope
                if slope > shrink * prev_slope:
                    step += mu * prev_step      # the largest step
                else:
                    step += prev_step * slope / (prev_slope - slope)   # the parabola's minimum
            elif prev_step < -zero_step:
                if slope < 0:
                    step += lr * slope
                if slope < shrink * prev_slope:
                    step += mu * prev_step
                else:
                    step += prev_step * slope / (prev_slope - slope)
            else:
                step += lr * slope               # last step zero: the linear term only
            s2[j] = step
            w += step
            p[j] = bound if w > bound else (-bound if w < -bound else w)
            s1[j] = slope


cdef void optimizer_tile(Ctx *c, const Batch *b, floating *P, floating *G, floating *S1,
                         floating *S2, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t ld,
                         double *penalty) noexcept nogil:
    """Fused in-place update of one tile of parameters from its gradient,
    by the rule of ``c.opt`` (chosen here, once per tile).

    ``penalty`` is NULL for biases; for weights it receives the (sum W^2,
    sum |W|) of the tile before the update when this batch has a penalty,
    which is then added to the gradient, row by row while the row is in L1.
    """
    cdef Hyper *h = <Hyper *>c.hyper
    cdef Penalty pen
    pen.sums, pen.l2, pen.l1 = penalty, b.l2, b.l1
    if penalty != NULL:
        penalty[0] = penalty[1] = 0.0
    if c.opt == OPT_SGD:
        sgd_tile(&h.sgd, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_MOMENTUM:
        momentum_tile(&h.momentum, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_NESTEROV:
        nesterov_tile(&h.momentum, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_ADAM:
        adam_tile(&h.adam, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_ADAMW:
        adamw_tile(&h.adamw, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_RMSPROP:
        rmsprop_tile(&h.rmsprop, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_RPROP:
        rprop_tile(&h.rprop, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_RPROP_FANN:
        rprop_fann_tile(&h.rprop, b, &pen, P, G, S1, S2, rows, cols, ld)
    elif c.opt == OPT_QUICKPROP:
        quickprop_tile(&h.quickprop, b, &pen, P, G, S1, S2, rows, cols, ld)
