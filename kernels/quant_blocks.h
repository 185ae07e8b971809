// GGML block layouts (exactly as GGML stores them) and the activation
// quantizers the integer dot products use.
#pragma once
#include <cstdint>

namespace ferry {

constexpr int kQK8_0 = 32;
struct BlockQ8_0 {
    uint16_t d;  // fp16 scale
    int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "GGML block_q8_0 is 34 bytes");

namespace kernels {
// GGML's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
// llama2.c runq.c's activation quantizer: per group, scale = amax / 127,
// q = round(x / scale) (in double, as runq.c does).
void quantize_row_q8_group(const float* x, int8_t* q, float* scales, int64_t n, int64_t group);
}  // namespace kernels

}  // namespace ferry
