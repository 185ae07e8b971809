// The K-quants Q2_K..Q6_K (and the activation type Q8_K): GGML's reference
// quantizers with no importance matrix (scale searches make_qx_quants,
// make_q3_quants, make_qkx2_quants) and their integer decoding.
//
// Byte equality with GGML depends on doing every float operation in GGML's
// order and precision; the expressions below keep it, which is why some read
// (w * x) * l rather than w * (x * l).
#include <cmath>
#include <cstring>

#include "kernels/fp16.h"
#include "kernels/quant_formats.h"

namespace ferry::kernels {

namespace {

constexpr float kGroupMaxEps = 1e-15f;

int clamp(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

// The value of largest magnitude (the first one on ties).
float largest(int n, const float* v) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; ++i) {
        if (std::fabs(v[i]) > amax) {
            amax = std::fabs(v[i]);
            max = v[i];
        }
    }
    return max;
}

// largest(), or 0 with all levels 0 for a group GGML treats as zero (|max| < kGroupMaxEps).
float group_max(int n, const float* x, int8_t* L) {
    const float max = largest(n, x);
    if (std::fabs(max) >= kGroupMaxEps) return max;
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.0f;
}

// Symmetric scale search (Q6_K's groups, Q3_K... scales): levels in
// [-nmax, nmax), weighted by x^2, trying 18 scales around -nmax / max.
// Returns the scale; L gets levels + nmax.
float make_qx_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = group_max(n, x, L);
    if (max == 0.0f) return 0.0f;
    auto fit = [&](float iscale, float* sumlx, float* suml2) {
        *sumlx = 0.0f;
        *suml2 = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            *sumlx += w * x[i] * static_cast<float>(l);
            *suml2 += w * static_cast<float>(l) * static_cast<float>(l);
        }
    };
    auto assign = [&](float iscale) {
        for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(nmax + clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    };
    float iscale = static_cast<float>(-nmax) / max;
    float sumlx, suml2;
    fit(iscale, &sumlx, &suml2);
    assign(iscale);
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
        fit(iscale, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            assign(iscale);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Q3_K's group search: start from -nmax / max, then move single levels while
// the x^2-weighted fit improves (at most 5 passes). L gets levels + nmax.
float make_q3_quants(int n, int nmax, const float* x, int8_t* L) {
    const float max = group_max(n, x, L);
    if (max == 0.0f) return 0.0f;
    const float iscale = static_cast<float>(-nmax) / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; ++i) {
        const int l = clamp(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = static_cast<int8_t>(l);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * static_cast<float>(l);
        suml2 += w * static_cast<float>(l) * static_cast<float>(l);
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * static_cast<float>(L[i]);
            if (slx > 0) {
                float sl2 = suml2 - w * static_cast<float>(L[i]) * static_cast<float>(L[i]);
                const int new_l = clamp(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * static_cast<float>(new_l);
                    sl2 += w * static_cast<float>(new_l) * static_cast<float>(new_l);
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = static_cast<int8_t>(new_l);
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; ++i) L[i] = static_cast<int8_t>(L[i] + nmax);
    return sumlx / suml2;
}

// Scale-and-min search (Q2_K, Q4_K, Q5_K): levels in [0, nmax] for
// x ~ scale * l - the_min, weighted least squares over nstep + 1 candidate
// scales, error measured as weighted |diff| (use_mad) or diff^2.
float make_qkx2_quants(int n, int nmax, const float* x, const float* weights, uint8_t* L, float* the_min,
                       float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }
    auto error = [&](float scale, float m, const uint8_t* levels) {
        float e = 0.0f;
        for (int i = 0; i < n; ++i) {
            float diff = scale * static_cast<float>(levels[i]) + m - x[i];
            diff = use_mad ? std::fabs(diff) : diff * diff;
            e += weights[i] * diff;
        }
        return e;
    };
    float iscale = static_cast<float>(nmax) / (max - min);
    float scale = 1 / iscale;
    for (int i = 0; i < n; ++i) L[i] = static_cast<uint8_t>(clamp(nearest_int(iscale * (x[i] - min)), 0, nmax));
    float best_error = error(scale, min, L);
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; ++i) {
            const int l = clamp(nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = static_cast<uint8_t>(l);
            const float fl = static_cast<float>(l);
            sum_l += weights[i] * fl;
            sum_l2 += weights[i] * fl * fl;
            sum_xl += weights[i] * fl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            const float cur_error = error(this_scale, this_min, Laux);
            if (cur_error < best_error) {
                std::memcpy(L, Laux, static_cast<size_t>(n));
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Nibbles of Q4_K/Q5_K: byte 32c + l holds value 64c + l (low) and 64c + 32 + l (high).
void unpack_nibbles_k(const uint8_t* qs, int8_t* q) {
    for (int c = 0; c < 4; ++c)
        for (int l = 0; l < 32; ++l) {
            q[64 * c + l] = static_cast<int8_t>(qs[32 * c + l] & 0xF);
            q[64 * c + 32 + l] = static_cast<int8_t>(qs[32 * c + l] >> 4);
        }
}

// Q4_K/Q5_K: 8 groups of 32 with a scale and a min each, weighted by
// |x| + rms(x); both quantized to 6 bits against their maximum.
void scales_mins_k(const float* x, int nmax, float rmin, int nstep, uint8_t* L, uint8_t* packed, uint16_t* d,
                   uint16_t* dmin) {
    float scales[8], mins[8], weights[32];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = std::sqrt(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = static_cast<uint8_t>(nearest_int(inv_scale * scales[j]));
        uint8_t lm = static_cast<uint8_t>(nearest_int(inv_min * mins[j]));
        if (ls > 63) ls = 63;
        if (lm > 63) lm = 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
            packed[j] |= static_cast<uint8_t>((lm >> 4) << 6);
        }
    }
    *d = fp32_to_fp16(max_scale / 63.0f);
    *dmin = fp32_to_fp16(max_min / 63.0f);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        const float dl = fp16_to_fp32(*d) * sc;
        if (!dl) continue;
        const float dm = fp16_to_fp32(*dmin) * m;
        for (int ii = 0; ii < 32; ++ii) L[32 * j + ii] = static_cast<uint8_t>(clamp(nearest_int((x[32 * j + ii] + dm) / dl), 0, nmax));
    }
}

void unpack_scales_mins_k(const uint8_t* packed, uint16_t d, uint16_t dmin, BlockInts* out) {
    out->d = fp16_to_fp32(d);
    out->dmin = fp16_to_fp32(dmin);
    out->group = 32;
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        out->scale[j] = sc;
        out->min[j] = m;
    }
}

}  // namespace

void pack_2bit(const uint8_t* L, uint8_t* qs) {
    for (int j = 0; j < kQK_K; j += 128)
        for (int l = 0; l < 32; ++l)
            qs[j / 4 + l] =
                static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

void unpack_2bit(const uint8_t* qs, int offset, int8_t* q) {
    for (int h = 0; h < 2; ++h)
        for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) q[128 * h + 32 * k + l] = static_cast<int8_t>(((qs[32 * h + l] >> (2 * k)) & 3) - offset);
}

void quantize_q2_k(const float* x, void* y, int64_t n) {
    BlockQ2_K* b = static_cast<BlockQ2_K*>(y);
    uint8_t L[kQK_K];
    float weights[16], mins[16], scales[16];
    const float q4scale = 15.0f;
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; ++j) {
            for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < 16; ++j) b[i].scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
            b[i].d = fp32_to_fp16(max_scale / q4scale);
        } else {
            for (int j = 0; j < 16; ++j) b[i].scales[j] = 0;
            b[i].d = fp32_to_fp16(0.0f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < 16; ++j) b[i].scales[j] |= static_cast<uint8_t>(nearest_int(iscale * mins[j]) << 4);
            b[i].dmin = fp32_to_fp16(max_min / q4scale);
        } else {
            b[i].dmin = fp32_to_fp16(0.0f);
        }
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_fp32(b[i].d) * (b[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = fp16_to_fp32(b[i].dmin) * (b[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<uint8_t>(clamp(nearest_int((x[16 * j + ii] + dm) / d), 0, 3));
        }
        pack_2bit(L, b[i].qs);
    }
}

void quantize_q3_k(const float* x, void* y, int64_t n) {
    BlockQ3_K* b = static_cast<BlockQ3_K*>(y);
    int8_t L[kQK_K];
    float scales[16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        for (int j = 0; j < 16; ++j) scales[j] = make_q3_quants(16, 4, x + 16 * j, L + 16 * j);
        const float max_scale = largest(16, scales);
        std::memset(b[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; ++j) {
                const int l = clamp(static_cast<int8_t>(nearest_int(iscale * scales[j])), -32, 31) + 32;
                if (j < 8) b[i].scales[j] = static_cast<uint8_t>(l & 0xF);
                else b[i].scales[j - 8] |= static_cast<uint8_t>((l & 0xF) << 4);
                b[i].scales[j % 4 + 8] |= static_cast<uint8_t>((l >> 4) << (2 * (j / 4)));
            }
            b[i].d = fp32_to_fp16(1 / iscale);
        } else {
            b[i].d = fp32_to_fp16(0.0f);
        }
        int8_t sc[16];
        q3_k_scales(b[i].scales, sc);
        for (int j = 0; j < 16; ++j) {
            const float d = fp16_to_fp32(b[i].d) * sc[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) L[16 * j + ii] = static_cast<int8_t>(clamp(nearest_int(x[16 * j + ii] / d), -4, 3) + 4);
        }
        std::memset(b[i].hmask, 0, sizeof(b[i].hmask));
        uint8_t low[kQK_K];
        for (int v = 0; v < kQK_K; ++v) {
            if (L[v] > 3) b[i].hmask[v % 32] |= static_cast<uint8_t>(1 << (v / 32));
            low[v] = static_cast<uint8_t>(L[v] & 3);
        }
        pack_2bit(low, b[i].qs);
    }
}

void quantize_q4_k(const float* x, void* y, int64_t n) {
    BlockQ4_K* b = static_cast<BlockQ4_K*>(y);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        scales_mins_k(x, 15, -1.0f, 20, L, b[i].scales, &b[i].d, &b[i].dmin);
        for (int j = 0; j < kQK_K; j += 64)
            for (int l = 0; l < 32; ++l) b[i].qs[j / 2 + l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
    }
}

void quantize_q5_k(const float* x, void* y, int64_t n) {
    BlockQ5_K* b = static_cast<BlockQ5_K*>(y);
    uint8_t L[kQK_K];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        scales_mins_k(x, 31, -0.5f, 15, L, b[i].scales, &b[i].d, &b[i].dmin);
        std::memset(b[i].qh, 0, sizeof(b[i].qh));
        for (int v = 0; v < kQK_K; ++v)
            if (L[v] > 15) b[i].qh[v % 32] |= static_cast<uint8_t>(1 << (v / 32));
        for (int j = 0; j < kQK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                b[i].qs[j / 2 + l] = static_cast<uint8_t>((L[j + l] & 0xF) | ((L[j + l + 32] & 0xF) << 4));
    }
}

void quantize_q6_k(const float* x, void* y, int64_t n) {
    BlockQ6_K* b = static_cast<BlockQ6_K*>(y);
    int8_t L[kQK_K];
    float scales[16];
    for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
        for (int g = 0; g < 16; ++g) scales[g] = make_qx_quants(16, 32, x + 16 * g, L + 16 * g);
        const float max_scale = largest(16, scales);
        std::memset(&b[i], 0, sizeof(BlockQ6_K));
        if (std::fabs(max_scale) < kGroupMaxEps) continue;  // d = 0
        const float iscale = -128.0f / max_scale;
        b[i].d = fp32_to_fp16(1 / iscale);
        for (int g = 0; g < 16; ++g) {
            const int s = nearest_int(iscale * scales[g]);
            b[i].scales[g] = static_cast<int8_t>(s < 127 ? s : 127);
        }
        for (int g = 0; g < 16; ++g) {
            const float d = fp16_to_fp32(b[i].d) * b[i].scales[g];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) L[16 * g + ii] = static_cast<int8_t>(clamp(nearest_int(x[16 * g + ii] / d), -32, 31) + 32);
        }
        for (int j = 0; j < kQK_K; j += 128) {
            uint8_t* ql = b[i].ql + j / 2;
            uint8_t* qh = b[i].qh + j / 4;
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = static_cast<uint8_t>((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = static_cast<uint8_t>((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = static_cast<uint8_t>((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

void unpack_q2_k(const void* block, BlockInts* out) {
    const BlockQ2_K* b = static_cast<const BlockQ2_K*>(block);
    out->d = fp16_to_fp32(b->d);
    out->dmin = fp16_to_fp32(b->dmin);
    out->group = 16;
    for (int g = 0; g < 16; ++g) {
        out->scale[g] = b->scales[g] & 0xF;
        out->min[g] = b->scales[g] >> 4;
    }
    unpack_2bit(b->qs, 0, out->q);
}

void unpack_q3_k(const void* block, BlockInts* out) {
    const BlockQ3_K* b = static_cast<const BlockQ3_K*>(block);
    out->d = fp16_to_fp32(b->d);
    out->dmin = 0.0f;
    out->group = 16;
    int8_t sc[16];
    q3_k_scales(b->scales, sc);
    for (int g = 0; g < 16; ++g) {
        out->scale[g] = sc[g];
        out->min[g] = 0;
    }
    unpack_2bit(b->qs, 4, out->q);
    // bit j of hmask[l] set: value 32j + l is 4 higher
    for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l) out->q[32 * j + l] = static_cast<int8_t>(out->q[32 * j + l] + 4 * ((b->hmask[l] >> j) & 1));
}

void unpack_q4_k(const void* block, BlockInts* out) {
    const BlockQ4_K* b = static_cast<const BlockQ4_K*>(block);
    unpack_scales_mins_k(b->scales, b->d, b->dmin, out);
    unpack_nibbles_k(b->qs, out->q);
}

void unpack_q5_k(const void* block, BlockInts* out) {
    const BlockQ5_K* b = static_cast<const BlockQ5_K*>(block);
    unpack_scales_mins_k(b->scales, b->d, b->dmin, out);
    unpack_nibbles_k(b->qs, out->q);
    for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l) out->q[32 * j + l] = static_cast<int8_t>(out->q[32 * j + l] | (((b->qh[l] >> j) & 1) << 4));
}

void unpack_q6_k(const void* block, BlockInts* out) {
    const BlockQ6_K* b = static_cast<const BlockQ6_K*>(block);
    out->d = fp16_to_fp32(b->d);
    out->dmin = 0.0f;
    out->group = 16;
    for (int g = 0; g < 16; ++g) {
        out->scale[g] = b->scales[g];
        out->min[g] = 0;
    }
    // In each half of 128: values 32k + l, low nibble from ql[32 (k % 2) + l]
    // (high nibble for k >= 2), two high bits 2k of qh[l].
    for (int half = 0; half < 2; ++half) {
        const uint8_t* ql = b->ql + 64 * half;
        const uint8_t* qh = b->qh + 32 * half;
        int8_t* q = out->q + 128 * half;
        for (int k = 0; k < 4; ++k)
            for (int l = 0; l < 32; ++l) {
                const int low = (ql[32 * (k % 2) + l] >> (4 * (k / 2))) & 0xF;
                q[32 * k + l] = static_cast<int8_t>((low | (((qh[l] >> (2 * k)) & 3) << 4)) - 32);
            }
    }
}

void unpack_q8_k(const void* block, BlockInts* out) {
    const BlockQ8_K* b = static_cast<const BlockQ8_K*>(block);
    out->d = b->d;
    out->dmin = 0.0f;
    out->group = kQK_K;
    out->scale[0] = 1;
    out->min[0] = 0;
    std::memcpy(out->q, b->qs, kQK_K);
}

}  // namespace ferry::kernels
