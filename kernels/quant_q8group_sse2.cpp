// SSE2 dot products of llama2.c's Q8_GROUP matrices, in quant_dot.h's
// canonical order: exact integer sum per group (pmaddwd on widened bytes),
// then the portable code's own f32 term. Groups that are not whole 16-byte
// vectors take the portable path.
#if defined(__i386__) || defined(__x86_64__) || defined(FERRY_NEON)
#include "kernels/quant_simd_sse2.h"

namespace ferry::kernels::FERRY_SSE_LEVEL {

namespace {

template <int T>
void tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0) {
    const int64_t G = w.group, ng = w.cols / G;
    const int8_t* row = static_cast<const int8_t*>(w.data) + r * w.cols;
    const uint8_t* scales = static_cast<const uint8_t*>(w.data) + w.rows * w.cols + r * ng * 4;
    float acc[T][8] = {};
    for (int64_t b = 0; b < ng; ++b) {
        __m128i s[T];
        for (int t = 0; t < T; ++t) s[t] = _mm_setzero_si128();
        for (int64_t j = b * G; j < (b + 1) * G; j += 16) {
            const __m128i v = load16(row + j);
            for (int t = 0; t < T; ++t) s[t] = _mm_add_epi32(s[t], dot16(v, load16(a.qs + (t0 + t) * a.stride + j)));
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
    if (w.group % 16 != 0) return scalar::quant_rows(TensorType::Q8_GROUP)(out, w, a, r0, r1);
    constexpr int kTokens = 4;
    for (int64_t r = r0; r < r1; ++r)
        for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { tile<tn>(out, w, a, r, t); });
}

}  // namespace

QuantRowsFn q8group_rows(TensorType type) { return type == TensorType::Q8_GROUP ? rows : nullptr; }

}  // namespace ferry::kernels::FERRY_SSE_LEVEL
#endif
