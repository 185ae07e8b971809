// AVX2 matrix products (compiled with -mavx2 -mf16c; chosen at run time).
// Separate multiply and add, never FMA: the result must equal the scalar and
// SSE2 levels bit for bit (kernels.h). F16C widens halves exactly, as the
// scalar fp16_to_fp32 does. Nothing here is inline-shared with portable code,
// so no AVX instruction can leak into a path an older CPU runs.
#if defined(__i386__) || defined(__x86_64__)
#include <immintrin.h>

#include "kernels/dense_levels.h"
#include "kernels/matmul_tiles.h"

namespace ferry::kernels::avx2 {

namespace {

struct Avx2 {
    using V = __m256;
    static constexpr int kPrefillRows = 3;
    static constexpr int kPrefillTokens = 3;
    static V zero() { return _mm256_setzero_ps(); }
    static V add(V a, V b) { return _mm256_add_ps(a, b); }
    static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
    static V load(const float* p) { return _mm256_loadu_ps(p); }
    static void prefetch(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0); }
    // ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
    static float reduce(V v) {
        const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
        return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
    }
};

struct F32 {
    using W = float;
    static __m256 load(const float* p) { return _mm256_loadu_ps(p); }
    static void widen_tail(const float* p, int n, float* out) {
        for (int i = 0; i < n; ++i) out[i] = p[i];
    }
};

template <class Widen8>
void widen_tail_u16(const uint16_t* p, int n, float* out) {
    alignas(16) uint16_t padded[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; ++i) padded[i] = p[i];
    _mm256_storeu_ps(out, Widen8::load(padded));
}

struct F16 {
    using W = uint16_t;
    static __m256 load(const uint16_t* p) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { widen_tail_u16<F16>(p, n, out); }
};

struct BF16 {
    using W = uint16_t;
    static __m256 load(const uint16_t* p) {
        const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { widen_tail_u16<BF16>(p, n, out); }
};

}  // namespace

void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    tiles::matmul_rows<Avx2, F32>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    tiles::matmul_rows<Avx2, F16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    tiles::matmul_rows<Avx2, BF16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

float read_bandwidth_probe(const float* data, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_loadu_ps(data + i));
        s1 = _mm256_add_ps(s1, _mm256_loadu_ps(data + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_loadu_ps(data + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_loadu_ps(data + i + 24));
    }
    float sum = Avx2::reduce(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; ++i) sum += data[i];
    return sum;
}

}  // namespace ferry::kernels::avx2
#endif
