// The register-tiled matrix product shared by the SIMD levels (included only
// by matmul_sse2.cpp and matmul_avx2.cpp, each with its own types, so every
// instantiation stays inside a file compiled for its instruction set).
//
// A tile is R weight rows x T tokens: each step loads 8 values of each row
// once and uses them for all T tokens, so prefill reads a weight row once
// per T tokens from cache and once per R-row block from memory. Every one of
// the R*T dot products keeps the canonical order of kernels.h: an 8-lane
// accumulator (lane j takes elements i = j mod 8), S::reduce's fixed tree,
// then the tail one element at a time.
//
// S (the instruction set) provides: V, zero(), add(V, V), mul(V, V),
// load(const float*), reduce(V) -> float, prefetch(const void*), and the
// prefill tile shape kPrefillRows x kPrefillTokens.
// L (the weight type) provides: W, load(const W*) -> V of 8 floats, and
// widen_tail(const W*, int n < 8, float out[8]).
#pragma once
#include <cstdint>

namespace ferry::kernels::tiles {

// Decode (one token) is memory-bound and reads the weights as one sequential
// stream, a row at a time, with a software prefetch far ahead of it: on Zen 4/5
// that streams at 90-99% of the read-bandwidth probe, where interleaving 4 or
// 8 rows (4-8 streams) reaches 60-80%. The prefetch stops at the end of the
// thread's chunk of rows, so no thread fetches rows another one reads.
constexpr int64_t kDecodePrefetchBytes = 8192;
// Prefill tiles read R rows at once, from cache most of the time.
constexpr int64_t kPrefillPrefetchBytes = 1024;

template <class S, class L, int R, int T>
inline void tile(float* out, int64_t out_stride, const typename L::W* w, int64_t cols, const float* x, int64_t r,
                 const typename L::W* prefetch_end) {
    using V = typename S::V;
    V acc[R][T];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = S::zero();
    const typename L::W* row[R];
    for (int i = 0; i < R; ++i) row[i] = w + (r + i) * cols;
    const int64_t n8 = cols - cols % 8;
    constexpr int64_t kAhead =
        (R * T == 1 ? kDecodePrefetchBytes : kPrefillPrefetchBytes) / static_cast<int64_t>(sizeof(typename L::W));
    for (int64_t k = 0; k < n8; k += 8) {
        if (k % (64 / sizeof(typename L::W)) == 0)
            for (int i = 0; i < R; ++i)
                if (row[i] + k + kAhead < prefetch_end) S::prefetch(row[i] + k + kAhead);
        V xv[T];
        for (int t = 0; t < T; ++t) xv[t] = S::load(x + t * cols + k);
        for (int i = 0; i < R; ++i) {
            const V wv = L::load(row[i] + k);
            for (int t = 0; t < T; ++t) acc[i][t] = S::add(acc[i][t], S::mul(wv, xv[t]));
        }
    }
    const int tail = static_cast<int>(cols - n8);
    for (int i = 0; i < R; ++i) {
        float wt[8];
        if (tail) L::widen_tail(row[i] + n8, tail, wt);
        for (int t = 0; t < T; ++t) {
            float sum = S::reduce(acc[i][t]);
            const float* xt = x + t * cols + n8;
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
        for (; r < r1; ++r) tile<S, L, 1, 1>(out, out_stride, w, cols, x, r, end);
        return;
    }
    for (; r + S::kPrefillRows <= r1; r += S::kPrefillRows)
        row_block<S, L, S::kPrefillRows, S::kPrefillTokens>(out, out_stride, w, cols, x, n_tokens, r, end);
    for (; r < r1; ++r) row_block<S, L, 1, S::kPrefillTokens>(out, out_stride, w, cols, x, n_tokens, r, end);
}

}  // namespace ferry::kernels::tiles
