// Writing and reading tensors in GGML's storage types, byte-exact with GGML:
// what `ferry quantize` / `ferry synth` write and what the oracle tests check.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/tensor_type.h"

namespace ferry::kernels {

// True if rows of n_per_row values can be stored as `type` (a whole number of
// blocks, a type ferry can write: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0,
// Q5_1, Q2_K..Q6_K, IQ4_NL, TQ1_0, TQ2_0).
bool can_quantize(TensorType type, int64_t n_per_row);

// Quantizes nrows x n_per_row f32 values into `type`'s blocks exactly as
// ggml's reference quantizer (ggml_quantize_chunk with imatrix = NULL).
// Returns bytes written; 0 (and writes nothing) if !can_quantize(type, n_per_row).
size_t quantize_rows(TensorType type, const float* src, void* dst, int64_t nrows, int64_t n_per_row);

// Decodes n values of `type` to f32 exactly as ggml's to_float does (bit for
// bit), for every type of tensor_type.h but Q8_GROUP. n must be a whole
// number of blocks; otherwise, or for Q8_GROUP, dst gets n zeros.
void dequantize_values(TensorType type, const void* src, float* dst, int64_t n);

}  // namespace ferry::kernels
