/* fnn_kernels_tmpl.h - the blocked GEMM with fused epilogues, written once over
 * a small SIMD vocabulary and instantiated by fnn_kernels_{generic,avx2,avx512}.c
 * (once per element type; this file has no include guard on purpose).
 *
 * Algorithm (Goto/BLIS loop nest, adapted to fastnn's shapes):
 *   for jc in N step NC                       columns of C
 *     for pc in K step kcb                    K blocks (kcb <= KC, a function of K)
 *       pack op(B)[pc:pc+kcb, jc:jc+NC] into NR-wide, zero-padded micro-panels
 *       for ic in M step MC                   rows (A block stays in L2)
 *         [pack op(A)[ic:ic+MC, pc:pc+kcb]   only for "bad" strides, see below]
 *         for jr in NC step NR                B micro-panel stays in L1
 *           for ir in MC step MR              micro-kernel: MR x NR tile
 * B is packed (trans_b == 1: with in-register VL x VL transposes), except
 * that for small M (<= DIRECT_B_MAX_M; <= MR when B's rows are a multiple
 * of 8 KiB apart, see reads_b_in_place) and trans_b == 0 the full panels are
 * read in place: each B element is then used only M/MR times, and packing it
 * would cost as much as the FMAs.  A is normally read in place too: the
 * micro-kernel broadcasts op(A)[i][k] straight from memory (trans_a == 0: MR
 * row streams; trans_a == 1: MR consecutive elements of one row of A per k);
 * packing A would cost as much as the product when the engine hands us narrow
 * N tiles.  Only with trans_a (weight updates), or when the rows of A are a
 * multiple of 4 KiB apart (which maps them onto a handful of cache sets), is
 * the A block packed into contiguous [k][MR] panels, when at least 4 B
 * micro-panels reuse it (and, if M <= MC, the jc and pc loops swap so each K
 * slice of A is packed once).  No operand is copied
 * whole, except on request: fnn_kpack_b packs a whole op(B) once (panels of
 * K x NR, so any K block of a panel is the micro-panel pack_b would build)
 * and fnn_kgemm_pb runs the same loop nest from it without packing; the
 * engine does that with every weight matrix during inference, where the
 * same W serves every chunk of rows.  Such a B does not fit L2, so the next
 * micro-panel is prefetched into L2, a slice per tile, while the current one
 * computes.  The next C tile (and Y tile) is prefetched while a tile computes.
 * Panels at most one vector wide (10-class outputs) use a 2*MR x VL tile
 * instead of MR x NR: the same FMAs per element, none spent on padding.
 * Products of one column (N == 1) take gemm_col, VL rows per vector.
 *
 * Determinism: every C element is one FMA chain over k = 0..K-1 in order,
 * whatever tile it falls in and whichever of the paths above feeds it (they
 * only change where the same values are loaded from).  Edge tiles run the
 * same full-width code: rows beyond M re-read a valid row and are discarded,
 * columns beyond N see the zero padding of the packed B and are masked at
 * load/store.  Between K blocks the running sums are stored to C (or to the
 * work buffer) and loaded back, which is exact, so the K blocking does not
 * even change the result.

 * Epilogue: applied to the accumulators in registers on the last K block
 * (vector code for bias, STORE alpha/beta, and the activations and
 * derivatives that fnn_activations.h gives a vector form: FNN_VACT_CASES,
 * FNN_VDACT_CASES, and where the instantiation gives the vector exp's
 * primitives (VLDEXP: AVX2 and AVX-512 float32) the exp-based ones,
 * FNN_VACT_EXP_CASES, FNN_VDACT_EXP_CASES; kept activation inputs (Z) are
 * stored from the same registers, after the steepness; the flat spot
 * clips Y there too; full tiles with the common ones take a branch-free
 * path decided once per tile).  The others (exp-based ones without the
 * vector exp: float64, generic) first store acc (+ bias) and then run the
 * scalar fnn_act / fnn_dact_layer over the tile while it is hot in L1 (the
 * scalar pass).
 * STORE with beta != 0 and K > KC needs C's old values once at the end, so
 * that case accumulates MCS x NC blocks of raw sums in the work buffer and
 * applies the same vector epilogue from there.
 *
 * The instantiating file defines, before including this file:
 *   T, KSUFFIX (e.g. avx512_s), FNN_KFUNC (function attributes, may be empty),
 *   FACT/FDACT (fnn_act_s/fnn_dact_s or the d ones),
 *   VL (lanes), V (vector type), MR, NV (NR = NV*VL), KC, NC, MC, MCS,
 *   VZERO(), VSET1(x), VLOADA(p), VLOADU(p), VSTOREA(p,v), VSTOREU(p,v),
 *   VLOADN(p,n) / VSTOREN(p,v,n) (first n lanes, 0 <= n <= VL, no access
 *   to the others), VFMA(a,b,c) = a*b+c, VADD, VSUB, VMUL,
 *   VSELGT(x,a,b) = x > 0 ? a : b and VSELGE(x,a,b) = x >= 0 ? a : b (lane-wise,
 *   false for NaN), and optionally KPREFETCH(p) (into L1), KPREFETCH_L2(p) (into
 *   L2), VFMA_FUSED (VFMA is one fused instruction, not a*b+c left to the
 *   compiler) and VTRANSPOSE(s, lds, d, ldd)
 *   (d[k*ldd + q] = s[q*lds + k] for a VL x VL block, used to pack op(B) when
 *   trans_b == 1), VTRANSPOSE_A(s, lds, d) (d[k*MR + r] = s[r*lds + k] for an
 *   MR x MR block, used to pack op(A) when trans_a == 0), DIRECT_B_MAX_M
 *   (largest M for which B is read in place when trans_b == 0; default
 *   4 * MR), PACK_A_TRANS (1: pack op(A) of every trans_a product with
 *   K >= PACK_A_TRANS_MIN_K, default 128; default 0)
 *   and PACK_PF (rows of B prefetched ahead while packing; default 16);
 *   for float32, optionally the vector exp's primitives VMAX, VMIN, VROUND,
 *   VDIV and VLDEXP (fnn_activations.h, FNN_VEXPF_REDUCE), which turn on the
 *   FNN_ACT_VEXP vector forms.
 */

#define KP_CAT_(a, b) a##_##b
#define KP_CAT(a, b) KP_CAT_(a, b)
#define KP(x) KP_CAT(x, KSUFFIX)
#define NR (NV * VL)

#ifndef FNN_KT_ONCE
#define FNN_KT_ONCE
#if defined(__clang__)
#define FNN_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define FNN_UNROLL _Pragma("GCC unroll 32")
#else
#define FNN_UNROLL
#endif
#if defined(__GNUC__) || defined(__clang__)
#define FNN_ALWAYS_INLINE inline __attribute__((always_inline))
#define FNN_NOINLINE __attribute__((noinline))
#else
#define FNN_ALWAYS_INLINE inline
#define FNN_NOINLINE
#endif
enum { FNN_EM_RAW, FNN_EM_SCALE, FNN_EM_AXPBY, FNN_EM_BIAS, FNN_EM_DERIV };
#endif

/* 1: pack op(A) whenever trans_a and K >= PACK_A_TRANS_MIN_K (see pack_a in
 * the driver). */
#ifndef PACK_A_TRANS
#define PACK_A_TRANS 0
#define FNN_KT_UNDEF_PACK_A_TRANS
#endif
#ifndef PACK_A_TRANS_MIN_K
#define PACK_A_TRANS_MIN_K 128
#endif
#ifndef PACK_PF
#define PACK_PF 16
#endif
#ifndef DIRECT_B_MAX_M
#define DIRECT_B_MAX_M (4 * MR)
#define FNN_KT_UNDEF_DIRECT
#endif
#ifndef GEMV_NV
#define GEMV_NV 8
#define FNN_KT_UNDEF_GEMV
#endif
/* Up to this many rows (trans_a == trans_b == 0, B not pre-packed) go
 * through gemv_rows. */
#ifndef GEMV_MAX_M
#define GEMV_MAX_M 1
#define FNN_KT_UNDEF_GEMV_M
#endif
#ifndef KPREFETCH
#define KPREFETCH(p) ((void)0)
#endif
#ifndef KPREFETCH_L2
#define KPREFETCH_L2(p) ((void)0)
#endif

#include "fnn_kernels_epi_tmpl.h"

/* The micro-kernel: C[0:mr, 0:nr] (+)= op(A)[0:MRX, 0:kc] @ Bpanel[0:kc, 0:NVX*VL],
 * written once for the two tile shapes below (MRX and NVX are constants
 * after inlining).
 * a points at op(A)[i0][pc]; bp at a kc x NR micro-panel whose rows are ldbp
 * apart: packed (ldbp = NR) or, for small M, B itself (ldbp = ldb).
 * accum: start from the running sums in C instead of 0.
 * e: NULL -> store the raw sums (not the last K block), else the epilogue;
 * (i0, j0) is the tile's position in the whole C (for bias and Y).
 * cnext, ynext: the next tile of C (and of Y for DERIV), prefetched while this
 * one computes (running sums, old values and Y would otherwise stall the
 * next call; prefetches never fault, so edge tiles need no care). */
static FNN_ALWAYS_INLINE FNN_KFUNC void KP(ukr_t)(const int MRX, const int NVX, int ta, ptrdiff_t kc,
                                                  const T *a, ptrdiff_t lda, const T *bp, ptrdiff_t ldbp,
                                                  T *c, ptrdiff_t ldc, int mr, int nr, int accum,
                                                  const KP(ectx) *e, ptrdiff_t i0, ptrdiff_t j0,
                                                  const T *cnext, const T *ynext)
{
    V acc[2 * MR][NV];
    int nl[NV];
    if (cnext) {
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++) KPREFETCH(cnext + r * ldc + v * VL);
    }
    if (ynext) {
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++) KPREFETCH(ynext + r * e->ldy + v * VL);
    }
    FNN_UNROLL for (int v = 0; v < NVX; v++) {
        int n = nr - v * VL;
        nl[v] = n < 0 ? 0 : (n > VL ? VL : n);
    }
    if (accum && mr == MRX && nr == NVX * VL) {
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VLOADU(c + r * ldc + v * VL);
    } else if (accum) {
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++)
                acc[r][v] = r < mr ? LDN(c + r * ldc + v * VL, nl[v]) : VZERO();
    } else {
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VZERO();
    }

    if (!ta) {
        /* op(A)[i][k] = A[i*lda + k]: one stream per row; missing rows
         * re-read the last valid one. */
        const T *ar[2 * MR];
        FNN_UNROLL for (int r = 0; r < MRX; r++) ar[r] = a + (r < mr ? r : mr - 1) * lda;
        for (ptrdiff_t k = 0; k < kc; k++) {
            const T *b = bp + k * ldbp;
            V bv[NV];
            FNN_UNROLL for (int v = 0; v < NVX; v++) bv[v] = VLOADU(b + v * VL);
            FNN_UNROLL for (int r = 0; r < MRX; r++) {
                V av = VSET1(ar[r][k]);
                FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VFMA(av, bv[v], acc[r][v]);
            }
        }
    } else if (mr == MRX) {
        /* op(A)[i][k] = A[k*lda + i]: MRX consecutive elements per k. */
        for (ptrdiff_t k = 0; k < kc; k++, a += lda) {
            const T *b = bp + k * ldbp;
            V bv[NV];
            FNN_UNROLL for (int v = 0; v < NVX; v++) bv[v] = VLOADU(b + v * VL);
            FNN_UNROLL for (int r = 0; r < MRX; r++) {
                V av = VSET1(a[r]);
                FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VFMA(av, bv[v], acc[r][v]);
            }
        }
    } else {
        /* Same, for an edge tile: clamp the row offsets (same FMA sequence). */
        int off[2 * MR];
        FNN_UNROLL for (int r = 0; r < MRX; r++) off[r] = r < mr ? r : mr - 1;
        for (ptrdiff_t k = 0; k < kc; k++, a += lda) {
            const T *b = bp + k * ldbp;
            V bv[NV];
            FNN_UNROLL for (int v = 0; v < NVX; v++) bv[v] = VLOADU(b + v * VL);
            FNN_UNROLL for (int r = 0; r < MRX; r++) {
                V av = VSET1(a[off[r]]);
                FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VFMA(av, bv[v], acc[r][v]);
            }
        }
    }

    /* Full tiles with the common epilogues: decided once per tile instead of
     * once per vector (the general code below dispatches on the mode and
     * the activation and masks every vector).  Same operations, same bits. */
    const int full = mr == MRX && nr == NVX * VL;
    const int relu = e && e->act == FNN_ACT_RELU;
    int fast = full && !(e && (e->scalar_pass || e->Z || e->s != 1 || e->clip));
    if (fast && e) {
        switch (e->mode) {
        case FNN_EM_BIAS: fast = relu || e->identity; break;
        case FNN_EM_DERIV: fast = relu || (!e->vexp && (e->act == FNN_ACT_SIGMOID ||
                                                        e->act == FNN_ACT_TANH)); break;
        case FNN_EM_SCALE: break;
#ifdef VFMA_FUSED
        case FNN_EM_AXPBY: break;
#endif
        default: fast = 0; break;
        }
    }
    if (fast) {
        const V zero = VZERO();
        if (e && e->mode == FNN_EM_BIAS) {
            if (e->bias) {
                V bias[NV];
                FNN_UNROLL for (int v = 0; v < NVX; v++) bias[v] = VLOADU(e->bias + j0 + v * VL);
                FNN_UNROLL for (int r = 0; r < MRX; r++)
                    FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VADD(acc[r][v], bias[v]);
            }
            if (relu)
                FNN_UNROLL for (int r = 0; r < MRX; r++)
                    FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VSELGT(acc[r][v], acc[r][v], zero);
        } else if (e && e->mode == FNN_EM_DERIV && relu) {
            const V one = VSET1((T)1);
            FNN_UNROLL for (int r = 0; r < MRX; r++)
                FNN_UNROLL for (int v = 0; v < NVX; v++)
                    acc[r][v] = VMUL(acc[r][v], VSELGT(VLOADU(e->Y + (i0 + r) * e->ldy + j0 + v * VL), one, zero));
        } else if (e && e->mode == FNN_EM_DERIV && e->act == FNN_ACT_SIGMOID) { /* y (1 - y) */
            const V one = VSET1((T)1);
            FNN_UNROLL for (int r = 0; r < MRX; r++)
                FNN_UNROLL for (int v = 0; v < NVX; v++) {
                    V y = VLOADU(e->Y + (i0 + r) * e->ldy + j0 + v * VL);
                    acc[r][v] = VMUL(acc[r][v], VMUL(y, VSUB(one, y)));
                }
        } else if (e && e->mode == FNN_EM_DERIV) { /* tanh': 1 - y^2 */
            const V one = VSET1((T)1);
            FNN_UNROLL for (int r = 0; r < MRX; r++)
                FNN_UNROLL for (int v = 0; v < NVX; v++) {
                    V y = VLOADU(e->Y + (i0 + r) * e->ldy + j0 + v * VL);
                    acc[r][v] = VMUL(acc[r][v], VSUB(one, VMUL(y, y)));
                }
        } else if (e && e->mode == FNN_EM_SCALE) {
            const V alpha = VSET1(e->alpha);
            FNN_UNROLL for (int r = 0; r < MRX; r++)
                FNN_UNROLL for (int v = 0; v < NVX; v++) acc[r][v] = VMUL(alpha, acc[r][v]);
        } else if (e) { /* AXPBY (VFMA_FUSED only: a compiler that contracts
                           * a*b+c itself might pick a different pair here) */
            const V alpha = VSET1(e->alpha), beta = VSET1(e->beta);
            FNN_UNROLL for (int r = 0; r < MRX; r++)
                FNN_UNROLL for (int v = 0; v < NVX; v++)
                    acc[r][v] = VFMA(beta, VLOADU(c + r * ldc + v * VL), VMUL(alpha, acc[r][v]));
        }
        FNN_UNROLL for (int r = 0; r < MRX; r++)
            FNN_UNROLL for (int v = 0; v < NVX; v++) VSTOREU(c + r * ldc + v * VL, acc[r][v]);
    } else if (!e) {
        FNN_UNROLL for (int r = 0; r < MRX; r++) {
            if (r >= mr) break;
            FNN_UNROLL for (int v = 0; v < NVX; v++)
                if (nl[v] > 0) STN(c + r * ldc + v * VL, acc[r][v], nl[v]);
        }
#ifdef VLDEXP
    } else if (NVX == 1 && nl[0] == VL && e->vexp && e->mode == FNN_EM_BIAS) {
        /* Narrow tiles of a whole vector (a hidden layer one vector wide):
         * bias, steepness and Z from the registers, then the activation on
         * the vector exp over the stored tile in one call
         * (KP(vact_exp_rows)), not one per row.  Not for a part of a
         * vector: a masked load cannot take its value from the masked
         * store just before it, and waits for it to reach the cache
         * (measured: FANN's diabetes set, 8-4-2, 21 -> 35 us per epoch). */
        KP(ectx) el = *e;
        el.vexp = 0;
        el.vact = FNN_ACT_LINEAR;
        FNN_UNROLL for (int r = 0; r < MRX; r++) {
            if (r >= mr) break;
            KP(epi_vec)(&el, acc[r][0], c + r * ldc, i0 + r, j0, nl[0]);
        }
        KP(vact_exp_rows)(e->vact, c, ldc, mr, nl[0], e->p);
#endif
    } else {
        FNN_UNROLL for (int r = 0; r < MRX; r++) {
            if (r >= mr) break;
            FNN_UNROLL for (int v = 0; v < NVX; v++)
                if (nl[v] > 0) KP(epi_vec)(e, acc[r][v], c + r * ldc + v * VL, i0 + r, j0 + v * VL, nl[v]);
        }
        if (e->scalar_pass) KP(epi_scalar)(e, c, ldc, i0, j0, mr, nr);
    }
}

/* The tile: MR x NR. */
static FNN_KFUNC void KP(ukr)(int ta, ptrdiff_t kc, const T *a, ptrdiff_t lda,
                              const T *bp, ptrdiff_t ldbp, T *c, ptrdiff_t ldc, int mr, int nr,
                              int accum, const KP(ectx) *e, ptrdiff_t i0, ptrdiff_t j0,
                              const T *cnext, const T *ynext)
{
    KP(ukr_t)(MR, NV, ta, kc, a, lda, bp, ldbp, c, ldc, mr, nr, accum, e, i0, j0, cnext, ynext);
}

/* For panels at most one vector wide (an output layer of 10 classes): 2*MR x
 * VL.  The MR x NR tile would spend NV FMAs per row and k on mostly padding;
 * this one spends one, for twice the rows (same accumulator count).  Each C
 * element is still the same FMA chain, so results do not change. */
static FNN_KFUNC void KP(ukr_narrow)(int ta, ptrdiff_t kc, const T *a, ptrdiff_t lda,
                                     const T *bp, ptrdiff_t ldbp, T *c, ptrdiff_t ldc, int mr,
                                     int nr, int accum, const KP(ectx) *e, ptrdiff_t i0,
                                     ptrdiff_t j0, const T *cnext, const T *ynext)
{
    KP(ukr_t)(2 * MR, 1, ta, kc, a, lda, bp, ldbp, c, ldc, mr, nr, accum, e, i0, j0, cnext, ynext);
}

/* The same, MR x VL: for at most MR rows (a layer of few inputs' weight
 * update), which the 2*MR-row tile would compute twice over. */
static FNN_KFUNC void KP(ukr_narrow_half)(int ta, ptrdiff_t kc, const T *a, ptrdiff_t lda,
                                          const T *bp, ptrdiff_t ldbp, T *c, ptrdiff_t ldc, int mr,
                                          int nr, int accum, const KP(ectx) *e, ptrdiff_t i0,
                                          ptrdiff_t j0, const T *cnext, const T *ynext)
{
    KP(ukr_t)(MR, 1, ta, kc, a, lda, bp, ldbp, c, ldc, mr, nr, accum, e, i0, j0, cnext, ynext);
}

#include "fnn_kernels_pack_tmpl.h"

/* Few rows, B read in place (inference of one or a few rows): per row, a
 * strip of GEMV_NV vectors of C is accumulated over the whole K in
 * registers, walking B row by row.  The micro-kernel would compute MR rows
 * for one (the rows beyond M re-read a valid row) and keep only NV
 * accumulators in flight, which leaves the FMA latency exposed; here
 * GEMV_NV independent chains hide it and B streams once per row.  Every C
 * element is still the one FMA chain over k = 0..K-1 from zero, so the
 * results are bit-identical to the blocked path's. */
static FNN_KFUNC void KP(gemv_rows)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T *A, ptrdiff_t lda,
                                    const T *B, ptrdiff_t ldb, T *C, ptrdiff_t ldc,
                                    const KP(ectx) *e)
{
    for (ptrdiff_t i = 0; i < M; i++) {
        const T *a = A + i * lda;
        T *c = C + i * ldc;
        for (ptrdiff_t j = 0; j < N; j += GEMV_NV * VL) {
            V acc[GEMV_NV];
            int nl[GEMV_NV];
            FNN_UNROLL for (int v = 0; v < GEMV_NV; v++) {
                ptrdiff_t n = N - j - v * VL;
                nl[v] = n < 0 ? 0 : (n > VL ? VL : (int)n);
                acc[v] = VZERO();
            }
            const T *b = B + j;
            if (nl[GEMV_NV - 1] == VL) {
                for (ptrdiff_t k = 0; k < K; k++, b += ldb) {
                    V av = VSET1(a[k]);
                    FNN_UNROLL for (int v = 0; v < GEMV_NV; v++)
                        acc[v] = VFMA(av, VLOADU(b + v * VL), acc[v]);
                }
            } else { /* the last, partial strip: masked loads */
                for (ptrdiff_t k = 0; k < K; k++, b += ldb) {
                    V av = VSET1(a[k]);
                    FNN_UNROLL for (int v = 0; v < GEMV_NV; v++)
                        if (nl[v] > 0) acc[v] = VFMA(av, LDN(b + v * VL, nl[v]), acc[v]);
                }
            }
            FNN_UNROLL for (int v = 0; v < GEMV_NV; v++) {
                if (nl[v] == 0) break;
                if (e->mode == FNN_EM_RAW) STN(c + j + v * VL, acc[v], nl[v]);
                else KP(epi_vec)(e, acc[v], c + j + v * VL, i, j + v * VL, nl[v]);
            }
        }
    }
    if (e->scalar_pass) KP(epi_scalar)(e, C, ldc, 0, 0, M, N);
}

#ifdef VFMA_FUSED
/* One column (N == 1: a 1-wide output layer, its weight update), VL rows per
 * vector instead of one row per vector: the micro-kernels would broadcast
 * every op(A)[i][k] against a B row of one useful lane (and pack that B
 * into NR-wide padded panels), and the epilogue (a sigmoid's exp) would
 * spend a whole vector on each row.  Here the lanes are rows i .. i+VL-1:
 * with trans_a, op(A)[i..][k] is VL consecutive elements of A's row k;
 * without it, VL x VL blocks of A are transposed (the rows' k values side
 * by side).  Each C element is still the one FMA chain over k = 0..K-1 from
 * zero (fma(b, a, acc) is fma(a, b, acc): fused, so exact either way), and
 * the epilogue's lane-wise code sees the same values: bit-identical to the
 * blocked path.  The epilogue reads C, Y and Z as column vectors, so the
 * caller checks that their leading dimensions are 1 (gemm_col_fits). */
static inline int KP(gemm_col_fits)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t ldc, const KP(ectx) *e)
{
    return N == 1 && (ldc == 1 || M == 1) &&
           (e->mode != FNN_EM_DERIV || e->ldy == 1 || M == 1) &&
           (e->mode != FNN_EM_BIAS || e->Z == NULL || e->scalar_pass || e->ldz == 1 || M == 1);
}

static FNN_KFUNC void KP(gemm_col)(int ta, int tb, ptrdiff_t M, ptrdiff_t K, const T *A,
                                   ptrdiff_t lda, const T *B, ptrdiff_t ldb, T *C,
                                   const KP(ectx) *e)
{
    const ptrdiff_t sb = tb ? 1 : ldb;   /* op(B)[k][0] = B[k * sb] */
    KP(ectx) ec = *e;
    ec.bias = NULL;   /* added below: one value for every lane */
    for (ptrdiff_t i = 0; i < M; i += VL) {
        const int n = M - i < VL ? (int)(M - i) : VL;
        V acc = VZERO();
        if (ta) {
            const T *a = A + i;
            for (ptrdiff_t k = 0; k < K; k++, a += lda)
                acc = VFMA(LDN(a, n), VSET1(B[k * sb]), acc);
        } else {
            /* at[kk * VL + q] = A[(i + q) * lda + k0 + kk] */
            T at[VL * VL];
            for (ptrdiff_t k0 = 0; k0 < K; k0 += VL) {
                const int kb = K - k0 < VL ? (int)(K - k0) : VL;
#ifdef VTRANSPOSE
                if (n == VL && kb == VL) {
                    VTRANSPOSE(A + i * lda + k0, lda, at, VL);
                } else
#endif
                {
                    for (int kk = 0; kk < kb; kk++)
                        for (int q = 0; q < VL; q++)
                            at[kk * VL + q] = q < n ? A[(i + q) * lda + k0 + kk] : (T)0;
                }
                for (int kk = 0; kk < kb; kk++)
                    acc = VFMA(VLOADU(at + kk * VL), VSET1(B[(k0 + kk) * sb]), acc);
            }
        }
        if (e->mode == FNN_EM_RAW) {
            STN(C + i, acc, n);
            continue;
        }
        if (e->mode == FNN_EM_BIAS && e->bias) acc = VADD(acc, VSET1(e->bias[0]));
        KP(epi_vec)(&ec, acc, C + i, i, 0, n);
    }
    if (e->scalar_pass) KP(epi_scalar)(e, C, 1, 0, 0, M, 1);
}
#endif

/* Whether one call packs A and B itself: the driver's decisions below, for
 * fnn_kprepack (the engine packs such an operand once for all its tiles). */
static inline int KP(packs_a)(int ta, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, ptrdiff_t lda)
{
    /* Pack the A block into contiguous [k][MR] panels when enough B panels
     * (N >= 4 * NR) reuse it:
     *  - with trans_a (the weight updates, A.T @ D), always where PACK_A_TRANS
     *    and K >= PACK_A_TRANS_MIN_K (AVX-512; with AVX2's 6 x 16 tiles, and
     *    for batches of 32, it measured slower), else when rows are a
     *    multiple of 2 KiB apart (see below).  Read in place,
     *    each micro-kernel call touches kc rows of A for MR values each, kc
     *    cache lines (16 KiB at kc = 256) that crowd the B micro-panel out
     *    of L1; packed, the same values are MR * kc contiguous ones
     *    (measured: 784 x 256 x 256 updates 146 -> 194 GFLOP/s);
     *  - without trans_a, when rows of A are a multiple of 4 KiB apart: they
     *    fall in a few cache sets and thrash L1/L2 (measured: helps
     *    1024-wide float rows, hurts 784- and 512-wide ones). */
    return M > MR && N >= 4 * NR &&
           (ta ? ((PACK_A_TRANS && K >= PACK_A_TRANS_MIN_K) || (lda * (ptrdiff_t)sizeof(T)) % 2048 == 0)
               : (lda * (ptrdiff_t)sizeof(T)) % 4096 == 0);
}

/* Whether a product of M rows reads B's full panels in place instead of
 * packing them (see the top of this file): few rows, and when B's rows are
 * a multiple of 8 KiB apart, at most MR of them (one pass over B, which
 * packing cannot beat).  At 8 KiB the K rows of a panel fall in one group
 * of L2 sets (16 of the 256 rows of a K block per set, as many as the
 * ways), so every further pass over a panel misses (measured, one core,
 * AVX-512: float32 M x 2048 x 1024, M = 12..128, and float64 M x 1024 x
 * 1024 are 1.15-2x as fast packed, M = 2..8 1.5x as fast in place; B
 * 4 KiB apart, M x 1024 x 1024 floats, in place stays as fast). */
static inline int KP(reads_b_in_place)(int tb, ptrdiff_t M, ptrdiff_t ldb)
{
    const int few_sets = (ldb * (ptrdiff_t)sizeof(T)) % 8192 == 0;
    return !tb && M <= (few_sets ? MR : DIRECT_B_MAX_M);
}

/* (fnn_kprepack's question, for tiles of M rows: those are hundreds of rows
 * there, so B's stride does not enter) */
static inline int KP(packs_b)(int ta, int tb, ptrdiff_t M)
{
    const int gemv = !ta && !tb && M <= GEMV_MAX_M;
    const int direct = !tb && M <= DIRECT_B_MAX_M;
    return !gemv && !direct;
}

/* The epilogue's context, decided once per product. */
static FNN_KFUNC void KP(ectx_init)(KP(ectx) *e, const fnn_epilogue *ep)
{
    e->mode = FNN_EM_RAW;
    e->act = ep ? ep->act : FNN_ACT_LINEAR;
    e->vact = e->act;
    e->identity = 0;
    e->scalar_pass = 0;
    e->vexp = 0;
    e->p = ep ? (T)ep->act_param : (T)0;
    e->alpha = ep ? (T)ep->alpha : (T)1;
    e->beta = ep ? (T)ep->beta : (T)0;
    e->bias = ep ? (const T *)ep->bias : NULL;
    e->Y = ep ? (const T *)ep->Y : NULL;
    e->ldy = ep ? ep->ldy : 0;
    e->s = ep && ep->steepness != 0 ? (T)ep->steepness : (T)1;
    e->clip = ep && ep->kind == FNN_EPI_DERIV && ep->flat_lo < ep->flat_hi;
    e->flo = ep ? (T)ep->flat_lo : (T)0;
    e->fhi = ep ? (T)ep->flat_hi : (T)0;
    e->Z = ep && ep->kind == FNN_EPI_BIAS_ACT ? (T *)ep->Z : NULL;
    e->ldz = ep ? ep->ldz : 0;
    if (!ep || ep->kind == FNN_EPI_STORE) {
        if (e->beta != 0) e->mode = FNN_EM_AXPBY;
        else if (e->alpha != 1) e->mode = FNN_EM_SCALE;
    } else {
        /* The activation's vector form when it has one (with the steepness
         * and the flat spot applied as the scalar pass would); else the
         * vector part adds the bias (or keeps acc) only and the scalar pass
         * does the rest. */
        const int deriv = ep->kind == FNN_EPI_DERIV;
        e->scalar_pass = !KP(has_vec)(e->act, deriv);
        if (e->scalar_pass) e->vact = FNN_ACT_LINEAR;
        e->vexp = !e->scalar_pass && FNN_ACT_HAS(e->act, KT_VEXP_PROPS & (deriv ? FNN_ACT_VEXP_D : FNN_ACT_VEXP));
        e->identity = FNN_ACT_HAS(e->vact, FNN_ACT_IDENTITY);
        if (deriv) {
            if (e->scalar_pass || !e->identity || e->s != 1) e->mode = FNN_EM_DERIV;
        } else if (e->bias || e->scalar_pass || !e->identity || e->s != 1) {
            e->mode = FNN_EM_BIAS;
        }
    }
}

/* The driver.  pb == NULL: B is packed block by block into work (or read in
 * place, see "direct").  pb != NULL: op(B) was packed whole by
 * KP(fnn_kpack_b) (B, ldb and tb are then unused).  pa == NULL: A is read in
 * place or packed block by block (see pack_a).  pa != NULL: op(A) was packed
 * whole by KP(fnn_kpack_a) and is read from there (A, lda and ta are then
 * unused except by the two-pass beta path, which reads A in place).  All of
 * them feed the micro-kernel the same values in the same order, so results
 * are bit-identical. */
static FNN_KFUNC void KP(gemm)(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                               const T *A, ptrdiff_t lda, const T *pa,
                               const T *B, ptrdiff_t ldb, const T *pb,
                               T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    KP(ectx) e;
    T *bp = (T *)work;
    const int prepacked = pb != NULL;
    const ptrdiff_t sa_i = ta ? 1 : lda, sa_k = ta ? lda : 1; /* op(A)[i][k] strides */

    if (M <= 0 || N <= 0) return;
    if (K < 0) K = 0;
    /* K blocks of equal size <= KC (a function of K only): no short last
     * block whose C round trip would cost as much as its FMAs. */
    const ptrdiff_t nkb = K > KC ? (K + KC - 1) / KC : 1;
    const ptrdiff_t kcb = K > KC ? (K + nkb - 1) / nkb : KC;
    /* Few rows: each B element is used only M/MR times, so read full B
     * panels in place instead of packing them (same FMAs, same results). */
    const int direct = !prepacked && KP(reads_b_in_place)(tb, M, ldb);
    /* A in [k][MR] panels: packed whole by the caller (pa), or block by
     * block here when KP(packs_a) says so. */
    const int pack_a = pa != NULL || KP(packs_a)(ta, M, N, K, lda);
    T *ap = (T *)((char *)work + (size_t)KC * NC * sizeof(T) + (size_t)MCS * NC * sizeof(T));

    KP(ectx_init)(&e, ep);   /* the epilogue, decided once */

    if (!ta && !tb && !prepacked && M <= GEMV_MAX_M) {
        KP(gemv_rows)(M, N, K, A, lda, B, ldb, C, ldc, &e);
        return;
    }
#ifdef VFMA_FUSED
    if (!prepacked && KP(gemm_col_fits)(M, N, ldc, &e)) {
        KP(gemm_col)(ta, tb, M, K, A, lda, B, ldb, C, &e);
        return;
    }
#endif

    if (e.mode == FNN_EM_AXPBY && K > KC) {
        /* Raw sums of an MCS x NC block in the work buffer, epilogue at the end. */
        T *tacc = (T *)((char *)work + (size_t)KC * NC * sizeof(T));
        for (ptrdiff_t jc = 0; jc < N; jc += NC) {
            ptrdiff_t nc = N - jc < NC ? N - jc : NC;
            for (ptrdiff_t ic = 0; ic < M; ic += MCS) {
                ptrdiff_t mc = M - ic < MCS ? M - ic : MCS;
                for (ptrdiff_t pc = 0; pc < K; pc += kcb) {
                    ptrdiff_t kc = K - pc < kcb ? K - pc : kcb;
                    /* micro-panel jr of this block at bsrc + jr * pstride */
                    const T *bsrc = prepacked ? pb + jc * K + pc * NR : bp;
                    const ptrdiff_t pstride = prepacked ? K : kc;
                    if (!prepacked) KP(pack_b)(tb, B, ldb, pc, kc, jc, nc, bp, direct);
                    for (ptrdiff_t jr = 0; jr < nc; jr += NR) {
                        int nr = (int)(nc - jr < NR ? nc - jr : NR);
                        for (ptrdiff_t ir = 0; ir < mc; ir += MR) {
                            int mr = (int)(mc - ir < MR ? mc - ir : MR);
                            KP(ukr)(ta, kc, A + (ic + ir) * sa_i + pc * sa_k, lda,
                                    direct && nr == NR ? B + pc * ldb + jc + jr : bsrc + jr * pstride,
                                    direct && nr == NR ? ldb : NR, tacc + ir * NC + jr, NC, mr, nr, pc > 0, NULL, 0, 0, NULL, NULL);
                        }
                    }
                }
                for (ptrdiff_t r = 0; r < mc; r++)
                    for (ptrdiff_t q = 0; q < nc; q += VL) {
                        int n = (int)(nc - q < VL ? nc - q : VL);
                        KP(epi_vec)(&e, LDN(tacc + r * NC + q, n), C + (ic + r) * ldc + jc + q,
                                    ic + r, jc + q, n);
                    }
            }
        }
        return;
    }

    /* (jc, pc) blocks, normally jc-major so a C block stays in L2 across the
     * K blocks.  When A is packed and fits one MC block, go pc-major instead
     * so that each K slice of A is packed once, not once per NC columns. */
    const int pc_outer = pack_a && !pa && M <= MC;
    const ptrdiff_t njb = (N + NC - 1) / NC;
    for (ptrdiff_t t = 0; t < njb * nkb; t++) {
        ptrdiff_t bj = pc_outer ? t % njb : t / nkb, bk = pc_outer ? t / njb : t % nkb;
        ptrdiff_t jc = bj * NC, pc = bk * kcb;
        ptrdiff_t nc = N - jc < NC ? N - jc : NC;
        ptrdiff_t kc = K - pc < kcb ? K - pc : kcb;
        /* Pre-packed B comes from L3 (a whole weight matrix does not fit L2):
         * while the tiles of one micro-panel compute, prefetch the next
         * micro-panel into L2, a slice per tile (the hardware prefetcher
         * alone leaves the first tile of every panel waiting). */
        const char *pf_first = NULL; /* the first micro-panel of the next block */
        ptrdiff_t pf_kc = 0;
        if (prepacked && t + 1 < njb * nkb) {
            ptrdiff_t bj1 = pc_outer ? (t + 1) % njb : (t + 1) / nkb;
            ptrdiff_t bk1 = pc_outer ? (t + 1) / njb : (t + 1) % nkb;
            pf_first = (const char *)(pb + bj1 * NC * K + bk1 * kcb * NR);
            pf_kc = K - bk1 * kcb < kcb ? K - bk1 * kcb : kcb;
        }
        {
            int last = bk == nkb - 1;
            const KP(ectx) *ee = (last && e.mode != FNN_EM_RAW) ? &e : NULL;
            const T *bsrc = prepacked ? pb + jc * K + pc * NR : bp;
            const ptrdiff_t pstride = prepacked ? K : kc;
            /* (2: a panel one vector wide is read in place too, by the narrow tiles) */
            if (!prepacked) KP(pack_b)(tb, B, ldb, pc, kc, jc, nc, bp, direct ? (pack_a ? 1 : 2) : 0);
            for (ptrdiff_t ic = 0; ic < M; ic += MC) {
                ptrdiff_t mc = M - ic < MC ? M - ic : MC;
                if (pack_a && !pa && (!pc_outer || bj == 0)) KP(pack_a)(ta, A, lda, ic, mc, pc, kc, ap);
                for (ptrdiff_t jr = 0; jr < nc; jr += NR) {
                    int nr = (int)(nc - jr < NR ? nc - jr : NR);
                    const char *pf = NULL;
                    ptrdiff_t pf_lines = 0, pf_per = 0;
                    if (prepacked) { /* the panel that follows this one */
                        int in_block = jr + NR < nc || ic + mc < M;
                        pf = jr + NR < nc ? (const char *)(bsrc + (jr + NR) * pstride)
                                          : in_block ? (const char *)bsrc : pf_first;
                        pf_lines = (in_block ? kc : pf_kc) * NR * (ptrdiff_t)sizeof(T) / 64;
                    }
                    /* one vector wide (never the in-place "direct" panel, never
                     * packed A, whose panels are MR rows): 2*MR-row tiles */
                    const int narrow = nr <= VL && !pack_a;
                    const ptrdiff_t mstep = narrow ? 2 * MR : MR;
                    if (pf) pf_per = (pf_lines + (mc + mstep - 1) / mstep - 1) / ((mc + mstep - 1) / mstep); /* per tile */
                    for (ptrdiff_t ir = 0; ir < mc; ir += mstep) {
                        int mr = (int)(mc - ir < mstep ? mc - ir : mstep);
                        T *ct = C + (ic + ir) * ldc + jc + jr;
                        if (pf) {
                            ptrdiff_t l0 = ir / mstep * pf_per, l1 = l0 + pf_per < pf_lines ? l0 + pf_per : pf_lines;
                            for (ptrdiff_t q = l0; q < l1; q++) KPREFETCH_L2(pf + q * 64);
                        }
                        /* next tile: down the column panel, then the next panel */
                        ptrdiff_t ni = ir + mstep < mc ? ic + ir + mstep : ic;
                        ptrdiff_t nj = ir + mstep < mc ? jc + jr : jc + jr + NR;
                        int has_next = ir + mstep < mc || jr + NR < nc;
                        const T *cn = has_next ? C + ni * ldc + nj : NULL;
                        const T *yn = has_next && ee && e.mode == FNN_EM_DERIV ? e.Y + ni * e.ldy + nj : NULL;
                        if (narrow)
                            (mr <= MR ? KP(ukr_narrow_half) : KP(ukr_narrow))(
                                ta, kc, A + (ic + ir) * sa_i + pc * sa_k, lda,
                                direct && nr == VL ? B + pc * ldb + jc + jr : bsrc + jr * pstride,
                                direct && nr == VL ? ldb : NR, ct, ldc, mr, nr, pc > 0, ee, ic + ir,
                                jc + jr, cn, yn);
                        else
                            KP(ukr)(pack_a ? 1 : ta, kc,
                                    pa ? pa + (ic + ir) * K + pc * MR
                                       : pack_a ? ap + ir * kc : A + (ic + ir) * sa_i + pc * sa_k,
                                    pack_a ? MR : lda,
                                    direct && nr == NR ? B + pc * ldb + jc + jr : bsrc + jr * pstride,
                                    direct && nr == NR ? ldb : NR, ct, ldc, mr, nr, pc > 0, ee, ic + ir, jc + jr, cn, yn);
                    }
                }
            }
        }
    }
}

/* The epilogue over an M x N block of raw sums acc (another unit's product,
 * fnn_amx.c), written to C: the block is the product's top left corner
 * (offset ep's bias, Y and Z for any other). */
void KP(fnn_kepilogue)(const fnn_epilogue *ep, ptrdiff_t M, ptrdiff_t N,
                       const T *acc, ptrdiff_t ld_acc, T *C, ptrdiff_t ldc)
{
    KP(ectx) e;
    KP(ectx_init)(&e, ep);
    for (ptrdiff_t r = 0; r < M; r++)
        for (ptrdiff_t q = 0; q < N; q += VL) {
            int n = (int)(N - q < VL ? N - q : VL);
            KP(epi_vec)(&e, LDN(acc + r * ld_acc + q, n), C + r * ldc + q, r, q, n);
        }
    if (e.scalar_pass) KP(epi_scalar)(&e, C, ldc, 0, 0, M, N);
}

void KP(fnn_kgemm)(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                   const T *A, ptrdiff_t lda, const T *B, ptrdiff_t ldb,
                   T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    KP(gemm)(ta, tb, M, N, K, A, lda, NULL, B, ldb, NULL, C, ldc, ep, work);
}

void KP(fnn_kgemm_pp)(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                      const T *A, ptrdiff_t lda, const T *pa, const T *B, ptrdiff_t ldb,
                      const T *pb, T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    /* K == 0 has nothing packed: the plain path. */
    if (K <= 0) pa = pb = NULL;
    KP(gemm)(ta, tb, M, N, K, A, lda, pa, B, ldb, pb, C, ldc, ep, work);
}

void KP(fnn_kgemm_pb)(int ta, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const T *A, ptrdiff_t lda,
                      const T *pb, T *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    /* K == 0 has nothing packed (pb may be anything): the plain path. */
    KP(gemm)(ta, 0, M, N, K, A, lda, NULL, NULL, 0, K > 0 ? pb : NULL, C, ldc, ep, work);
}

/* Part `part` of n_parts (a run of consecutive panels: with trans_a, MR
 * floats are half a cache line, which the next panel reads too) of op(A)
 * (M x K) packed whole: panel p (rows p*MR ..) at p*MR*K, laid out [k][r]
 * like pack_a's (rows past M repeat the last one), so a K block [pc, pc+kc)
 * of it is the panel pack_a would build, at + pc*MR.  Pure copies: any split
 * gives the same buffer. */
void KP(fnn_kpack_a)(int ta, ptrdiff_t M, ptrdiff_t K, const T *A, ptrdiff_t lda, T *pa,
                     int part, int n_parts)
{
    if (M <= 0 || K <= 0) return;
    if (n_parts < 1) n_parts = 1;
    const ptrdiff_t panels = (M + MR - 1) / MR;
    const ptrdiff_t p0 = panels * part / n_parts, p1 = panels * (part + 1) / n_parts;
    for (ptrdiff_t i = p0 * MR; i < p1 * MR && i < M; i += MR)
        KP(pack_a)(ta, A, lda, i, M - i < MR ? M - i : MR, 0, K, pa + i * K);
}

size_t KP(fnn_kpacked_a_elems)(ptrdiff_t M, ptrdiff_t K)
{
    return M <= 0 || K <= 0 ? 0 : (size_t)((M + MR - 1) / MR) * MR * (size_t)K;
}

/* Which operands of an M x N x K product cut into tm x tn tiles (one call
 * each) are worth packing once for all the tiles: FNN_PREPACK_A when every
 * tile would pack its A and there are three or more column tiles (each would
 * pack the same rows again), FNN_PREPACK_B likewise with B and row tiles.
 * Measured (one core): 4-5 % off the 784-1024-1024-10 step at batch 256
 * (four column and four row tiles); with two column tiles (784-256-128-10's
 * first update) packing once gained nothing over packing in the tiles, where
 * the packed block is still in L1/L2 when the micro-kernel reads it.  Only
 * where every tile starts on a panel (tm a multiple of MR, tn of NR), so the
 * tile at (i0, j0) reads the packed A from + i0*K and B from + j0*K.
 * ep: the product's epilogue (the two-pass beta path never reads a packed A). */
int KP(fnn_kprepack)(int ta, int tb, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, ptrdiff_t lda,
                     ptrdiff_t tm, ptrdiff_t tn, const fnn_epilogue *ep)
{
    const ptrdiff_t mt = M < tm ? M : tm, nt = N < tn ? N : tn;
    /* the two-pass beta path below reads A in place */
    const int two_pass = (!ep || ep->kind == FNN_EPI_STORE) && ep && ep->beta != 0 && K > KC;
    int r = 0;
    if (K <= 0) return 0;
    if (N > 2 * tn && (M <= tm || tm % MR == 0) && !two_pass && KP(packs_a)(ta, mt, nt, K, lda))
        r |= FNN_PREPACK_A;
    if (M > 2 * tm && (N <= tn || tn % NR == 0) && KP(packs_b)(ta, tb, mt)) r |= FNN_PREPACK_B;
    return r;
}

/* Panels part, part + n_parts, ... of op(B) packed whole (see packed_elems);
 * every panel is a pure copy, so any split gives the same buffer. */
void KP(fnn_kpack_b)(int tb, ptrdiff_t N, ptrdiff_t K, const T *B, ptrdiff_t ldb, T *pb,
                     int part, int n_parts)
{
    if (N <= 0 || K <= 0) return;
    if (n_parts < 1) n_parts = 1;
    for (ptrdiff_t j = (ptrdiff_t)part * NR; j < N; j += (ptrdiff_t)n_parts * NR)
        KP(pack_b)(tb, B, ldb, 0, K, j, N - j < NR ? N - j : NR, pb + j * K, 0);
}

size_t KP(fnn_kpacked_b_elems)(ptrdiff_t N, ptrdiff_t K)
{
    return KP(packed_elems)(N, K);
}

#ifdef FNN_KT_UNDEF_GEMV
#undef GEMV_NV
#undef FNN_KT_UNDEF_GEMV
#endif
#ifdef FNN_KT_UNDEF_GEMV_M
#undef GEMV_MAX_M
#undef FNN_KT_UNDEF_GEMV_M
#endif
#ifdef FNN_KT_UNDEF_PACK_A_TRANS
#undef PACK_A_TRANS
#undef FNN_KT_UNDEF_PACK_A_TRANS
#endif
#ifdef FNN_KT_UNDEF_DIRECT
#undef DIRECT_B_MAX_M
#undef FNN_KT_UNDEF_DIRECT
#endif
#undef LDN
#undef STN
#undef VEXP
#undef VEXPM1
#undef VSIGM
#undef VTANH
#undef KT_VEXP_PROPS
#undef NR
#undef KP
#undef KP_CAT
#undef KP_CAT_
