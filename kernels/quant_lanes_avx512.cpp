// AVX-512 VNNI prefill of the quantized types, tokens in lanes: one 512-bit
// register holds 4 activation bytes of each of 16 tokens (QuantActs'
// lane_qs), and vpdpbusd multiplies it by 4 weight bytes broadcast to every
// lane, adding each token's 4 products into its own int32 lane. So a block's
// integer sums come out one per token with no horizontal reduction, and the
// f32 terms of quant_dot.h's canonical order are computed 16 tokens at a
// time, each lane exactly as the scalar code computes its token.
//
// vpdpbusd multiplies unsigned by signed bytes: the activations are stored as
// x + 128 and the weights' signed levels are broadcast, so each group's sum
// is sum(q * x) + 128 * sum(q); the block's 128 * sum_g scale_g * sum(q_g) is
// subtracted once, exactly (every sum here stays far inside int32).
//
// A tile is R weight rows, unpacked once into integers (BlockInts), against
// TG groups of 16 tokens. Blocks are visited lane by lane of the canonical
// 8 accumulators (b = j, j + 8, ... for j = 0 .. 7), so one f32 accumulator
// per row and token group is live instead of eight.
#if defined(__x86_64__)
// GCC 12's own AVX-512 headers build some results from _mm512_undefined_*()
// and then warn that it is uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/quant_dot.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels::avx512 {

namespace {

// R weight rows as integers (BlockInts' meaning), kept compact because the
// tiles read them from L1: levels, then per block its scales, and per group
// of G values its scale and min.
struct UnpackedRows {
    std::vector<int8_t> q;        // row i's levels at q + i * cols
    std::vector<float> d, dmin;   // row i's block b at i * nb + b
    std::vector<int32_t> corr;    // 128 * sum_g scale_g * sum(q over group g), likewise
    std::vector<int32_t> scale, min;  // group g of block b of row i at (i * nb + b) * groups + g
    void resize(int n_rows, int64_t cols, int64_t nb, int64_t groups) {
        q.resize(static_cast<size_t>(n_rows * cols));
        d.resize(static_cast<size_t>(n_rows * nb));
        dmin.resize(d.size());
        corr.resize(d.size());
        scale.resize(d.size() * static_cast<size_t>(groups));
        min.resize(scale.size());
    }
};

#define FERRY_AVX512_INLINE inline __attribute__((always_inline))

// The total of two 64-bit sums of bytes (psadbw's result).
FERRY_AVX512_INLINE int32_t sum16_of(__m128i sad) { return _mm_cvtsi128_si32(sad) + _mm_extract_epi32(sad, 2); }

// Sum of 16 signed bytes.
inline int32_t sum16(const int8_t* q) {
    const __m128i biased = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)), _mm_set1_epi8(-128));
    return sum16_of(_mm_sad_epu8(biased, _mm_setzero_si128())) - 16 * 128;  // each byte + 128
}

inline float half(const uint8_t* p) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return _cvtsh_ss(h);  // exact, as fp16_to_fp32
}

// Where unpack_block writes block b of row i.
struct BlockOut {
    int8_t* q;
    float* d;
    float* dmin;
    int32_t* corr;
    int32_t* scale;  // BV / G of them
    int32_t* min;
};

// Stores 32 levels u - offset (u unsigned) at o.q + v and returns their sum
// weighted by their groups' scales (groups of G values, o.scale already set).
template <int G>
FERRY_AVX512_INLINE int32_t put_levels(const BlockOut& o, int v, __m256i u, int offset) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q + v), _mm256_sub_epi8(u, _mm256_set1_epi8(static_cast<char>(offset))));
    const __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256());  // four sums of 8 bytes
    const __m128i lo = _mm256_castsi256_si128(s), hi = _mm256_extracti128_si256(s, 1);
    if constexpr (G == 16)
        return o.scale[v / 16] * (sum16_of(lo) - 16 * offset) + o.scale[v / 16 + 1] * (sum16_of(hi) - 16 * offset);
    else
        return o.scale[v / G] * (sum16_of(_mm_add_epi64(lo, hi)) - 32 * offset);
}

// Bits [shift, shift + width) of every byte, moved to `to`.
template <int width>
FERRY_AVX512_INLINE __m256i bits(__m256i v, int shift, int to = 0) {
    const __m256i field = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(shift)), _mm256_set1_epi8((1 << width) - 1));
    return _mm256_sll_epi16(field, _mm_cvtsi32_si128(to));
}

// The super-block types' integers (their unpack_* functions in
// quant_kquants.cpp and quant_ternary.cpp) from GGML's bytes with vector
// code: through BlockInts's scalar code the unpacking of a 4-row tile took as
// long as the tile's products.
template <TensorType K, int G>
FERRY_AVX512_INLINE void unpack_superblock(const uint8_t* blk, const BlockOut& o) {
    int32_t corr = 0;  // sum over the block of scale * level
    auto load = [](const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    auto f16 = [](const uint16_t& h) { return half(reinterpret_cast<const uint8_t*>(&h)); };
    if constexpr (K == TensorType::Q4_K || K == TensorType::Q5_K) {
        // Groups 2c, 2c + 1: low, high nibbles of qs[32c ..], Q5_K's bit g of qh[l] as 16.
        using Block = std::conditional_t<K == TensorType::Q5_K, BlockQ5_K, BlockQ4_K>;
        const Block* b = reinterpret_cast<const Block*>(blk);
        for (int g = 0; g < 8; ++g) {
            uint8_t sc, m;
            scale_min_k4(g, b->scales, &sc, &m);
            o.scale[g] = sc;
            o.min[g] = m;
        }
        for (int g = 0; g < 8; ++g) {
            __m256i q = bits<4>(load(b->qs + 32 * (g / 2)), 4 * (g % 2));
            if constexpr (K == TensorType::Q5_K) q = _mm256_or_si256(q, bits<1>(load(b->qh), g, 4));
            corr += put_levels<G>(o, 32 * g, q, 0);
        }
        *o.d = f16(b->d);
        *o.dmin = f16(b->dmin);
    } else if constexpr (K == TensorType::Q6_K) {
        // In each half of 128, value 32k + l: the low (k < 2) or high nibble
        // of ql[32 (k % 2) + l] with bits 2k, 2k + 1 of qh[l] above, less 32.
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
        for (int g = 0; g < 16; ++g) {
            o.scale[g] = b->scales[g];
            o.min[g] = 0;
        }
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k) {
                const __m256i q = _mm256_or_si256(bits<4>(load(b->ql + 64 * h + 32 * (k % 2)), 4 * (k / 2)),
                                                  bits<2>(load(b->qh + 32 * h), 2 * k, 4));
                corr += put_levels<G>(o, 128 * h + 32 * k, q, 32);
            }
        *o.d = f16(b->d);
        *o.dmin = 0.0f;
    } else if constexpr (K == TensorType::Q2_K || K == TensorType::Q3_K || K == TensorType::TQ2_0) {
        // Value 128h + 32k + l: bits 2k, 2k + 1 of qs[32h + l] (unpack_2bit),
        // Q3_K's bit 4h + k of hmask[l] as 4.
        const uint8_t* qs;
        int offset;
        if constexpr (K == TensorType::Q2_K) {
            const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
            for (int g = 0; g < 16; ++g) {
                o.scale[g] = b->scales[g] & 0xF;
                o.min[g] = b->scales[g] >> 4;
            }
            qs = b->qs, offset = 0;
            *o.d = f16(b->d);
            *o.dmin = f16(b->dmin);
        } else if constexpr (K == TensorType::Q3_K) {
            const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
            int8_t sc[16];
            q3_k_scales(b->scales, sc);
            for (int g = 0; g < 16; ++g) {
                o.scale[g] = sc[g];
                o.min[g] = 0;
            }
            qs = b->qs, offset = 4;
            *o.d = f16(b->d);
            *o.dmin = 0.0f;
        } else {
            const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(blk);
            *o.scale = 1;
            *o.min = 0;
            qs = b->qs, offset = 1;
            *o.d = f16(b->d);
            *o.dmin = 0.0f;
        }
        for (int h = 0; h < 2; ++h)
            for (int k = 0; k < 4; ++k) {
                __m256i q = bits<2>(load(qs + 32 * h), 2 * k);
                if constexpr (K == TensorType::Q3_K)
                    q = _mm256_or_si256(q, bits<1>(load(reinterpret_cast<const BlockQ3_K*>(blk)->hmask), 4 * h + k, 2));
                corr += put_levels<G>(o, 128 * h + 32 * k, q, offset);
            }
    } else {
        // TQ1_0: digit k of byte q is floor(3 * q_k / 256) with q_k = q * 3^k
        // mod 256 (quant_ternary.cpp), that is [q_k >= 86] + [q_k >= 171];
        // value = digit - 1.
        static_assert(K == TensorType::TQ1_0);
        const BlockTQ1_0* b = reinterpret_cast<const BlockTQ1_0*>(blk);
        *o.scale = 1;
        *o.min = 0;
        const __m256i one = _mm256_set1_epi8(1);
        auto digits = [&](__m256i q) {
            return _mm256_add_epi8(_mm256_min_epu8(_mm256_subs_epu8(q, _mm256_set1_epi8(85)), one),
                                   _mm256_min_epu8(_mm256_subs_epu8(q, _mm256_set1_epi8(static_cast<char>(170))), one));
        };
        auto times3 = [](__m256i q) { return _mm256_add_epi8(q, _mm256_add_epi8(q, q)); };
        // qs[0..31]: digit k of byte m is value 32k + m.
        __m256i q = load(b->qs);
        for (int k = 0; k < 5; ++k, q = times3(q)) corr += put_levels<G>(o, 32 * k, digits(q), 1);
        // qs[32..47]: digit k of byte m is value 160 + 16k + m, the high lane one digit ahead.
        const __m128i q16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs + 32));
        q = _mm256_set_m128i(_mm_add_epi8(q16, _mm_add_epi8(q16, q16)), q16);
        corr += put_levels<G>(o, 160, digits(q), 1);
        q = times3(times3(q));
        corr += put_levels<G>(o, 192, digits(q), 1);
        // Values 224..239 (digit 4 of qs[32..47]: the low lane) and 240..255
        // (qh: byte m holds values 240 + 4k + m).
        alignas(16) uint8_t qh_digits[16];
        for (int k = 0, p3 = 1; k < 4; ++k, p3 *= 3)
            for (int m = 0; m < 4; ++m) qh_digits[4 * k + m] = static_cast<uint8_t>((static_cast<uint8_t>(b->qh[m] * p3) * 3) >> 8);
        const __m128i last = _mm256_castsi256_si128(digits(times3(times3(q))));
        corr += put_levels<G>(o, 224, _mm256_set_m128i(_mm_load_si128(reinterpret_cast<const __m128i*>(qh_digits)), last), 1);
        *o.d = f16(b->d);
        *o.dmin = 0.0f;
    }
    *o.corr = 128 * corr;
}

// One block from its bytes: GGML's own layouts for the two most used 32-value
// types (the integers unpack_q8_0/unpack_q4_0 give) and every super-block
// type (unpack_superblock), any other type K through its BlockInts.
template <TensorType K, int BV, int G>
FERRY_AVX512_INLINE void unpack_block(const QuantFormat* f, const uint8_t* blk, const BlockOut& o) {
    if constexpr (K == TensorType::Q4_0) {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 2));
        const __m128i mask = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
        const __m128i lo = _mm_and_si128(raw, mask), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), mask);
        const int32_t levels =
            sum16_of(_mm_add_epi64(_mm_sad_epu8(lo, _mm_setzero_si128()), _mm_sad_epu8(hi, _mm_setzero_si128())));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q), _mm_sub_epi8(lo, eight));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 16), _mm_sub_epi8(hi, eight));
        *o.d = half(blk);
        *o.corr = 128 * (levels - 8 * 32);
    } else if constexpr (K == TensorType::Q8_0) {
        std::memcpy(o.q, blk + 2, 32);
        *o.d = half(blk);
        *o.corr = 128 * (sum16(o.q) + sum16(o.q + 16));
    } else if constexpr (K == TensorType::Q2_K || K == TensorType::Q3_K || K == TensorType::Q4_K ||
                         K == TensorType::Q5_K || K == TensorType::Q6_K || K == TensorType::TQ1_0 ||
                         K == TensorType::TQ2_0) {
        unpack_superblock<K, G>(blk, o);
    } else {
        BlockInts ints;
        f->unpack(blk, &ints);
        *o.d = ints.d;
        *o.dmin = ints.dmin;
        int32_t corr = 0;
        for (int g = 0; g < BV / G; ++g) {
            int32_t sum = 0;
            for (int v = g * G; v < (g + 1) * G; v += 16) sum += sum16(ints.q + v);
            corr += ints.scale[g] * sum;
            o.scale[g] = ints.scale[g];
            o.min[g] = ints.min[g];
        }
        *o.corr = 128 * corr;
        std::memcpy(o.q, ints.q, BV);
    }
}

template <TensorType K, int BV, int G>
void unpack_rows(const Matrix& w, int64_t r, int n_rows, UnpackedRows* u) {
    const QuantFormat* f = quant_format(w.type);
    const int64_t nb = w.cols / BV;
    u->resize(n_rows, w.cols, nb, BV / G);
    const int64_t row_bytes = nb * f->block_bytes;
    const uint8_t* bytes = static_cast<const uint8_t*>(w.data) + r * row_bytes;
    for (int64_t at = 0; at < n_rows * nb; ++at)  // rows are adjacent: block `at` of the run
        unpack_block<K, BV, G>(f, bytes + at * f->block_bytes,
                               BlockOut{u->q.data() + at * BV, u->d.data() + at, u->dmin.data() + at,
                                        u->corr.data() + at, u->scale.data() + at * (BV / G),
                                        u->min.data() + at * (BV / G)});
}

inline __m512i broadcast4(const int8_t* q) {
    int32_t v;
    std::memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

// Rows [r, r + R) (unpacked in u, rows 0 .. R-1) against token groups
// [g0, g0 + TG): out[t * w.rows + r + i] for the tokens that exist.
template <int BV, int G, bool kMins, int R, int TG>
void tile(float* out, const Matrix& w, const QuantActs& a, const UnpackedRows& u, int64_t r, int g0) {
    const int64_t nb = w.cols / BV, nbs = a.stride / BV;
    // A 32-value block of any GGML type is one group whose scale is 1: its
    // sums need no multiply (and unpack_block need not store the scale).
    constexpr bool kUnitScale = BV == kQK8_0;
    constexpr int kSums = BV == kQK8_0 ? 1 : BV / 16;  // lane sums per block
    const int64_t sums_per_group = nbs * kSums;
    __m512 lanes[8][R][TG];  // the canonical accumulators acc[j]
    for (int j = 0; j < 8; ++j) {
        __m512 acc[R][TG];
        for (int i = 0; i < R; ++i)
            for (int g = 0; g < TG; ++g) acc[i][g] = _mm512_setzero_ps();
        for (int64_t b = j; b < nb; b += 8) {
            __m512i isum[R][TG];
            for (int i = 0; i < R; ++i)
                for (int g = 0; g < TG; ++g) isum[i][g] = _mm512_setzero_si512();
            for (int grp = 0; grp < BV / G; ++grp) {
                __m512i s[R][TG];
                for (int i = 0; i < R; ++i)
                    for (int g = 0; g < TG; ++g) s[i][g] = _mm512_setzero_si512();
                for (int k = 0; k < G / 4; ++k) {
                    const int64_t dword = (b * BV + grp * G) / 4 + k;
                    __m512i x[TG];
                    for (int g = 0; g < TG; ++g)
                        x[g] = _mm512_load_si512(a.lane_qs + ((g0 + g) * a.stride / 4 + dword) * 64);
                    for (int i = 0; i < R; ++i) {
                        const __m512i wq = broadcast4(u.q.data() + i * w.cols + 4 * dword);
                        for (int g = 0; g < TG; ++g) s[i][g] = _mm512_dpbusd_epi32(s[i][g], x[g], wq);
                    }
                }
                for (int i = 0; i < R; ++i) {
                    if constexpr (kUnitScale) {
                        for (int g = 0; g < TG; ++g) isum[i][g] = _mm512_add_epi32(isum[i][g], s[i][g]);
                    } else {
                        const __m512i scale = _mm512_set1_epi32(u.scale[(i * nb + b) * (BV / G) + grp]);
                        for (int g = 0; g < TG; ++g)
                            isum[i][g] = _mm512_add_epi32(isum[i][g], _mm512_mullo_epi32(s[i][g], scale));
                    }
                }
            }
            for (int g = 0; g < TG; ++g) {
                const __m512 dx = _mm512_load_ps(a.lane_d + ((g0 + g) * nbs + b) * 16);
                __m512i msum[R];
                if constexpr (kMins) {
                    // sum_g min_g * (the token's sum over group g), each group's sum loaded once for all R rows.
                    const int32_t* sums = a.lane_sums + ((g0 + g) * sums_per_group + b * kSums) * 16;
                    constexpr int kSumsPerGroup = BV == kQK8_0 ? 1 : G / 16;
                    for (int i = 0; i < R; ++i) msum[i] = _mm512_setzero_si512();
                    for (int grp = 0; grp < BV / G; ++grp) {
                        __m512i xs = _mm512_load_si512(sums + grp * kSumsPerGroup * 16);
                        for (int h = 1; h < kSumsPerGroup; ++h)
                            xs = _mm512_add_epi32(xs, _mm512_load_si512(sums + (grp * kSumsPerGroup + h) * 16));
                        for (int i = 0; i < R; ++i)
                            msum[i] = _mm512_add_epi32(
                                msum[i], _mm512_mullo_epi32(xs, _mm512_set1_epi32(u.min[(i * nb + b) * (BV / G) + grp])));
                    }
                }
                for (int i = 0; i < R; ++i) {
                    const int64_t at = i * nb + b;
                    const __m512i exact = _mm512_sub_epi32(isum[i][g], _mm512_set1_epi32(u.corr[at]));
                    __m512 term = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(u.d[at]), dx), _mm512_cvtepi32_ps(exact));
                    if constexpr (kMins) {
                        const __m512 mterm =
                            _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(u.dmin[at]), dx), _mm512_cvtepi32_ps(msum[i]));
                        term = _mm512_sub_ps(term, mterm);
                    }
                    acc[i][g] = _mm512_add_ps(acc[i][g], term);
                }
            }
        }
        for (int i = 0; i < R; ++i)
            for (int g = 0; g < TG; ++g) lanes[j][i][g] = acc[i][g];
    }
    for (int i = 0; i < R; ++i)
        for (int g = 0; g < TG; ++g) {
            auto at = [&](int j) { return lanes[j][i][g]; };
            const __m512 lo = _mm512_add_ps(_mm512_add_ps(at(0), at(4)), _mm512_add_ps(at(2), at(6)));
            const __m512 hi = _mm512_add_ps(_mm512_add_ps(at(1), at(5)), _mm512_add_ps(at(3), at(7)));
            alignas(64) float sum[16];
            _mm512_store_ps(sum, _mm512_add_ps(lo, hi));
            const int t0 = (g0 + g) * kLaneTokens;
            for (int l = 0; l < kLaneTokens && t0 + l < a.n_tokens; ++l) out[(t0 + l) * w.rows + r + i] = sum[l];
        }
}

template <TensorType K, int BV, int G, bool kMins>
void rows(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    thread_local UnpackedRows u;
    constexpr int kRows = 4, kGroups = 2;
    const int64_t row_bytes = w.cols / BV * quant_format(w.type)->block_bytes;
    int64_t r = r0;
    auto groups = [&](auto rows_c) {
        constexpr int R = decltype(rows_c)::value;
        unpack_rows<K, BV, G>(w, r, R, &u);
        // The next rows' bytes arrive from memory while these tiles compute.
        const uint8_t* next = static_cast<const uint8_t*>(w.data) + (r + R) * row_bytes;
        const uint8_t* end = static_cast<const uint8_t*>(w.data) + r1 * row_bytes;
        for (int64_t k = 0; k < R * row_bytes && next + k < end; k += 64) _mm_prefetch(reinterpret_cast<const char*>(next + k), _MM_HINT_T0);
        int g = 0;
        for (; g + kGroups <= a.lane_groups; g += kGroups) tile<BV, G, kMins, R, kGroups>(out, w, a, u, r, g);
        for (; g < a.lane_groups; ++g) tile<BV, G, kMins, R, 1>(out, w, a, u, r, g);
    };
    for (; r + kRows <= r1; r += kRows) groups(std::integral_constant<int, kRows>{});
    for (; r < r1; ++r) groups(std::integral_constant<int, 1>{});
}

}  // namespace

QuantRowsFn lane_rows(TensorType type) {
    using T = TensorType;
    constexpr T kAny = T::F32;  // any type through its BlockInts
    switch (type) {
        case T::Q8_0: return rows<T::Q8_0, kQK8_0, kQK8_0, false>;
        case T::Q4_0: return rows<T::Q4_0, kQK8_0, kQK8_0, false>;
        case T::Q5_0:
        case T::IQ4_NL: return rows<kAny, kQK8_0, kQK8_0, false>;
        case T::Q4_1:
        case T::Q5_1: return rows<kAny, kQK8_0, kQK8_0, true>;
        case T::Q2_K: return rows<T::Q2_K, kQK_K, 16, true>;
        case T::Q3_K: return rows<T::Q3_K, kQK_K, 16, false>;
        case T::Q6_K: return rows<T::Q6_K, kQK_K, 16, false>;
        case T::Q4_K: return rows<T::Q4_K, kQK_K, 32, true>;
        case T::Q5_K: return rows<T::Q5_K, kQK_K, 32, true>;
        case T::TQ1_0: return rows<T::TQ1_0, kQK_K, kQK_K, false>;
        case T::TQ2_0: return rows<T::TQ2_0, kQK_K, kQK_K, false>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::avx512
#endif
