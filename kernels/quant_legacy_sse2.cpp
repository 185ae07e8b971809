// SSE2 dot products of the 32-value block types (Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, IQ4_NL) with Q8_0 activations, in quant_dot.h's canonical order:
// each block decoded once to 32 signed levels, widened and multiplied with
// pmaddwd per token; four blocks' partial sums fold into one vector of exact
// totals before any f32 arithmetic, which then runs on four blocks at a time.
#if defined(__i386__) || defined(__x86_64__) || defined(FERRY_NEON)
#include "kernels/quant_simd_sse2.h"

namespace ferry::kernels::FERRY_SSE_LEVEL {

namespace {

// Each type: block size, scale offsets, and its 32 levels (values 0..15 in
// lo, 16..31 in hi), signed bytes, or (kUnsigned) bytes 0..31 whose isum is
// sum(level * x) - kOffset * sum(x); types with a min (x = d * q + m) keep q >= 0.
struct Q8_0 {
    static constexpr int kBytes = sizeof(BlockQ8_0), kOffset = 0;
    static constexpr bool kMin = false, kUnsigned = false;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) {
        *lo = load16(b + 2);
        *hi = load16(b + 18);
    }
};
FERRY_INLINE void nibbles(const uint8_t* qs, __m128i* lo, __m128i* hi) {
    const __m128i v = load16(qs);
    *lo = nibbles_lo(v);
    *hi = nibbles_hi(v);
}
FERRY_INLINE void fifth_bit_nibbles(const uint8_t* qh, const uint8_t* qs, __m128i* lo, __m128i* hi) {
    uint32_t bits;
    std::memcpy(&bits, qh, 4);
    const __m128i v = load16(qs), bit4 = _mm_set1_epi8(0x10);
    *lo = _mm_or_si128(nibbles_lo(v), _mm_and_si128(bits_to_bytes(bits & 0xFFFF), bit4));
    *hi = _mm_or_si128(nibbles_hi(v), _mm_and_si128(bits_to_bytes(bits >> 16), bit4));
}
struct Q4_0 {
    static constexpr int kBytes = sizeof(BlockQ4_0), kOffset = 8;
    static constexpr bool kMin = false, kUnsigned = true;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) { nibbles(b + 2, lo, hi); }
};
struct Q4_1 {
    static constexpr int kBytes = sizeof(BlockQ4_1), kOffset = 0;
    static constexpr bool kMin = true, kUnsigned = true;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) { nibbles(b + 4, lo, hi); }
};
struct Q5_0 {
    static constexpr int kBytes = sizeof(BlockQ5_0), kOffset = 16;
    static constexpr bool kMin = false, kUnsigned = true;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) {
        fifth_bit_nibbles(b + 2, b + 6, lo, hi);
    }
};
struct Q5_1 {
    static constexpr int kBytes = sizeof(BlockQ5_1), kOffset = 0;
    static constexpr bool kMin = true, kUnsigned = true;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) {
        fifth_bit_nibbles(b + 4, b + 8, lo, hi);
    }
};
struct IQ4_NL {
    static constexpr int kBytes = sizeof(BlockIQ4_NL), kOffset = 0;
    static constexpr bool kMin = false, kUnsigned = false;
    static FERRY_INLINE void levels(const uint8_t* b, __m128i* lo, __m128i* hi) {
#if defined(FERRY_SSSE3)
        // The 16-entry table through a byte shuffle.
        const __m128i table = load16(kIQ4NLValues), v = load16(b + 2);
        *lo = _mm_shuffle_epi8(table, nibbles_lo(v));
        *hi = _mm_shuffle_epi8(table, nibbles_hi(v));
        return;
#endif
        // No byte shuffle in SSE2: the table lookup is scalar.
        alignas(16) int8_t q[32];
        for (int j = 0; j < 16; ++j) {
            q[j] = kIQ4NLValues[b[2 + j] & 0xF];
            q[j + 16] = kIQ4NLValues[b[2 + j] >> 4];
        }
        *lo = _mm_load_si128(reinterpret_cast<const __m128i*>(q));
        *hi = _mm_load_si128(reinterpret_cast<const __m128i*>(q + 16));
    }
};

// The even and odd bytes of 16 levels as int16; unsigned levels keep the odd
// ones times 256 (one mask instead of a shift), undone on the exact sum.
template <class W>
FERRY_INLINE void split(__m128i v, __m128i* even, __m128i* odd) {
    if constexpr (W::kUnsigned) {
        *even = _mm_and_si128(v, _mm_set1_epi16(0x00FF));
        *odd = _mm_and_si128(v, _mm_set1_epi16(static_cast<short>(0xFF00)));
    } else {
        *even = even_i16(v);
        *odd = odd_i16(v);
    }
}

// The 4 partial sums of each token t against one block's levels: SSE2 splits
// the levels once into int16 halves for the widened activations X; SSSE3
// multiplies the bytes themselves (X unused).
template <class W, int T>
FERRY_INLINE void block_parts(__m128i lo, __m128i hi, const QuantActs& a, const int16_t* X, int t0, int64_t b,
                              __m128i (*part)[4], int k) {
#if defined(FERRY_SSSE3)
    (void)X;
    for (int t = 0; t < T; ++t) {
        const int8_t* x = a.qs + (t0 + t) * a.stride;
        const __m128i xl = load16(x + q8_0_index(b, 0)), xh = load16(x + q8_0_index(b, 16));
#if defined(FERRY_NEON)
        constexpr bool kUnsignedPairs = false;  // levels below 32 are signed bytes too: NEON's dot16 (sdot) takes them
#else
        constexpr bool kUnsignedPairs = W::kUnsigned;
#endif
        if constexpr (kUnsignedPairs) {
            // Levels below 32: two pairs' sums stay below 2 * 2 * 31 * 127 < 2^15.
            const __m128i s = _mm_add_epi16(_mm_maddubs_epi16(lo, xl), _mm_maddubs_epi16(hi, xh));
            part[t][k] = _mm_madd_epi16(s, _mm_set1_epi16(1));
        } else {
            part[t][k] = _mm_add_epi32(dot16(lo, xl), dot16(hi, xh));
        }
    }
#else
    (void)t0;
    __m128i lo_even, lo_odd, hi_even, hi_odd;
    split<W>(lo, &lo_even, &lo_odd);
    split<W>(hi, &hi_even, &hi_odd);
    for (int t = 0; t < T; ++t) {
        const int16_t* xl = X + t * a.stride + q8_0_index(b, 0);
        const int16_t* xh = X + t * a.stride + q8_0_index(b, 16);
        const __m128i even = _mm_add_epi32(_mm_madd_epi16(lo_even, load_x(xl)), _mm_madd_epi16(hi_even, load_x(xh)));
        __m128i odd = _mm_add_epi32(_mm_madd_epi16(lo_odd, load_x(xl + 8)), _mm_madd_epi16(hi_odd, load_x(xh + 8)));
        if constexpr (W::kUnsigned) odd = _mm_srai_epi32(odd, 8);  // exact: a multiple of 256
        part[t][k] = _mm_add_epi32(even, odd);
    }
#endif
}

template <class W, int T>
void tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0, const int16_t* X) {
    const int64_t nb = w.cols / kQK8_0, nbs = a.stride / kQK8_0;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * nb * W::kBytes;
    __m128 acc[T][2];
    for (int t = 0; t < T; ++t) acc[t][0] = acc[t][1] = _mm_setzero_ps();
    alignas(16) uint8_t tail[4 * W::kBytes];
    for (int64_t b = 0; b < nb; b += 4) {
        // The last nb % 4 blocks as a group of 4, padded with zero blocks
        // (d = 0) against zero activations: +-0 leaves a lane unchanged.
        const uint8_t* blk = row + b * W::kBytes;
        if (b + 4 > nb) {
            std::memset(tail, 0, sizeof(tail));
            std::memcpy(tail, blk, static_cast<size_t>((nb - b) * W::kBytes));
            blk = tail;
        }
        __m128i part[T][4];
        for (int k = 0; k < 4; ++k) {
            __m128i lo, hi;
            W::levels(blk + k * W::kBytes, &lo, &hi);
            block_parts<W, T>(lo, hi, a, X, t0, b + k, part, k);
        }
        const __m128 dw = load_f16x4(blk, W::kBytes);
        __m128 dm;
        if constexpr (W::kMin) dm = load_f16x4(blk + 2, W::kBytes);
        for (int t = 0; t < T; ++t) {
            __m128i isum = totals4(part[t][0], part[t][1], part[t][2], part[t][3]);
            const __m128i xsum = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.sums + (t0 + t) * nbs + b));
            if constexpr (W::kOffset != 0) {
                static_assert((W::kOffset & (W::kOffset - 1)) == 0, "offset times sum(x) is a shift");
                isum = _mm_sub_epi32(isum, _mm_slli_epi32(xsum, __builtin_ctz(W::kOffset)));
            }
            const __m128 dx = _mm_loadu_ps(a.d + (t0 + t) * nbs + b);
            __m128 term = _mm_mul_ps(_mm_mul_ps(dw, dx), _mm_cvtepi32_ps(isum));
            if constexpr (W::kMin) {
                // Canonical: term - (m * dx) * float(-xsum), which is term + (m * dx) * float(xsum) exactly.
                term = _mm_add_ps(term, _mm_mul_ps(_mm_mul_ps(dm, dx), _mm_cvtepi32_ps(xsum)));
            }
            acc[t][(b / 4) % 2] = _mm_add_ps(acc[t][(b / 4) % 2], term);
        }
    }
    for (int t = 0; t < T; ++t) {
        // ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
        const __m128 s = _mm_add_ps(acc[t][0], acc[t][1]);
        const __m128 u = _mm_add_ps(s, _mm_movehl_ps(s, s));
        out[(t0 + t) * w.rows + r] = _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
    }
}

template <class W>
void rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
#if defined(FERRY_SSSE3)
    // The bytes are multiplied as they are: no widened activations.
    for (int64_t r = r0; r < r1; ++r)
        for_token_tiles<4>(a.n_tokens, [&](auto tn, int t) { tile<W, tn>(out, w, a, r, t, nullptr); });
#else
    rows_widened(a, r0, r1, w.cols / kQK8_0 * W::kBytes,
                 [&](auto tn, int64_t r, int t0, const int16_t* X) { tile<W, tn>(out, w, a, r, t0, X); });
#endif
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

}  // namespace ferry::kernels::FERRY_SSE_LEVEL
#endif
