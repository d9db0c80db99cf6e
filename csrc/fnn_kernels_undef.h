/* fnn_kernels_undef.h - ends one instantiation of fnn_kernels_tmpl.h: undefines
 * every parameter the instantiating file defined for it (the list at the top
 * of fnn_kernels_tmpl.h), so that the next instantiation starts clean.
 * Included right after each #include "fnn_kernels_tmpl.h" (no include guard
 * on purpose).  The file-wide options (FNN_KFUNC, KPREFETCH, KPREFETCH_L2,
 * VFMA_FUSED, DIRECT_B_MAX_M) stay defined: they hold for every type.
 */
#undef T
#undef KSUFFIX
#undef FACT
#undef FDACT
#undef V
#undef VL
#undef MR
#undef NV
#undef KC
#undef NC
#undef MC
#undef MCS
#undef KMASK
#undef VZERO
#undef VSET1
#undef VLOADA
#undef VLOADU
#undef VSTOREA
#undef VSTOREU
#undef VLOADN
#undef VSTOREN
#undef VFMA
#undef VADD
#undef VSUB
#undef VMUL
#undef VSELGT
#undef VSELGE
#undef VMAX
#undef VMIN
#undef VROUND
#undef VDIV
#undef VLDEXP
#undef VTRANSPOSE
#undef VTRANSPOSE_A
