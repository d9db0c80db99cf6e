/* fnn_activations.h - every activation of the engine, one entry each.
 *
 * An activation is, in this file only:
 *  1. one line of FNN_ACTIVATIONS: its name (as fastnn/activations.py names
 *     it) and its properties.  The order of the lines gives the codes
 *     (FNN_ACT_*): Python reads them from the engine
 *     (fastnn._engine.ACTIVATION_CODES), nothing numbers them twice;
 *  2. one case in fnn_act (f(x)) and one in fnn_dact (f'(x) from u, which is
 *     the layer OUTPUT y = f(x), or x itself for the FNN_ACT_FROM_INPUT
 *     activations, whose derivative the output does not determine: the
 *     engine then keeps x for training);
 *  3. optionally its vector forms, which the kernels use when the properties
 *     say so: FNN_VACT_CASES / FNN_VDACT_CASES (FNN_ACT_VEC / FNN_ACT_VEC_D:
 *     plain arithmetic, every kernel and dtype), and FNN_VACT_EXP_CASES /
 *     FNN_VDACT_EXP_CASES (FNN_ACT_VEXP / FNN_ACT_VEXP_D: built on the vector
 *     exp below, in the kernels that give its primitives: AVX2 and AVX-512,
 *     float32).  Without a vector form the kernels store acc + bias and run
 *     fnn_act / fnn_dact over the tile while it is hot in L1 (the "scalar
 *     pass", libm's exp per element).  float64 stays on the scalar pass on
 *     purpose: its sigmoid and tanh are then libm's, bit for bit, as
 *     libfann's (tests/test_fann_rprop_vs_libfann.py compares weights
 *     exactly); the generic kernel keeps libm too.
 * fastnn/activations.py holds the same maths in NumPy (the tests' reference).
 *
 * x here is the activation's input: s * (acc + bias) for a layer of
 * steepness s (the kernels scale in the scalar pass; s == 1 costs nothing).
 */
#ifndef FNN_ACTIVATIONS_H
#define FNN_ACTIVATIONS_H

#include <math.h>

/* Properties. */
enum {
    FNN_ACT_VEC = 1,        /* forward has a vector form (FNN_VACT_CASES, or none needed) */
    FNN_ACT_VEC_D = 2,      /* derivative has a vector form (FNN_VDACT_CASES)              */
    FNN_ACT_IDENTITY = 4,   /* the epilogue leaves acc + bias (linear; softmax, which the
                             * engine normalises per row)                                   */
    FNN_ACT_FROM_INPUT = 8, /* f' is taken from the input x, not from the output          */
    FNN_ACT_VEXP = 16,      /* forward has a vector form built on the vector exp
                             * (FNN_VACT_EXP_CASES): only where the kernel has one       */
    FNN_ACT_VEXP_D = 32     /* the same for the derivative (FNN_VDACT_EXP_CASES)          */
};

/* X(NAME, "name", properties), in code order.  Append new activations at
 * the end: the codes of the others stay. */
#define FNN_ACTIVATIONS(X)                                                        \
    X(LINEAR, "linear", FNN_ACT_VEC | FNN_ACT_VEC_D | FNN_ACT_IDENTITY)           \
    X(SIGMOID, "sigmoid", FNN_ACT_VEXP | FNN_ACT_VEC_D)                           \
    X(TANH, "tanh", FNN_ACT_VEXP | FNN_ACT_VEC_D)                                 \
    X(RELU, "relu", FNN_ACT_VEC | FNN_ACT_VEC_D)                                  \
    X(LEAKY_RELU, "leaky_relu", FNN_ACT_VEC | FNN_ACT_VEC_D) /* slope = act_param */ \
    X(ELU, "elu", FNN_ACT_VEXP | FNN_ACT_VEC_D)              /* alpha = act_param */ \
    X(SOFTPLUS, "softplus", FNN_ACT_VEXP_D)                                       \
    X(STEP, "step", FNN_ACT_VEC | FNN_ACT_VEC_D)                                  \
    X(SIGN, "sign", FNN_ACT_VEC | FNN_ACT_VEC_D)                                  \
    X(SOFTMAX, "softmax", FNN_ACT_VEC | FNN_ACT_VEC_D | FNN_ACT_IDENTITY)         \
    X(SILU, "silu", FNN_ACT_FROM_INPUT | FNN_ACT_VEXP | FNN_ACT_VEXP_D)           \
    X(GELU, "gelu", FNN_ACT_FROM_INPUT | FNN_ACT_VEXP | FNN_ACT_VEXP_D)

#define FNN_ACT_ENUM_(NAME, name, props) FNN_ACT_##NAME,
#define FNN_ACT_NAME_(NAME, name, props) name,
#define FNN_ACT_PROPS_(NAME, name, props) (props),
enum { FNN_ACTIVATIONS(FNN_ACT_ENUM_) FNN_ACT_COUNT };

static inline const char *fnn_act_name(int act)
{
    static const char *const names[] = {FNN_ACTIVATIONS(FNN_ACT_NAME_)};
    return act >= 0 && act < FNN_ACT_COUNT ? names[act] : "";
}

static inline int fnn_act_props(int act)
{
    static const int props[] = {FNN_ACTIVATIONS(FNN_ACT_PROPS_)};
    return act >= 0 && act < FNN_ACT_COUNT ? props[act] : 0;
}
#undef FNN_ACT_ENUM_
#undef FNN_ACT_NAME_
#undef FNN_ACT_PROPS_

#define FNN_ACT_HAS(act, prop) ((fnn_act_props(act) & (prop)) != 0)

/* GELU's tanh form, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3),
 * is computed as x * sigmoid(2u) (the same function, 1 + tanh(u) = 2
 * sigmoid(2u)), which loses nothing to cancellation for negative x. */
#define FNN_GELU_C 0.7978845608028654   /* sqrt(2 / pi) */
#define FNN_GELU_A 0.044715

#define FNN_DEFINE_ACT(T, SUF, EXP, EXPM1, LOG1P, TANH)                          \
static inline T fnn_sigm_##SUF(T x) /* the logistic, without overflow */          \
{                                                                                 \
    if (x >= 0) return (T)1 / ((T)1 + EXP(-x));                                   \
    else { T e = EXP(x); return e / ((T)1 + e); }                                 \
}                                                                                 \
static inline T fnn_act_##SUF(int act, T x, T p)                                  \
{                                                                                 \
    switch (act) {                                                                \
    case FNN_ACT_SIGMOID: return fnn_sigm_##SUF(x);                               \
    case FNN_ACT_TANH: return TANH(x);                                            \
    case FNN_ACT_RELU: return x > 0 ? x : (T)0;                                   \
    case FNN_ACT_LEAKY_RELU: return x > 0 ? x : p * x;                            \
    case FNN_ACT_ELU: return x > 0 ? x : p * EXPM1(x);                            \
    case FNN_ACT_SOFTPLUS: return LOG1P(EXP(-(x > 0 ? x : -x))) + (x > 0 ? x : (T)0); \
    case FNN_ACT_STEP: return x >= 0 ? (T)1 : (T)0;                               \
    case FNN_ACT_SIGN: return x >= 0 ? (T)1 : (T)-1;                              \
    case FNN_ACT_SILU: return x * fnn_sigm_##SUF(x);                              \
    case FNN_ACT_GELU:                                                            \
        return x * fnn_sigm_##SUF((T)(2 * FNN_GELU_C) * (x + (T)FNN_GELU_A * x * x * x)); \
    default: return x; /* linear; softmax is normalised per row elsewhere */      \
    }                                                                             \
}                                                                                 \
/* f'(x) from u: y = f(x), or x for FNN_ACT_FROM_INPUT. */                        \
static inline T fnn_dact_##SUF(int act, T u, T p)                                 \
{                                                                                 \
    switch (act) {                                                                \
    case FNN_ACT_SIGMOID: return u * ((T)1 - u);                                  \
    case FNN_ACT_TANH: return (T)1 - u * u;                                       \
    case FNN_ACT_RELU: return u > 0 ? (T)1 : (T)0;                                \
    case FNN_ACT_LEAKY_RELU: return u > 0 ? (T)1 : p;                             \
    case FNN_ACT_ELU: return u > 0 ? (T)1 : u + p;                                \
    case FNN_ACT_SOFTPLUS: return -EXPM1(-u);                                     \
    case FNN_ACT_STEP: case FNN_ACT_SIGN: return (T)0;                            \
    case FNN_ACT_SILU: {                                                          \
        T sg = fnn_sigm_##SUF(u);                                                 \
        return sg * ((T)1 + u * ((T)1 - sg));                                     \
    }                                                                             \
    case FNN_ACT_GELU: {                                                          \
        T u2 = u * u;                                                             \
        T sg = fnn_sigm_##SUF((T)(2 * FNN_GELU_C) * (u + (T)FNN_GELU_A * u2 * u)); \
        return sg + u * (T)(2 * FNN_GELU_C) * sg * ((T)1 - sg) *                  \
                    ((T)1 + (T)(3 * FNN_GELU_A) * u2);                            \
    }                                                                             \
    default: return (T)1;                                                         \
    }                                                                             \
}                                                                                 \
/* The derivative a layer of steepness s trains with: d f(s x) / dx = s f'(.)    \
 * from u, which is first clipped into [lo, hi] when lo < hi (FANN's flat-spot    \
 * elimination, on the output).  The one place for this maths: the BLAS           \
 * epilogue, the kernels' scalar pass and the engine's output deltas call it. */  \
static inline T fnn_dact_layer_##SUF(int act, T u, T p, T s, T lo, T hi)          \
{                                                                                 \
    if (lo < hi) u = u < lo ? lo : (u > hi ? hi : u);                             \
    return s * fnn_dact_##SUF(act, u, p);                                         \
}

FNN_DEFINE_ACT(float, s, expf, expm1f, log1pf, tanhf)
FNN_DEFINE_ACT(double, d, exp, expm1, log1p, tanh)

#undef FNN_DEFINE_ACT

/* Vector forms, written in the SIMD vocabulary of fnn_kernels_tmpl.h (VSELGT,
 * VSELGE, VMUL, VADD, VSUB, VSET1) and expanded there, inside its switch on
 * the activation: x the vector of inputs (acc + bias) it overwrites with
 * f(x); d the vector it sets to f'(u) from y, the outputs.  p, one, zero:
 * the parameter and the constants, as vectors.  The activations flagged
 * FNN_ACT_VEC / FNN_ACT_VEC_D have a case (or need none: identity,
 * f' = 1). */
#define FNN_VACT_CASES(x, p, one, zero)                                           \
    case FNN_ACT_RELU: x = VSELGT(x, x, zero); break;                             \
    case FNN_ACT_LEAKY_RELU: x = VSELGT(x, x, VMUL(p, x)); break;                 \
    case FNN_ACT_STEP: x = VSELGE(x, one, zero); break;                           \
    case FNN_ACT_SIGN: x = VSELGE(x, one, VSUB(zero, one)); break;

#define FNN_VDACT_CASES(d, y, p, one, zero)                                       \
    case FNN_ACT_SIGMOID: d = VMUL(y, VSUB(one, y)); break;                       \
    case FNN_ACT_TANH: d = VSUB(one, VMUL(y, y)); break;                          \
    case FNN_ACT_RELU: d = VSELGT(y, one, zero); break;                           \
    case FNN_ACT_LEAKY_RELU: d = VSELGT(y, one, p); break;                        \
    case FNN_ACT_ELU: d = VSELGT(y, one, VADD(y, p)); break;                      \
    case FNN_ACT_STEP: case FNN_ACT_SIGN: d = zero; break;

/* The vector exp, float32: Cephes' expf with FMAs.  exp(x) = 2^n e^r with
 * n = round(x log2 e) and r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 in two
 * parts, the first with few enough bits that n * part 1 is exact), e^r = 1 +
 * r + r^2 P(r), P Cephes' degree-5 minimax polynomial; VLDEXP applies 2^n
 * with one rounding, also into the subnormals.  exp rounds to 0 below
 * -103.97 (half the smallest subnormal, 2^-150) and overflows to inf above
 * 88.73: x is clamped to 88.8 (inf gives inf), and x <= -104 (-inf too) is
 * computed as 0 and its result replaced by the limit afterwards (0, or -1
 * for expm1) rather than clamped to -104: a product that underflows to 0
 * costs a microcode assist on Intel, and saturated sigmoid units (FANN's
 * thyroid set) hit it in most lanes.  A NaN passes both (VMIN returns its
 * second operand then, the comparisons are false) and propagates.
 * pm1 = e^r - 1 = r + r^2 P(r) is kept apart, which gives expm1 without
 * cancellation near 0: 2^n pm1 + (2^n - 1).  Measured against
 * NumPy in float64 over the whole float range: exp and expm1 within 2 ulp,
 * sigmoid and tanh within 3 (tests/test_vector_exp.py).
 *
 * Besides the vocabulary above, the kernel gives these primitives (their
 * presence, VLDEXP defined, is what turns the FNN_ACT_VEXP forms on):
 *   VMAX(a, b) = a > b ? a : b, VMIN(a, b) = a < b ? a : b (lane-wise: b when
 *   either is NaN, as x86's max/min), VROUND(x) (to nearest, ties to even),
 *   VDIV(a, b), VLDEXP(p, n) = p * 2^n for integer-valued n in [-150, 128]. */
#define FNN_VEXPF_LO -104.0f
#define FNN_VEXPF_BELOW(x) VSUB(VSET1(FNN_VEXPF_LO), x) /* >= 0: x <= -104 (not NaN) */
#define FNN_VEXPF_REDUCE(x, n, pm1) do {                                          \
    V xc_ = VMIN(VSET1(88.8f), VSELGE(FNN_VEXPF_BELOW(x), VZERO(), (x)));         \
    V r_, q_;                                                                     \
    n = VROUND(VMUL(xc_, VSET1(1.44269504088896341f)));                           \
    r_ = VFMA(n, VSET1(-0.693359375f), xc_);                                      \
    r_ = VFMA(n, VSET1(2.12194440e-4f), r_);                                      \
    q_ = VFMA(VSET1(1.9875691500e-4f), r_, VSET1(1.3981999507e-3f));              \
    q_ = VFMA(q_, r_, VSET1(8.3334519073e-3f));                                   \
    q_ = VFMA(q_, r_, VSET1(4.1665795894e-2f));                                   \
    q_ = VFMA(q_, r_, VSET1(1.6666665459e-1f));                                   \
    q_ = VFMA(q_, r_, VSET1(5.0000001201e-1f));                                   \
    pm1 = VFMA(q_, VMUL(r_, r_), r_);                                             \
} while (0)

/* The vector functions the FNN_ACT_VEXP forms use, defined once per kernel
 * (fnn_kernels_epi_tmpl.h) under the names it passes:
 *  - exp, expm1: above;
 *  - the logistic as fnn_sigm: e = exp(-|x|), 1 / (1 + e) for x >= 0 and
 *    e / (1 + e) below: never overflows, exactly 0 and 1 at the ends;
 *  - tanh(|x|) = -m / (2 + m) with m = expm1(-2|x|) (no cancellation near
 *    0, exactly 1 once m rounds to -1), the sign of x put back; below 2^-12,
 *    where tanh(x) rounds to x, x itself (which keeps the sign of a zero). */
#define FNN_DEFINE_VEXPF(ATTR, VEXP_, VEXPM1_, VSIGM_, VTANH_)                    \
static inline ATTR V VEXP_(V x)                                                   \
{                                                                                 \
    V n, pm1;                                                                     \
    FNN_VEXPF_REDUCE(x, n, pm1);                                                  \
    return VSELGE(FNN_VEXPF_BELOW(x), VZERO(), VLDEXP(VADD(pm1, VSET1(1.0f)), n)); \
}                                                                                 \
static inline ATTR V VEXPM1_(V x)                                                 \
{                                                                                 \
    const V one = VSET1(1.0f);                                                    \
    V n, pm1;                                                                     \
    FNN_VEXPF_REDUCE(x, n, pm1);                                                  \
    /* 2^n - 1 overflows at n = 128 (x > 88.37): there exp - 1 is exact enough */ \
    return VSELGE(FNN_VEXPF_BELOW(x), VSUB(VZERO(), one),                         \
                  VSELGT(VSUB(n, VSET1(127.0f)), VSUB(VLDEXP(VADD(pm1, one), n), one), \
                         VADD(VLDEXP(pm1, n), VSUB(VLDEXP(one, n), one))));       \
}                                                                                 \
static inline ATTR V VSIGM_(V x)                                                  \
{                                                                                 \
    const V one = VSET1(1.0f);                                                    \
    V e = VEXP_(VMIN(x, VSUB(VZERO(), x)));                                       \
    return VDIV(VSELGE(x, one, e), VADD(one, e));                                 \
}                                                                                 \
static inline ATTR V VTANH_(V x)                                                  \
{                                                                                 \
    const V zero = VZERO(), x2 = VADD(x, x);                                      \
    V m = VEXPM1_(VMIN(x2, VSUB(zero, x2)));                                      \
    V t = VDIV(VSUB(zero, m), VADD(VSET1(2.0f), m));                              \
    t = VSELGE(x, t, VSUB(zero, t));                                              \
    return VSELGT(VSUB(VSET1(0x1p-12f), VMAX(x, VSUB(zero, x))), x, t);          \
}

/* The vector forms on the vector exp (FNN_ACT_VEXP / FNN_ACT_VEXP_D), in the
 * vocabulary above plus VEXPM1, VSIGM and VTANH; the same maths as fnn_act /
 * fnn_dact, operation for operation where it can be. */
#define FNN_GELU_VARG(x) /* 2 sqrt(2/pi) (x + a x^3), as fnn_act_s */              \
    VMUL(VSET1((T)(2 * FNN_GELU_C)),                                              \
         VADD(x, VMUL(VMUL(VMUL(VSET1((T)FNN_GELU_A), x), x), x)))

#define FNN_VACT_EXP_CASES(x, p, one, zero)                                       \
    case FNN_ACT_SIGMOID: x = VSIGM(x); break;                                    \
    case FNN_ACT_TANH: x = VTANH(x); break;                                       \
    case FNN_ACT_ELU: x = VSELGT(x, x, VMUL(p, VEXPM1(x))); break;                \
    case FNN_ACT_SILU: x = VMUL(x, VSIGM(x)); break;                              \
    case FNN_ACT_GELU: x = VMUL(x, VSIGM(FNN_GELU_VARG(x))); break;

#define FNN_VDACT_EXP_CASES(d, y, p, one, zero)                                   \
    case FNN_ACT_SOFTPLUS: d = VSUB(zero, VEXPM1(VSUB(zero, y))); break;          \
    case FNN_ACT_SILU: {                                                          \
        V sg_ = VSIGM(y);                                                         \
        d = VMUL(sg_, VADD(one, VMUL(y, VSUB(one, sg_))));                        \
        break;                                                                    \
    }                                                                             \
    case FNN_ACT_GELU: {                                                          \
        V u2_ = VMUL(y, y);                                                       \
        V sg_ = VSIGM(VMUL(VSET1((T)(2 * FNN_GELU_C)),                            \
                           VADD(y, VMUL(VMUL(VSET1((T)FNN_GELU_A), u2_), y))));   \
        d = VADD(sg_, VMUL(VMUL(VMUL(VMUL(y, VSET1((T)(2 * FNN_GELU_C))), sg_),   \
                                VSUB(one, sg_)),                                  \
                           VADD(one, VMUL(VSET1((T)(3 * FNN_GELU_A)), u2_))));    \
        break;                                                                    \
    }

#endif
