// Naive reference implementations of the dense kernels (kernels.h): plain
// loops, double accumulation, no SIMD, no threads. The tests compare every
// kernel level with these. They are slow on purpose: clarity over speed.
#pragma once
#include <cstdint>

#include "kernels/tensor_type.h"

namespace ferry::kernels::reference {

// out[t * w.rows + r] = sum_c W[r, c] * x[t * w.cols + c] in double, rounded
// once; w is f32, f16 or bf16. If abs_sum is given it receives
// sum_c |W[r, c] * x[t * w.cols + c]| (the scale of the rounding error).
void matmul(float* out, const Matrix& w, const float* x, int n_tokens, double* abs_sum = nullptr);

// The canonical float summation order every dot product of matmul promises
// (kernels.h) with `lanes` lanes (8: f32 weights, 16: f16 and bf16), over
// weights already widened to f32, written as plainly as possible: the kernels
// must equal it bit for bit.
float canonical_dot(const float* w, const float* x, int64_t n, int lanes);

void rmsnorm(float* out, const float* x, const float* weight, int n, float eps);
void softmax(float* x, int n);
// The angle of each pair is run.c's float pos * freq; the rest is double.
void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors = nullptr);
// GGML's NeoX pairing (j with j + head_size / 2), all in double.
void rope_neox(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta);
void swiglu(float* hb, const float* up, int n);
void attention(float* out, const float* q, const float* key, const float* value, int pos, int n_heads,
               int n_kv_heads, int head_size);
// Attention over a KV cache's rows as stored (F32, F16 or Q8_0; kernels.h),
// the way ferry computed it before attention read the rows in place: every
// row decoded to f32 with dequantize_row, then run.c's float order (scores
// summed i = 0, 1, ..., kernels::softmax, values accumulated t = 0, 1, ...).
// The kernels must equal it bit for bit.
void attention_rows(float* out, const float* q, const Matrix& key, const Matrix& value, int pos, int n_heads,
                    int n_kv_heads, int head_size);

}  // namespace ferry::kernels::reference
