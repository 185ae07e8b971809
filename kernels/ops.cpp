// Element-wise and attention kernels, written so the arithmetic order equals
// llama2.c's run.c (token-exact output depends on it). One floating-point
// operation per statement: on x87 each assignment rounds to float
// (-ffloat-store), so a Pentium II computes what SSE computes.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/attention_widen.h"
#include "kernels/dense_levels.h"
#include "kernels/fp16.h"
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
    for (int t = 0; t < n_pos; ++t) {
        const float* v = value + t * value_stride;
        const float a = att[t];
        for (int i = 0; i < head_size; ++i) {
            const float p = a * v[i];
            out[i] += p;
        }
    }
}

void widen_f16(float* out, const uint16_t* in, int64_t n) {
    for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(in[i]);
}

void widen_q8_0(float* out, const BlockQ8_0* blocks, int begin, int n) { widen_q8_0_values(out, blocks, begin, n); }

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

void rope_neox(float* q, float* k, int q_dim, int kv_dim, int head_size, int pos, float theta) {
    const int half = head_size / 2;
    for (int j = 0; j < half; ++j) {
        const float freq = 1.0f / std::pow(theta, (2 * j) / static_cast<float>(head_size));
        const float val = static_cast<float>(pos) * freq;
        const float fcr = std::cos(val), fci = std::sin(val);
        for (int h = 0; h < q_dim; h += head_size) {
            const int rotn = h < kv_dim ? 2 : 1;  // q always, k while within kv_dim
            for (int v = 0; v < rotn; ++v) {
                float* vec = (v == 0 ? q : k) + h;
                const float v0 = vec[j], v1 = vec[j + half];
                vec[j] = v0 * fcr - v1 * fci;
                vec[j + half] = v0 * fci + v1 * fcr;
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

namespace {

// Floats of the buffer a span of 16-bit or quantized key/value rows is widened
// into: 16 KB, so the span stays in L1 while it is read.
constexpr int kSpanFloats = kMaxAttentionHeadSize;

// Positions of a span: as many as fit kSpanFloats, a multiple of 8 when
// possible (the SIMD scores take 8 positions at a time).
int span_positions(int head_size) {
    const int n = kSpanFloats / head_size;
    return n >= 8 ? n - n % 8 : n;
}

// One kv head's slice [offset, offset + head_size) of positions t0 .. t0+n-1
// of `rows` as f32 rows: straight from an F32 cache (stride cols), else widened
// into buf (stride head_size; buf holds n * head_size floats).
struct HeadRows {
    const float* data;
    int64_t stride;
};
HeadRows head_rows(const Matrix& rows, int offset, int head_size, int t0, int n, float* buf,
                   const DenseKernels& kern) {
    const int64_t row_bytes = tensor_bytes(rows.type, 1, rows.cols);
    const uint8_t* first = static_cast<const uint8_t*>(rows.data) + t0 * row_bytes;
    if (rows.type == TensorType::F32) return {reinterpret_cast<const float*>(first) + offset, rows.cols};
    for (int t = 0; t < n; ++t) {
        const uint8_t* row = first + t * row_bytes;
        float* dst = buf + static_cast<int64_t>(t) * head_size;
        if (rows.type == TensorType::F16) kern.widen_f16(dst, reinterpret_cast<const uint16_t*>(row) + offset, head_size);
        else kern.widen_q8_0(dst, reinterpret_cast<const BlockQ8_0*>(row), offset, head_size);
    }
    return {buf, head_size};
}

}  // namespace

void attention(float* out, float* att_all, const float* q, const Matrix& key, const Matrix& value, int pos,
               int n_heads, int n_kv_heads, int head_size) {
    const DenseKernels& kern = dense_kernels(active_level());
    const int kv_mul = n_heads / n_kv_heads;
    const float scale = std::sqrt(static_cast<float>(head_size));
    const int n_pos = pos + 1;
    // An F32 cache is read in place in one span; the others a span of
    // positions at a time, widened into buf (no decoded copy of the cache).
    float buf[kSpanFloats];
    const int key_span = key.type == TensorType::F32 ? n_pos : span_positions(head_size);
    const int value_span = value.type == TensorType::F32 ? n_pos : span_positions(head_size);
    for (int g = 0; g < n_kv_heads; ++g) {
        const int h0 = g * kv_mul;  // the kv_mul query heads of key head g
        float* att_g = att_all + static_cast<int64_t>(h0) * n_pos;
        // Scored together: the SIMD levels share each key load among them.
        for (int t0 = 0; t0 < n_pos; t0 += key_span) {
            const int n = std::min(key_span, n_pos - t0);
            const HeadRows k = head_rows(key, g * head_size, head_size, t0, n, buf, kern);
            kern.attention_scores(att_g + t0, n_pos, q + h0 * head_size, kv_mul, k.data, k.stride, n, head_size,
                                  scale);
        }
        for (int h = h0; h < h0 + kv_mul; ++h) {
            softmax(att_all + static_cast<int64_t>(h) * n_pos, n_pos);
            for (int i = 0; i < head_size; ++i) out[h * head_size + i] = 0.0f;
        }
        for (int t0 = 0; t0 < n_pos; t0 += value_span) {
            const int n = std::min(value_span, n_pos - t0);
            const HeadRows v = head_rows(value, g * head_size, head_size, t0, n, buf, kern);
            for (int h = h0; h < h0 + kv_mul; ++h)
                kern.attention_values(out + h * head_size, att_all + static_cast<int64_t>(h) * n_pos + t0, v.data,
                                      v.stride, n, head_size);
        }
    }
}

void attention(float* out, float* att, const float* q, const float* key, const float* value, int pos, int n_heads,
               int n_kv_heads, int head_size) {
    const int64_t kv_dim = static_cast<int64_t>(n_kv_heads) * head_size;
    attention(out, att, q, Matrix{TensorType::F32, key, pos + 1, kv_dim, 0},
              Matrix{TensorType::F32, value, pos + 1, kv_dim, 0}, pos, n_heads, n_kv_heads, head_size);
}

}  // namespace ferry::kernels
