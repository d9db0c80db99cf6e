/* fnn_kernels.h - fastnn's own GEMM micro-kernels (internal header).
 *
 * Three variants of the same blocked GEMM, one per instruction set:
 *   generic  portable C (whatever SIMD the compiler auto-vectorises to),
 *   avx2     AVX2 + FMA   (ymm),
 *   avx512   AVX-512F/VL/BW/DQ + FMA (zmm).
 * All compute C = epilogue(op(A) @ op(B)) exactly as fnn_gemm.h specifies and
 * keep its determinism contract: C[i][j] depends only on row i of op(A),
 * column j of op(B), K and the epilogue (results may differ between variants).
 * The SIMD variants are compiled with per-function target attributes, so the
 * whole project builds without -march; call them only when
 * fnn_cpu_has_avx2_fma() / fnn_cpu_has_avx512() say the CPU supports them.
 * On non-x86 targets they are stubs that fall back to the generic variant.
 *
 * C must not alias A, B, the bias or Y (partial sums are kept in C when K is
 * split into blocks).  `work` is 64-byte aligned, fnn_kgemm_work_bytes(sizeof(T))
 * bytes; the kernels never allocate.
 *
 * Pre-packed B (for a B used by many products, e.g. a weight matrix during
 * inference): fnn_kpack_b_V_T copies op(B) (K x N) once into a 64-byte aligned
 * buffer of fnn_kpacked_b_elems_V_T(N, K) elements in the variant's panel
 * layout (threads may each pack parts 0..n_parts-1); fnn_kgemm_pb_V_T then
 * computes C = epilogue(op(A) @ op(B)) from it, bit-identical to
 * fnn_kgemm_V_T on the original B.  A buffer is only valid for the variant
 * and element type that packed it.  Likewise fnn_kpack_a_V_T packs op(A)
 * (M x K) whole, and fnn_kgemm_pp_V_T takes either operand packed (or both,
 * or neither: pa / pb NULL); fnn_kprepack_V_T says which operands of a tiled
 * product are worth packing once (fnn_gemm.h, "Pre-packed operands").
 * fnn_kepilogue_V_T applies an epilogue to raw sums another unit computed
 * (fnn_amx.c), as the variant's micro-kernels would.
 */
#ifndef FNN_KERNELS_H
#define FNN_KERNELS_H

#include <stddef.h>
#include "fnn_gemm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FNN_KGEMM_DECL(V)                                                            \
void fnn_kgemm_##V##_s(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                       const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,  \
                       float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);  \
void fnn_kgemm_##V##_d(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                       const double *A, ptrdiff_t lda, const double *B, ptrdiff_t ldb, \
                       double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work); \
void fnn_kgemm_pb_##V##_s(int trans_a, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,            \
                          const float *A, ptrdiff_t lda, const float *pb,                 \
                          float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);   \
void fnn_kgemm_pb_##V##_d(int trans_a, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,            \
                          const double *A, ptrdiff_t lda, const double *pb,               \
                          double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);  \
void fnn_kpack_b_##V##_s(int trans_b, ptrdiff_t N, ptrdiff_t K, const float *B,          \
                         ptrdiff_t ldb, float *pb, int part, int n_parts);                \
void fnn_kpack_b_##V##_d(int trans_b, ptrdiff_t N, ptrdiff_t K, const double *B,         \
                         ptrdiff_t ldb, double *pb, int part, int n_parts);               \
size_t fnn_kpacked_b_elems_##V##_s(ptrdiff_t N, ptrdiff_t K);                             \
size_t fnn_kpacked_b_elems_##V##_d(ptrdiff_t N, ptrdiff_t K);                             \
void fnn_kgemm_pp_##V##_s(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                          const float *A, ptrdiff_t lda, const float *pa,                 \
                          const float *B, ptrdiff_t ldb, const float *pb,                 \
                          float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);   \
void fnn_kgemm_pp_##V##_d(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                          const double *A, ptrdiff_t lda, const double *pa,               \
                          const double *B, ptrdiff_t ldb, const double *pb,               \
                          double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);  \
void fnn_kpack_a_##V##_s(int trans_a, ptrdiff_t M, ptrdiff_t K, const float *A,          \
                         ptrdiff_t lda, float *pa, int part, int n_parts);                \
void fnn_kpack_a_##V##_d(int trans_a, ptrdiff_t M, ptrdiff_t K, const double *A,         \
                         ptrdiff_t lda, double *pa, int part, int n_parts);               \
size_t fnn_kpacked_a_elems_##V##_s(ptrdiff_t M, ptrdiff_t K);                             \
size_t fnn_kpacked_a_elems_##V##_d(ptrdiff_t M, ptrdiff_t K);                             \
int fnn_kprepack_##V##_s(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                         ptrdiff_t lda, ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep); \
int fnn_kprepack_##V##_d(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                         ptrdiff_t lda, ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep); \
void fnn_kepilogue_##V##_s(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N,               \
                           const float *acc, ptrdiff_t ld_acc, float *C, ptrdiff_t ldc);  \
void fnn_kepilogue_##V##_d(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N,               \
                           const double *acc, ptrdiff_t ld_acc, double *C, ptrdiff_t ldc);

/* Test hook of the SIMD variants' vector exp (fnn_activations.h, float32):
 * y = exp(x) (which == 0) or expm1(x) (which == 1) for n elements. */
void fnn_kvexp_avx2_s(int which, const float *x, float *y, ptrdiff_t n);
void fnn_kvexp_avx512_s(int which, const float *x, float *y, ptrdiff_t n);

FNN_KGEMM_DECL(generic)
FNN_KGEMM_DECL(avx2)
FNN_KGEMM_DECL(avx512)
#undef FNN_KGEMM_DECL

/* On non-x86 targets the SIMD variants are these forwarders to the generic
 * one (the dispatch never selects them there, but it links against them). */
#define FNN_FORWARD_TO_GENERIC_T(V, T, S)                                            \
void fnn_kgemm_##V##_##S(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,      \
                         const T *A, ptrdiff_t lda, const T *B, ptrdiff_t ldb,       \
                         T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)    \
{                                                                                    \
    fnn_kgemm_generic_##S(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, ep, work);         \
}                                                                                    \
void fnn_kgemm_pb_##V##_##S(int ta, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,           \
                            const T *A, ptrdiff_t lda, const T *pb, T *C,            \
                            ptrdiff_t ldc, const fnn_epilogue *ep, void *work)       \
{                                                                                    \
    fnn_kgemm_pb_generic_##S(ta, M, N, K, A, lda, pb, C, ldc, ep, work);              \
}                                                                                    \
void fnn_kpack_b_##V##_##S(int tb, ptrdiff_t N, ptrdiff_t K, const T *B,             \
                           ptrdiff_t ldb, T *pb, int part, int n_parts)              \
{                                                                                    \
    fnn_kpack_b_generic_##S(tb, N, K, B, ldb, pb, part, n_parts);                    \
}                                                                                    \
size_t fnn_kpacked_b_elems_##V##_##S(ptrdiff_t N, ptrdiff_t K)                       \
{                                                                                    \
    return fnn_kpacked_b_elems_generic_##S(N, K);                                    \
}                                                                                    \
void fnn_kgemm_pp_##V##_##S(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,   \
                            const T *A, ptrdiff_t lda, const T *pa, const T *B,      \
                            ptrdiff_t ldb, const T *pb, T *C, ptrdiff_t ldc,         \
                            const fnn_epilogue *ep, void *work)                      \
{                                                                                    \
    fnn_kgemm_pp_generic_##S(ta, tb, M, N, K, A, lda, pa, B, ldb, pb, C, ldc, ep, work); \
}                                                                                    \
void fnn_kpack_a_##V##_##S(int ta, ptrdiff_t M, ptrdiff_t K, const T *A,             \
                           ptrdiff_t lda, T *pa, int part, int n_parts)              \
{                                                                                    \
    fnn_kpack_a_generic_##S(ta, M, K, A, lda, pa, part, n_parts);                    \
}                                                                                    \
size_t fnn_kpacked_a_elems_##V##_##S(ptrdiff_t M, ptrdiff_t K)                       \
{                                                                                    \
    return fnn_kpacked_a_elems_generic_##S(M, K);                                    \
}                                                                                    \
int fnn_kprepack_##V##_##S(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,    \
                           ptrdiff_t lda, ptrdiff_t tm, ptrdiff_t tn,                \
                           const fnn_epilogue *ep)                                   \
{                                                                                    \
    return fnn_kprepack_generic_##S(ta, tb, M, N, K, lda, tm, tn, ep);               \
}                                                                                    \
void fnn_kepilogue_##V##_##S(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N,       \
                             const T *acc, ptrdiff_t ld_acc, T *C, ptrdiff_t ldc)    \
{                                                                                    \
    fnn_kepilogue_generic_##S(ep, M, N, acc, ld_acc, C, ldc);                        \
}

#define FNN_FORWARD_TO_GENERIC(V)                                                    \
FNN_FORWARD_TO_GENERIC_T(V, float, s)                                                \
FNN_FORWARD_TO_GENERIC_T(V, double, d)                                               \
void fnn_kvexp_##V##_s(int which, const float *x, float *y, ptrdiff_t n)             \
{                                                                                    \
    for (ptrdiff_t i = 0; i < n; i++) y[i] = which ? expm1f(x[i]) : expf(x[i]);      \
}                                                                                    \
size_t fnn_kgemm_##V##_work_bytes(size_t elem_size)                                  \
{                                                                                    \
    return fnn_kgemm_generic_work_bytes(elem_size);                                  \
}

/* One variant's entry points for one element type, and a variant's table
 * (as BLIS's context): fnn_gemm.c keeps one table per kernel code and every
 * product goes through it, one indirect call.  FNN_KERNEL_TABLE(V, AVAILABLE)
 * is the table of fastnn's variant V; AVAILABLE() says whether this CPU runs it. */
#define FNN_KERNEL_FNS_T(T, S)                                                       \
typedef struct {                                                                     \
    void (*gemm)(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,    \
                 const T *A, ptrdiff_t lda, const T *B, ptrdiff_t ldb,               \
                 T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);           \
    void (*gemm_pb)(int trans_a, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,              \
                    const T *A, ptrdiff_t lda, const T *pb,                          \
                    T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);        \
    void (*pack_b)(int trans_b, ptrdiff_t N, ptrdiff_t K, const T *B, ptrdiff_t ldb, \
                   T *pb, int part, int n_parts);                                    \
    size_t (*packed_b_elems)(ptrdiff_t N, ptrdiff_t K);                              \
    void (*gemm_pp)(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, \
                    const T *A, ptrdiff_t lda, const T *pa, const T *B, ptrdiff_t ldb, \
                    const T *pb, T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work); \
    void (*pack_a)(int trans_a, ptrdiff_t M, ptrdiff_t K, const T *A, ptrdiff_t lda, \
                   T *pa, int part, int n_parts);                                    \
    size_t (*packed_a_elems)(ptrdiff_t M, ptrdiff_t K);                              \
    int (*prepack)(int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,  \
                   ptrdiff_t lda, ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep); \
} fnn_kernel_fns_##S;
FNN_KERNEL_FNS_T(float, s)
FNN_KERNEL_FNS_T(double, d)
#undef FNN_KERNEL_FNS_T

typedef struct {
    int (*available)(void);
    size_t (*work_bytes)(size_t elem_size);
    fnn_kernel_fns_s s;
    fnn_kernel_fns_d d;
} fnn_kernel_table;

#define FNN_KERNEL_TABLE(V, AVAILABLE)                                               \
    { AVAILABLE, fnn_kgemm_##V##_work_bytes,                                         \
      { fnn_kgemm_##V##_s, fnn_kgemm_pb_##V##_s, fnn_kpack_b_##V##_s,                \
        fnn_kpacked_b_elems_##V##_s, fnn_kgemm_pp_##V##_s, fnn_kpack_a_##V##_s,      \
        fnn_kpacked_a_elems_##V##_s, fnn_kprepack_##V##_s },                         \
      { fnn_kgemm_##V##_d, fnn_kgemm_pb_##V##_d, fnn_kpack_b_##V##_d,                \
        fnn_kpacked_b_elems_##V##_d, fnn_kgemm_pp_##V##_d, fnn_kpack_a_##V##_d,      \
        fnn_kpacked_a_elems_##V##_d, fnn_kprepack_##V##_d } }

/* Bytes of workspace any variant needs for elements of elem_size bytes. */
size_t fnn_kgemm_work_bytes(size_t elem_size);
/* Per-variant sizes (fnn_kgemm_work_bytes is their maximum). */
size_t fnn_kgemm_generic_work_bytes(size_t elem_size);
size_t fnn_kgemm_avx2_work_bytes(size_t elem_size);
size_t fnn_kgemm_avx512_work_bytes(size_t elem_size);

/* Runtime CPU detection (cpuid + xgetbv: the OS must save the ymm/zmm state).
 * Both return 0 on non-x86 targets. */
int fnn_cpu_has_avx2_fma(void);
int fnn_cpu_has_avx512(void);
int fnn_cpu_has_amx(void);      /* amx-tile + amx-bf16 in the CPU (not yet the OS) */

#ifdef __cplusplus
}
#endif
#endif
