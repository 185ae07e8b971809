// AVX2 dot products of the K-quants (Q2_K..Q6_K) with Q8_K activations, in quant_dot.h's canonical order.
//
// Per 256-value super-block: the levels as bytes, 32 at a time, maddubs
// against the activations and madd with the group scales give exact int32
// partial sums; their total (isum) and the min/offset correction from the
// activations' 16-value sums (msum) then make one scalar f32 term, added to
// partial sum b % 8 exactly as the portable code does. Super-blocks are big
// enough that the scalar term costs little. Prefill decodes each block once
// for four tokens (superblock_tile in quant_simd_avx2.h).
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::avx2 {

namespace {

// Each type: byte offsets of its f16 d (and dmin), and `dot`, which for T
// tokens gives isum (and msum) of one super-block in quant_dot.h's terms.
struct Q2_K {
    static constexpr int kBytes = sizeof(BlockQ2_K), kD = 80, kDmin = 82;
    static constexpr bool kMin = true;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, int32_t* isum,
                                 int32_t* msum) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i q = load32(b->qs + 32 * h);
            auto group_pair = [&](__m256i levels, int k) {
                const int g = 8 * h + 2 * k;
                const __m256i sc = scales_2x16(b->scales[g] & 0xF, b->scales[g + 1] & 0xF);
                for (int t = 0; t < T; ++t)
                    acc[t] = _mm256_add_epi32(acc[t], scaled_dot(levels, x[t] + 128 * h + 32 * k, sc));
            };
            group_pair(crumbs<0>(q), 0);
            group_pair(crumbs<2>(q), 1);
            group_pair(crumbs<4>(q), 2);
            group_pair(crumbs<6>(q), 3);
        }
        for (int t = 0; t < T; ++t) {
            isum[t] = hsum_i32(acc[t]);
            int32_t m = 0;
            for (int g = 0; g < 16; ++g) m += (b->scales[g] >> 4) * bsums[t][g];
            msum[t] = m;
        }
    }
};

struct Q3_K {
    static constexpr int kBytes = sizeof(BlockQ3_K), kD = 108, kDmin = -1;
    static constexpr bool kMin = false;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, int32_t* isum,
                                 int32_t*) {
        const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
        int8_t sc[16];
        q3_k_scales(b->scales, sc);
        const __m256i hm = load32(b->hmask);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        // Levels 0..7 (value + 4): two low bits from qs, bit 2 from hmask bit v / 32.
        auto group_pair = [&](__m256i levels, int h, int k) {
            const int g = 8 * h + 2 * k;
            const __m256i s = scales_2x16(sc[g], sc[g + 1]);
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], scaled_dot(levels, x[t] + 128 * h + 32 * k, s));
        };
        const __m256i q0 = load32(b->qs), q1 = load32(b->qs + 32);
        group_pair(_mm256_or_si256(crumbs<0>(q0), bit_to<0, 2>(hm)), 0, 0);
        group_pair(_mm256_or_si256(crumbs<2>(q0), bit_to<1, 2>(hm)), 0, 1);
        group_pair(_mm256_or_si256(crumbs<4>(q0), bit_to<2, 2>(hm)), 0, 2);
        group_pair(_mm256_or_si256(crumbs<6>(q0), bit_to<3, 2>(hm)), 0, 3);
        group_pair(_mm256_or_si256(crumbs<0>(q1), bit_to<4, 2>(hm)), 1, 0);
        group_pair(_mm256_or_si256(crumbs<2>(q1), bit_to<5, 2>(hm)), 1, 1);
        group_pair(_mm256_or_si256(crumbs<4>(q1), bit_to<6, 2>(hm)), 1, 2);
        group_pair(_mm256_or_si256(crumbs<6>(q1), bit_to<7, 2>(hm)), 1, 3);
        for (int t = 0; t < T; ++t) {
            int32_t off = 0;
            for (int g = 0; g < 16; ++g) off += sc[g] * bsums[t][g];
            isum[t] = hsum_i32(acc[t]) - 4 * off;
        }
    }
};

// The 8 scales and mins of a Q4_K/Q5_K block; bsums of 32 values.
FERRY_INLINE void scales_mins(const uint8_t* packed, uint8_t* sc, uint8_t* m) {
    for (int j = 0; j < 8; ++j) scale_min_k4(j, packed, &sc[j], &m[j]);
}
FERRY_INLINE int32_t mins_dot(const uint8_t* m, const int16_t* bsums) {
    int32_t s = 0;
    for (int j = 0; j < 8; ++j) s += m[j] * (bsums[2 * j] + bsums[2 * j + 1]);
    return s;
}

struct Q4_K {
    static constexpr int kBytes = sizeof(BlockQ4_K), kD = 0, kDmin = 2;
    static constexpr bool kMin = true;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, int32_t* isum,
                                 int32_t* msum) {
        const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(blk);
        uint8_t sc[8], m[8];
        scales_mins(b->scales, sc, m);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        const __m256i mask = _mm256_set1_epi8(0x0F);
        for (int c = 0; c < 4; ++c) {
            const __m256i q = load32(b->qs + 32 * c);
            const __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
            const __m256i s_lo = _mm256_set1_epi16(sc[2 * c]), s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(scaled_dot(lo, x[t] + 64 * c, s_lo),
                                                                   scaled_dot(hi, x[t] + 64 * c + 32, s_hi)));
        }
        for (int t = 0; t < T; ++t) {
            isum[t] = hsum_i32(acc[t]);
            msum[t] = mins_dot(m, bsums[t]);
        }
    }
};

struct Q5_K {
    static constexpr int kBytes = sizeof(BlockQ5_K), kD = 0, kDmin = 2;
    static constexpr bool kMin = true;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, int32_t* isum,
                                 int32_t* msum) {
        const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(blk);
        uint8_t sc[8], m[8];
        scales_mins(b->scales, sc, m);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        const __m256i mask = _mm256_set1_epi8(0x0F);
        const __m256i qh = load32(b->qh);
        auto chunk = [&](int c, __m256i high_lo, __m256i high_hi) {
            const __m256i q = load32(b->qs + 32 * c);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q, mask), high_lo);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask), high_hi);
            const __m256i s_lo = _mm256_set1_epi16(sc[2 * c]), s_hi = _mm256_set1_epi16(sc[2 * c + 1]);
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], _mm256_add_epi32(scaled_dot(lo, x[t] + 64 * c, s_lo),
                                                                   scaled_dot(hi, x[t] + 64 * c + 32, s_hi)));
        };
        chunk(0, bit_to<0, 4>(qh), bit_to<1, 4>(qh));
        chunk(1, bit_to<2, 4>(qh), bit_to<3, 4>(qh));
        chunk(2, bit_to<4, 4>(qh), bit_to<5, 4>(qh));
        chunk(3, bit_to<6, 4>(qh), bit_to<7, 4>(qh));
        for (int t = 0; t < T; ++t) {
            isum[t] = hsum_i32(acc[t]);
            msum[t] = mins_dot(m, bsums[t]);
        }
    }
};

struct Q6_K {
    static constexpr int kBytes = sizeof(BlockQ6_K), kD = 208, kDmin = -1;
    static constexpr bool kMin = false;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, int32_t* isum,
                                 int32_t*) {
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
        __m256i acc[T];
        for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_si256();
        const __m256i mask = _mm256_set1_epi8(0x0F);
        // Levels 0..63 (value + 32): low nibbles from ql, two high bits from qh.
        auto group_pair = [&](__m256i levels, int h, int k) {
            const int g = 8 * h + 2 * k;
            const __m256i s = scales_2x16(b->scales[g], b->scales[g + 1]);
            for (int t = 0; t < T; ++t)
                acc[t] = _mm256_add_epi32(acc[t], scaled_dot(levels, x[t] + 128 * h + 32 * k, s));
        };
        for (int h = 0; h < 2; ++h) {
            const __m256i l0 = load32(b->ql + 64 * h), l1 = load32(b->ql + 64 * h + 32);
            const __m256i qh = load32(b->qh + 32 * h);
            const __m256i h0 = _mm256_slli_epi16(crumbs<0>(qh), 4), h1 = _mm256_slli_epi16(crumbs<2>(qh), 4);
            const __m256i h2 = _mm256_slli_epi16(crumbs<4>(qh), 4), h3 = _mm256_slli_epi16(crumbs<6>(qh), 4);
            group_pair(_mm256_or_si256(_mm256_and_si256(l0, mask), h0), h, 0);
            group_pair(_mm256_or_si256(_mm256_and_si256(l1, mask), h1), h, 1);
            group_pair(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask), h2), h, 2);
            group_pair(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask), h3), h, 3);
        }
        for (int t = 0; t < T; ++t) {
            int32_t off = 0;
            for (int g = 0; g < 16; ++g) off += b->scales[g] * bsums[t][g];
            isum[t] = hsum_i32(acc[t]) - 32 * off;
        }
    }
};

}  // namespace

QuantRowsFn kquant_rows(TensorType type) {
    switch (type) {
        case TensorType::Q2_K: return superblock_rows<Q2_K>;
        case TensorType::Q3_K: return superblock_rows<Q3_K>;
        case TensorType::Q4_K: return superblock_rows<Q4_K>;
        case TensorType::Q5_K: return superblock_rows<Q5_K>;
        case TensorType::Q6_K: return superblock_rows<Q6_K>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::avx2
#endif
