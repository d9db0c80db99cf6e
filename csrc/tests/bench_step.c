/* bench_step.c - where one training step's time goes, product by product.
 *
 * Replays the GEMM calls of one SGD step of an MLP (relu hidden layers,
 * softmax output) exactly as the engine makes them on one thread: the same
 * fixed output tiles (fastnn/_engine_team.pxi: tile_m, tile_n), the same
 * epilogues, the update as W += -lr * A.T @ D with beta = 1 straight into W.
 * The input rows of each batch are gathered from a 60,000-row data set in a
 * shuffled order, as the engine does, so the first layer reads cold rows.
 * Each product is timed with the thread's CPU time (robust on a shared
 * machine) and reported as ms per epoch (60,000 rows) and GFLOP/s.
 * Loss, bias sums and the rest of the step are not replayed: the Python
 * benchmark's epoch time minus the total here is what they cost.
 *
 * Usage: bench_step [net, e.g. 784-1024-1024-10] [batch] [steps] [variant: 1 generic, 2 avx2, 4 avx512]
 * Run pinned: taskset -c 0 ./bench_step 784-1024-1024-10 256
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fnn_kernels.h"
#include "fnn_activations.h"

typedef void (*kfun)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t,
                     const float *, ptrdiff_t, float *, ptrdiff_t, const fnn_epilogue *, void *);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static float *xalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n * sizeof(float) + 64)) exit(2);
    memset(p, 0, n * sizeof(float));
    return p;
}

/* The engine's tiles (fastnn/_engine_team.pxi), fastnn's own kernels. */
static ptrdiff_t tile_m(ptrdiff_t M) { return M <= 512 ? M : 256; }
static ptrdiff_t tile_n(ptrdiff_t N)
{
    ptrdiff_t tn = ((N + 3) / 4 + 31) / 32 * 32;
    tn = tn < 128 ? 128 : (tn > 512 ? 512 : tn);
    if (tn >= N && N >= 128) tn = ((N + 1) / 2 + 31) / 32 * 32;
    return tn;
}

/* Every tile of C = ep(op(A) @ op(B)), as gemm_tile does. */
static int warm; /* BENCH_WARM=1: each product runs once untimed first (caches warm) */

/* BENCH_PREPACK=3 (1: A only, 2: B only): operands that fnn_kprepack names are packed once per
 * product (into pk) and every tile reads them from there, as the engine does. */
static int prepack;
static float *pk;
static int (*prepack_f)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                        const fnn_epilogue *);
static void (*pack_a_f)(int, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, float *, int, int);
static void (*pack_b_f)(int, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, float *, int, int);
static size_t (*pa_elems_f)(ptrdiff_t, ptrdiff_t);
static void (*gemm_pp_f)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const float *, ptrdiff_t, const float *,
                         const float *, ptrdiff_t, const float *, float *, ptrdiff_t,
                         const fnn_epilogue *, void *);

static void tiles(kfun f, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                  const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                  float *C, ptrdiff_t ldc, const fnn_epilogue *ep0, void *work)
{
    ptrdiff_t tm = tile_m(M), tn = tile_n(N);
    int pp = prepack ? prepack_f(ta, tb, M, N, K, lda, tm, tn, ep0) & prepack : 0;
    float *pa = (pp & FNN_PREPACK_A) ? pk : NULL;
    float *pb = (pp & FNN_PREPACK_B) ? pk + pa_elems_f(M, K) + 64 : NULL;
    if (pa) pack_a_f(ta, M, K, A, lda, pa, 0, 1);
    if (pb) pack_b_f(tb, N, K, B, ldb, pb, 0, 1);
    for (ptrdiff_t i0 = 0; i0 < M; i0 += tm)
        for (ptrdiff_t j0 = 0; j0 < N; j0 += tn) {
            ptrdiff_t mb = M - i0 < tm ? M - i0 : tm, nb = N - j0 < tn ? N - j0 : tn;
            fnn_epilogue e = *ep0;
            if (e.bias) e.bias = (const float *)e.bias + j0;
            if (e.Y) e.Y = (const float *)e.Y + i0 * e.ldy + j0;
            if (pp)
                gemm_pp_f(ta, tb, mb, nb, K, A + (ta ? i0 : i0 * lda), lda, pa ? pa + i0 * K : NULL,
                          B + (tb ? j0 * ldb : j0), ldb, pb ? pb + j0 * K : NULL,
                          C + i0 * ldc + j0, ldc, &e, work);
            else
                f(ta, tb, mb, nb, K, A + (ta ? i0 : i0 * lda), lda, B + (tb ? j0 * ldb : j0), ldb,
                  C + i0 * ldc + j0, ldc, &e, work);
        }
}

enum { MAXL = 8 };

int main(int argc, char **argv)
{
    const char *net = argc > 1 ? argv[1] : "784-1024-1024-10";
    ptrdiff_t B = argc > 2 ? atoi(argv[2]) : 256;
    int steps = argc > 3 ? atoi(argv[3]) : 60;
    int variant = argc > 4 ? atoi(argv[4]) : 4;
    kfun f = variant == 1 ? fnn_kgemm_generic_s : variant == 2 ? fnn_kgemm_avx2_s : fnn_kgemm_avx512_s;
    size_t wb = variant == 1 ? fnn_kgemm_generic_work_bytes(4)
              : variant == 2 ? fnn_kgemm_avx2_work_bytes(4) : fnn_kgemm_avx512_work_bytes(4);
    ptrdiff_t sz[MAXL + 1] = {0};
    warm = getenv("BENCH_WARM") && atoi(getenv("BENCH_WARM"));
    prepack = getenv("BENCH_PREPACK") && atoi(getenv("BENCH_PREPACK"));
    prepack_f = variant == 1 ? fnn_kprepack_generic_s : variant == 2 ? fnn_kprepack_avx2_s : fnn_kprepack_avx512_s;
    pack_a_f = variant == 1 ? fnn_kpack_a_generic_s : variant == 2 ? fnn_kpack_a_avx2_s : fnn_kpack_a_avx512_s;
    pack_b_f = variant == 1 ? fnn_kpack_b_generic_s : variant == 2 ? fnn_kpack_b_avx2_s : fnn_kpack_b_avx512_s;
    pa_elems_f = variant == 1 ? fnn_kpacked_a_elems_generic_s : variant == 2 ? fnn_kpacked_a_elems_avx2_s
                                                                             : fnn_kpacked_a_elems_avx512_s;
    gemm_pp_f = variant == 1 ? fnn_kgemm_pp_generic_s : variant == 2 ? fnn_kgemm_pp_avx2_s : fnn_kgemm_pp_avx512_s;
    pk = xalloc((size_t)8 << 20);
    int nl = 0;
    for (const char *p = net; *p && nl <= MAXL; nl++) {
        sz[nl] = strtol(p, (char **)&p, 10);
        if (*p == '-') p++;
    }
    nl -= 1; /* layers */
    const ptrdiff_t NS = 60000;
    float *X = xalloc((size_t)NS * sz[0]), *Xb = xalloc((size_t)B * sz[0]);
    for (size_t q = 0; q < (size_t)NS * sz[0]; q++) X[q] = (float)((q * 7 % 13) - 6) / 16;
    float *W[MAXL], *b[MAXL], *A[MAXL], *D[MAXL];
    for (int l = 0; l < nl; l++) {
        W[l] = xalloc((size_t)sz[l] * sz[l + 1]);
        for (size_t q = 0; q < (size_t)sz[l] * sz[l + 1]; q++) W[l][q] = (float)((q * 5 % 11) - 5) / 256;
        b[l] = xalloc(sz[l + 1]);
        A[l] = xalloc((size_t)B * sz[l + 1]);
        D[l] = xalloc((size_t)B * sz[l + 1]);
    }
    void *work = xalloc(wb / 4 + 16);
    unsigned *perm = malloc(sizeof(unsigned) * NS);
    for (ptrdiff_t i = 0; i < NS; i++) perm[i] = (unsigned)i;
    srand(1);
    for (ptrdiff_t i = NS - 1; i > 0; i--) { ptrdiff_t j = rand() % (i + 1); unsigned t = perm[i]; perm[i] = perm[j]; perm[j] = t; }

    /* times: [0] gather, [1 + l] forward l, [1 + nl + l] delta into layer l-1, [1 + 2nl + l] update l */
    double t[1 + 3 * MAXL] = {0}, fl[1 + 3 * MAXL] = {0};
    for (int s = -3; s < steps; s++) {
        ptrdiff_t start = ((ptrdiff_t)(s < 0 ? 0 : s) * B) % (NS - B);
        double t0 = now();
        for (ptrdiff_t r = 0; r < B; r++) memcpy(Xb + r * sz[0], X + (size_t)perm[start + r] * sz[0], sizeof(float) * sz[0]);
        double t1 = now();
        if (s >= 0) t[0] += t1 - t0;
        const float *in = Xb;
        for (int l = 0; l < nl; l++) {
            fnn_epilogue ep;
            memset(&ep, 0, sizeof ep);
            ep.kind = FNN_EPI_BIAS_ACT;
            ep.act = l == nl - 1 ? FNN_ACT_SOFTMAX : FNN_ACT_RELU;
            ep.bias = b[l];
            if (warm) tiles(f, 0, 0, B, sz[l + 1], sz[l], in, sz[l], W[l], sz[l + 1], A[l], sz[l + 1], &ep, work);
            t0 = now();
            tiles(f, 0, 0, B, sz[l + 1], sz[l], in, sz[l], W[l], sz[l + 1], A[l], sz[l + 1], &ep, work);
            t1 = now();
            if (s >= 0) { t[1 + l] += t1 - t0; fl[1 + l] += 2.0 * B * sz[l] * sz[l + 1]; }
            in = A[l];
        }
        /* output delta: a stand-in (P - T is elementwise and not replayed) */
        memcpy(D[nl - 1], A[nl - 1], sizeof(float) * B * sz[nl]);
        for (int l = nl - 1; l >= 0; l--) {
            fnn_epilogue ep;
            if (l > 0) {
                memset(&ep, 0, sizeof ep);
                ep.kind = FNN_EPI_DERIV;
                ep.act = FNN_ACT_RELU;
                ep.Y = A[l - 1];
                ep.ldy = sz[l];
                if (warm) tiles(f, 0, 1, B, sz[l], sz[l + 1], D[l], sz[l + 1], W[l], sz[l + 1], D[l - 1], sz[l], &ep, work);
                t0 = now();
                tiles(f, 0, 1, B, sz[l], sz[l + 1], D[l], sz[l + 1], W[l], sz[l + 1], D[l - 1], sz[l], &ep, work);
                t1 = now();
                if (s >= 0) { t[1 + nl + l] += t1 - t0; fl[1 + nl + l] += 2.0 * B * sz[l] * sz[l + 1]; }
            }
            memset(&ep, 0, sizeof ep);
            ep.kind = FNN_EPI_STORE;
            ep.alpha = -1e-6;
            ep.beta = 1.0;
            if (warm) tiles(f, 1, 0, sz[l], sz[l + 1], B, l == 0 ? Xb : A[l - 1], sz[l], D[l], sz[l + 1], W[l], sz[l + 1], &ep, work);
            t0 = now();
            tiles(f, 1, 0, sz[l], sz[l + 1], B, l == 0 ? Xb : A[l - 1], sz[l], D[l], sz[l + 1], W[l], sz[l + 1], &ep, work);
            t1 = now();
            if (s >= 0) { t[1 + 2 * nl + l] += t1 - t0; fl[1 + 2 * nl + l] += 2.0 * B * sz[l] * sz[l + 1]; }
        }
    }
    double scale = (double)NS / ((double)steps * B), tot = 0, ftot = 0;
    printf("net %s batch %td, %d steps, ms per epoch of %td rows (thread CPU time)\n", net, B, steps, NS);
    printf("%-22s %9s %9s\n", "product", "ms/epoch", "GFLOP/s");
    for (int k = 0; k < 1 + 3 * nl; k++) {
        if (k > 0 && fl[k] == 0) continue;
        char name[64];
        int l = (k - 1) % nl;
        if (k == 0) snprintf(name, sizeof name, "gather X rows");
        else if (k <= nl) snprintf(name, sizeof name, "fwd %td x %td x %td", B, sz[l + 1], sz[l]);
        else if (k <= 2 * nl) snprintf(name, sizeof name, "delta %td x %td x %td", B, sz[l], sz[l + 1]);
        else snprintf(name, sizeof name, "update %td x %td x %td", sz[l], sz[l + 1], B);
        printf("%-22s %9.1f %9.1f\n", name, t[k] * scale * 1e3, fl[k] ? fl[k] / t[k] * 1e-9 : 0.0);
        tot += t[k];
        ftot += fl[k];
    }
    printf("%-22s %9.1f %9.1f\n", "total", tot * scale * 1e3, ftot / tot * 1e-9);
    return 0;
}
