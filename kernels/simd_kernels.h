// The dense kernels of the SIMD levels, written once as templates over an
// instruction set S. Included only by dense_sse2.cpp and dense_avx2.cpp, each
// with its own types, so every instantiation stays inside a file compiled for
// its instruction set (none can leak into the portable path an old CPU runs).
//
// S provides: V (8 floats), zero(), set1(float), add/mul/div(V, V), load and
// store (8 floats), reduce(V) -> float (the canonical tree of kernels.h),
// transpose8(V[8]) (v[i] lane j becomes v[j] lane i), prefetch(const void*),
// the prefill tile shape kPrefillRows x kPrefillTokens, and kGroupedHeads
// (score 8 query heads of one key head at once: needs 11 vector registers).
// L (a weight type: F32Weights<S>, or a level's own 16-bit ones) provides: W, kLanes (8 or 16: its canonical order, see
// kernels.h), load(const W*) -> V of 8 floats, and
// widen_tail(const W*, int n <= 8, float out[8]).
//
// Matrix product: a tile is R weight rows x T tokens: each step loads 8 values of each row
// once and uses them for all T tokens, so prefill reads a weight row once
// per T tokens from cache and once per R-row block from memory. Every one of
// the R*T dot products keeps the canonical order of kernels.h: L::kLanes lanes
// (lane j takes elements i = j mod kLanes) in one 8-lane accumulator, or two
// (lanes 0-7 and 8-15) that are added first, S::reduce's fixed tree, then the
// tail one element at a time.
#pragma once
#include <cstdint>

#include "kernels/dense_levels.h"

namespace ferry::kernels::simd {

// Decode (one token) is memory-bound and reads the weights as one sequential
// stream, a row at a time, with a software prefetch far ahead of it: on Zen 4/5
// that streams at 90-99% of the read-bandwidth probe, where interleaving 4 or
// 8 rows (4-8 streams) reaches 60-80%. The prefetch stops at the end of the
// thread's chunk of rows, so no thread fetches rows another one reads.
constexpr int64_t kDecodePrefetchBytes = 8192;
// Prefill tiles read R rows at once, from cache most of the time.
constexpr int64_t kPrefillPrefetchBytes = 1024;

// Widens n <= 8 halves (L: a 16-bit weight type of level S) through L's
// 8-wide load, zero-padded.
template <class S, class L>
void widen_tail_u16(const uint16_t* p, int n, float* out) {
    uint16_t padded[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < n; ++i) padded[i] = p[i];
    S::store(out, L::load(padded));
}

// Every level's f32 weight type: 8 canonical lanes, loaded as they are.
template <class S>
struct F32Weights {
    using W = float;
    static constexpr int kLanes = 8;
    static typename S::V load(const float* p) { return S::load(p); }
    static void widen_tail(const float* p, int n, float* out) {
        for (int i = 0; i < n; ++i) out[i] = p[i];
    }
};

// acc[i][t] += row i's 8 weights at k times token t's 8 values at k.
template <class S, class L, int R, int T>
inline void accumulate_step(typename S::V (&acc)[R][T], const typename L::W* const (&row)[R], const float* x,
                            int64_t cols, int64_t k) {
    using V = typename S::V;
    V xv[T];
    for (int t = 0; t < T; ++t) xv[t] = S::load(x + t * cols + k);
    for (int i = 0; i < R; ++i) {
        const V wv = L::load(row[i] + k);
        for (int t = 0; t < T; ++t) acc[i][t] = S::add(acc[i][t], S::mul(wv, xv[t]));
    }
}

template <class L>
constexpr int64_t ahead(bool decode) {
    return (decode ? kDecodePrefetchBytes : kPrefillPrefetchBytes) / static_cast<int64_t>(sizeof(typename L::W));
}

// Prefetches each row `distance` weights past k, once per cache line, never
// past prefetch_end.
template <class S, class L, int R>
inline void prefetch_rows(const typename L::W* const (&row)[R], int64_t k, int64_t distance,
                          const typename L::W* prefetch_end) {
    if (k % (64 / static_cast<int64_t>(sizeof(typename L::W))) != 0) return;
    for (int i = 0; i < R; ++i)
        if (row[i] + k + distance < prefetch_end) S::prefetch(row[i] + k + distance);
}

// sums[i][t] += the 8-value blocks at k = begin + half, + 16, ... below end:
// one half (lanes 0-7 or 8-15) of the 16-lane order, with the R*T
// accumulators in registers for the span.
template <class S, class L, int R, int T, int half>
inline void accumulate_span(typename S::V (&sums)[R][T], const typename L::W* const (&row)[R], const float* x,
                            int64_t cols, int64_t begin, int64_t end, const typename L::W* prefetch_end) {
    typename S::V acc[R][T];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = sums[i][t];
    for (int64_t k = begin; k < end; k += 16) {
        if (half == 0) prefetch_rows<S, L, R>(row, k, ahead<L>(false), prefetch_end);
        accumulate_step<S, L, R, T>(acc, row, x, cols, k + half);
    }
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) sums[i][t] = acc[i][t];
}

// One tile: out[t * out_stride + r + i] for i < R, t < T, in the canonical
// order of L::kLanes (8 or 16) lanes.
template <class S, class L, int R, int T, bool kDecode = false>
inline void tile(float* out, int64_t out_stride, const typename L::W* w, int64_t cols, const float* x, int64_t r,
                 const typename L::W* prefetch_end) {
    using V = typename S::V;
    constexpr int64_t kLanes = L::kLanes;
    const typename L::W* row[R];
    for (int i = 0; i < R; ++i) row[i] = w + (r + i) * cols;
    const int64_t body = cols - cols % kLanes;
    V low[R][T], high[R][T];  // lanes 0-7 and (16 lanes) 8-15
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) low[i][t] = high[i][t] = S::zero();
    if constexpr (kLanes == 8) {
        for (int64_t k = 0; k < body; k += 8) {
            prefetch_rows<S, L, R>(row, k, ahead<L>(kDecode), prefetch_end);
            accumulate_step<S, L, R, T>(low, row, x, cols, k);
        }
    } else if constexpr (2 * R * T <= S::kAccumulators) {
        // Both halves in one pass: decode gets two independent add chains per
        // row, which a 16-bit weight stream needs to reach memory speed.
        for (int64_t k = 0; k < body; k += 16) {
            prefetch_rows<S, L, R>(row, k, ahead<L>(kDecode), prefetch_end);
            accumulate_step<S, L, R, T>(low, row, x, cols, k);
            accumulate_step<S, L, R, T>(high, row, x, cols, k + 8);
        }
    } else {
        // Too many accumulators for the registers: the two halves in turn,
        // over spans short enough that the second finds the data in L1.
        constexpr int64_t kSpan = 512;
        for (int64_t k = 0; k < body; k += kSpan) {
            const int64_t end = k + kSpan < body ? k + kSpan : body;
            accumulate_span<S, L, R, T, 0>(low, row, x, cols, k, end, prefetch_end);
            accumulate_span<S, L, R, T, 8>(high, row, x, cols, k, end, prefetch_end);
        }
    }
    const int tail = static_cast<int>(cols - body);
    for (int i = 0; i < R; ++i) {
        float wt[16];
        if (tail > 8) {
            L::widen_tail(row[i] + body, 8, wt);
            L::widen_tail(row[i] + body + 8, tail - 8, wt + 8);
        } else if (tail) {
            L::widen_tail(row[i] + body, tail, wt);
        }
        for (int t = 0; t < T; ++t) {
            float sum = S::reduce(kLanes == 16 ? S::add(low[i][t], high[i][t]) : low[i][t]);
            const float* xt = x + t * cols + body;
            for (int j = 0; j < tail; ++j) {
                const float p = wt[j] * xt[j];
                sum += p;
            }
            out[t * out_stride + r + i] = sum;
        }
    }
}

// Rows r .. r+R-1 for every token: tiles of T tokens, then one tile of the
// remaining T-1 or fewer.
template <class S, class L, int R, int T>
inline void row_block(float* out, int64_t out_stride, const typename L::W* w, int64_t cols, const float* x,
                      int n_tokens, int64_t r, const typename L::W* prefetch_end) {
    int t = 0;
    for (; t + T <= n_tokens; t += T)
        tile<S, L, R, T>(out + t * out_stride, out_stride, w, cols, x + t * cols, r, prefetch_end);
    if constexpr (T > 1) {
        if (n_tokens - t == T - 1)
            tile<S, L, R, T - 1>(out + t * out_stride, out_stride, w, cols, x + t * cols, r, prefetch_end);
        else if (n_tokens > t)
            row_block<S, L, R, T - 1>(out + t * out_stride, out_stride, w, cols, x + t * cols, n_tokens - t, r,
                                      prefetch_end);
    }
}

template <class S, class L>
void matmul_rows(float* out, int64_t out_stride, const void* w_data, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    const typename L::W* w = static_cast<const typename L::W*>(w_data);
    const typename L::W* end = w + r1 * cols;
    int64_t r = r0;
    if (n_tokens == 1) {
        // The stream's first kDecodePrefetchBytes have no prefetch ahead of
        // them yet: request them all at once.
        const char* first = reinterpret_cast<const char*>(w + r0 * cols);
        for (int64_t b = 0; b < kDecodePrefetchBytes && first + b < reinterpret_cast<const char*>(end); b += 64)
            S::prefetch(first + b);
        for (; r < r1; ++r) tile<S, L, 1, 1, true>(out, out_stride, w, cols, x, r, end);
        return;
    }
    for (; r + S::kPrefillRows <= r1; r += S::kPrefillRows)
        row_block<S, L, S::kPrefillRows, S::kPrefillTokens>(out, out_stride, w, cols, x, n_tokens, r, end);
    for (; r < r1; ++r) row_block<S, L, 1, S::kPrefillTokens>(out, out_stride, w, cols, x, n_tokens, r, end);
}

// Four 8-lane accumulators: only the reading speed matters here.
template <class S>
float read_bandwidth_probe(const float* data, int64_t n) {
    using V = typename S::V;
    V s0 = S::zero(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = S::add(s0, S::load(data + i));
        s1 = S::add(s1, S::load(data + i + 8));
        s2 = S::add(s2, S::load(data + i + 16));
        s3 = S::add(s3, S::load(data + i + 24));
    }
    float sum = S::reduce(S::add(S::add(s0, s1), S::add(s2, s3)));
    for (; i < n; ++i) sum += data[i];
    return sum;
}

// Attention scores in run.c's order: each q.k sums i = 0, 1, ... in sequence,
// so lanes only ever run over independent sums. Equal bit for bit to
// scalar::attention_scores.
//
// One head: lanes over 8 positions (8 key rows transposed into 8 columns).
template <class S>
void scores_one_head(float* att, const float* q, const float* key, int64_t key_stride, int n_pos, int head_size,
                     float scale) {
    using V = typename S::V;
    const V vscale = S::set1(scale);
    const int h8 = head_size - head_size % 8;
    int t = 0;
    for (; t + 8 <= n_pos; t += 8) {
        const float* k = key + t * key_stride;
        V acc = S::zero();
        for (int i = 0; i < h8; i += 8) {
            V col[8];
            for (int j = 0; j < 8; ++j) col[j] = S::load(k + j * key_stride + i);
            S::transpose8(col);
            for (int c = 0; c < 8; ++c) acc = S::add(acc, S::mul(S::set1(q[i + c]), col[c]));
        }
        for (int i = h8; i < head_size; ++i) {
            float column[8];
            for (int j = 0; j < 8; ++j) column[j] = k[j * key_stride + i];
            acc = S::add(acc, S::mul(S::set1(q[i]), S::load(column)));
        }
        S::store(att + t, S::div(acc, vscale));
    }
    if (t < n_pos) scalar::attention_scores(att + t, 0, q, 1, key + t * key_stride, key_stride, n_pos - t, head_size, scale);
}

// Eight heads that share the keys (grouped-query attention): lanes over the
// heads, so each key element is loaded once for all eight and no transpose
// is needed until the scores of 8 positions are stored.
constexpr int kMaxGroupedHeadSize = 256;
template <class S>
void scores_eight_heads(float* att, int64_t att_stride, const float* q, const float* key, int64_t key_stride,
                        int n_pos, int head_size, float scale) {
    using V = typename S::V;
    float qt[8 * kMaxGroupedHeadSize];  // qt[i * 8 + h] = q_h[i]
    for (int i = 0; i < head_size; ++i)
        for (int h = 0; h < 8; ++h) qt[i * 8 + h] = q[h * head_size + i];
    const V vscale = S::set1(scale);
    int t = 0;
    for (; t + 8 <= n_pos; t += 8) {
        const float* k = key + t * key_stride;
        V acc[8];  // acc[p]: position t + p, lane h: head h
        for (int p = 0; p < 8; ++p) acc[p] = S::zero();
        for (int i = 0; i < head_size; ++i) {
            const V qv = S::load(qt + i * 8);
            for (int p = 0; p < 8; ++p) acc[p] = S::add(acc[p], S::mul(qv, S::set1(k[p * key_stride + i])));
        }
        S::transpose8(acc);  // acc[h]: head h, lane p: position t + p
        for (int h = 0; h < 8; ++h) S::store(att + h * att_stride + t, S::div(acc[h], vscale));
    }
    for (; t < n_pos; ++t) {
        const float* k = key + t * key_stride;
        V acc = S::zero();
        for (int i = 0; i < head_size; ++i) acc = S::add(acc, S::mul(S::load(qt + i * 8), S::set1(k[i])));
        float lanes[8];
        S::store(lanes, S::div(acc, vscale));
        for (int h = 0; h < 8; ++h) att[h * att_stride + t] = lanes[h];
    }
}

template <class S>
void attention_scores(float* att, int64_t att_stride, const float* q, int n_q, const float* key, int64_t key_stride,
                      int n_pos, int head_size, float scale) {
    int h = 0;
    if (S::kGroupedHeads && head_size <= kMaxGroupedHeadSize)
        for (; h + 8 <= n_q; h += 8)
            scores_eight_heads<S>(att + h * att_stride, att_stride, q + h * head_size, key, key_stride, n_pos,
                                  head_size, scale);
    for (; h < n_q; ++h) scores_one_head<S>(att + h * att_stride, q + h * head_size, key, key_stride, n_pos, head_size, scale);
}

// out[i] += att[t] * value[t][i] over positions t = 0, 1, ... in order: the
// lanes run over elements, each summed in run.c's order (which a run split
// into consecutive spans of positions keeps).
template <class S>
void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,
                      int head_size) {
    using V = typename S::V;
    int i = 0;
    for (; i + 32 <= head_size; i += 32) {
        V a0 = S::load(out + i), a1 = S::load(out + i + 8), a2 = S::load(out + i + 16), a3 = S::load(out + i + 24);
        for (int t = 0; t < n_pos; ++t) {
            const float* v = value + t * value_stride + i;
            const V a = S::set1(att[t]);
            a0 = S::add(a0, S::mul(a, S::load(v)));
            a1 = S::add(a1, S::mul(a, S::load(v + 8)));
            a2 = S::add(a2, S::mul(a, S::load(v + 16)));
            a3 = S::add(a3, S::mul(a, S::load(v + 24)));
        }
        S::store(out + i, a0);
        S::store(out + i + 8, a1);
        S::store(out + i + 16, a2);
        S::store(out + i + 24, a3);
    }
    for (; i + 8 <= head_size; i += 8) {
        V acc = S::load(out + i);
        for (int t = 0; t < n_pos; ++t) acc = S::add(acc, S::mul(S::set1(att[t]), S::load(value + t * value_stride + i)));
        S::store(out + i, acc);
    }
    if (i < head_size) scalar::attention_values(out + i, att, value + i, value_stride, n_pos, head_size - i);
}

// out[i] = the half in[i] as f32, exactly (L::load is exact).
template <class S, class L>
void widen(float* out, const typename L::W* in, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) S::store(out + i, L::load(in + i));
    if (i == n) return;
    float tail[8];
    L::widen_tail(in + i, static_cast<int>(n - i), tail);
    for (int j = 0; j < n - i; ++j) out[i + j] = tail[j];
}

}  // namespace ferry::kernels::simd

// Defines a level's functions (dense_levels.h) from its S and weight types.
#define FERRY_SIMD_LEVEL_FUNCTIONS(S, F32, F16, BF16)                                                             \
    void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,    \
                    int64_t r0, int64_t r1) {                                                                     \
        simd::matmul_rows<S, F32>(out, out_stride, w, cols, x, n_tokens, r0, r1);                                 \
    }                                                                                                             \
    void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,    \
                    int64_t r0, int64_t r1) {                                                                     \
        simd::matmul_rows<S, F16>(out, out_stride, w, cols, x, n_tokens, r0, r1);                                 \
    }                                                                                                             \
    void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,   \
                     int64_t r0, int64_t r1) {                                                                    \
        simd::matmul_rows<S, BF16>(out, out_stride, w, cols, x, n_tokens, r0, r1);                                \
    }                                                                                                             \
    void attention_scores(float* att, int64_t att_stride, const float* q, int n_q, const float* key,            \
                          int64_t key_stride, int n_pos, int head_size, float scale) {                            \
        simd::attention_scores<S>(att, att_stride, q, n_q, key, key_stride, n_pos, head_size, scale);             \
    }                                                                                                             \
    void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,     \
                          int head_size) {                                                                        \
        simd::attention_values<S>(out, att, value, value_stride, n_pos, head_size);                               \
    }                                                                                                             \
    void widen_f16(float* out, const uint16_t* in, int64_t n) { simd::widen<S, F16>(out, in, n); }               \
    float read_bandwidth_probe(const float* data, int64_t n) { return simd::read_bandwidth_probe<S>(data, n); }
