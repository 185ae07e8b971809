// The 32-value block types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: GGML's reference
// quantizers (quantize_row_*_ref) and their integer decoding.
#include <cfloat>
#include <cmath>

#include "kernels/fp16.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels {

namespace {

constexpr int kQK = kQK8_0;

// Symmetric types (Q4_0, Q5_0): the value of largest magnitude maps to level 0,
// d = max / -2^(bits-1); levels are truncated (x / d + 2^(bits-1) + 0.5), as GGML does.
uint16_t symmetric_levels(const float* x, int bits, uint8_t* q) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    const int half = 1 << (bits - 1);
    const float d = max / static_cast<float>(-half);
    const float id = d ? 1.0f / d : 0.0f;
    const float offset = static_cast<float>(half) + 0.5f;
    for (int j = 0; j < kQK; ++j) {
        const float v = x[j] * id;
        const int l = static_cast<int>(v + offset);
        q[j] = static_cast<uint8_t>(l < 2 * half - 1 ? l : 2 * half - 1);
    }
    return fp32_to_fp16(d);
}

// Min/max types (Q4_1, Q5_1): level = truncated ((x - min) / d + 0.5), d = (max - min) / (2^bits - 1).
void affine_levels(const float* x, int bits, uint8_t* q, uint16_t* d_out, uint16_t* m_out) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK; ++j) {
        if (x[j] < min) min = x[j];
        if (x[j] > max) max = x[j];
    }
    const int top = (1 << bits) - 1;
    const float d = (max - min) / static_cast<float>(top);
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK; ++j) {
        const float v = (x[j] - min) * id;
        const int l = static_cast<int>(v + 0.5f);
        q[j] = static_cast<uint8_t>(l < top ? l : top);
    }
    *d_out = fp32_to_fp16(d);
    *m_out = fp32_to_fp16(min);
}

// Low nibbles of values j and j + 16 share byte j; bit 4 of value j is bit j of qh.
void pack_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < kQK / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0xF) | ((q[j + kQK / 2] & 0xF) << 4));
}
void pack_high_bits(const uint8_t* q, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK; ++j) bits |= static_cast<uint32_t>(q[j] >> 4) << j;
    for (int k = 0; k < 4; ++k) qh[k] = static_cast<uint8_t>(bits >> (8 * k));
}
void unpack_nibbles(const uint8_t* qs, int offset, BlockInts* out) {
    for (int j = 0; j < kQK / 2; ++j) {
        out->q[j] = static_cast<int8_t>((qs[j] & 0xF) - offset);
        out->q[j + kQK / 2] = static_cast<int8_t>((qs[j] >> 4) - offset);
    }
}
void unpack_fifth_bits(const uint8_t* qs, const uint8_t* qh, int offset, BlockInts* out) {
    const uint32_t bits = qh[0] | (qh[1] << 8) | (qh[2] << 16) | (static_cast<uint32_t>(qh[3]) << 24);
    for (int j = 0; j < kQK / 2; ++j) {
        out->q[j] = static_cast<int8_t>(((qs[j] & 0xF) | (((bits >> j) & 1) << 4)) - offset);
        out->q[j + kQK / 2] = static_cast<int8_t>(((qs[j] >> 4) | (((bits >> (j + 16)) & 1) << 4)) - offset);
    }
}

void one_group(float d, float dmin, int min, BlockInts* out) {
    out->d = d;
    out->dmin = dmin;
    out->group = kQK;
    out->scale[0] = 1;
    out->min[0] = static_cast<int16_t>(min);
}

}  // namespace

void quantize_q8_0(const float* x, void* y, int64_t n) { quantize_row_q8_0(x, static_cast<BlockQ8_0*>(y), n); }

// Q4_0, Q5_0 (symmetric) and Q4_1, Q5_1 (with a min): levels, then nibbles and the fifth bits.
template <class Block, int bits, bool affine>
void quantize_blocks(const float* x, void* y, int64_t n) {
    Block* b = static_cast<Block*>(y);
    uint8_t q[kQK];
    for (int64_t i = 0; i < n / kQK; ++i) {
        if constexpr (affine) affine_levels(x + i * kQK, bits, q, &b[i].d, &b[i].m);
        else b[i].d = symmetric_levels(x + i * kQK, bits, q);
        pack_nibbles(q, b[i].qs);
        if constexpr (bits == 5) pack_high_bits(q, b[i].qh);
    }
}

void quantize_q4_0(const float* x, void* y, int64_t n) { quantize_blocks<BlockQ4_0, 4, false>(x, y, n); }
void quantize_q5_0(const float* x, void* y, int64_t n) { quantize_blocks<BlockQ5_0, 5, false>(x, y, n); }
void quantize_q4_1(const float* x, void* y, int64_t n) { quantize_blocks<BlockQ4_1, 4, true>(x, y, n); }
void quantize_q5_1(const float* x, void* y, int64_t n) { quantize_blocks<BlockQ5_1, 5, true>(x, y, n); }

void unpack_q8_0(const void* block, BlockInts* out) {
    const BlockQ8_0* b = static_cast<const BlockQ8_0*>(block);
    for (int j = 0; j < kQK; ++j) out->q[j] = b->qs[j];
    one_group(fp16_to_fp32(b->d), 0.0f, 0, out);
}

void unpack_q4_0(const void* block, BlockInts* out) {
    const BlockQ4_0* b = static_cast<const BlockQ4_0*>(block);
    unpack_nibbles(b->qs, 8, out);
    one_group(fp16_to_fp32(b->d), 0.0f, 0, out);
}

void unpack_q4_1(const void* block, BlockInts* out) {
    const BlockQ4_1* b = static_cast<const BlockQ4_1*>(block);
    unpack_nibbles(b->qs, 0, out);
    one_group(fp16_to_fp32(b->d), fp16_to_fp32(b->m), -1, out);
}

void unpack_q5_0(const void* block, BlockInts* out) {
    const BlockQ5_0* b = static_cast<const BlockQ5_0*>(block);
    unpack_fifth_bits(b->qs, b->qh, 16, out);
    one_group(fp16_to_fp32(b->d), 0.0f, 0, out);
}

void unpack_q5_1(const void* block, BlockInts* out) {
    const BlockQ5_1* b = static_cast<const BlockQ5_1*>(block);
    unpack_fifth_bits(b->qs, b->qh, 0, out);
    one_group(fp16_to_fp32(b->d), fp16_to_fp32(b->m), -1, out);
}

}  // namespace ferry::kernels
