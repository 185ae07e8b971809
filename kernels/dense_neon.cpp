// The NEON level of the dense kernels on aarch64 (chosen at run time; the
// dotprod level uses it too): the instruction set and weight types
// kernels/simd_kernels.h's templates are instantiated with. An 8-lane value is
// a pair of 4-lane registers, as on SSE2, with separate multiply and add
// (never FMLA), so every order is the canonical one of kernels.h and the
// results equal the x86 levels bit for bit. A64's NEON is IEEE (subnormals
// kept, as FPCR leaves them); 32-bit ARM's flushes them to zero, so armhf
// keeps the scalar dense kernels (kernels/matmul.cpp).
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/attention_widen.h"
#include "kernels/dense_levels.h"
#include "kernels/simd_kernels.h"

namespace ferry::kernels::neon {

namespace {

struct V8 {
    float32x4_t lo, hi;  // lanes 0..3 and 4..7
};

// Four 4x4 transposes in place: a[i] lane j becomes a[j] lane i.
inline void transpose4(float32x4_t& a0, float32x4_t& a1, float32x4_t& a2, float32x4_t& a3) {
    const float32x4_t t0 = vtrn1q_f32(a0, a1), t1 = vtrn2q_f32(a0, a1);
    const float32x4_t t2 = vtrn1q_f32(a2, a3), t3 = vtrn2q_f32(a2, a3);
    a0 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    a1 = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    a2 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    a3 = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
}

struct Neon {
    using V = V8;
    // 32 q registers: a 3x3 tile's 9 accumulators take 18 of them.
    static constexpr int kPrefillRows = 3;
    static constexpr int kPrefillTokens = 3;
    static constexpr int kAccumulators = 12;
    static constexpr bool kGroupedHeads = true;
    static V zero() { return {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)}; }
    static V set1(float f) { return {vdupq_n_f32(f), vdupq_n_f32(f)}; }
    static V add(V a, V b) { return {vaddq_f32(a.lo, b.lo), vaddq_f32(a.hi, b.hi)}; }
    static V mul(V a, V b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
    static V div(V a, V b) { return {vdivq_f32(a.lo, b.lo), vdivq_f32(a.hi, b.hi)}; }
    static V load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
    static void store(float* p, V v) {
        vst1q_f32(p, v.lo);
        vst1q_f32(p + 4, v.hi);
    }
    static void prefetch(const void* p) { __builtin_prefetch(p); }
    // ((s0 + s4) + (s2 + s6)) + ((s1 + s5) + (s3 + s7))
    static float reduce(V v) {
        const float32x4_t t = vaddq_f32(v.lo, v.hi);
        const float32x2_t u = vadd_f32(vget_low_f32(t), vget_high_f32(t));
        const float a = vget_lane_f32(u, 0), b = vget_lane_f32(u, 1);
        return a + b;
    }
    static void transpose8(V r[8]) {
        float32x4_t a0 = r[0].lo, a1 = r[1].lo, a2 = r[2].lo, a3 = r[3].lo;
        float32x4_t b0 = r[0].hi, b1 = r[1].hi, b2 = r[2].hi, b3 = r[3].hi;
        float32x4_t c0 = r[4].lo, c1 = r[5].lo, c2 = r[6].lo, c3 = r[7].lo;
        float32x4_t d0 = r[4].hi, d1 = r[5].hi, d2 = r[6].hi, d3 = r[7].hi;
        transpose4(a0, a1, a2, a3);
        transpose4(b0, b1, b2, b3);
        transpose4(c0, c1, c2, c3);
        transpose4(d0, d1, d2, d3);
        r[0] = {a0, c0}, r[1] = {a1, c1}, r[2] = {a2, c2}, r[3] = {a3, c3};
        r[4] = {b0, d0}, r[5] = {b1, d1}, r[6] = {b2, d2}, r[7] = {b3, d3};
    }
};

using F32 = simd::F32Weights<Neon>;

// FCVTL widens halves exactly, subnormals included, as fp16_to_fp32 does.
struct F16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static V8 load(const uint16_t* p) {
        const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
        return {vcvt_f32_f16(vget_low_f16(h)), vcvt_high_f32_f16(h)};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Neon, F16>(p, n, out); }
};

struct BF16 {
    using W = uint16_t;
    static constexpr int kLanes = 16;
    static V8 load(const uint16_t* p) {
        const uint16x8_t h = vld1q_u16(p);
        return {vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)), vreinterpretq_f32_u32(vshll_high_n_u16(h, 16))};
    }
    static void widen_tail(const uint16_t* p, int n, float* out) { simd::widen_tail_u16<Neon, BF16>(p, n, out); }
};

}  // namespace

FERRY_SIMD_LEVEL_FUNCTIONS(Neon, F32, F16, BF16)

void widen_q8_0(float* out, const BlockQ8_0* blocks, int begin, int n) { widen_q8_0_values(out, blocks, begin, n); }

}  // namespace ferry::kernels::neon
#endif
