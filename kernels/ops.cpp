// Element-wise and attention kernels, written so the arithmetic order equals
// llama2.c's run.c (token-exact output depends on it). One floating-point
// operation per statement: on x87 each assignment rounds to float
// (-ffloat-store), so a Pentium II computes what SSE computes.
#include <cmath>
#include <cstring>

#include "kernels/dense_levels.h"
#include "kernels/kernels.h"

namespace ferry::kernels {

namespace scalar {

void attention_scores(float* att, int64_t att_stride, const float* q, int n_q, const float* key, int64_t key_stride,
                      int n_pos, int head_size, float scale) {
    for (int h = 0; h < n_q; ++h) {
        const float* qh = q + h * head_size;
        for (int t = 0; t < n_pos; ++t) {
            const float* k = key + t * key_stride;
            float score = 0.0f;
            for (int i = 0; i < head_size; ++i) {
                const float p = qh[i] * k[i];
                score += p;
            }
            att[h * att_stride + t] = score / scale;
        }
    }
}

void attention_values(float* out, const float* att, const float* value, int64_t value_stride, int n_pos,
                      int head_size) {
    for (int i = 0; i < head_size; ++i) out[i] = 0.0f;
    for (int t = 0; t < n_pos; ++t) {
        const float* v = value + t * value_stride;
        const float a = att[t];
        for (int i = 0; i < head_size; ++i) {
            const float p = a * v[i];
            out[i] += p;
        }
    }
}

}  // namespace scalar

void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < n; ++j) {
        const float sq = x[j] * x[j];
        ss += sq;
    }
    ss /= static_cast<float>(n);
    ss += eps;
    const float root = std::sqrt(ss);
    ss = 1.0f / root;
    for (int j = 0; j < n; ++j) {
        const float scaled = ss * x[j];
        out[j] = weight[j] * scaled;
    }
}

void softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; ++i)
        if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        const float shifted = x[i] - max_val;
        x[i] = std::exp(shifted);
        sum += x[i];
    }
    for (int i = 0; i < n; ++i) x[i] /= sum;
}

void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors) {
    // run.c computes the angle of pair i from i % head_size alone, so each
    // angle's cos/sin is computed once and applied to that pair of every head.
    for (int head_dim = 0; head_dim < head_size; head_dim += 2) {
        const float exponent = head_dim / static_cast<float>(head_size);
        const float power = std::pow(theta, exponent);
        float freq = 1.0f / power;
        if (freq_factors) freq /= freq_factors[head_dim / 2];
        const float val = static_cast<float>(pos) * freq;
        const float fcr = std::cos(val);
        const float fci = std::sin(val);
        for (int i = head_dim; i < q_dim; i += head_size) {
            const int rotn = i < kv_dim ? 2 : 1;  // q always, k while within kv_dim
            for (int v = 0; v < rotn; ++v) {
                float* vec = v == 0 ? q : k;
                const float v0 = vec[i];
                const float v1 = vec[i + 1];
                const float a = v0 * fcr, b = v1 * fci, c = v0 * fci, d = v1 * fcr;
                vec[i] = a - b;
                vec[i + 1] = c + d;
            }
        }
    }
}

void swiglu(float* hb, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        float val = hb[i];
        const float e = std::exp(-val);
        const float denominator = 1.0f + e;
        const float sigmoid = 1.0f / denominator;
        val *= sigmoid;
        val *= up[i];
        hb[i] = val;
    }
}

void attention(float* out, float* att_all, const float* q, const float* key, const float* value, int pos,
               int n_heads, int n_kv_heads, int head_size) {
    const DenseKernels& kern = dense_kernels(active_level());
    const int kv_dim = n_kv_heads * head_size;
    const int kv_mul = n_heads / n_kv_heads;
    const float scale = std::sqrt(static_cast<float>(head_size));
    const int n_pos = pos + 1;
    // The kv_mul query heads of one key head are scored together (the SIMD
    // levels share each key load among them).
    for (int g = 0; g < n_kv_heads; ++g)
        kern.attention_scores(att_all + static_cast<int64_t>(g) * kv_mul * n_pos, n_pos, q + g * kv_mul * head_size,
                              kv_mul, key + g * head_size, kv_dim, n_pos, head_size, scale);
    for (int h = 0; h < n_heads; ++h) {
        float* att = att_all + static_cast<int64_t>(h) * n_pos;
        softmax(att, n_pos);
        kern.attention_values(out + h * head_size, att, value + (h / kv_mul) * head_size, kv_dim, n_pos, head_size);
    }
}

}  // namespace ferry::kernels
