// IQ4_NL: 32 values per block, each one of 16 fixed non-linear levels
// (kIQ4NLValues) times an f16 scale. GGML's quantizer with no importance
// matrix: weights x^2, a least-squares scale refined over 15 candidates.
#include <cmath>

#include "kernels/fp16.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels {

namespace {

constexpr int kQK = kQK8_0;

// Index of the level nearest x (the lower one on ties), by bisection as GGML does.
int nearest_level(float x) {
    const int8_t* val = kIQ4NLValues;
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

// Weighted fit of x to d * level for inverse scale id: sums of w*q*x and w*q^2.
void fit(const float* x, float id, float* sumqx, float* sumq2) {
    *sumqx = 0.0f;
    *sumq2 = 0.0f;
    for (int j = 0; j < kQK; ++j) {
        const float q = kIQ4NLValues[nearest_level(id * x[j])];
        const float w = x[j] * x[j];
        *sumqx += w * q * x[j];
        *sumq2 += w * q * q;
    }
}

}  // namespace

void quantize_iq4_nl(const float* x, void* y, int64_t n) {
    constexpr int kTries = 7;
    BlockIQ4_NL* b = static_cast<BlockIQ4_NL*>(y);
    for (int64_t i = 0; i < n / kQK; ++i, x += kQK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < kQK; ++j) {
            if (std::fabs(x[j]) > amax) {
                amax = std::fabs(x[j]);
                max = x[j];
            }
        }
        float d = 0.0f;
        if (amax >= 1e-15f) {
            float sumqx, sumq2;
            fit(x, 1 / (-max / kIQ4NLValues[0]), &sumqx, &sumq2);
            d = sumqx / sumq2;
            float best = d * sumqx;
            for (int itry = -kTries; itry <= kTries; ++itry) {
                fit(x, static_cast<float>(itry + kIQ4NLValues[0]) / max, &sumqx, &sumq2);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    d = sumqx / sumq2;
                    best = d * sumqx;
                }
            }
        }
        b[i].d = fp32_to_fp16(d);
        const float id = d ? 1 / d : 0.0f;
        for (int j = 0; j < kQK / 2; ++j)
            b[i].qs[j] = static_cast<uint8_t>(nearest_level(id * x[j]) | (nearest_level(id * x[j + kQK / 2]) << 4));
    }
}

void unpack_iq4_nl(const void* block, BlockInts* out) {
    const BlockIQ4_NL* b = static_cast<const BlockIQ4_NL*>(block);
    for (int j = 0; j < kQK / 2; ++j) {
        out->q[j] = kIQ4NLValues[b->qs[j] & 0xF];
        out->q[j + kQK / 2] = kIQ4NLValues[b->qs[j] >> 4];
    }
    out->d = fp16_to_fp32(b->d);
    out->dmin = 0.0f;
    out->group = kQK;
    out->scale[0] = 1;
    out->min[0] = 0;
}

}  // namespace ferry::kernels
