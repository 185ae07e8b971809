#include "kernels/quantize.h"

#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels {

namespace {

const QuantFormat kFormats[] = {
    {TensorType::Q8_0, kQK8_0, sizeof(BlockQ8_0), TensorType::Q8_0, quantize_q8_0, unpack_q8_0},
    {TensorType::Q4_0, kQK8_0, sizeof(BlockQ4_0), TensorType::Q8_0, quantize_q4_0, unpack_q4_0},
    {TensorType::Q4_1, kQK8_0, sizeof(BlockQ4_1), TensorType::Q8_0, quantize_q4_1, unpack_q4_1},
    {TensorType::Q5_0, kQK8_0, sizeof(BlockQ5_0), TensorType::Q8_0, quantize_q5_0, unpack_q5_0},
    {TensorType::Q5_1, kQK8_0, sizeof(BlockQ5_1), TensorType::Q8_0, quantize_q5_1, unpack_q5_1},
    {TensorType::IQ4_NL, kQK8_0, sizeof(BlockIQ4_NL), TensorType::Q8_0, quantize_iq4_nl, unpack_iq4_nl},
    {TensorType::Q2_K, kQK_K, sizeof(BlockQ2_K), TensorType::Q8_K, quantize_q2_k, unpack_q2_k},
    {TensorType::Q3_K, kQK_K, sizeof(BlockQ3_K), TensorType::Q8_K, quantize_q3_k, unpack_q3_k},
    {TensorType::Q4_K, kQK_K, sizeof(BlockQ4_K), TensorType::Q8_K, quantize_q4_k, unpack_q4_k},
    {TensorType::Q5_K, kQK_K, sizeof(BlockQ5_K), TensorType::Q8_K, quantize_q5_k, unpack_q5_k},
    {TensorType::Q6_K, kQK_K, sizeof(BlockQ6_K), TensorType::Q8_K, quantize_q6_k, unpack_q6_k},
    {TensorType::Q8_K, kQK_K, sizeof(BlockQ8_K), TensorType::Q8_K, nullptr, unpack_q8_k},
    {TensorType::TQ1_0, kQK_K, sizeof(BlockTQ1_0), TensorType::Q8_K, quantize_tq1_0, unpack_tq1_0},
    {TensorType::TQ2_0, kQK_K, sizeof(BlockTQ2_0), TensorType::Q8_K, quantize_tq2_0, unpack_tq2_0},
};

bool is_float_type(TensorType type) {
    return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16;
}

}  // namespace

const QuantFormat* quant_format(TensorType type) {
    for (const QuantFormat& f : kFormats)
        if (f.type == type) return &f;
    return nullptr;
}

bool can_quantize(TensorType type, int64_t n_per_row) {
    if (n_per_row <= 0) return false;
    if (is_float_type(type)) return true;
    const QuantFormat* f = quant_format(type);
    return f && f->quantize && n_per_row % f->block_values == 0;
}

size_t quantize_rows(TensorType type, const float* src, void* dst, int64_t nrows, int64_t n_per_row) {
    if (!can_quantize(type, n_per_row) || nrows <= 0) return 0;
    const int64_t n = nrows * n_per_row;
    switch (type) {
        case TensorType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return static_cast<size_t>(n) * 4;
        case TensorType::F16:
        case TensorType::BF16: {
            uint16_t* out = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) out[i] = type == TensorType::F16 ? fp32_to_fp16(src[i]) : fp32_to_bf16(src[i]);
            return static_cast<size_t>(n) * 2;
        }
        default: {
            // With no importance matrix every block is quantized on its own,
            // so the rows are one run of blocks.
            const QuantFormat* f = quant_format(type);
            f->quantize(src, dst, n);
            return static_cast<size_t>(n / f->block_values * f->block_bytes);
        }
    }
}

void dequantize_values(TensorType type, const void* src, float* dst, int64_t n) {
    if (n <= 0) return;
    switch (type) {
        case TensorType::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * 4);
            return;
        case TensorType::F16:
        case TensorType::BF16: {
            const uint16_t* in = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = type == TensorType::F16 ? fp16_to_fp32(in[i]) : bf16_to_fp32(in[i]);
            return;
        }
        default:
            break;
    }
    const QuantFormat* f = quant_format(type);
    if (!f || n % f->block_values != 0) {
        std::memset(dst, 0, static_cast<size_t>(n) * sizeof(float));
        return;
    }
    const uint8_t* block = static_cast<const uint8_t*>(src);
    BlockInts ints;
    for (int64_t i = 0; i < n / f->block_values; ++i, block += f->block_bytes, dst += f->block_values) {
        f->unpack(block, &ints);
        for (int v = 0; v < f->block_values; ++v) dst[v] = block_value(ints, v);
    }
}

}  // namespace ferry::kernels
