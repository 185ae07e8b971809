// The AVX-512 level of the dense kernels (compiled with -mavx512f/bw/vl/dq;
// chosen at run time). Prefill tiles run on 512-bit registers, 32 of them,
// twice AVX2's width and count. Decode, attention and the rest keep AVX2's
// code: one token's product is memory-bound, and attention follows run.c's
// sequential order, where wider vectors buy nothing.
//
// Both tiles keep kernels.h's canonical order, so their results equal every
// other level's bit for bit:
//  * f32 (8 lanes): a register holds lanes 0-7 of two tokens, [t | t+1], and
//    each 8 weights are broadcast to both halves; every token's lane j still
//    sums its elements j, j+8, ... in order, and each half ends with the
//    8-lane tree.
//  * f16 and bf16 (16 lanes): a register holds lanes 0-15 of one token,
//    exactly the canonical 16 lanes; lanes 8-15 are added to 0-7, then the
//    8-lane tree.
// Separate multiply and add (never FMA), as on every level. The bandwidth
// probe reads a cache line per load.
#if defined(__x86_64__)
// GCC 12's own AVX-512 headers build some results from _mm512_undefined_*()
// and then warn that it is uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/dense_levels.h"
#include "kernels/reduce_avx.h"

namespace ferry::kernels::avx512 {

namespace {


// The canonical tail: the last products added one at a time.
inline float add_tail(float sum, const float* w_tail, const float* x_tail, int n) {
    for (int j = 0; j < n; ++j) {
        const float p = w_tail[j] * x_tail[j];
        sum += p;
    }
    return sum;
}

// How a register meets the weights and the tokens.
// f32, 8 lanes: [lanes 0-7 of token t | of token t+1], the 8 weights broadcast.
struct Pairs {
    static constexpr int kStep = 8, kTokens = 2;  // elements per step, tokens per register
    static __m512 w(const float* row, int64_t k) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(row + k)); }
    // x0, x1: the two tokens' rows (the same row twice for a lone last token).
    static __m512 x(const float* x0, const float* x1, int64_t k) {
        return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x0 + k)), _mm256_loadu_ps(x1 + k), 1);
    }
    // The 8-lane sum of the register's token h (0 or 1).
    static float sum(__m512 acc, int h) {
        return reduce_lanes8(h ? _mm512_extractf32x8_ps(acc, 1) : _mm512_castps512_ps256(acc));
    }
};
// 16-bit weights (widened), 16 lanes: one token's lanes 0-15.
struct Wide {
    static constexpr int kStep = 16, kTokens = 1;
    static __m512 w(const float* row, int64_t k) { return _mm512_loadu_ps(row + k); }
    static __m512 x(const float* x0, const float*, int64_t k) { return _mm512_loadu_ps(x0 + k); }
    static float sum(__m512 acc, int) {
        return reduce_lanes8(_mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)));
    }
};

// A register's worth of accumulators in a buffer (a struct: std::vector
// drops __m512's alignment attribute from a template argument).
struct alignas(64) Acc {
    __m512 v;
};

// Elements per span: each span's rows (R x kSpan f32) stay in L1 while every
// token tile of the batch passes over them; the accumulators wait in a
// buffer between spans, so every lane still sums its elements in order.
constexpr int64_t kSpan = 512;

// acc[i * kStride + v] += rows[i] times register v's tokens over elements [k0, k1).
template <class S, int R, int V, int kStride>
inline void span(__m512* acc, const float* const* rows, const float* const* xrow, int64_t k0, int64_t k1) {
    __m512 a[R][V];
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) a[i][v] = acc[i * kStride + v];
    for (int64_t k = k0; k < k1; k += S::kStep) {
        __m512 xv[V];
        for (int v = 0; v < V; ++v) xv[v] = S::x(xrow[v * S::kTokens], xrow[v * S::kTokens + S::kTokens - 1], k);
        for (int i = 0; i < R; ++i) {
            const __m512 wv = S::w(rows[i], k);
            for (int v = 0; v < V; ++v) a[i][v] = _mm512_add_ps(a[i][v], _mm512_mul_ps(wv, xv[v]));
        }
    }
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i * kStride + v] = a[i][v];
}

// A tile of V registers' tokens whose count is only known at run time.
template <class S, int R, int V, int kStride = V>
inline void span_n(int v, __m512* acc, const float* const* rows, const float* const* xrow, int64_t k0, int64_t k1) {
    if constexpr (V > 0) {
        if (v == V) return span<S, R, V, kStride>(acc, rows, xrow, k0, k1);
        span_n<S, R, V - 1, kStride>(v, acc, rows, xrow, k0, k1);
    }
}

// Rows (R of them, f32, rows[i] for output row r + i) against every token.
template <class S, int R, int V>
void row_block(float* out, int64_t out_stride, const float* const* rows, int64_t cols, const float* x, int n_tokens,
               int64_t r, std::vector<Acc>* buffer) {
    constexpr int kTile = V * S::kTokens;  // tokens per tile
    const int tiles = (n_tokens + kTile - 1) / kTile;
    buffer->assign(static_cast<size_t>(tiles * R * V), Acc{_mm512_setzero_ps()});
    const int64_t body = cols - cols % S::kStep;
    for (int64_t k0 = 0; k0 < body; k0 += kSpan) {
        const int64_t k1 = k0 + kSpan < body ? k0 + kSpan : body;
        for (int tile = 0; tile < tiles; ++tile) {
            const int t0 = tile * kTile, n = n_tokens - t0 < kTile ? n_tokens - t0 : kTile;
            const float* xrow[kTile];
            for (int t = 0; t < kTile; ++t) xrow[t] = x + (t0 + (t < n ? t : n - 1)) * cols;
            span_n<S, R, V>((n + S::kTokens - 1) / S::kTokens, &(*buffer)[static_cast<size_t>(tile * R * V)].v, rows, xrow,
                            k0, k1);
        }
    }
    const int tail = static_cast<int>(cols - body);
    for (int tile = 0; tile < tiles; ++tile)
        for (int i = 0; i < R; ++i)
            for (int v = 0; v < V; ++v)
                for (int h = 0; h < S::kTokens; ++h) {
                    const int t = tile * kTile + v * S::kTokens + h;
                    if (t >= n_tokens) continue;
                    const float sum = S::sum((*buffer)[static_cast<size_t>((tile * R + i) * V + v)].v, h);
                    out[t * out_stride + r + i] = add_tail(sum, rows[i] + body, x + t * cols + body, tail);
                }
}

struct F16 {
    using W = uint16_t;
    static __m512 load16(const uint16_t* p) {
        return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    }
    static float one(uint16_t h) { return _cvtsh_ss(h); }
};
struct BF16 {
    using W = uint16_t;
    static __m512 load16(const uint16_t* p) {
        const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
        return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
    }
    static float one(uint16_t h) {
        const uint32_t bits = static_cast<uint32_t>(h) << 16;
        float f;
        std::memcpy(&f, &bits, 4);
        return f;
    }
};

// Rows [r, r + n) of 16-bit weights as f32 (exact), one after another.
template <class L>
void widen_rows(float* out, const typename L::W* w, int64_t cols, int64_t r, int n) {
    const typename L::W* in = w + r * cols;
    const int64_t total = n * cols;
    int64_t i = 0;
    for (; i + 16 <= total; i += 16) _mm512_storeu_ps(out + i, L::load16(in + i));
    for (; i < total; ++i) out[i] = L::one(in[i]);
}

// Tile shapes: R x V accumulators, V token registers and one weight register
// in 32 (6 x 4 + 4 + 1); 6 rows divide the matmul's 12-row chunks.
constexpr int kRows = 6;
constexpr int kVectors = 4;

// Rows [r0, r1) in blocks of kRows (then one at a time); 16-bit rows are
// widened once per block, for all of the batch's tiles.
template <class S, class L>
void matmul_blocks(float* out, int64_t out_stride, const void* w_data, int64_t cols, const float* x, int n_tokens,
                   int64_t r0, int64_t r1) {
    thread_local std::vector<Acc> buffer;
    thread_local std::vector<float> widened;
    auto block = [&](auto rows_c, int64_t r) {
        constexpr int R = decltype(rows_c)::value;
        const float* rows[R];
        if constexpr (std::is_same_v<L, float>) {
            for (int i = 0; i < R; ++i) rows[i] = static_cast<const float*>(w_data) + (r + i) * cols;
        } else {
            widened.resize(static_cast<size_t>(R * cols));
            widen_rows<L>(widened.data(), static_cast<const typename L::W*>(w_data), cols, r, R);
            for (int i = 0; i < R; ++i) rows[i] = widened.data() + i * cols;
        }
        row_block<S, R, kVectors>(out, out_stride, rows, cols, x, n_tokens, r, &buffer);
    };
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) block(std::integral_constant<int, kRows>{}, r);
    for (; r < r1; ++r) block(std::integral_constant<int, 1>{}, r);
}

}  // namespace

void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_f32(out, out_stride, w, cols, x, n_tokens, r0, r1);
    matmul_blocks<Pairs, float>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_f16(out, out_stride, w, cols, x, n_tokens, r0, r1);
    matmul_blocks<Wide, F16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_bf16(out, out_stride, w, cols, x, n_tokens, r0, r1);
    matmul_blocks<Wide, BF16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

// Four 16-float accumulators: a cache line per load.
float read_bandwidth_probe(const float* data, int64_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_loadu_ps(data + i));
        s1 = _mm512_add_ps(s1, _mm512_loadu_ps(data + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_loadu_ps(data + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_loadu_ps(data + i + 48));
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; ++i) sum += data[i];
    return sum;
}

}  // namespace ferry::kernels::avx512
#endif
