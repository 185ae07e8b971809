// SSE2 building blocks of the quantized dot products. SSE2 has no byte
// multiply-add (maddubs is SSSE3), so blocks are decoded to signed int8
// levels, widened to int16 and multiplied with pmaddwd. Include only from
// *_sse2.cpp files: everything here has internal linkage, so no SSE2
// instruction can stand in for a portable (x87) function at link time.
//
// The SSE2 kernels are built twice on x86 (and twice more on ARM, below): as the SSE2 level (namespace sse2) and,
// re-included by the *_ssse3.cpp files with FERRY_SSSE3 defined and compiled
// with -mssse3, as the SSSE3 level (namespace ssse3), where the byte dot
// products below are pmaddubsw on the bytes themselves (the per-target
// re-inclusion of one source that Highway's foreach_target uses). Both give
// the same exact integer sums, so the levels agree bit for bit.
#pragma once
#if defined(FERRY_NEON)
// ARM (the *_neon.cpp and *_dotprod.cpp files): the same sources over SIMDe's
// SSE intrinsics, which compile to NEON, with the SSSE3 paths (byte
// multiply-adds, pshufb) and the byte dot products below written in NEON
// itself. Integer work is exact whatever the instructions; on 32-bit ARM,
// whose NEON flushes subnormal floats to zero, SIMDe is kept off NEON
// (SIMDE_ARM_NEON_A32V7_NO_NATIVE, set by kernels/CMakeLists.txt): its vector
// code then leaves float arithmetic to the IEEE VFP unit, as GCC must.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <arm_neon.h>
#include <simde/x86/ssse3.h>
#define FERRY_SSSE3 1
#if defined(FERRY_DOTPROD)
#define FERRY_SSE_LEVEL dotprod
#else
#define FERRY_SSE_LEVEL neon
#endif
#else
#include <emmintrin.h>
#if defined(FERRY_SSSE3)
#include <tmmintrin.h>
#define FERRY_SSE_LEVEL ssse3
#else
#define FERRY_SSE_LEVEL sse2
#endif
#endif

#include <cstdint>
#include <cstring>
#include <memory>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"

namespace ferry::kernels::FERRY_SSE_LEVEL {
namespace {

#define FERRY_INLINE inline __attribute__((always_inline))

FERRY_INLINE __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }

// Sign-extends the low / high 8 bytes of v to int16.
FERRY_INLINE __m128i widen_lo(__m128i v) { return _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8); }
FERRY_INLINE __m128i widen_hi(__m128i v) { return _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8); }

#if defined(FERRY_NEON)
FERRY_INLINE int8x16_t as_s8(__m128i v) {
    int8x16_t r;
    std::memcpy(&r, &v, 16);  // a register move where SIMDe's type is NEON's
    return r;
}
FERRY_INLINE __m128i from_s32(int32x4_t v) {
    __m128i r;
    std::memcpy(&r, &v, 16);
    return r;
}
// The 16 products w[i] * x[i] as int16 (exact: |w|, |x| <= 128), low and high halves.
FERRY_INLINE void products16(__m128i w, __m128i x, int16x8_t* lo, int16x8_t* hi) {
    const int8x16_t a = as_s8(w), b = as_s8(x);
    *lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    *hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
}
// 4 partial sums of w[i] * x[i] over 16 signed bytes each.
FERRY_INLINE __m128i dot16(__m128i w, __m128i x) {
#if defined(FERRY_DOTPROD)
    return from_s32(vdotq_s32(vdupq_n_s32(0), as_s8(w), as_s8(x)));
#else
    int16x8_t lo, hi;
    products16(w, x, &lo, &hi);
    return from_s32(vpadalq_s16(vpaddlq_s16(lo), hi));
#endif
}
// The same sum times `scale` (|16 products * scale| < 2^31).
FERRY_INLINE __m128i scaled_dot16(__m128i w, __m128i x, int16_t scale) {
#if defined(FERRY_DOTPROD)
    return from_s32(vmulq_n_s32(vdotq_s32(vdupq_n_s32(0), as_s8(w), as_s8(x)), scale));
#else
    int16x8_t lo, hi;
    products16(w, x, &lo, &hi);
    const int32x4_t s = vmull_n_s16(vget_low_s16(lo), scale);
    return from_s32(vmlal_n_s16(vmlal_n_s16(vmlal_n_s16(s, vget_high_s16(lo), scale), vget_low_s16(hi), scale),
                                vget_high_s16(hi), scale));
#endif
}
#elif defined(FERRY_SSSE3)
// 8 sums of pairs w[i] * x[i] as int16: |w| (at most 128) times x with w's
// sign. Exact: activations are at most 127 in magnitude (ferry's quantizers),
// so a pair stays within 2 * 128 * 127 < 2^15.
FERRY_INLINE __m128i pair_dot16(__m128i w, __m128i x) {
    return _mm_maddubs_epi16(_mm_sign_epi8(w, w), _mm_sign_epi8(x, w));
}
// 4 partial sums of w[i] * x[i] over 16 signed bytes each.
FERRY_INLINE __m128i dot16(__m128i w, __m128i x) { return _mm_madd_epi16(pair_dot16(w, x), _mm_set1_epi16(1)); }
// The same sum times `scale`.
FERRY_INLINE __m128i scaled_dot16(__m128i w, __m128i x, int16_t scale) {
    return _mm_madd_epi16(pair_dot16(w, x), _mm_set1_epi16(scale));
}
#else
// 4 partial sums of w[i] * x[i] over 16 signed bytes each.
FERRY_INLINE __m128i dot16(__m128i w, __m128i x) {
    return _mm_add_epi32(_mm_madd_epi16(widen_lo(w), widen_lo(x)), _mm_madd_epi16(widen_hi(w), widen_hi(x)));
}

// The same sum times `scale` (|w * scale| < 2^15).
FERRY_INLINE __m128i scaled_dot16(__m128i w, __m128i x, int16_t scale) {
    const __m128i s = _mm_set1_epi16(scale);
    return _mm_add_epi32(_mm_madd_epi16(_mm_mullo_epi16(widen_lo(w), s), widen_lo(x)),
                         _mm_madd_epi16(_mm_mullo_epi16(widen_hi(w), s), widen_hi(x)));
}
#endif

// Activations widened to int16 once per chunk of rows rather than once per
// row: every 16 bytes of x become 8 int16 of its even bytes, then 8 of its odd
// bytes, at the same index. A weight vector splits the same way (even_i16,
// odd_i16, or masks of unsigned levels) and meets them with two pmaddwd.
FERRY_INLINE __m128i even_i16(__m128i v) { return _mm_srai_epi16(_mm_slli_epi16(v, 8), 8); }
FERRY_INLINE __m128i odd_i16(__m128i v) { return _mm_srai_epi16(v, 8); }
FERRY_INLINE __m128i load_x(const int16_t* p) { return _mm_load_si128(reinterpret_cast<const __m128i*>(p)); }
FERRY_INLINE void widen_acts(const int8_t* x, int64_t n, int16_t* out) {
    for (int64_t i = 0; i < n; i += 16) {
        const __m128i v = load16(x + i);
        _mm_store_si128(reinterpret_cast<__m128i*>(out + i), even_i16(v));
        _mm_store_si128(reinterpret_cast<__m128i*>(out + i + 8), odd_i16(v));
    }
}
// 4 partial sums of w[i] * x[i] over 16 signed bytes w and their widened activations.
FERRY_INLINE __m128i dot16w(__m128i w, const int16_t* x) {
    return _mm_add_epi32(_mm_madd_epi16(even_i16(w), load_x(x)), _mm_madd_epi16(odd_i16(w), load_x(x + 8)));
}

// tile(std::integral_constant<int, T>{}, r, t0, X) for rows [r0, r1) and every
// token of a, X holding tokens t0 .. t0 + T - 1 widened (token t0 + t at
// X + t * a.stride). Rows go in chunks of about 32 KB of weights, so that a
// chunk stays in cache while its token tiles pass over it.
template <class Tile>
void rows_widened(const QuantActs& a, int64_t r0, int64_t r1, int64_t row_bytes, Tile&& tile) {
    constexpr int kTokens = 4;
    const int tiles = a.n_tokens < kTokens ? a.n_tokens : kTokens;
    // A fresh buffer per call (one per matrix and thread in a decode step):
    // a thread_local one reused across calls measured 6% slower here.
    const std::unique_ptr<int16_t[]> buf(new int16_t[static_cast<size_t>(tiles * a.stride) + 8]);
    int16_t* const X = buf.get() + (-(reinterpret_cast<uintptr_t>(buf.get()) / 2) & 7);  // 16-byte aligned
    int64_t chunk = (int64_t{1} << 15) / row_bytes;
    if (chunk < 1) chunk = 1;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
        for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t0) {
            for (int t = 0; t < tn; ++t) widen_acts(a.qs + (t0 + t) * a.stride, a.stride, X + t * a.stride);
            for (int64_t r = c0; r < c1; ++r) tile(tn, r, t0, X);
        });
    }
}

FERRY_INLINE int32_t hsum_i32(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4E));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xB1));
    return _mm_cvtsi128_si32(v);
}

// [total of v0, v1, v2, v3]
FERRY_INLINE __m128i totals4(__m128i v0, __m128i v1, __m128i v2, __m128i v3) {
    const __m128i s01 = _mm_add_epi32(_mm_unpacklo_epi32(v0, v1), _mm_unpackhi_epi32(v0, v1));
    const __m128i s23 = _mm_add_epi32(_mm_unpacklo_epi32(v2, v3), _mm_unpackhi_epi32(v2, v3));
    return _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23));
}

// Four f16 (the low 64 bits of h) widened to f32, exactly: normals by
// moving the bits and scaling by 2^-112, subnormals as (mantissa + 0.5) - 0.5.
FERRY_INLINE __m128 f16x4_to_f32(__m128i h) {
    const __m128i w = _mm_unpacklo_epi16(_mm_setzero_si128(), h);  // h << 16
    const __m128i sign = _mm_and_si128(w, _mm_set1_epi32(static_cast<int>(0x80000000u)));
    const __m128i two_w = _mm_add_epi32(w, w);
    const __m128 normal = _mm_mul_ps(
        _mm_castsi128_ps(_mm_add_epi32(_mm_srli_epi32(two_w, 4), _mm_set1_epi32(0xE0 << 23))),
        _mm_castsi128_ps(_mm_set1_epi32(0x7800000)));
    const __m128 subnormal =
        _mm_sub_ps(_mm_castsi128_ps(_mm_or_si128(_mm_srli_epi32(two_w, 17), _mm_set1_epi32(126 << 23))),
                   _mm_set1_ps(0.5f));
    // two_w < 2^27, compared as w & 0x7fffffff < 2^26 (SSE2 compares signed)
    const __m128i is_sub = _mm_cmplt_epi32(_mm_srli_epi32(two_w, 1), _mm_set1_epi32(1 << 26));
    const __m128i bits = _mm_or_si128(_mm_and_si128(is_sub, _mm_castps_si128(subnormal)),
                                      _mm_andnot_si128(is_sub, _mm_castps_si128(normal)));
    return _mm_castsi128_ps(_mm_or_si128(sign, bits));
}

FERRY_INLINE float f16_to_f32(const void* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _mm_cvtss_f32(f16x4_to_f32(_mm_cvtsi32_si128(h)));
}

// The f16 at p, p + stride, p + 2 * stride, p + 3 * stride.
FERRY_INLINE __m128 load_f16x4(const uint8_t* p, int stride) {
    uint16_t h[4];
    for (int k = 0; k < 4; ++k) std::memcpy(&h[k], p + k * stride, 2);
    uint64_t bits = h[0] | (static_cast<uint64_t>(h[1]) << 16) | (static_cast<uint64_t>(h[2]) << 32) |
                    (static_cast<uint64_t>(h[3]) << 48);
    return f16x4_to_f32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(&bits)));
}

// Byte k = 0xFF if bit k of the 16-bit word is set, else 0.
FERRY_INLINE __m128i bits_to_bytes(uint32_t bits16) {
    const uint64_t lo = 0x0101010101010101ULL * (bits16 & 0xFF), hi = 0x0101010101010101ULL * ((bits16 >> 8) & 0xFF);
    const __m128i spread = _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
    const __m128i select = _mm_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    return _mm_cmpeq_epi8(_mm_and_si128(spread, select), select);
}

FERRY_INLINE __m128i nibbles_lo(__m128i v) { return _mm_and_si128(v, _mm_set1_epi8(0x0F)); }
FERRY_INLINE __m128i nibbles_hi(__m128i v) { return _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(0x0F)); }
// Two bits `shift`, `shift` + 1 of every byte, as 0..3.
FERRY_INLINE __m128i crumbs(__m128i v, int shift) {
    return _mm_and_si128(_mm_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm_set1_epi8(3));
}
// Bit `from` of every byte moved to bit `to`.
FERRY_INLINE __m128i bit_to(__m128i v, int from, int to) {
    const __m128i s = from >= to ? _mm_srl_epi16(v, _mm_cvtsi32_si128(from - to)) : _mm_sll_epi16(v, _mm_cvtsi32_si128(to - from));
    return _mm_and_si128(s, _mm_set1_epi8(static_cast<char>(1 << to)));
}

// The super-block kernels (K-quants, TQ types): type K decodes one block
// into 256 signed levels and 16 int16 scales, one per 16 values (levels * x
// summed per group, times its scale, is isum), plus its msum against the
// activations' 16-value sums; the canonical f32 terms are the portable code's.
struct SuperLevels {
    alignas(16) int8_t q[kQK_K];
    int16_t scale[16];
};

// K::kDirect types compute isum from the packed block themselves:
// K::dot<T>(blk, x, isum) with x[t] the widened activations of the block;
// the others decode it (K::decode) and read the int8 activations.
template <class K, int T>
void superblock_tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0, const int16_t* X) {
    const int64_t nb = w.cols / kQK_K, nbs = a.stride / kQK_K;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * nb * K::kBytes;
    float acc[T][8] = {};
    SuperLevels lv;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * K::kBytes;
        int32_t isums[T];
        if constexpr (K::kDirect) {
            const int16_t* x[T];
            for (int t = 0; t < T; ++t) x[t] = X + t * a.stride + b * kQK_K;
            K::template dot<T>(blk, x, isums);
            for (int t = 0; t < T; ++t) isums[t] -= K::kOffset * a.block_sums[(t0 + t) * nbs + b];
        } else {
            K::decode(blk, &lv);
#if defined(FERRY_SSSE3)
            constexpr bool kScaleOnce = false;  // pmaddubsw scales each pair sum: nothing to share
#else
            constexpr bool kScaleOnce = T > 1;  // a prefill tile: share the scaled levels
#endif
            if constexpr (!kScaleOnce) {
                for (int t = 0; t < T; ++t) {
                    const int8_t* x = a.qs + (t0 + t) * a.stride + b * kQK_K;
                    __m128i s = _mm_setzero_si128();
                    for (int g = 0; g < 16; ++g)
                        s = _mm_add_epi32(s, scaled_dot16(load16(lv.q + 16 * g), load16(x + 16 * g), lv.scale[g]));
                    isums[t] = hsum_i32(s);
                }
            } else {
                // SSE2: the levels widened and times their group's scale once
                // per block (|level * scale| < 2^15) for every token of the
                // tile: the products scaled_dot16 forms, not redone per token.
                alignas(16) int16_t scaled[kQK_K];
                for (int g = 0; g < 16; ++g) {
                    const __m128i q = load16(lv.q + 16 * g), scale = _mm_set1_epi16(lv.scale[g]);
                    _mm_store_si128(reinterpret_cast<__m128i*>(scaled + 16 * g), _mm_mullo_epi16(widen_lo(q), scale));
                    _mm_store_si128(reinterpret_cast<__m128i*>(scaled + 16 * g + 8), _mm_mullo_epi16(widen_hi(q), scale));
                }
                for (int t = 0; t < T; ++t) {
                    const int8_t* x = a.qs + (t0 + t) * a.stride + b * kQK_K;
                    __m128i s = _mm_setzero_si128();
                    for (int g = 0; g < 16; ++g) {
                        const __m128i xv = load16(x + 16 * g);
                        s = _mm_add_epi32(s, _mm_madd_epi16(load_x(scaled + 16 * g), widen_lo(xv)));
                        s = _mm_add_epi32(s, _mm_madd_epi16(load_x(scaled + 16 * g + 8), widen_hi(xv)));
                    }
                    isums[t] = hsum_i32(s);
                }
            }
        }
        const float dw = f16_to_f32(blk + K::kD);
        for (int t = 0; t < T; ++t) {
            const int16_t* bsums = a.bsums + ((t0 + t) * a.stride + b * kQK_K) / 16;
            const float dx = a.d[(t0 + t) * nbs + b];
            float term;
            if constexpr (K::kMin) term = block_term_min(dw, f16_to_f32(blk + K::kDmin), dx, isums[t], K::msum(blk, bsums));
            else term = block_term(dw, dx, isums[t]);
            acc[t][b % 8] += term;
        }
    }
    for (int t = 0; t < T; ++t) out[(t0 + t) * w.rows + r] = reduce_acc8(acc[t]);
}

template <class K>
void superblock_rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    const auto tile = [&](auto tn, int64_t r, int t0, const int16_t* X) { superblock_tile<K, tn>(out, w, a, r, t0, X); };
    if constexpr (K::kDirect) {
        rows_widened(a, r0, r1, w.cols / kQK_K * K::kBytes, tile);
    } else {
        // Decoded levels are widened per token anyway: no widened activations (X unused).
        constexpr int kTokens = 4;
        for (int64_t r = r0; r < r1; ++r)
            for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { tile(tn, r, t, nullptr); });
    }
}

}  // namespace
}  // namespace ferry::kernels::FERRY_SSE_LEVEL
