#include "kernels/reference.h"

#include <cmath>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/kernels.h"

namespace ferry::kernels::reference {

namespace {
double weight_at(const Matrix& w, int64_t r, int64_t c) {
    const int64_t i = r * w.cols + c;
    switch (w.type) {
        case TensorType::F32: return static_cast<const float*>(w.data)[i];
        case TensorType::F16: return fp16_to_fp32(static_cast<const uint16_t*>(w.data)[i]);
        case TensorType::BF16: return bf16_to_fp32(static_cast<const uint16_t*>(w.data)[i]);
        default: return NAN;
    }
}
}  // namespace

void matmul(float* out, const Matrix& w, const float* x, int n_tokens, double* abs_sum) {
    for (int t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < w.rows; ++r) {
            double sum = 0, mag = 0;
            for (int64_t c = 0; c < w.cols; ++c) {
                const double p = weight_at(w, r, c) * x[t * w.cols + c];
                sum += p;
                mag += std::fabs(p);
            }
            out[t * w.rows + r] = static_cast<float>(sum);
            if (abs_sum) abs_sum[t * w.rows + r] = mag;
        }
    }
}

float canonical_dot(const float* w, const float* x, int64_t n, int lanes) {
    const int64_t body = n - n % lanes;
    float lane[16] = {};
    for (int64_t i = 0; i < body; ++i) {
        const float p = w[i] * x[i];
        lane[i % lanes] += p;
    }
    float s[8];
    for (int j = 0; j < 8; ++j) s[j] = lanes == 16 ? lane[j] + lane[j + 8] : lane[j];
    const float a = s[0] + s[4], b = s[2] + s[6], c = s[1] + s[5], d = s[3] + s[7];
    const float ab = a + b, cd = c + d;
    float sum = ab + cd;
    for (int64_t i = body; i < n; ++i) {
        const float p = w[i] * x[i];
        sum += p;
    }
    return sum;
}

void rmsnorm(float* out, const float* x, const float* weight, int n, float eps) {
    double ss = 0;
    for (int i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
    const double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int i = 0; i < n; ++i) out[i] = static_cast<float>(weight[i] * (x[i] * inv));
}

void softmax(float* x, int n) {
    double max = x[0];
    // Not std::fmax: GCC 12's aarch64 vectorizer fails on that reduction (an internal compiler error).
    for (int i = 1; i < n; ++i) max = x[i] > max ? x[i] : max;
    std::vector<double> e(static_cast<size_t>(n));
    double sum = 0;
    for (int i = 0; i < n; ++i) sum += e[i] = std::exp(x[i] - max);
    for (int i = 0; i < n; ++i) x[i] = static_cast<float>(e[i] / sum);
}

void rope(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta,
          const float* freq_factors) {
    for (int i = 0; i < q_dim; i += 2) {
        const int head_dim = i % head_size;
        float freq = 1.0f / std::pow(theta, head_dim / static_cast<float>(head_size));
        if (freq_factors) freq /= freq_factors[head_dim / 2];
        const double angle = static_cast<float>(pos) * freq;
        const double c = std::cos(angle), s = std::sin(angle);
        for (int v = 0; v < (i < kv_dim ? 2 : 1); ++v) {
            float* vec = v == 0 ? q : k;
            const double v0 = vec[i], v1 = vec[i + 1];
            vec[i] = static_cast<float>(v0 * c - v1 * s);
            vec[i + 1] = static_cast<float>(v0 * s + v1 * c);
        }
    }
}

void rope_neox(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta) {
    const int half = head_size / 2;
    for (int h = 0; h < q_dim; h += head_size)
        for (int j = 0; j < half; ++j) {
            const double angle = static_cast<double>(pos) / std::pow(static_cast<double>(theta), 2.0 * j / head_size);
            const double c = std::cos(angle), s = std::sin(angle);
            for (int v = 0; v < (h < kv_dim ? 2 : 1); ++v) {
                float* vec = (v == 0 ? q : k) + h;
                const double v0 = vec[j], v1 = vec[j + half];
                vec[j] = static_cast<float>(v0 * c - v1 * s);
                vec[j + half] = static_cast<float>(v0 * s + v1 * c);
            }
        }
}

void swiglu(float* hb, const float* up, int n) {
    for (int i = 0; i < n; ++i) {
        const double v = hb[i];
        hb[i] = static_cast<float>(v / (1.0 + std::exp(-v)) * up[i]);
    }
}

void attention(float* out, const float* q, const float* key, const float* value, int pos, int n_heads,
               int n_kv_heads, int head_size) {
    const int kv_dim = n_kv_heads * head_size;
    const int kv_mul = n_heads / n_kv_heads;
    std::vector<double> att(static_cast<size_t>(pos) + 1);
    for (int h = 0; h < n_heads; ++h) {
        const int kv_off = (h / kv_mul) * head_size;
        double max = -INFINITY;
        for (int t = 0; t <= pos; ++t) {
            double score = 0;
            for (int i = 0; i < head_size; ++i)
                score += static_cast<double>(q[h * head_size + i]) * key[t * kv_dim + kv_off + i];
            att[t] = score / std::sqrt(static_cast<double>(head_size));
            max = std::fmax(max, att[t]);
        }
        double sum = 0;
        for (int t = 0; t <= pos; ++t) sum += att[t] = std::exp(att[t] - max);
        for (int i = 0; i < head_size; ++i) {
            double o = 0;
            for (int t = 0; t <= pos; ++t) o += att[t] / sum * value[t * kv_dim + kv_off + i];
            out[h * head_size + i] = static_cast<float>(o);
        }
    }
}

void attention_rows(float* out, const float* q, const Matrix& key, const Matrix& value, int pos, int n_heads,
                    int n_kv_heads, int head_size) {
    const int kv_dim = n_kv_heads * head_size;
    const int kv_mul = n_heads / n_kv_heads;
    const int n_pos = pos + 1;
    std::vector<float> k(static_cast<size_t>(n_pos) * kv_dim), v(k.size()), att(static_cast<size_t>(n_pos));
    for (int t = 0; t < n_pos; ++t) {
        dequantize_row(key, t, &k[static_cast<size_t>(t) * kv_dim]);
        dequantize_row(value, t, &v[static_cast<size_t>(t) * kv_dim]);
    }
    const float scale = std::sqrt(static_cast<float>(head_size));
    for (int h = 0; h < n_heads; ++h) {
        const int kv_off = (h / kv_mul) * head_size;
        for (int t = 0; t < n_pos; ++t) {
            float score = 0.0f;
            for (int i = 0; i < head_size; ++i) {
                const float p = q[h * head_size + i] * k[static_cast<size_t>(t) * kv_dim + kv_off + i];
                score += p;
            }
            att[t] = score / scale;
        }
        kernels::softmax(att.data(), n_pos);  // run.c's order, tested against reference::softmax
        for (int i = 0; i < head_size; ++i) {
            float o = 0.0f;
            for (int t = 0; t < n_pos; ++t) {
                const float p = att[t] * v[static_cast<size_t>(t) * kv_dim + kv_off + i];
                o += p;
            }
            out[h * head_size + i] = o;
        }
    }
}

}  // namespace ferry::kernels::reference
