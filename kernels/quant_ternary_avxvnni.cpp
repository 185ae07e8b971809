// The avxvnni level's kernels for TQ1_0 and TQ2_0: quant_ternary_avx2.cpp compiled
// again with -mavxvnni into namespace avxvnni, where quant_simd_avx2.h's byte
// dot products are the VEX vpdpbusd (Alder Lake, Zen 5 and later).
#if defined(__x86_64__)
#define FERRY_AVXVNNI 1
#include "kernels/quant_ternary_avx2.cpp"
#endif
