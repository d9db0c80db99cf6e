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
    int vexp;          /* vact's form is on the vector exp (KP(vact_exp) / KP(vdact_exp)) */
    int clip;          /* flat-spot elimination: Y clipped into [flo, fhi] */
    T p, alpha, beta, s, flo, fhi;
    const T *bias;
    const T *Y;
    ptrdiff_t ldy;
    T *Z;              /* BIAS: receives the activation inputs */
    ptrdiff_t ldz;
} KP(ectx);

#ifdef VLDEXP
/* The vector exp and the functions on it (fnn_activations.h): float32 only. */
typedef char KP(vexp_is_float32)[sizeof(T) == sizeof(float) ? 1 : -1];
FNN_DEFINE_VEXPF(FNN_KFUNC, KP(vexp), KP(vexpm1), KP(vsigm), KP(vtanh))
#define VEXP(x) KP(vexp)(x)
#define VEXPM1(x) KP(vexpm1)(x)
#define VSIGM(x) KP(vsigm)(x)
#define VTANH(x) KP(vtanh)(x)
#define KT_VEXP_PROPS (FNN_ACT_VEXP | FNN_ACT_VEXP_D)

/* The forms on the vector exp, out of line: inlined into every vector of
 * the unrolled micro-kernels they would multiply its code many times over.
 * They return the vector (a void function taking one would return with the
 * upper halves of the registers dirty, and its caller, assuming them clean,
 * would not clear them: the engine's SSE code then runs several times
 * slower on Intel). */
static FNN_NOINLINE FNN_KFUNC V KP(vact_exp)(int act, V x, V p)
{
    const V one = VSET1((T)1), zero = VZERO();
    (void)one, (void)zero;
    switch (act) {
    FNN_VACT_EXP_CASES(x, p, one, zero)
    default: break;
    }
    return x;
}

/* The same over rows 0..mr-1 of a stored column of vectors (c, ldc; the
 * first n lanes): one call per narrow tile instead of one per row, with no
 * accumulator live across it.  The same operations, lane by lane, as
 * KP(vact_exp). */
static FNN_NOINLINE FNN_KFUNC void KP(vact_exp_rows)(int act, T *c, ptrdiff_t ldc, int mr, int n,
                                                     T p)
{
    const V one = VSET1((T)1), zero = VZERO(), pv = VSET1(p);
    (void)one, (void)zero, (void)pv;
    for (int r = 0; r < mr; r++, c += ldc) {
        V x = LDN(c, n);
        switch (act) {
        FNN_VACT_EXP_CASES(x, pv, one, zero)
        default: break;
        }
        STN(c, x, n);
    }
}

static FNN_NOINLINE FNN_KFUNC V KP(vdact_exp)(int act, V y, V p)
{
    const V one = VSET1((T)1), zero = VZERO();
    V d = one;
    (void)p;
    switch (act) {
    FNN_VDACT_EXP_CASES(d, y, p, one, zero)
    default: break;
    }
    return d;
}

/* Test hook: y = exp(x) (which == 0) or expm1(x) (which == 1), n elements. */
void KP(fnn_kvexp)(int which, const T *x, T *y, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i += VL) {
        int m = n - i < VL ? (int)(n - i) : VL;
        V v = LDN(x + i, m);
        STN(y + i, which ? VEXPM1(v) : VEXP(v), m);
    }
}
#else
#define KT_VEXP_PROPS 0
#endif

/* Whether the activation's forward (deriv == 0) or derivative has a vector
 * form in this kernel. */
static inline int KP(has_vec)(int act, int deriv)
{
    return FNN_ACT_HAS(act, (deriv ? FNN_ACT_VEC_D | (KT_VEXP_PROPS & FNN_ACT_VEXP_D)
                                   : FNN_ACT_VEC | (KT_VEXP_PROPS & FNN_ACT_VEXP)));
}

/* Epilogue of one vector x = acc[i][j .. j+n-1], written to c = &C[i][j]. */
static FNN_ALWAYS_INLINE FNN_KFUNC void KP(epi_vec)(const KP(ectx) *e, V x, T *c,
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
        if (!e->scalar_pass) {  /* (else the scalar pass scales, and keeps x) */
            if (e->s != 1) x = VMUL(VSET1(e->s), x);
            if (e->Z) STN(e->Z + i * e->ldz + j, x, n);
        }
#ifdef VLDEXP
        if (e->vexp) {
            x = KP(vact_exp)(e->vact, x, VSET1(e->p));
            break;
        }
#endif
        switch (e->vact) {
        FNN_VACT_CASES(x, VSET1(e->p), one, zero)
        default: break;  /* identity (linear, softmax), or the scalar pass */
        }
        break;
    case FNN_EM_DERIV: {
        V y = LDN(e->Y + i * e->ldy + j, n), d;
        if (e->clip && !e->scalar_pass) {  /* as fnn_dact_layer: y < lo ? lo : (y > hi ? hi : y) */
            const V lo = VSET1(e->flo), hi = VSET1(e->fhi);
            y = VSELGT(VSUB(lo, y), lo, VSELGT(VSUB(y, hi), hi, y));
        }
        switch (e->vact) {
        FNN_VDACT_CASES(d, y, VSET1(e->p), one, zero)
        default: d = one; break;  /* linear, softmax, or the scalar pass */
        }
#ifdef VLDEXP
        if (e->vexp) d = KP(vdact_exp)(e->vact, y, VSET1(e->p));
#endif
        if (e->s != 1 && !e->scalar_pass) d = VMUL(VSET1(e->s), d);  /* as fnn_dact_layer: s f' */
        x = VMUL(x, d);   /* (the scalar pass applies s and the flat spot itself) */
        break;
    }
    default: break;
    }
    STN(c, x, n);
}

/* The scalar pass (activations without a vector form here): fnn_act /
 * fnn_dact_layer over an mr x nr block of C that
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
