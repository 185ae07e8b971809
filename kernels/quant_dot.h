// The integer dot products of the quantized matmul (private to kernels/):
// quantized activations, the one canonical arithmetic order every level
// follows, and the per-level kernel tables.
//
// Canonical order. A weight row is a run of blocks b = 0 .. nb-1: 32 values
// for the types whose activations are Q8_0 (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// IQ4_NL), 256 for those with Q8_K activations (K-quants, TQ1_0, TQ2_0), one
// group for Q8_GROUP. For row r and token t:
//   isum_b = exact integer sum over the block of sum_g scale_g * (level * xq)
//   msum_b = exact integer sum over the block of sum_g min_g * (sum of xq in g)
//   term_b = (d_w * d_x) * float(isum_b) - (dmin_w * d_x) * float(msum_b)
//            (the second product only for types with mins; BlockInts in
//            quant_formats.h defines level, scale, min, d and dmin)
//   acc[b % 8] += term_b, every acc starting at +0.0f, b increasing
//   out = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))
// Integer sums are exact however they are computed (the SIMD code sums in any
// order and subtracts offsets like 8 * sum(xq) afterwards); every float
// operation above is one IEEE f32 operation, in this order, on every level,
// for every token of a batch. So every level agrees bit for bit, and
// a token gives the same bits alone or in a batch, on any thread count.
#pragma once
#include <cstdint>
#include <type_traits>

#include "kernels/cpu_features.h"
#include "kernels/tensor_type.h"

namespace ferry::kernels {

// Activations of n_tokens tokens quantized for one weight type's dot product.
struct QuantActs {
    TensorType type = TensorType::Q8_0;  // Q8_0, Q8_K or Q8_GROUP
    int64_t cols = 0;
    int n_tokens = 0;
    int64_t block = 0;  // values per scale: 32, 256 or the group
    // Values per token in the arrays below: cols, or for Q8_0 cols rounded up
    // to whole groups of 8 blocks, the padding all zero (so SIMD code can run
    // a row's last blocks as a full group of 8).
    int64_t stride = 0;
    // Token t at qs + t * stride; 32-byte aligned. Q8_0 activations are stored
    // by pairs of blocks, so that one 32-byte load meets the 16 low (or high)
    // nibbles of two weight blocks: blocks 2k and 2k+1 occupy 64 bytes, values
    // 0..15 of block 2k, values 0..15 of block 2k+1, then values 16..31 of
    // each (q8_0_index). Q8_K and Q8_GROUP values are in order.
    const int8_t* qs = nullptr;
    const float* d = nullptr;    // token t at d + t * (stride / block)
    // Q8_0: sum of each block's qs, token t at sums + t * (stride / 32).
    const int32_t* sums = nullptr;
    // Q8_K: sum of every 16 qs, token t at bsums + t * (stride / 16), and of
    // each block's 256, token t at block_sums + t * (stride / 256).
    const int16_t* bsums = nullptr;
    const int32_t* block_sums = nullptr;
    // The same activations with tokens in vector lanes, for prefill kernels
    // that broadcast a weight against 16 tokens at once (the AVX-512 level);
    // lane_groups = 0 where they were not built. Group g holds tokens 16g ..
    // 16g + 15, lane l token 16g + l; lanes past n_tokens hold x = 0, d = 0.
    //   lane_qs: for each 4 values k (values 4k .. 4k + 3 of a token, k < stride / 4),
    //            64 bytes at lane_qs + (g * stride / 4 + k) * 64, lane l's 4 bytes
    //            being x + 128 (unsigned), values in their natural order;
    //   lane_d: 16 floats per block, at lane_d + (g * stride / block + b) * 16;
    //   lane_sums: 16 int32 per sum of a.sums (Q8_0, one per block) or a.bsums
    //            (Q8_K, one per 16 values), at lane_sums + (g * n + s) * 16,
    //            n = stride / 32 or stride / 16.
    int lane_groups = 0;
    const uint8_t* lane_qs = nullptr;
    const float* lane_d = nullptr;
    const int32_t* lane_sums = nullptr;
};

// Tokens per lane group (QuantActs::lane_qs).
constexpr int kLaneTokens = 16;

// Where value v (0..31) of Q8_0 block b lies in a token's interleaved qs.
static inline int64_t q8_0_index(int64_t b, int v) { return (b / 2) * 64 + (v / 16) * 32 + (b % 2) * 16 + v % 16; }

// out[t * w.rows + r] for rows [r0, r1) and every token of a, in the canonical order.
using QuantRowsFn = void (*)(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1);

// (static: see quant_blocks.h.) The canonical reduction of the 8 partial sums.
static inline float reduce_acc8(const float* acc) {
    const float s04 = acc[0] + acc[4];
    const float s26 = acc[2] + acc[6];
    const float s15 = acc[1] + acc[5];
    const float s37 = acc[3] + acc[7];
    const float lo = s04 + s26;
    const float hi = s15 + s37;
    return lo + hi;
}

// One block's term, in the canonical order (one operation per statement, so
// that x87 builds with -ffloat-store round like SSE). block_term_min is for
// the types with mins (Q4_1, Q5_1, Q2_K, Q4_K, Q5_K), block_term for the rest:
// which one is a property of the type, never of the values (main - 0 is not
// always main: -0 - -0 = +0).
static inline float block_term(float dw, float dx, int32_t isum) {
    const float scale = dw * dx;
    const float fi = static_cast<float>(isum);
    return scale * fi;
}
static inline float block_term_min(float dw, float dmin, float dx, int32_t isum, int32_t msum) {
    const float main = block_term(dw, dx, isum);
    const float mscale = dmin * dx;
    const float fm = static_cast<float>(msum);
    const float mterm = mscale * fm;
    return main - mterm;
}

// f(std::integral_constant<int, T>{}, t0) over the tokens of a batch: tiles of
// kTile tokens, then the rest one by one (each tile decodes a weight block
// once for all its tokens; how they are grouped never changes a result).
template <int kTile, class F>
static inline void for_token_tiles(int n_tokens, F&& f) {
    int t = 0;
    for (; t + kTile <= n_tokens; t += kTile) f(std::integral_constant<int, kTile>{}, t);
    for (; t < n_tokens; ++t) f(std::integral_constant<int, 1>{}, t);
}

// Kernels of each level; nullptr where a level has none for a type (the
// dispatcher then uses the next lower level, which gives the same bits).
namespace scalar {
QuantRowsFn quant_rows(TensorType type);
}
namespace sse2 {
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace sse2
namespace ssse3 {  // the SSE2 sources built again with -mssse3 (quant_simd_sse2.h)
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace ssse3
namespace neon {  // the SSE2 sources over SIMDe on ARM (quant_simd_sse2.h)
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace neon
namespace dotprod {  // the same with SDOT byte dot products (aarch64)
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace dotprod
namespace avx2 {
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace avx2
namespace avxvnni {  // the AVX2 sources with vpdpbusd (quant_simd_avx2.h); K-quants are AVX2's
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace avxvnni
namespace avx512 {
// Prefill over QuantActs' token lanes (VNNI); nullptr for types it lacks.
QuantRowsFn lane_rows(TensorType type);
// Decode, batches below the lane kernels' and every Q8_GROUP batch: the AVX2
// sources compiled with the level's flags, where byte dot products are the
// EVEX vpdpbusd (quant_simd_avx2.h) and the K-quants take 64 values per
// 512-bit vpdpbusd (quant_kquants_avx2.cpp).
QuantRowsFn legacy_rows(TensorType type);
QuantRowsFn kquant_rows(TensorType type);
QuantRowsFn ternary_rows(TensorType type);
QuantRowsFn q8group_rows(TensorType type);
}  // namespace avx512

}  // namespace ferry::kernels
