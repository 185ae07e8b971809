// The canonical 8-lane reduction of kernels.h and quant_dot.h,
// ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7)), on a 256-bit register.
// Include only from files compiled with AVX (*_avx2.cpp, *_avx512.cpp): the
// function has internal linkage, so no AVX instruction can stand in for a
// portable function at link time.
#pragma once
#include <immintrin.h>

namespace ferry::kernels {
namespace {

inline float reduce_lanes8(__m256 v) {
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

}  // namespace
}  // namespace ferry::kernels
