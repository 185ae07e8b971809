// AVX2 attention (compiled with -mavx2; chosen at run time). Each q.k score
// keeps run.c's sequential order over the head's elements, so the SIMD lanes
// run over 8 positions at once (an 8x8 transpose turns 8 key rows into 8
// columns), never inside one sum; the weighted value sum runs its lanes over
// elements, each summed over positions in order. Equal bit for bit to the
// scalar level (ops.cpp).
#if defined(__i386__) || defined(__x86_64__)
#include <immintrin.h>

#include "kernels/dense_levels.h"

namespace ferry::kernels::avx2 {

namespace {

// r[i] lane j becomes r[j] lane i.
void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; ++i) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

}  // namespace

void attention_scores(float* att, const float* q, const float* key, int64_t key_stride, int n_pos, int head_size,
                      float scale) {
    const __m256 vscale = _mm256_set1_ps(scale);
    const int h8 = head_size - head_size % 8;
    int t = 0;
    for (; t + 8 <= n_pos; t += 8) {
        const float* k = key + t * key_stride;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < h8; i += 8) {
            __m256 col[8];
            for (int j = 0; j < 8; ++j) col[j] = _mm256_loadu_ps(k + j * key_stride + i);
            transpose8(col);
            for (int c = 0; c < 8; ++c) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i + c]), col[c]));
        }
        for (int i = h8; i < head_size; ++i) {
            const __m256 col = _mm256_setr_ps(k[i], k[key_stride + i], k[2 * key_stride + i], k[3 * key_stride + i],
                                              k[4 * key_stride + i], k[5 * key_stride + i], k[6 * key_stride + i],
                                              k[7 * key_stride + i]);
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(q[i]), col));
        }
        _mm256_storeu_ps(att + t, _mm256_div_ps(acc, vscale));
    }
    if (t < n_pos) scalar::attention_scores(att + t, q, key + t * key_stride, key_stride, n_pos - t, head_size, scale);
}

void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,
                      int head_size) {
    int i = 0;
    for (; i + 32 <= head_size; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < n_pos; ++t) {
            const float* v = value + t * value_stride + i;
            const __m256 a = _mm256_set1_ps(att[t]);
            a0 = _mm256_add_ps(a0, _mm256_mul_ps(a, _mm256_loadu_ps(v)));
            a1 = _mm256_add_ps(a1, _mm256_mul_ps(a, _mm256_loadu_ps(v + 8)));
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(a, _mm256_loadu_ps(v + 16)));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(a, _mm256_loadu_ps(v + 24)));
        }
        _mm256_storeu_ps(out + i, a0);
        _mm256_storeu_ps(out + i + 8, a1);
        _mm256_storeu_ps(out + i + 16, a2);
        _mm256_storeu_ps(out + i + 24, a3);
    }
    for (; i + 8 <= head_size; i += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int t = 0; t < n_pos; ++t)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(att[t]), _mm256_loadu_ps(value + t * value_stride + i)));
        _mm256_storeu_ps(out + i, acc);
    }
    if (i < head_size) scalar::attention_values(out + i, att, value + i, value_stride, n_pos, head_size - i);
}

}  // namespace ferry::kernels::avx2
#endif
