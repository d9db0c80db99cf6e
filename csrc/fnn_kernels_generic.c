/* fnn_kernels_generic.c - portable instantiation of the blocked GEMM
 * (algorithm, determinism and epilogues: see fnn_kernels_tmpl.h), and
 * fnn_kgemm_work_bytes (the maximum over all variants).
 *
 * No instruction-set pragma: this runs on any CPU the compiler targets.
 * With GCC/clang the "vector" is a 16-byte generic vector (vector_size
 * extension: SSE2 on x86-64, NEON on AArch64), micro-tile MR x NR = 6 x 8
 * floats (6 x 4 doubles) = 12 vector accumulators, which fits the 16 xmm
 * registers of baseline x86-64.  Other compilers get plain scalars (VL = 1,
 * 4 x 8 tile).  a*b+c is written as a multiply and an add; whether the
 * compiler contracts it or not, it does so identically for every tile, so
 * the determinism contract holds.  Masked loads/stores are lane loops.
 * Cache blocking as in the SIMD variants: KC = 256 (B micro-panel 8 KiB in
 * L1), MC = 258 (256) rows of A in L2, packed B block KC x NC = 256 KiB
 * (floats).  About 40 GFLOP/s float32 on Zen 5 with SSE2 (no FMA).
 */
#include <stddef.h>
#include <string.h>
#include <math.h>
#include "fnn_kernels.h"
#include "fnn_activations.h"

#define FNN_KFUNC

#if defined(__GNUC__) || defined(__clang__)

typedef float fnn_gv_s __attribute__((vector_size(16)));
typedef double fnn_gv_d __attribute__((vector_size(16)));
typedef int fnn_gm_s __attribute__((vector_size(16)));
typedef long long fnn_gm_d __attribute__((vector_size(16)));

/* One set of helpers per type: load/store (memcpy: no alignment assumed),
 * first-n-lanes load/store, broadcast, and lane-wise select. */
#define FNN_GV_HELPERS(T, S)                                                     \
static inline fnn_gv_##S gv_load_##S(const T *p)                                        \
{ fnn_gv_##S v; memcpy(&v, p, sizeof v); return v; }                                   \
static inline void gv_store_##S(T *p, fnn_gv_##S v) { memcpy(p, &v, sizeof v); }       \
static inline fnn_gv_##S gv_loadn_##S(const T *p, int n)                                \
{ fnn_gv_##S v = gv_set1_##S((T)0); for (int l = 0; l < n; l++) v[l] = p[l]; return v; } \
static inline void gv_storen_##S(T *p, fnn_gv_##S v, int n)                             \
{ for (int l = 0; l < n; l++) p[l] = v[l]; }                                           \
static inline fnn_gv_##S gv_sel_##S(fnn_gm_##S m, fnn_gv_##S a, fnn_gv_##S b)          \
{ return (fnn_gv_##S)(((fnn_gm_##S)a & m) | ((fnn_gm_##S)b & ~m)); }
static inline fnn_gv_s gv_set1_s(float x) { return (fnn_gv_s){x, x, x, x}; }
static inline fnn_gv_d gv_set1_d(double x) { return (fnn_gv_d){x, x}; }
FNN_GV_HELPERS(float, s)
FNN_GV_HELPERS(double, d)

/* Each instantiation defines all its parameters (fnn_kernels_tmpl.h) and
 * fnn_kernels_undef.h clears them for the next. */

/* ---- float ---- */
#define T float
#define KSUFFIX generic_s
#define FACT fnn_act_s
#define FDACT fnn_dact_s
#define V fnn_gv_s
#define VL 4
#define MR 6
#define NV 2
#define KC 256
#define NC 256
#define MC 258
#define MCS 64
#define VZERO() gv_set1_s(0.0f)
#define VSET1(x) gv_set1_s(x)
#define VLOADA(p) gv_load_s(p)
#define VLOADU(p) gv_load_s(p)
#define VSTOREA(p, v) gv_store_s(p, v)
#define VSTOREU(p, v) gv_store_s(p, v)
#define VLOADN(p, n) gv_loadn_s(p, n)
#define VSTOREN(p, v, n) gv_storen_s(p, v, n)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VSELGT(x, a, b) gv_sel_s((x) > gv_set1_s(0.0f), a, b)
#define VSELGE(x, a, b) gv_sel_s((x) >= gv_set1_s(0.0f), a, b)
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

/* ---- double ---- */
#define T double
#define KSUFFIX generic_d
#define FACT fnn_act_d
#define FDACT fnn_dact_d
#define V fnn_gv_d
#define VL 2
#define MR 6
#define NV 2
#define KC 256
#define NC 128
#define MC 258
#define MCS 64
#define VZERO() gv_set1_d(0.0)
#define VSET1(x) gv_set1_d(x)
#define VLOADA(p) gv_load_d(p)
#define VLOADU(p) gv_load_d(p)
#define VSTOREA(p, v) gv_store_d(p, v)
#define VSTOREU(p, v) gv_store_d(p, v)
#define VLOADN(p, n) gv_loadn_d(p, n)
#define VSTOREN(p, v, n) gv_storen_d(p, v, n)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VSELGT(x, a, b) gv_sel_d((x) > gv_set1_d(0.0), a, b)
#define VSELGE(x, a, b) gv_sel_d((x) >= gv_set1_d(0.0), a, b)
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

#else /* any other C compiler: scalars */

/* ---- float ---- */
#define T float
#define KSUFFIX generic_s
#define FACT fnn_act_s
#define FDACT fnn_dact_s
#define V float
#define VL 1
#define MR 4
#define NV 8
#define KC 256
#define NC 256
#define MC 256
#define MCS 64
#define VZERO() ((T)0)
#define VSET1(x) ((T)(x))
#define VLOADA(p) (*(p))
#define VLOADU(p) (*(p))
#define VSTOREA(p, v) (*(p) = (v))
#define VSTOREU(p, v) (*(p) = (v))
#define VLOADN(p, n) ((n) ? *(p) : (T)0)
#define VSTOREN(p, v, n) do { if (n) *(p) = (v); } while (0)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VSELGT(x, a, b) ((x) > 0 ? (a) : (b))
#define VSELGE(x, a, b) ((x) >= 0 ? (a) : (b))
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

/* ---- double ---- */
#define T double
#define KSUFFIX generic_d
#define FACT fnn_act_d
#define FDACT fnn_dact_d
#define V double
#define VL 1
#define MR 4
#define NV 8
#define KC 256
#define NC 128
#define MC 256
#define MCS 64
#define VZERO() ((T)0)
#define VSET1(x) ((T)(x))
#define VLOADA(p) (*(p))
#define VLOADU(p) (*(p))
#define VSTOREA(p, v) (*(p) = (v))
#define VSTOREU(p, v) (*(p) = (v))
#define VLOADN(p, n) ((n) ? *(p) : (T)0)
#define VSTOREN(p, v, n) do { if (n) *(p) = (v); } while (0)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VSELGT(x, a, b) ((x) > 0 ? (a) : (b))
#define VSELGE(x, a, b) ((x) >= 0 ? (a) : (b))
#include "fnn_kernels_tmpl.h"
#include "fnn_kernels_undef.h"

#endif

size_t fnn_kgemm_generic_work_bytes(size_t elem_size)
{
    return elem_size == sizeof(float) ? work_bytes_generic_s : work_bytes_generic_d;
}

size_t fnn_kgemm_work_bytes(size_t elem_size)
{
    size_t a = fnn_kgemm_generic_work_bytes(elem_size);
    size_t b = fnn_kgemm_avx2_work_bytes(elem_size);
    size_t c = fnn_kgemm_avx512_work_bytes(elem_size);
    if (b > a) a = b;
    if (c > a) a = c;
    return a;
}
