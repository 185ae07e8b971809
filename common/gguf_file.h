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
//
// Memory does not grow with what a file claims: arrays are kept as one view
// of their bytes (a vocabulary of 128k strings costs nothing beyond the map)
// and walked when read; only metadata entries and tensor infos get a struct
// each, and a file whose header asks for more of those than a bound relative
// to its size (kFileBytesPerIndexByte) is refused before any is read.
#pragma once
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
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

class GgufElements;

struct GgufValue {
    GgufType type = GgufType::UINT8;
    GgufType elem_type = GgufType::UINT8;  // ARRAY
    const uint8_t* data = nullptr;         // scalars: the value's bytes; arrays: the first element's
    uint64_t count = 0;                    // ARRAY: number of elements
    uint64_t bytes = 0;                    // ARRAY: bytes of all its elements, stored one after another
    std::string_view str;                  // STRING

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
    // The elements of an ARRAY, in order, each as a value (strings in .str,
    // nested arrays as arrays); read from the file as the walk reaches them.
    GgufElements elements() const;
    // "u32 7", "string 'llama'", "array of 512 string": for messages and `ferry` listings.
    std::string describe() const;
};

// A walk over an array's elements. They have different lengths (strings,
// nested arrays), so there is no random access; parse_gguf checked every
// length, so the walk itself needs no checks.
class GgufElements {
public:
    class iterator {
    public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = GgufValue;
        using difference_type = std::ptrdiff_t;
        using pointer = const GgufValue*;
        using reference = GgufValue;

        iterator() = default;
        GgufValue operator*() const;
        iterator& operator++();
        iterator operator++(int) {
            iterator before = *this;
            ++*this;
            return before;
        }
        bool operator==(const iterator& o) const { return at_ == o.at_; }
        bool operator!=(const iterator& o) const { return at_ != o.at_; }

    private:
        friend class GgufElements;
        iterator(const uint8_t* at, GgufType type) : at_(at), type_(type) {}
        const uint8_t* at_ = nullptr;
        GgufType type_ = GgufType::UINT8;
    };

    explicit GgufElements(const GgufValue& array) : array_(array) {}
    iterator begin() const { return {array_.data, array_.elem_type}; }
    iterator end() const { return {array_.data + array_.bytes, array_.elem_type}; }
    uint64_t size() const { return array_.count; }

private:
    GgufValue array_;
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
    // Indices into metadata / tensors sorted by key / name: 8 bytes an entry,
    // looked up by binary search.
    std::vector<size_t> key_order_;
    std::vector<size_t> tensor_order_;
};

// The most memory parse_gguf gives the metadata entries, tensor infos and
// their indexes: one byte per kFileBytesPerIndexByte of the file (at least
// kIndexFloorBytes, for small files). A real model's few dozen keys and few
// hundred tensors take a tiny fraction of that; a file of millions of
// one-byte keys or empty tensors is refused at its header.
constexpr uint64_t kFileBytesPerIndexByte = 8;
constexpr uint64_t kIndexFloorBytes = 1u << 20;

// True if the bytes start with the GGUF magic.
bool is_gguf(const uint8_t* data, uint64_t size);

// Parses and validates a whole GGUF image. `path` names it in errors.
GgufFile parse_gguf(const uint8_t* data, uint64_t size, const std::string& path);

// ggml's name for a type id ("q4_K", "iq2_xxs", ...), including types ferry
// cannot use; nullptr for an id ggml does not define.
const char* ggml_type_name(uint32_t id);

}  // namespace ferry
