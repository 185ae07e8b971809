// The AVX2 level of the dense kernels (compiled with -mavx2 -mf16c; chosen at
// run time): the instruction set and weight types kernels/simd_kernels.h's
// templates are instantiated with. Separate multiply and add, never FMA, so
// the results equal the scalar and SSE2 levels bit for bit (kernels.h). F16C
// widens halves exactly, as the scalar fp16_to_fp32 does.
#if defined(__i386__) || defined(__x86_64__)
#include <immintrin.h>

#include "kernels/dense_levels.h"
#include "kernels/reduce_avx.h"
#include "kernels/simd_kernels.h"

namespace ferry::kernels::avx2 {

namespace {

struct Avx2 {
    using V = __m256;
    static constexpr int kPrefillRows = 3;
    static constexpr int kPrefillTokens = 3;
    static constexpr int kAccumulators = 12;
    static constexpr bool kGroupedHeads = true;
    static V zero() { return _mm256_setzero_ps(); }
    static V set1(float f) { return _mm256_set1_ps(f); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V div(V a, V b) { return _mm256_div_ps(a, b); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
    static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    static float reduce(V v) { return reduce_lanes8(v); }
    static void transpose8(V r[8]) {
        V t[8], u[8];
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
        }
        for (int i = 0; i < 8; i += 4) {
            u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
            u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
            u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
            u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
        }
        for (int i = 0; i < 4; ++i) {
            r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
            r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
        }
    }
};

using F32 = simd::F32Weights<Avx2>;

struct F16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static __m256 load(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Avx2, F16>(p, n, out); }
};

struct BF16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static __m256 load(const uint16_t* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Avx2, BF16>(p, n, out); }
};

}  // namespace

FERRY_SIMD_LEVEL_FUNCTIONS(Avx2, F32, F16, BF16)

}  // namespace ferry::kernels::avx2
#endif
