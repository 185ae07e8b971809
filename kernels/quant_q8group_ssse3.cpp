// The SSSE3 level of quant_q8group_sse2.cpp: the same source compiled again with
// -mssse3 into namespace ssse3, where quant_simd_sse2.h's byte dot products
// are pmaddubsw (see there).
#define FERRY_SSSE3 1
#include "kernels/quant_q8group_sse2.cpp"
