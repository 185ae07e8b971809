// The avx512 level's decode and small-batch kernels for Q8_GROUP:
// quant_q8group_avx2.cpp compiled again with the level's flags into namespace avx512, where
// quant_simd_avx2.h's byte dot products are the EVEX vpdpbusd (AVX512-VNNI on 256-bit registers).
#if defined(__x86_64__)
#define FERRY_AVX512_VNNI 1
#include "kernels/quant_q8group_avx2.cpp"
#endif
