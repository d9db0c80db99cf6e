/* fnn_kernels_epi_tmpl.h - the GEMM's fused epilogue, part of
 * fnn_kernels_tmpl.h (included there, once per instantiation; no include
 * guard on purpose): the epilogue context, its vector form applied to the
 * accumulators in registers, and the scalar pass over a stored tile (see
 * "Epilogue" in fnn_kernels_tmpl.h). */

/* Full vector or the first n lanes. */
#define LDN(p, n) ((n) == VL ? VLOADU(p) : VLOADN(p, n))
#define STN(p, v, n) do { if ((n) == VL) VSTOREU(p, v); else VSTOREN(p, v, n); } while (0)

typedef struct {
    int mode;          /* FNN_EM_* */
    int act;
    int vact;          /* what the vector code applies: act, or linear (scalar pass) */
    int identity;      /* vact leaves acc + bias (FNN_ACT_IDENTITY) */
    int scalar_pass;   /* run FACT / FDACT over the stored tile */
    int clip;          /* flat-spot elimination: Y clipped into [flo, fhi] */
    T p, alpha, beta, s, flo, fhi;
    const T *bias;
    const T *Y;
    ptrdiff_t ldy;
    T *Z;              /* BIAS: receives the activation inputs (scalar pass) */
    ptrdiff_t ldz;
} KP(ectx);

/* Epilogue of one vector x = acc[i][j .. j+n-1], written to c = &C[i][j]. */
static inline FNN_KFUNC void KP(epi_vec)(const KP(ectx) *e, V x, T *c,
                                         ptrdiff_t i, ptrdiff_t j, int n)
{
    const V one = VSET1((T)1), zero = VZERO();
    switch (e->mode) {
    case FNN_EM_SCALE:
        x = VMUL(VSET1(e->alpha), x);
        break;
    case FNN_EM_AXPBY:
        x = VFMA(VSET1(e->beta), LDN(c, n), VMUL(VSET1(e->alpha), x));
        break;
    case FNN_EM_BIAS:
        if (e->bias) x = VADD(x, LDN(e->bias + j, n));
        switch (e->vact) {
        FNN_VACT_CASES(x, VSET1(e->p), one, zero)
        default: break;  /* identity (linear, softmax), or the scalar pass */
        }
        break;
    case FNN_EM_DERIV: {
        V y = LDN(e->Y + i * e->ldy + j, n), d;
        switch (e->vact) {
        FNN_VDACT_CASES(d, y, VSET1(e->p), one, zero)
        default: d = one; break;  /* linear, softmax, or the scalar pass */
        }
        x = VMUL(x, d);
        break;
    }
    default: break;
    }
    STN(c, x, n);
}

/* The scalar pass (activations without a vector form, a steepness, a flat
 * spot or kept inputs): fnn_act/fnn_dact over an mr x nr block of C that
 * already holds acc + bias (BIAS) or acc (DERIV).  Multiplying by s == 1 is
 * exact, so it needs no branch of its own. */
static FNN_KFUNC void KP(epi_scalar)(const KP(ectx) *e, T *c, ptrdiff_t ldc,
                                     ptrdiff_t i0, ptrdiff_t j0, ptrdiff_t mr, ptrdiff_t nr)
{
    const int act = e->act;
    const T p = e->p, s = e->s, flo = e->flo, fhi = e->fhi;
    for (ptrdiff_t r = 0; r < mr; r++) {
        T *cr = c + r * ldc;
        if (e->mode == FNN_EM_BIAS) {
            T *z = e->Z ? e->Z + (i0 + r) * e->ldz + j0 : NULL;
            for (ptrdiff_t q = 0; q < nr; q++) {
                T x = s * cr[q];
                if (z) z[q] = x;
                cr[q] = FACT(act, x, p);
            }
        } else {
            const T *y = e->Y + (i0 + r) * e->ldy + j0;
            for (ptrdiff_t q = 0; q < nr; q++)   /* fnn_activations.h, for T */
                cr[q] = cr[q] * _Generic((T)0, float: fnn_dact_layer_s,
                                         double: fnn_dact_layer_d)(act, y[q], p, s, flo, fhi);
        }
    }
}
