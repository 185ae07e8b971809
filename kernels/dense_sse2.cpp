// The SSE2 level of the dense kernels (compiled with -msse2, and -mfpmath=sse
// on 32-bit builds; chosen at run time): the instruction set and weight types
// kernels/simd_kernels.h's templates are instantiated with. An 8-lane value is
// a pair of 4-lane registers, so every order is the canonical one of kernels.h
// and the results equal the scalar and AVX2 levels bit for bit. Halves are
// widened with integer operations that reproduce fp16_to_fp32 exactly.
#if defined(__i386__) || defined(__x86_64__)
#include <emmintrin.h>

#include "kernels/dense_levels.h"
#include "kernels/simd_kernels.h"

namespace ferry::kernels::sse2 {

namespace {

struct V8 {
    __m128 lo, hi;  // lanes 0..3 and 4..7
};

struct Sse2 {
    using V = V8;
    // An 8-lane accumulator takes two of the 16 (x86-64) or 8 (i386) xmm registers.
#if defined(__x86_64__)
    static constexpr int kPrefillRows = 2;
    static constexpr int kPrefillTokens = 2;
    static constexpr int kAccumulators = 4;
#else
    static constexpr int kPrefillRows = 2;
    static constexpr int kPrefillTokens = 1;
    static constexpr int kAccumulators = 2;
#endif
    static constexpr bool kGroupedHeads = false;
    static V zero() { return {_mm_setzero_ps(), _mm_setzero_ps()}; }
    static V set1(float f) { return {_mm_set1_ps(f), _mm_set1_ps(f)}; }
    static V add(V a, V b) { return {_mm_add_ps(a.lo, b.lo), _mm_add_ps(a.hi, b.hi)}; }
    static V mul(V a, V b) { return {_mm_mul_ps(a.lo, b.lo), _mm_mul_ps(a.hi, b.hi)}; }
    static V div(V a, V b) { return {_mm_div_ps(a.lo, b.lo), _mm_div_ps(a.hi, b.hi)}; }
    static V load(const float* p) { return {_mm_loadu_ps(p), _mm_loadu_ps(p + 4)}; }
    static void store(float* p, V v) {
        _mm_storeu_ps(p, v.lo);
        _mm_storeu_ps(p + 4, v.hi);
    }
    static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    // ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
    static float reduce(V v) {
        const __m128 t = _mm_add_ps(v.lo, v.hi);
        const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
    }
    // Four 4x4 transposes: rows 0-3 and 4-7, low and high halves.
    static void transpose8(V r[8]) {
        __m128 a0 = r[0].lo, a1 = r[1].lo, a2 = r[2].lo, a3 = r[3].lo;
        __m128 b0 = r[0].hi, b1 = r[1].hi, b2 = r[2].hi, b3 = r[3].hi;
        __m128 c0 = r[4].lo, c1 = r[5].lo, c2 = r[6].lo, c3 = r[7].lo;
        __m128 d0 = r[4].hi, d1 = r[5].hi, d2 = r[6].hi, d3 = r[7].hi;
        _MM_TRANSPOSE4_PS(a0, a1, a2, a3);
        _MM_TRANSPOSE4_PS(b0, b1, b2, b3);
        _MM_TRANSPOSE4_PS(c0, c1, c2, c3);
        _MM_TRANSPOSE4_PS(d0, d1, d2, d3);
        r[0] = {a0, c0}, r[1] = {a1, c1}, r[2] = {a2, c2}, r[3] = {a3, c3};
        r[4] = {b0, d0}, r[5] = {b1, d1}, r[6] = {b2, d2}, r[7] = {b3, d3};
    }
};

using F32 = simd::F32Weights<Sse2>;

// fp16_to_fp32 (kernels/fp16.h) on four lanes; w holds each half in its top 16 bits.
__m128 half4_to_float(__m128i w) {
    const __m128i sign = _mm_and_si128(w, _mm_set1_epi32(static_cast<int>(0x80000000u)));
    const __m128i two_w = _mm_add_epi32(w, w);
    const __m128 normalized = _mm_mul_ps(
        _mm_castsi128_ps(_mm_add_epi32(_mm_srli_epi32(two_w, 4), _mm_set1_epi32(0xE0 << 23))),
        _mm_castsi128_ps(_mm_set1_epi32(0x7800000)));
    const __m128 denormalized = _mm_sub_ps(
        _mm_castsi128_ps(_mm_or_si128(_mm_srli_epi32(two_w, 17), _mm_set1_epi32(126 << 23))), _mm_set1_ps(0.5f));
    // two_w < 2^27 (unsigned) exactly when its top five bits are zero.
    const __m128i is_denormal = _mm_cmpeq_epi32(_mm_srli_epi32(two_w, 27), _mm_setzero_si128());
    const __m128i bits = _mm_or_si128(_mm_and_si128(is_denormal, _mm_castps_si128(denormalized)),
                                      _mm_andnot_si128(is_denormal, _mm_castps_si128(normalized)));
    return _mm_castsi128_ps(_mm_or_si128(sign, bits));
}

struct F16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static V8 load(const uint16_t* p) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i zero = _mm_setzero_si128();
        return {half4_to_float(_mm_unpacklo_epi16(zero, h)), half4_to_float(_mm_unpackhi_epi16(zero, h))};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Sse2, F16>(p, n, out); }
};

struct BF16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static V8 load(const uint16_t* p) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i zero = _mm_setzero_si128();
        return {_mm_castsi128_ps(_mm_unpacklo_epi16(zero, h)), _mm_castsi128_ps(_mm_unpackhi_epi16(zero, h))};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Sse2, BF16>(p, n, out); }
};

}  // namespace

FERRY_SIMD_LEVEL_FUNCTIONS(Sse2, F32, F16, BF16)

}  // namespace ferry::kernels::sse2
#endif
