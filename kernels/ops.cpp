// Element-wise and attention kernels, written so the arithmetic order equals
// llama2.c's run.c (token-exact output depends on it).
#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

namespace ferry::kernels {

void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    float ss = 0.0f;
    for (int j = 0; j < n; ++j) ss += x[j] * x[j];
    ss /= n;
    ss += eps;
    ss = 1.0f / std::sqrt(ss);
    for (int j = 0; j < n; ++j) out[j] = weight[j] * (ss * x[j]);
}

void softmax(float* x, int n) {
    float max_val = x[0];
    for (int i = 1; i < n; ++i)
        if (x[i] > max_val) max_val = x[i];
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
        x[i] = std::exp(x[i] - max_val);
        sum += x[i];
    }
    for (int i = 0; i < n; ++i) x[i] /= sum;
}

void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors) {
    for (int i = 0; i < q_dim; i += 2) {
        const int head_dim = i % head_size;
        float freq = 1.0f / std::pow(theta, head_dim / static_cast<float>(head_size));
        if (freq_factors) freq /= freq_factors[head_dim / 2];
        const float val = pos * freq;
        const float fcr = std::cos(val);
        const float fci = std::sin(val);
        const int rotn = i < kv_dim ? 2 : 1;
        for (int v = 0; v < rotn; ++v) {
            float* vec = v == 0 ? q : k;
            const float v0 = vec[i];
            const float v1 = vec[i + 1];
            vec[i] = v0 * fcr - v1 * fci;
            vec[i + 1] = v0 * fci + v1 * fcr;
        }
    }
}

void swiglu(float* hb, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        float val = hb[i];
        val *= (1.0f / (1.0f + std::exp(-val)));
        val *= up[i];
        hb[i] = val;
    }
}

void attention(float* out, float* att_all, const float* q, const float* key, const float* value, int pos,
               int n_heads, int n_kv_heads, int head_size) {
    const int kv_dim = n_kv_heads * head_size;
    const int kv_mul = n_heads / n_kv_heads;
    const float scale = std::sqrt(static_cast<float>(head_size));
    for (int h = 0; h < n_heads; ++h) {
        const float* qh = q + h * head_size;
        float* att = att_all + static_cast<int64_t>(h) * (pos + 1);
        const int kv_off = (h / kv_mul) * head_size;
        for (int t = 0; t <= pos; ++t) {
            const float* kt = key + static_cast<int64_t>(t) * kv_dim + kv_off;
            float score = 0.0f;
            for (int i = 0; i < head_size; ++i) score += qh[i] * kt[i];
            att[t] = score / scale;
        }
        softmax(att, pos + 1);
        float* oh = out + h * head_size;
        std::memset(oh, 0, sizeof(float) * head_size);
        for (int t = 0; t <= pos; ++t) {
            const float* vt = value + static_cast<int64_t>(t) * kv_dim + kv_off;
            const float a = att[t];
            for (int i = 0; i < head_size; ++i) oh[i] += a * vt[i];
        }
    }
}

}  // namespace ferry::kernels
