/* cross_core_read.c - how fast does one core read data another core just wrote?
 *
 * Why: a training step split over two threads hands data from core to core
 * at every stage (the columns of a layer's output that the other thread
 * computed, the operands it packed, the batch rows it gathered), and that
 * rate bounds how close two threads can come to twice one thread's speed
 * (bench/README.md, "Session 9").  Thread 0 (on CPU 0) times a pass of
 * AVX-512 loads over a buffer that, just before, either it wrote itself or
 * thread 1 (on CPU 1) wrote; the two meet at a barrier between passes.
 *
 *   gcc -O2 -mavx512f -pthread bench/cross_core_read.c -o /tmp/cross_core_read
 *   /tmp/cross_core_read 131072          # buffer bytes (a multiple of 128)
 *
 * Output: the median time of a pass and its rate, for both writers.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSES 1001

static size_t n_floats;
static float *buf;
static pthread_barrier_t barrier;
static int other_core_writes;
static volatile float sink;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void write_buffer(int pass)
{
    for (size_t i = 0; i < n_floats; i += 16)
        _mm512_store_ps(buf + i, _mm512_set1_ps((float)pass));
}

static float read_buffer(void)
{
    __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
    for (size_t i = 0; i < n_floats; i += 32) {
        a = _mm512_add_ps(a, _mm512_load_ps(buf + i));
        b = _mm512_add_ps(b, _mm512_load_ps(buf + i + 16));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a, b));
}

static void *writer(void *arg)
{
    (void)arg;
    pin(1);
    for (int pass = 0; pass < PASSES; pass++) {
        if (other_core_writes)
            write_buffer(pass);
        pthread_barrier_wait(&barrier);     /* written: thread 0 reads */
        pthread_barrier_wait(&barrier);     /* read */
    }
    return NULL;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_pass(void)
{
    static double seconds[PASSES];
    pthread_t thread;
    pthread_barrier_init(&barrier, NULL, 2);
    pthread_create(&thread, NULL, writer, NULL);
    pin(0);
    for (int pass = 0; pass < PASSES; pass++) {
        if (!other_core_writes)
            write_buffer(pass);
        pthread_barrier_wait(&barrier);
        double t = now();
        sink = read_buffer();
        seconds[pass] = now() - t;
        pthread_barrier_wait(&barrier);
    }
    pthread_join(thread, NULL);
    pthread_barrier_destroy(&barrier);
    qsort(seconds, PASSES, sizeof seconds[0], by_value);
    return seconds[PASSES / 2];
}

int main(int argc, char **argv)
{
    size_t bytes = argc > 1 ? strtoul(argv[1], NULL, 10) : 131072;
    bytes = (bytes + 127) / 128 * 128;
    n_floats = bytes / sizeof(float);
    buf = aligned_alloc(64, bytes);
    memset(buf, 0, bytes);
    for (other_core_writes = 0; other_core_writes <= 1; other_core_writes++) {
        double t = median_pass();
        printf("%zu KiB written by %s: %.2f us per pass, %.1f GB/s\n", bytes / 1024,
               other_core_writes ? "the other core" : "this core", t * 1e6, bytes / t / 1e9);
    }
    free(buf);
    return 0;
}
