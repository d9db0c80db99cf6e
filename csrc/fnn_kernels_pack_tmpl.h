/* fnn_kernels_pack_tmpl.h - packing the GEMM's operands, part of
 * fnn_kernels_tmpl.h (included there, once per instantiation; no include
 * guard on purpose): op(B) into NR-wide micro-panels, op(A) into MR-row
 * panels, and the sizes of the work buffer and of a whole packed op(B). */

/* Pack op(B)[pc:pc+kc, jc:jc+nc] into ceil(nc/NR) micro-panels of kc x NR
 * (row k of a panel = NR consecutive columns), zero-padding the last panel.
 * direct: the full panels are read in place by the micro-kernel (trans_b == 0
 * and small M, where packing would cost more than it saves): pack only the
 * ragged last one; direct == 2: not a last one exactly one vector wide either
 * (the narrow micro-kernels read it in place when A is not packed). */
static FNN_KFUNC void KP(pack_b)(int tb, const T *B, ptrdiff_t ldb, ptrdiff_t pc, ptrdiff_t kc,
                                 ptrdiff_t jc, ptrdiff_t nc, T *bp, int direct)
{
    for (ptrdiff_t jp = 0; jp < nc; jp += NR) {
        ptrdiff_t nr = nc - jp < NR ? nc - jp : NR;
        T *dst = bp + jp * kc;
        if (direct && nr == NR) continue;
        if (direct > 1 && nr == VL) continue;   /* read in place by the narrow tiles */
        if (!tb) {
            const T *src = B + pc * ldb + jc + jp;
            if (nr == NR) {
                /* Rows of B are often a page apart (ldb of 1024 floats): the
                 * hardware prefetchers stop at page boundaries, so fetch
                 * PACK_PF rows ahead by hand. */
                for (ptrdiff_t k = 0; k < kc; k++, src += ldb, dst += NR) {
                    if (k + PACK_PF < kc)
                        FNN_UNROLL for (int v = 0; v < NR * (int)sizeof(T) / 64; v++)
                            KPREFETCH(src + PACK_PF * ldb + v * (64 / (int)sizeof(T)));
                    FNN_UNROLL for (int v = 0; v < NV; v++) VSTOREA(dst + v * VL, VLOADU(src + v * VL));
                }
            } else {
                for (ptrdiff_t k = 0; k < kc; k++, src += ldb, dst += NR)
                    FNN_UNROLL for (int v = 0; v < NV; v++) {
                        ptrdiff_t n = nr - v * VL;
                        n = n < 0 ? 0 : (n > VL ? VL : n);
                        VSTOREA(dst + v * VL, n ? LDN(src + v * VL, (int)n) : VZERO());
                    }
            }
        } else {
            /* op(B)[k][j] = B[j*ldb + k]. */
            const T *src = B + (jc + jp) * ldb + pc;
#ifdef VTRANSPOSE
            /* Full panels: VL x VL blocks transposed in registers. */
            if (nr == NR) {
                ptrdiff_t k = 0;
                for (; k + VL <= kc; k += VL)
                    FNN_UNROLL for (int v = 0; v < NV; v++)
                        VTRANSPOSE(src + v * VL * ldb + k, ldb, dst + k * NR + v * VL, NR);
                for (; k < kc; k++)
                    for (ptrdiff_t q = 0; q < NR; q++) dst[k * NR + q] = src[q * ldb + k];
                continue;
            }
#endif
            /* Read each column of the panel sequentially, scatter into the
             * (L1-resident) panel. */
            for (ptrdiff_t q = 0; q < nr; q++) {
                const T *s = src + q * ldb;
                for (ptrdiff_t k = 0; k < kc; k++) dst[k * NR + q] = s[k];
            }
            for (ptrdiff_t q = nr; q < NR; q++)
                for (ptrdiff_t k = 0; k < kc; k++) dst[k * NR + q] = (T)0;
        }
    }
}

/* Pack op(A)[ic:ic+mc, pc:pc+kc] into MR-row panels laid out [k][r] (what the
 * trans_a micro-kernel reads with lda = MR); rows past the edge repeat the
 * last valid row, exactly like the in-place reads. */
static FNN_KFUNC void KP(pack_a)(int ta, const T *A, ptrdiff_t lda, ptrdiff_t ic, ptrdiff_t mc,
                                 ptrdiff_t pc, ptrdiff_t kc, T *ap)
{
    for (ptrdiff_t ir = 0; ir < mc; ir += MR) {
        int mr = (int)(mc - ir < MR ? mc - ir : MR);
        T *dst = ap + ir * kc;
        if (ta) {
            const T *src = A + pc * lda + ic + ir;
            if (mr == MR) {
                for (ptrdiff_t k = 0; k < kc; k++)
                    FNN_UNROLL for (int r = 0; r < MR; r++) dst[k * MR + r] = src[k * lda + r];
            } else {
                for (ptrdiff_t k = 0; k < kc; k++)
                    for (int r = 0; r < MR; r++) dst[k * MR + r] = src[k * lda + (r < mr ? r : mr - 1)];
            }
        } else {
#ifdef VTRANSPOSE_A
            if (mr == MR) { /* MR x MR blocks transposed in registers */
                const T *src = A + (ic + ir) * lda + pc;
                ptrdiff_t k = 0;
                for (; k + MR <= kc; k += MR) VTRANSPOSE_A(src + k, lda, dst + k * MR);
                for (; k < kc; k++)
                    for (int r = 0; r < MR; r++) dst[k * MR + r] = src[r * lda + k];
                continue;
            }
#endif
            for (int r = 0; r < MR; r++) {
                const T *src = A + (ic + ir + (r < mr ? r : mr - 1)) * lda + pc;
                for (ptrdiff_t k = 0; k < kc; k++) dst[k * MR + r] = src[k];
            }
        }
    }
}

/* Work buffer: the packed B block, the MCS x NC raw-sum block, the packed
 * A block (MC x KC). */
static const size_t KP(work_bytes) = (size_t)KC * NC * sizeof(T) + (size_t)MCS * NC * sizeof(T) +
                                     (size_t)(MC + MR) * KC * sizeof(T) + 64;

/* Elements of op(B) (K x N) packed whole: ceil(N / NR) panels of K x NR,
 * panel p (columns p*NR ..) at p*NR*K, row k of it at + k*NR; the last panel
 * zero-padded.  A K block [pc, pc+kc) of a panel is then the same contiguous
 * kc x NR micro-panel pack_b would build, at + pc*NR. */
static inline size_t KP(packed_elems)(ptrdiff_t N, ptrdiff_t K)
{
    return N <= 0 || K <= 0 ? 0 : (size_t)((N + NR - 1) / NR) * NR * (size_t)K;
}
