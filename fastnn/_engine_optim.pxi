# The weight penalty and the optimizers (included by _engine.pyx).
#
# The L2/L1 penalty of the weights is added to their gradient in the
# optimizer's pass over each tile (for plain SGD, which has no gradient
# buffer, as a shrink of the tile before its GEMM), which also sums the
# penalty of the old weights for the reported loss.  Each optimizer is one
# fused in-place pass over a tile of parameters and its gradient and state.

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

