// The GGML block formats against ../shared/models/gguf/blocks.gguf, made by
// ggml itself (README there): every type's decoding bit for bit, every type's
// quantization of `source` byte for byte, and stories260K quantized by ferry
// equal to the Q8_0 / Q4_0 files made by the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <ostream>
#include <string>
#include <vector>

#include "common/gguf_file.h"
#include "common/mapped_file.h"
#include "kernels/quant_blocks.h"
#include "kernels/quantize.h"

namespace ferry {
namespace {

std::string gguf_dir() { return std::string(FERRY_SHARED_DIR) + "/models/gguf/"; }

struct GgufImage {
    MappedFile map;
    GgufFile file;
    explicit GgufImage(const std::string& path) : map(path), file(parse_gguf(map.data(), map.size(), path)) {}
    const GgufTensor& tensor(const std::string& name) const {
        const GgufTensor* t = file.find_tensor(name);
        if (!t) throw std::runtime_error(file.path + ": no tensor " + name);
        return *t;
    }
    const uint8_t* bytes(const GgufTensor& t) const { return map.data() + t.offset; }
    const float* floats(const GgufTensor& t) const { return reinterpret_cast<const float*>(bytes(t)); }
};

const GgufImage& blocks() {
    static const GgufImage image(gguf_dir() + "blocks.gguf");
    return image;
}

constexpr int kRows = 6, kCols = 512;

struct OracleType {
    const char* name;  // as in the oracle's tensor names
    TensorType type;
};
void PrintTo(const OracleType& t, std::ostream* os) { *os << t.name; }
const OracleType kOracleTypes[] = {
    {"F16", TensorType::F16},     {"BF16", TensorType::BF16},   {"Q8_0", TensorType::Q8_0},   {"Q4_0", TensorType::Q4_0},
    {"Q4_1", TensorType::Q4_1},   {"Q5_0", TensorType::Q5_0},   {"Q5_1", TensorType::Q5_1},   {"Q2_K", TensorType::Q2_K},
    {"Q3_K", TensorType::Q3_K},   {"Q4_K", TensorType::Q4_K},   {"Q5_K", TensorType::Q5_K},   {"Q6_K", TensorType::Q6_K},
    {"TQ1_0", TensorType::TQ1_0}, {"TQ2_0", TensorType::TQ2_0}, {"IQ4_NL", TensorType::IQ4_NL}, {"Q8_K", TensorType::Q8_K},
};

class QuantOracle : public ::testing::TestWithParam<OracleType> {};

TEST(QuantOracleFile, HoldsTheSixteenTypesOfTheReadme) {
    const GgufImage& o = blocks();
    EXPECT_EQ(o.file.tensors.size(), 33u);
    const GgufTensor& src = o.tensor("source");
    EXPECT_EQ(src.type, TensorType::F32);
    EXPECT_EQ(src.cols(), kCols);
    EXPECT_EQ(src.rows(), kRows);
    for (const OracleType& t : kOracleTypes) {
        const GgufTensor& q = o.tensor(std::string(t.name) + ".quant");
        EXPECT_EQ(q.type, t.type) << t.name;
        EXPECT_EQ(static_cast<int64_t>(q.bytes), tensor_bytes(t.type, kRows, kCols)) << t.name;
    }
}

TEST_P(QuantOracle, DecodesEveryBlockBitForBit) {
    const OracleType& t = GetParam();
    const GgufImage& o = blocks();
    const float* want = o.floats(o.tensor(std::string(t.name) + ".dequant"));
    std::vector<float> got(kRows * kCols, 12345.0f);
    kernels::dequantize_values(t.type, o.bytes(o.tensor(std::string(t.name) + ".quant")), got.data(), kRows * kCols);
    int differing = 0;
    for (int i = 0; i < kRows * kCols; ++i) {
        uint32_t a, b;
        std::memcpy(&a, &got[i], 4);
        std::memcpy(&b, &want[i], 4);
        if (a != b && differing++ < 5)
            ADD_FAILURE() << t.name << " value " << i << ": got " << got[i] << " (0x" << std::hex << a << "), want "
                          << want[i] << " (0x" << b << ")" << std::dec;
    }
    EXPECT_EQ(differing, 0) << t.name;
}

// Per-row mean squared error of a decoding against the source, in double as the oracle computes it.
std::vector<double> row_mse(const float* decoded, const float* source) {
    std::vector<double> mse(kRows, 0.0);
    for (int r = 0; r < kRows; ++r) {
        for (int c = 0; c < kCols; ++c) {
            const double e = static_cast<double>(decoded[r * kCols + c]) - static_cast<double>(source[r * kCols + c]);
            mse[r] += e * e;
        }
        mse[r] /= kCols;
    }
    return mse;
}

TEST_P(QuantOracle, QuantizesTheSourceAsGgml) {
    const OracleType& t = GetParam();
    const GgufImage& o = blocks();
    const float* source = o.floats(o.tensor("source"));
    const GgufTensor& want_t = o.tensor(std::string(t.name) + ".quant");
    const uint8_t* want = o.bytes(want_t);
    std::vector<uint8_t> got(want_t.bytes, 0xAA);
    if (t.type == TensorType::Q8_K) {
        // The activation type: not a storage type ferry writes, but the dot products' input.
        EXPECT_FALSE(kernels::can_quantize(t.type, kCols));
        kernels::quantize_row_q8_k(source, reinterpret_cast<BlockQ8_K*>(got.data()), kRows * kCols);
    } else {
        ASSERT_TRUE(kernels::can_quantize(t.type, kCols));
        ASSERT_EQ(kernels::quantize_rows(t.type, source, got.data(), kRows, kCols), want_t.bytes);
    }
    const TensorTypeTraits* traits = tensor_type_traits(t.type);
    const int64_t n_blocks = kRows * kCols / traits->block_values;
    int differing = 0;
    std::string which;
    for (int64_t b = 0; b < n_blocks; ++b) {
        if (std::memcmp(got.data() + b * traits->block_bytes, want + b * traits->block_bytes, traits->block_bytes)) {
            ++differing;
            which += " " + std::to_string(b);
        }
    }
    // The README allows the K-quants and IQ4_NL to differ where a build
    // contracts their long float searches into FMA; ferry builds without
    // contraction and follows GGML's operation order, so every type must match.
    EXPECT_EQ(differing, 0) << t.name << ": " << differing << " of " << n_blocks << " blocks differ from ggml's:" << which;
    // And, as the issue asks of the K-quants, no row may fit worse than the reference's.
    std::vector<float> decoded(kRows * kCols);
    kernels::dequantize_values(t.type, got.data(), decoded.data(), kRows * kCols);
    const std::vector<double> mse = row_mse(decoded.data(), source);
    const GgufValue* want_mse = o.file.get_array(std::string("oracle.mse_rows.") + t.name, GgufType::FLOAT64);
    ASSERT_NE(want_mse, nullptr);
    for (int r = 0; r < kRows; ++r) EXPECT_LE(mse[r], *want_mse->float_at(r)) << t.name << " row " << r;
}

INSTANTIATE_TEST_SUITE_P(AllTypes, QuantOracle, ::testing::ValuesIn(kOracleTypes),
                         [](const ::testing::TestParamInfo<OracleType>& info) { return std::string(info.param.name); });

// ../shared/models/gguf/stories260K-{q8_0,q4_0}.gguf were quantized from
// stories260K.gguf by the reference; ferry's quantization of the same F32
// tensors must give the same bytes (F32 where rows are not whole blocks).
void expect_same_quantization(const std::string& quantized_name, TensorType type) {
    const GgufImage f32(std::string(FERRY_SHARED_DIR) + "/models/stories260K.gguf");
    const GgufImage q(gguf_dir() + quantized_name);
    ASSERT_EQ(q.file.tensors.size(), f32.file.tensors.size());
    int quantized = 0;
    for (const GgufTensor& t : q.file.tensors) {
        const GgufTensor& src = f32.tensor(std::string(t.name));
        ASSERT_EQ(src.type, TensorType::F32) << t.name;
        const bool expect_type = t.n_dims >= 2 && kernels::can_quantize(type, src.cols());
        EXPECT_EQ(t.type, expect_type ? type : TensorType::F32) << t.name;
        std::vector<uint8_t> mine(t.bytes);
        ASSERT_EQ(kernels::quantize_rows(t.type, f32.floats(src), mine.data(), src.rows(), src.cols()), t.bytes) << t.name;
        EXPECT_EQ(std::memcmp(mine.data(), q.bytes(t), t.bytes), 0) << t.name;
        quantized += t.type == type;
    }
    EXPECT_EQ(quantized, 32);
}

TEST(QuantStories260K, Q8_0TensorsEqualTheReferenceFile) { expect_same_quantization("stories260K-q8_0.gguf", TensorType::Q8_0); }
TEST(QuantStories260K, Q4_0TensorsEqualTheReferenceFile) { expect_same_quantization("stories260K-q4_0.gguf", TensorType::Q4_0); }

TEST(QuantApi, RefusesRowsThatAreNotWholeBlocks) {
    EXPECT_FALSE(kernels::can_quantize(TensorType::Q4_0, 172));
    EXPECT_FALSE(kernels::can_quantize(TensorType::Q4_K, 288));
    EXPECT_TRUE(kernels::can_quantize(TensorType::Q4_K, 512));
    EXPECT_FALSE(kernels::can_quantize(TensorType::Q8_GROUP, 512));
    EXPECT_FALSE(kernels::can_quantize(TensorType::Q8_0, 0));
    EXPECT_TRUE(kernels::can_quantize(TensorType::F16, 7));
    float x[64] = {1.0f};
    uint8_t out[64];
    EXPECT_EQ(kernels::quantize_rows(TensorType::Q4_0, x, out, 1, 48), 0u);
}

}  // namespace
}  // namespace ferry
