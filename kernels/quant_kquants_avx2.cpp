// AVX2 dot products of the K-quants (Q2_K..Q6_K) with Q8_K activations, in
// quant_dot.h's canonical order.
//
// Per 256-value super-block: the levels as bytes, 32 at a time, maddubs
// against the activations, then madd with the group scales (byte-shuffled
// from one vector of the block's 16 scales), giving int32 partial sums whose
// total is isum exactly; level offsets (Q3_K's 4, Q6_K's 32) come off as
// scale-weighted sums of the activations' 16-value sums, and the mins
// (Q2_K, Q4_K, Q5_K) are likewise a partial-sum vector for msum. Eight
// super-blocks' vectors are folded and turned into f32 terms together
// (superblock_tile in quant_simd_avx2.h).
//
// Built twice: as the avx2 level, and re-included by
// quant_kquants_vnni_avx512.cpp as the avx512 level's decode and small-batch
// kernels, where every type instead takes 64 levels per 512-bit vpdpbusd
// against contiguous activations and scales the lanes as int32
// (add_scaled_dot64): no per-group shuffle of int16 scales, half the
// multiply-adds.
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::FERRY_AVX_LEVEL {

namespace {

// The activations' 16 16-value sums of one super-block.
FERRY_INLINE __m256i bsums16(const int16_t* bsums) { return load32(bsums); }

// Adds, per token, sum over the 32 values of groups g, g + 1 of scale * level * x.
template <int T, int g>
FERRY_INLINE void add_group_pair(__m256i* acc, __m256i levels, const int8_t* const* x, const GroupScales& sc) {
    const __m256i s = sc.pair<g>();
    for (int t = 0; t < T; ++t) acc[t] = _mm256_add_epi32(acc[t], scaled_dot(levels, x[t] + 16 * g, s));
}

#if defined(FERRY_AVX512_VNNI)
// The avx512 level's K-quant step: 64 levels (bytes) against 64 contiguous
// activations per token, one vpdpbusd, each lane's 4-value sum times its
// group's scale as int32 (scale * level * x summed in another order than
// AVX2's madd: the same exact integer). Lane k of `scales` is group g0 + k / n
// (n lanes per group: 8 for 32-value groups, 4 for 16-value ones).
template <int g0, int n>
FERRY_INLINE __m512i group_scales(__m512i scales) {
    const __m512i pick = _mm512_setr_epi32(g0, g0 + 1 / n, g0 + 2 / n, g0 + 3 / n, g0 + 4 / n, g0 + 5 / n, g0 + 6 / n,
                                           g0 + 7 / n, g0 + 8 / n, g0 + 9 / n, g0 + 10 / n, g0 + 11 / n, g0 + 12 / n,
                                           g0 + 13 / n, g0 + 14 / n, g0 + 15 / n);
    return _mm512_permutexvar_epi32(pick, scales);
}
template <int T>
FERRY_INLINE void add_scaled_dot64(__m512i* part, __m512i levels, const int8_t* const* x, int offset, __m512i scales) {
    for (int t = 0; t < T; ++t) {
        const __m512i sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), levels, _mm512_loadu_si512(x[t] + offset));
        part[t] = _mm512_add_epi32(part[t], _mm512_mullo_epi32(sums, scales));
    }
}
// 32 bytes at p in both 256-bit halves.
FERRY_INLINE __m512i both_halves(const uint8_t* p) { return _mm512_broadcast_i64x4(load32(p)); }
// Bits [from, from + width) of every byte moved to [to, to + width), the rest
// zero, `from` chosen per 256-bit half: one shift of the 64-bit lanes (what
// crosses a byte boundary lands on bits the mask drops) and a mask. Unpacks
// every K-quant field. (A rotate would move both ways at once, but measured
// 3-5% slower on Zen 5, and no field needs it.)
template <int lo_from, int hi_from, int to, int width>
FERRY_INLINE __m512i byte_fields(__m512i v) {
    static_assert((lo_from >= to && hi_from >= to) || (lo_from <= to && hi_from <= to), "one shift direction per call");
    const __m512i mask = _mm512_set1_epi8(static_cast<char>(((1 << width) - 1) << to));
    if constexpr (lo_from == to && hi_from == to) return _mm512_and_si512(v, mask);
    else if constexpr (lo_from >= to)
        return _mm512_and_si512(_mm512_srlv_epi64(v, _mm512_setr_epi64(lo_from - to, lo_from - to, lo_from - to, lo_from - to,
                                                                       hi_from - to, hi_from - to, hi_from - to, hi_from - to)),
                                mask);
    else
        return _mm512_and_si512(_mm512_sllv_epi64(v, _mm512_setr_epi64(to - lo_from, to - lo_from, to - lo_from, to - lo_from,
                                                                       to - hi_from, to - hi_from, to - hi_from, to - hi_from)),
                                mask);
}
// The 16 lanes of v folded into 8 (their total unchanged).
FERRY_INLINE __m256i fold16(__m512i v) { return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)); }
#endif

// A super-block's group scales and mins, a byte each.
struct ScalesMins {
    __m128i scales, mins;
};

// Q2_K: levels 0..3, scale = low nibble, min = high nibble of scales[g].
FERRY_INLINE ScalesMins q2k_scales_mins(const BlockQ2_K* b) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i nib = _mm_set1_epi8(0x0F);
    return {_mm_and_si128(packed, nib), _mm_and_si128(_mm_srli_epi16(packed, 4), nib)};
}

struct Q2_K {
    static constexpr int kTokens = 3;
    static constexpr int kBytes = sizeof(BlockQ2_K), kD = 80, kDmin = 82;
    static constexpr bool kMin = true;
    static constexpr int kOffset = 0;
#if defined(FERRY_AVX512_VNNI)
    // The avx512 level: qs[32j..32j + 32) hold values 128j.. as crumbs 0, 2,
    // 4, 6 of each byte, 32 values per crumb; crumbs s and s + 2 are the 64
    // contiguous values from 128j + 16s (groups 8j + s..8j + s + 3).
    template <int j, int s, int T>
    static FERRY_INLINE void quarter(__m512i* part, const uint8_t* qs, const int8_t* const* x, __m512i scales) {
        const __m512i levels = byte_fields<s, s + 2, 0, 2>(both_halves(qs + 32 * j));
        add_scaled_dot64<T>(part, levels, x, 128 * j + 16 * s, group_scales<8 * j + s, 4>(scales));
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i* mpart) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
        const ScalesMins sm = q2k_scales_mins(b);
        const __m512i scales = _mm512_cvtepu8_epi32(sm.scales);
        const __m256i mins = _mm256_cvtepu8_epi16(sm.mins);
        __m512i zpart[T];
        for (int t = 0; t < T; ++t) {
            zpart[t] = _mm512_setzero_si512();
            mpart[t] = _mm256_madd_epi16(mins, bsums16(bsums[t]));
        }
        quarter<0, 0, T>(zpart, b->qs, x, scales);
        quarter<0, 4, T>(zpart, b->qs, x, scales);
        quarter<1, 0, T>(zpart, b->qs, x, scales);
        quarter<1, 4, T>(zpart, b->qs, x, scales);
        for (int t = 0; t < T; ++t) part[t] = fold16(zpart[t]);
    }
#else
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i* mpart) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
        const ScalesMins sm = q2k_scales_mins(b);
        const GroupScales sc(_mm256_cvtepu8_epi16(sm.scales));
        const __m256i mins = _mm256_cvtepu8_epi16(sm.mins);
        for (int t = 0; t < T; ++t) {
            part[t] = _mm256_setzero_si256();
            mpart[t] = _mm256_madd_epi16(mins, bsums16(bsums[t]));
        }
        const __m256i q0 = load32(b->qs), q1 = load32(b->qs + 32);
        add_group_pair<T, 0>(part, crumbs<0>(q0), x, sc);
        add_group_pair<T, 2>(part, crumbs<2>(q0), x, sc);
        add_group_pair<T, 4>(part, crumbs<4>(q0), x, sc);
        add_group_pair<T, 6>(part, crumbs<6>(q0), x, sc);
        add_group_pair<T, 8>(part, crumbs<0>(q1), x, sc);
        add_group_pair<T, 10>(part, crumbs<2>(q1), x, sc);
        add_group_pair<T, 12>(part, crumbs<4>(q1), x, sc);
        add_group_pair<T, 14>(part, crumbs<6>(q1), x, sc);
    }
#endif
};

// Q3_K: levels 0..7 (value + 4): two bits from qs, bit 2 from hmask bit v / 32;
// 16 signed 6-bit scales.
struct Q3_K {
    static constexpr int kTokens = 2;
    static constexpr int kBytes = sizeof(BlockQ3_K), kD = 108, kDmin = -1;
    static constexpr bool kMin = false;
    static constexpr int kOffset = 0;
    // The 16 scales minus 32, as int16: low nibbles in bytes 0..7 (scales 0..7
    // low, 8..15 high), two high bits in bytes 8..11 (scale j: byte 8 + j % 4, bits 2 * (j / 4)).
    static FERRY_INLINE __m256i scales(const uint8_t* p) {
        uint32_t a0, a1, hb;
        std::memcpy(&a0, p, 4);
        std::memcpy(&a1, p + 4, 4);
        std::memcpy(&hb, p + 8, 4);
        const uint32_t m4 = 0x0F0F0F0F, m2 = 0x03030303;
        const __m128i v = _mm_setr_epi32(static_cast<int>((a0 & m4) | ((hb & m2) << 4)),
                                         static_cast<int>((a1 & m4) | (((hb >> 2) & m2) << 4)),
                                         static_cast<int>(((a0 >> 4) & m4) | (((hb >> 4) & m2) << 4)),
                                         static_cast<int>(((a1 >> 4) & m4) | (((hb >> 6) & m2) << 4)));
        return _mm256_sub_epi16(_mm256_cvtepu8_epi16(v), _mm256_set1_epi16(32));
    }
#if defined(FERRY_AVX512_VNNI)
    // The avx512 level: as Q2_K's quarters, each crumb with its hmask bit
    // (bit 4j + s / 2, then the next) as bit 2.
    template <int j, int s, int T>
    static FERRY_INLINE void quarter(__m512i* part, const BlockQ3_K* b, __m512i hm, const int8_t* const* x, __m512i scales) {
        constexpr int bit = 4 * j + s / 2;
        const __m512i levels =
            _mm512_or_si512(byte_fields<s, s + 2, 0, 2>(both_halves(b->qs + 32 * j)), byte_fields<bit, bit + 1, 2, 1>(hm));
        add_scaled_dot64<T>(part, levels, x, 128 * j + 16 * s, group_scales<8 * j + s, 4>(scales));
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
        const __m256i s16 = scales(b->scales);
        const __m512i s32 = _mm512_cvtepi16_epi32(s16);
        const __m512i hm = both_halves(b->hmask);
        __m512i zpart[T];
        // Levels are value + 4: take 4 * sum_g scale_g * bsum_g off.
        for (int t = 0; t < T; ++t) {
            zpart[t] = _mm512_setzero_si512();
            part[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums16(bsums[t])), 2));
        }
        quarter<0, 0, T>(zpart, b, hm, x, s32);
        quarter<0, 4, T>(zpart, b, hm, x, s32);
        quarter<1, 0, T>(zpart, b, hm, x, s32);
        quarter<1, 4, T>(zpart, b, hm, x, s32);
        for (int t = 0; t < T; ++t) part[t] = _mm256_add_epi32(part[t], fold16(zpart[t]));
    }
#else
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
        const __m256i s16 = scales(b->scales);
        const GroupScales sc(s16);
        // Levels are value + 4: take 4 * sum_g scale_g * bsum_g off.
        for (int t = 0; t < T; ++t)
            part[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums16(bsums[t])), 2));
        const __m256i hm = load32(b->hmask);
        const __m256i q0 = load32(b->qs), q1 = load32(b->qs + 32);
        add_group_pair<T, 0>(part, _mm256_or_si256(crumbs<0>(q0), bit_to<0, 2>(hm)), x, sc);
        add_group_pair<T, 2>(part, _mm256_or_si256(crumbs<2>(q0), bit_to<1, 2>(hm)), x, sc);
        add_group_pair<T, 4>(part, _mm256_or_si256(crumbs<4>(q0), bit_to<2, 2>(hm)), x, sc);
        add_group_pair<T, 6>(part, _mm256_or_si256(crumbs<6>(q0), bit_to<3, 2>(hm)), x, sc);
        add_group_pair<T, 8>(part, _mm256_or_si256(crumbs<0>(q1), bit_to<4, 2>(hm)), x, sc);
        add_group_pair<T, 10>(part, _mm256_or_si256(crumbs<2>(q1), bit_to<5, 2>(hm)), x, sc);
        add_group_pair<T, 12>(part, _mm256_or_si256(crumbs<4>(q1), bit_to<6, 2>(hm)), x, sc);
        add_group_pair<T, 14>(part, _mm256_or_si256(crumbs<6>(q1), bit_to<7, 2>(hm)), x, sc);
    }
#endif
};

// Q4_K/Q5_K: 8 groups of 32 with 6-bit scales and mins, packed in 12 bytes
// (scale_min_k4): the 8 scales and the 8 mins in the low bytes of two registers
// (each set as one 64-bit value: on x86-64 one move, cheaper than inserting
// four 32-bit parts).
FERRY_INLINE ScalesMins scales_mins_bytes(const uint8_t* p) {
    uint32_t w0, w1, w2;
    std::memcpy(&w0, p, 4);
    std::memcpy(&w1, p + 4, 4);
    std::memcpy(&w2, p + 8, 4);
    const uint32_t m6 = 0x3F3F3F3F, m4 = 0x0F0F0F0F, m2 = 0x03030303;
    const uint32_t sc_lo = w0 & m6, sc_hi = (w2 & m4) | (((w0 >> 6) & m2) << 4);
    const uint32_t mn_lo = w1 & m6, mn_hi = ((w2 >> 4) & m4) | (((w1 >> 6) & m2) << 4);
    return {_mm_set_epi64x(0, static_cast<long long>(sc_lo | (uint64_t{sc_hi} << 32))),
            _mm_set_epi64x(0, static_cast<long long>(mn_lo | (uint64_t{mn_hi} << 32)))};
}

// 8 bytes doubled, one per 16 values, as 16 int16.
FERRY_INLINE __m256i doubled_16(__m128i v) { return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(v, v)); }

template <bool five>
struct K45 {
    static constexpr int kTokens = five ? 2 : 3;
    static constexpr int kBytes = five ? sizeof(BlockQ5_K) : sizeof(BlockQ4_K), kD = 0, kDmin = 2;
    static constexpr bool kMin = true;
    static constexpr int kOffset = 0;
#if defined(FERRY_AVX512_VNNI)
    // The avx512 level: chunk c's low and high nibbles (groups 2c, 2c + 1) in
    // one 512-bit register against 64 contiguous activations.
    template <int c, int T>
    static FERRY_INLINE void chunk(__m512i* part, const uint8_t* qs, __m512i qh, const int8_t* const* x, __m512i scales) {
        __m512i levels = byte_fields<0, 4, 0, 4>(both_halves(qs + 32 * c));
        if constexpr (five) levels = _mm512_or_si512(levels, byte_fields<2 * c, 2 * c + 1, 4, 1>(qh));
        add_scaled_dot64<T>(part, levels, x, 64 * c, group_scales<2 * c, 8>(scales));
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i* mpart) {
        const uint8_t* qs = blk + (five ? 48 : 16);
        const ScalesMins sm = scales_mins_bytes(blk + 4);
        const __m512i scales = _mm512_cvtepu8_epi32(sm.scales);  // lanes 0..7; 8..15 zero, unused
        const __m256i m16 = doubled_16(sm.mins);
        const __m512i qh = five ? both_halves(blk + 16) : _mm512_setzero_si512();
        __m512i zpart[T];
        for (int t = 0; t < T; ++t) {
            zpart[t] = _mm512_setzero_si512();
            mpart[t] = _mm256_madd_epi16(m16, bsums16(bsums[t]));
        }
        chunk<0, T>(zpart, qs, qh, x, scales);
        chunk<1, T>(zpart, qs, qh, x, scales);
        chunk<2, T>(zpart, qs, qh, x, scales);
        chunk<3, T>(zpart, qs, qh, x, scales);
        for (int t = 0; t < T; ++t) part[t] = fold16(zpart[t]);
    }
#else
    template <int c, int T>
    static FERRY_INLINE void chunk(__m256i* part, __m256i q, __m256i qh, const int8_t* const* x, const GroupScales& sc) {
        const __m256i mask = _mm256_set1_epi8(0x0F);
        __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
        if constexpr (five) {
            lo = _mm256_or_si256(lo, bit_to<2 * c, 4>(qh));
            hi = _mm256_or_si256(hi, bit_to<2 * c + 1, 4>(qh));
        }
        add_group_pair<T, 4 * c>(part, lo, x, sc);
        add_group_pair<T, 4 * c + 2>(part, hi, x, sc);
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i* mpart) {
        const uint8_t* qs = blk + (five ? 48 : 16);
        const ScalesMins sm = scales_mins_bytes(blk + 4);
        const GroupScales sc(doubled_16(sm.scales));
        const __m256i m16 = doubled_16(sm.mins);
        for (int t = 0; t < T; ++t) {
            part[t] = _mm256_setzero_si256();
            mpart[t] = _mm256_madd_epi16(m16, bsums16(bsums[t]));
        }
        const __m256i qh = five ? load32(blk + 16) : _mm256_setzero_si256();
        chunk<0, T>(part, load32(qs), qh, x, sc);
        chunk<1, T>(part, load32(qs + 32), qh, x, sc);
        chunk<2, T>(part, load32(qs + 64), qh, x, sc);
        chunk<3, T>(part, load32(qs + 96), qh, x, sc);
    }
#endif
};
using Q4_K = K45<false>;
using Q5_K = K45<true>;

// Q6_K: levels 0..63 (value + 32): low nibbles from ql, two high bits from qh; 16 int8 scales.
struct Q6_K {
    static constexpr int kTokens = 3;
    static constexpr int kBytes = sizeof(BlockQ6_K), kD = 208, kDmin = -1;
    static constexpr bool kMin = false;
    static constexpr int kOffset = 0;
#if defined(FERRY_AVX512_VNNI)
    // The avx512 level: half h's 128 values as two registers of 64 (groups
    // 8h..8h + 3, then 8h + 4..8h + 7): ql's 64 bytes once, low then high
    // nibbles, each with its two bits of qh (bits 0-1 | 2-3, then 4-5 | 6-7).
    template <int h, int T>
    static FERRY_INLINE void half(__m512i* part, const BlockQ6_K* b, const int8_t* const* x, __m512i scales) {
        const __m512i ql = _mm512_loadu_si512(b->ql + 64 * h);
        const __m512i qh = both_halves(b->qh + 32 * h);
        const __m512i lo = _mm512_or_si512(byte_fields<0, 0, 0, 4>(ql), byte_fields<0, 2, 4, 2>(qh));
        const __m512i hi = _mm512_or_si512(byte_fields<4, 4, 0, 4>(ql), byte_fields<4, 6, 4, 2>(qh));
        add_scaled_dot64<T>(part, lo, x, 128 * h, group_scales<8 * h, 4>(scales));
        add_scaled_dot64<T>(part, hi, x, 128 * h + 64, group_scales<8 * h + 4, 4>(scales));
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
        const __m128i s8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
        const __m256i s16 = _mm256_cvtepi8_epi16(s8);
        const __m512i scales = _mm512_cvtepi8_epi32(s8);
        __m512i zpart[T];
        // Levels are value + 32: take 32 * sum_g scale_g * bsum_g off.
        for (int t = 0; t < T; ++t) {
            zpart[t] = _mm512_setzero_si512();
            part[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums16(bsums[t])), 5));
        }
        half<0, T>(zpart, b, x, scales);
        half<1, T>(zpart, b, x, scales);
        for (int t = 0; t < T; ++t) part[t] = _mm256_add_epi32(part[t], fold16(zpart[t]));
    }
#else
    template <int h, int T>
    static FERRY_INLINE void half(__m256i* part, const BlockQ6_K* b, const int8_t* const* x, const GroupScales& sc) {
        const __m256i mask = _mm256_set1_epi8(0x0F);
        const __m256i l0 = load32(b->ql + 64 * h), l1 = load32(b->ql + 64 * h + 32);
        const __m256i qh = load32(b->qh + 32 * h);
        add_group_pair<T, 8 * h>(part, _mm256_or_si256(_mm256_and_si256(l0, mask), _mm256_slli_epi16(crumbs<0>(qh), 4)), x, sc);
        add_group_pair<T, 8 * h + 2>(part, _mm256_or_si256(_mm256_and_si256(l1, mask), _mm256_slli_epi16(crumbs<2>(qh), 4)), x, sc);
        add_group_pair<T, 8 * h + 4>(part, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask),
                                                           _mm256_slli_epi16(crumbs<4>(qh), 4)), x, sc);
        add_group_pair<T, 8 * h + 6>(part, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask),
                                                           _mm256_slli_epi16(crumbs<6>(qh), 4)), x, sc);
    }
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bsums, __m256i* part,
                                 __m256i*) {
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
        const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
        const GroupScales sc(s16);
        // Levels are value + 32: take 32 * sum_g scale_g * bsum_g off.
        for (int t = 0; t < T; ++t)
            part[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(s16, bsums16(bsums[t])), 5));
        half<0, T>(part, b, x, sc);
        half<1, T>(part, b, x, sc);
    }
#endif
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

}  // namespace ferry::kernels::FERRY_AVX_LEVEL
#endif
