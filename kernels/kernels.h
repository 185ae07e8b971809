// The compute kernels of the forward pass. Pure functions of their arguments:
// no I/O, no logging, no sockets. Every kernel has a naive twin in
// kernels/reference.h that the tests compare it with.
//
// Determinism contract (the pipeline relies on it for token-exact output):
//  * a result never depends on the thread count: work is split by output rows
//    or heads, never inside a reduction;
//  * matmul over a batch of tokens gives, for every token, bit-for-bit the
//    numbers matvec gives for that token alone, so batched prefill and
//    one-token decode agree exactly.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/tensor_type.h"
#include "kernels/thread_pool.h"

namespace ferry::kernels {

// out[t * w.rows + r] = sum_c W[r, c] * x[t * w.cols + c], for t < n_tokens.
// Quantized W types quantize x on the fly as their dot product needs.
// pool may be nullptr (single thread).
void matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool);

// True if matmul supports w.type (f32, q8_0, q8_group so far).
bool matmul_supports(TensorType type);

// Row `row` of w as f32 (embedding lookup). out has w.cols floats.
void dequantize_row(const Matrix& w, int64_t row, float* out);

// out[i] = weight[i] * x[i] / sqrt(mean(x^2) + eps); out may alias x.
void rmsnorm(float* out, const float* x, const float* weight, int n, float eps);

// In place, max-subtracted, expf, divide by the sum.
void softmax(float* x, int n);

// Rotary embedding on interleaved pairs (llama2.c / GGML "normal" mode) for the
// query (q_dim values) and key (kv_dim values) of one position.
// Pair i of a head uses frequency 1 / theta^(2i / head_size), divided by
// freq_factors[i] when given (Llama 3.1+ `rope_freqs.weight`, head_size / 2 values).
void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors = nullptr);

// hb[i] = silu(hb[i]) * up[i]
void swiglu(float* hb, const float* up, int n);

// Causal self-attention for one token at position pos, all heads.
// q: n_heads * head_size. key/value: rows of kv_dim floats for positions
// 0..pos (row p at key + p * kv_dim). att: scratch of n_heads * (pos + 1).
// out: n_heads * head_size. Head h reads kv head h / (n_heads / n_kv_heads).
void attention(float* out, float* att, const float* q, const float* key, const float* value, int pos,
               int n_heads, int n_kv_heads, int head_size);

// Sums a buffer as fast as the active level can read it: the memory
// bandwidth probe used by `ferry bench` and the worker's capability report.
// Returns the sum so the compiler cannot drop the reads.
float read_bandwidth_probe(const float* data, int64_t n);

}  // namespace ferry::kernels
