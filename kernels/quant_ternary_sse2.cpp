// SSE2 dot products of the ternary types TQ1_0 and TQ2_0 with Q8_K
// activations: levels decoded to -1/0/1 bytes, then the widening dot
// product of quant_simd_sse2.h, in quant_dot.h's canonical order.
#if defined(__i386__) || defined(__x86_64__) || defined(FERRY_NEON)
#include "kernels/quant_simd_sse2.h"

namespace ferry::kernels::FERRY_SSE_LEVEL {

namespace {

void store16(int8_t* p, __m128i v) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), v); }

void unit_scales(SuperLevels* lv) {
    for (int g = 0; g < 16; ++g) lv->scale[g] = 1;
}

// Levels 0..2 (value + 1) straight from the packed crumbs: the even byte's
// crumb masked in place is an int16, the odd byte's is that times 256 (summed
// apart and shifted back, exactly); isum subtracts the block's sum of x once.
struct TQ2_0 {
    static constexpr int kBytes = sizeof(BlockTQ2_0), kD = 64, kDmin = -1, kOffset = 1;
    static constexpr bool kMin = false, kDirect = true;
    template <int T>
    static FERRY_INLINE void dot(const uint8_t* blk, const int16_t* const* x, int32_t* isums) {
        const BlockTQ2_0* b = reinterpret_cast<const BlockTQ2_0*>(blk);
        const __m128i even_mask = _mm_set1_epi16(3), odd_mask = _mm_set1_epi16(0x300);
        __m128i even[T], odd[T];
        for (int t = 0; t < T; ++t) even[t] = odd[t] = _mm_setzero_si128();
        for (int h = 0; h < 2; ++h)
            for (int half = 0; half < 2; ++half) {
                __m128i v = load16(b->qs + 32 * h + 16 * half);
                for (int k = 0; k < 4; ++k) {
                    const __m128i e = _mm_and_si128(v, even_mask), o = _mm_and_si128(v, odd_mask);
                    for (int t = 0; t < T; ++t) {
                        const int16_t* xv = x[t] + 128 * h + 32 * k + 16 * half;
                        even[t] = _mm_add_epi32(even[t], _mm_madd_epi16(e, load_x(xv)));
                        odd[t] = _mm_add_epi32(odd[t], _mm_madd_epi16(o, load_x(xv + 8)));
                    }
                    v = _mm_srli_epi16(v, 2);
                }
            }
        for (int t = 0; t < T; ++t) isums[t] = hsum_i32(_mm_add_epi32(even[t], _mm_srai_epi32(odd[t], 8)));
    }
};

// Digit k of every byte of q (base-3 fixed point, TQ1_0): ((q * 3^k mod 256) * 3) >> 8.
__m128i trits(__m128i q, int k) {
    static const int16_t pow3[5] = {1, 3, 9, 27, 81};
    const __m128i low = _mm_set1_epi16(0x00FF), p = _mm_set1_epi16(pow3[k]), three = _mm_set1_epi16(3);
    const __m128i even = _mm_and_si128(_mm_mullo_epi16(_mm_and_si128(q, low), p), low);
    const __m128i odd = _mm_and_si128(_mm_mullo_epi16(_mm_srli_epi16(q, 8), p), low);
    const __m128i te = _mm_srli_epi16(_mm_mullo_epi16(even, three), 8);
    const __m128i to = _mm_srli_epi16(_mm_mullo_epi16(odd, three), 8);
    return _mm_sub_epi8(_mm_or_si128(te, _mm_slli_epi16(to, 8)), _mm_set1_epi8(1));
}

struct TQ1_0 {
    static constexpr int kBytes = sizeof(BlockTQ1_0), kD = 52, kDmin = -1;
    static constexpr bool kMin = false, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockTQ1_0* b = reinterpret_cast<const BlockTQ1_0*>(blk);
        // qs[0..31]: digit k of byte m is value m + 32k; qs[32..47]: value 160 + m + 16k.
        for (int half = 0; half < 2; ++half) {
            const __m128i v = load16(b->qs + 16 * half);
            for (int k = 0; k < 5; ++k) store16(lv->q + 32 * k + 16 * half, trits(v, k));
        }
        const __m128i v = load16(b->qs + 32);
        for (int k = 0; k < 5; ++k) store16(lv->q + 160 + 16 * k, trits(v, k));
        // qh: digit k of byte m is value 240 + m + 4k.
        uint32_t qh;
        std::memcpy(&qh, b->qh, 4);
        const __m128i h = _mm_set1_epi32(static_cast<int>(qh));
        alignas(16) int8_t d[4][16];
        for (int k = 0; k < 4; ++k) _mm_store_si128(reinterpret_cast<__m128i*>(d[k]), trits(h, k));
        for (int k = 0; k < 4; ++k) std::memcpy(lv->q + 240 + 4 * k, d[k], 4);
        unit_scales(lv);
    }
};

}  // namespace

QuantRowsFn ternary_rows(TensorType type) {
    switch (type) {
        case TensorType::TQ1_0: return superblock_rows<TQ1_0>;
        case TensorType::TQ2_0: return superblock_rows<TQ2_0>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::FERRY_SSE_LEVEL
#endif
