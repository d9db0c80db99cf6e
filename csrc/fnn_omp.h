/* fnn_omp.h - the one place that touches OpenMP (and the threads under it).
 *
 * Compiles with or without -fopenmp: without it fastnn runs serially and
 * every helper answers as a single thread would.  Included by the Cython
 * engine only (after Python.h, which sets the POSIX feature macros).
 *
 * Before a parallel region the engine asks fnn_omp_team_size() how many
 * threads it may start, which guards against two ways OpenMP kills or hangs
 * the host program:
 *  - fork: GNU libgomp's thread pool does not survive fork(); a child that
 *    starts a team after its parent had one waits forever in the barrier.
 *    A pthread_atfork handler marks the child, which then runs one thread
 *    (as PyTorch does); results do not depend on the thread count.
 *  - the OS refusing threads (RLIMIT_NPROC, a container's pids limit): libgomp
 *    then calls exit(1).  Before a team larger than the calling thread's last
 *    one (libgomp keeps a pool per calling thread, of its last team's size, so
 *    only a larger team creates threads) the engine starts and joins the
 *    missing threads itself, and runs with as many as the OS gave it.
 */
#ifndef FNN_OMP_H
#define FNN_OMP_H

#include <time.h>
#if !defined(_WIN32)
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif
#define FNN_POSIX_THREADS 1
#endif

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
static inline double fnn_wtime(void) { return omp_get_wtime(); }
#else
static inline int fnn_omp_enabled(void) { return 0; }
static inline int fnn_omp_max_threads(void) { return 1; }
static inline int fnn_omp_thread_num(void) { return 0; }
static inline int fnn_omp_num_threads(void) { return 1; }
static inline void fnn_omp_barrier(void) {}
static inline double fnn_wtime(void)
{
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

/* ---- the cores this process may use --------------------------------------- */

/* The CPUs of this process's affinity mask, or 0 when unknown (not Linux, or
 * more CPUs than a cpu_set_t holds: Python's os.sched_getaffinity answers).
 * Read on every call, as the mask may change; a syscall, where Python's
 * answer builds a set (a tenth of a one-row predict's Python side). */
static inline int fnn_affinity_cores(void)
{
#if defined(__linux__) && defined(CPU_COUNT)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        return CPU_COUNT(&set);
#endif
    return 0;
}

/* ---- forked children --------------------------------------------------- */

static inline int *fnn_forked_flag(void)
{
    static int forked = 0;
    return &forked;
}

static inline void fnn_mark_forked_child(void) { *fnn_forked_flag() = 1; }

/* Registers the handler once (at import); 0 on success. */
static inline int fnn_omp_watch_fork(void)
{
#ifdef FNN_POSIX_THREADS
    return pthread_atfork(NULL, NULL, fnn_mark_forked_child);
#else
    return 0;   /* no fork() */
#endif
}

/* 1 in a process made by fork() after this module was loaded. */
static inline int fnn_omp_forked_child(void) { return *fnn_forked_flag(); }

/* ---- threads the OS will give ------------------------------------------- */

#if defined(_OPENMP) && defined(FNN_POSIX_THREADS)
#define FNN_MAX_PROBE 256

#if defined(__linux__) && defined(SYS_gettid) && defined(SYS_tgkill)
#define FNN_PROBE_TID 1
#endif

static void *fnn_probe_thread(void *arg)
{
#ifdef FNN_PROBE_TID
    *(long *)arg = (long)syscall(SYS_gettid);
#endif
    return NULL;
}

/* Starts n - 1 threads and joins them: how many could start, plus the
 * caller.  ``err`` receives pthread_create's error (0 when all started). */
static inline int fnn_probe_threads(int n, int *err)
{
    pthread_t ids[FNN_MAX_PROBE];
    long tids[FNN_MAX_PROBE];
    int k, i, e = 0;
    if (n > FNN_MAX_PROBE)
        n = FNN_MAX_PROBE;
    for (k = 0; k < n - 1; k++) {
        tids[k] = 0;
        e = pthread_create(&ids[k], NULL, fnn_probe_thread, &tids[k]);
        if (e != 0)
            break;
    }
    for (i = 0; i < k; i++)
        pthread_join(ids[i], NULL);
#ifdef FNN_PROBE_TID
    /* join returns before the kernel has released the thread (and its count
     * against RLIMIT_NPROC): wait until each one is gone, briefly. */
    for (i = 0; i < k; i++) {
        int spins = 0;
        if (tids[i] <= 0)
            continue;
        while (syscall(SYS_tgkill, (long)getpid(), tids[i], 0) == 0 && spins++ < 100000)
            sched_yield();
    }
#endif
    *err = e;
    return k + 1;
}

static inline int *fnn_last_team(void)
{
    static _Thread_local int last = 1;
    return &last;
}
#endif

/* The size of team to start for ``n`` threads wanted: 1 in a forked child or
 * a serial build, else as many of n as the OS gives (see the top). ``err``
 * receives the OS's error when it gave fewer, else 0. */
static inline int fnn_omp_team_size(int n, int *err)
{
    *err = 0;
    if (n <= 1 || !fnn_omp_enabled() || fnn_omp_forked_child())
        return 1;
#if defined(_OPENMP) && defined(FNN_POSIX_THREADS)
    if (n > *fnn_last_team())
        n = fnn_probe_threads(n, err);
    *fnn_last_team() = n;
#endif
    return n;
}

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
