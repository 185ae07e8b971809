// AVX2 dot products of llama2.c's Q8_GROUP matrices (int8 values, one f32
// scale per group) with activations quantized in the same groups, in
// quant_dot.h's canonical order: exact integer sum per group, then the
// portable code's own f32 term. Groups that are not whole 32-byte vectors
// (a model exported with an odd group size) take the portable path.
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>

#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::FERRY_AVX_LEVEL {

namespace {

template <int T>
void tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0, const WeightPrefetch& pf) {
    const int64_t G = w.group, ng = w.cols / G;
    const int8_t* row = static_cast<const int8_t*>(w.data) + r * w.cols;
    const uint8_t* scales = static_cast<const uint8_t*>(w.data) + w.rows * w.cols + r * ng * 4;
    float acc[T][8] = {};
    for (int64_t b = 0; b < ng; ++b) {
        __m256i s[T];
        for (int t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
        for (int64_t j = b * G; j < (b + 1) * G; j += 32) {
            if (j % 64 == 0) pf.ahead(reinterpret_cast<const uint8_t*>(row + j), 64);
            const __m256i v = load32(row + j);
            const __m256i mag = _mm256_sign_epi8(v, v);
            for (int t = 0; t < T; ++t)
                s[t] = dpbusd(s[t], mag, _mm256_sign_epi8(load32(a.qs + (t0 + t) * a.stride + j), v));
        }
        float dw;
        std::memcpy(&dw, scales + b * 4, 4);
        for (int t = 0; t < T; ++t) {
            const float term = block_term(dw, a.d[(t0 + t) * ng + b], hsum_i32(s[t]));
            acc[t][b % 8] += term;
        }
    }
    for (int t = 0; t < T; ++t) out[(t0 + t) * w.rows + r] = reduce_acc8(acc[t]);
}

void rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    if (w.group % 32 != 0) return scalar::quant_rows(TensorType::Q8_GROUP)(out, w, a, r0, r1);
    constexpr int kTokens = 4;
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    const WeightPrefetch pf(base + r0 * w.cols, base + r1 * w.cols);
    for (int64_t r = r0; r < r1; ++r)
        for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { tile<tn>(out, w, a, r, t, pf); });
}

}  // namespace

QuantRowsFn q8group_rows(TensorType type) { return type == TensorType::Q8_GROUP ? rows : nullptr; }

}  // namespace ferry::kernels::FERRY_AVX_LEVEL
#endif
