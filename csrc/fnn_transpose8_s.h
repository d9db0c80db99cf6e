/* fnn_transpose8_s.h - an 8 x 8 transpose of floats in AVX2 registers,
 * shared by the AVX2 kernels (packing op(B) when trans_b == 1) and the
 * AVX-512 ones (packing op(A) into MR = 8 row panels).  Included after the
 * including file's target pragma, so it compiles for that file's ISA. */
#ifndef FNN_TRANSPOSE8_S_H
#define FNN_TRANSPOSE8_S_H

#include <stddef.h>
#include <immintrin.h>

/* d[k*ld + q] = s[q*ls + k] for an 8 x 8 block of floats: unpack pairs of
 * rows, pairs of pairs, swap 128-bit lanes. */
static inline void fnn_tr8_avx2_s(const float *s, ptrdiff_t ls, float *d, ptrdiff_t ld)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + i * ls);
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    /* r[4i+j], 128-bit lane L: rows 4i..4i+3 at k = 4L + j */
    for (int i = 0; i < 2; i++) {
        __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 1]);
        __m256d c = _mm256_castps_pd(t[4 * i + 2]), e = _mm256_castps_pd(t[4 * i + 3]);
        r[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, e));
        r[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, e));
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(d + j * ld, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(d + (4 + j) * ld, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}

#endif
