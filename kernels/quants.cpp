// Quantized matmul: quantize each token's activations once (Q8_0, Q8_K or
// Q8_GROUP, as the weight type's dot product needs), then run the active
// level's kernel over the output rows, split between the pool's threads.
#include "kernels/quants.h"

#include <atomic>
#include <cstring>
#include <vector>

#include "kernels/fp16.h"
#include "kernels/quant_dot.h"
#include "kernels/quant_formats.h"
#include "kernels/quantize.h"
#include "kernels/scratch.h"

namespace ferry::kernels {

namespace {

size_t round64(size_t n) { return (n + 63) & ~static_cast<size_t>(63); }

QuantActs quantize_acts(const Matrix& w, const float* x, int n_tokens, Scratch* scratch, ThreadPool* pool) {
    QuantActs a;
    a.cols = w.cols;
    a.n_tokens = n_tokens;
    if (w.type == TensorType::Q8_GROUP) {
        a.type = TensorType::Q8_GROUP;
        a.block = w.group;
    } else {
        a.type = quant_format(w.type)->dot_type;
        a.block = a.type == TensorType::Q8_0 ? kQK8_0 : kQK_K;
    }
    a.stride = a.type == TensorType::Q8_0 ? (w.cols + 8 * kQK8_0 - 1) / (8 * kQK8_0) * (8 * kQK8_0) : w.cols;
    const int64_t nb = w.cols / a.block, nb_stride = a.stride / a.block;
    const size_t qs_bytes = round64(static_cast<size_t>(a.stride * n_tokens));
    const size_t d_bytes = round64(static_cast<size_t>(nb_stride * n_tokens) * sizeof(float));
    const size_t sums_bytes = round64(static_cast<size_t>(a.stride / 16 * n_tokens) * sizeof(int32_t));
    const size_t block_sums_bytes = round64(static_cast<size_t>(nb_stride * n_tokens) * sizeof(int32_t));
    uint8_t* base = scratch->take(qs_bytes + d_bytes + sums_bytes + block_sums_bytes);
    int8_t* qs = reinterpret_cast<int8_t*>(base);
    float* d = reinterpret_cast<float*>(base + qs_bytes);
    int32_t* sums = reinterpret_cast<int32_t*>(base + qs_bytes + d_bytes);
    int16_t* bsums = reinterpret_cast<int16_t*>(base + qs_bytes + d_bytes);
    int32_t* block_sums = reinterpret_cast<int32_t*>(base + qs_bytes + d_bytes + sums_bytes);
    a.qs = qs;
    a.d = d;
    if (a.type == TensorType::Q8_0) a.sums = sums;
    if (a.type == TensorType::Q8_K) {
        a.bsums = bsums;
        a.block_sums = block_sums;
    }
    if (a.stride != w.cols) std::memset(base, 0, qs_bytes + d_bytes + sums_bytes + block_sums_bytes);
    auto quantize_token = [&](int t) {
        const float* xt = x + t * w.cols;
        int8_t* qt = qs + t * a.stride;
        float* dt = d + t * nb_stride;
        if (a.type == TensorType::Q8_GROUP) {
            quantize_row_q8_group(xt, qt, dt, w.cols, w.group);
        } else if (a.type == TensorType::Q8_0) {
            int8_t q[kQK8_0];
            for (int64_t b = 0; b < nb; ++b) {
                dt[b] = fp16_to_fp32(quantize_block_q8_0(xt + b * kQK8_0, q));
                int32_t s = 0;
                for (int j = 0; j < kQK8_0; ++j) s += q[j];
                sums[t * nb_stride + b] = s;
                std::memcpy(qt + q8_0_index(b, 0), q, 16);
                std::memcpy(qt + q8_0_index(b, 16), q + 16, 16);
            }
        } else {
            for (int64_t b = 0; b < nb; ++b) {
                int16_t* bs = bsums + (t * a.stride + b * kQK_K) / 16;
                quantize_block_q8_k(xt + b * kQK_K, qt + b * kQK_K, dt + b, bs);
                int32_t s = 0;
                for (int g = 0; g < kQK_K / 16; ++g) s += bs[g];
                block_sums[t * nb_stride + b] = s;
            }
        }
    };
    // A prefill batch's activations are quantized by every thread: on the
    // calling thread alone they would be a serial part of each product.
    for_range(n_tokens, 4, pool, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) quantize_token(static_cast<int>(t));
    });
    return a;
}

// QuantActs' token lanes (quant_dot.h) from its token-major arrays (used by
// x86-64's AVX-512 kernels only).
[[maybe_unused]] void build_token_lanes(QuantActs* a, Scratch* scratch, ThreadPool* pool) {
    const int groups = (a->n_tokens + kLaneTokens - 1) / kLaneTokens;
    const int64_t nbs = a->stride / a->block;
    const bool q8_0 = a->type == TensorType::Q8_0;
    const int64_t n_sums = q8_0 ? a->stride / kQK8_0 : a->stride / 16;
    const size_t qs_bytes = round64(static_cast<size_t>(groups * a->stride * kLaneTokens));
    const size_t d_bytes = round64(static_cast<size_t>(groups * nbs * kLaneTokens) * sizeof(float));
    const size_t sums_bytes = round64(static_cast<size_t>(groups * n_sums * kLaneTokens) * sizeof(int32_t));
    uint8_t* base = scratch->take(qs_bytes + d_bytes + sums_bytes);
    uint8_t* qs = base;
    float* d = reinterpret_cast<float*>(base + qs_bytes);
    int32_t* sums = reinterpret_cast<int32_t*>(base + qs_bytes + d_bytes);
    // Every byte of qs is written below; d and the sums of absent tokens must be 0.
    std::memset(base + qs_bytes, 0, d_bytes + sums_bytes);
    const int64_t words = a->stride / 4;
    // By lane group, so that no two threads write the same cache line.
    for_range(groups, 1, pool, [&](int64_t g0, int64_t g1) {
        for (int64_t t = g0 * kLaneTokens; t < g1 * kLaneTokens; ++t) {
            const int64_t g = t / kLaneTokens, l = t % kLaneTokens;
            uint8_t* lane = qs + g * words * 64 + l * 4;
            if (t >= a->n_tokens) {
                for (int64_t k = 0; k < words; ++k) std::memset(lane + k * 64, 128, 4);
                continue;
            }
            const int8_t* xt = a->qs + t * a->stride;
            for (int64_t k = 0; k < words; ++k) {
                // Q8_0's 4 values 4k .. 4k+3 lie together in its pair-interleaved order too.
                const int8_t* src = q8_0 ? xt + q8_0_index(4 * k / kQK8_0, static_cast<int>(4 * k % kQK8_0)) : xt + 4 * k;
                for (int j = 0; j < 4; ++j) lane[k * 64 + j] = static_cast<uint8_t>(src[j] + 128);
            }
            for (int64_t b = 0; b < nbs; ++b) d[(g * nbs + b) * kLaneTokens + l] = a->d[t * nbs + b];
            for (int64_t s = 0; s < n_sums; ++s)
                sums[(g * n_sums + s) * kLaneTokens + l] = q8_0 ? a->sums[t * n_sums + s] : a->bsums[t * n_sums + s];
        }
    });
    a->lane_groups = groups;
    a->lane_qs = qs;
    a->lane_d = d;
    a->lane_sums = sums;
}

// Batches at least this large take a level's token-lane kernel where it has
// one: below it, half-empty lanes cost more than the level's token tiles
// (quant_dot.h), which read the weights once for the whole batch. Measured on
// Zen 5 against the avx512 tiles (ferry_microbench QuantBatchPath,
// docs/BENCHMARKS.md): the lanes overtake at 9-10 tokens for Q4_0, Q8_0 and
// Q4_K, at 10-12 for TQ1_0 and at 12 for Q6_K and TQ2_0.
constexpr int kLaneMinTokens = 12;
std::atomic<int> lane_min_tokens{kLaneMinTokens};

// The first kernel for `type` among `families` (one level's), or nullptr.
template <size_t N>
QuantRowsFn first_of(QuantRowsFn (*const (&families)[N])(TensorType), TensorType type) {
    for (auto family : families)
        if (QuantRowsFn fn = family(type)) return fn;
    return nullptr;
}

QuantRowsFn pick_kernel(TensorType type, Level level) {
    QuantRowsFn fn = nullptr;
#if defined(__i386__) || defined(__x86_64__)
    QuantRowsFn (*const avx2_families[])(TensorType) = {avx2::legacy_rows, avx2::kquant_rows, avx2::ternary_rows,
                                                        avx2::q8group_rows};
    QuantRowsFn (*const ssse3_families[])(TensorType) = {ssse3::legacy_rows, ssse3::kquant_rows, ssse3::ternary_rows,
                                                         ssse3::q8group_rows};
    QuantRowsFn (*const sse2_families[])(TensorType) = {sse2::legacy_rows, sse2::kquant_rows, sse2::ternary_rows,
                                                        sse2::q8group_rows};
#if defined(__x86_64__)
    QuantRowsFn (*const avxvnni_families[])(TensorType) = {avxvnni::legacy_rows, avxvnni::ternary_rows,
                                                           avxvnni::q8group_rows};
    QuantRowsFn (*const avx512_families[])(TensorType) = {avx512::legacy_rows, avx512::kquant_rows,
                                                          avx512::ternary_rows, avx512::q8group_rows};
    if (level == Level::avxvnni) fn = first_of(avxvnni_families, type);
    if (level == Level::avx512) fn = first_of(avx512_families, type);
#endif
    if (!fn && (level == Level::avx2 || level == Level::avxvnni || level == Level::avx512))
        fn = first_of(avx2_families, type);
    if (!fn && level != Level::scalar && level != Level::sse2) fn = first_of(ssse3_families, type);
    if (!fn && level != Level::scalar) fn = first_of(sse2_families, type);
#elif defined(__aarch64__) || defined(__arm__)
    QuantRowsFn (*const neon_families[])(TensorType) = {neon::legacy_rows, neon::kquant_rows, neon::ternary_rows,
                                                        neon::q8group_rows};
#if defined(__aarch64__)
    QuantRowsFn (*const dotprod_families[])(TensorType) = {dotprod::legacy_rows, dotprod::kquant_rows,
                                                           dotprod::ternary_rows, dotprod::q8group_rows};
    if (level == Level::dotprod) fn = first_of(dotprod_families, type);
#endif
    if (!fn && level != Level::scalar) fn = first_of(neon_families, type);
#endif
    return fn ? fn : scalar::quant_rows(type);
}

// Whether w's shape fits its type (loaders check this; a kernel must not trust it).
bool shape_fits(const Matrix& w) {
    if (w.cols <= 0) return false;
    if (w.type == TensorType::Q8_GROUP) return w.group > 0 && w.cols % w.group == 0;
    const QuantFormat* f = quant_format(w.type);
    return f && w.type != TensorType::Q8_K && w.cols % f->block_values == 0;
}

}  // namespace

bool quant_matmul_supports(TensorType type) { return scalar::quant_rows(type) != nullptr; }

bool quant_falls_back(TensorType type, Level level) {
    return level != Level::scalar && pick_kernel(type, level) == scalar::quant_rows(type);
}

void quant_matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool) {
    if (w.rows <= 0 || n_tokens <= 0) return;
    if (!shape_fits(w)) {
        // Unsupported type or rows that are not whole blocks: zeros rather than reads out of bounds.
        std::memset(out, 0, static_cast<size_t>(w.rows * n_tokens) * sizeof(float));
        return;
    }
    thread_local Scratch scratch;
    QuantActs a = quantize_acts(w, x, n_tokens, &scratch, pool);
    QuantRowsFn fn = pick_kernel(w.type, active_level());
#if defined(__x86_64__)
    if (active_level() == Level::avx512 && n_tokens >= lane_min_tokens.load(std::memory_order_relaxed) &&
        w.type != TensorType::Q8_GROUP)
        if (const QuantRowsFn lanes = avx512::lane_rows(w.type)) {
            thread_local Scratch lane_scratch;
            build_token_lanes(&a, &lane_scratch, pool);
            fn = lanes;
        }
#endif
    if (!pool) return fn(out, w, a, 0, w.rows);
    // Chunks of whole row pairs (the SIMD kernels do two or four rows at a
    // time) of about 64 KB of weights: enough to stream (each chunk's start
    // is fetched cold), small enough that a thread the OS holds back delays
    // little. Results do not depend on the split.
    const int64_t pairs = (w.rows + 1) / 2;
    const int64_t row_bytes =
        w.type == TensorType::Q8_GROUP ? w.cols + w.cols / w.group * 4 : tensor_bytes(w.type, 1, w.cols);
    int64_t grain = (int64_t{1} << 16) / (2 * row_bytes);
    if (grain < 1) grain = 1;
    pool->parallel_for(pairs, grain, [&](int64_t p0, int64_t p1) {
        fn(out, w, a, 2 * p0, 2 * p1 < w.rows ? 2 * p1 : w.rows);
    });
}

int set_lane_min_tokens(int n_tokens) { return lane_min_tokens.exchange(n_tokens < 1 ? 1 : n_tokens); }

bool quant_dequantize_row(const Matrix& w, int64_t row, float* out) {
    if (!quant_matmul_supports(w.type) || !shape_fits(w)) return false;
    if (w.type == TensorType::Q8_GROUP) {
        const int8_t* q = static_cast<const int8_t*>(w.data) + row * w.cols;
        const uint8_t* s = reinterpret_cast<const uint8_t*>(w.data) + w.rows * w.cols;
        for (int64_t j = 0; j < w.cols; j += w.group) {
            float scale;
            std::memcpy(&scale, s + (row * w.cols + j) / w.group * 4, 4);
            for (int64_t k = 0; k < w.group; ++k) out[j + k] = q[j + k] * scale;
        }
        return true;
    }
    const int64_t row_bytes = tensor_bytes(w.type, 1, w.cols);
    dequantize_values(w.type, static_cast<const uint8_t*>(w.data) + row * row_bytes, out, w.cols);
    return true;
}

}  // namespace ferry::kernels
