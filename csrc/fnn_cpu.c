/* fnn_cpu.c - runtime detection of the instruction sets the kernels use.
 *
 * A feature is usable only if the CPU has it (cpuid) AND the OS saves the
 * matching register state on context switches (OSXSAVE + xgetbv: XCR0 bits
 * 1-2 for xmm/ymm, 5-7 for the AVX-512 opmask and zmm state).  Computed once;
 * the race on the cache is benign (every thread computes the same value).
 * Non-x86 targets report nothing.
 */
#include "fnn_kernels.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define FNN_X86_GNU 1
#elif defined(_M_X64) || defined(_M_IX86)
#include <intrin.h>
#define FNN_X86_MSVC 1
#endif

#if defined(FNN_X86_GNU) || defined(FNN_X86_MSVC)
static void fnn_cpuid(unsigned leaf, unsigned sub, unsigned r[4])
{
#ifdef FNN_X86_GNU
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#else
    int t[4];
    __cpuidex(t, (int)leaf, (int)sub);
    r[0] = (unsigned)t[0]; r[1] = (unsigned)t[1]; r[2] = (unsigned)t[2]; r[3] = (unsigned)t[3];
#endif
}

static unsigned long long fnn_xgetbv0(void)
{
#ifdef FNN_X86_GNU
    unsigned lo, hi;
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0)); /* xgetbv */
    return ((unsigned long long)hi << 32) | lo;
#else
    return _xgetbv(0);
#endif
}

/* bit 0: avx2+fma usable, bit 1: avx512 f/vl/bw/dq usable, bit 2: the CPU has
 * the AMX tile unit with bfloat16 (amx-tile, amx-bf16); Linux enables its
 * state per process on request (fnn_amx.c asks) */
static int fnn_cpu_detect(void)
{
    unsigned r[4], r7[4];
    int flags = 0;
    fnn_cpuid(0, 0, r);
    if (r[0] < 7) return 0;
    fnn_cpuid(1, 0, r);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    if (!(osxsave && avx)) return 0;
    unsigned long long xcr0 = fnn_xgetbv0();
    int ymm_os = (xcr0 & 0x6) == 0x6;
    int zmm_os = (xcr0 & 0xe6) == 0xe6;
    fnn_cpuid(7, 0, r7);
    int avx2 = (r7[1] >> 5) & 1;
    int f = (r7[1] >> 16) & 1, dq = (r7[1] >> 17) & 1, bw = (r7[1] >> 30) & 1, vl = (r7[1] >> 31) & 1;
    if (ymm_os && avx2 && fma) flags |= 1;
    if (ymm_os && zmm_os && avx2 && fma && f && dq && bw && vl) flags |= 2;
    if (((r7[3] >> 24) & 1) && ((r7[3] >> 22) & 1)) flags |= 4;
    return flags;
}

static int fnn_cpu_flags = -1;

static int fnn_cpu_get(void)
{
    int f = fnn_cpu_flags;
    if (f < 0) fnn_cpu_flags = f = fnn_cpu_detect();
    return f;
}

int fnn_cpu_has_avx2_fma(void) { return (fnn_cpu_get() & 1) != 0; }
int fnn_cpu_has_avx512(void) { return (fnn_cpu_get() & 2) != 0; }
int fnn_cpu_has_amx(void) { return (fnn_cpu_get() & 4) != 0; }

#else
int fnn_cpu_has_avx2_fma(void) { return 0; }
int fnn_cpu_has_avx512(void) { return 0; }
int fnn_cpu_has_amx(void) { return 0; }
#endif
