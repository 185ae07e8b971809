// Matrix products and row decoding for the GGML block types beyond f32 and
// q8 (Q4_0, Q4_K, TQ2_0, ...). matmul() and dequantize_row() in kernels.h
// hand these types to the functions here.
#pragma once
#include <cstdint>

#include "kernels/tensor_type.h"
#include "kernels/thread_pool.h"

namespace ferry::kernels {

bool quant_matmul_supports(TensorType type);
// Same contract as matmul() in kernels.h.
void quant_matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool);
// Same contract as dequantize_row(); false if the type is not handled here.
bool quant_dequantize_row(const Matrix& w, int64_t row, float* out);

}  // namespace ferry::kernels
