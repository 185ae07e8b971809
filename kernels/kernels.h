// The compute kernels of the forward pass. Pure functions of their arguments:
// no I/O, no logging, no sockets. Every kernel has a naive twin in
// kernels/reference.h that the tests compare it with.
//
// Determinism contract. A pipeline of mixed machines (an AVX2 laptop, an
// SSE2 Pentium 4, a scalar Pentium II) must print exactly the tokens of one
// process, for any split, and a failover re-runs layers on another machine.
// So, for every kernel here:
//  1. every level (scalar, SSE2, SSSE3, AVX2, AVX-512) gives bit-identical
//     results for the same inputs;
//  2. no result depends on the thread count: work is split by output rows
//     (or tokens/heads), never inside a reduction;
//  3. a batch of n tokens gives, for every token, bit for bit what the same
//     token gives alone (batched prefill equals one-token decode).
// How: every reduction has one canonical order, written once in the scalar
// code and matched by the SIMD code; no fused multiply-add (the build has
// -ffp-contract=off and the SIMD code uses separate mul and add);
// expf/powf/sinf/cosf are the same libm call on every level; F16 and BF16
// are widened to f32 exactly (F16C's conversion equals the scalar one).
//  * Dot products in matmul, with L = 8 lanes for f32 weights and L = 16 for
//    f16 and bf16: lane j (j < L) sums the products of elements i = j (mod L)
//    below n - n % L in increasing i (starting from 0); with 16 lanes
//    s_j += s_(j+8) for j < 8; then sum = ((s0 + s4) + (s2 + s6)) +
//    ((s1 + s5) + (s3 + s7)), and the last n % L products are added to sum
//    one at a time. (16 lanes give one row of 16-bit weights two independent
//    add chains, which decode needs to stream them at memory speed; f32 rows
//    bring twice the bytes per add and keep 8 lanes, which tile better for
//    prefill.)
//  * rmsnorm, softmax, attention keep llama2.c run.c's sequential order (sum
//    from 0, element by element), so ferry's tokens equal run.c's; the SIMD
//    code vectorizes across independent sums (positions, elements), never
//    inside one.
// On 32-bit x87 builds the scalar code rounds every operation to float (one
// operation per statement plus -ffloat-store, see kernels/CMakeLists.txt), so a
// Pentium II computes the same floats as SSE.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/tensor_type.h"
#include "kernels/thread_pool.h"

namespace ferry::kernels {

// out[t * w.rows + r] = sum_c W[r, c] * x[t * w.cols + c], for t < n_tokens.
// Dense types (f32, f16, bf16) are computed here; quantized types go to
// quant_matmul (kernels/quants.h), which quantizes x as its dot product needs.
// pool may be nullptr (single thread).
void matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool);

// True if matmul supports w.type.
bool matmul_supports(TensorType type);

// True if products of `type` run on the scalar kernels at `level` although it
// is not the scalar level: the level has no kernel for that type (e.g. the
// dense types on 32-bit ARM, whose NEON is not IEEE). Same results either way.
bool matmul_falls_back(TensorType type, Level level);

// Row `row` of w as f32 (embedding lookup). out has w.cols floats.
void dequantize_row(const Matrix& w, int64_t row, float* out);

// out[i] = weight[i] * (x[i] / sqrt(mean(x^2) + eps)); out may alias x.
void rmsnorm(float* out, const float* x, const float* weight, int n, float eps);

// In place, max-subtracted, expf, divide by the sum.
void softmax(float* x, int n);

// Rotary embedding on interleaved pairs (llama2.c / GGML "normal" mode) for the
// query (q_dim values) and key (kv_dim values) of one position.
// Pair i of a head uses frequency 1 / theta^(2i / head_size), divided by
// freq_factors[i] when given (Llama 3.1+ `rope_freqs.weight`, head_size / 2 values).
void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors = nullptr);

// The same rotation on the halves of each head (GGML "NeoX" mode: qwen2,
// qwen3, bitnet): value j pairs with value j + head_size / 2, at frequency
// 1 / theta^(2j / head_size).
void rope_neox(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta);

// hb[i] = silu(hb[i]) * up[i]
void swiglu(float* hb, const float* up, int n);

// Causal self-attention for one token at position pos, all heads.
// q: n_heads * head_size. key/value: a KV cache's rows as stored, row p the
// kv_dim = n_kv_heads * head_size values of position p (rows 0..pos are read),
// of type F32, F16 or Q8_0 (GGML blocks, kv_dim a multiple of 32), head_size
// at most kMaxAttentionHeadSize; callers guarantee both (KVCache refuses a
// Q8_0 width, ModelConfig::check a head size). att: scratch of
// n_heads * (pos + 1). out: n_heads * head_size. Head h reads kv head
// h / (n_heads / n_kv_heads). The result equals, bit for bit, decoding every
// row to f32 (dequantize_row) and attending over that; F16/Q8_0 rows are
// widened a few positions at a time instead, so no decoded copy exists.
constexpr int kMaxAttentionHeadSize = 4096;  // one head of a span fills the 16 KB widening buffer
void attention(float* out, float* att, const float* q, const Matrix& key, const Matrix& value, int pos,
               int n_heads, int n_kv_heads, int head_size);
// The same over f32 rows (row p at key + p * kv_dim).
void attention(float* out, float* att, const float* q, const float* key, const float* value, int pos,
               int n_heads, int n_kv_heads, int head_size);

// Sums a buffer as fast as the active level can read it: the memory
// bandwidth probe used by `ferry bench` and the worker's capability report.
// Returns the sum so the compiler cannot drop the reads.
float read_bandwidth_probe(const float* data, int64_t n);

// Memory read bandwidth of this machine: a buffer of `bytes` (make it far
// larger than the caches) and timed passes of read_bandwidth_probe over it,
// read in 1 MiB chunks by the threads of a pool the way matmul reads weights.
class ReadBandwidthProbe {
public:
    explicit ReadBandwidthProbe(int64_t bytes);
    int64_t bytes() const { return static_cast<int64_t>(buffer_.size()) * 4; }
    // Bytes per second of one pass; pool nullptr: this thread alone. Where
    // the active level has more than one reading loop (AVX-512's zmm loop and
    // AVX2's, which reads faster on AMD Zen 5), passes take them in turn, so
    // the best of several passes is the best loop's.
    double pass(ThreadPool* pool);

private:
    std::vector<float> buffer_;
    std::vector<float> sums_;
    int passes_ = 0;
};

// Bytes per second of each of `passes` passes of a ReadBandwidthProbe(bytes).
std::vector<double> measure_read_bandwidth(int64_t bytes, int passes, ThreadPool* pool);

}  // namespace ferry::kernels
