/* one_row_bound.c - how fast can one row go through 784-256-128-10 here?
 *
 * The floor under a one-row predict: (1) only reading the 917 KB of float32
 * weights with AVX-512 loads, (2) a plain AVX-512 GEMV of the three layers
 * (relu), with the weights starting `offset` bytes past a cache line.
 *
 *   gcc -O3 -march=native bench/one_row_bound.c -o /tmp/one_row_bound
 *   taskset -c 0 /tmp/one_row_bound          # offsets 0, 16, 32
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* c = relu(a @ B), B (K x N) row-major, N a multiple of 16. */
static void gemv(int N, int K, const float *a, const float *B, float *c)
{
    for (int j = 0; j < N; j += 128) {
        __m512 acc[8];
        int nv = (N - j) / 16 < 8 ? (N - j) / 16 : 8;
        for (int v = 0; v < 8; v++) acc[v] = _mm512_setzero_ps();
        const float *b = B + j;
        for (int k = 0; k < K; k++, b += N) {
            __m512 av = _mm512_set1_ps(a[k]);
            for (int v = 0; v < nv; v++)
                acc[v] = _mm512_fmadd_ps(av, _mm512_loadu_ps(b + 16 * v), acc[v]);
        }
        for (int v = 0; v < nv; v++)
            _mm512_storeu_ps(c + j + 16 * v, _mm512_max_ps(acc[v], _mm512_setzero_ps()));
    }
}

int main(void)
{
    const int sizes[4] = {784, 256, 128, 16};   /* 10 outputs, padded to a vector */
    size_t total = 0;
    for (int l = 0; l < 3; l++) total += (size_t)sizes[l] * sizes[l + 1];
    float *raw = aligned_alloc(64, total * sizeof(float) + 64);
    float x[784], h1[256], h2[128], out[16];
    for (int i = 0; i < 784; i++) x[i] = 0.5f;
    double best = 1e9;
    float sink = 0;
    for (size_t i = 0; i < total; i++) raw[i] = 1e-3f * (float)(i % 13);
    for (int r = 0; r < 20000; r++) {
        double t = now();
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = 0; i + 64 <= total; i += 64) {
            s0 = _mm512_add_ps(s0, _mm512_load_ps(raw + i));
            s1 = _mm512_add_ps(s1, _mm512_load_ps(raw + i + 16));
            s2 = _mm512_add_ps(s2, _mm512_load_ps(raw + i + 32));
            s3 = _mm512_add_ps(s3, _mm512_load_ps(raw + i + 48));
        }
        sink += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
        t = now() - t;
        if (t < best) best = t;
    }
    printf("read the weights (%zu KB): %.2f us\n", total * 4 / 1024, 1e6 * best);
    for (int offset = 0; offset <= 32; offset += 16) {
        float *w = (float *)((char *)raw + offset);
        const float *W[3] = {w, w + 784 * 256, w + 784 * 256 + 256 * 128};
        best = 1e9;
        for (int r = 0; r < 20000; r++) {
            double t = now();
            gemv(256, 784, x, W[0], h1);
            gemv(128, 256, h1, W[1], h2);
            gemv(16, 128, h2, W[2], out);
            t = now() - t;
            if (t < best) best = t;
        }
        sink += out[3];
        printf("GEMV of the three layers, weights %2d bytes past a line: %.2f us\n",
               offset, 1e6 * best);
    }
    return sink == 12345.0f;   /* keep the work */
}
