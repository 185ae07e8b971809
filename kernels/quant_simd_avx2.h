// AVX2 building blocks of the quantized dot products. Include only from
// *_avx2.cpp files and the files that re-include them: everything here has
// internal linkage, so no AVX instruction can stand in for a portable
// function at link time.
//
// On x86-64 the legacy, ternary and Q8_GROUP sources are built three times:
// as the avx2 level (namespace avx2); re-included by *_avxvnni.cpp
// (FERRY_AVXVNNI, compiled with -mavxvnni) as the avxvnni level (namespace
// avxvnni), where a byte dot product (maddubs, madd with ones, add: three
// instructions) is one VEX vpdpbusd; and re-included by *_vnni_avx512.cpp
// (FERRY_AVX512_VNNI, compiled with the avx512 level's flags) as that level's
// decode and small-batch kernels (namespace avx512), where it is the EVEX
// vpdpbusd of AVX512-VNNI on 256-bit registers, which every CPU of the level
// has (Zen 4 and Ice Lake have no AVX-VNNI). All give the same exact integer
// sums (no maddubs pair can saturate here: see dpbusd), so the levels agree
// bit for bit. The K-quants are built twice, as avx2 and avx512 (see
// quant_kquants_avx2.cpp); the avx512 level's batches of 12 tokens or more
// take its token-lane kernels (quant_lanes_avx512.cpp).
#pragma once
#if defined(FERRY_AVX512_VNNI) && !defined(__clang__)
// GCC 12's own AVX-512 headers build some results from _mm512_undefined_*()
// and then warn that it is uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#if defined(FERRY_AVX512_VNNI)
#define FERRY_AVX_LEVEL avx512
#elif defined(FERRY_AVXVNNI)
#define FERRY_AVX_LEVEL avxvnni
#else
#define FERRY_AVX_LEVEL avx2
#endif

#include <cstdint>
#include <cstring>

#include "kernels/quant_blocks.h"
#include "kernels/quant_dot.h"
#include "kernels/reduce_avx.h"

namespace ferry::kernels::FERRY_AVX_LEVEL {
namespace {

#if defined(FERRY_AVXVNNI) || defined(FERRY_AVX512_VNNI)
constexpr bool kVnni = true;
#else
constexpr bool kVnni = false;
#endif


// Block totals of 8 blocks from the partial sums of 4 block pairs, each
// [4 partials of block 2k | 4 partials of block 2k+1]: [total 0, ..., total 7].
inline __m256i pair_totals8(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    // hadd twice gives [0 2 4 6 | 1 3 5 7]
    const __m256i q = _mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3));
    return _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The f16 at p, p + stride, ..., p + 7 * stride, widened to f32 (exactly).
// Assembled in general registers (AVX2's gather is slower, and the vector
// units are the bottleneck here).
template <int stride>
inline __m256 load_f16x8(const uint8_t* p) {
    auto at = [p](int k) {
        uint16_t h;
        std::memcpy(&h, p + k * stride, 2);
        return static_cast<uint64_t>(h);
    };
    uint64_t lo = at(0) | (at(1) << 16) | (at(2) << 32) | (at(3) << 48);
    uint64_t hi = at(4) | (at(5) << 16) | (at(6) << 32) | (at(7) << 48);
    // Keep the compiler from moving this into vector registers piecemeal.
    __asm__("" : "+r"(lo), "+r"(hi));
    return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo)));
}

inline float f16_to_f32(const void* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// 32 nibbles from 16 bytes: values 0..15 are the low nibbles, 16..31 the high ones.
inline __m256i nibbles32(const uint8_t* p) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0F));
}

// Byte k = 0xFF if bit k of the 32-bit word is set, else 0.
inline __m256i bits_to_bytes(uint32_t bits) {
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(bits)),
        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i select = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
}

// The byte dot product's instruction where the level has one: EVEX (AVX512-VNNI
// + VL) at the avx512 level, VEX (AVX-VNNI) at avxvnni; none at avx2, nor at
// the avxvnni level emulated for tests.
#if defined(FERRY_AVX512_VNNI)
#define FERRY_VPDPBUSD _mm256_dpbusd_epi32
#elif defined(FERRY_AVXVNNI) && !defined(FERRY_EMULATE_AVXVNNI)
#define FERRY_VPDPBUSD _mm256_dpbusd_avx_epi32
#endif

// Sum of u[i] * s[i] over each group of 4 bytes, as 8 int32 (u unsigned, s
// signed; without VNNI, pairs must not overflow int16: true for |u| <= 128,
// |s| <= 127).
inline __m256i dot_u8_s8(__m256i u, __m256i s) {
#if defined(FERRY_VPDPBUSD)
    return FERRY_VPDPBUSD(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// acc + dot_u8_s8(u, s): one instruction with VNNI.
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#if defined(FERRY_VPDPBUSD)
    return FERRY_VPDPBUSD(acc, u, s);
#else
    return _mm256_add_epi32(acc, dot_u8_s8(u, s));
#endif
}

// A ternary accumulator's int32 partial sums: with VNNI it holds them
// already; without, it holds int16 pair sums (maddubs), widened here.
inline __m256i acc_sums(__m256i acc) { return kVnni ? acc : _mm256_madd_epi16(acc, _mm256_set1_epi16(1)); }

#define FERRY_INLINE inline __attribute__((always_inline))

// Software prefetch of the weight stream, kAhead bytes ahead of what is being
// read: the hardware prefetchers alone leave decode at a third of memory
// bandwidth on the machines measured. A kernel call covers rows [r0, r1);
// nothing past their end is fetched (with several threads the next rows are
// another core's), and their first kAhead bytes are requested at once.
struct WeightPrefetch {
    static constexpr int kAhead = 8192;
    const uint8_t* end;
    FERRY_INLINE WeightPrefetch(const uint8_t* begin, const uint8_t* end_) : end(end_) { span(begin, kAhead); }
    // Lines of [p, p + bytes), clipped to the end, one request per 64 bytes.
    FERRY_INLINE void span(const uint8_t* p, int64_t bytes) const {
        if (end - p < bytes) bytes = end - p;
        for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(reinterpret_cast<const char*>(p) + off, _MM_HINT_T0);
    }
    // Called as [p, p + bytes) is about to be read.
    FERRY_INLINE void ahead(const uint8_t* p, int64_t bytes) const { span(p + kAhead, bytes); }
};

FERRY_INLINE __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// Bit `from` of every byte of v moved to bit `to` (other bits zero).
template <int from, int to>
FERRY_INLINE __m256i bit_to(__m256i v) {
    // 16-bit shifts: what crosses a byte boundary lands on bits the mask drops.
    __m256i s;
    if constexpr (from > to) s = _mm256_srli_epi16(v, from - to);
    else if constexpr (from < to) s = _mm256_slli_epi16(v, to - from);
    else s = v;
    return _mm256_and_si256(s, _mm256_set1_epi8(static_cast<char>(1 << to)));
}

// Two bits `shift`, `shift` + 1 of every byte, as 0..3.
template <int shift>
FERRY_INLINE __m256i crumbs(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, shift), _mm256_set1_epi8(3));
}

// Per-group scales as maddubs multipliers. `scales16` holds 16 int16 scales
// (one per 16 values, s0..s7 in the low lane, s8..s15 in the high one);
// group_scales<g>() gives [s_g x 8 | s_g+1 x 8] for the 32 values of groups
// g, g + 1 (g even), one byte shuffle each.
struct GroupScales {
    __m256i lo, hi;  // [s0..s7 | s0..s7], [s8..s15 | s8..s15]
    explicit FERRY_INLINE GroupScales(__m256i scales16)
        : lo(_mm256_permute4x64_epi64(scales16, 0x44)), hi(_mm256_permute4x64_epi64(scales16, 0xEE)) {}
    template <int g>
    FERRY_INLINE __m256i pair() const {
        constexpr int k = g % 8;
        const __m256i pick = _mm256_setr_epi8(2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1,
                                              2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1, 2 * k, 2 * k + 1,
                                              2 * k + 2, 2 * k + 3, 2 * k + 2, 2 * k + 3, 2 * k + 2, 2 * k + 3, 2 * k + 2,
                                              2 * k + 3, 2 * k + 2, 2 * k + 3, 2 * k + 2, 2 * k + 3, 2 * k + 2, 2 * k + 3,
                                              2 * k + 2, 2 * k + 3);
        return _mm256_shuffle_epi8(g < 8 ? lo : hi, pick);
    }
};

// sum over 32 values of level * x, weighted per group by `scale` (int16 lanes).
FERRY_INLINE __m256i scaled_dot(__m256i levels, const int8_t* x, __m256i scale) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(levels, load32(x)), scale);
}

// Lane k = total of all 8 lanes of v[k], k = 0..7: the exact sums of 8
// super-blocks from their partial-sum vectors, folded in pairs as they come.
struct BlockTotals8 {
    __m256i pending, h0, h1, q0;
    template <int j>
    FERRY_INLINE void add(__m256i v) {
        if constexpr (j % 2 == 0) {
            pending = v;
        } else {
            const __m256i h = _mm256_hadd_epi32(pending, v);
            if constexpr (j % 4 == 1) h0 = h;
            else h1 = h;
            if constexpr (j == 3) q0 = _mm256_hadd_epi32(h0, h1);
        }
    }
    FERRY_INLINE __m256i totals() const {
        const __m256i q1 = _mm256_hadd_epi32(h0, h1);
        return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
    }
};

// The super-block kernels (K-quants, TQ types). A type K gives the byte
// offsets kD (and kDmin) of its f16 scales and dot<T>(), which for one
// super-block and T tokens gives partial-sum vectors (any lanes) totalling
// isum (and msum, for types with mins), less kOffset times the activations'
// block sum (TQ levels are value + 1), which is taken off here. Whole groups of 8 super-blocks get
// their terms as one vector (lane k = block b0 + k, the canonical b % 8);
// the last nb % 8 get the portable code's scalar terms.
template <class K, int T, int j>
FERRY_INLINE void superblock_step(const uint8_t* blk, const int8_t* const* x, const int16_t* const* bs,
                                  BlockTotals8* tot, BlockTotals8* mtot) {
    const int8_t* xj[T];
    const int16_t* bj[T];
    for (int t = 0; t < T; ++t) {
        xj[t] = x[t] + j * kQK_K;
        bj[t] = bs[t] + j * (kQK_K / 16);
    }
    __m256i part[T], mpart[T];
    K::template dot<T>(blk + j * K::kBytes, xj, bj, part, mpart);
    for (int t = 0; t < T; ++t) {
        tot[t].template add<j>(part[t]);
        if constexpr (K::kMin) mtot[t].template add<j>(mpart[t]);
    }
}

template <class K, int T>
void superblock_tile(float* out, const Matrix& w, const QuantActs& a, int64_t r, int t0, const WeightPrefetch& pf) {
    const int64_t nb = w.cols / kQK_K, nbs = a.stride / kQK_K;
    const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * nb * K::kBytes;
    __m256 acc[T];
    for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    const int8_t* x[T];
    const int16_t* bs[T];
    auto at_block = [&](int64_t b) {
        for (int t = 0; t < T; ++t) {
            x[t] = a.qs + (t0 + t) * a.stride + b * kQK_K;
            bs[t] = a.bsums + ((t0 + t) * a.stride + b * kQK_K) / 16;
        }
    };
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        const uint8_t* blk = row + b * K::kBytes;
        pf.ahead(blk, 8 * K::kBytes);
        at_block(b);
        BlockTotals8 tot[T], mtot[T];
        superblock_step<K, T, 0>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 1>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 2>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 3>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 4>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 5>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 6>(blk, x, bs, tot, mtot);
        superblock_step<K, T, 7>(blk, x, bs, tot, mtot);
        const __m256 dw = load_f16x8<K::kBytes>(blk + K::kD);
        for (int t = 0; t < T; ++t) {
            const __m256 dx = _mm256_loadu_ps(a.d + (t0 + t) * nbs + b);
            __m256i isum = tot[t].totals();
            if constexpr (K::kOffset)
                isum = _mm256_sub_epi32(isum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.block_sums + (t0 + t) * nbs + b)));
            __m256 term = _mm256_mul_ps(_mm256_mul_ps(dw, dx), _mm256_cvtepi32_ps(isum));
            if constexpr (K::kMin) {
                const __m256 dm = load_f16x8<K::kBytes>(blk + K::kDmin);
                term = _mm256_sub_ps(term, _mm256_mul_ps(_mm256_mul_ps(dm, dx), _mm256_cvtepi32_ps(mtot[t].totals())));
            }
            acc[t] = _mm256_add_ps(acc[t], term);
        }
    }
    alignas(32) float lanes[T][8];
    for (int t = 0; t < T; ++t) _mm256_store_ps(lanes[t], acc[t]);
    for (; b < nb; ++b) {
        const uint8_t* blk = row + b * K::kBytes;
        at_block(b);
        __m256i part[T], mpart[T];
        K::template dot<T>(blk, x, bs, part, mpart);
        const float dw = f16_to_f32(blk + K::kD);
        for (int t = 0; t < T; ++t) {
            const float dx = a.d[(t0 + t) * nbs + b];
            const int32_t isum = hsum_i32(part[t]) - K::kOffset * a.block_sums[(t0 + t) * nbs + b];
            float term;
            if constexpr (K::kMin)
                term = block_term_min(dw, f16_to_f32(blk + K::kDmin), dx, isum, hsum_i32(mpart[t]));
            else
                term = block_term(dw, dx, isum);
            lanes[t][b % 8] += term;
        }
    }
    for (int t = 0; t < T; ++t) out[(t0 + t) * w.rows + r] = reduce_acc8(lanes[t]);
}

// K::kTokens: tokens per tile, the most whose partial sums and folds stay in
// registers (measured per type: QuantPrefillLevel in bench/quant_bench.cpp).
template <class K>
void superblock_rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    constexpr int kTokens = K::kTokens;
    const int64_t row_bytes = w.cols / kQK_K * K::kBytes;
    const uint8_t* base = static_cast<const uint8_t*>(w.data);
    const WeightPrefetch pf(base + r0 * row_bytes, base + r1 * row_bytes);
    for (int64_t r = r0; r < r1; ++r)
        for_token_tiles<kTokens>(a.n_tokens, [&](auto tn, int t) { superblock_tile<K, tn>(out, w, a, r, t, pf); });
}

}  // namespace
}  // namespace ferry::kernels::FERRY_AVX_LEVEL
