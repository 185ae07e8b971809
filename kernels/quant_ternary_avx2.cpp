// AVX2 dot products of the ternary types TQ1_0 and TQ2_0 with Q8_K
// activations, in quant_dot.h's canonical order (the super-block scheme of
// quant_kquants_avx2.cpp: exact integer sums, one scalar term per block).
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::avx2 {

namespace {

// Ternary: levels 0..2 (value + 1), no group scales.

struct TQ2_0 {
    static constexpr int kBytes = sizeof(BlockTQ2_0), kD = 64, kDmin = -1;
    static constexpr bool kMin = false;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(blk);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load32(b->qs + 32 * h);
            const __m256i l0 = crumbs<0>(q), l1 = crumbs<2>(q), l2 = crumbs<4>(q), l3 = crumbs<6>(q);
            for (int t = 0; t < T; ++t) {
                const int8_t* xt = x[t] + 128 * h;
                // Levels <= 2: four maddubs pair sums stay far inside int16.
                const __m256i s = _mm256_add_epi16(
                    _mm256_add_epi16(_mm256_maddubs_epi16(l0, load32(xt)), _mm256_maddubs_epi16(l1, load32(xt + 32))),
                    _mm256_add_epi16(_mm256_maddubs_epi16(l2, load32(xt + 64)), _mm256_maddubs_epi16(l3, load32(xt + 96))));
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(s, _mm256_set1_epi16(1)));
            }
        }
        // Levels are value + 1: take the sum of the activations off.
        for (int t = 0; t < T; ++t) part[t] = _mm256_sub_epi32(acc[t], _mm256_madd_epi16(load32(bsums[t]), _mm256_set1_epi16(1)));
    }
};

// TQ1_0 trits: digit k of byte q is ((q * 3^k mod 256) * 3) >> 8.
template <int k>
FERRY_INLINE __m256i trits(__m256i q) {
    constexpr int pow3[5] = {1, 3, 9, 27, 81};
    const __m256i low = _mm256_set1_epi16(0x00FF);
    // Bytes multiplied in 16-bit lanes, even and odd bytes apart (no byte multiply in AVX2).
    const __m256i even = _mm256_and_si256(_mm256_mullo_epi16(_mm256_and_si256(q, low), _mm256_set1_epi16(pow3[k])), low);
    const __m256i odd = _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(q, 8), _mm256_set1_epi16(pow3[k])), low);
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i te = _mm256_srli_epi16(_mm256_mullo_epi16(even, three), 8);
    const __m256i to = _mm256_srli_epi16(_mm256_mullo_epi16(odd, three), 8);
    return _mm256_or_si256(te, _mm256_slli_epi16(to, 8));
}

struct TQ1_0 {
    static constexpr int kBytes = sizeof(BlockTQ1_0), kD = 52, kDmin = -1;
    static constexpr bool kMin = false;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockTQ1_0* b = reinterpret_cast<const BlockTQ1_0*>(blk);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        auto add = [&](__m256i levels, int v0) {
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], _mm256_madd_epi16(_mm256_maddubs_epi16(levels, load32(x[t] + v0)),
                                                                    _mm256_set1_epi16(1)));
        };
        // qs[0..31]: digit k of byte m is value m + 32k.
        const __m256i q32 = load32(b->qs);
        add(trits<0>(q32), 0);
        add(trits<1>(q32), 32);
        add(trits<2>(q32), 64);
        add(trits<3>(q32), 96);
        add(trits<4>(q32), 128);
        // qs[32..47] twice: digit k of byte m is value 160 + m + 16k; digits (0,1) and (2,3) fill 32 values.
        const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 32));
        const __m256i q16x2 = _mm256_set_m128i(q16, q16);
        add(_mm256_blend_epi32(trits<0>(q16x2), trits<1>(q16x2), 0xF0), 160);
        add(_mm256_blend_epi32(trits<2>(q16x2), trits<3>(q16x2), 0xF0), 192);
        // Digit 4 of qs[32..47] (values 224..239), then qh: digit k of byte m is value 240 + m + 4k.
        uint32_t qh;
        std::memcpy(&qh, b->qh, 4);
        const __m128i h = _mm_set1_epi32(static_cast<int>(qh));
        const __m256i last = _mm256_set_m128i(h, q16);
        const __m256i d4 = trits<4>(last);
        const __m256i hk = _mm256_blend_epi32(_mm256_blend_epi32(trits<0>(last), trits<1>(last), 0x20),
                                              _mm256_blend_epi32(trits<2>(last), trits<3>(last), 0x80), 0xC0);
        add(_mm256_blend_epi32(d4, hk, 0xF0), 224);
        // Levels are value + 1: take the sum of the activations off.
        for (int t = 0; t < T; ++t) part[t] = _mm256_sub_epi32(acc[t], _mm256_madd_epi16(load32(bsums[t]), _mm256_set1_epi16(1)));
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

}  // namespace ferry::kernels::avx2
#endif
