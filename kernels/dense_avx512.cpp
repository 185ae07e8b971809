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
// Separate multiply and add (never FMA), as on every level.
#if defined(__x86_64__)
// GCC 12's own AVX-512 headers build some results from _mm512_undefined_*()
// and then warn that it is uninitialized (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>

#include "kernels/dense_levels.h"

namespace ferry::kernels::avx512 {

namespace {

// ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
inline float reduce8(__m256 v) {
    const __m128 t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 u = _mm_add_ps(t, _mm_movehl_ps(t, t));
    return _mm_cvtss_f32(_mm_add_ss(u, _mm_shuffle_ps(u, u, 1)));
}

// The canonical tail: the last products added one at a time.
inline float add_tail(float sum, const float* w_tail, const float* x_tail, int n) {
    for (int j = 0; j < n; ++j) {
        const float p = w_tail[j] * x_tail[j];
        sum += p;
    }
    return sum;
}

// f32, 8 lanes: R rows against P pairs of tokens.
template <int R, int P>
void f32_tile(float* out, int64_t out_stride, const float* w, int64_t cols, const float* x, int64_t r) {
    const float* row[R];
    for (int i = 0; i < R; ++i) row[i] = w + (r + i) * cols;
    __m512 acc[R][P];
    for (int i = 0; i < R; ++i)
        for (int p = 0; p < P; ++p) acc[i][p] = _mm512_setzero_ps();
    const int64_t body = cols - cols % 8;
    for (int64_t k = 0; k < body; k += 8) {
        __m512 xv[P];
        for (int p = 0; p < P; ++p)
            xv[p] = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x + 2 * p * cols + k)),
                                       _mm256_loadu_ps(x + (2 * p + 1) * cols + k), 1);
        for (int i = 0; i < R; ++i) {
            const __m512 wv = _mm512_broadcast_f32x8(_mm256_loadu_ps(row[i] + k));
            for (int p = 0; p < P; ++p) acc[i][p] = _mm512_add_ps(acc[i][p], _mm512_mul_ps(wv, xv[p]));
        }
    }
    const int tail = static_cast<int>(cols - body);
    for (int i = 0; i < R; ++i)
        for (int p = 0; p < P; ++p)
            for (int h = 0; h < 2; ++h) {
                const int t = 2 * p + h;
                const float sum = reduce8(h ? _mm512_extractf32x8_ps(acc[i][p], 1) : _mm512_castps512_ps256(acc[i][p]));
                out[t * out_stride + r + i] = add_tail(sum, row[i] + body, x + t * cols + body, tail);
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

// 16-bit weights, 16 lanes: R rows against T tokens.
template <class L, int R, int T>
void wide_tile(float* out, int64_t out_stride, const typename L::W* w, int64_t cols, const float* x, int64_t r) {
    const typename L::W* row[R];
    for (int i = 0; i < R; ++i) row[i] = w + (r + i) * cols;
    __m512 acc[R][T];
    for (int i = 0; i < R; ++i)
        for (int t = 0; t < T; ++t) acc[i][t] = _mm512_setzero_ps();
    const int64_t body = cols - cols % 16;
    for (int64_t k = 0; k < body; k += 16) {
        __m512 xv[T];
        for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_ps(x + t * cols + k);
        for (int i = 0; i < R; ++i) {
            const __m512 wv = L::load16(row[i] + k);
            for (int t = 0; t < T; ++t) acc[i][t] = _mm512_add_ps(acc[i][t], _mm512_mul_ps(wv, xv[t]));
        }
    }
    const int tail = static_cast<int>(cols - body);
    for (int i = 0; i < R; ++i) {
        float wt[16];
        for (int j = 0; j < tail; ++j) wt[j] = L::one(row[i][body + j]);
        for (int t = 0; t < T; ++t) {
            const __m256 folded =
                _mm256_add_ps(_mm512_castps512_ps256(acc[i][t]), _mm512_extractf32x8_ps(acc[i][t], 1));
            out[t * out_stride + r + i] = add_tail(reduce8(folded), wt, x + t * cols + body, tail);
        }
    }
}

// Tile shapes: accumulators, the tokens' vectors and one weight vector fill
// at most 32 registers (f32: 4 x 4 pairs + 4 + 1; 16-bit: 4 x 5 + 5 + 1).
constexpr int kRows = 4;
constexpr int kF32Pairs = 4;
constexpr int kWideTokens = 5;

// Rows [r, r + R) for every token: tiles of the widest shape, then narrower
// ones for the tokens left.
template <int R, int P>
void f32_rows(float* out, int64_t out_stride, const float* w, int64_t cols, const float* x, int n_tokens,
              int64_t r) {
    int t = 0;
    for (; t + 2 * P <= n_tokens; t += 2 * P) f32_tile<R, P>(out + t * out_stride, out_stride, w, cols, x + t * cols, r);
    if constexpr (P > 1)
        if (n_tokens - t >= 2)
            return f32_rows<R, P - 1>(out + t * out_stride, out_stride, w, cols, x + t * cols, n_tokens - t, r);
    // One token left: AVX2's 8-lane tile, the same order.
    if (n_tokens > t) avx2::matmul_f32(out + t * out_stride, out_stride, w, cols, x + t * cols, 1, r, r + R);
}

template <class L, int R, int T>
void wide_rows(float* out, int64_t out_stride, const typename L::W* w, int64_t cols, const float* x, int n_tokens,
               int64_t r) {
    int t = 0;
    for (; t + T <= n_tokens; t += T) wide_tile<L, R, T>(out + t * out_stride, out_stride, w, cols, x + t * cols, r);
    if constexpr (T > 1)
        if (n_tokens > t) wide_rows<L, R, T - 1>(out + t * out_stride, out_stride, w, cols, x + t * cols, n_tokens - t, r);
}

}  // namespace

void matmul_f32(float* out, int64_t out_stride, const void* w_data, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_f32(out, out_stride, w_data, cols, x, n_tokens, r0, r1);
    const float* w = static_cast<const float*>(w_data);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) f32_rows<kRows, kF32Pairs>(out, out_stride, w, cols, x, n_tokens, r);
    for (; r < r1; ++r) f32_rows<1, kF32Pairs>(out, out_stride, w, cols, x, n_tokens, r);
}

namespace {
template <class L>
void wide_matmul(float* out, int64_t out_stride, const void* w_data, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    const typename L::W* w = static_cast<const typename L::W*>(w_data);
    int64_t r = r0;
    for (; r + kRows <= r1; r += kRows) wide_rows<L, kRows, kWideTokens>(out, out_stride, w, cols, x, n_tokens, r);
    for (; r < r1; ++r) wide_rows<L, 1, kWideTokens>(out, out_stride, w, cols, x, n_tokens, r);
}
}  // namespace

void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_f16(out, out_stride, w, cols, x, n_tokens, r0, r1);
    wide_matmul<F16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    if (n_tokens == 1) return avx2::matmul_bf16(out, out_stride, w, cols, x, n_tokens, r0, r1);
    wide_matmul<BF16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}

}  // namespace ferry::kernels::avx512
#endif
