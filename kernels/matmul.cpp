// Matrix products over stored weight types. This file holds the portable
// scalar path and the dispatch; SIMD paths live in their own files.
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "kernels/quants.h"

namespace ferry::kernels {

namespace {

// Rows per chunk so that a chunk is worth handing to another thread.
int64_t row_grain(int64_t cols, int n_tokens) {
    const int64_t work_per_row = cols * (n_tokens > 0 ? n_tokens : 1);
    const int64_t target = 1 << 16;
    int64_t g = target / (work_per_row > 0 ? work_per_row : 1);
    return g < 1 ? 1 : g;
}

void matmul_f32_rows(float* out, const Matrix& w, const float* x, int n_tokens, int64_t r0, int64_t r1) {
    const float* W = static_cast<const float*>(w.data);
    const int64_t n = w.cols;
    for (int64_t r = r0; r < r1; ++r) {
        const float* row = W + r * n;
        for (int t = 0; t < n_tokens; ++t) {
            const float* xt = x + static_cast<int64_t>(t) * n;
            float sum = 0.0f;
            for (int64_t j = 0; j < n; ++j) sum += row[j] * xt[j];
            out[static_cast<int64_t>(t) * w.rows + r] = sum;
        }
    }
}

void matmul_q8_0_rows(float* out, const Matrix& w, const BlockQ8_0* xq, int n_tokens, int64_t r0, int64_t r1) {
    const int64_t nb = w.cols / kQK8_0;
    const BlockQ8_0* W = static_cast<const BlockQ8_0*>(w.data);
    for (int64_t r = r0; r < r1; ++r) {
        const BlockQ8_0* row = W + r * nb;
        for (int t = 0; t < n_tokens; ++t) {
            const BlockQ8_0* xt = xq + static_cast<int64_t>(t) * nb;
            float sum = 0.0f;
            for (int64_t b = 0; b < nb; ++b) {
                int32_t isum = 0;
                for (int j = 0; j < kQK8_0; ++j) isum += row[b].qs[j] * xt[b].qs[j];
                sum += static_cast<float>(isum) * (fp16_to_fp32(row[b].d) * fp16_to_fp32(xt[b].d));
            }
            out[static_cast<int64_t>(t) * w.rows + r] = sum;
        }
    }
}

void matmul_q8_group_rows(float* out, const Matrix& w, const int8_t* xq, const float* xs, int n_tokens, int64_t r0,
                          int64_t r1) {
    const int64_t n = w.cols, G = w.group;
    const int8_t* Wq = static_cast<const int8_t*>(w.data);
    const float* Ws = reinterpret_cast<const float*>(Wq + w.rows * w.cols);
    for (int64_t r = r0; r < r1; ++r) {
        for (int t = 0; t < n_tokens; ++t) {
            const int8_t* xt = xq + static_cast<int64_t>(t) * n;
            const float* st = xs + static_cast<int64_t>(t) * (n / G);
            float sum = 0.0f;
            for (int64_t j = 0; j < n; j += G) {
                int32_t isum = 0;
                for (int64_t k = 0; k < G; ++k) isum += static_cast<int32_t>(xt[j + k]) * Wq[r * n + j + k];
                sum += static_cast<float>(isum) * Ws[(r * n + j) / G] * st[j / G];
            }
            out[static_cast<int64_t>(t) * w.rows + r] = sum;
        }
    }
}

}  // namespace

bool matmul_supports(TensorType type) {
    return type == TensorType::F32 || type == TensorType::Q8_0 || type == TensorType::Q8_GROUP ||
           quant_matmul_supports(type);
}

void matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool) {
    auto run = [&](const std::function<void(int64_t, int64_t)>& rows) {
        const int64_t grain = row_grain(w.cols, n_tokens);
        if (pool) pool->parallel_for(w.rows, grain, rows);
        else rows(0, w.rows);
    };
    switch (w.type) {
        case TensorType::F32:
            run([&](int64_t r0, int64_t r1) { matmul_f32_rows(out, w, x, n_tokens, r0, r1); });
            return;
        case TensorType::Q8_0: {
            const int64_t nb = w.cols / kQK8_0;
            std::vector<BlockQ8_0> xq(static_cast<size_t>(nb * n_tokens));
            for (int t = 0; t < n_tokens; ++t) quantize_row_q8_0(x + t * w.cols, xq.data() + t * nb, w.cols);
            run([&](int64_t r0, int64_t r1) { matmul_q8_0_rows(out, w, xq.data(), n_tokens, r0, r1); });
            return;
        }
        case TensorType::Q8_GROUP: {
            std::vector<int8_t> xq(static_cast<size_t>(w.cols * n_tokens));
            std::vector<float> xs(static_cast<size_t>(w.cols / w.group * n_tokens));
            for (int t = 0; t < n_tokens; ++t)
                quantize_row_q8_group(x + t * w.cols, xq.data() + t * w.cols, xs.data() + t * (w.cols / w.group),
                                      w.cols, w.group);
            run([&](int64_t r0, int64_t r1) {
                matmul_q8_group_rows(out, w, xq.data(), xs.data(), n_tokens, r0, r1);
            });
            return;
        }
        default:
            // Callers check matmul_supports() when they bind weights.
            quant_matmul(out, w, x, n_tokens, pool);
            return;
    }
}

void dequantize_row(const Matrix& w, int64_t row, float* out) {
    switch (w.type) {
        case TensorType::F32:
            std::memcpy(out, static_cast<const float*>(w.data) + row * w.cols, sizeof(float) * w.cols);
            return;
        case TensorType::Q8_0: {
            const int64_t nb = w.cols / kQK8_0;
            const BlockQ8_0* b = static_cast<const BlockQ8_0*>(w.data) + row * nb;
            for (int64_t i = 0; i < nb; ++i) {
                const float d = fp16_to_fp32(b[i].d);
                for (int j = 0; j < kQK8_0; ++j) out[i * kQK8_0 + j] = b[i].qs[j] * d;
            }
            return;
        }
        case TensorType::Q8_GROUP: {
            const int8_t* q = static_cast<const int8_t*>(w.data);
            const float* s = reinterpret_cast<const float*>(q + w.rows * w.cols);
            for (int64_t j = 0; j < w.cols; ++j)
                out[j] = q[row * w.cols + j] * s[(row * w.cols + j) / w.group];
            return;
        }
        default:
            if (!quant_dequantize_row(w, row, out)) std::memset(out, 0, sizeof(float) * w.cols);
            return;
    }
}

float read_bandwidth_probe(const float* data, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += data[i];
        s1 += data[i + 1];
        s2 += data[i + 2];
        s3 += data[i + 3];
    }
    for (; i < n; ++i) s0 += data[i];
    return s0 + s1 + s2 + s3;
}

}  // namespace ferry::kernels
