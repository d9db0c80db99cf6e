/* bench_kernels.c - GFLOP/s of every variant on fastnn's realistic shapes.
 * Single-threaded; run pinned: `make bench` (taskset -c 0).
 * Usage: bench_kernels [variant-mask (1 generic, 2 avx2, 4 avx512; default 6)] [s|d]
 *        bench_kernels mask s|d M N K ta tb [pad [kind act]]   (one custom shape;
 *        pad is added to the leading dimensions of A and B)
 * FNN_BENCH_PREPACKED=1: time the pre-packed B path (fnn_kgemm_pb, B packed
 * once outside the timing, as inference does with the weights).
 * Each line: best time over several timed batches of calls, as GFLOP/s
 * (2*M*N*K flops per call).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fnn_kernels.h"
#include "fnn_activations.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); /* CPU time: robust on a shared machine */
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static void *xalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes)) exit(2);
    memset(p, 0, bytes);
    return p;
}

typedef struct { const char *name; int M, N, K, ta, tb, kind, act; double alpha, beta; int pad; } shape;

static const shape shapes[] = {
    {"fwd  X@W relu      ", 256, 256, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  X@W relu      ", 32, 256, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  X@W relu      ", 256, 128, 256, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  X@W softmax   ", 256, 10, 128, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_SOFTMAX, 0, 0, 0},
    {"fwd  X@W relu      ", 256, 1024, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  X@W relu      ", 256, 1024, 1024, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  X@W sigmoid   ", 256, 256, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_SIGMOID, 0, 0, 0},
    {"fwd  tile N=64     ", 256, 64, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"fwd  tile N=128    ", 256, 128, 784, 0, 0, FNN_EPI_BIAS_ACT, FNN_ACT_RELU, 0, 0, 0},
    {"bwd  D@W.T relu'   ", 256, 784, 256, 0, 1, FNN_EPI_DERIV, FNN_ACT_RELU, 0, 0, 0},
    {"bwd  D@W.T relu'   ", 256, 256, 128, 0, 1, FNN_EPI_DERIV, FNN_ACT_RELU, 0, 0, 0},
    {"bwd  D@W.T relu'   ", 32, 256, 128, 0, 1, FNN_EPI_DERIV, FNN_ACT_RELU, 0, 0, 0},
    {"bwd  D@W.T relu'   ", 256, 1024, 1024, 0, 1, FNN_EPI_DERIV, FNN_ACT_RELU, 0, 0, 0},
    {"upd  A.T@D b=1     ", 784, 256, 256, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"upd  A.T@D b=1     ", 784, 256, 32, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"upd  A.T@D b=1     ", 256, 128, 256, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"upd  A.T@D b=1     ", 1024, 1024, 256, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"upd  tile M=128    ", 128, 256, 256, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"upd  K>KC b=1      ", 784, 256, 512, 1, 0, FNN_EPI_STORE, 0, -0.01, 1.0, 0},
    {"plain A@B          ", 1024, 1024, 1024, 0, 0, FNN_EPI_STORE, 0, 1.0, 0.0, 0},
};

#define DEFINE_BENCH(T, SUF)                                                                   \
typedef void (*kfun_##SUF)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t,    \
                           const T *, ptrdiff_t, T *, ptrdiff_t, const fnn_epilogue *, void *); \
typedef void (*pbfun_##SUF)(int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t,         \
                            const T *, T *, ptrdiff_t, const fnn_epilogue *, void *);         \
typedef void (*packfun_##SUF)(int, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t, T *, int, int); \
typedef size_t (*pelemfun_##SUF)(ptrdiff_t, ptrdiff_t);                                        \
/* pb != NULL: time the pre-packed path (B packed once, outside the timing). */               \
static double bench_##SUF(kfun_##SUF f, pbfun_##SUF pb, packfun_##SUF pack, pelemfun_##SUF pe, \
                          const shape *s, void *work)                                         \
{                                                                                              \
    ptrdiff_t ar = s->ta ? s->K : s->M, ac = s->ta ? s->M : s->K;                              \
    ptrdiff_t br = s->tb ? s->N : s->K, bc = s->tb ? s->K : s->N;                              \
    ac += s->pad; bc += s->pad;                                                                \
    T *A = xalloc(sizeof(T) * ar * ac), *B = xalloc(sizeof(T) * br * bc);                      \
    T *C = xalloc(sizeof(T) * s->M * s->N), *Y = xalloc(sizeof(T) * s->M * s->N);              \
    T *bias = xalloc(sizeof(T) * s->N);                                                        \
    for (ptrdiff_t q = 0; q < ar * ac; q++) A[q] = (T)((q * 7 % 13) - 6) / 8;                  \
    for (ptrdiff_t q = 0; q < br * bc; q++) B[q] = (T)((q * 5 % 11) - 5) / 64;                 \
    for (ptrdiff_t q = 0; q < s->M * s->N; q++) Y[q] = (T)(q % 3) / 2;                         \
    fnn_epilogue ep = {s->kind, s->act, 0.01, s->alpha, s->beta, bias, Y, s->N};               \
    double flops = 2.0 * s->M * s->N * s->K, best = 1e30;                                      \
    int reps = (int)(2e7 / flops) + 1;                                                         \
    T *P = pb ? xalloc(sizeof(T) * (pe(s->N, s->K) + 1)) : NULL;                               \
    if (pb) pack(s->tb, s->N, s->K, B, bc, P, 0, 1);                                           \
    f(s->ta, s->tb, s->M, s->N, s->K, A, ac, B, bc, C, s->N, &ep, work); /* warm up */         \
    for (int t = 0; t < 7; t++) {                                                              \
        double t0 = now();                                                                     \
        for (int r = 0; r < reps; r++) {                                                       \
            if (pb) pb(s->ta, s->M, s->N, s->K, A, ac, P, C, s->N, &ep, work);                 \
            else f(s->ta, s->tb, s->M, s->N, s->K, A, ac, B, bc, C, s->N, &ep, work);          \
        }                                                                                      \
        double dt = (now() - t0) / reps;                                                       \
        if (dt < best) best = dt;                                                              \
    }                                                                                          \
    free(A); free(B); free(C); free(Y); free(bias); free(P);                                   \
    return flops / best * 1e-9;                                                                \
}

DEFINE_BENCH(float, s)
DEFINE_BENCH(double, d)

int main(int argc, char **argv)
{
    int mask = argc > 1 ? atoi(argv[1]) : 6;
    int dbl = argc > 2 && argv[2][0] == 'd';
    shape custom[1];
    const shape *list = shapes;
    size_t n_list = sizeof shapes / sizeof shapes[0];
    if (argc > 7) { /* bench_kernels mask s|d M N K ta tb [pad] [kind act]: one custom shape */
        custom[0] = (shape){"custom", atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]),
                            atoi(argv[7]), FNN_EPI_STORE, 0, 1.0, 0.0, argc > 8 ? atoi(argv[8]) : 0};
        if (argc > 10) { custom[0].kind = atoi(argv[9]); custom[0].act = atoi(argv[10]); }
        list = custom; n_list = 1;
    }
    kfun_s fs[3] = {fnn_kgemm_generic_s, fnn_kgemm_avx2_s, fnn_kgemm_avx512_s};
    kfun_d fd[3] = {fnn_kgemm_generic_d, fnn_kgemm_avx2_d, fnn_kgemm_avx512_d};
    pbfun_s pbs[3] = {fnn_kgemm_pb_generic_s, fnn_kgemm_pb_avx2_s, fnn_kgemm_pb_avx512_s};
    pbfun_d pbd[3] = {fnn_kgemm_pb_generic_d, fnn_kgemm_pb_avx2_d, fnn_kgemm_pb_avx512_d};
    packfun_s pks[3] = {fnn_kpack_b_generic_s, fnn_kpack_b_avx2_s, fnn_kpack_b_avx512_s};
    packfun_d pkd[3] = {fnn_kpack_b_generic_d, fnn_kpack_b_avx2_d, fnn_kpack_b_avx512_d};
    pelemfun_s pes[3] = {fnn_kpacked_b_elems_generic_s, fnn_kpacked_b_elems_avx2_s,
                         fnn_kpacked_b_elems_avx512_s};
    pelemfun_d ped[3] = {fnn_kpacked_b_elems_generic_d, fnn_kpacked_b_elems_avx2_d,
                         fnn_kpacked_b_elems_avx512_d};
    const char *pp = getenv("FNN_BENCH_PREPACKED");
    int prepacked = pp && pp[0] && pp[0] != '0';
    if (prepacked) printf("pre-packed B (fnn_kgemm_pb)\n");
    const char *vn[3] = {"generic", "avx2", "avx512"};
    int avail[3] = {1, fnn_cpu_has_avx2_fma(), fnn_cpu_has_avx512()};
    void *work = xalloc(fnn_kgemm_work_bytes(dbl ? 8 : 4));
    printf("%s GFLOP/s, single thread\n%-20s %5s %5s %5s %2s %2s", dbl ? "float64" : "float32",
           "shape", "M", "N", "K", "ta", "tb");
    for (int v = 0; v < 3; v++) if ((mask >> v & 1) && avail[v]) printf(" %8s", vn[v]);
    printf("\n");
    for (size_t i = 0; i < n_list; i++) {
        const shape *s = &list[i];
        printf("%-20s %5d %5d %5d %2d %2d", s->name, s->M, s->N, s->K, s->ta, s->tb);
        fflush(stdout);
        for (int v = 0; v < 3; v++) {
            if (!(mask >> v & 1) || !avail[v]) continue;
            printf(" %8.1f", dbl ? bench_d(fd[v], prepacked ? pbd[v] : NULL, pkd[v], ped[v], s, work)
                                 : bench_s(fs[v], prepacked ? pbs[v] : NULL, pks[v], pes[v], s, work));
            fflush(stdout);
        }
        printf("\n");
    }
    free(work);
    return 0;
}
