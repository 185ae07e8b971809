// The portable quantized dot products: every block type through its integer
// decoding (BlockInts), in the canonical order of quant_dot.h. This is the
// path of a Pentium II and the definition the SIMD levels must equal.
#include <cstring>

#include "kernels/quant_dot.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels::scalar {

namespace {

// Tokens per pass over a weight row: each block is decoded once per tile.
constexpr int kTokenTile = 4;

bool has_mins(TensorType type) {
    return type == TensorType::Q4_1 || type == TensorType::Q5_1 || type == TensorType::Q2_K ||
           type == TensorType::Q4_K || type == TensorType::Q5_K;
}

// Sum of token t's quantized activations [v0, v0 + n), from the stored partial sums.
int32_t act_sum(const QuantActs& a, int t, int64_t v0, int n) {
    int32_t s = 0;
    if (a.type == TensorType::Q8_0) {
        const int32_t* sums = a.sums + t * (a.stride / kQK8_0);
        for (int64_t v = v0; v < v0 + n; v += kQK8_0) s += sums[v / kQK8_0];
    } else {
        const int16_t* bsums = a.bsums + t * (a.stride / 16);
        for (int64_t v = v0; v < v0 + n; v += 16) s += bsums[v / 16];
    }
    return s;
}

void rows_blocks(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    const QuantFormat* f = quant_format(w.type);
    const int bv = f->block_values;
    const int64_t nb = w.cols / bv;
    const int64_t row_bytes = nb * f->block_bytes;
    const bool mins = has_mins(w.type);
    BlockInts u;
    for (int64_t r = r0; r < r1; ++r) {
        const uint8_t* row = static_cast<const uint8_t*>(w.data) + r * row_bytes;
        for (int t0 = 0; t0 < a.n_tokens; t0 += kTokenTile) {
            const int tn = a.n_tokens - t0 < kTokenTile ? a.n_tokens - t0 : kTokenTile;
            float acc[kTokenTile][8] = {};
            for (int64_t b = 0; b < nb; ++b) {
                f->unpack(row + b * f->block_bytes, &u);
                for (int t = t0; t < t0 + tn; ++t) {
                    int8_t natural[kQK8_0];
                    const int8_t* xq = a.qs + t * a.stride + b * bv;
                    if (a.type == TensorType::Q8_0) {
                        std::memcpy(natural, a.qs + t * a.stride + q8_0_index(b, 0), 16);
                        std::memcpy(natural + 16, a.qs + t * a.stride + q8_0_index(b, 16), 16);
                        xq = natural;
                    }
                    int32_t isum = 0, msum = 0;
                    for (int g0 = 0; g0 < bv; g0 += u.group) {
                        int32_t s = 0;
                        for (int v = g0; v < g0 + u.group; ++v) s += u.q[v] * xq[v];
                        isum += u.scale[g0 / u.group] * s;
                        if (mins) msum += u.min[g0 / u.group] * act_sum(a, t, b * bv + g0, u.group);
                    }
                    const float dx = a.d[t * (a.stride / bv) + b];
                    const float term = mins ? block_term_min(u.d, u.dmin, dx, isum, msum) : block_term(u.d, dx, isum);
                    acc[t - t0][b % 8] += term;
                }
            }
            for (int t = t0; t < t0 + tn; ++t) out[t * w.rows + r] = reduce_acc8(acc[t - t0]);
        }
    }
}

void rows_q8_group(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    const int64_t G = w.group, ng = w.cols / G;
    const int8_t* wq = static_cast<const int8_t*>(w.data);
    const uint8_t* ws = reinterpret_cast<const uint8_t*>(wq + w.rows * w.cols);  // f32 scales, maybe unaligned
    for (int64_t r = r0; r < r1; ++r) {
        for (int t = 0; t < a.n_tokens; ++t) {
            float acc[8] = {};
            for (int64_t b = 0; b < ng; ++b) {
                const int8_t* wg = wq + r * w.cols + b * G;
                const int8_t* xg = a.qs + t * a.stride + b * G;
                int32_t isum = 0;
                for (int64_t j = 0; j < G; ++j) isum += wg[j] * xg[j];
                float dw;
                std::memcpy(&dw, ws + (r * ng + b) * 4, 4);
                const float term = block_term(dw, a.d[t * ng + b], isum);
                acc[b % 8] += term;
            }
            out[t * w.rows + r] = reduce_acc8(acc);
        }
    }
}

}  // namespace

QuantRowsFn quant_rows(TensorType type) {
    if (type == TensorType::Q8_GROUP) return rows_q8_group;
    if (type == TensorType::Q8_K || !quant_format(type)) return nullptr;
    return rows_blocks;
}

}  // namespace ferry::kernels::scalar
