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
    if (ep->kind == FNN_EPI_BIAS_ACT) {                                              \
        const T *bias = (const T *)ep->bias;                                         \
        for (ptrdiff_t i = 0; i < M; i++) {                                          \
            T *restrict c = C + i * ldc;                                             \
            if (bias) FNN_EACH(c[j] += bias[j])                                      \
            switch (act) {                                                           \
            case FNN_ACT_LINEAR: case FNN_ACT_SOFTMAX: break;                        \
            case FNN_ACT_RELU: FNN_EACH(c[j] = c[j] > 0 ? c[j] : (T)0) break;        \
            case FNN_ACT_LEAKY_RELU: FNN_EACH(c[j] = c[j] > 0 ? c[j] : p * c[j]) break; \
            default: FNN_EACH(c[j] = fnn_act_##SUF(act, c[j], p)) break;             \
            }                                                                        \
        }                                                                            \
    } else if (ep->kind == FNN_EPI_DERIV) {                                          \
        const T *Y = (const T *)ep->Y;                                               \
        for (ptrdiff_t i = 0; i < M; i++) {                                          \
            T *restrict c = C + i * ldc;                                             \
            const T *restrict y = Y + i * ep->ldy;                                   \
            switch (act) {                                                           \
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
                            T *C, ptrdiff_t ldc, const fnn_epilogue *ep, T *work)    \
{                                                                                    \
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
                         (T *)B, &ildb, &beta, work, &m);                            \
        transpose_##SUF(M, N, work, C, ldc);                                         \
    } else {                                                                         \
        char opa = ta ? 'T' : 'N', opb = tb ? 'T' : 'N';                             \
        blas_##SUF##gemm(&opb, &opa, &n, &m, &k, &alpha, (T *)B, &ildb,              \
                         (T *)A, &ilda, &beta, C, &ildc);                            \
    }                                                                                \
    fnn_epilogue_apply_##SUF(ep, M, N, C, ldc);                                      \
}

FNN_DEFINE_EPILOGUE(float, s)
FNN_DEFINE_EPILOGUE(double, d)

#define FNN_DISPATCH(SUF)                                                            \
    switch (kernel) {                                                                \
    case FNN_KERNEL_AVX512:                                                          \
        fnn_kgemm_avx512_##SUF(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work); return; \
    case FNN_KERNEL_AVX2:                                                            \
        fnn_kgemm_avx2_##SUF(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work); return; \
    case FNN_KERNEL_GENERIC:                                                         \
        fnn_kgemm_generic_##SUF(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work); return; \
    default: break;                                                                  \
    }

void fnn_gemm_s(int kernel, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    FNN_DISPATCH(s)
    blas_gemm_s(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, (float *)work);
}

void fnn_gemm_d(int kernel, int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                const double *A, ptrdiff_t lda, const double *B, ptrdiff_t ldb,
                double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    FNN_DISPATCH(d)
    blas_gemm_d(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, (double *)work);
}

size_t fnn_gemm_work_bytes(int kernel, size_t elem_size)
{
    if (kernel != FNN_KERNEL_BLAS) return fnn_kgemm_work_bytes(elem_size);
    return (size_t)BLAS_TRANSPOSED_MAX_M * BLAS_TRANSPOSED_MAX_N * elem_size;
}

size_t fnn_gemm_packed_b_bytes(int kernel, size_t elem_size, ptrdiff_t N, ptrdiff_t K)
{
    size_t n;
    int dbl = elem_size == sizeof(double);
    switch (kernel) {
    case FNN_KERNEL_AVX512:
        n = dbl ? fnn_kpacked_b_elems_avx512_d(N, K) : fnn_kpacked_b_elems_avx512_s(N, K); break;
    case FNN_KERNEL_AVX2:
        n = dbl ? fnn_kpacked_b_elems_avx2_d(N, K) : fnn_kpacked_b_elems_avx2_s(N, K); break;
    case FNN_KERNEL_GENERIC:
        n = dbl ? fnn_kpacked_b_elems_generic_d(N, K) : fnn_kpacked_b_elems_generic_s(N, K); break;
    default: return 0;
    }
    return n * elem_size;
}

#define FNN_DEFINE_PACKED(T, SUF)                                                    \
void fnn_gemm_pack_b_##SUF(int kernel, int tb, ptrdiff_t N, ptrdiff_t K,             \
                           const T *B, ptrdiff_t ldb, T *pb, int part, int n_parts)  \
{                                                                                    \
    switch (kernel) {                                                                \
    case FNN_KERNEL_AVX512: fnn_kpack_b_avx512_##SUF(tb, N, K, B, ldb, pb, part, n_parts); break; \
    case FNN_KERNEL_AVX2: fnn_kpack_b_avx2_##SUF(tb, N, K, B, ldb, pb, part, n_parts); break; \
    case FNN_KERNEL_GENERIC: fnn_kpack_b_generic_##SUF(tb, N, K, B, ldb, pb, part, n_parts); break; \
    default: break;                                                                  \
    }                                                                                \
}                                                                                    \
                                                                                     \
void fnn_gemm_pb_##SUF(int kernel, int ta, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,    \
                       const T *A, ptrdiff_t lda, const T *pb,                       \
                       T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)      \
{                                                                                    \
    switch (kernel) {                                                                \
    case FNN_KERNEL_AVX512: fnn_kgemm_pb_avx512_##SUF(ta, M, N, K, A, lda, pb, C, ldc, ep, work); break; \
    case FNN_KERNEL_AVX2: fnn_kgemm_pb_avx2_##SUF(ta, M, N, K, A, lda, pb, C, ldc, ep, work); break; \
    case FNN_KERNEL_GENERIC: fnn_kgemm_pb_generic_##SUF(ta, M, N, K, A, lda, pb, C, ldc, ep, work); break; \
    default: break; /* no pre-packed BLAS path: fnn_gemm_packed_b_bytes() said 0 */ \
    }                                                                                \
}

FNN_DEFINE_PACKED(float, s)
FNN_DEFINE_PACKED(double, d)

int fnn_kernel_available(int kernel)
{
    switch (kernel) {
    case FNN_KERNEL_BLAS: return blas_sgemm != 0 && blas_dgemm != 0;
    case FNN_KERNEL_GENERIC: return 1;
    case FNN_KERNEL_AVX2: return fnn_cpu_has_avx2_fma();
    case FNN_KERNEL_AVX512: return fnn_cpu_has_avx512();
    default: return 0;
    }
}
