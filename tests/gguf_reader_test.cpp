// The GGUF reader (common/gguf_file.*) and writer (common/gguf_writer.*):
// the block-format oracle blocks.gguf parsed key by key, hostile files of
// every kind the test builds byte by byte (and 64 MB ones that must not
// make the reader allocate more than their size), every truncation of a
// small valid model, the llama.* checks of the model loader, and the writer reproducing
// ggml's own file byte for byte.
#include <gtest/gtest.h>
#include <malloc.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/model_file.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string gguf_dir() { return test::shared_dir() + "/models/gguf/"; }

// Raw GGUF bytes, written field by field so a test can get any of them wrong.
struct Bytes {
    std::string b;
    template <typename T>
    Bytes& put(T v) {
        b.append(reinterpret_cast<const char*>(&v), sizeof v);
        return *this;
    }
    Bytes& str(const std::string& s) {
        put<uint64_t>(s.size());
        b += s;
        return *this;
    }
    Bytes& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
        b += "GGUF";
        return put(version).put(n_tensors).put(n_kv);
    }
    Bytes& kv_u32(const std::string& key, uint32_t v) { return str(key).put<uint32_t>(4).put(v); }
    Bytes& kv_str(const std::string& key, const std::string& v) { return str(key).put<uint32_t>(8).str(v); }
    Bytes& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
        str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
        for (uint64_t n : ne) put(n);
        return put(type).put(offset);
    }
    Bytes& pad(size_t alignment = 32) {
        b.append((alignment - b.size() % alignment) % alignment, '\0');
        return *this;
    }
    Bytes& data(size_t n, char fill = 0) {
        b.append(n, fill);
        return *this;
    }
};

// A one-tensor file: "t" of 8 f32 at data offset 0.
std::string one_tensor_file(uint32_t version = 3) {
    Bytes f;
    f.header(version, 1, 1).kv_str("general.architecture", "test").tensor("t", {8}, 0, 0).pad().data(32);
    return f.b;
}

// The elements of an array of strings.
std::vector<std::string_view> strings_of(const GgufValue& array) {
    std::vector<std::string_view> out;
    for (const GgufValue& e : array.elements()) out.push_back(e.str);
    return out;
}

std::string parse_error(const std::string& bytes, const std::string& path = "hostile.gguf") {
    try {
        parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

struct HostileCase {
    const char* name;
    std::function<std::string()> bytes;
    std::vector<std::string> says;
};

std::vector<HostileCase> hostile_cases() {
    const uint64_t huge = std::numeric_limits<uint64_t>::max();
    return {
        {"Empty", [] { return std::string(); }, {"too short", "0 bytes"}},
        {"BadMagic", [] { return std::string("GGML") + one_tensor_file().substr(4); }, {"not a GGUF file", "'GGML'"}},
        {"Version1", [] { return one_tensor_file(1); }, {"version 1 is not supported"}},
        {"UnknownVersion", [] { return one_tensor_file(4); }, {"unknown GGUF version 4"}},
        {"BigEndian", [] { return one_tensor_file(0x03000000u); }, {"big-endian"}},
        {"TruncatedHeader", [] { return one_tensor_file().substr(0, 12); }, {"truncated", "tensor count"}},
        {"MetadataCountPastEnd",
         [] { return Bytes().header(3, 0, 1u << 30).kv_str("a", "b").b; },
         {"claims 1073741824 metadata entries"}},
        {"TensorCountPastEnd", [] { return Bytes().header(3, huge, 0).b; }, {"tensors, more than the file can hold"}},
        {"KeyLengthPastEnd",
         [] { return Bytes().header(3, 0, 1).put<uint64_t>(1u << 20).data(16).b; },
         {"key of metadata entry 0", "past the end"}},
        {"StringLengthPastEnd",
         [] { return Bytes().header(3, 0, 1).str("general.name").put<uint32_t>(8).put<uint64_t>(huge).data(16).b; },
         {"'general.name'", "length 18446744073709551615", "past the end"}},
        {"UnknownValueType",
         [] { return Bytes().header(3, 0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0).b; },
         {"'k' has unknown value type 13"}},
        {"UnknownArrayElementType",
         [] { return Bytes().header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(77).put<uint64_t>(1).data(8).b; },
         {"unknown array element type 77"}},
        {"ArrayCountPastEnd",
         [] {
             return Bytes()
                 .header(3, 0, 1)
                 .str("k")
                 .put<uint32_t>(9)
                 .put<uint32_t>(6)
                 .put<uint64_t>(huge / 2)
                 .data(8)
                 .b;
         },
         {"'k' claims", "elements of type f32"}},
        {"ArraysNestedTooDeep",
         [] {
             Bytes f;
             f.header(3, 0, 1).str("k").put<uint32_t>(9);
             for (int i = 0; i < 20; ++i) f.put<uint32_t>(9).put<uint64_t>(1);
             return f.b;
         },
         {"nested deeper than"}},
        {"ArraysOfArraysOfArrays",  // llama.cpp reads no nesting; ferry one level
         [] {
             return Bytes()
                 .header(3, 0, 1)
                 .str("k")
                 .put<uint32_t>(9)
                 .put<uint32_t>(9)
                 .put<uint64_t>(1)
                 .put<uint32_t>(9)
                 .put<uint64_t>(1)
                 .put<uint32_t>(0)
                 .put<uint64_t>(0)
                 .b;
         },
         {"'k' element 0 element 0: arrays nested deeper than 2 levels"}},
        {"InvalidBool",
         [] { return Bytes().header(3, 0, 1).str("flag").put<uint32_t>(7).put<uint8_t>(2).b; },
         {"'flag' is not a valid bool (2)"}},
        {"DuplicateKey", [] { return Bytes().header(3, 0, 2).kv_u32("x", 1).kv_u32("x", 2).b; }, {"'x' appears twice"}},
        {"AlignmentNotPowerOfTwo",
         [] { return Bytes().header(3, 0, 1).kv_u32("general.alignment", 48).b; },
         {"general.alignment is u32 48", "power of two"}},
        {"AlignmentAbsurd",
         [] { return Bytes().header(3, 0, 1).kv_u32("general.alignment", 1u << 31).b; },
         {"general.alignment is u32 2147483648"}},
        {"AlignmentNotAnInteger",
         [] { return Bytes().header(3, 0, 1).kv_str("general.alignment", "32").b; },
         {"general.alignment is string"}},
        {"TooManyDimensions",
         [] {
             return Bytes().header(3, 1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0).pad().data(32).b;
         },
         {"'t' has 5 dimensions"}},
        {"DimensionAboveInt64",
         [] { return Bytes().header(3, 1, 0).tensor("t", {huge}, 0, 0).pad().data(32).b; },
         {"'t' has dimension 0 of 18446744073709551615"}},
        {"ShapeProductOverflows",
         [] {
             return Bytes().header(3, 1, 0).tensor("t", {0, 1ull << 32, 1ull << 32, 1ull << 32}, 0, 0).pad().data(32).b;
         },
         {"'t' has an impossible shape", "overflows"}},
        {"ByteSizeOverflows",
         [] {
             return Bytes().header(3, 1, 0).tensor("t", {1ull << 40, 1ull << 22}, 0, 0).pad().data(32).b;
         },
         {"'t' cannot be stored", "overflows"}},
        {"UnknownTensorType",
         [] { return Bytes().header(3, 1, 0).tensor("t", {32}, 99, 0).pad().data(32).b; },
         {"type id 99", "not a GGML type"}},
        {"UnsupportedGgmlType",
         [] { return Bytes().header(3, 1, 0).tensor("t", {256}, 16, 0).pad().data(66).b; },
         {"type iq2_xxs (16)", "does not support"}},
        {"RowNotWholeBlocks",
         [] {
             return Bytes().header(3, 1, 0).tensor("t", {33, 2}, 8, 0).pad().data(96).b;
         },
         {"row length 33 is not a multiple of the q8_0 block of 32"}},
        {"OffsetNotAligned",
         [] { return Bytes().header(3, 1, 0).tensor("t", {8}, 0, 4).pad().data(64).b; },
         {"data offset 4, not a multiple of the alignment 32"}},
        {"TensorDataPastEnd",
         [] { return Bytes().header(3, 1, 0).tensor("t", {64}, 0, 0).pad().data(100).b; },
         {"'t' (256 bytes at data offset 0) lies past the end"}},
        {"TensorOffsetFarPastEnd",
         [] { return Bytes().header(3, 1, 0).tensor("t", {8}, 0, 1ull << 60).pad().data(32).b; },
         {"lies past the end"}},
        {"TensorsOverlap",
         [] { return Bytes().header(3, 2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).pad().data(64).b; },
         {"tensors 'a' and 'b' overlap"}},
        {"DuplicateTensorName",
         [] { return Bytes().header(3, 2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).pad().data(64).b; },
         {"tensor name 'w' appears twice"}},
        {"TensorNameLengthPastEnd",
         [] { return Bytes().header(3, 1, 0).put<uint64_t>(1ull << 40).data(40).b; },
         {"name of tensor info 0", "past the end"}},
        {"ControlCharactersInNamesAreNotPrinted",
         [] { return Bytes().header(3, 1, 0).tensor("evil\nname\x1b[2J", {99}, 0, 0).pad().data(32).b; },
         {"'evil?name?[2J'"}},
    };
}

class HostileGguf : public ::testing::TestWithParam<HostileCase> {};

TEST_P(HostileGguf, OneLineNamingFileAndProblem) {
    const HostileCase& c = GetParam();
    const std::string msg = parse_error(c.bytes());
    ASSERT_FALSE(msg.empty()) << c.name << ": parsed without complaint";
    EXPECT_EQ(msg.rfind("hostile.gguf: ", 0), 0u) << msg;
    for (const std::string& s : c.says)
        EXPECT_NE(msg.find(s), std::string::npos) << "missing '" << s << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
}

INSTANTIATE_TEST_SUITE_P(Reader, HostileGguf, ::testing::ValuesIn(hostile_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

// Bytes the heap holds now (glibc: arena and mmapped chunks in use).
uint64_t heap_in_use() {
    const struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

struct AmplifyingCase {
    const char* name;
    std::function<std::string(uint64_t size)> bytes;  // a file of about `size` bytes
    const char* refusal;  // what the error says, or nullptr if the file parses
};

// A key or tensor name unique to entry i, 7 bytes.
std::string entry_name(uint64_t i) {
    char b[16];
    std::snprintf(b, sizeof b, "%07llx", static_cast<unsigned long long>(i));
    return b;
}

// The smallest entries of each kind that can be repeated to fill a file:
// each costs the reader more memory per byte than any real file does.
std::vector<AmplifyingCase> amplifying_cases() {
    return {
        {"EmptyStrings",
         [](uint64_t size) {
             const uint64_t n = size / 8;
             Bytes f;
             f.header(3, 0, 1).str("junk").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(n);
             return f.data(n * 8).b;
         },
         nullptr},
        {"EmptyArrays",
         [](uint64_t size) {
             const uint64_t n = size / 12;
             Bytes f;
             f.header(3, 0, 1).str("junk").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(n);
             for (uint64_t i = 0; i < n; ++i) f.put<uint32_t>(0).put<uint64_t>(0);
             return f.b;
         },
         nullptr},
        {"MillionsOfKeys",
         [](uint64_t size) {
             const uint64_t n = size / 20;
             Bytes f;
             f.header(3, 0, n);
             for (uint64_t i = 0; i < n; ++i) f.str(entry_name(i)).put<uint32_t>(0).put<uint8_t>(0);
             return f.b;
         },
         "metadata entries and 0 tensors, which would take"},
        {"MillionsOfTensorInfos",
         [](uint64_t size) {
             const uint64_t n = size / 39;
             Bytes f;
             f.header(3, n, 0);
             for (uint64_t i = 0; i < n; ++i) f.tensor(entry_name(i), {0}, 0, 0);
             return f.pad().b;
         },
         "tensors, which would take"},
    };
}

class AmplifyingGguf : public ::testing::TestWithParam<AmplifyingCase> {};

// A file is mapped, so parsing it may add at most its own size again: a
// 64 MB file of the cheapest entries is refused at its header or parsed in
// less than 64 MB of heap (the reader once took ~9 bytes per byte of them).
TEST_P(AmplifyingGguf, ParsesInLessHeapThanItsSizeOrIsRefused) {
    const AmplifyingCase& c = GetParam();
    const std::string bytes = c.bytes(64u << 20);
    const uint64_t before = heap_in_use();
    uint64_t held = 0;
    std::string error;
    try {
        const GgufFile g = parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "hostile.gguf");
        held = heap_in_use() - before;
        if (!g.metadata.empty() && g.metadata[0].value.is_array()) {
            uint64_t walked = 0;
            for (const GgufValue& e : g.metadata[0].value.elements()) walked += e.str.size() + e.count + 1;
            EXPECT_EQ(walked, g.metadata[0].value.count);  // every element empty, each walked once
        }
    } catch (const Error& e) {
        error = e.what();
    }
    if (c.refusal) {
        EXPECT_EQ(error.rfind("hostile.gguf: the header claims ", 0), 0u) << error;
        EXPECT_NE(error.find(c.refusal), std::string::npos) << error;
    } else {
        EXPECT_EQ(error, "");
        EXPECT_LT(held, bytes.size()) << "parsing " << bytes.size() << " bytes held " << held << " bytes of heap";
    }
}

INSTANTIATE_TEST_SUITE_P(Reader, AmplifyingGguf, ::testing::ValuesIn(amplifying_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(GgufReader, AcceptsVersionsTwoAndThreeAndMapsTensorsInPlace) {
    for (uint32_t version : {2u, 3u}) {
        const std::string bytes = one_tensor_file(version);
        const uint8_t* data = reinterpret_cast<const uint8_t*>(bytes.data());
        const GgufFile g = parse_gguf(data, bytes.size(), "ok.gguf");
        EXPECT_EQ(g.version, version);
        ASSERT_EQ(g.tensors.size(), 1u);
        EXPECT_EQ(g.data_offset % 32, 0u);
        EXPECT_EQ(g.tensors[0].offset, g.data_offset);
        EXPECT_EQ(g.tensors[0].bytes, 32u);
        // Names and strings are views into the image, not copies.
        EXPECT_GE(g.tensors[0].name.data(), bytes.data());
        EXPECT_LT(g.tensors[0].name.data(), bytes.data() + bytes.size());
    }
}

TEST(GgufReader, HonoursGeneralAlignment) {
    Bytes f;
    f.header(3, 2, 1).kv_u32("general.alignment", 64).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 64).pad(64).data(96);
    const GgufFile g = parse_gguf(reinterpret_cast<const uint8_t*>(f.b.data()), f.b.size(), "aligned.gguf");
    EXPECT_EQ(g.alignment, 64u);
    EXPECT_EQ(g.data_offset % 64, 0u);
    EXPECT_EQ(g.find_tensor("b")->offset, g.data_offset + 64);
    // The same tensor offsets under the default alignment of 32 are fine too,
    // but an offset of 32 is not a multiple of 64.
    Bytes bad;
    bad.header(3, 1, 1).kv_u32("general.alignment", 64).tensor("a", {8}, 0, 32).pad(64).data(96);
    EXPECT_NE(parse_error(bad.b).find("not a multiple of the alignment 64"), std::string::npos);
}

// Every metadata type, nested arrays included, through the writer and back.
TEST(GgufReader, EveryMetadataTypeRoundTrips) {
    GgufWriter w;
    w.add_u8("u8", 200);
    w.add_u32("u32", 4000000000u);
    w.add_i32("i32", -7);
    w.add_u64("u64", 1ull << 62);
    w.add_f32("f32", 0.5f);
    w.add_f64("f64", 1e-300);
    w.add_bool("bool", true);
    w.add_string("str", std::string("a\0b", 3));
    w.add_string_array("strs", {"x", "", "yz"});
    w.add_f32_array("f32s", {1.5f, -2.0f});
    w.add_i32_array("i32s", {-1, 2, 3});
    // Raw values of the types without an add_* of their own, and an array of arrays.
    Bytes raw;
    // clang-format off
    raw.header(3, 0, 5)
        .str("i8").put<uint32_t>(1).put<int8_t>(-3)
        .str("u16").put<uint32_t>(2).put<uint16_t>(65535)
        .str("i16").put<uint32_t>(3).put<int16_t>(-300)
        .str("i64").put<uint32_t>(11).put<int64_t>(-(1ll << 40))
        .str("nested").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2)
        .put<uint32_t>(0).put<uint64_t>(2).put<uint8_t>(1).put<uint8_t>(2)
        .put<uint32_t>(8).put<uint64_t>(1).str("deep");
    // clang-format on
    const GgufFile src = parse_gguf(reinterpret_cast<const uint8_t*>(raw.b.data()), raw.b.size(), "raw.gguf");
    for (const GgufKV& kv : src.metadata) w.add_value(std::string(kv.key), kv.value);
    w.add_tensor("t", TensorType::F32, {4, 2}, [](int64_t first, int64_t count, uint8_t* out) {
        for (int64_t r = 0; r < count; ++r)
            for (int c = 0; c < 4; ++c) {
                const float v = static_cast<float>((first + r) * 10 + c);
                std::memcpy(out + (r * 4 + c) * 4, &v, 4);
            }
    });
    const std::string bytes = w.to_bytes();
    EXPECT_EQ(bytes.size(), w.file_bytes());
    const GgufFile g = parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "all.gguf");
    EXPECT_EQ(g.metadata.size(), 16u);
    EXPECT_EQ(g.get_int("u8", 0, 255), 200);
    EXPECT_EQ(g.get_int("u32", 0, std::numeric_limits<int64_t>::max()), 4000000000ll);
    EXPECT_EQ(g.get_int("i32", -10, 0), -7);
    EXPECT_EQ(g.get_int("u64", 0, std::numeric_limits<int64_t>::max()), 1ll << 62);
    EXPECT_EQ(g.get_float("f32"), 0.5);
    EXPECT_EQ(g.get_float("f64"), 1e-300);
    EXPECT_EQ(g.get_bool("bool"), true);
    EXPECT_EQ(g.get_string("str"), std::string_view("a\0b", 3));
    EXPECT_EQ(strings_of(*g.get_array("strs", GgufType::STRING)), (std::vector<std::string_view>{"x", "", "yz"}));
    EXPECT_EQ(g.find("f32s")->float_at(1), -2.0);
    EXPECT_EQ(g.find("i32s")->int_at(0), -1);
    EXPECT_EQ(g.get_int("i8", -5, 0), -3);
    EXPECT_EQ(g.get_int("u16", 0, 70000), 65535);
    EXPECT_EQ(g.get_int("i16", -1000, 0), -300);
    EXPECT_EQ(g.get_int("i64", std::numeric_limits<int64_t>::min(), 0), -(1ll << 40));
    const GgufValue* nested = g.find("nested");
    ASSERT_TRUE(nested && nested->is_array());
    const std::vector<GgufValue> inner(nested->elements().begin(), nested->elements().end());
    ASSERT_EQ(inner.size(), 2u);
    EXPECT_EQ(inner[0].int_at(1), 2);
    EXPECT_EQ(strings_of(inner[1]), std::vector<std::string_view>{"deep"});
    // Typed lookups name the key and say what they found instead.
    try {
        g.get_int("str", 0, 10);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("all.gguf: metadata str should be an integer"), std::string::npos);
    }
    EXPECT_THROW(g.get_int("u8", 0, 100), Error);  // out of range
    EXPECT_FALSE(g.get_int("absent", 0, 1).has_value());
    const GgufTensor* t = g.find_tensor("t");
    ASSERT_NE(t, nullptr);
    float v;
    std::memcpy(&v, bytes.data() + t->offset + 4 * 5, 4);
    EXPECT_EQ(v, 11.0f);  // row 1, column 1
}

// ../shared/models/gguf/blocks.gguf, written by ggml itself: the README's
// 33 tensors and 40 keys, including f64 and arrays of f64 and of strings.
TEST(GgufReader, ParsesTheBlockOracle) {
    const std::string path = gguf_dir() + "blocks.gguf";
    const MappedFile map(path);
    const GgufFile g = parse_gguf(map.data(), map.size(), path);
    EXPECT_EQ(g.version, 3u);
    EXPECT_EQ(g.alignment, 32u);
    ASSERT_EQ(g.metadata.size(), 40u);
    ASSERT_EQ(g.tensors.size(), 33u);
    EXPECT_EQ(g.get_string("general.architecture"), "oracle");
    EXPECT_EQ(g.get_string("oracle.ggml_commit"), "d99724f2b141fed9e1a9f402213506c081433465");
    EXPECT_EQ(g.get_int("oracle.rows", 0, 100), 6);
    EXPECT_EQ(g.get_int("oracle.cols", 0, 10000), 512);
    const char* const types[] = {"F16",  "BF16", "Q8_0", "Q4_0", "Q4_1",  "Q5_0",  "Q5_1",   "Q2_K",
                                 "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0", "IQ4_NL", "Q8_K"};
    const TensorType ids[] = {TensorType::F16,   TensorType::BF16,  TensorType::Q8_0,   TensorType::Q4_0,
                              TensorType::Q4_1,  TensorType::Q5_0,  TensorType::Q5_1,   TensorType::Q2_K,
                              TensorType::Q3_K,  TensorType::Q4_K,  TensorType::Q5_K,   TensorType::Q6_K,
                              TensorType::TQ1_0, TensorType::TQ2_0, TensorType::IQ4_NL, TensorType::Q8_K};
    const int64_t quant_bytes[] = {6144, 6144, 3264, 1728, 1920, 2112, 2304, 1008,
                                   1320, 1728, 2112, 2520, 648,  792,  1728, 3504};
    const GgufValue* names = g.get_array("oracle.types", GgufType::STRING);
    ASSERT_NE(names, nullptr);
    const std::vector<std::string_view> type_names = strings_of(*names);
    ASSERT_EQ(type_names.size(), 16u);
    EXPECT_EQ(g.tensors[0].name, "source");
    EXPECT_EQ(g.tensors[0].type, TensorType::F32);
    // The README's table of the reference MSE, all rows and row 5.
    const std::pair<double, double> mse[] = {
        {0.00758346, 0.0455}, {6.47742, 38.86},   {401.176, 2407},    {24222, 1.453e5},
        {32881.5, 1.973e5},   {17308.3, 1.038e5}, {6939.66, 4.163e4}, {147688, 8.861e5},
        {17589.5, 1.055e5},   {20593.4, 1.236e5}, {5322.4, 3.193e4},  {2477.09, 1.486e4},
        {175333, 1.052e6},    {175333, 1.052e6},  {25497.5, 1.53e5},  {3142.98, 1.886e4}};
    for (int i = 0; i < 16; ++i) {
        const std::string t = types[i];
        EXPECT_EQ(type_names[i], t);
        const GgufTensor& q = g.tensors[1 + 2 * i];
        const GgufTensor& d = g.tensors[2 + 2 * i];
        EXPECT_EQ(q.name, t + ".quant");
        EXPECT_EQ(q.type, ids[i]) << t;
        EXPECT_EQ(q.cols(), 512);
        EXPECT_EQ(q.rows(), 6);
        EXPECT_EQ(static_cast<int64_t>(q.bytes), quant_bytes[i]) << t;
        EXPECT_EQ(d.name, t + ".dequant");
        EXPECT_EQ(d.type, TensorType::F32);
        EXPECT_EQ(d.bytes, 12288u);
        // Keys interleave: oracle.mse.T (f64), then oracle.mse_rows.T (6 f64).
        const GgufKV& all = g.metadata[7 + 2 * i];
        const GgufKV& rows = g.metadata[8 + 2 * i];
        EXPECT_EQ(all.key, "oracle.mse." + t);
        EXPECT_EQ(all.value.type, GgufType::FLOAT64);
        EXPECT_NEAR(*all.value.as_float(), mse[i].first, mse[i].first * 1e-4) << t;
        EXPECT_EQ(rows.key, "oracle.mse_rows." + t);
        ASSERT_EQ(rows.value.elem_type, GgufType::FLOAT64);
        ASSERT_EQ(rows.value.count, 6u);
        EXPECT_NEAR(*rows.value.float_at(5), mse[i].second, mse[i].second * 2e-3) << t;
        double mean = 0;
        for (uint64_t r = 0; r < 6; ++r) mean += *rows.value.float_at(r) / 6;
        EXPECT_NEAR(mean, *all.value.as_float(), *all.value.as_float() * 1e-9) << "rows average to the whole, " << t;
    }
    EXPECT_EQ(g.metadata.back().key, "oracle.types");
}

// Copying every key and tensor of ggml's blocks.gguf through GgufWriter
// gives ggml's file back, byte for byte: the writer's layout is ggml's.
TEST(GgufWriter, ReproducesAFileWrittenByGgml) {
    const std::string path = gguf_dir() + "blocks.gguf";
    const MappedFile map(path);
    const GgufFile g = parse_gguf(map.data(), map.size(), path);
    GgufWriter w;
    for (const GgufKV& kv : g.metadata) w.add_value(std::string(kv.key), kv.value);
    for (const GgufTensor& t : g.tensors) {
        const uint64_t row_bytes = t.bytes / static_cast<uint64_t>(t.rows());
        const uint8_t* data = map.data() + t.offset;
        w.add_tensor(std::string(t.name), t.type, {t.ne[0], t.ne[1]}, [=](int64_t first, int64_t count, uint8_t* out) {
            std::memcpy(out, data + first * row_bytes, count * row_bytes);
        });
    }
    const std::string bytes = w.to_bytes();
    ASSERT_EQ(bytes.size(), map.size());
    EXPECT_EQ(std::memcmp(bytes.data(), map.data(), map.size()), 0);
}

// ---------------------------------------------------------------------------
// A small llama model, valid, written by the test; then broken.

struct ModelKeys {
    std::string arch = "llama";
    std::vector<std::pair<std::string, uint32_t>> ints = {
        {"llama.context_length", 16},      {"llama.embedding_length", 8},     {"llama.block_count", 1},
        {"llama.feed_forward_length", 16}, {"llama.attention.head_count", 2}, {"llama.attention.head_count_kv", 1}};
    bool eps = true;
};

// dim 8, hidden 16, 1 layer, 2 heads / 1 KV head, vocab 4, tied. Every
// tensor is a whole multiple of 32 bytes, so nothing pads the file's end.
std::string small_model(const ModelKeys& k = {}) {
    GgufWriter w;
    w.add_string("general.architecture", k.arch);
    for (const auto& [key, v] : k.ints) w.add_u32(key, v);
    if (k.eps) w.add_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    w.add_string("tokenizer.ggml.model", "llama");
    w.add_string_array("tokenizer.ggml.tokens", {"<unk>", "<s>", "</s>", "\u2581a"});
    const int64_t dim = 8, hidden = 16, kv = 4, vocab = 4;
    auto add = [&](const std::string& name, int64_t r, int64_t c) {
        w.add_tensor(name, TensorType::F32, r == 1 ? std::vector<int64_t>{c} : std::vector<int64_t>{c, r},
                     [](int64_t, int64_t, uint8_t*) {});  // the writer's zeros
    };
    add("token_embd.weight", vocab, dim);
    add("output_norm.weight", 1, dim);
    add("blk.0.attn_q.weight", dim, dim);
    add("blk.0.attn_k.weight", kv, dim);
    add("blk.0.attn_v.weight", kv, dim);
    add("blk.0.attn_output.weight", dim, dim);
    add("blk.0.attn_norm.weight", 1, dim);
    add("blk.0.ffn_gate.weight", hidden, dim);
    add("blk.0.ffn_down.weight", dim, hidden);
    add("blk.0.ffn_up.weight", hidden, dim);
    add("blk.0.ffn_norm.weight", 1, dim);
    return w.to_bytes();
}

std::string open_error(const test::TempDir& dir, const std::string& bytes) {
    const std::string path = dir.file("model.gguf");
    test::write_file(path, bytes);
    try {
        open_model_file(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// The keys the writer puts down are the keys the loader reads back.
TEST(GgufModel, LlamaMetadataRoundTrips) {
    ModelConfig c;
    c.dim = 96, c.hidden_dim = 200, c.n_layers = 3, c.n_heads = 6, c.n_kv_heads = 2, c.vocab_size = 77;
    c.seq_len = 300, c.norm_eps = 1e-6f, c.rope_theta = 500000.0f;
    GgufWriter w;
    add_model_metadata(w, c, "m");
    w.add_tensor("token_embd.weight", TensorType::F32, {96, 77}, [](int64_t, int64_t, uint8_t*) {});
    const std::string bytes = w.to_bytes();
    const ModelConfig r =
        gguf_model_config(parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "m"));
    EXPECT_EQ(r.dim, 96);
    EXPECT_EQ(r.hidden_dim, 200);
    EXPECT_EQ(r.n_layers, 3);
    EXPECT_EQ(r.n_heads, 6);
    EXPECT_EQ(r.n_kv_heads, 2);
    EXPECT_EQ(r.vocab_size, 77) << "from the embedding table";
    EXPECT_EQ(r.seq_len, 300);
    EXPECT_EQ(r.norm_eps, 1e-6f);
    EXPECT_EQ(r.rope_theta, 500000.0f);
    EXPECT_FALSE(r.rope_freq_factors);
}

TEST(GgufModel, TheSmallModelOpens) {
    test::TempDir dir;
    EXPECT_EQ(open_error(dir, small_model()), "");
    const ModelFile f = open_model_file(dir.file("model.gguf"));
    EXPECT_EQ(f.format, "gguf v3");
    EXPECT_EQ(f.config.dim, 8);
    EXPECT_EQ(f.config.n_kv_heads, 1);
    EXPECT_EQ(f.config.vocab_size, 4) << "from tokenizer.ggml.tokens";
    EXPECT_EQ(f.config.seq_len, 16);
    EXPECT_EQ(f.find("output.weight"), nullptr) << "tied";
}

// In memory, the checks open_model_file makes: parse, then the llama.* config.
std::string load_error(const std::string& bytes) {
    try {
        const GgufFile g = parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "cut.gguf");
        if (g.tensors.empty()) return "no tensors";
        gguf_model_config(g);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(GgufModel, EveryTruncationIsRejected) {
    const std::string bytes = small_model();
    ASSERT_EQ(load_error(bytes), "");
    for (size_t len = 0; len < bytes.size(); ++len) {
        const std::string msg = load_error(bytes.substr(0, len));
        EXPECT_FALSE(msg.empty()) << "cut at " << len << " of " << bytes.size();
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
}

struct ModelCase {
    const char* name;
    std::function<std::string()> bytes;
    std::string says;
};

ModelKeys without(const std::string& key) {
    ModelKeys k;
    k.ints.erase(std::remove_if(k.ints.begin(), k.ints.end(), [&](const auto& kv) { return kv.first == key; }),
                 k.ints.end());
    return k;
}

ModelKeys with(const std::string& key, uint32_t v) {
    ModelKeys k = without(key);
    k.ints.emplace_back(key, v);
    return k;
}

std::vector<ModelCase> model_cases() {
    return {
        {"MissingArchitecture",
         [] {
             GgufWriter w;
             w.add_u32("llama.block_count", 1);
             w.add_tensor("x", TensorType::F32, {8}, [](int64_t, int64_t, uint8_t*) {});
             return w.to_bytes();
         },
         "missing required metadata general.architecture"},
        {"OtherArchitecture",
         [] {
             ModelKeys k;
             k.arch = "gemma";
             return small_model(k);
         },
         "architecture 'gemma' is not supported"},
        {"MissingEmbeddingLength", [] { return small_model(without("llama.embedding_length")); },
         "missing required metadata llama.embedding_length"},
        {"MissingBlockCount", [] { return small_model(without("llama.block_count")); },
         "missing required metadata llama.block_count"},
        {"MissingRmsEpsilon",
         [] {
             ModelKeys k;
             k.eps = false;
             return small_model(k);
         },
         "missing required metadata llama.attention.layer_norm_rms_epsilon"},
        {"ZeroHeads", [] { return small_model(with("llama.attention.head_count", 0)); },
         "llama.attention.head_count = 0 is out of range"},
        {"KvHeadsDoNotDivideHeads", [] { return small_model(with("llama.attention.head_count_kv", 3)); },
         "n_kv_heads 3"},
        {"HugeContext", [] { return small_model(with("llama.context_length", 0xFFFFFFFFu)); },
         "llama.context_length = 4294967295 is out of range"},
        {"PartialRotation", [] { return small_model(with("llama.rope.dimension_count", 2)); },
         "rotates part of each head"},
        {"MixtureOfExperts", [] { return small_model(with("llama.expert_count", 8)); }, "mixture-of-experts"},
        {"VocabularyOnly",
         [] {
             GgufWriter w;
             w.add_string("general.architecture", "llama");
             return w.to_bytes();
         },
         "has no tensors"},
    };
}

class BrokenGgufModel : public ::testing::TestWithParam<ModelCase> {};

TEST_P(BrokenGgufModel, OneLineNamingFileAndProblem) {
    test::TempDir dir;
    const std::string msg = open_error(dir, GetParam().bytes());
    ASSERT_FALSE(msg.empty()) << GetParam().name << " opened";
    EXPECT_EQ(msg.rfind(dir.file("model.gguf") + ": ", 0), 0u) << msg;
    EXPECT_NE(msg.find(GetParam().says), std::string::npos) << "missing '" << GetParam().says << "' in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

INSTANTIATE_TEST_SUITE_P(Loader, BrokenGgufModel, ::testing::ValuesIn(model_cases()),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ferry
