/* fnn_gemm.h - the contract between the Cython engine and the GEMM kernels.
 *
 * Every matrix product of fastnn goes through fnn_gemm_s / fnn_gemm_d:
 *     C = epilogue(op(A) @ op(B))          (row-major, single-threaded)
 * The engine splits the output into fixed tiles and hands tiles to threads
 * (see fastnn/_engine.pyx); a kernel never starts threads of its own.
 *
 * Determinism contract, which every kernel must keep: the value written to
 * C[i][j] depends only on row i of op(A), column j of op(B), K and the
 * epilogue - never on M, N, the tile's position or the thread.  That is what
 * makes results bit-identical for any number of threads.
 *
 * The kernel code FNN_KERNEL_AMX bends it: the engine runs a large float32
 * product on the AMX tiles (fnn_amx_* below; which ones: amx_product in
 * fastnn/_engine_team.pxi, from the product's shape and role) and the rest
 * on the AVX-512 kernel, so whether a row's values come from the tiles
 * depends on the product's M as well; never on the tile or the thread.
 *
 * The BLAS path is the exception: OpenBLAS may round an edge block differently
 * from the same block inside a larger product.  The engine's tiles depend on
 * the shapes only, never on the thread count, so it is still bit-identical
 * for any number of threads, but not independent of a row's neighbours.
 */
#ifndef FNN_GEMM_H
#define FNN_GEMM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Kernels.  FNN_KERNEL_BLAS calls scipy's BLAS through the pointers given to
 * fnn_set_blas(); the others are fastnn's own micro-kernels. */
enum {
    FNN_KERNEL_AUTO = -1,
    FNN_KERNEL_BLAS = 0,
    FNN_KERNEL_GENERIC = 1,
    FNN_KERNEL_AVX2 = 2,
    FNN_KERNEL_AVX512 = 3,
    FNN_KERNEL_AMX = 4    /* the AVX-512 kernels, plus fnn_amx_* below for large products */
};

/* Epilogue kinds. */
enum {
    FNN_EPI_STORE = 0,    /* C = alpha * acc + beta * C   (beta == 0: C is not read)   */
    FNN_EPI_BIAS_ACT = 1, /* C = f(s * (acc + bias[j]))   (bias may be NULL)            */
    FNN_EPI_DERIV = 2     /* C = acc * s * f'(Y[i][j])    (f' from Y, see fnn_activations.h) */
};

/* act: an FNN_ACT_* code of fnn_activations.h.  The fields after it are
 * optional (zero, as memset leaves them, turns each one off), and with all of
 * them off the kernels run exactly their code without them. */
typedef struct fnn_epilogue {
    int kind;
    int act;
    double act_param;
    double alpha, beta;   /* FNN_EPI_STORE only */
    const void *bias;     /* FNN_EPI_BIAS_ACT: N values of the GEMM's type, or NULL */
    const void *Y;        /* FNN_EPI_DERIV: M x N values, leading dimension ldy: the
                           * layer's outputs, or its activation inputs s * (acc + bias)
                           * for FNN_ACT_FROM_INPUT activations */
    ptrdiff_t ldy;
    double steepness;     /* BIAS_ACT and DERIV: s (FANN's steepness); 0 or 1: none */
    double flat_lo, flat_hi; /* DERIV: Y clipped into [flat_lo, flat_hi] before f' (FANN's
                              * flat-spot elimination) when flat_lo < flat_hi */
    void *Z;              /* BIAS_ACT: also receives the activation inputs s * (acc + bias), */
    ptrdiff_t ldz;        /* M x N, leading dimension ldz; or NULL                          */
} fnn_epilogue;

/* op(A) is M x K: trans_a == 0 -> A[i*lda + k], else A[k*lda + i].
 * op(B) is K x N: trans_b == 0 -> B[k*ldb + j], else B[j*ldb + k].
 * work: at least fnn_gemm_work_bytes(kernel, sizeof(T)) bytes, 64-byte aligned.
 * M, N >= 1; K >= 0 (K == 0 gives acc = 0). */
void fnn_gemm_s(int kernel, int trans_a, int trans_b,
                ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                const float *A, ptrdiff_t lda, const float *B, ptrdiff_t ldb,
                float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);
void fnn_gemm_d(int kernel, int trans_a, int trans_b,
                ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                const double *A, ptrdiff_t lda, const double *B, ptrdiff_t ldb,
                double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);

size_t fnn_gemm_work_bytes(int kernel, size_t elem_size);

/* Pre-packed B, for a B shared by many products (inference: every weight
 * matrix, packed once per forward call instead of once per chunk of rows).
 * fnn_gemm_packed_b_bytes: bytes of the packed op(B) (K x N) for `kernel`,
 * or 0 when the kernel has no pre-packed path (BLAS) or K == 0; then use
 * fnn_gemm_s/d.  fnn_gemm_pack_b_s/d: copy op(B) into pb (64-byte aligned,
 * that many bytes); the panels are split into n_parts parts and this call
 * packs part `part` (0 <= part < n_parts), so threads can share the work and
 * any split gives the same buffer.  fnn_gemm_pb_s/d: C = epilogue(op(A) @
 * op(B)) from the packed B, bit-identical to fnn_gemm_s/d with the same
 * kernel on the original B (the pack is only valid for that kernel). */
size_t fnn_gemm_packed_b_bytes(int kernel, size_t elem_size, ptrdiff_t N, ptrdiff_t K);
void fnn_gemm_pack_b_s(int kernel, int trans_b, ptrdiff_t N, ptrdiff_t K,
                       const float *B, ptrdiff_t ldb, float *pb, int part, int n_parts);
void fnn_gemm_pack_b_d(int kernel, int trans_b, ptrdiff_t N, ptrdiff_t K,
                       const double *B, ptrdiff_t ldb, double *pb, int part, int n_parts);
void fnn_gemm_pb_s(int kernel, int trans_a, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   const float *A, ptrdiff_t lda, const float *pb,
                   float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);
void fnn_gemm_pb_d(int kernel, int trans_a, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   const double *A, ptrdiff_t lda, const double *pb,
                   double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);

/* Pre-packed operands, for a product cut into tiles (training: the engine's
 * output tiles, each one fnn_gemm call that would pack its own operands).
 * fnn_gemm_prepack: which operands of the M x N x K product, cut into tiles of
 * tm x tn, are worth packing once for every tile (FNN_PREPACK_A: three or
 * more column tiles would each pack the same op(A) rows again; FNN_PREPACK_B:
 * as many row tiles the same op(B) columns); 0 for BLAS.  fnn_gemm_pack_a_s/d pack op(A) (M x K)
 * whole into fnn_gemm_packed_a_bytes bytes (64-byte aligned; in n_parts
 * parts as for B, any split giving the same buffer).  The tile at (i0, j0) then passes pa + i0 * K and pb + j0 * K to
 * fnn_gemm_pp_s/d, which computes C = epilogue(op(A) @ op(B)) like fnn_gemm
 * from whichever of pa / pb is not NULL (A or B is then unused, except that
 * A must stay valid), bit-identical to fnn_gemm_s/d with the same kernel. */
enum { FNN_PREPACK_A = 1, FNN_PREPACK_B = 2 };
int fnn_gemm_prepack(int kernel, size_t elem_size, int trans_a, int trans_b,
                     ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, ptrdiff_t lda,
                     ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep);
size_t fnn_gemm_packed_a_bytes(int kernel, size_t elem_size, ptrdiff_t M, ptrdiff_t K);
void fnn_gemm_pack_a_s(int kernel, int trans_a, ptrdiff_t M, ptrdiff_t K,
                       const float *A, ptrdiff_t lda, float *pa, int part, int n_parts);
void fnn_gemm_pack_a_d(int kernel, int trans_a, ptrdiff_t M, ptrdiff_t K,
                       const double *A, ptrdiff_t lda, double *pa, int part, int n_parts);
void fnn_gemm_pp_s(int kernel, int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   const float *A, ptrdiff_t lda, const float *pa,
                   const float *B, ptrdiff_t ldb, const float *pb,
                   float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);
void fnn_gemm_pp_d(int kernel, int trans_a, int trans_b, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   const double *A, ptrdiff_t lda, const double *pa,
                   const double *B, ptrdiff_t ldb, const double *pb,
                   double *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);

/* float32 products on the AMX tile unit (fnn_amx.c: each float split into
 * three bfloat16, six tile products; float32 accuracy, not bit-identical to
 * the FMA kernels), for the engine's large float32 products under the kernel
 * code FNN_KERNEL_AMX (whose table is otherwise AVX-512's).
 *   fnn_amx_available: 1 if this CPU, OS and build run them (the first call
 *     asks Linux for the tile state).
 *   fnn_amx_pack_a / _b: op(A) (M x K) or op(B) (K x N) split into
 *     fnn_amx_packed_bytes(M or N, K) bytes, 64-byte aligned, in blocks of 16
 *     rows (columns); parts as fnn_gemm_pack_b's.  The block holding row
 *     (column) i, a multiple of 32, starts fnn_amx_packed_offset(i, K) bytes in.
 *   fnn_amx_gemm_pp: C = epilogue(op(A) @ op(B)) from the packed operands of
 *     rows and columns starting at multiples of 32; work: FNN_AMX_SUMS_BYTES.
 *   fnn_amx_gemm_pb: the same from A (M x K, row-major, split here) and a
 *     packed B; work: fnn_amx_work_bytes(K).
 * C[i][j] depends on row i of op(A), column j of op(B), K and the epilogue
 * only, as fnn_gemm_s's. */
#define FNN_AMX_SUMS_BYTES 4096
int fnn_amx_available(void);
size_t fnn_amx_packed_bytes(ptrdiff_t n, ptrdiff_t K);
size_t fnn_amx_packed_offset(ptrdiff_t i, ptrdiff_t K);
size_t fnn_amx_work_bytes(ptrdiff_t K);
void fnn_amx_pack_a(int trans_a, ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
                    void *pa, int part, int n_parts);
void fnn_amx_pack_b(int trans_b, ptrdiff_t N, ptrdiff_t K, const float *B, ptrdiff_t ldb,
                    void *pb, int part, int n_parts);
void fnn_amx_gemm_pp(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const void *pa, const void *pb,
                     float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work);
void fnn_amx_gemm_pb(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                     const void *pb, float *C, ptrdiff_t ldc, const fnn_epilogue *ep,
                     void *work);

/* 1 if this build has the kernel and this CPU can run it. */
int fnn_kernel_available(int kernel);

/* Fortran BLAS ?gemm, as scipy.linalg.cython_blas exports them. */
typedef void (*fnn_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *, int *,
                             float *, int *, float *, float *, int *);
typedef void (*fnn_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *, int *,
                             double *, int *, double *, double *, int *);
void fnn_set_blas(fnn_sgemm_fn sgemm, fnn_dgemm_fn dgemm);

/* The epilogue on its own, over an M x N block already holding acc. */
void fnn_epilogue_apply_s(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N, float *C, ptrdiff_t ldc);
void fnn_epilogue_apply_d(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N, double *C, ptrdiff_t ldc);

#ifdef __cplusplus
}
#endif
#endif
