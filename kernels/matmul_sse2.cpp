// SSE2 matrix products (compiled with -msse2, and -mfpmath=sse on 32-bit
// builds; chosen at run time). An 8-lane accumulator is a pair of 4-lane
// registers, so the order is the canonical one of kernels.h and the result
// equals the scalar and AVX2 levels bit for bit. Halves are widened with
// integer operations that reproduce fp16_to_fp32 exactly (no F16C here).
// Nothing here is inline-shared with portable code, so no SSE instruction can
// leak into the path a Pentium II runs.
#if defined(__i386__) || defined(__x86_64__)
#include <emmintrin.h>

#include "kernels/dense_levels.h"
#include "kernels/matmul_tiles.h"

namespace ferry::kernels::sse2 {

namespace {

struct V8 {
    __m128 lo, hi;  // lanes 0..3 and 4..7
};

struct Sse2 {
    using V = V8;
#if defined(__x86_64__)
    static constexpr int kPrefillRows = 2;
    static constexpr int kPrefillTokens = 2;
#else  // 8 xmm registers
    static constexpr int kPrefillRows = 2;
    static constexpr int kPrefillTokens = 1;
#endif
    static V zero() { return {_mm_setzero_ps(), _mm_setzero_ps()}; }
    static V add(V a, V b) { return {_mm_add_ps(a.lo, b.lo), _mm_add_ps(a.hi, b.hi)}; }
    static V mul(V a, V b) { return {_mm_mul_ps(a.lo, b.lo), _mm_mul_ps(a.hi, b.hi)}; }
    static V load(const float* p) { return {_mm_loadu_ps(p), _mm_loadu_ps(p + 4)}; }
    static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    // ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
    static float reduce(V v) {
        const __m128 t = _mm_add_ps(v.lo, v.hi);
        const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
    }
};

struct F32 {
    using W = float;
    static V8 load(const float* p) { return Sse2::load(p); }
    static void widen_tail(const float* p, int n, float* out) {
        for (int i = 0; i < n; ++i) out[i] = p[i];
    }
};

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

template <class Widen8>
void widen_tail_u16(const uint16_t* p, int n, float* out) {
    alignas(16) uint16_t padded[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; ++i) padded[i] = p[i];
    const V8 v = Widen8::load(padded);
    _mm_storeu_ps(out, v.lo);
    _mm_storeu_ps(out + 4, v.hi);
}

struct F16 {
    using W = uint16_t;
    static V8 load(const uint16_t* p) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i zero = _mm_setzero_si128();
        return {half4_to_float(_mm_unpacklo_epi16(zero, h)), half4_to_float(_mm_unpackhi_epi16(zero, h))};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { widen_tail_u16<F16>(p, n, out); }
};

struct BF16 {
    using W = uint16_t;
    static V8 load(const uint16_t* p) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i zero = _mm_setzero_si128();
        return {_mm_castsi128_ps(_mm_unpacklo_epi16(zero, h)), _mm_castsi128_ps(_mm_unpackhi_epi16(zero, h))};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { widen_tail_u16<BF16>(p, n, out); }
};

}  // namespace

void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    tiles::matmul_rows<Sse2, F32>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    tiles::matmul_rows<Sse2, F16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    tiles::matmul_rows<Sse2, BF16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

float read_bandwidth_probe(const float* data, int64_t n) {
    __m128 s0 = _mm_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm_add_ps(s0, _mm_loadu_ps(data + i));
        s1 = _mm_add_ps(s1, _mm_loadu_ps(data + i + 4));
        s2 = _mm_add_ps(s2, _mm_loadu_ps(data + i + 8));
        s3 = _mm_add_ps(s3, _mm_loadu_ps(data + i + 12));
    }
    float sum = Sse2::reduce({_mm_add_ps(s0, s1), _mm_add_ps(s2, s3)});
    for (; i < n; ++i) sum += data[i];
    return sum;
}

}  // namespace ferry::kernels::sse2
#endif
