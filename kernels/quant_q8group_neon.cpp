// The NEON level of quant_q8group_sse2.cpp: the same source over SIMDe on ARM,
// into namespace neon (see quant_simd_sse2.h).
#if defined(__aarch64__) || defined(__ARM_NEON)
#define FERRY_NEON 1
#include "kernels/quant_q8group_sse2.cpp"
#endif
