/* fnn_finite.h - is every value of a row finite?
 *
 * The training engine checks each sample as it gathers it into a batch,
 * while the row is in L1 anyway, instead of a separate pass over all of X
 * before training (which costs as much as 5% of an epoch).  Written as an
 * integer OR over the row so that compilers vectorise it; x - x is 0 for
 * every finite x and NaN for NaN and the infinities.  (Needs IEEE semantics:
 * fastnn is never built with -ffast-math.)
 */
#ifndef FNN_FINITE_H
#define FNN_FINITE_H

#include <stddef.h>

static inline int fnn_finite_s(const float *x, ptrdiff_t n)
{
    int bad = 0;
    for (ptrdiff_t j = 0; j < n; j++) bad |= !(x[j] - x[j] == 0.0f);
    return !bad;
}

static inline int fnn_finite_d(const double *x, ptrdiff_t n)
{
    int bad = 0;
    for (ptrdiff_t j = 0; j < n; j++) bad |= !(x[j] - x[j] == 0.0);
    return !bad;
}

#endif
