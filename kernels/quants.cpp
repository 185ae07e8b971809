#include "kernels/quants.h"

namespace ferry::kernels {

// No GGML block types beyond f32/q8 yet.
bool quant_matmul_supports(TensorType) { return false; }
void quant_matmul(float*, const Matrix&, const float*, int, ThreadPool*) {}
bool quant_dequantize_row(const Matrix&, int64_t, float*) { return false; }

}  // namespace ferry::kernels
