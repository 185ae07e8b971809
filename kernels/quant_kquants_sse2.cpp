// SSE2 dot products of the K-quants (Q2_K..Q6_K) with Q8_K activations:
// each super-block decoded to signed levels with vector shifts and masks,
// then the widening dot product of quant_simd_sse2.h, in quant_dot.h's
// canonical order.
#if defined(__i386__) || defined(__x86_64__) || defined(FERRY_NEON)
#include "kernels/quant_simd_sse2.h"

namespace ferry::kernels::FERRY_SSE_LEVEL {

namespace {

void store16(int8_t* p, __m128i v) { _mm_store_si128(reinterpret_cast<__m128i*>(p), v); }

// Q2_K and Q3_K: two-bit levels, value v at byte 32 * (v / 128) + v % 32,
// bits 2 * ((v / 32) % 4); `high` (Q3_K) adds bit 2 from hmask bit v / 32, and
// `offset` recentres the levels.
void decode_crumbs(const uint8_t* qs, const uint8_t* hmask, int offset, int8_t* q) {
    const __m128i off = _mm_set1_epi8(static_cast<char>(offset));
    for (int h = 0; h < 2; ++h) {
        for (int half = 0; half < 2; ++half) {
            const __m128i v = load16(qs + 32 * h + 16 * half);
            const __m128i hm = hmask ? load16(hmask + 16 * half) : _mm_setzero_si128();
            for (int k = 0; k < 4; ++k) {
                __m128i l = crumbs(v, 2 * k);
                if (hmask) l = _mm_or_si128(l, bit_to(hm, 4 * h + k, 2));
                store16(q + 128 * h + 32 * k + 16 * half, _mm_sub_epi8(l, off));
            }
        }
    }
}

struct Q2_K {
    static constexpr int kBytes = sizeof(BlockQ2_K), kD = 80, kDmin = 82;
    static constexpr bool kMin = true, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
        decode_crumbs(b->qs, nullptr, 0, lv->q);
        for (int g = 0; g < 16; ++g) lv->scale[g] = b->scales[g] & 0xF;
    }
    static int32_t msum(const uint8_t* blk, const int16_t* bsums) {
        const BlockQ2_K* b = reinterpret_cast<const BlockQ2_K*>(blk);
        int32_t s = 0;
        for (int g = 0; g < 16; ++g) s += (b->scales[g] >> 4) * bsums[g];
        return s;
    }
};

struct Q3_K {
    static constexpr int kBytes = sizeof(BlockQ3_K), kD = 108, kDmin = -1;
    static constexpr bool kMin = false, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockQ3_K* b = reinterpret_cast<const BlockQ3_K*>(blk);
        decode_crumbs(b->qs, b->hmask, 4, lv->q);
        int8_t sc[16];
        q3_k_scales(b->scales, sc);
        for (int g = 0; g < 16; ++g) lv->scale[g] = sc[g];
    }
};

// Q4_K / Q5_K: nibbles, value v at byte 32 * (v / 64) + v % 32, high nibble
// if (v / 32) is odd; Q5_K's bit 4 is bit v / 32 of qh[v % 32].
void decode_nibbles(const uint8_t* qs, const uint8_t* qh, int8_t* q) {
    for (int c = 0; c < 4; ++c) {
        for (int half = 0; half < 2; ++half) {
            const __m128i v = load16(qs + 32 * c + 16 * half);
            __m128i lo = nibbles_lo(v), hi = nibbles_hi(v);
            if (qh) {
                const __m128i h = load16(qh + 16 * half);
                lo = _mm_or_si128(lo, bit_to(h, 2 * c, 4));
                hi = _mm_or_si128(hi, bit_to(h, 2 * c + 1, 4));
            }
            store16(q + 64 * c + 16 * half, lo);
            store16(q + 64 * c + 32 + 16 * half, hi);
        }
    }
}
void scales_32(const uint8_t* packed, SuperLevels* lv) {
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        lv->scale[2 * j] = lv->scale[2 * j + 1] = sc;
    }
}
int32_t mins_32(const uint8_t* packed, const int16_t* bsums) {
    int32_t s = 0;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        s += m * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return s;
}

struct Q4_K {
    static constexpr int kBytes = sizeof(BlockQ4_K), kD = 0, kDmin = 2;
    static constexpr bool kMin = true, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockQ4_K* b = reinterpret_cast<const BlockQ4_K*>(blk);
        decode_nibbles(b->qs, nullptr, lv->q);
        scales_32(b->scales, lv);
    }
    static int32_t msum(const uint8_t* blk, const int16_t* bsums) {
        return mins_32(reinterpret_cast<const BlockQ4_K*>(blk)->scales, bsums);
    }
};

struct Q5_K {
    static constexpr int kBytes = sizeof(BlockQ5_K), kD = 0, kDmin = 2;
    static constexpr bool kMin = true, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockQ5_K* b = reinterpret_cast<const BlockQ5_K*>(blk);
        decode_nibbles(b->qs, b->qh, lv->q);
        scales_32(b->scales, lv);
    }
    static int32_t msum(const uint8_t* blk, const int16_t* bsums) {
        return mins_32(reinterpret_cast<const BlockQ5_K*>(blk)->scales, bsums);
    }
};

struct Q6_K {
    static constexpr int kBytes = sizeof(BlockQ6_K), kD = 208, kDmin = -1;
    static constexpr bool kMin = false, kDirect = false;
    static void decode(const uint8_t* blk, SuperLevels* lv) {
        const BlockQ6_K* b = reinterpret_cast<const BlockQ6_K*>(blk);
        const __m128i off = _mm_set1_epi8(32);
        for (int h = 0; h < 2; ++h) {
            for (int half = 0; half < 2; ++half) {
                const __m128i l0 = load16(b->ql + 64 * h + 16 * half), l1 = load16(b->ql + 64 * h + 32 + 16 * half);
                const __m128i qh = load16(b->qh + 32 * h + 16 * half);
                const __m128i low[4] = {nibbles_lo(l0), nibbles_lo(l1), nibbles_hi(l0), nibbles_hi(l1)};
                for (int k = 0; k < 4; ++k) {
                    const __m128i high = _mm_slli_epi16(crumbs(qh, 2 * k), 4);
                    store16(lv->q + 128 * h + 32 * k + 16 * half, _mm_sub_epi8(_mm_or_si128(low[k], high), off));
                }
            }
        }
        for (int g = 0; g < 16; ++g) lv->scale[g] = b->scales[g];
    }
};

}  // namespace

QuantRowsFn kquant_rows(TensorType type) {
    switch (type) {
        case TensorType::Q2_K: return superblock_rows<Q2_K>;
        case TensorType::Q3_K: return superblock_rows<Q3_K>;
        case TensorType::Q4_K: return superblock_rows<Q4_K>;
        case TensorType::Q5_K: return superblock_rows<Q5_K>;
        case TensorType::Q6_K: return superblock_rows<Q6_K>;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::FERRY_SSE_LEVEL
#endif
