/* fnn_colsum.h - the column sums of a block of rows (a bias gradient: the
 * sum of a layer's deltas over the batch), each column summed in row order.
 *
 * The engine's loop kept its running sums in memory and read and wrote them
 * for every row (a store-to-load chain per row; 1 us of a 3 us full-batch
 * epoch of an 8-16-1 network).  Here a strip of columns is summed in
 * registers (the compiler vectorises the fixed-width strips), compiled for
 * AVX-512 and AVX2 too as fnn_finite.h is.  Every sum is still
 * 0 + D[0][j] + D[1][j] + ... in that order: the same bits.
 */
#ifndef FNN_COLSUM_H
#define FNN_COLSUM_H

#include <stddef.h>
#include "fnn_finite.h"   /* FNN_FINITE_CLONES */

#define FNN_DEFINE_COLSUM(T, SUF)                                                    \
FNN_FINITE_CLONES static void fnn_colsum_##SUF(const T *d, ptrdiff_t ld, ptrdiff_t rows, \
                                               ptrdiff_t n, T *sums)                \
{                                                                                   \
    ptrdiff_t j = 0;                                                                \
    for (; j + 16 <= n; j += 16) {                                                  \
        T acc[16] = {0};                                                            \
        for (ptrdiff_t r = 0; r < rows; r++)                                        \
            for (int q = 0; q < 16; q++) acc[q] += d[r * ld + j + q];               \
        for (int q = 0; q < 16; q++) sums[j + q] = acc[q];                          \
    }                                                                               \
    for (; j + 4 <= n; j += 4) {                                                    \
        T acc[4] = {0};                                                             \
        for (ptrdiff_t r = 0; r < rows; r++)                                        \
            for (int q = 0; q < 4; q++) acc[q] += d[r * ld + j + q];                \
        for (int q = 0; q < 4; q++) sums[j + q] = acc[q];                           \
    }                                                                               \
    for (; j < n; j++) {                                                            \
        T acc = 0;                                                                  \
        for (ptrdiff_t r = 0; r < rows; r++) acc += d[r * ld + j];                  \
        sums[j] = acc;                                                              \
    }                                                                               \
}

FNN_DEFINE_COLSUM(float, s)
FNN_DEFINE_COLSUM(double, d)

#undef FNN_DEFINE_COLSUM

#endif
