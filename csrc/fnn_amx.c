/* fnn_amx.c - float32 products on the AMX tile unit (Intel Xeon since
 * Sapphire Rapids), for the engine's large float32 products (kernel "amx":
 * which ones, see amx_product in fastnn/_engine_team.pxi).
 *
 * Why: one core's float32 FMAs peak near 245 GFLOP/s on this project's
 * machine; the tile unit's bfloat16 dot products run about 16 times as fast
 * (measured: 3.2-3.9 TFLOP/s), so even six of them per float32 product win.
 *
 * How, keeping float32 accuracy: every float32 x is split exactly into three
 * bfloat16 parts by truncation, x = h + m + l (h the top 8 significant bits,
 * m the next 8, l the last 8), and a product a*b is taken as the six bf16
 * products  l_a h_b + m_a m_b + m_a h_b + h_a l_b + h_a m_b + h_a h_b
 * (smallest first), each exact in float32 and accumulated in float32 by the
 * tile unit.  The three products left out (m l, l m, l l) are below
 * 2^-20 |ab| and in practice of the order of 2^-24 |ab|:
 * measured against float64 on a 1000 x 784 x 256 product, the largest error
 * relative to sum |a b| is 7.7e-8 here and 2.2e-7 for a float32 FMA loop.
 * The tile unit treats subnormal inputs and results as zero.
 *
 * Results are not bit-identical to the FMA kernels (fnn_kernels_*.c); they
 * do keep fnn_gemm.h's determinism contract for a given product shape.  The
 * epilogue is the AVX-512 kernel's (fnn_kepilogue_avx512_s), on each 32 x 32
 * block of sums as it leaves the tiles.
 *
 * Layouts.  Tiles are 16 rows of 64 bytes.  An A tile holds 16 rows x 32 k
 * of one part; a B tile 16 pairs of k rows x 16 columns, each column's two k
 * values side by side (the unit's "VNNI" order).  Both operands are packed
 * in blocks of 16 rows (of op(A)) or columns (of op(B)), K deep
 * (fnn_amx_pack_a/b: a training step packs both once for the team;
 * fnn_amx_gemm_pb splits a predict's rows AMX_ROWS at a time into its work).
 * The micro-kernel (block32) computes a 32 x 32 block of C in four
 * accumulator tiles, 18 tile loads per 24 dot products.
 *
 * The OS must let the process use the tile registers: on Linux,
 * arch_prctl(ARCH_REQ_XCOMP_PERM) once (fnn_amx_available asks).  Elsewhere,
 * or with a compiler that cannot assemble AMX, every entry point is a stub
 * and fnn_amx_available() says 0.
 */
#include <stdint.h>
#include <string.h>

#include "fnn_gemm.h"
#include "fnn_kernels.h"

enum {
    AMX_KC = 32,        /* k values per tile row (bf16)                 */
    AMX_TILE = 16,      /* rows per tile, columns per B tile            */
    AMX_ROWS = 256,     /* rows per block: its A tiles stay in L2 while B streams by */
    AMX_PARTS = 3,
    AMX_TILE_ELEMS = AMX_TILE * AMX_KC,    /* bf16 per tile: 512 */
};

static ptrdiff_t amx_k_chunks(ptrdiff_t K) { return (K + AMX_KC - 1) / AMX_KC; }
/* columns and rows go in pairs of tiles: 32 at a time */
static ptrdiff_t amx_pairs(ptrdiff_t n) { return (n + 2 * AMX_TILE - 1) / (2 * AMX_TILE); }

size_t fnn_amx_packed_bytes(ptrdiff_t n, ptrdiff_t K)
{
    return fnn_amx_packed_offset(2 * AMX_TILE * amx_pairs(n), K);
}

size_t fnn_amx_packed_offset(ptrdiff_t i, ptrdiff_t K)
{
    return (size_t)(i / AMX_TILE) * (size_t)amx_k_chunks(K) * AMX_PARTS * AMX_TILE_ELEMS * 2;
}

size_t fnn_amx_work_bytes(ptrdiff_t K)
{
    /* the sums of one 32 x 32 block, then A split for AMX_ROWS rows */
    return FNN_AMX_SUMS_BYTES + fnn_amx_packed_bytes(AMX_ROWS, K);
}

#if defined(__linux__) && defined(__x86_64__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || \
     (defined(__clang__) && __clang_major__ >= 12))

#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,amx-tile,amx-bf16")))

/* ---- may this process use the tiles? -------------------------------- */

static int amx_permission(void)
{
    /* Linux 5.16+: the tile data state is off until the process asks. */
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

static int amx_state = -1;   /* computed once; the race is benign */

int fnn_amx_available(void)
{
    int s = amx_state;
    /* the packing and the epilogue are AVX-512 (fnn_cpu.c checks the OS too) */
    if (s < 0) amx_state = s = fnn_cpu_has_avx512() && fnn_cpu_has_amx() && amx_permission();
    return s;
}

/* ---- splitting float32 into three bfloat16 --------------------------- */

/* The parts of 16 floats, as floats whose low 16 bits are zero. */
AMX_TARGET static inline void split3(__m512 x, __m512 *h, __m512 *m, __m512 *l)
{
    const __m512i top = _mm512_set1_epi32((int)0xffff0000u);
    *h = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), top));
    __m512 r = _mm512_sub_ps(x, *h);                          /* exact */
    *m = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(r), top));
    *l = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_sub_ps(r, *m)), top));
}

/* 32 bf16: the top halves of x0's lanes, then of x1's */
AMX_TARGET static inline __m512i to_bf16(__m512 x0, __m512 x1)
{
    const __m512i odd = _mm512_set_epi16(63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37,
                                         35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9,
                                         7, 5, 3, 1);
    return _mm512_permutex2var_epi16(_mm512_castps_si512(x0), odd, _mm512_castps_si512(x1));
}

/* Two rows' parts in VNNI pairs: lane j = (row0[j] in the low half, row1[j] high). */
AMX_TARGET static inline __m512i pair_bf16(__m512 row0, __m512 row1)
{
    return _mm512_or_si512(_mm512_castps_si512(row1),
                           _mm512_srli_epi32(_mm512_castps_si512(row0), 16));
}

AMX_TARGET static inline __m512 load_masked(const float *p, ptrdiff_t n)
{
    if (n >= 16) return _mm512_loadu_ps(p);
    if (n <= 0) return _mm512_setzero_ps();
    return _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}

/* 16 x 16 32-bit values: rows become columns. */
AMX_TARGET static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/* One unit of a packed operand: the three tiles (parts h, m, l) of 16
 * rows or columns by 32 k values, as 16 vectors of 32-bit lanes per part,
 * from one of two source shapes:
 *  - lines: line q (q < n_lines, at X + q * ld) holds the 32 k values (the
 *    first n_k of them exist); lane = a pair of consecutive k;
 *  - pairs: k row k (k < n_k, at X + k * ld) holds 16 values (the first
 *    n_lanes exist); vector q pairs k rows 2q and 2q + 1, lane by lane.
 * `transpose` swaps vectors and lanes before the 16 rows of 64 bytes of
 * each tile are stored at t, t + AMX_TILE_ELEMS, t + 2 * AMX_TILE_ELEMS. */
AMX_TARGET static void pack_unit(int pairs, int transpose, const float *X, ptrdiff_t ld,
                                 ptrdiff_t n_lanes, ptrdiff_t n_k, uint16_t *t)
{
    __m512i v[AMX_PARTS][16];
    for (int q = 0; q < 16; q++) {
        __m512 x0 = _mm512_setzero_ps(), x1 = _mm512_setzero_ps();
        __m512 h0, m0, l0, h1, m1, l1;
        if (pairs) {
            if (2 * q < n_k) x0 = load_masked(X + 2 * q * ld, n_lanes);
            if (2 * q + 1 < n_k) x1 = load_masked(X + (2 * q + 1) * ld, n_lanes);
        } else if (q < n_lanes) {
            x0 = load_masked(X + q * ld, n_k);
            x1 = load_masked(X + q * ld + 16, n_k - 16);
        }
        split3(x0, &h0, &m0, &l0);
        split3(x1, &h1, &m1, &l1);
        if (pairs) {
            v[0][q] = pair_bf16(h0, h1);
            v[1][q] = pair_bf16(m0, m1);
            v[2][q] = pair_bf16(l0, l1);
        } else {
            v[0][q] = to_bf16(h0, h1);
            v[1][q] = to_bf16(m0, m1);
            v[2][q] = to_bf16(l0, l1);
        }
    }
    for (int p = 0; p < AMX_PARTS; p++) {
        if (transpose) transpose16(v[p]);
        for (int q = 0; q < 16; q++)
            _mm512_storeu_si512(t + p * AMX_TILE_ELEMS + q * 32, v[p][q]);
    }
}

/* Blocks [first, end) of the part `part` of n_parts of n blocks. */
static void part_range(ptrdiff_t n, int part, int n_parts, ptrdiff_t *first, ptrdiff_t *end)
{
    *first = n * part / n_parts;
    *end = n * (part + 1) / n_parts;
}

/* Blocks [b0, b1) of 16 rows (of op(A)) or columns (of op(B)) of a packed
 * operand, K deep, from X: `pairs` says which pack_unit form X's lines take
 * (lines of k values: X + block_offset * ld + k0; or rows of k: X + k0 * ld +
 * block_offset).  The loops follow X's memory: a line form reads a block's
 * lines through, a pair form k rows across the blocks. */
AMX_TARGET static void pack_blocks(int pairs, int transpose, ptrdiff_t n, ptrdiff_t K,
                                   const float *X, ptrdiff_t ld, uint16_t *out,
                                   ptrdiff_t b0, ptrdiff_t b1)
{
    const ptrdiff_t KC = amx_k_chunks(K);
    if (pairs) {
        for (ptrdiff_t kc = 0; kc < KC; kc++)
            for (ptrdiff_t b = b0; b < b1; b++)
                pack_unit(1, transpose, X + kc * AMX_KC * ld + b * AMX_TILE, ld,
                          n - b * AMX_TILE, K - kc * AMX_KC,
                          out + ((size_t)b * KC + kc) * AMX_PARTS * AMX_TILE_ELEMS);
    } else {
        for (ptrdiff_t b = b0; b < b1; b++)
            for (ptrdiff_t kc = 0; kc < KC; kc++)
                pack_unit(0, transpose, X + b * AMX_TILE * ld + kc * AMX_KC, ld,
                          n - b * AMX_TILE, K - kc * AMX_KC,
                          out + ((size_t)b * KC + kc) * AMX_PARTS * AMX_TILE_ELEMS);
    }
}

/* op(A) (M x K): block b holds rows 16 b .. 16 b + 15.  op(A)[i][k] is
 * A[i][k] (lines of k), or with trans_a A[k][i] (rows of k, whose lanes
 * become the tile's rows). */
AMX_TARGET void fnn_amx_pack_a(int trans_a, ptrdiff_t M, ptrdiff_t K, const float *A,
                               ptrdiff_t lda, void *pa, int part, int n_parts)
{
    ptrdiff_t b0, b1;
    part_range(2 * amx_pairs(M), part, n_parts, &b0, &b1);
    pack_blocks(trans_a, trans_a, M, K, A, lda, (uint16_t *)pa, b0, b1);
}

/* op(B) (K x N): block b holds columns 16 b .. 16 b + 15.  op(B)[k][j] is
 * B[k][j] (rows of k, paired as the tiles want), or with trans_b B[j][k]
 * (lines of k, whose pairs become the lanes). */
AMX_TARGET void fnn_amx_pack_b(int trans_b, ptrdiff_t N, ptrdiff_t K, const float *B,
                               ptrdiff_t ldb, void *pb, int part, int n_parts)
{
    ptrdiff_t b0, b1;
    part_range(2 * amx_pairs(N), part, n_parts, &b0, &b1);
    pack_blocks(!trans_b, trans_b, N, K, B, ldb, (uint16_t *)pb, b0, b1);
}

/* ---- the micro-kernel: a 32 x 32 block of C ------------------------- */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_config;

AMX_TARGET static void configure_tiles(void)
{
    amx_config c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) { c.colsb[t] = 64; c.rows[t] = AMX_TILE; }
    _tile_loadconfig(&c);
}

/* Tiles 0-3: C (rows 0-15 x cols 0-15, 0-15 x 16-31, 16-31 x 0-15, 16-31 x 16-31);
 * 4, 5: the two A row blocks of one part; 6, 7: the two B column blocks. */
#define LOAD_A(p) _tile_loadd(4, a0 + (p) * AMX_TILE_ELEMS, 64); \
                  _tile_loadd(5, a1 + (p) * AMX_TILE_ELEMS, 64);
#define LOAD_B(p) _tile_loadd(6, b0 + (p) * AMX_TILE_ELEMS, 64); \
                  _tile_loadd(7, b1 + (p) * AMX_TILE_ELEMS, 64);
#define DOT4 _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); \
             _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);

/* The 32 x 32 block of sums at S (rows ld floats apart) of the two A row
 * blocks' and the two B column blocks' packed tiles, over KC k chunks. */
AMX_TARGET static void block32(ptrdiff_t KC, const uint16_t *A0, const uint16_t *A1,
                               const uint16_t *B0, const uint16_t *B1, float *S, ptrdiff_t ld)
{
    const size_t step = AMX_PARTS * AMX_TILE_ELEMS, stride = (size_t)ld * sizeof(float);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    for (ptrdiff_t kc = 0; kc < KC; kc++) {
        const uint16_t *a0 = A0 + kc * step, *a1 = A1 + kc * step;
        const uint16_t *b0 = B0 + kc * step, *b1 = B1 + kc * step;
        /* parts 0 = h, 1 = m, 2 = l; the order is the header comment's */
        LOAD_A(2) LOAD_B(0) DOT4
        LOAD_A(1) LOAD_B(1) DOT4  LOAD_B(0) DOT4
        LOAD_A(0) LOAD_B(2) DOT4  LOAD_B(1) DOT4  LOAD_B(0) DOT4
    }
    _tile_stored(0, S, stride);
    _tile_stored(1, S + 16, stride);
    _tile_stored(2, S + 16 * ld, stride);
    _tile_stored(3, S + 16 * ld + 16, stride);
}

/* C = epilogue(op(A) @ op(B)) from both operands packed (pa, pb: their
 * first blocks), rows in blocks of AMX_ROWS whose A tiles stay in L2 while
 * each column pair's B tiles (from L3 when B is larger than L2) serve every
 * row pair of the block. */
AMX_TARGET static void gemm_packed(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const uint16_t *A,
                                   const uint16_t *B, float *C, ptrdiff_t ldc,
                                   const fnn_epilogue *ep, float *S)
{
    const ptrdiff_t KC = amx_k_chunks(K), NP = amx_pairs(N);
    const size_t block = (size_t)KC * AMX_PARTS * AMX_TILE_ELEMS;   /* one row/col block */
    for (ptrdiff_t i0 = 0; i0 < M; i0 += AMX_ROWS) {
        ptrdiff_t rows = M - i0 < AMX_ROWS ? M - i0 : AMX_ROWS;
        for (ptrdiff_t jp = 0; jp < NP; jp++) {
            const uint16_t *b = B + 2 * jp * block;
            ptrdiff_t j0 = jp * 32, nc = N - j0 < 32 ? N - j0 : 32;
            for (ptrdiff_t ip = 0; ip < amx_pairs(rows); ip++) {
                ptrdiff_t r0 = i0 + ip * 32, nr = M - r0 < 32 ? M - r0 : 32;
                const uint16_t *a = A + (r0 / AMX_TILE) * block;
                fnn_epilogue e = *ep;   /* the epilogue of this block */
                if (e.bias) e.bias = (const float *)e.bias + j0;
                if (e.Y) e.Y = (const float *)e.Y + r0 * e.ldy + j0;
                if (e.Z) e.Z = (float *)e.Z + r0 * e.ldz + j0;
                block32(KC, a, a + block, b, b + block, S, 32);
                fnn_kepilogue_avx512_s(&e, nr, nc, S, 32, C + r0 * ldc + j0, ldc);
            }
        }
    }
}

AMX_TARGET void fnn_amx_gemm_pp(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const void *pa,
                                const void *pb, float *C, ptrdiff_t ldc,
                                const fnn_epilogue *ep, void *work)
{
    configure_tiles();
    gemm_packed(M, N, K, (const uint16_t *)pa, (const uint16_t *)pb, C, ldc, ep, (float *)work);
    _tile_release();
}

AMX_TARGET void fnn_amx_gemm_pb(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K,
                                const float *A, ptrdiff_t lda, const void *pb,
                                float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    float *S = (float *)work;
    uint16_t *pa = (uint16_t *)((char *)work + FNN_AMX_SUMS_BYTES);
    configure_tiles();
    for (ptrdiff_t i0 = 0; i0 < M; i0 += AMX_ROWS) {
        ptrdiff_t rows = M - i0 < AMX_ROWS ? M - i0 : AMX_ROWS;
        fnn_epilogue e = *ep;
        if (e.Z) e.Z = (float *)e.Z + i0 * e.ldz;
        fnn_amx_pack_a(0, rows, K, A + i0 * lda, lda, pa, 0, 1);
        gemm_packed(rows, N, K, pa, (const uint16_t *)pb, C + i0 * ldc, ldc, &e, S);
    }
    _tile_release();
}

#else   /* no AMX on this platform or compiler */

int fnn_amx_available(void) { return 0; }
void fnn_amx_pack_a(int trans_a, ptrdiff_t M, ptrdiff_t K, const float *A, ptrdiff_t lda,
                    void *pa, int part, int n_parts)
{
    (void)trans_a; (void)M; (void)K; (void)A; (void)lda; (void)pa; (void)part; (void)n_parts;
}
void fnn_amx_pack_b(int trans_b, ptrdiff_t N, ptrdiff_t K, const float *B, ptrdiff_t ldb,
                    void *pb, int part, int n_parts)
{
    (void)trans_b; (void)N; (void)K; (void)B; (void)ldb; (void)pb; (void)part; (void)n_parts;
}
void fnn_amx_gemm_pp(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const void *pa, const void *pb,
                     float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    (void)M; (void)N; (void)K; (void)pa; (void)pb; (void)C; (void)ldc; (void)ep; (void)work;
}
void fnn_amx_gemm_pb(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float *A, ptrdiff_t lda,
                     const void *pb, float *C, ptrdiff_t ldc, const fnn_epilogue *ep, void *work)
{
    (void)M; (void)N; (void)K; (void)A; (void)lda; (void)pb; (void)C; (void)ldc; (void)ep;
    (void)work;
}

#endif
