// The quantized matmul kernels against a naive reference (weights and
// quantized activations decoded to f32, summed in double), on odd row counts
// and several column counts, at every level this CPU has; and the determinism
// contract: levels, thread counts and batch vs single token agree bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <algorithm>
#include <cstring>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/quant_blocks.h"
#include "kernels/quantize.h"
#include "kernels/quants.h"
#include "kernels/thread_pool.h"
#include "tests/level_guard.h"

namespace ferry {
namespace {

using kernels::Level;

struct DotType {
    TensorType type;
    TensorType act;  // activation type of its dot product
};
void PrintTo(const DotType& t, std::ostream* os) { *os << tensor_type_name(t.type); }

const DotType kDotTypes[] = {
    {TensorType::Q8_0, TensorType::Q8_0},   {TensorType::Q4_0, TensorType::Q8_0},  {TensorType::Q4_1, TensorType::Q8_0},
    {TensorType::Q5_0, TensorType::Q8_0},   {TensorType::Q5_1, TensorType::Q8_0},  {TensorType::IQ4_NL, TensorType::Q8_0},
    {TensorType::Q2_K, TensorType::Q8_K},   {TensorType::Q3_K, TensorType::Q8_K},  {TensorType::Q4_K, TensorType::Q8_K},
    {TensorType::Q5_K, TensorType::Q8_K},   {TensorType::Q6_K, TensorType::Q8_K},  {TensorType::TQ1_0, TensorType::Q8_K},
    {TensorType::TQ2_0, TensorType::Q8_K},  {TensorType::Q8_GROUP, TensorType::Q8_GROUP},
};

std::vector<Level> levels_here() {
    std::vector<Level> out;
    for (Level l : kernels::compiled_levels())
        if (kernels::level_runs_here(l)) out.push_back(l);
    return out;
}

// A weight matrix in its stored type, made by quantizing weight-like values
// (normal, a few outliers, some all-zero rows' blocks) with the public API.
struct QuantMatrix {
    std::vector<uint8_t> bytes;
    Matrix m;
};

QuantMatrix make_matrix(TensorType type, int64_t rows, int64_t cols, std::mt19937* rng, int64_t group = 32) {
    std::normal_distribution<float> normal(0.0f, 0.02f);
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < w.size(); ++i) w[i] = normal(*rng) * (i % 97 == 3 ? 20.0f : 1.0f);
    for (int64_t c = 0; c < cols && rows > 2; ++c) w[static_cast<size_t>(1 * cols + c)] = c < 32 ? 0.0f : w[cols + c];
    QuantMatrix q;
    q.m.type = type;
    q.m.rows = rows;
    q.m.cols = cols;
    if (type == TensorType::Q8_GROUP) {
        q.m.group = group;
        q.bytes.resize(static_cast<size_t>(tensor_bytes(type, rows, cols, group)));
        int8_t* values = reinterpret_cast<int8_t*>(q.bytes.data());
        std::vector<float> scales(static_cast<size_t>(rows * cols / group));
        kernels::quantize_row_q8_group(w.data(), values, scales.data(), rows * cols, group);
        std::memcpy(q.bytes.data() + rows * cols, scales.data(), scales.size() * 4);
    } else {
        q.bytes.resize(static_cast<size_t>(tensor_bytes(type, rows, cols)));
        EXPECT_EQ(kernels::quantize_rows(type, w.data(), q.bytes.data(), rows, cols), q.bytes.size());
    }
    q.m.data = q.bytes.data();
    return q;
}

std::vector<float> make_activations(int64_t n, std::mt19937* rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(*rng);
    return x;
}

// Token x as the dot product sees it: quantized, then decoded to f32.
std::vector<float> decoded_activations(TensorType act, const float* x, int64_t cols, int64_t group) {
    std::vector<float> out(static_cast<size_t>(cols));
    if (act == TensorType::Q8_GROUP) {
        std::vector<int8_t> q(static_cast<size_t>(cols));
        std::vector<float> s(static_cast<size_t>(cols / group));
        kernels::quantize_row_q8_group(x, q.data(), s.data(), cols, group);
        for (int64_t i = 0; i < cols; ++i) out[i] = q[i] * s[i / group];
    } else if (act == TensorType::Q8_0) {
        std::vector<BlockQ8_0> b(static_cast<size_t>(cols / kQK8_0));
        kernels::quantize_row_q8_0(x, b.data(), cols);
        kernels::dequantize_values(act, b.data(), out.data(), cols);
    } else {
        std::vector<BlockQ8_K> b(static_cast<size_t>(cols / kQK_K));
        kernels::quantize_row_q8_k(x, b.data(), cols);
        kernels::dequantize_values(act, b.data(), out.data(), cols);
    }
    return out;
}

// The naive reference: sum in double of decoded weight times decoded activation,
// with the sum of magnitudes for the tolerance.
void reference(const QuantMatrix& q, TensorType act, const float* x, int n_tokens, std::vector<double>* out,
               std::vector<double>* magnitude) {
    const Matrix& w = q.m;
    out->assign(static_cast<size_t>(w.rows * n_tokens), 0.0);
    magnitude->assign(out->size(), 0.0);
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int t = 0; t < n_tokens; ++t) {
        const std::vector<float> xa = decoded_activations(act, x + t * w.cols, w.cols, w.group);
        for (int64_t r = 0; r < w.rows; ++r) {
            ASSERT_TRUE(kernels::quant_dequantize_row(w, r, row.data()));
            double s = 0.0, m = 0.0;
            for (int64_t c = 0; c < w.cols; ++c) {
                s += static_cast<double>(row[c]) * xa[c];
                m += std::fabs(static_cast<double>(row[c]) * xa[c]);
            }
            (*out)[t * w.rows + r] = s;
            (*magnitude)[t * w.rows + r] = m;
        }
    }
}

std::vector<float> run(const Matrix& w, const float* x, int n_tokens, kernels::ThreadPool* pool) {
    std::vector<float> out(static_cast<size_t>(w.rows * n_tokens), -777.0f);
    kernels::quant_matmul(out.data(), w, x, n_tokens, pool);
    return out;
}

void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    int shown = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        if (std::memcmp(&a[i], &b[i], 4) != 0 && shown++ < 3)
            ADD_FAILURE() << what << ": element " << i << " " << a[i] << " vs " << b[i];
    }
}

class QuantMatmul : public ::testing::TestWithParam<DotType> {};

TEST_P(QuantMatmul, MatchesTheNaiveReferenceAtEveryLevel) {
    const DotType& dt = GetParam();
    ASSERT_TRUE(kernels::quant_matmul_supports(dt.type));
    test::LevelGuard guard;
    std::mt19937 rng(1234 + static_cast<int>(dt.type));
    const int64_t block = dt.act == TensorType::Q8_K ? kQK_K : kQK8_0;
    // Odd row counts; column counts of 1, 3, 9 and 17 blocks (whole and partial groups of 8).
    for (int64_t rows : {1, 7, 13}) {
        for (int64_t nblocks : {1, 3, 9, 17}) {
            const int64_t cols = nblocks * block;
            const QuantMatrix q = make_matrix(dt.type, rows, cols, &rng);
            const int n_tokens = 3;
            const std::vector<float> x = make_activations(cols * n_tokens, &rng);
            std::vector<double> ref, mag;
            reference(q, dt.act, x.data(), n_tokens, &ref, &mag);
            for (Level level : levels_here()) {
                ASSERT_TRUE(kernels::set_active_level(level));
                const std::vector<float> got = run(q.m, x.data(), n_tokens, nullptr);
                for (size_t i = 0; i < got.size(); ++i)
                    ASSERT_NEAR(got[i], ref[i], 1e-5 * mag[i] + 1e-30)
                        << kernels::level_name(level) << " rows " << rows << " cols " << cols << " element " << i;
            }
        }
    }
}

TEST_P(QuantMatmul, LevelsThreadsAndBatchesAgreeBitForBit) {
    const DotType& dt = GetParam();
    test::LevelGuard guard;
    std::mt19937 rng(99 + static_cast<int>(dt.type));
    const int64_t block = dt.act == TensorType::Q8_K ? kQK_K : dt.act == TensorType::Q8_GROUP ? 64 : kQK8_0;
    const int64_t rows = 37, cols = 11 * block;
    const int n_tokens = 7;
    const QuantMatrix q = make_matrix(dt.type, rows, cols, &rng, 64);
    const std::vector<float> x = make_activations(cols * n_tokens, &rng);
    kernels::ThreadPool pool2(2), pool3(3);

    ASSERT_TRUE(kernels::set_active_level(Level::scalar));
    const std::vector<float> want = run(q.m, x.data(), n_tokens, nullptr);
    for (Level level : levels_here()) {
        ASSERT_TRUE(kernels::set_active_level(level));
        const std::string name = kernels::level_name(level);
        expect_bitwise_equal(run(q.m, x.data(), n_tokens, nullptr), want, name + " batch vs scalar");
        expect_bitwise_equal(run(q.m, x.data(), n_tokens, &pool2), want, name + " 2 threads");
        expect_bitwise_equal(run(q.m, x.data(), n_tokens, &pool3), want, name + " 3 threads");
        for (int t = 0; t < n_tokens; ++t) {
            const std::vector<float> one = run(q.m, x.data() + t * cols, 1, t % 2 ? &pool2 : nullptr);
            expect_bitwise_equal(one, std::vector<float>(want.begin() + t * rows, want.begin() + (t + 1) * rows),
                                 name + " token " + std::to_string(t) + " alone");
        }
    }
}

// Prefill batches: 12 tokens or more take the AVX-512 level's token-lane
// kernels (16 tokens to a vector); whole, partial and several lane groups,
// with threads, must equal the scalar level and each token alone.
TEST_P(QuantMatmul, PrefillBatchesAgreeBitForBit) {
    const DotType& dt = GetParam();
    test::LevelGuard guard;
    std::mt19937 rng(31 + static_cast<int>(dt.type));
    const int64_t block = dt.act == TensorType::Q8_K ? kQK_K : dt.act == TensorType::Q8_GROUP ? 64 : kQK8_0;
    const int64_t rows = 13, cols = 9 * block;
    const QuantMatrix q = make_matrix(dt.type, rows, cols, &rng, 64);
    kernels::ThreadPool pool2(2);
    for (int n_tokens : {12, 16, 17, 40}) {
        const std::vector<float> x = make_activations(cols * n_tokens, &rng);
        ASSERT_TRUE(kernels::set_active_level(Level::scalar));
        const std::vector<float> want = run(q.m, x.data(), n_tokens, nullptr);
        for (Level level : levels_here()) {
            ASSERT_TRUE(kernels::set_active_level(level));
            const std::string name = std::string(kernels::level_name(level)) + " " + std::to_string(n_tokens) + " tokens";
            expect_bitwise_equal(run(q.m, x.data(), n_tokens, nullptr), want, name);
            expect_bitwise_equal(run(q.m, x.data(), n_tokens, &pool2), want, name + ", 2 threads");
        }
        const int t = n_tokens - 1;
        expect_bitwise_equal(run(q.m, x.data() + t * cols, 1, nullptr),
                             std::vector<float>(want.begin() + t * rows, want.begin() + (t + 1) * rows),
                             "the last token alone");
    }
}

// The AVX-512 token-lane kernels at every batch size, not only from the
// default threshold up: so the threshold can move without a path going untested.
TEST_P(QuantMatmul, LaneKernelsAgreeAtEveryBatchSize) {
    const DotType& dt = GetParam();
    if (!kernels::level_runs_here(Level::avx512)) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
    test::LevelGuard guard;
    struct ThresholdGuard {
        int saved = kernels::set_lane_min_tokens(1);
        ~ThresholdGuard() { kernels::set_lane_min_tokens(saved); }
    } threshold;
    std::mt19937 rng(57 + static_cast<int>(dt.type));
    const int64_t block = dt.act == TensorType::Q8_K ? kQK_K : dt.act == TensorType::Q8_GROUP ? 64 : kQK8_0;
    const int64_t rows = 13, cols = 9 * block;
    const QuantMatrix q = make_matrix(dt.type, rows, cols, &rng, 64);
    kernels::ThreadPool pool2(2);
    for (int n_tokens : {1, 2, 3, 5, 8, 11}) {
        const std::vector<float> x = make_activations(cols * n_tokens, &rng);
        ASSERT_TRUE(kernels::set_active_level(Level::scalar));
        const std::vector<float> want = run(q.m, x.data(), n_tokens, nullptr);
        ASSERT_TRUE(kernels::set_active_level(Level::avx512));
        const std::string name = std::to_string(n_tokens) + " tokens by the lane kernels";
        expect_bitwise_equal(run(q.m, x.data(), n_tokens, nullptr), want, name);
        expect_bitwise_equal(run(q.m, x.data(), n_tokens, &pool2), want, name + ", 2 threads");
    }
}

// Blocks of random bytes (with sane scales): levels at their extremes (Q8_0
// -128, every Q3_K/Q6_K scale, every TQ1_0 byte), which quantizers never
// make but files may hold.
class QuantMatmulBlocks : public ::testing::TestWithParam<DotType> {};

TEST_P(QuantMatmulBlocks, ExtremeBlocksAgreeAcrossLevels) {
    const DotType& dt = GetParam();
    test::LevelGuard guard;
    std::mt19937 rng(7 + static_cast<int>(dt.type));
    const int64_t block = dt.act == TensorType::Q8_K ? kQK_K : kQK8_0;
    const TensorTypeTraits* tr = tensor_type_traits(dt.type);
    // Which bytes hold f16 scales, by layout (everything else is free bits).
    std::vector<int> scale_bytes;
    switch (dt.type) {
        case TensorType::Q4_1: case TensorType::Q5_1: scale_bytes = {0, 2}; break;
        case TensorType::Q2_K: scale_bytes = {80, 82}; break;
        case TensorType::Q3_K: scale_bytes = {108}; break;
        case TensorType::Q4_K: case TensorType::Q5_K: scale_bytes = {0, 2}; break;
        case TensorType::Q6_K: scale_bytes = {208}; break;
        case TensorType::TQ1_0: scale_bytes = {52}; break;
        case TensorType::TQ2_0: scale_bytes = {64}; break;
        default: scale_bytes = {0}; break;
    }
    // 10 blocks a row: a whole group of 8 (the SIMD kernels' folded terms)
    // and a tail of 2; 3 blocks a row: the tail alone.
    for (const int64_t row_blocks : {10, 3}) {
        const int64_t rows = 9, cols = row_blocks * block;
        QuantMatrix q = make_matrix(dt.type, rows, cols, &rng);
        const int64_t n_blocks = rows * cols / tr->block_values;
        for (int64_t b = 0; b < n_blocks; ++b) {
            uint8_t* p = q.bytes.data() + b * tr->block_bytes;
            for (int64_t i = 0; i < tr->block_bytes; ++i) p[i] = static_cast<uint8_t>(rng());
            for (int off : scale_bytes) {
                const uint16_t h = static_cast<uint16_t>(0x2000 + rng() % 0x1000);  // about 0.008 .. 0.03
                std::memcpy(p + off, &h, 2);
            }
        }
        // decode, small batches (token tiles of 1, 2 and 3 at the levels that
        // have them) and a prefill batch (the avx512 level's token lanes)
        for (const int n_tokens : {1, 2, 3, 18}) {
            const std::vector<float> x = make_activations(cols * n_tokens, &rng);
            std::vector<double> ref, mag;
            reference(q, dt.act, x.data(), n_tokens, &ref, &mag);
            ASSERT_TRUE(kernels::set_active_level(Level::scalar));
            const std::vector<float> want = run(q.m, x.data(), n_tokens, nullptr);
            for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(want[i], ref[i], 1e-5 * mag[i] + 1e-30) << i;
            for (Level level : levels_here()) {
                ASSERT_TRUE(kernels::set_active_level(level));
                expect_bitwise_equal(run(q.m, x.data(), n_tokens, nullptr), want,
                                     std::string(kernels::level_name(level)) + " " + std::to_string(n_tokens) + " tokens, " +
                                         std::to_string(row_blocks) + " blocks a row");
            }
        }
    }
}

// Every finite f16 as a block scale (and as Q4_1's min), normals and
// subnormals: the SIMD levels widen halves their own way (F16C, SSE2 bit
// arithmetic) and must agree with the portable conversion on all of them.
TEST(QuantMatmulScales, EveryFiniteHalfAgreesAcrossLevels) {
    test::LevelGuard guard;
    std::mt19937 rng(11);
    for (TensorType type : {TensorType::Q8_0, TensorType::Q4_1}) {
        const int64_t rows = 2048, cols = 1024;  // 65536 blocks
        const TensorTypeTraits* tr = tensor_type_traits(type);
        std::vector<uint8_t> bytes(static_cast<size_t>(tensor_bytes(type, rows, cols)));
        for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
        for (int64_t i = 0; i < rows * cols / 32; ++i) {
            uint16_t d = static_cast<uint16_t>(i);
            if ((d & 0x7C00) == 0x7C00) d &= 0x83FF;  // inf/NaN exponent: use the subnormal with that mantissa
            const uint16_t m = static_cast<uint16_t>(d ^ 0x8000);
            std::memcpy(bytes.data() + i * tr->block_bytes, &d, 2);
            if (type == TensorType::Q4_1) std::memcpy(bytes.data() + i * tr->block_bytes + 2, &m, 2);
        }
        QuantMatrix q;
        q.bytes = bytes;
        q.m.type = type;
        q.m.rows = rows;
        q.m.cols = cols;
        q.m.data = q.bytes.data();
        const std::vector<float> x = make_activations(cols, &rng);
        std::vector<double> ref, mag;
        reference(q, TensorType::Q8_0, x.data(), 1, &ref, &mag);
        ASSERT_TRUE(kernels::set_active_level(Level::scalar));
        const std::vector<float> want = run(q.m, x.data(), 1, nullptr);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(want[i], ref[i], 1e-5 * mag[i] + 1e-30) << i;
        for (Level level : levels_here()) {
            ASSERT_TRUE(kernels::set_active_level(level));
            expect_bitwise_equal(run(q.m, x.data(), 1, nullptr), want,
                                 std::string(tensor_type_name(type)) + " " + kernels::level_name(level));
        }
    }
}

// A matrix whose rows are not whole blocks (a loader's bug or a hostile
// file that slipped through) gives zeros, never reads past its rows.
TEST(QuantMatmulShapes, RowsThatAreNotWholeBlocksGiveZeros) {
    std::vector<uint8_t> bytes(4096, 0x11);
    std::vector<float> x(100, 1.0f), out(3, -1.0f), row(100, -1.0f);
    Matrix w;
    w.data = bytes.data();
    w.rows = 3;
    w.cols = 48;  // not a multiple of 32 (or 256)
    for (TensorType type : {TensorType::Q4_0, TensorType::Q4_K, TensorType::Q8_GROUP, TensorType::Q8_K}) {
        w.type = type;
        w.group = 36;
        std::fill(out.begin(), out.end(), -1.0f);
        kernels::quant_matmul(out.data(), w, x.data(), 1, nullptr);
        EXPECT_EQ(out, std::vector<float>(3, 0.0f)) << tensor_type_name(type);
        EXPECT_FALSE(kernels::quant_dequantize_row(w, 0, row.data())) << tensor_type_name(type);
    }
    EXPECT_FALSE(kernels::quant_matmul_supports(TensorType::Q8_K));
    EXPECT_FALSE(kernels::quant_matmul_supports(TensorType::F32));
}

std::string dot_type_name(const ::testing::TestParamInfo<DotType>& info) {
    return tensor_type_name(info.param.type);
}
INSTANTIATE_TEST_SUITE_P(AllTypes, QuantMatmul, ::testing::ValuesIn(kDotTypes), dot_type_name);
// Q8_GROUP (the last entry) has no blocks to fill with random bytes.
INSTANTIATE_TEST_SUITE_P(BlockTypes, QuantMatmulBlocks,
                         ::testing::ValuesIn(std::begin(kDotTypes), std::end(kDotTypes) - 1), dot_type_name);

TEST(QuantMatmulQ8Group, AnyGroupWidth) {
    // llama2.c's group size is a model choice; 48 is not a multiple of a SIMD width.
    test::LevelGuard guard;
    std::mt19937 rng(5);
    for (int64_t group : {16, 48, 64}) {
        const QuantMatrix q = make_matrix(TensorType::Q8_GROUP, 11, 192, &rng, group);
        const std::vector<float> x = make_activations(192 * 2, &rng);
        std::vector<double> ref, mag;
        reference(q, TensorType::Q8_GROUP, x.data(), 2, &ref, &mag);
        ASSERT_TRUE(kernels::set_active_level(Level::scalar));
        const std::vector<float> want = run(q.m, x.data(), 2, nullptr);
        for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(want[i], ref[i], 1e-5 * mag[i] + 1e-30);
        for (Level level : levels_here()) {
            ASSERT_TRUE(kernels::set_active_level(level));
            expect_bitwise_equal(run(q.m, x.data(), 2, nullptr), want, kernels::level_name(level));
        }
    }
}

}  // namespace
}  // namespace ferry
