// GGML block layouts, byte for byte as GGML stores them (so GGUF files made by
// other tools load here and files made here load elsewhere), and the
// activation quantizers the integer dot products use.
//
// Every scale named `d`, `m` or `dmin` of type uint16_t is an IEEE half
// (kernels/fp16.h). Values in a block are numbered 0..n-1 in the order the
// block's dequantization writes them.
#pragma once
#include <cstdint>
#include <cstring>

namespace ferry {

constexpr int kQK8_0 = 32;  // values per block of the 32-value ("legacy") types
constexpr int kQK_K = 256;  // values per super-block of the K-quants and TQ types

// x = d * q
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK8_0];
};
// x = d * (q - 8); byte j holds value j (low nibble) and value j + 16 (high nibble).
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK8_0 / 2];
};
// x = d * q + m; nibbles as Q4_0.
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK8_0 / 2];
};
// x = d * (q - 16); low four bits as Q4_0, bit 4 of value j is bit j of qh (little-endian u32).
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK8_0 / 2];
};
// x = d * q + m; bits as Q5_0.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK8_0 / 2];
};
// x = d * kIQ4NLValues[q]; nibbles as Q4_0.
struct BlockIQ4_NL {
    uint16_t d;
    uint8_t qs[kQK8_0 / 2];
};
// 16 groups of 16: x = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q in 0..3.
// Value v's two bits: byte 32 * (v / 128) + v % 32 of qs, shift 2 * ((v / 32) % 4).
struct BlockQ2_K {
    uint8_t scales[kQK_K / 16];
    uint8_t qs[kQK_K / 4];
    uint16_t d;
    uint16_t dmin;
};
// 16 groups of 16: x = d * (s[g] - 32) * (q - 4), q = two low bits (as Q2_K) + 4 * high bit;
// the high bit of value v is bit v / 32 of hmask[v % 32]. The 6-bit s[g] are
// packed in `scales` (low nibbles in bytes 0..7, two high bits in bytes 8..11).
struct BlockQ3_K {
    uint8_t hmask[kQK_K / 8];
    uint8_t qs[kQK_K / 4];
    uint8_t scales[12];
    uint16_t d;
};
// 8 groups of 32: x = d * sc[g] * q - dmin * m[g], q in 0..15; sc/m are 6-bit,
// packed in `scales` (see scale_min_k4). Byte 32 * (v / 64) + v % 32 of qs holds
// value v, low nibble if (v / 32) is even.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQK_K / 2];
};
// As Q4_K with a fifth bit: bit v / 32 of qh[v % 32], q in 0..31.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQK_K / 8];
    uint8_t qs[kQK_K / 2];
};
// 16 groups of 16: x = d * scales[g] * (q - 32), q in 0..63; within each half
// of 128 values, ql holds low nibbles and qh the two high bits.
struct BlockQ6_K {
    uint8_t ql[kQK_K / 2];
    uint8_t qh[kQK_K / 4];
    int8_t scales[kQK_K / 16];
    uint16_t d;
};
// The activation type of the K-quants: x = d * q, with the sum of every 16 q.
struct BlockQ8_K {
    float d;
    int8_t qs[kQK_K];
    int16_t bsums[kQK_K / 16];
};
// Ternary, 5 trits per byte (base 3, most significant trit first, stored as a
// fixed-point fraction of 256): x = d * (t - 1). qs[0..31] hold values 0..159,
// qs[32..47] values 160..239, qh values 240..255 (4 trits each).
struct BlockTQ1_0 {
    uint8_t qs[(kQK_K - 4 * kQK_K / 64) / 5];
    uint8_t qh[kQK_K / 64];
    uint16_t d;
};
// Ternary, 2 bits per value: x = d * (q - 1); byte 32 * (v / 128) + v % 32, shift 2 * ((v / 32) % 4).
struct BlockTQ2_0 {
    uint8_t qs[kQK_K / 4];
    uint16_t d;
};

static_assert(sizeof(BlockQ8_0) == 34, "GGML block_q8_0 is 34 bytes");
static_assert(sizeof(BlockQ4_0) == 18, "GGML block_q4_0 is 18 bytes");
static_assert(sizeof(BlockQ4_1) == 20, "GGML block_q4_1 is 20 bytes");
static_assert(sizeof(BlockQ5_0) == 22, "GGML block_q5_0 is 22 bytes");
static_assert(sizeof(BlockQ5_1) == 24, "GGML block_q5_1 is 24 bytes");
static_assert(sizeof(BlockIQ4_NL) == 18, "GGML block_iq4_nl is 18 bytes");
static_assert(sizeof(BlockQ2_K) == 84, "GGML block_q2_K is 84 bytes");
static_assert(sizeof(BlockQ3_K) == 110, "GGML block_q3_K is 110 bytes");
static_assert(sizeof(BlockQ4_K) == 144, "GGML block_q4_K is 144 bytes");
static_assert(sizeof(BlockQ5_K) == 176, "GGML block_q5_K is 176 bytes");
static_assert(sizeof(BlockQ6_K) == 210, "GGML block_q6_K is 210 bytes");
static_assert(sizeof(BlockQ8_K) == 292, "GGML block_q8_K is 292 bytes");
static_assert(sizeof(BlockTQ1_0) == 54, "GGML block_tq1_0 is 54 bytes");
static_assert(sizeof(BlockTQ2_0) == 66, "GGML block_tq2_0 is 66 bytes");

// The 16 non-linear levels of IQ4_NL.
constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

namespace kernels {

// (static: these also go into the SIMD files, whose copies must never stand in
// for the portable ones at link time.)

// Round to nearest, ties to even, for |x| < 2^22: GGML's nearest_int, which
// adds 1.5 * 2^23 so the float's mantissa holds the integer.
static inline int nearest_int(float x) {
    const float biased = x + 12582912.0f;
    int32_t bits;
    std::memcpy(&bits, &biased, 4);
    return (bits & 0x007fffff) - 0x00400000;
}

// Sub-block `j`'s 6-bit scale and min of a Q4_K/Q5_K block (GGML's get_scale_min_k4).
static inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// The 16 6-bit scales of a Q3_K block, minus 32.
void q3_k_scales(const uint8_t* packed, int8_t* scales);

// GGML's quantize_row_q8_0_ref: d = amax / 127, q = round(x / d).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n);
// The same for one block of 32 values: writes q, returns d as an f16.
uint16_t quantize_block_q8_0(const float* x, int8_t* q);
// GGML's quantize_row_q8_K_ref: d = max / -127 (max = the value of largest
// magnitude), q = nearest_int(x / d), plus the sums of every 16 q.
void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n);
// The same for one block of 256 values.
void quantize_block_q8_k(const float* x, int8_t* q, float* d, int16_t* bsums);
// llama2.c runq.c's activation quantizer: per group, scale = amax / 127,
// q = round(x / scale) (in double, as runq.c does).
void quantize_row_q8_group(const float* x, int8_t* q, float* scales, int64_t n, int64_t group);
}  // namespace kernels

}  // namespace ferry
