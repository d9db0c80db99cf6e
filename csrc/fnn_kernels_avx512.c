/* fnn_kernels_avx512.c - AVX-512 instantiation of the blocked GEMM
 * (algorithm, determinism and epilogues: see fnn_kernels_tmpl.h).
 *
 * Compiled with a per-file target pragma, so no -march is needed; the
 * dispatcher calls it only when fnn_cpu_has_avx512().  On non-x86 targets
 * the entry points forward to the generic variant.
 *
 * Register blocking (32 zmm): the micro-tile is MR x NR = 8 x 32 floats
 * (8 x 16 doubles), i.e. 16 zmm accumulators + 2 zmm of B + 1 broadcast.
 * Zen 4/5 issue two FMAs per cycle with latency 4, so 16 independent chains
 * hide the latency; per k the kernel loads 2 vectors of B and broadcasts 8
 * elements of A (10 loads per 16 FMAs).  Measured against 12 x 32, 10 x 32,
 * 14 x 32, 6 x 64, 4 x 64 and 16 x 16, 8 x 32 was as fast or faster on every
 * fastnn shape, and 8 divides the usual batch sizes (no wasted edge rows).
 * Cache blocking: KC = 256 -> a B micro-panel is 256 x 32 x 4 B = 32 KiB and
 * stays in the 48 KiB L1 while the MC = 256 rows of A (256 x 256 x 4 B =
 * 256 KiB) stream from the 1 MiB L2; the packed B block is KC x NC = 256 KiB.
 * Doubles use the same byte footprint per micro-panel (16 columns).
 * STORE with beta != 0 and K > KC keeps raw sums of MCS = 256 rows x NC in the
 * work buffer (B is re-packed once per MCS rows, so MCS should not be small).
 * op(B) with trans_b is packed with 16 x 16 (8 x 8) in-register transposes.
 */
#include <stddef.h>
#include "fnn_kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma,avx2"))), apply_to = function)
#define FNN_KFUNC
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512bw,avx512dq,fma,avx2")
#define FNN_KFUNC
#else
#define FNN_KFUNC
#endif

#include "fnn_activations.h"
#include "fnn_transpose8_s.h"

#define KPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define KPREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define VFMA_FUSED 1
/* Read B in place (no packing) up to 128 rows: measured faster than packing
 * for M <= 128 on Zen, unless B's rows are 8 KiB apart (reads_b_in_place);
 * the AVX2 and generic variants keep 4 * MR. */
#define DIRECT_B_MAX_M (16 * MR)
/* Pack op(A) of every trans_a product with K >= 128 (the weight updates of
 * batches of 128 and more): measured on Intel (Emerald Rapids), floats
 * 784 x 256 x 256 146 -> 194 GFLOP/s, doubles 77 -> 91, the other update
 * shapes of the benchmark within a few %; slower at K = 32 (see
 * fnn_kernels_tmpl.h, pack_a). */
#define PACK_A_TRANS 1

/* d[k*ld + q] = s[q*ls + k] for a 16 x 16 block of floats: unpack pairs of
 * rows, then pairs of pairs, then regroup the 128-bit lanes. */
static inline void fnn_tr16_avx512_s(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(s + i * ls);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i+j], 128-bit lane L: rows 4i..4i+3 at k = 4L + j */
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), e = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, e));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, e));
    }
    for (int j = 0; j < 4; j++) {
        __m512 a = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), b = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
        __m512 c = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), e = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
        _mm512_storeu_ps(d + j * ld, _mm512_shuffle_f32x4(a, c, 0x88));
        _mm512_storeu_ps(d + (4 + j) * ld, _mm512_shuffle_f32x4(b, e, 0x88));
        _mm512_storeu_ps(d + (8 + j) * ld, _mm512_shuffle_f32x4(a, c, 0xdd));
        _mm512_storeu_ps(d + (12 + j) * ld, _mm512_shuffle_f32x4(b, e, 0xdd));
    }
}

/* The same for an 8 x 8 block of doubles. */
static inline void fnn_tr8_avx512_d(const double *s, ptrdiff_t ls, double *d, ptrdiff_t ld)
{
    __m512d r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm512_loadu_pd(s + i * ls);
    /* t[2i+j], 128-bit lane L: rows 2i, 2i+1 at k = 2L + j */
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int j = 0; j < 2; j++) {
        __m512d a = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88), b = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xdd);
        __m512d c = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88), e = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xdd);
        _mm512_storeu_pd(d + j * ld, _mm512_shuffle_f64x2(a, c, 0x88));
        _mm512_storeu_pd(d + (2 + j) * ld, _mm512_shuffle_f64x2(b, e, 0x88));
        _mm512_storeu_pd(d + (4 + j) * ld, _mm512_shuffle_f64x2(a, c, 0xdd));
        _mm512_storeu_pd(d + (6 + j) * ld, _mm512_shuffle_f64x2(b, e, 0xdd));
    }
}

/* ---- float ---- */
#define T float
#define KSUFFIX avx512_s
#define FACT fnn_act_s
#define FDACT fnn_dact_s
#define V __m512
#define VL 16
#define MR 8
#define NV 2
#define KC 256
#define NC 256
#define MC 256
#define MCS 256
#define KMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOADA(p) _mm512_load_ps(p)
#define VLOADU(p) _mm512_loadu_ps(p)
#define VSTOREA(p, v) _mm512_store_ps(p, v)
#define VSTOREU(p, v) _mm512_storeu_ps(p, v)
#define VLOADN(p, n) _mm512_maskz_loadu_ps(KMASK(n), p)
#define VSTOREN(p, v, n) _mm512_mask_storeu_ps(p, KMASK(n), v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VSELGT(x, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GT_OQ), b, a)
#define VSELGE(x, a, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ), b, a)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VLDEXP(p, n) _mm512_scalef_ps(p, n)   /* one rounding, also into the subnormals */
#define VTRANSPOSE(s, ls, d, ld) fnn_tr16_avx512_s(s, ls, d, ld)
#define VTRANSPOSE_A(s, ls, d) fnn_tr8_avx2_s(s, ls, d, 8)   /* MR = 8 row panels */
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

/* ---- double ---- */
#define T double
#define KSUFFIX avx512_d
#define FACT fnn_act_d
#define FDACT fnn_dact_d
#define V __m512d
#define VL 8
#define MR 8
#define NV 2
#define KC 256
#define NC 128
#define MC 256
#define MCS 256
#define KMASK(n) ((__mmask8)((1u << (n)) - 1u))
#define VZERO() _mm512_setzero_pd()
#define VSET1(x) _mm512_set1_pd(x)
#define VLOADA(p) _mm512_load_pd(p)
#define VLOADU(p) _mm512_loadu_pd(p)
#define VSTOREA(p, v) _mm512_store_pd(p, v)
#define VSTOREU(p, v) _mm512_storeu_pd(p, v)
#define VLOADN(p, n) _mm512_maskz_loadu_pd(KMASK(n), p)
#define VSTOREN(p, v, n) _mm512_mask_storeu_pd(p, KMASK(n), v)
#define VFMA(a, b, c) _mm512_fmadd_pd(a, b, c)
#define VADD(a, b) _mm512_add_pd(a, b)
#define VSUB(a, b) _mm512_sub_pd(a, b)
#define VMUL(a, b) _mm512_mul_pd(a, b)
#define VSELGT(x, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GT_OQ), b, a)
#define VSELGE(x, a, b) _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x, _mm512_setzero_pd(), _CMP_GE_OQ), b, a)
#define VTRANSPOSE(s, ls, d, ld) fnn_tr8_avx512_d(s, ls, d, ld)
#define VTRANSPOSE_A(s, ls, d) fnn_tr8_avx512_d(s, ls, d, 8)
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

size_t fnn_kgemm_avx512_work_bytes(size_t elem_size)
{
    return elem_size == sizeof(float) ? work_bytes_avx512_s
                                      : work_bytes_avx512_d;
}

#else /* not x86: forward to the portable variant */

FNN_FORWARD_TO_GENERIC(avx512)

#endif
