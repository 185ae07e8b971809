// AVX2 dot products of the 32-value block types (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL) with Q8_0 activations, in quant_dot.h's canonical order.
//
// Blocks go in pairs: one register holds the 16 low-nibble (or first) levels
// of two blocks, meeting one 32-byte load of the pair-interleaved
// activations (QuantActs); maddubs + madd leave 4 partial sums per block.
// Four pairs fold into one vector of 8 exact block totals, and only then does
// f32 arithmetic start: one vector of terms per 8 blocks, added to lane b % 8.
// Decode runs two rows at a time sharing the activation loads; prefill runs
// one row against four tokens, unpacking each block once.
#if defined(__i386__) || defined(__x86_64__)
#include <cstring>
#include <type_traits>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_simd_avx2.h"

namespace ferry::kernels::FERRY_AVX_LEVEL {

namespace {

// Two 16-byte halves as one register: [p | q].
FERRY_INLINE __m256i load_2x16(const uint8_t* p, const uint8_t* q) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
                                   _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), 1);
}
FERRY_INLINE void nibbles_2x16(const uint8_t* qa, const uint8_t* qb, __m256i* lo, __m256i* hi) {
    const __m256i v = load_2x16(qa, qb);
    const __m256i mask = _mm256_set1_epi8(0x0F);
    *lo = _mm256_and_si256(v, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
}
// Bit 4 of the levels of two Q5 blocks, from their 32-bit qh words.
FERRY_INLINE void fifth_bits(const uint8_t* qha, const uint8_t* qhb, __m256i* lo, __m256i* hi) {
    uint32_t a, b;
    std::memcpy(&a, qha, 4);
    std::memcpy(&b, qhb, 4);
    const __m256i bit4 = _mm256_set1_epi8(0x10);
    *lo = _mm256_or_si256(*lo, _mm256_and_si256(bits_to_bytes((a & 0xFFFF) | (b << 16)), bit4));
    *hi = _mm256_or_si256(*hi, _mm256_and_si256(bits_to_bytes((a >> 16) | (b & 0xFFFF0000u)), bit4));
}

// Each type: block size, scale offsets, and the levels of a pair of blocks
// (`pair`: lo = values 0..15 of both, hi = values 16..31). Unsigned levels
// are offset by 2^kOffsetShift (isum = sum(level * x) - offset * sum(x)), or
// not at all for the types with a min.
struct Q8_0 {
    static constexpr int kBytes = sizeof(BlockQ8_0), kOffsetShift = -1, kLevelBits = 8;
    static constexpr bool kSigned = true, kMin = false;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        *lo = load_2x16(a + 2, b + 2);
        *hi = load_2x16(a + 18, b + 18);
    }
};
struct Q4_0 {
    static constexpr int kBytes = sizeof(BlockQ4_0), kOffsetShift = 3, kLevelBits = 4;
    static constexpr bool kSigned = false, kMin = false;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        nibbles_2x16(a + 2, b + 2, lo, hi);
    }
};
struct Q4_1 {
    static constexpr int kBytes = sizeof(BlockQ4_1), kOffsetShift = -1, kLevelBits = 4;
    static constexpr bool kSigned = false, kMin = true;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        nibbles_2x16(a + 4, b + 4, lo, hi);
    }
};
struct Q5_0 {
    static constexpr int kBytes = sizeof(BlockQ5_0), kOffsetShift = 4, kLevelBits = 5;
    static constexpr bool kSigned = false, kMin = false;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        nibbles_2x16(a + 6, b + 6, lo, hi);
        fifth_bits(a + 2, b + 2, lo, hi);
    }
};
struct Q5_1 {
    static constexpr int kBytes = sizeof(BlockQ5_1), kOffsetShift = -1, kLevelBits = 5;
    static constexpr bool kSigned = false, kMin = true;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        nibbles_2x16(a + 8, b + 8, lo, hi);
        fifth_bits(a + 4, b + 4, lo, hi);
    }
};
struct IQ4_NL {
    static constexpr int kBytes = sizeof(BlockIQ4_NL), kOffsetShift = -1, kLevelBits = 8;
    static constexpr bool kSigned = true, kMin = false;
    static FERRY_INLINE void pair(const uint8_t* a, const uint8_t* b, __m256i* lo, __m256i* hi) {
        nibbles_2x16(a + 2, b + 2, lo, hi);
        const __m256i table = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kIQ4NLValues)));
        *lo = _mm256_shuffle_epi8(table, *lo);
        *hi = _mm256_shuffle_epi8(table, *hi);
    }
};

// A pair of weight blocks, unpacked once for any number of tokens.
template <class W>
struct PairLevels {
    __m256i lo, hi, mag_lo, mag_hi;
    FERRY_INLINE PairLevels(const uint8_t* a, const uint8_t* b) {
        W::pair(a, b, &lo, &hi);
        if constexpr (W::kSigned) {
            mag_lo = _mm256_sign_epi8(lo, lo);
            mag_hi = _mm256_sign_epi8(hi, hi);
        }
    }
    // [4 partial sums of block a | 4 of block b] against a pair of activation blocks.
    FERRY_INLINE __m256i dot(const int8_t* x) const {
        const __m256i xlo = _mm256_load_si256(reinterpret_cast<const __m256i*>(x));
        const __m256i xhi = _mm256_load_si256(reinterpret_cast<const __m256i*>(x + 32));
        if constexpr (W::kSigned) {
            // Each maddubs pair sum may reach 2 * 128 * 127: widened before adding.
            return dpbusd(dot_u8_s8(mag_lo, _mm256_sign_epi8(xlo, lo)), mag_hi, _mm256_sign_epi8(xhi, hi));
        } else if constexpr (kVnni) {
            return dpbusd(dot_u8_s8(lo, xlo), hi, xhi);
        } else {
            // Levels < 32: the sums of two maddubs pairs stay below 2 * 2 * 31 * 127.
            const __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
            // 4-bit levels stay in int16 (totals8 widens later: 16 lanes of at most 2 * 2 * 15 * 127 each).
            if constexpr (kNarrow) return s;
            else return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
        }
    }
    // The 8 block totals from 4 pairs' dot() results.
    static FERRY_INLINE __m256i totals8(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
        if constexpr (kNarrow) {
            // Two int16 folds (sums of 4 lanes < 2^15), then one widening pairwise add:
            // [0 2 4 6 | 1 3 5 7] as with pair_totals8.
            const __m256i h = _mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3));
            return _mm256_permutevar8x32_epi32(_mm256_madd_epi16(h, _mm256_set1_epi16(1)),
                                               _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        } else {
            return pair_totals8(p0, p1, p2, p3);
        }
    }
    static constexpr bool kNarrow = !kVnni && !W::kSigned && W::kLevelBits == 4;
};

// acc[r * T + t] += the canonical terms of 8 blocks (rows[r] points at the
// first; x[t], dx[t], xsum[t] at token t's first).
template <class W, int R, int T>
FERRY_INLINE void blocks8(const uint8_t* const* rows, const int8_t* const* x, const float* const* dx,
                          const int32_t* const* xsum, __m256* acc) {
    __m256i p[4][R][T];
    for (int k = 0; k < 4; ++k) {
        for (int r = 0; r < R; ++r) {
            const PairLevels<W> w(rows[r] + 2 * k * W::kBytes, rows[r] + (2 * k + 1) * W::kBytes);
            for (int t = 0; t < T; ++t) p[k][r][t] = w.dot(x[t] + 64 * k);
        }
    }
    __m256 d[T];
    __m256i s[T];
    for (int t = 0; t < T; ++t) {
        d[t] = _mm256_loadu_ps(dx[t]);
        s[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xsum[t]));
    }
    for (int r = 0; r < R; ++r) {
        const __m256 dw = load_f16x8<W::kBytes>(rows[r]);
        __m256 dm;
        if constexpr (W::kMin) dm = load_f16x8<W::kBytes>(rows[r] + 2);
        for (int t = 0; t < T; ++t) {
            __m256i isum = PairLevels<W>::totals8(p[0][r][t], p[1][r][t], p[2][r][t], p[3][r][t]);
            if constexpr (W::kOffsetShift >= 0) isum = _mm256_sub_epi32(isum, _mm256_slli_epi32(s[t], W::kOffsetShift));
            __m256 term = _mm256_mul_ps(_mm256_mul_ps(dw, d[t]), _mm256_cvtepi32_ps(isum));
            // Canonical: term - (m * dx) * float(-xsum), which is term + (m * dx) * float(xsum) exactly.
            if constexpr (W::kMin)
                term = _mm256_add_ps(term, _mm256_mul_ps(_mm256_mul_ps(dm, d[t]), _mm256_cvtepi32_ps(s[t])));
            acc[r * T + t] = _mm256_add_ps(acc[r * T + t], term);
        }
    }
}

// Rows [r, r + R) against tokens [t0, t0 + T).
template <class W, int R, int T>
void tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0, const WeightPrefetch& pf) {
    const int64_t nb = w.cols / kQK8_0, row_bytes = nb * W::kBytes, nbs = a.stride / kQK8_0;
    const uint8_t* rows[R];
    const int8_t* x[T];
    const float* dx[T];
    const int32_t* xsum[T];
    __m256 acc[R * T];
    const uint8_t* start = static_cast<const uint8_t*>(w.data) + r * row_bytes;
    for (int i = 0; i < R; ++i) rows[i] = start + i * row_bytes;
    for (int i = 0; i < R * T; ++i) acc[i] = _mm256_setzero_ps();
    for (int t = 0; t < T; ++t) {
        x[t] = a.qs + (t0 + t) * a.stride;
        dx[t] = a.d + (t0 + t) * nbs;
        xsum[t] = a.sums + (t0 + t) * nbs;
    }
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        // Rows r .. r+R-1 are adjacent: prefetch them as one stream, as far
        // along as this step reads (8 blocks of each row).
        pf.ahead(start + R * b * W::kBytes, R * 8 * W::kBytes);
        blocks8<W, R, T>(rows, x, dx, xsum, acc);
        for (int i = 0; i < R; ++i) rows[i] += 8 * W::kBytes;
        for (int t = 0; t < T; ++t) {
            x[t] += 8 * kQK8_0;
            dx[t] += 8;
            xsum[t] += 8;
        }
    }
    if (b < nb) {
        // The last nb % 8 blocks as a group of 8: zero blocks after them (d = 0)
        // meet the zero padding of the activations, adding +-0 to each lane,
        // which leaves it unchanged (a lane never holds -0).
        alignas(32) uint8_t tail[R][8 * W::kBytes];
        const uint8_t* at[R];
        for (int i = 0; i < R; ++i) {
            std::memset(tail[i], 0, sizeof(tail[i]));
            std::memcpy(tail[i], rows[i], static_cast<size_t>((nb - b) * W::kBytes));
            at[i] = tail[i];
        }
        blocks8<W, R, T>(at, x, dx, xsum, acc);
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) out[(t0 + t) * w.rows + r + i] = reduce_lanes8(acc[i * T + t]);
}

template <class W>
void rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    constexpr int kTokens = 4;
    const int64_t row_bytes = w.cols / kQK8_0 * W::kBytes;
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    const WeightPrefetch pf(base + r0 * row_bytes, base + r1 * row_bytes);
    if (a.n_tokens == 1) {
        int64_t r = r0;
        // Four rows at a time where registers allow (the signed types keep magnitudes too).
        if constexpr (!W::kSigned)
            for (; r + 4 <= r1; r += 4) tile<W, 4, 1>(out, w, a, r, 0, pf);
        for (; r + 2 <= r1; r += 2) tile<W, 2, 1>(out, w, a, r, 0, pf);
        if (r < r1) tile<W, 1, 1>(out, w, a, r, 0, pf);
        return;
    }
    // Two rows at a time: each activation block loaded serves both, which
    // keeps a small batch (a few sequences decoding together) near the cost
    // of one token instead of above it.
    int64_t r = r0;
    for (; r + 2 <= r1; r += 2)
        for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { tile<W, 2, tn>(out, w, a, r, t, pf); });
    if (r < r1) for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { tile<W, 1, tn>(out, w, a, r, t, pf); });
}

}  // namespace

QuantRowsFn legacy_rows(TensorType type) {
    switch (type) {
        case TensorType::Q8_0: return rows<Q8_0>;
        case TensorType::Q4_0: return rows<Q4_0>;
        case TensorType::Q4_1: return rows<Q4_1>;
        case TensorType::Q5_0: return rows<Q5_0>;
        case TensorType::Q5_1: return rows<Q5_1>;
        case TensorType::IQ4_NL: return rows<IQ4_NL>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::FERRY_AVX_LEVEL
#endif
