/* peak_fma.c — measure the float32 FMA peak of this machine.
 *
 * Why: "% of peak" in the benchmark tables needs a ceiling that is measured on
 * this machine, not read from a spec sheet (turbo clocks, VM throttling and
 * the number of FMA pipes all vary).  The loop below keeps NACC independent
 * accumulators in registers and never touches memory, so the only limit is
 * FMA throughput: with a 4-cycle FMA latency and 2 FMA pipes, at least 8
 * independent chains are needed to keep both pipes busy; we use 12.
 *
 * Build (bench_mlp.py does this at run time):
 *   gcc -O2 -mavx512f -mfma -pthread peak_fma.c -o peak_fma      (AVX-512)
 *   gcc -O2 -mavx2    -mfma -pthread peak_fma.c -o peak_fma      (fallback)
 * Usage: ./peak_fma [n_threads] [iterations] [cpu]
 * With "cpu" the time is each thread's CPU time (the slowest thread's), not
 * wall time: on a shared machine, time slices given to other processes are
 * then not counted (bench/ab_builds.py uses it).
 * Output (one line, parsed by bench_mlp.py):
 *   isa=avx512 threads=1 gflops=243.1 seconds=0.412
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef __AVX512F__
typedef __m512 vec;
#define ISA "avx512"
#define LANES 16
#define SET1(x) _mm512_set1_ps(x)
#define FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define REDUCE(v) _mm512_reduce_add_ps(v)
#else
typedef __m256 vec;
#define ISA "avx2"
#define LANES 8
#define SET1(x) _mm256_set1_ps(x)
#define FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
static float REDUCE(__m256 v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#endif

#define NACC 12

static int use_cpu_time = 0;

typedef struct {
    long iters;
    double cpu_seconds; /* this thread's CPU time for the loop */
    float result; /* printed so the compiler cannot drop the loop */
} job_t;

static double thread_cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *worker(void *arg) {
    job_t *job = (job_t *)arg;
    double c0_time = thread_cpu();
    /* a*x + b with a slightly below 1 keeps values bounded: no inf/denormals */
    vec a = SET1(0.999999f), b = SET1(1e-7f);
    vec c0 = SET1(1.0f), c1 = SET1(1.1f), c2 = SET1(1.2f), c3 = SET1(1.3f);
    vec c4 = SET1(1.4f), c5 = SET1(1.5f), c6 = SET1(1.6f), c7 = SET1(1.7f);
    vec c8 = SET1(1.8f), c9 = SET1(1.9f), c10 = SET1(2.0f), c11 = SET1(2.1f);
    for (long i = 0; i < job->iters; i++) {
        /* 12 independent dependency chains, one FMA each per iteration */
        c0 = FMA(c0, a, b);  c1 = FMA(c1, a, b);  c2 = FMA(c2, a, b);
        c3 = FMA(c3, a, b);  c4 = FMA(c4, a, b);  c5 = FMA(c5, a, b);
        c6 = FMA(c6, a, b);  c7 = FMA(c7, a, b);  c8 = FMA(c8, a, b);
        c9 = FMA(c9, a, b);  c10 = FMA(c10, a, b); c11 = FMA(c11, a, b);
        /* empty asm with the accumulators as in/out operands: forces them to
           stay in registers and stops the compiler from folding the chains */
        __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3),
                              "+v"(c4), "+v"(c5), "+v"(c6), "+v"(c7));
        __asm__ volatile("" : "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    vec s = c0;
    s = FMA(s, a, c1); s = FMA(s, a, c2); s = FMA(s, a, c3); s = FMA(s, a, c4);
    s = FMA(s, a, c5); s = FMA(s, a, c6); s = FMA(s, a, c7); s = FMA(s, a, c8);
    s = FMA(s, a, c9); s = FMA(s, a, c10); s = FMA(s, a, c11);
    job->result = REDUCE(s);
    job->cpu_seconds = thread_cpu() - c0_time;
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* run all threads once; returns wall seconds (or the slowest thread's CPU seconds) */
static double run(int nthreads, long iters, float *sink) {
    pthread_t tid[256];
    job_t jobs[256];
    double t0 = now();
    for (int t = 0; t < nthreads; t++) {
        jobs[t].iters = iters;
        pthread_create(&tid[t], NULL, worker, &jobs[t]);
    }
    double cpu = 0;
    for (int t = 0; t < nthreads; t++) {
        pthread_join(tid[t], NULL);
        *sink += jobs[t].result;
        if (jobs[t].cpu_seconds > cpu) cpu = jobs[t].cpu_seconds;
    }
    return use_cpu_time ? cpu : now() - t0;
}

int main(int argc, char **argv) {
    int nthreads = argc > 1 ? atoi(argv[1]) : 1;
    long iters = argc > 2 ? atol(argv[2]) : 200000000L;
    use_cpu_time = argc > 3 && argv[3][0] == 'c';
    if (nthreads < 1 || nthreads > 256) nthreads = 1;
    float sink = 0.0f;
    run(nthreads, iters / 10, &sink); /* warm-up: let the clock ramp up */
    double best = 1e30;
    for (int r = 0; r < 3; r++) { /* best of 3 */
        double s = run(nthreads, iters, &sink);
        if (s < best) best = s;
    }
    /* one FMA = 2 flops per lane */
    double flops = 2.0 * LANES * NACC * (double)iters * nthreads;
    printf("isa=%s threads=%d gflops=%.1f seconds=%.3f sink=%g\n", ISA,
           nthreads, flops / best * 1e-9, best, (double)sink);
    return 0;
}
