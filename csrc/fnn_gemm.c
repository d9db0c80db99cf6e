/* fnn_gemm.c - kernel dispatch, the BLAS path and the stand-alone epilogues.
 *
 * fnn_gemm_s/d route one single-threaded product to the kernel asked for.
 * The BLAS path computes the raw product with scipy's ?gemm (row-major
 * C = A @ B is column-major C^T = B^T @ A^T, so the operands swap places) and
 * then applies the epilogue over the block while it is still in cache; the
 * engine keeps blocks small enough for that.  fastnn's own kernels
 * (fnn_kernels_*.c) apply the epilogue inside the micro-kernel.
 */
#include "fnn_gemm.h"
#include "fnn_activations.h"

#include "fnn_kernels.h"

static fnn_sgemm_fn blas_sgemm = 0;
static fnn_dgemm_fn blas_dgemm = 0;

void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm)
{
    blas_sgemm = sgemm;
    blas_dgemm = dgemm;
}

/* The orientation of a BLAS call.  A row-major product is column-major
 * C^T = op(B)^T @ op(A)^T, so a minibatch's few rows become few columns for
 * BLAS, and OpenBLAS 0.3.30 (scipy's, Haswell kernels) is 10-30% slower on
 * such products than on their transpose, which packs the large operand
 * differently: 32 x 784 x 256 takes 168 us one way and 124-154 us the other
 * on this machine's Zen core.  For few rows and many columns the product is
 * therefore computed column-major into the work buffer and transposed into C
 * (cheap next to the product, and the epilogue pass reads C right after).
 * Outside these bounds, and for the in-place updates (beta != 0), the direct
 * call is as fast or faster. */
enum { BLAS_TRANSPOSED_MAX_M = 64, BLAS_TRANSPOSED_MIN_N = 128, BLAS_TRANSPOSED_MAX_N = 512 };

static int blas_transposed_is_faster(ptrdiff_t M, ptrdiff_t N)
{
    return M <= BLAS_TRANSPOSED_MAX_M && N >= BLAS_TRANSPOSED_MIN_N && N <= BLAS_TRANSPOSED_MAX_N;
}

/* One template for both types: T the element type, SUF its s/d suffix.
 * The switch on the activation sits outside the loops so that each loop is a
 * simple elementwise kernel the compiler vectorises. */
#define FNN_EACH(EXPR) for (ptrdiff_t j = 0; j < N; j++) { EXPR; }

#define FNN_DEFINE_EPILOGUE(T, SUF)                                                  \
void fnn_epilogue_apply_##SUF(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N,      \
                              T *C, ptrdiff_t ldc)                                   \
{                                                                                    \
    const T p = (T)ep->act_param;                                                    \
    const int act = ep->act;                                                         \
    const T s = ep->steepness != 0 ? (T)ep->steepness : (T)1;                        \
    if (ep->kind == FNN_EPI_BIAS_ACT) {                                              \
        const T *bias = (const T *)ep->bias;                                         \
        T *Z = (T *)ep->Z;                                                           \
        for (ptrdiff_t i = 0; i < M; i++) {                                          \
            T *restrict c = C + i * ldc;                                             \
            if (bias) FNN_EACH(c[j] += bias[j])                                      \
            if (s != 1 || Z) { /* steepness, kept inputs: see fnn_gemm.h */          \
                T *z = Z ? Z + i * ep->ldz : NULL;                                   \
                FNN_EACH(T x = s * c[j]; if (z) z[j] = x; c[j] = fnn_act_##SUF(act, x, p)) \
                continue;                                                            \
            }                                                                        \
            switch (act) { /* the common ones as loops the compiler vectorises */     \
            case FNN_ACT_LINEAR: case FNN_ACT_SOFTMAX: break;                        \
            case FNN_ACT_RELU: FNN_EACH(c[j] = c[j] > 0 ? c[j] : (T)0) break;        \
            case FNN_ACT_LEAKY_RELU: FNN_EACH(c[j] = c[j] > 0 ? c[j] : p * c[j]) break; \
            default: FNN_EACH(c[j] = fnn_act_##SUF(act, c[j], p)) break;             \
            }                                                                        \
        }                                                                            \
    } else if (ep->kind == FNN_EPI_DERIV) {                                          \
        const T *Y = (const T *)ep->Y;                                               \
        const int clip = ep->flat_lo < ep->flat_hi;                                  \
        const T lo = (T)ep->flat_lo, hi = (T)ep->flat_hi;                            \
        for (ptrdiff_t i = 0; i < M; i++) {                                          \
            T *restrict c = C + i * ldc;                                             \
            const T *restrict y = Y + i * ep->ldy;                                   \
            if (s != 1 || clip) { /* steepness, flat spot: see fnn_gemm.h */          \
                FNN_EACH(c[j] = c[j] * fnn_dact_layer_##SUF(act, y[j], p, s, lo, hi)) \
                continue;                                                            \
            }                                                                        \
            switch (act) { /* the common ones as loops the compiler vectorises */     \
            case FNN_ACT_LINEAR: case FNN_ACT_SOFTMAX: break;                        \
            case FNN_ACT_RELU: FNN_EACH(c[j] = y[j] > 0 ? c[j] : (T)0) break;        \
            case FNN_ACT_LEAKY_RELU: FNN_EACH(c[j] = y[j] > 0 ? c[j] : p * c[j]) break; \
            case FNN_ACT_SIGMOID: FNN_EACH(c[j] *= y[j] * ((T)1 - y[j])) break;      \
            case FNN_ACT_TANH: FNN_EACH(c[j] *= (T)1 - y[j] * y[j]) break;           \
            default: FNN_EACH(c[j] *= fnn_dact_##SUF(act, y[j], p)) break;           \
            }                                                                        \
        }                                                                            \
    }                                                                                \
    /* FNN_EPI_STORE: alpha and beta are applied by the GEMM itself. */             \
}                                                                                    \
                                                                                     \
/* C (M x N, row-major) = the column-major M x N matrix S, in 8 x 8 blocks so\
 * that both sides are read and written a cache line at a time. */             \
static void transpose_##SUF(ptrdiff_t M, ptrdiff_t N, const T *restrict S,           \
                            T *restrict C, ptrdiff_t ldc)                            \
{                                                                                    \
    for (ptrdiff_t i0 = 0; i0 < M; i0 += 8) {                                        \
        ptrdiff_t i1 = i0 + 8 < M ? i0 + 8 : M;                                      \
        for (ptrdiff_t j0 = 0; j0 < N; j0 += 8) {                                    \
            ptrdiff_t j1 = j0 + 8 < N ? j0 + 8 : N;                                  \
            for (ptrdiff_t i = i0; i < i1; i++)                                      \
                for (ptrdiff_t j = j0; j < j1; j++)                                  \
                    C[i * ldc + j] = S[j * M + i];                                   \
        }                                                                            \
    }                                                                                \
}                                                                                    \
                                                                                     \
static void blas_gemm_##SUF(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,   \
                            const T *A, ptrdiff_t lda, const T *B, ptrdiff_t ldb,    \
                            T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work) \
{                                                                                    \
    T *wk = (T *)work;                                                               \
    int m = (int)M, n = (int)N, k = (int)K;                                          \
    int ilda = (int)lda, ildb = (int)ldb, ildc = (int)ldc;                           \
    T alpha = 1, beta = 0;                                                           \
    if (ep->kind == FNN_EPI_STORE) { alpha = (T)ep->alpha; beta = (T)ep->beta; }     \
    if (K == 0) { /* BLAS would leave C untouched or scale it: do it by hand */      \
        for (ptrdiff_t i = 0; i < M; i++)                                            \
            for (ptrdiff_t j = 0; j < N; j++)                                        \
                C[i * ldc + j] = beta == 0 ? (T)0 : beta * C[i * ldc + j];           \
    } else if (beta == 0 && blas_transposed_is_faster(M, N)) {                       \
        /* column-major work = op(A) @ op(B), then transposed into C */             \
        char opa = ta ? 'N' : 'T', opb = tb ? 'N' : 'T';                             \
        blas_##SUF##gemm(&opa, &opb, &m, &n, &k, &alpha, (T *)A, &ilda,              \
                         (T *)B, &ildb, &beta, wk, &m);                              \
        transpose_##SUF(M, N, wk, C, ldc);                                           \
    } else {                                                                         \
        char opa = ta ? 'T' : 'N', opb = tb ? 'T' : 'N';                             \
        blas_##SUF##gemm(&opb, &opa, &n, &m, &k, &alpha, (T *)B, &ildb,              \
                         (T *)A, &ilda, &beta, C, &ildc);                            \
    }                                                                                \
    fnn_epilogue_apply_##SUF(ep, M, N, C, ldc);                                      \
}

FNN_DEFINE_EPILOGUE(float, s)
FNN_DEFINE_EPILOGUE(double, d)

static int blas_available(void) { return blas_sgemm != 0 && blas_dgemm != 0; }
static int always_available(void) { return 1; }

static size_t blas_work_bytes(size_t elem_size)
{
    return (size_t)BLAS_TRANSPOSED_MAX_M * BLAS_TRANSPOSED_MAX_N * elem_size;
}

static size_t no_packed_b(ptrdiff_t N, ptrdiff_t K)
{
    (void)N; (void)K;
    return 0;
}

/* One table per kernel code (fnn_kernels.h).  The BLAS path has no
 * pre-packed operands: its packed sizes are 0, it never asks for one, and
 * its pack_b / gemm_pb / gemm_pp / pack_a are NULL. */
static const fnn_kernel_table kernel_tables[] = {
    [FNN_KERNEL_BLAS] = { blas_available, blas_work_bytes,
                          { blas_gemm_s, NULL, NULL, no_packed_b, NULL, NULL, no_packed_b, NULL },
                          { blas_gemm_d, NULL, NULL, no_packed_b, NULL, NULL, no_packed_b, NULL } },
    [FNN_KERNEL_GENERIC] = FNN_KERNEL_TABLE(generic, always_available),
    [FNN_KERNEL_AVX2] = FNN_KERNEL_TABLE(avx2, fnn_cpu_has_avx2_fma),
    [FNN_KERNEL_AVX512] = FNN_KERNEL_TABLE(avx512, fnn_cpu_has_avx512),
    /* every product as AVX-512's; the engine adds fnn_amx_* for large ones (amx_product) */
    [FNN_KERNEL_AMX] = FNN_KERNEL_TABLE(avx512, fnn_amx_available),
};
enum { N_KERNELS = (int)(sizeof kernel_tables / sizeof kernel_tables[0]) };

/* The table of `kernel`; an unknown code gets the BLAS path's, as it always did. */
static const fnn_kernel_table *kernel_table(int kernel)
{
    return &kernel_tables[kernel >= 0 && kernel < N_KERNELS ? kernel : FNN_KERNEL_BLAS];
}

#define FNN_DEFINE_DISPATCH(T, SUF)                                                  \
void fnn_gemm_##SUF(int kernel, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                    const T *A, ptrdiff_t lda, const T *B, ptrdiff_t ldb,            \
                    T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)         \
{                                                                                    \
    kernel_table(kernel)->SUF.gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work); \
}                                                                                    \
                                                                                     \
void fnn_gemm_pack_b_##SUF(int kernel, int tb, ptrdiff_t N, ptrdiff_t K,             \
                           const T *B, ptrdiff_t ldb, T *pb, int part, int n_parts)  \
{                                                                                    \
    const fnn_kernel_table *t = kernel_table(kernel);                                \
    if (t->SUF.pack_b) t->SUF.pack_b(tb, N, K, B, ldb, pb, part, n_parts);           \
}                                                                                    \
                                                                                     \
void fnn_gemm_pb_##SUF(int kernel, int ta, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,    \
                       const T *A, ptrdiff_t lda, const T *pb,                       \
                       T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)      \
{                                                                                    \
    /* NULL for BLAS: fnn_gemm_packed_b_bytes() said 0, there is nothing to do */    \
    const fnn_kernel_table *t = kernel_table(kernel);                                \
    if (t->SUF.gemm_pb) t->SUF.gemm_pb(ta, M, N, K, A, lda, pb, C, ldc, ep, work);   \
}                                                                                    \
                                                                                     \
void fnn_gemm_pack_a_##SUF(int kernel, int ta, ptrdiff_t M, ptrdiff_t K,             \
                           const T *A, ptrdiff_t lda, T *pa, int part, int n_parts)  \
{                                                                                    \
    const fnn_kernel_table *t = kernel_table(kernel);                                \
    if (t->SUF.pack_a) t->SUF.pack_a(ta, M, K, A, lda, pa, part, n_parts);           \
}                                                                                    \
                                                                                     \
void fnn_gemm_pp_##SUF(int kernel, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                       const T *A, ptrdiff_t lda, const T *pa,                       \
                       const T *B, ptrdiff_t ldb, const T *pb,                       \
                       T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)      \
{                                                                                    \
    const fnn_kernel_table *t = kernel_table(kernel);                                \
    if (t->SUF.gemm_pp)                                                              \
        t->SUF.gemm_pp(ta, tb, M, N, K, A, lda, pa, B, ldb, pb, C, ldc, ep, work);   \
    else /* BLAS never asked for packed operands */                                 \
        t->SUF.gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work);              \
}

FNN_DEFINE_DISPATCH(float, s)
FNN_DEFINE_DISPATCH(double, d)

size_t fnn_gemm_work_bytes(int kernel, size_t elem_size)
{
    return kernel_table(kernel)->work_bytes(elem_size);
}

size_t fnn_gemm_packed_b_bytes(int kernel, size_t elem_size, ptrdiff_t N, ptrdiff_t K)
{
    const fnn_kernel_table *t = kernel_table(kernel);
    size_t n = elem_size == sizeof(double) ? t->d.packed_b_elems(N, K)
                                           : t->s.packed_b_elems(N, K);
    return n * elem_size;
}

size_t fnn_gemm_packed_a_bytes(int kernel, size_t elem_size, ptrdiff_t M, ptrdiff_t K)
{
    const fnn_kernel_table *t = kernel_table(kernel);
    size_t n = elem_size == sizeof(double) ? t->d.packed_a_elems(M, K)
                                           : t->s.packed_a_elems(M, K);
    return n * elem_size;
}

int fnn_gemm_prepack(int kernel, size_t elem_size, int ta, int tb, ptrdiff_t M, ptrdiff_t N,
                     ptrdiff_t K, ptrdiff_t lda, ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep)
{
    const fnn_kernel_table *t = kernel_table(kernel);
    int (*f)(int, int, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t, ptrdiff_t,
             const fnn_epilogue *) = elem_size == sizeof(double) ? t->d.prepack : t->s.prepack;
    return f ? f(ta, tb, M, N, K, lda, tm, tn, ep) : 0;
}

int fnn_kernel_available(int kernel)
{
    return kernel >= 0 && kernel < N_KERNELS && kernel_tables[kernel].available();
}
