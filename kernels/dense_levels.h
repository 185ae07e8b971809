// The per-instruction-set halves of the dense kernels (private to kernels/).
// kernels.h's functions do the checks, the threading and the dispatch; the
// functions here only compute. Each level implements the same canonical
// arithmetic order (see kernels.h), so they are interchangeable bit for bit.
#pragma once
#include <cstdint>

#include "kernels/cpu_features.h"

namespace ferry {
struct BlockQ8_0;
}

namespace ferry::kernels {

// out[t * out_stride + r] = dot(row r of w, x + t * cols) for r in [r0, r1),
// t < n_tokens, in the canonical order. Row r of w starts at element r * cols.
// Where the level has an ActsPacking for the type (below) and n_tokens > 1,
// x is the packed copy instead, holding the same values.
using MatmulRowsFn = void (*)(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x,
                              int n_tokens, int64_t r0, int64_t r1);

// A prefill product's activations rearranged for a level's tiles, once per
// product; the level's matmul_<type> then reads the packed copy in place of
// x whenever n_tokens > 1 (every thread's rows the same copy). pack writes
// tokens [t0, t1) of n_tokens (threads may pack disjoint ranges at once).
// Null where the level reads x as it is.
struct ActsPacking {
    int64_t (*floats)(int64_t cols, int n_tokens);  // the packed copy's size
    void (*pack)(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1);
};

struct DenseKernels {
    MatmulRowsFn matmul_f32;
    MatmulRowsFn matmul_f16;
    MatmulRowsFn matmul_bf16;
    ActsPacking pack_f32, pack_f16, pack_bf16;
    // For each of n_q query heads h (at q + h * head_size) that read the same
    // key head: att[h * att_stride + t] =
    //   (sum_i q_h[i] * key[t * key_stride + i], i = 0, 1, ... in order) / scale
    // for t < n_pos: run.c's sequential order, whichever way it is vectorized.
    void (*attention_scores)(float* att, int64_t att_stride, const float* q, int n_q, const float* key,
                             int64_t key_stride, int n_pos, int head_size, float scale);
    // out[i] += att[t] * value[t * value_stride + i], t = 0, 1, ... in order,
    // for i < head_size: run.c's order when out starts at 0, and still when a
    // run of positions is split into consecutive spans (attention reads a
    // 16-bit or quantized cache a span at a time).
    void (*attention_values)(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,
                             int head_size);
    // out[i] = fp16_to_fp32(in[i]) for i < n (exact on every level).
    void (*widen_f16)(float* out, const uint16_t* in, int64_t n);
    // Values [begin, begin + n) of a Q8_0 row (kernels/attention_widen.h).
    void (*widen_q8_0)(float* out, const BlockQ8_0* blocks, int begin, int n);
    // Any sum of data[0..n): only the reading speed matters.
    float (*read_bandwidth_probe)(const float* data, int64_t n);
};

// Each level's functions, in namespaces scalar::, sse2::, avx2:: (x86 builds)
// and neon:: (aarch64 builds), with the contracts of the fields above.
#define FERRY_DENSE_LEVEL_FUNCTIONS                                                                               \
    void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,    \
                    int64_t r0, int64_t r1);                                                                      \
    void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,    \
                    int64_t r0, int64_t r1);                                                                      \
    void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,   \
                     int64_t r0, int64_t r1);                                                                     \
    void attention_scores(float* att, int64_t att_stride, const float* q, int n_q, const float* key,            \
                          int64_t key_stride, int n_pos, int head_size, float scale);                             \
    void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,     \
                          int head_size);                                                                         \
    void widen_f16(float* out, const uint16_t* in, int64_t n);                                                    \
    void widen_q8_0(float* out, const BlockQ8_0* blocks, int begin, int n);                                       \
    float read_bandwidth_probe(const float* data, int64_t n);
namespace scalar { FERRY_DENSE_LEVEL_FUNCTIONS }
namespace sse2 { FERRY_DENSE_LEVEL_FUNCTIONS }
namespace avx2 { FERRY_DENSE_LEVEL_FUNCTIONS }
namespace neon { FERRY_DENSE_LEVEL_FUNCTIONS }  // aarch64 only
#undef FERRY_DENSE_LEVEL_FUNCTIONS
// AVX-512 (x86-64 only) has its own prefill tiles, which read packed
// activations (f32 in one layout, f16 and bf16 in another); the rest of its
// table is AVX2's.
namespace avx512 {
int64_t packed_floats_f32(int64_t cols, int n_tokens);
void pack_f32(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1);
int64_t packed_floats_wide(int64_t cols, int n_tokens);
void pack_wide(float* packed, const float* x, int64_t cols, int n_tokens, int t0, int t1);
void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1);
void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1);
void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1);
float read_bandwidth_probe(const float* data, int64_t n);
}  // namespace avx512

// The kernels of `level`, falling back to scalar on builds without it.
const DenseKernels& dense_kernels(Level level);

}  // namespace ferry::kernels
