// The dot-product level of quant_q8group_sse2.cpp on aarch64: the NEON level
// with SDOT byte dot products, into namespace dotprod (see quant_simd_sse2.h).
#if defined(__aarch64__)
#define FERRY_NEON 1
#define FERRY_DOTPROD 1
#include "kernels/quant_q8group_sse2.cpp"
#endif
