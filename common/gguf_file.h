// Reader for GGUF (versions 2 and 3), the model format of ggml/llama.cpp:
//   "GGUF", u32 version, u64 tensor count, u64 metadata count,
//   metadata: {string key, u32 value type, value} ...,
//   tensor infos: {string name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset} ...,
//   padding to general.alignment (default 32), then the tensor data.
// Strings are u64 length + bytes; arrays are u32 element type + u64 count +
// elements (arrays may nest). Everything is little-endian.
//
// Nothing is copied: keys, strings and array elements are views into the
// bytes given to parse_gguf, which must outlive the GgufFile. Every count,
// length, shape and offset is checked against the end of the file before it
// is used, so a hostile file gets a ferry::Error naming the file and the
// problem, never a crash or a huge allocation.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kernels/tensor_type.h"

namespace ferry {

enum class GgufType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

// "u32", "string", ... ("unknown" for an id outside the spec).
const char* gguf_type_name(GgufType type);
// Bytes of one scalar of this type; 0 for STRING, ARRAY and unknown ids.
uint64_t gguf_scalar_bytes(GgufType type);

struct GgufValue {
    GgufType type = GgufType::UINT8;
    const uint8_t* data = nullptr;          // scalars: the value's bytes; numeric arrays: the first element
    std::string_view str;                   // STRING
    GgufType elem_type = GgufType::UINT8;   // ARRAY
    uint64_t count = 0;                     // ARRAY: number of elements
    std::vector<std::string_view> strings;  // ARRAY of STRING
    std::vector<GgufValue> arrays;          // ARRAY of ARRAY

    bool is_array() const { return type == GgufType::ARRAY; }
    // Any integer type or bool, as int64; nullopt for other types or a u64
    // above INT64_MAX.
    std::optional<int64_t> as_int() const;
    // f32 or f64 (integers too, as some converters write them).
    std::optional<double> as_float() const;
    std::optional<bool> as_bool() const;
    std::optional<std::string_view> as_string() const;
    // Element i of a numeric array (i < count), as int64 / double; nullopt if
    // the elements are not of that kind.
    std::optional<int64_t> int_at(uint64_t i) const;
    std::optional<double> float_at(uint64_t i) const;
    // "u32 7", "string 'llama'", "array of 512 string": for messages and `ferry` listings.
    std::string describe() const;
};

struct GgufKV {
    std::string_view key;
    GgufValue value;
};

struct GgufTensor {
    std::string_view name;
    TensorType type = TensorType::F32;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous dimension
    uint64_t offset = 0;           // from the start of the file (data section + stored offset)
    uint64_t bytes = 0;

    int64_t cols() const { return ne[0]; }
    int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
};

class GgufFile {
public:
    std::string path;
    uint32_t version = 0;
    uint64_t alignment = 32;
    uint64_t data_offset = 0;         // start of the tensor data section
    std::vector<GgufKV> metadata;     // in file order
    std::vector<GgufTensor> tensors;  // in file order

    // nullptr if absent.
    const GgufValue* find(std::string_view key) const;
    const GgufTensor* find_tensor(std::string_view name) const;

    // Typed lookups: nullopt if the key is absent; ferry::Error naming the
    // file and key if it is present with the wrong type or out of range.
    std::optional<int64_t> get_int(std::string_view key, int64_t min, int64_t max) const;
    std::optional<double> get_float(std::string_view key) const;
    std::optional<bool> get_bool(std::string_view key) const;
    std::optional<std::string_view> get_string(std::string_view key) const;
    // An array of `elem` elements; ferry::Error if present with another shape.
    const GgufValue* get_array(std::string_view key, GgufType elem) const;

    // ferry::Error "<path>: <message>".
    [[noreturn]] void fail(const std::string& message) const;

private:
    friend GgufFile parse_gguf(const uint8_t* data, uint64_t size, const std::string& path);
    std::unordered_map<std::string_view, size_t> key_index_;
    std::unordered_map<std::string_view, size_t> tensor_index_;
};

// True if the bytes start with the GGUF magic.
bool is_gguf(const uint8_t* data, uint64_t size);

// Parses and validates a whole GGUF image. `path` names it in errors.
GgufFile parse_gguf(const uint8_t* data, uint64_t size, const std::string& path);

// ggml's name for a type id ("q4_K", "iq2_xxs", ...), including types ferry
// cannot use; nullptr for an id ggml does not define.
const char* ggml_type_name(uint32_t id);

}  // namespace ferry
