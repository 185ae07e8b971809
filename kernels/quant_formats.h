// One table entry per GGML block type: its reference quantizer (GGML's
// algorithm with no importance matrix, byte-exact) and its decoder into
// integers. The integers are the single definition of a block's meaning: the
// f32 decoding (dequantize_values) and the portable dot product are both
// written over them, and the SIMD dot products are tested bit for bit against
// the portable one.
#pragma once
#include <cstdint>

#include "kernels/quant_blocks.h"
#include "kernels/tensor_type.h"

namespace ferry::kernels {

// A block as integers: value v is (d * scale[g]) * q[v] - (dmin * min[g]),
// g = v / group, computed in f32 in exactly that order (which is GGML's
// to_float order for every type). Types without a min have min[] = 0 and
// dmin = 0; Q4_1/Q5_1's "+ m" is dmin = m, min[] = -1.
struct BlockInts {
    float d = 0.0f;
    float dmin = 0.0f;
    int group = 0;
    int8_t q[kQK_K];
    int16_t scale[16];
    int16_t min[16];
};

struct QuantFormat {
    TensorType type;
    int block_values;
    int block_bytes;
    // The activation type of its dot product: Q8_0 (32-value blocks) or Q8_K (256).
    TensorType dot_type;
    // GGML's reference quantizer of n values (n a multiple of block_values);
    // nullptr for a type ferry reads but does not write (Q8_K).
    void (*quantize)(const float* x, void* y, int64_t n);
    void (*unpack)(const void* block, BlockInts* out);
};

// nullptr for F32/F16/BF16/Q8_GROUP and unknown ids.
const QuantFormat* quant_format(TensorType type);

// Value v of an unpacked block as f32, in GGML's order (one operation per
// statement: x87 builds round each to float, see kernels/CMakeLists.txt).
static inline float block_value(const BlockInts& b, int v) {
    const int g = v / b.group;
    const float scale = b.d * static_cast<float>(b.scale[g]);
    const float value = scale * static_cast<float>(b.q[v]);
    const float min = b.dmin * static_cast<float>(b.min[g]);
    return value - min;
}

// Two bits per value for 256 values (Q2_K, Q3_K's low bits, TQ2_0): value
// 128h + 32k + l in bits 2k of byte 32h + l. unpack_2bit subtracts `offset`.
void pack_2bit(const uint8_t* levels, uint8_t* qs);
void unpack_2bit(const uint8_t* qs, int offset, int8_t* q);

// Quantizers and unpackers, by family (quant_legacy.cpp, quant_kquants.cpp,
// quant_ternary.cpp, quant_iq4nl.cpp).
void quantize_q8_0(const float* x, void* y, int64_t n);
void quantize_q4_0(const float* x, void* y, int64_t n);
void quantize_q4_1(const float* x, void* y, int64_t n);
void quantize_q5_0(const float* x, void* y, int64_t n);
void quantize_q5_1(const float* x, void* y, int64_t n);
void unpack_q8_0(const void* block, BlockInts* out);
void unpack_q4_0(const void* block, BlockInts* out);
void unpack_q4_1(const void* block, BlockInts* out);
void unpack_q5_0(const void* block, BlockInts* out);
void unpack_q5_1(const void* block, BlockInts* out);

void quantize_q2_k(const float* x, void* y, int64_t n);
void quantize_q3_k(const float* x, void* y, int64_t n);
void quantize_q4_k(const float* x, void* y, int64_t n);
void quantize_q5_k(const float* x, void* y, int64_t n);
void quantize_q6_k(const float* x, void* y, int64_t n);
void unpack_q2_k(const void* block, BlockInts* out);
void unpack_q3_k(const void* block, BlockInts* out);
void unpack_q4_k(const void* block, BlockInts* out);
void unpack_q5_k(const void* block, BlockInts* out);
void unpack_q6_k(const void* block, BlockInts* out);
void unpack_q8_k(const void* block, BlockInts* out);

void quantize_tq1_0(const float* x, void* y, int64_t n);
void quantize_tq2_0(const float* x, void* y, int64_t n);
void unpack_tq1_0(const void* block, BlockInts* out);
void unpack_tq2_0(const void* block, BlockInts* out);

void quantize_iq4_nl(const float* x, void* y, int64_t n);
void unpack_iq4_nl(const void* block, BlockInts* out);

}  // namespace ferry::kernels
