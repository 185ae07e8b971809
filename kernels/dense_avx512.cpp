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
//
// A prefill product reads its activations packed (pack_f32, pack_wide): per
// tile of tokens, each step's token registers one after another, so a step
// loads one contiguous stream instead of a row per token (and f32 needs no
// half-register inserts). matmul() packs once per product; every thread's
// rows read the same copy.
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
    // The 8-lane sum of the register's token h (0 or 1).
    static float sum(__m512 acc, int h) {
        return reduce_lanes8(h ? _mm512_extractf32x8_ps(acc, 1) : _mm512_castps512_ps256(acc));
    }
};
// 16-bit weights (widened), 16 lanes: one token's lanes 0-15.
struct Wide {
    static constexpr int kStep = 16, kTokens = 1;
    static __m512 w(const float* row, int64_t k) { return _mm512_loadu_ps(row + k); }
    static float sum(__m512 acc, int) {
        return reduce_lanes8(_mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)));
    }
};

// A register's worth of accumulators in a buffer (a struct: std::vector
// drops __m512's alignment attribute from a template argument).
struct alignas(64) Acc {
    __m512 v;
};

// Tile shapes: R x V accumulators, V token registers and one weight register
// in 32 (6 x 4 + 4 + 1); 6 rows divide the matmul's 12-row chunks.
constexpr int kRows = 6;
constexpr int kVectors = 4;

// Elements per span: each span's rows (R x kSpan f32) stay in L1 while every
// token tile of the batch passes over them; the accumulators wait in a
// buffer between spans, so every lane still sums its elements in order.
constexpr int64_t kSpan = 512;

// The packed activations: tiles of kTile tokens, each kTile x cols floats
// rounded up to a cache line (so that, from a 64-byte-aligned base, no
// register load splits across two lines). A tile holds, for each step of the
// body (cols rounded down to kStep), its V registers' kTile x kStep floats in
// order, then each token's tail (cols % kStep floats). A last tile short of
// tokens is padded with zeros: f32's register that pairs the last token with
// padding is computed (its padding half never stored); the rest is not read.
template <class S>
struct Packed {
    static constexpr int kTile = kVectors * S::kTokens;
    static_assert(kTile * S::kStep == kVectors * 16, "a step's V registers of 16 floats, one after another");
    static int tiles(int n_tokens) { return (n_tokens + kTile - 1) / kTile; }
    static int64_t tile_floats(int64_t cols) { return (kTile * cols + 15) / 16 * 16; }
    static int64_t floats(int64_t cols, int n_tokens) { return tiles(n_tokens) * tile_floats(cols); }
    // Tokens [t0, t1) of n_tokens; the one that packs the last token pads the last tile.
    static void pack(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1) {
        const int64_t body = cols - cols % S::kStep, tail = cols - body;
        const int end = t1 == n_tokens ? tiles(n_tokens) * kTile : t1;
        for (int token = t0; token < end; ++token) {
            float* p = packed + token / kTile * tile_floats(cols);
            const int t = token % kTile;
            const float* row = token < n_tokens ? x + token * cols : nullptr;  // nullptr: padding
            auto put = [&](float* to, int64_t k, int64_t n) {
                if (row) std::memcpy(to, row + k, sizeof(float) * n);
                else std::memset(to, 0, sizeof(float) * n);
            };
            for (int64_t k = 0; k < body; k += S::kStep) put(p + k * kTile + t * S::kStep, k, S::kStep);
            put(p + body * kTile + t * tail, body, tail);
        }
    }
};

// acc[i * kVectors + v] += rows[i] times register v's tokens over elements
// [k0, k1), for the first V of the tile's kVectors registers, reading its
// packed activations xp. With prefetch, the rows' next span is fetched
// meanwhile (the tile that ends a span asks, so that the first tile of the
// next finds them in cache).
template <class S, int R, int V>
inline void span(__m512* acc, const float* const* rows, const float* xp, int64_t k0, int64_t k1, bool prefetch) {
    constexpr int kTile = Packed<S>::kTile;
    __m512 a[R][V];
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) a[i][v] = acc[i * kVectors + v];
    for (int64_t k = k0; k < k1; k += S::kStep) {
        __m512 xv[V];
        for (int v = 0; v < V; ++v) xv[v] = _mm512_loadu_ps(xp + k * kTile + v * 16);
        if (prefetch)
            for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(rows[i] + k + kSpan), _MM_HINT_T0);
        for (int i = 0; i < R; ++i) {
            const __m512 wv = S::w(rows[i], k);
            for (int v = 0; v < V; ++v) a[i][v] = _mm512_add_ps(a[i][v], _mm512_mul_ps(wv, xv[v]));
        }
    }
    for (int i = 0; i < R; ++i)
        for (int v = 0; v < V; ++v) acc[i * kVectors + v] = a[i][v];
}

// A tile of V registers' tokens whose count is only known at run time.
template <class S, int R, int V = kVectors>
inline void span_n(int v, __m512* acc, const float* const* rows, const float* xp, int64_t k0, int64_t k1,
                   bool prefetch) {
    if constexpr (V > 0) {
        if (v == V) return span<S, R, V>(acc, rows, xp, k0, k1, prefetch);
        span_n<S, R, V - 1>(v, acc, rows, xp, k0, k1, prefetch);
    }
}

// Rows (R of them, f32, rows[i] for output row r + i) against every token
// of the packed activations xp.
template <class S, int R>
void row_block(float* out, int64_t out_stride, const float* const* rows, int64_t cols, const float* xp, int n_tokens,
               int64_t r, std::vector<Acc>* buffer) {
    constexpr int V = kVectors, kTile = Packed<S>::kTile;
    const int tiles = Packed<S>::tiles(n_tokens);
    const int64_t tile_floats = Packed<S>::tile_floats(cols);
    buffer->assign(static_cast<size_t>(tiles * R * V), Acc{_mm512_setzero_ps()});
    const int64_t body = cols - cols % S::kStep;
    for (int64_t k0 = 0; k0 < body; k0 += kSpan) {
        const int64_t k1 = k0 + kSpan < body ? k0 + kSpan : body;
        for (int tile = 0; tile < tiles; ++tile) {
            const int n = n_tokens - tile * kTile < kTile ? n_tokens - tile * kTile : kTile;
            span_n<S, R>((n + S::kTokens - 1) / S::kTokens, &(*buffer)[static_cast<size_t>(tile * R * V)].v, rows,
                         xp + tile * tile_floats, k0, k1, tile == tiles - 1);
        }
    }
    const int tail = static_cast<int>(cols - body);
    for (int tile = 0; tile < tiles; ++tile)
        for (int i = 0; i < R; ++i)
            for (int v = 0; v < V; ++v)
                for (int h = 0; h < S::kTokens; ++h) {
                    const int tt = v * S::kTokens + h, t = tile * kTile + tt;
                    if (t >= n_tokens) continue;
                    const float sum = S::sum((*buffer)[static_cast<size_t>((tile * R + i) * V + v)].v, h);
                    const float* x_tail = xp + tile * tile_floats + body * kTile + tt * tail;
                    out[t * out_stride + r + i] = add_tail(sum, rows[i] + body, x_tail, tail);
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

// Rows [r0, r1) in blocks of kRows (then one at a time) against the packed
// activations xp; 16-bit rows are widened once per block, for all of the
// batch's tiles.
template <class S, class L>
void matmul_blocks(float* out, int64_t out_stride, const void* w_data, int64_t cols, const float* xp, int n_tokens,
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
        row_block<S, R>(out, out_stride, rows, cols, xp, n_tokens, r, &buffer);
    };
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) block(std::integral_constant<int, kRows>{}, r);
    for (; r < r1; ++r) block(std::integral_constant<int, 1>{}, r);
}

}  // namespace

// Prefill batches (n_tokens > 1) arrive packed by pack_f32 / pack_wide
// (dense_levels.h); one token is AVX2's decode, which reads x as it is.
int64_t packed_floats_f32(int64_t cols, int n_tokens) { return Packed<Pairs>::floats(cols, n_tokens); }
void pack_f32(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1) {
    Packed<Pairs>::pack(packed, x, cols, n_tokens, t0, t1);
}
int64_t packed_floats_wide(int64_t cols, int n_tokens) { return Packed<Wide>::floats(cols, n_tokens); }
void pack_wide(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1) {
    Packed<Wide>::pack(packed, x, cols, n_tokens, t0, t1);
}

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
