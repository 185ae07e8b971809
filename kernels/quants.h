// Matrix products and row decoding for the GGML block types (Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K..Q6_K, TQ1_0, TQ2_0) and llama2.c's Q8_GROUP.
// matmul() and dequantize_row() in kernels.h hand these types here.
//
// The weights are used in their stored layout (no f32 copy, no repacking):
// each token's activations are quantized once per call (Q8_0 for the
// 32-value types, Q8_K for the 256-value ones, groups for Q8_GROUP) and every
// block's dot product is an exact integer sum, scaled in f32 in the one
// canonical order of kernels/quant_dot.h. So every level (scalar to AVX-512),
// any thread count, and a token alone or in a batch all give the same bits.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/tensor_type.h"
#include "kernels/thread_pool.h"

namespace ferry::kernels {

bool quant_matmul_supports(TensorType type);

// True if `type`'s products use the scalar kernel at `level` (it has none of its own).
bool quant_falls_back(TensorType type, Level level);
// Same contract as matmul() in kernels.h. A matrix whose rows are not whole
// blocks of its type gives zeros.
void quant_matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool);
// Batches of at least this many tokens take the AVX-512 level's token-lane
// prefill kernels, smaller ones its token tiles (quants.cpp says where the
// default comes from). Either path gives the same bits; the setter is for
// benchmarks and tests that compare them. Returns the previous value.
int set_lane_min_tokens(int n_tokens);
// Same contract as dequantize_row(), bit for bit GGML's to_float; false if
// the type is not handled here or the rows are not whole blocks.
bool quant_dequantize_row(const Matrix& w, int64_t row, float* out);

}  // namespace ferry::kernels
