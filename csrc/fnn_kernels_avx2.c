/* fnn_kernels_avx2.c - AVX2 + FMA instantiation of the blocked GEMM
 * (algorithm, determinism and epilogues: see fnn_kernels_tmpl.h).
 *
 * Compiled with a per-file target pragma (no -march needed); the dispatcher
 * calls it only when fnn_cpu_has_avx2_fma().  Non-x86: forwards to generic.
 *
 * Register blocking (16 ymm): micro-tile MR x NR = 6 x 16 floats (6 x 8
 * doubles) = 12 ymm accumulators + 2 of B + 1 broadcast, the classic
 * Haswell shape (2 FMA/cycle x latency 4-5 -> >= 10 chains needed).
 * Cache blocking: KC = 256 -> B micro-panel 256 x 16 x 4 B = 16 KiB in L1
 * (32-48 KiB), A rows (MC = 264 x KC) in L2, packed B block KC x NC = 256 KiB.
 * Edges use vmaskmov loads/stores, which never touch the masked-off lanes.
 * op(B) with trans_b is packed with 8 x 8 (4 x 4) in-register transposes.
 */
#include <stddef.h>
#include <stdint.h>
#include "fnn_kernels.h"

#include <math.h>

#if defined(__x86_64__) || defined(_M_X64)

#include <immintrin.h>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define FNN_KFUNC

#include "fnn_activations.h"
#include "fnn_transpose8_s.h"

#define KPREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)
#define KPREFETCH_L2(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#define VFMA_FUSED 1

/* Lane masks for vmaskmov: the first n lanes of (table + VL - n). */
static const int32_t fnn_avx2_mask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
static const int64_t fnn_avx2_mask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};


/* The same for a 4 x 4 block of doubles. */
static inline void fnn_tr4_avx2_d(const double *s, ptrdiff_t ls, double *d, ptrdiff_t ld)
{
    __m256d r[4], t[4];
    for (int i = 0; i < 4; i++) r[i] = _mm256_loadu_pd(s + i * ls);
    /* t[2i+j], 128-bit lane L: rows 2i, 2i+1 at k = 2L + j */
    for (int i = 0; i < 2; i++) {
        t[2 * i] = _mm256_unpacklo_pd(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int j = 0; j < 2; j++) {
        _mm256_storeu_pd(d + j * ld, _mm256_permute2f128_pd(t[j], t[2 + j], 0x20));
        _mm256_storeu_pd(d + (2 + j) * ld, _mm256_permute2f128_pd(t[j], t[2 + j], 0x31));
    }
}

/* p * 2^n for integer-valued n in [-150, 128] (the vector exp's VLDEXP, as
 * AVX-512's scalef): 2^n as two normal factors 2^(n/2) 2^(n - n/2); p times
 * the first is exact, the second product rounds once (into the subnormals,
 * or to inf). */
static inline __m256 fnn_ldexp_avx2_s(__m256 p, __m256 n)
{
    const __m256i bias = _mm256_set1_epi32(127);
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* ---- float ---- */
#define T float
#define KSUFFIX avx2_s
#define FACT fnn_act_s
#define FDACT fnn_dact_s
#define V __m256
#define VL 8
#define MR 6
#define NV 2
#define KC 256
#define NC 256
#define MC 264
#define MCS 96
#define KMASK(n) _mm256_loadu_si256((const __m256i *)(fnn_avx2_mask32 + 8 - (n)))
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOADA(p) _mm256_load_ps(p)
#define VLOADU(p) _mm256_loadu_ps(p)
#define VSTOREA(p, v) _mm256_store_ps(p, v)
#define VSTOREU(p, v) _mm256_storeu_ps(p, v)
#define VLOADN(p, n) _mm256_maskload_ps(p, KMASK(n))
#define VSTOREN(p, v, n) _mm256_maskstore_ps(p, KMASK(n), v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VSELGT(x, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ))
#define VSELGE(x, a, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ))
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VLDEXP(p, n) fnn_ldexp_avx2_s(p, n)
#define VTRANSPOSE(s, ls, d, ld) fnn_tr8_avx2_s(s, ls, d, ld)
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

/* ---- double ---- */
#define T double
#define KSUFFIX avx2_d
#define FACT fnn_act_d
#define FDACT fnn_dact_d
#define V __m256d
#define VL 4
#define MR 6
#define NV 2
#define KC 256
#define NC 128
#define MC 264
#define MCS 96
#define KMASK(n) _mm256_loadu_si256((const __m256i *)(fnn_avx2_mask64 + 4 - (n)))
#define VZERO() _mm256_setzero_pd()
#define VSET1(x) _mm256_set1_pd(x)
#define VLOADA(p) _mm256_load_pd(p)
#define VLOADU(p) _mm256_loadu_pd(p)
#define VSTOREA(p, v) _mm256_store_pd(p, v)
#define VSTOREU(p, v) _mm256_storeu_pd(p, v)
#define VLOADN(p, n) _mm256_maskload_pd(p, KMASK(n))
#define VSTOREN(p, v, n) _mm256_maskstore_pd(p, KMASK(n), v)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VADD(a, b) _mm256_add_pd(a, b)
#define VSUB(a, b) _mm256_sub_pd(a, b)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VSELGT(x, a, b) _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GT_OQ))
#define VSELGE(x, a, b) _mm256_blendv_pd(b, a, _mm256_cmp_pd(x, _mm256_setzero_pd(), _CMP_GE_OQ))
#define VTRANSPOSE(s, ls, d, ld) fnn_tr4_avx2_d(s, ls, d, ld)
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

size_t fnn_kgemm_avx2_work_bytes(size_t elem_size)
{
    return elem_size == sizeof(float) ? work_bytes_avx2_s : work_bytes_avx2_d;
}

#else /* not x86: forward to the portable variant */

FNN_FORWARD_TO_GENERIC(avx2)

#endif
