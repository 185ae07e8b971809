// Attention over a KV cache's rows as stored (f32, f16, q8_0): every level
// equals, bit for bit, the old way (every row decoded to f32, then run.c's
// order: reference::attention_rows), which in turn is close to the double
// reference; on odd sizes, grouped-query shapes, head sizes that split the
// positions into several widened spans, and q8_0 heads that start mid-block;
// and each level's widening of every half and every q8_0 value.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dense_levels.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "kernels/reference.h"
#include "tests/test_support.h"

namespace ferry::kernels {
namespace {

// n_pos rows of kv_dim values stored as a KV cache stores them, followed by
// rows of NaN that attention must never read (they lie past pos).
struct StoredRows {
    std::vector<uint8_t> bytes;
    Matrix m;
    StoredRows(TensorType type, const std::vector<float>& rows, int n_pos, int kv_dim) {
        const int64_t row_bytes = tensor_bytes(type, 1, kv_dim);
        const int n_rows = n_pos + 3;
        bytes.assign(static_cast<size_t>(row_bytes * n_rows), 0);
        std::vector<float> all(rows);
        all.resize(static_cast<size_t>(n_rows) * kv_dim, NAN);
        for (int r = 0; r < n_rows; ++r) {
            const float* src = &all[static_cast<size_t>(r) * kv_dim];
            uint8_t* dst = &bytes[static_cast<size_t>(r * row_bytes)];
            if (type == TensorType::F32) {
                std::memcpy(dst, src, static_cast<size_t>(row_bytes));
            } else if (type == TensorType::F16) {
                for (int i = 0; i < kv_dim; ++i) reinterpret_cast<uint16_t*>(dst)[i] = fp32_to_fp16(src[i]);
            } else {
                quantize_row_q8_0(src, reinterpret_cast<BlockQ8_0*>(dst), kv_dim);
                if (r >= n_pos) reinterpret_cast<BlockQ8_0*>(dst)->d = 0x7E00;  // a NaN scale
            }
        }
        m = Matrix{type, bytes.data(), n_rows, kv_dim, 0};
    }
};

struct Shape {
    int n_heads, n_kv_heads, head_size;
};

// Checks every level against the reference for one shape and type.
void check_shape(TensorType type, Shape s, int pos, uint32_t seed) {
    SCOPED_TRACE(::testing::Message() << tensor_type_name(type) << " heads " << s.n_heads << "/" << s.n_kv_heads
                                      << " head_size " << s.head_size << " pos " << pos);
    const int kv_dim = s.n_kv_heads * s.head_size, n_pos = pos + 1;
    const std::vector<float> q = test::normal_floats(static_cast<size_t>(s.n_heads) * s.head_size, seed);
    const StoredRows key(type, test::normal_floats(static_cast<size_t>(n_pos) * kv_dim, seed + 1), n_pos, kv_dim);
    const StoredRows value(type, test::normal_floats(static_cast<size_t>(n_pos) * kv_dim, seed + 2), n_pos, kv_dim);
    std::vector<float> want(q.size()), approx(q.size());
    reference::attention_rows(want.data(), q.data(), key.m, value.m, pos, s.n_heads, s.n_kv_heads, s.head_size);

    // The float-order reference is close to the double one over the same decoded rows.
    std::vector<float> k(static_cast<size_t>(n_pos) * kv_dim), v(k.size());
    for (int t = 0; t < n_pos; ++t) {
        dequantize_row(key.m, t, &k[static_cast<size_t>(t) * kv_dim]);
        dequantize_row(value.m, t, &v[static_cast<size_t>(t) * kv_dim]);
    }
    reference::attention(approx.data(), q.data(), k.data(), v.data(), pos, s.n_heads, s.n_kv_heads, s.head_size);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(want[i], approx[i], 1e-4 * (1 + std::fabs(approx[i])));

    for (Level l : test::cpu_levels()) {
        set_active_level(l);
        std::vector<float> out(want.size(), NAN), att(static_cast<size_t>(s.n_heads) * n_pos);
        attention(out.data(), att.data(), q.data(), key.m, value.m, pos, s.n_heads, s.n_kv_heads, s.head_size);
        set_active_level(best_level());
        for (size_t i = 0; i < want.size(); ++i)
            ASSERT_EQ(fp32_to_bits(out[i]), fp32_to_bits(want[i]))
                << level_name(l) << " output " << i << ": " << out[i] << " vs " << want[i];
    }
}

const TensorType kKvTypes[] = {TensorType::F32, TensorType::F16, TensorType::Q8_0};
const int kPositions[] = {0, 1, 6, 7, 8, 9, 31, 33, 100};

TEST(AttentionKv, EveryTypeAndLevelEqualsDecodingEveryRowFirst) {
    // kv_dim a multiple of 32 (q8_0 blocks); heads of 3, 8, 48 or 80 values
    // start inside a block; 8 query heads per key head take the grouped SIMD path.
    const Shape shapes[] = {{1, 1, 32}, {4, 2, 16}, {12, 4, 8}, {6, 2, 48}, {6, 2, 80}, {32, 32, 3},
                            {16, 2, 16}, {24, 1, 64}, {9, 3, 32}};
    uint32_t seed = 10;
    for (TensorType type : kKvTypes)
        for (Shape s : shapes)
            for (int pos : kPositions) check_shape(type, s, pos, seed += 3);
}

TEST(AttentionKv, OddWidthsForF32AndF16) {
    const Shape shapes[] = {{1, 1, 1}, {4, 2, 3}, {6, 3, 7}, {8, 1, 8}, {2, 2, 9}, {4, 4, 33}, {12, 1, 9}};
    uint32_t seed = 500;
    for (TensorType type : {TensorType::F32, TensorType::F16})
        for (Shape s : shapes)
            for (int pos : kPositions) check_shape(type, s, pos, seed += 3);
}

TEST(AttentionKv, LongHeadsReadTheCacheInSeveralSpans) {
    // 4096 / 600 = 6 positions a span (fewer than the 8 of a SIMD step),
    // 4096 / 128 = 32; 4096 itself: one position a span.
    uint32_t seed = 900;
    for (TensorType type : kKvTypes) {
        for (Shape s : {Shape{2, 1, 128}, Shape{8, 4, 600}}) check_shape(type, s, 100, seed += 3);
        check_shape(type, Shape{1, 1, 4096}, 9, seed += 3);
    }
}

TEST(AttentionKv, F32RowsGiveWhatTheFloatOverloadGives) {
    const Shape s{8, 2, 24};
    const int pos = 45, kv_dim = s.n_kv_heads * s.head_size;
    const std::vector<float> q = test::normal_floats(static_cast<size_t>(s.n_heads) * s.head_size, 1);
    const std::vector<float> k = test::normal_floats(static_cast<size_t>(pos + 1) * kv_dim, 2);
    const std::vector<float> v = test::normal_floats(k.size(), 3);
    std::vector<float> a(q.size()), b(q.size()), att(static_cast<size_t>(s.n_heads) * (pos + 1));
    attention(a.data(), att.data(), q.data(), k.data(), v.data(), pos, s.n_heads, s.n_kv_heads, s.head_size);
    const Matrix km{TensorType::F32, k.data(), pos + 1, kv_dim, 0}, vm{TensorType::F32, v.data(), pos + 1, kv_dim, 0};
    attention(b.data(), att.data(), q.data(), km, vm, pos, s.n_heads, s.n_kv_heads, s.head_size);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
}

TEST(AttentionKv, EveryHalfWidensExactlyAtEveryLevel) {
    std::vector<uint16_t> halves(65536);
    for (int i = 0; i < 65536; ++i) halves[i] = static_cast<uint16_t>(i);
    for (Level l : test::cpu_levels()) {
        std::vector<float> out(halves.size() + 1, -1.0f);
        // An odd start and length: the 8-wide steps and the tail both run.
        const int64_t n = static_cast<int64_t>(halves.size()) - 3;
        dense_kernels(l).widen_f16(out.data(), halves.data() + 1, n);
        for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(fp32_to_bits(out[i]), fp32_to_bits(fp16_to_fp32(halves[i + 1])))
                << level_name(l) << " half 0x" << std::hex << halves[i + 1];
        EXPECT_EQ(out[n], -1.0f) << level_name(l) << " wrote past n";
    }
}

TEST(AttentionKv, EveryQ8ValueWidensAsDequantizeRowAtEveryLevel) {
    // Eight blocks: every int8 value once, scales from a half subnormal to large.
    const uint16_t scales[8] = {0x0001, 0x03FF, 0x0400, 0x1C00, 0x3C00, 0x4B00, 0x7BFF, 0xBC00};
    std::vector<BlockQ8_0> row(8);
    for (int b = 0; b < 8; ++b) {
        row[b].d = scales[b];
        for (int j = 0; j < kQK8_0; ++j) row[b].qs[j] = static_cast<int8_t>(b * kQK8_0 + j - 128);
    }
    std::vector<float> want(8 * kQK8_0);
    dequantize_row(Matrix{TensorType::Q8_0, row.data(), 1, 8 * kQK8_0, 0}, 0, want.data());
    for (Level l : test::cpu_levels()) {
        for (int begin : {0, 5, 31, 32, 100})
            for (int n : {1, 7, 27, 32, 33, 64, 150}) {
                std::vector<float> out(static_cast<size_t>(n) + 1, -1.0f);
                dense_kernels(l).widen_q8_0(out.data(), row.data(), begin, n);
                for (int i = 0; i < n; ++i)
                    ASSERT_EQ(fp32_to_bits(out[i]), fp32_to_bits(want[begin + i]))
                        << level_name(l) << " begin " << begin << " value " << i;
                ASSERT_EQ(out[n], -1.0f) << level_name(l) << " wrote past n";
            }
    }
}

}  // namespace
}  // namespace ferry::kernels
