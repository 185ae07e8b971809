// AVX2 dot products of the ternary types TQ1_0 and TQ2_0 with Q8_K
// activations, in quant_dot.h's canonical order (the super-block scheme of
// quant_kquants_avx2.cpp: exact integer sums, one scalar term per block);
// re-included as the VNNI levels' (quant_simd_avx2.h).
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::FERRY_AVX_LEVEL {

namespace {

// Ternary: levels 0..2 (value + 1), no group scales.

struct TQ2_0 {
    static constexpr int kTokens = 2;
    static constexpr int kBytes = sizeof(BlockTQ2_0), kD = 64, kDmin = -1;
    static constexpr bool kMin = false;
    static constexpr int kOffset = 1;  // levels are value + 1
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(blk);
        // Levels <= 2: all eight maddubs results summed stay far inside int16.
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load32(b->qs + 32 * h);
            const __m256i l0 = crumbs<0>(q), l1 = crumbs<2>(q), l2 = crumbs<4>(q), l3 = crumbs<6>(q);
            for (int t = 0; t < T; ++t) {
                const int8_t* xt = x[t] + 128 * h;
                if constexpr (kVnni) {
                    acc[t] = dpbusd(dpbusd(acc[t], l0, load32(xt)), l1, load32(xt + 32));
                    acc[t] = dpbusd(dpbusd(acc[t], l2, load32(xt + 64)), l3, load32(xt + 96));
                } else {
                    const __m256i s = _mm256_add_epi16(
                        _mm256_add_epi16(_mm256_maddubs_epi16(l0, load32(xt)), _mm256_maddubs_epi16(l1, load32(xt + 32))),
                        _mm256_add_epi16(_mm256_maddubs_epi16(l2, load32(xt + 64)), _mm256_maddubs_epi16(l3, load32(xt + 96))));
                    acc[t] = _mm256_add_epi16(acc[t], s);
                }
            }
        }
        for (int t = 0; t < T; ++t) part[t] = acc_sums(acc[t]);
    }
};

// TQ1_0: a byte q holds 5 trits as the fixed-point fraction q / 256 of a
// base-3 number, most significant first. Digit k is floor(3 * q_k / 256)
// with q_k = q * 3^k mod 256 (q_(k+1) is q_k times 3 in wrapping byte
// arithmetic), so the value digit - 1 is -1 for q_k <= 85, 0 for 86..170 and
// +1 for q_k >= 171: the sign of (q_k -sat 170) - (86 -sat q_k), which
// _mm256_sign_epi8 applies to the activations directly (|x| <= 127, so x * value is exact).
FERRY_INLINE __m256i times3(__m256i q) { return _mm256_add_epi8(q, _mm256_add_epi8(q, q)); }
FERRY_INLINE __m256i times_trit(__m256i x, __m256i q) {
    const __m256i up = _mm256_subs_epu8(q, _mm256_set1_epi8(static_cast<char>(170)));
    const __m256i down = _mm256_subs_epu8(_mm256_set1_epi8(86), q);
    return _mm256_sign_epi8(x, _mm256_sub_epi8(up, down));
}

struct TQ1_0 {
    static constexpr int kTokens = 4;
    static constexpr int kBytes = sizeof(BlockTQ1_0), kD = 52, kDmin = -1;
    static constexpr bool kMin = false;
    static constexpr int kOffset = 0;  // the signs give x * value itself
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockTQ1_0* b = reinterpret_cast<const BlockTQ1_0*>(blk);
        // |x * value| <= 127: eight pair sums stay far inside int16.
        const __m256i ones = _mm256_set1_epi8(1);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        auto add = [&](__m256i q, int v0) {
            for (int t = 0; t < T; ++t) {
                const __m256i xv = times_trit(load32(x[t] + v0), q);
                if constexpr (kVnni) acc[t] = dpbusd(acc[t], ones, xv);
                else acc[t] = _mm256_add_epi16(acc[t], _mm256_maddubs_epi16(ones, xv));
            }
        };
        // qs[0..31]: digit k of byte m is value 32k + m.
        __m256i q = load32(b->qs);
        add(q, 0);
        q = times3(q);
        add(q, 32);
        q = times3(q);
        add(q, 64);
        q = times3(q);
        add(q, 96);
        q = times3(q);
        add(q, 128);
        // qs[32..47]: digit k of byte m is value 160 + 16k + m; with the high
        // lane one step ahead, one register gives digits (0, 1), then (2, 3).
        const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 32));
        __m256i v = _mm256_set_m128i(_mm_add_epi8(q16, _mm_add_epi8(q16, q16)), q16);
        add(v, 160);
        v = times3(times3(v));
        add(v, 192);
        // Digit 4 of qs[32..47] (values 224..239) beside qh, whose byte m
        // holds values 240 + 4k + m: dword k of the high lane is qh * 3^k.
        v = times3(times3(v));
        uint32_t qh;
        std::memcpy(&qh, b->qh, 4);
        const __m128i h1 = _mm_set1_epi32(static_cast<int>(qh));
        const __m128i h3 = _mm_add_epi8(h1, _mm_add_epi8(h1, h1));
        const __m128i h9 = _mm_add_epi8(h3, _mm_add_epi8(h3, h3));
        const __m128i h27 = _mm_add_epi8(h9, _mm_add_epi8(h9, h9));
        const __m128i h = _mm_blend_epi32(_mm_blend_epi32(h1, h3, 0x2), _mm_blend_epi32(h9, h27, 0x8), 0xC);
        add(_mm256_inserti128_si256(v, h, 1), 224);
        for (int t = 0; t < T; ++t) part[t] = acc_sums(acc[t]);
    }
};

}  // namespace

QuantRowsFn ternary_rows(TensorType type) {
    switch (type) {
        case TensorType::TQ1_0: return superblock_rows<TQ1_0>;
        case TensorType::TQ2_0: return superblock_rows<TQ2_0>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::FERRY_AVX_LEVEL
#endif
