/* test_kernels.c - stand-alone correctness tests of fastnn's GEMM kernels.
 *
 * Every available variant (generic, avx2, avx512), float and double, is run
 * against a naive triple loop in long double over: all 4 transpose combos,
 * shapes from 1x1x1 (and K = 0) to 257x129x785 with padded leading
 * dimensions, every epilogue kind and every activation code.  Each C
 * has a guard band that must stay untouched, and C starts as NaN where the
 * epilogue must not read it.  The determinism contract is checked by
 * recomputing sub-blocks (offset pointers, smaller M/N, single rows/columns)
 * of a big product and requiring bit-identical results.  The pre-packed B
 * path (fnn_kpack_b + fnn_kgemm_pb) must match the plain one bit for bit.
 * Build and run: make -C csrc/tests test
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fnn_kernels.h"
#include "fnn_activations.h"

static int n_fail = 0, n_check = 0;
static uint64_t rng = 88172645463325252ull;
static double urand(void) /* uniform [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void *xalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64)) { fprintf(stderr, "oom\n"); exit(2); }
    return p;
}

static const char *vname[3] = {"generic", "avx2", "avx512"};

typedef struct { int kind, act, has_bias; double alpha, beta, p; } epi_case;

#define GUARD 5  /* extra columns (ldc) and rows of C that must stay untouched */

/* One instantiation of the tests per element type. */
#define DEFINE_TESTS(T, SUF, EPS)                                                        \
typedef void (*kfun_##SUF)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t, \
                           const T *, ptrdiff_t, T *, ptrdiff_t, const fnn_epilogue *, void *); \
static kfun_##SUF kfuns_##SUF[3] = {fnn_kgemm_generic_##SUF, fnn_kgemm_avx2_##SUF,       \
                                   fnn_kgemm_avx512_##SUF};                             \
typedef void (*pbfun_##SUF)(int, ptrdiff_t, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t,   \
                            const T *, T *, ptrdiff_t, const fnn_epilogue *, void *);   \
static pbfun_##SUF pbfuns_##SUF[3] = {fnn_kgemm_pb_generic_##SUF, fnn_kgemm_pb_avx2_##SUF, \
                                     fnn_kgemm_pb_avx512_##SUF};                        \
typedef void (*packfun_##SUF)(int, ptrdiff_t, ptrdiff_t, const T *, ptrdiff_t, T *, int, int); \
static packfun_##SUF pack_##SUF[3] = {fnn_kpack_b_generic_##SUF, fnn_kpack_b_avx2_##SUF, \
                                     fnn_kpack_b_avx512_##SUF};                         \
typedef size_t (*pelemfun_##SUF)(ptrdiff_t, ptrdiff_t);                                  \
static pelemfun_##SUF pelems_##SUF[3] = {fnn_kpacked_b_elems_generic_##SUF,              \
                                        fnn_kpacked_b_elems_avx2_##SUF,                 \
                                        fnn_kpacked_b_elems_avx512_##SUF};              \
                                                                                         \
/* op(X)[r][c] of a stored matrix */                                                     \
static T opa_##SUF(const T *A, ptrdiff_t lda, int ta, ptrdiff_t i, ptrdiff_t k)          \
{ return ta ? A[k * lda + i] : A[i * lda + k]; }                                         \
static T opb_##SUF(const T *B, ptrdiff_t ldb, int tb, ptrdiff_t k, ptrdiff_t j)          \
{ return tb ? B[j * ldb + k] : B[k * ldb + j]; }                                         \
                                                                                         \
static void test_shape_##SUF(int var, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, int tb, \
                             const epi_case *ec, int n_ec, void *work, int lda512)       \
{                                                                                        \
    ptrdiff_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;        \
    ptrdiff_t lda = lda512 ? (ac + 511) / 512 * 512 : ac + 3;                            \
    ptrdiff_t ldb = bc + 1, ldc = N + GUARD, ldy = N + 2;                                \
    T *A = xalloc(sizeof(T) * (size_t)(ar * lda + 1));                                   \
    T *B = xalloc(sizeof(T) * (size_t)(br * ldb + 1));                                   \
    T *C = xalloc(sizeof(T) * (size_t)((M + GUARD) * ldc));                              \
    T *C0 = xalloc(sizeof(T) * (size_t)((M + GUARD) * ldc));                             \
    T *Y = xalloc(sizeof(T) * (size_t)(M * ldy));                                        \
    T *bias = xalloc(sizeof(T) * (size_t)N);                                             \
    long double *ref = xalloc(sizeof(long double) * (size_t)(M * N));                    \
    double *sabs = xalloc(sizeof(double) * (size_t)(M * N));                             \
    for (ptrdiff_t q = 0; q < ar * lda + 1; q++) A[q] = (T)urand();                      \
    for (ptrdiff_t q = 0; q < br * ldb + 1; q++) B[q] = (T)urand();                      \
    for (ptrdiff_t j = 0; j < N; j++) bias[j] = (T)urand();                              \
    for (ptrdiff_t q = 0; q < (M + GUARD) * ldc; q++) C0[q] = (T)urand();                \
    for (ptrdiff_t i = 0; i < M; i++)                                                    \
        for (ptrdiff_t j = 0; j < N; j++) {                                              \
            long double s = 0; double sa = 0;                                            \
            for (ptrdiff_t k = 0; k < K; k++) {                                          \
                long double t = (long double)opa_##SUF(A, lda, ta, i, k) *               \
                                opb_##SUF(B, ldb, tb, k, j);                              \
                s += t; sa += fabs((double)t);                                           \
            }                                                                            \
            ref[i * N + j] = s; sabs[i * N + j] = sa;                                    \
        }                                                                                \
    for (int e = 0; e < n_ec; e++) {                                                     \
        const epi_case *c = &ec[e];                                                      \
        fnn_epilogue ep; memset(&ep, 0, sizeof ep);                                      \
        ep.kind = c->kind; ep.act = c->act; ep.act_param = c->p;                         \
        ep.alpha = c->alpha; ep.beta = c->beta;                                          \
        ep.bias = c->has_bias ? bias : NULL; ep.Y = Y; ep.ldy = ldy;                     \
        /* Y = f(random pre-activation), the derivative's natural domain */              \
        for (ptrdiff_t q = 0; q < M * ldy; q++)                                          \
            Y[q] = fnn_act_##SUF(c->act == FNN_ACT_SOFTMAX ? 0 : c->act, (T)(3 * urand()), (T)c->p); \
        int store_reads = c->kind == FNN_EPI_STORE && c->beta != 0;                      \
        for (ptrdiff_t q = 0; q < (M + GUARD) * ldc; q++) {                              \
            int inside = q / ldc < M && q % ldc < N;                                     \
            C[q] = (inside && !store_reads) ? (T)NAN : C0[q];                            \
        }                                                                                \
        kfuns_##SUF[var](ta, tb, M, N, K, A, lda, B, ldb, C, ldc, &ep, work);            \
        int bad = 0;                                                                     \
        for (ptrdiff_t q = 0; q < (M + GUARD) * ldc && !bad; q++) {                      \
            ptrdiff_t i = q / ldc, j = q % ldc;                                          \
            double got = (double)C[q];                                                   \
            if (i >= M || j >= N) {                                                      \
                if (memcmp(&C[q], &C0[q], sizeof(T))) {                                  \
                    printf("  guard overwritten at (%td,%td)\n", i, j); bad = 1; }       \
                continue;                                                                \
            }                                                                            \
            long double acc = ref[i * N + j];                                            \
            double pm = fabs(c->p) > 1 ? fabs(c->p) : 1;                                 \
            double tol = (K + 4) * EPS * sabs[i * N + j] * pm;                           \
            double want, skip = 0;                                                       \
            if (c->kind == FNN_EPI_STORE) {                                              \
                want = (double)(c->alpha * acc + (c->beta != 0 ? c->beta * (long double)C0[q] : 0)); \
                tol = tol * fabs(c->alpha) + 4 * EPS * (fabs(c->alpha * (double)acc) + fabs(c->beta * C0[q])); \
            } else if (c->kind == FNN_EPI_BIAS_ACT) {                                    \
                double x = (double)acc + (c->has_bias ? bias[j] : 0);                    \
                tol += 4 * EPS * fabs(x);                                                \
                want = fnn_act_d(c->act == FNN_ACT_SOFTMAX ? 0 : c->act, x, c->p);      \
                if ((c->act == FNN_ACT_STEP || c->act == FNN_ACT_SIGN) && fabs(x) <= tol) skip = 1; \
                tol += 8 * EPS * fabs(want);                                             \
            } else {                                                                     \
                double d = fnn_dact_d(c->act, (double)Y[i * ldy + j], c->p);             \
                want = (double)acc * d;                                                  \
                tol = tol * (fabs(d) > 1 ? fabs(d) : 1) + 8 * EPS * fabs(want);          \
            }                                                                            \
            tol += 1e-300;                                                               \
            if (!skip && !(fabs(got - want) <= tol)) {                                   \
                printf("  (%td,%td): got %.9g want %.9g tol %.3g\n", i, j, got, want, tol); \
                bad = 1;                                                                 \
            }                                                                            \
        }                                                                                \
        n_check++;                                                                       \
        if (bad) {                                                                       \
            n_fail++;                                                                    \
            printf("FAIL %s %s M=%td N=%td K=%td ta=%d tb=%d kind=%d act=%d bias=%d alpha=%g beta=%g\n", \
                   vname[var], #T, M, N, K, ta, tb, c->kind, c->act, c->has_bias, c->alpha, c->beta); \
        }                                                                                \
    }                                                                                    \
    free(A); free(B); free(C); free(C0); free(Y); free(bias); free(ref); free(sabs);     \
}                                                                                        \
                                                                                         \
/* Sub-blocks of a big product must be bit-identical to the big product. */              \
static void test_determinism_##SUF(int var, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, int tb, \
                                   const epi_case *c, void *work, int lda512)            \
{                                                                                        \
    ptrdiff_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;        \
    ptrdiff_t lda = lda512 ? (ac + 511) / 512 * 512 : ac + 1;                            \
    ptrdiff_t ldb = bc + 2, ldc = N + 3, ldy = N + 1;                                    \
    T *A = xalloc(sizeof(T) * (size_t)(ar * lda));                                       \
    T *B = xalloc(sizeof(T) * (size_t)(br * ldb));                                       \
    T *C = xalloc(sizeof(T) * (size_t)(M * ldc));                                        \
    T *C0 = xalloc(sizeof(T) * (size_t)(M * ldc));                                       \
    T *S = xalloc(sizeof(T) * (size_t)(M * ldc));                                        \
    T *Y = xalloc(sizeof(T) * (size_t)(M * ldy));                                        \
    T *bias = xalloc(sizeof(T) * (size_t)N);                                             \
    for (ptrdiff_t q = 0; q < ar * lda; q++) A[q] = (T)urand();                          \
    for (ptrdiff_t q = 0; q < br * ldb; q++) B[q] = (T)urand();                          \
    for (ptrdiff_t j = 0; j < N; j++) bias[j] = (T)urand();                              \
    for (ptrdiff_t q = 0; q < M * ldc; q++) C0[q] = (T)urand();                          \
    for (ptrdiff_t q = 0; q < M * ldy; q++) Y[q] = fnn_act_##SUF(c->act == FNN_ACT_SOFTMAX ? 0 : c->act, (T)(3 * urand()), (T)c->p); \
    fnn_epilogue ep; memset(&ep, 0, sizeof ep);                                          \
    ep.kind = c->kind; ep.act = c->act; ep.act_param = c->p; ep.alpha = c->alpha;        \
    ep.beta = c->beta; ep.bias = c->has_bias ? bias : NULL; ep.Y = Y; ep.ldy = ldy;      \
    memcpy(C, C0, sizeof(T) * (size_t)(M * ldc));                                        \
    kfuns_##SUF[var](ta, tb, M, N, K, A, lda, B, ldb, C, ldc, &ep, work);                \
    const ptrdiff_t blocks[][4] = { /* i0, j0, m, n (clipped) */                  \
        {0, 0, 1, 1}, {1, 3, 5, 7}, {7, 17, 13, 33}, {M - 1, N - 1, 1, 1}, {3, 0, 1, 100000}, \
        {0, 5, 100000, 1}, {11, 29, 100000, 100000}, {5, 1, 31, 17}, {0, 0, 100000, 100000}, \
        {M / 2, N / 3, 3, 100000}};                                                      \
    int bad = 0;                                                                         \
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {                      \
        ptrdiff_t i0 = blocks[b][0], j0 = blocks[b][1];                                  \
        if (i0 >= M) i0 = M - 1;                                                         \
        if (j0 >= N) j0 = N - 1;                                                         \
        ptrdiff_t m = blocks[b][2] < M - i0 ? blocks[b][2] : M - i0;                     \
        ptrdiff_t n = blocks[b][3] < N - j0 ? blocks[b][3] : N - j0;                     \
        memcpy(S, C0, sizeof(T) * (size_t)(M * ldc));                                    \
        fnn_epilogue sp = ep;                                                            \
        sp.bias = c->has_bias ? bias + j0 : NULL; sp.Y = Y + i0 * ldy + j0;              \
        kfuns_##SUF[var](ta, tb, m, n, K, ta ? A + i0 : A + i0 * lda, lda,               \
                         tb ? B + j0 * ldb : B + j0, ldb, S + i0 * ldc + j0, ldc, &sp, work); \
        for (ptrdiff_t i = i0; i < i0 + m; i++)                                          \
            for (ptrdiff_t j = j0; j < j0 + n; j++)                                      \
                if (memcmp(&S[i * ldc + j], &C[i * ldc + j], sizeof(T)) && !bad) {      \
                    printf("  block %zu (%td,%td): %.17g != %.17g\n", b, i, j,            \
                           (double)S[i * ldc + j], (double)C[i * ldc + j]);              \
                    bad = 1;                                                             \
                }                                                                        \
    }                                                                                    \
    n_check++;                                                                           \
    if (bad) {                                                                           \
        n_fail++;                                                                        \
        printf("FAIL determinism %s %s M=%td N=%td K=%td ta=%d tb=%d kind=%d act=%d\n",  \
               vname[var], #T, M, N, K, ta, tb, c->kind, c->act);                        \
    }                                                                                    \
    free(A); free(B); free(C); free(C0); free(S); free(Y); free(bias);                   \
}                                                                                        \
                                                                                         \
/* The pre-packed path must give exactly what the plain path gives (whose     \
 * accuracy test_shape checks), guard band included; packing in parts must     \
 * fill the same buffer as packing in one go, and nothing past its end. */   \
static void test_packed_##SUF(int var, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, int ta, int tb, \
                              const epi_case *ec, int n_ec, void *work, int lda512)      \
{                                                                                        \
    ptrdiff_t ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;        \
    ptrdiff_t lda = lda512 ? (ac + 511) / 512 * 512 : ac + 3;                            \
    ptrdiff_t ldb = bc + 1, ldc = N + GUARD, ldy = N + 2;                                \
    size_t pe = pelems_##SUF[var](N, K), pg = 67;                                        \
    T *A = xalloc(sizeof(T) * (size_t)(ar * lda + 1));                                   \
    T *B = xalloc(sizeof(T) * (size_t)(br * ldb + 1));                                   \
    T *C = xalloc(sizeof(T) * (size_t)((M + GUARD) * ldc));                              \
    T *P = xalloc(sizeof(T) * (size_t)((M + GUARD) * ldc));                              \
    T *C0 = xalloc(sizeof(T) * (size_t)((M + GUARD) * ldc));                             \
    T *Y = xalloc(sizeof(T) * (size_t)(M * ldy));                                        \
    T *bias = xalloc(sizeof(T) * (size_t)N);                                             \
    T *pb = xalloc(sizeof(T) * (pe + pg)), *pb1 = xalloc(sizeof(T) * (pe + pg));          \
    for (ptrdiff_t q = 0; q < ar * lda + 1; q++) A[q] = (T)urand();                      \
    for (ptrdiff_t q = 0; q < br * ldb + 1; q++) B[q] = (T)urand();                      \
    for (ptrdiff_t j = 0; j < N; j++) bias[j] = (T)urand();                              \
    for (ptrdiff_t q = 0; q < (M + GUARD) * ldc; q++) C0[q] = (T)urand();                \
    int bad = 0;                                                                         \
    if (K > 0 && pe != (size_t)(((N + 63) / 64) * 64 * K) &&                             \
        pe != (size_t)((N + 31) / 32 * 32 * K) && pe != (size_t)((N + 15) / 16 * 16 * K) && \
        pe != (size_t)((N + 7) / 8 * 8 * K) && pe != (size_t)((N + 3) / 4 * 4 * K)) {    \
        printf("  packed size %zu for N=%td K=%td\n", pe, N, K); bad = 1; }              \
    for (size_t q = 0; q < pe + pg; q++) { pb[q] = (T)NAN; pb1[q] = (T)NAN; }            \
    pack_##SUF[var](tb, N, K, B, ldb, pb1, 0, 1);                                        \
    for (int part = 2; part >= 0; part--) pack_##SUF[var](tb, N, K, B, ldb, pb, part, 3); \
    if (memcmp(pb, pb1, sizeof(T) * (pe + pg))) {                                        \
        printf("  packing in 3 parts differs from packing in one\n"); bad = 1; }          \
    for (size_t q = pe; q < pe + pg; q++)                                                \
        if (!isnan((double)pb[q]) && !bad) { printf("  packed B overran\n"); bad = 1; }  \
    for (int e = 0; e < n_ec && !bad; e++) {                                             \
        const epi_case *c = &ec[e];                                                      \
        fnn_epilogue ep; memset(&ep, 0, sizeof ep);                                      \
        ep.kind = c->kind; ep.act = c->act; ep.act_param = c->p;                         \
        ep.alpha = c->alpha; ep.beta = c->beta;                                          \
        ep.bias = c->has_bias ? bias : NULL; ep.Y = Y; ep.ldy = ldy;                     \
        for (ptrdiff_t q = 0; q < M * ldy; q++)                                          \
            Y[q] = fnn_act_##SUF(c->act == FNN_ACT_SOFTMAX ? 0 : c->act, (T)(3 * urand()), (T)c->p); \
        memcpy(C, C0, sizeof(T) * (size_t)((M + GUARD) * ldc));                          \
        memcpy(P, C0, sizeof(T) * (size_t)((M + GUARD) * ldc));                          \
        kfuns_##SUF[var](ta, tb, M, N, K, A, lda, B, ldb, C, ldc, &ep, work);            \
        pbfuns_##SUF[var](ta, M, N, K, A, lda, pb, P, ldc, &ep, work);                   \
        for (ptrdiff_t q = 0; q < (M + GUARD) * ldc; q++)                                \
            if (memcmp(&C[q], &P[q], sizeof(T))) {                                       \
                printf("  (%td,%td): pre-packed %.17g, plain %.17g\n", q / ldc, q % ldc, \
                       (double)P[q], (double)C[q]);                                      \
                printf("  kind=%d act=%d bias=%d alpha=%g beta=%g\n", c->kind, c->act,   \
                       c->has_bias, c->alpha, c->beta);                                  \
                bad = 1; break;                                                          \
            }                                                                            \
    }                                                                                    \
    n_check++;                                                                           \
    if (bad) {                                                                           \
        n_fail++;                                                                        \
        printf("FAIL pre-packed %s %s M=%td N=%td K=%td ta=%d tb=%d lda512=%d\n",        \
               vname[var], #T, M, N, K, ta, tb, lda512);                                 \
    }                                                                                    \
    free(A); free(B); free(C); free(P); free(C0); free(Y); free(bias); free(pb); free(pb1); \
}

DEFINE_TESTS(float, s, 5.96e-8)
DEFINE_TESTS(double, d, 1.12e-16)

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    int avail[3] = {1, fnn_cpu_has_avx2_fma(), fnn_cpu_has_avx512()};
    printf("cpu: avx2+fma %d, avx512 %d; work bytes float %zu, double %zu\n", avail[1], avail[2],
           fnn_kgemm_work_bytes(4), fnn_kgemm_work_bytes(8));
    size_t wb = fnn_kgemm_work_bytes(8) > fnn_kgemm_work_bytes(4) ? fnn_kgemm_work_bytes(8)
                                                                  : fnn_kgemm_work_bytes(4);
    void *work = xalloc(wb);

    epi_case ec[64];
    int n_ec = 0;
    ec[n_ec++] = (epi_case){FNN_EPI_STORE, 0, 0, 1.0, 0.0, 0};
    ec[n_ec++] = (epi_case){FNN_EPI_STORE, 0, 0, -0.5, 0.0, 0};
    ec[n_ec++] = (epi_case){FNN_EPI_STORE, 0, 0, 0.7, 1.3, 0};
    ec[n_ec++] = (epi_case){FNN_EPI_STORE, 0, 0, -0.01, 1.0, 0};
    for (int act = 0; act < FNN_ACT_COUNT; act++) {
        double p = act == FNN_ACT_LEAKY_RELU ? 0.01 : (act == FNN_ACT_ELU ? 1.3 : 0.0);
        ec[n_ec++] = (epi_case){FNN_EPI_BIAS_ACT, act, 1, 0, 0, p};
        if (act == 0 || act == 1 || act == 3 || act == 9)
            ec[n_ec++] = (epi_case){FNN_EPI_BIAS_ACT, act, 0, 0, 0, p};
        ec[n_ec++] = (epi_case){FNN_EPI_DERIV, act, 0, 0, 0, p};
    }
    static const ptrdiff_t shapes[][3] = {
        {1, 1, 1}, {1, 1, 0}, {3, 2, 0}, {1, 17, 5}, {17, 1, 5}, {2, 3, 4}, {5, 7, 3},
        {12, 32, 16}, {13, 33, 17}, {6, 16, 1}, {37, 53, 71}, {11, 31, 256}, {25, 65, 257},
        {19, 40, 600}, {300, 40, 20}, {30, 300, 30}, {70, 200, 300}, {257, 129, 785},
        {530, 17, 9}, {300, 140, 600}, {100, 600, 700}};
    int n_shapes = sizeof shapes / sizeof shapes[0];
    for (int var = 0; var < 3; var++) {
        if (!avail[var]) { printf("%s: not supported by this CPU, skipped\n", vname[var]); continue; }
        int f0 = n_fail;
        for (int s = 0; s < n_shapes; s++) {
            if (quick && shapes[s][0] * shapes[s][1] * shapes[s][2] > 1000000) continue;
            for (int t = 0; t < 4; t++) {
                /* odd leading dimensions, and (for the bigger shapes) multiples of
                 * 512, which make the kernels pack A */
                for (int l = 0; l < (shapes[s][1] >= 64 ? 2 : 1); l++) {
                    test_shape_s(var, shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1, ec, n_ec, work, l);
                    test_shape_d(var, shapes[s][0], shapes[s][1], shapes[s][2], t >> 1, t & 1, ec, n_ec, work, l);
                }
            }
        }
        static const ptrdiff_t pshapes[][3] = {
            {1, 1, 1}, {3, 2, 0}, {1, 17, 5}, {5, 7, 3}, {13, 33, 17}, {37, 53, 71},
            {25, 65, 257}, {100, 40, 600}, {257, 129, 785}, {300, 300, 30}, {139, 600, 300}};
        for (size_t s = 0; s < sizeof pshapes / sizeof pshapes[0]; s++) {
            if (quick && pshapes[s][0] * pshapes[s][1] * pshapes[s][2] > 3000000) continue;
            for (int t = 0; t < 4; t++)
                for (int l = 0; l < (pshapes[s][1] >= 64 ? 2 : 1); l++) {
                    test_packed_s(var, pshapes[s][0], pshapes[s][1], pshapes[s][2], t >> 1, t & 1, ec, n_ec, work, l);
                    test_packed_d(var, pshapes[s][0], pshapes[s][1], pshapes[s][2], t >> 1, t & 1, ec, n_ec, work, l);
                }
        }
        for (int t = 0; t < 4; t++)
            for (int e = 0; e < n_ec; e++) {
                test_determinism_s(var, 257, 129, 785, t >> 1, t & 1, &ec[e], work, 0);
                test_determinism_d(var, 97, 61, 300, t >> 1, t & 1, &ec[e], work, 0);
                test_determinism_s(var, 139, 300, 333, t >> 1, t & 1, &ec[e], work, 1);
                test_determinism_d(var, 139, 200, 280, t >> 1, t & 1, &ec[e], work, 1);
                if (e < 4) test_determinism_s(var, 40, 530, 100, t >> 1, t & 1, &ec[e], work, 0);
            }
        printf("%s: %s\n", vname[var], n_fail == f0 ? "all passed" : "FAILURES");
    }
    printf("%d checks, %d failures\n", n_check, n_fail);
    free(work);
    return n_fail != 0;
}
