#include "kernels/quant_blocks.h"

#include <cmath>

#include "kernels/fp16.h"

namespace ferry::kernels {

void q3_k_scales(const uint8_t* packed, int8_t* scales) {
    for (int j = 0; j < 16; ++j) {
        const int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        const int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        scales[j] = static_cast<int8_t>((low | (high << 4)) - 32);
    }
}

namespace {
// roundf (half away from zero) for |v| < 2^23, without a libm call: it runs
// for every activation of every quantized matmul.
int round_half_away(float v) {
    int i = static_cast<int>(v);
    const float frac = v - static_cast<float>(i);
    if (frac >= 0.5f) ++i;
    else if (frac <= -0.5f) --i;
    return i;
}
}  // namespace

uint16_t quantize_block_q8_0(const float* x, int8_t* q) {
    float amax = 0.0f;  // (a NaN is skipped, as fmaxf skips it)
    for (int j = 0; j < kQK8_0; ++j) {
        const float a = std::fabs(x[j]);
        if (a > amax) amax = a;
    }
    const float d = amax / 127.0f;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < kQK8_0; ++j) {
        const float v = x[j] * id;
        q[j] = static_cast<int8_t>(round_half_away(v));
    }
    return fp32_to_fp16(d);
}

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK8_0; ++i) y[i].d = quantize_block_q8_0(x + i * kQK8_0, y[i].qs);
}

void quantize_block_q8_k(const float* x, int8_t* q, float* d, int16_t* bsums) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
        if (std::fabs(x[j]) > amax) {
            amax = std::fabs(x[j]);
            max = x[j];
        }
    }
    std::memset(q, 0, kQK_K);
    std::memset(bsums, 0, kQK_K / 16 * sizeof(int16_t));
    *d = 0.0f;
    if (amax == 0.0f) return;
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
        const float v = iscale * x[j];
        const int l = nearest_int(v);
        q[j] = static_cast<int8_t>(l < 127 ? l : 127);
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
        int sum = 0;
        for (int j = 0; j < 16; ++j) sum += q[g * 16 + j];
        bsums[g] = static_cast<int16_t>(sum);
    }
    *d = 1.0f / iscale;
}

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
    for (int64_t i = 0; i < n / kQK_K; ++i) quantize_block_q8_k(x + i * kQK_K, y[i].qs, &y[i].d, y[i].bsums);
}

void quantize_row_q8_group(const float* x, int8_t* q, float* scales, int64_t n, int64_t group) {
    for (int64_t g = 0; g < n / group; ++g) {
        float wmax = 0.0f;
        for (int64_t i = 0; i < group; ++i) wmax = std::fmax(wmax, std::fabs(x[g * group + i]));
        const float scale = wmax / 127.0f;
        scales[g] = scale;
        for (int64_t i = 0; i < group; ++i)
            q[g * group + i] = scale == 0.0f ? 0 : static_cast<int8_t>(std::round(x[g * group + i] / scale));
    }
}

}  // namespace ferry::kernels
