// SSE2 attention (compiled with -msse2; chosen at run time): the AVX2 scheme
// (ops_avx2.cpp) four lanes wide. Equal bit for bit to the scalar level.
#if defined(__i386__) || defined(__x86_64__)
#include <emmintrin.h>

#include "kernels/dense_levels.h"

namespace ferry::kernels::sse2 {

void attention_scores(float* att, const float* q, const float* key, int64_t key_stride, int n_pos, int head_size,
                      float scale) {
    const __m128 vscale = _mm_set1_ps(scale);
    const int h4 = head_size - head_size % 4;
    int t = 0;
    for (; t + 4 <= n_pos; t += 4) {
        const float* k = key + t * key_stride;
        __m128 acc = _mm_setzero_ps();
        for (int i = 0; i < h4; i += 4) {
            __m128 c0 = _mm_loadu_ps(k + i), c1 = _mm_loadu_ps(k + key_stride + i);
            __m128 c2 = _mm_loadu_ps(k + 2 * key_stride + i), c3 = _mm_loadu_ps(k + 3 * key_stride + i);
            _MM_TRANSPOSE4_PS(c0, c1, c2, c3);  // c0 lane j = row j element i, ...
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(q[i]), c0));
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(q[i + 1]), c1));
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(q[i + 2]), c2));
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(q[i + 3]), c3));
        }
        for (int i = h4; i < head_size; ++i) {
            const __m128 col = _mm_setr_ps(k[i], k[key_stride + i], k[2 * key_stride + i], k[3 * key_stride + i]);
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(q[i]), col));
        }
        _mm_storeu_ps(att + t, _mm_div_ps(acc, vscale));
    }
    if (t < n_pos) scalar::attention_scores(att + t, q, key + t * key_stride, key_stride, n_pos - t, head_size, scale);
}

void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,
                      int head_size) {
    int i = 0;
    for (; i + 16 <= head_size; i += 16) {
        __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int t = 0; t < n_pos; ++t) {
            const float* v = value + t * value_stride + i;
            const __m128 a = _mm_set1_ps(att[t]);
            a0 = _mm_add_ps(a0, _mm_mul_ps(a, _mm_loadu_ps(v)));
            a1 = _mm_add_ps(a1, _mm_mul_ps(a, _mm_loadu_ps(v + 4)));
            a2 = _mm_add_ps(a2, _mm_mul_ps(a, _mm_loadu_ps(v + 8)));
            a3 = _mm_add_ps(a3, _mm_mul_ps(a, _mm_loadu_ps(v + 12)));
        }
        _mm_storeu_ps(out + i, a0);
        _mm_storeu_ps(out + i + 4, a1);
        _mm_storeu_ps(out + i + 8, a2);
        _mm_storeu_ps(out + i + 12, a3);
    }
    for (; i + 4 <= head_size; i += 4) {
        __m128 acc = _mm_setzero_ps();
        for (int t = 0; t < n_pos; ++t)
            acc = _mm_add_ps(acc, _mm_mul_ps(_mm_set1_ps(att[t]), _mm_loadu_ps(value + t * value_stride + i)));
        _mm_storeu_ps(out + i, acc);
    }
    if (i < head_size) scalar::attention_values(out + i, att, value + i, value_stride, n_pos, head_size - i);
}

}  // namespace ferry::kernels::sse2
#endif
