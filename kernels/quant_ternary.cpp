// Ternary types TQ1_0 (1.6875 bits per value) and TQ2_0 (2.0625): one f16
// scale d = max |x| per 256 values, each value one of -d, 0, +d. GGML's
// reference quantizers and their integer decoding.
#include <cmath>

#include "kernels/fp16.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels {

namespace {

// d = max |x|; trits t = round(x / d) + 1 in {0, 1, 2}.
uint16_t ternary_trits(const float* x, uint8_t* t) {
    float amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float id = amax ? 1.0f / amax : 0.0f;
    for (int j = 0; j < kQK_K; ++j) t[j] = static_cast<uint8_t>(std::lround(x[j] * id) + 1);
    return fp32_to_fp16(amax);
}

void ternary_ints(uint16_t d, BlockInts* out) {
    out->d = fp16_to_fp32(d);
    out->dmin = 0.0f;
    out->group = kQK_K;
    out->scale[0] = 1;
    out->min[0] = 0;
}

// TQ1_0 packs 5 trits (4 for qh) as a base-3 number scaled to a byte,
// rounded up, so trit k comes back as the top "digit" of byte * 3^k * 3 / 256.
// The spans below say which values each stretch of bytes holds: `count` bytes,
// byte m holding values first + m + count * k for trit k.
struct TritSpan {
    int byte0, count, first, trits;
};
constexpr TritSpan kTq1Spans[] = {{0, 32, 0, 5}, {32, 16, 160, 5}, {48, 4, 240, 4}};

}  // namespace

void quantize_tq1_0(const float* x, void* y, int64_t n) {
    BlockTQ1_0* b = static_cast<BlockTQ1_0*>(y);
    uint8_t t[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        b[i].d = ternary_trits(x, t);
        uint8_t* bytes = b[i].qs;  // qh follows qs directly
        for (const TritSpan& s : kTq1Spans) {
            for (int m = 0; m < s.count; ++m) {
                int q = 0;
                for (int k = 0; k < s.trits; ++k) q = q * 3 + t[s.first + m + s.count * k];
                for (int k = s.trits; k < 5; ++k) q *= 3;
                bytes[s.byte0 + m] = static_cast<uint8_t>((q * 256 + 242) / 243);
            }
        }
    }
}

void unpack_tq1_0(const void* block, BlockInts* out) {
    const BlockTQ1_0* b = static_cast<const BlockTQ1_0*>(block);
    ternary_ints(b->d, out);
    const uint8_t* bytes = b->qs;
    static const int kPow3[5] = {1, 3, 9, 27, 81};
    for (const TritSpan& s : kTq1Spans) {
        for (int k = 0; k < s.trits; ++k) {
            for (int m = 0; m < s.count; ++m) {
                const uint8_t q = static_cast<uint8_t>(bytes[s.byte0 + m] * kPow3[k]);
                out->q[s.first + m + s.count * k] = static_cast<int8_t>(((q * 3) >> 8) - 1);
            }
        }
    }
}

void quantize_tq2_0(const float* x, void* y, int64_t n) {
    BlockTQ2_0* b = static_cast<BlockTQ2_0*>(y);
    uint8_t t[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        b[i].d = ternary_trits(x, t);
        pack_2bit(t, b[i].qs);
    }
}

void unpack_tq2_0(const void* block, BlockInts* out) {
    const BlockTQ2_0* b = static_cast<const BlockTQ2_0*>(block);
    ternary_ints(b->d, out);
    unpack_2bit(b->qs, 1, out->q);
}

}  // namespace ferry::kernels
