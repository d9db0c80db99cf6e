/* fnn_omp.h - the one place that touches OpenMP.
 *
 * Compiles with or without -fopenmp: without it fastnn runs serially and
 * every helper answers as a single thread would.
 */
#ifndef FNN_OMP_H
#define FNN_OMP_H

#ifdef _OPENMP
#include <omp.h>
static inline int fnn_omp_enabled(void) { return 1; }
static inline int fnn_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int fnn_omp_thread_num(void) { return omp_get_thread_num(); }
static inline int fnn_omp_num_threads(void) { return omp_get_num_threads(); }
/* An orphaned barrier: binds to the innermost enclosing parallel region.
 * MSVC spells the pragma operator __pragma (its _Pragma needs C11 mode). */
static inline void fnn_omp_barrier(void) {
#if defined(_MSC_VER) && !defined(__clang__)
    __pragma(omp barrier)
#else
    _Pragma("omp barrier")
#endif
}
#else
static inline int fnn_omp_enabled(void) { return 0; }
static inline int fnn_omp_max_threads(void) { return 1; }
static inline int fnn_omp_thread_num(void) { return 0; }
static inline int fnn_omp_num_threads(void) { return 1; }
static inline void fnn_omp_barrier(void) {}
#endif

/* Claim counters and flags shared by a team: atomic fetch-and-add, store and
 * load (plain ones without OpenMP, where there is only one thread).  MSVC's
 * OpenMP 2.0 has no "atomic capture": its interlocked intrinsics do the same. */
#if defined(_MSC_VER) && !defined(__clang__)
#include <intrin.h>
static inline long fnn_atomic_fetch_add(long *p, long v)
{
    return _InterlockedExchangeAdd((volatile long *)p, v);
}

static inline void fnn_atomic_store(long *p, long v)
{
    _InterlockedExchange((volatile long *)p, v);
}

static inline long fnn_atomic_load(long *p)
{
    return _InterlockedOr((volatile long *)p, 0);
}
#else
static inline long fnn_atomic_fetch_add(long *p, long v)
{
    long old;
#ifdef _OPENMP
    _Pragma("omp atomic capture")
#endif
    { old = *p; *p += v; }
    return old;
}

static inline void fnn_atomic_store(long *p, long v)
{
#ifdef _OPENMP
    _Pragma("omp atomic write")
#endif
    *p = v;
}

static inline long fnn_atomic_load(long *p)
{
    long v;
#ifdef _OPENMP
    _Pragma("omp atomic read")
#endif
    v = *p;
    return v;
}
#endif

#endif
