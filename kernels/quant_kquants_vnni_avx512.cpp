// The avx512 level's decode and small-batch kernels for the K-quants:
// quant_kquants_avx2.cpp compiled again with the level's flags into namespace
// avx512, where each type dots 64 values per 512-bit vpdpbusd.
#if defined(__x86_64__)
#define FERRY_AVX512_VNNI 1
#include "kernels/quant_kquants_avx2.cpp"
#endif
