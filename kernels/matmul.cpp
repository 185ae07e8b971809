// Matrix products over stored weight types: the dispatch (type, level,
// threads) and the portable scalar path, which defines the canonical order of
// every dot product (kernels.h). The SIMD levels (simd_kernels.h, built by
// dense_sse2.cpp and dense_avx2.cpp) match it bit for bit.
#include <cstring>

#include "kernels/dense_levels.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "kernels/scratch.h"
#include "kernels/thread_pool.h"

namespace ferry::kernels {

namespace scalar {

namespace {

inline float widen(float w) { return w; }
inline float widen_f16(uint16_t w) { return fp16_to_fp32(w); }
inline float widen_bf16(uint16_t w) { return bf16_to_fp32(w); }

// The canonical dot product over kLanes (8 or 16) lanes, kernels.h. One
// operation per statement: on x87 each assignment rounds to float
// (-ffloat-store), as SSE does.
template <class W, float (*Widen)(W), int kLanes>
float dot(const W* w, const float* x, int64_t n) {
    float s[kLanes] = {};
    const int64_t body = n - n % kLanes;
    for (int64_t i = 0; i < body; i += kLanes) {
        for (int j = 0; j < kLanes; ++j) {
            const float p = Widen(w[i + j]) * x[i + j];
            s[j] += p;
        }
    }
    if (kLanes == 16)
        for (int j = 0; j < 8; ++j) s[j] += s[j + 8];
    const float s04 = s[0] + s[4], s26 = s[2] + s[6], s15 = s[1] + s[5], s37 = s[3] + s[7];
    const float even = s04 + s26, odd = s15 + s37;
    float sum = even + odd;
    for (int64_t i = body; i < n; ++i) {
        const float p = Widen(w[i]) * x[i];
        sum += p;
    }
    return sum;
}

template <class W, float (*Widen)(W), int kLanes>
void matmul_rows(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    const W* W0 = static_cast<const W*>(w);
    for (int64_t r = r0; r < r1; ++r)
        for (int t = 0; t < n_tokens; ++t)
            out[t * out_stride + r] = dot<W, Widen, kLanes>(W0 + r * cols, x + t * cols, cols);
}

}  // namespace

void matmul_f32(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    matmul_rows<float, widen, 8>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_f16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                int64_t r0, int64_t r1) {
    matmul_rows<uint16_t, widen_f16, 16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
}
void matmul_bf16(float* out, int64_t out_stride, const void* w, int64_t cols, const float* x, int n_tokens,
                 int64_t r0, int64_t r1) {
    matmul_rows<uint16_t, widen_bf16, 16>(out, out_stride, w, cols, x, n_tokens, r0, r1);
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
    return (s0 + s1) + (s2 + s3);
}

}  // namespace scalar

const DenseKernels& dense_kernels(Level level) {
#define FERRY_DENSE_TABLE(ns)                                                                              \
    DenseKernels {                                                                                         \
        ns::matmul_f32, ns::matmul_f16, ns::matmul_bf16, {}, {}, {}, ns::attention_scores,                 \
            ns::attention_values, ns::widen_f16, ns::widen_q8_0, ns::read_bandwidth_probe                  \
    }
    static const DenseKernels scalar_table = FERRY_DENSE_TABLE(scalar);
#if defined(__i386__) || defined(__x86_64__)
    static const DenseKernels sse2_table = FERRY_DENSE_TABLE(sse2);
    static const DenseKernels avx2_table = FERRY_DENSE_TABLE(avx2);
#if defined(__x86_64__)
    static const DenseKernels avx512_table = [] {
        DenseKernels t = avx2_table;
        t.matmul_f32 = avx512::matmul_f32;
        t.matmul_f16 = avx512::matmul_f16;
        t.matmul_bf16 = avx512::matmul_bf16;
        t.pack_f32 = {avx512::packed_floats_f32, avx512::pack_f32};
        t.pack_f16 = t.pack_bf16 = {avx512::packed_floats_wide, avx512::pack_wide};
        t.read_bandwidth_probe = avx512::read_bandwidth_probe;
        return t;
    }();
    if (level == Level::avx512) return avx512_table;
#endif
    // AVX-VNNI adds byte dot products, which only the quantized products use.
    if (level == Level::avx2 || level == Level::avxvnni) return avx2_table;
    // SSSE3 adds byte multiply-adds, which only the quantized products use.
    if (level == Level::sse2 || level == Level::ssse3) return sse2_table;
#endif
#if defined(__aarch64__)
    // Dot products add byte multiply-adds, which only the quantized products use.
    static const DenseKernels neon_table = FERRY_DENSE_TABLE(neon);
    if (level == Level::neon || level == Level::dotprod) return neon_table;
#endif
    // 32-bit ARM's NEON flushes subnormal floats to zero: its dense products
    // stay on the (IEEE) VFP unit, in the scalar kernels.
#undef FERRY_DENSE_TABLE
    return scalar_table;
}

namespace {

// Rows per chunk handed to a thread: about kChunkMacs multiply-adds, a whole
// number of kRowTile rows (a multiple of every SIMD prefill tile's height). A matrix smaller than one
// chunk stays on the calling thread; decode chunks take microseconds, so a
// descheduled helper delays the caller by at most that much.
constexpr int64_t kChunkMacs = int64_t{1} << 16;
constexpr int64_t kRowTile = 12;
// Tokens per chunk of a packing of prefill activations handed to a thread: a
// multiple of every packed layout's tile (8 and 4 tokens), so no two threads
// write one tile.
constexpr int64_t kPackGrain = 8;

int64_t row_grain(int64_t cols, int n_tokens) {
    const int64_t per_row = (cols > 0 ? cols : 1) * (n_tokens > 0 ? n_tokens : 1);
    const int64_t rows = (kChunkMacs + per_row - 1) / per_row;
    return (rows + kRowTile - 1) / kRowTile * kRowTile;
}

// A dense type's row function and activation packing at one level.
struct DenseProduct {
    MatmulRowsFn rows = nullptr;
    const ActsPacking* packing = nullptr;
};

DenseProduct dense_product(const DenseKernels& k, TensorType type) {
    switch (type) {
        case TensorType::F32: return {k.matmul_f32, &k.pack_f32};
        case TensorType::F16: return {k.matmul_f16, &k.pack_f16};
        case TensorType::BF16: return {k.matmul_bf16, &k.pack_bf16};
        default: return {};
    }
}

}  // namespace

bool matmul_supports(TensorType type) {
    return type == TensorType::F32 || type == TensorType::F16 || type == TensorType::BF16 ||
           quant_matmul_supports(type);
}

bool matmul_falls_back(TensorType type, Level level) {
    if (level == Level::scalar) return false;
    if (quant_matmul_supports(type)) return quant_falls_back(type, level);
    const DenseKernels& k = dense_kernels(level);
    const DenseKernels& s = dense_kernels(Level::scalar);
    if (type == TensorType::F32) return k.matmul_f32 == s.matmul_f32;
    if (type == TensorType::F16) return k.matmul_f16 == s.matmul_f16;
    if (type == TensorType::BF16) return k.matmul_bf16 == s.matmul_bf16;
    return false;
}

void matmul(float* out, const Matrix& w, const float* x, int n_tokens, ThreadPool* pool) {
    if (n_tokens <= 0 || w.rows <= 0) return;
    if (quant_matmul_supports(w.type)) return quant_matmul(out, w, x, n_tokens, pool);
    // Callers check matmul_supports() when they bind weights.
    const DenseProduct product = dense_product(dense_kernels(active_level()), w.type);
    if (!product.rows) return;
    const ActsPacking& packing = *product.packing;
    if (n_tokens > 1 && packing.pack) {
        // The copy is the calling thread's, and the pool's threads may read it:
        // parallel_for returns only when every chunk is done, and no chunk calls
        // matmul() again. A batch of more than kPackGrain tokens is packed by
        // every thread.
        thread_local Scratch scratch;
        float* packed = reinterpret_cast<float*>(scratch.take(sizeof(float) * packing.floats(w.cols, n_tokens)));
        auto pack = [&](int64_t t0, int64_t t1) {
            packing.pack(packed, x, w.cols, n_tokens, static_cast<int>(t0), static_cast<int>(t1));
        };
        for_range(n_tokens, kPackGrain, pool, pack);
        x = packed;
    }
    for_range(w.rows, row_grain(w.cols, n_tokens), pool,
              [&](int64_t r0, int64_t r1) { product.rows(out, w.rows, w.data, w.cols, x, n_tokens, r0, r1); });
}

void dequantize_row(const Matrix& w, int64_t row, float* out) {
    if (quant_matmul_supports(w.type) && quant_dequantize_row(w, row, out)) return;
    switch (w.type) {
        case TensorType::F32:
            std::memcpy(out, static_cast<const float*>(w.data) + row * w.cols, sizeof(float) * w.cols);
            return;
        case TensorType::F16: {
            const uint16_t* h = static_cast<const uint16_t*>(w.data) + row * w.cols;
            for (int64_t j = 0; j < w.cols; ++j) out[j] = fp16_to_fp32(h[j]);
            return;
        }
        case TensorType::BF16: {
            const uint16_t* h = static_cast<const uint16_t*>(w.data) + row * w.cols;
            for (int64_t j = 0; j < w.cols; ++j) out[j] = bf16_to_fp32(h[j]);
            return;
        }
        default:
            std::memset(out, 0, sizeof(float) * w.cols);
            return;
    }
}

}  // namespace ferry::kernels
