/* fnn_activations.h - scalar activations and their derivatives.
 *
 * The one definition of every activation in C; fastnn/_reference.py mirrors
 * it in NumPy.  Derivatives are taken from the layer OUTPUT y = f(x), so the
 * engine keeps only the outputs of each layer (no pre-activations).
 */
#ifndef FNN_ACTIVATIONS_H
#define FNN_ACTIVATIONS_H

#include <math.h>
#include "fnn_gemm.h"

#define FNN_DEFINE_ACT(T, SUF, EXP, EXPM1, LOG1P, TANH)                          \
static inline T fnn_act_##SUF(int act, T x, T p)                                  \
{                                                                                 \
    switch (act) {                                                                \
    case FNN_ACT_SIGMOID:                                                         \
        if (x >= 0) return (T)1 / ((T)1 + EXP(-x));                               \
        else { T e = EXP(x); return e / ((T)1 + e); }                             \
    case FNN_ACT_TANH: return TANH(x);                                            \
    case FNN_ACT_RELU: return x > 0 ? x : (T)0;                                   \
    case FNN_ACT_LEAKY_RELU: return x > 0 ? x : p * x;                            \
    case FNN_ACT_ELU: return x > 0 ? x : p * EXPM1(x);                            \
    case FNN_ACT_SOFTPLUS: return LOG1P(EXP(-(x > 0 ? x : -x))) + (x > 0 ? x : (T)0); \
    case FNN_ACT_STEP: return x >= 0 ? (T)1 : (T)0;                               \
    case FNN_ACT_SIGN: return x >= 0 ? (T)1 : (T)-1;                              \
    default: return x; /* linear; softmax is normalised per row elsewhere */      \
    }                                                                             \
}                                                                                 \
/* f'(x) written in terms of y = f(x). */                                         \
static inline T fnn_dact_##SUF(int act, T y, T p)                                 \
{                                                                                 \
    switch (act) {                                                                \
    case FNN_ACT_SIGMOID: return y * ((T)1 - y);                                  \
    case FNN_ACT_TANH: return (T)1 - y * y;                                       \
    case FNN_ACT_RELU: return y > 0 ? (T)1 : (T)0;                                \
    case FNN_ACT_LEAKY_RELU: return y > 0 ? (T)1 : p;                             \
    case FNN_ACT_ELU: return y > 0 ? (T)1 : y + p;                                \
    case FNN_ACT_SOFTPLUS: return -EXPM1(-y);                                     \
    case FNN_ACT_STEP: case FNN_ACT_SIGN: return (T)0;                            \
    default: return (T)1;                                                         \
    }                                                                             \
}

FNN_DEFINE_ACT(float, s, expf, expm1f, log1pf, tanhf)
FNN_DEFINE_ACT(double, d, exp, expm1, log1p, tanh)

#undef FNN_DEFINE_ACT
#endif
