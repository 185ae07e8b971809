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

// Sum of token t's quantized activations over group g (G values) of block b.
template <int BV, int G>
int32_t act_group_sum(const QuantActs& a, int t, int64_t b, int g) {
    if constexpr (BV == kQK8_0) {
        return a.sums[t * (a.stride / kQK8_0) + b];  // one group per block
    } else {
        const int16_t* bsums = a.bsums + (t * a.stride + b * BV + g * G) / 16;
        int32_t s = 0;
        for (int k = 0; k < G / 16; ++k) s += bsums[k];
        return s;
    }
}

// BV values per block in groups of G, with or without mins: the block's
// integer sums in any order (exact), then the canonical f32 term.
template <int BV, int G, bool kMins>
void rows_blocks(float* out, const Matrix& w, const QuantActs& a, int64_t r0, int64_t r1) {
    const QuantFormat* f = quant_format(w.type);
    const int64_t nb = w.cols / BV, nbs = a.stride / BV;
    const int64_t row_bytes = nb * f->block_bytes;
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
                    const int8_t* xq = a.qs + t * a.stride + b * BV;
                    if constexpr (BV == kQK8_0) {
                        std::memcpy(natural, a.qs + t * a.stride + q8_0_index(b, 0), 16);
                        std::memcpy(natural + 16, a.qs + t * a.stride + q8_0_index(b, 16), 16);
                        xq = natural;
                    }
                    int32_t isum = 0, msum = 0;
                    for (int g = 0; g < BV / G; ++g) {
                        int32_t s = 0;
                        for (int v = g * G; v < (g + 1) * G; ++v) s += u.q[v] * xq[v];
                        isum += u.scale[g] * s;
                        if constexpr (kMins) msum += u.min[g] * act_group_sum<BV, G>(a, t, b, g);
                    }
                    const float dx = a.d[t * nbs + b];
                    float term;
                    if constexpr (kMins) term = block_term_min(u.d, u.dmin, dx, isum, msum);
                    else term = block_term(u.d, dx, isum);
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
    switch (type) {
        case TensorType::Q8_0:
        case TensorType::Q4_0:
        case TensorType::Q5_0:
        case TensorType::IQ4_NL: return rows_blocks<kQK8_0, kQK8_0, false>;
        case TensorType::Q4_1:
        case TensorType::Q5_1: return rows_blocks<kQK8_0, kQK8_0, true>;
        case TensorType::Q2_K: return rows_blocks<kQK_K, 16, true>;
        case TensorType::Q3_K:
        case TensorType::Q6_K: return rows_blocks<kQK_K, 16, false>;
        case TensorType::Q4_K:
        case TensorType::Q5_K: return rows_blocks<kQK_K, 32, true>;
        case TensorType::TQ1_0:
        case TensorType::TQ2_0: return rows_blocks<kQK_K, kQK_K, false>;
        case TensorType::Q8_GROUP: return rows_q8_group;
        default: return nullptr;
    }
}

}  // namespace ferry::kernels::scalar
