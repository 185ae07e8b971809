// The avxvnni level's kernels for the 32-value block types: quant_legacy_avx2.cpp compiled
// again with -mavxvnni into namespace avxvnni, where quant_simd_avx2.h's byte
// dot products are the VEX vpdpbusd (Alder Lake, Zen 5 and later).
#if defined(__x86_64__)
#define FERRY_AVXVNNI 1
#include "kernels/quant_legacy_avx2.cpp"
#endif
