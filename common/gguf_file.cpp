#include "common/gguf_file.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "common/error.h"
#include "common/shard_memory.h"

namespace ferry {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
// llama.cpp's reader refuses arrays of arrays altogether, so no real file
// has them; ferry reads one level of nesting (its writer copies any value it
// read) and refuses deeper, so reading or walking a value recurses at most
// this far.
constexpr int kMaxArrayDepth = 2;
// ggml writes 32; anything past 1 GiB is a corrupt or hostile value.
constexpr int64_t kMaxAlignment = int64_t{1} << 30;

template <typename T>
T load(const uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

std::string quoted(std::string_view s) {
    std::string out = "'";
    for (char c : s.substr(0, 80)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
    if (s.size() > 80) out += "...";
    return out + "'";
}

// A bounds-checked cursor over the file image. `what` is a callable giving
// what is being read, called only to word an error (a vocabulary has 100k
// strings; their descriptions are never built unless one is broken).
class Reader {
public:
    Reader(const uint8_t* data, uint64_t size, const GgufFile& file) : data_(data), size_(size), file_(file) {}

    uint64_t pos() const { return pos_; }
    uint64_t left() const { return size_ - pos_; }
    const uint8_t* here() const { return data_ + pos_; }

    template <typename What>
    void need(uint64_t n, const What& what) const {
        if (n > left())
            file_.fail("truncated: " + what() + " needs " + std::to_string(n) + " bytes at offset " +
                       std::to_string(pos_) + ", the file ends at " + std::to_string(size_));
    }
    template <typename T, typename What>
    T read(const What& what) {
        need(sizeof(T), what);
        const T v = load<T>(here());
        pos_ += sizeof(T);
        return v;
    }
    template <typename What>
    void skip(uint64_t n, const What& what) {
        need(n, what);
        pos_ += n;
    }
    template <typename What>
    std::string_view string(const What& what) {
        const uint64_t len = read<uint64_t>([&] { return what() + " length"; });
        if (len > left())
            file_.fail("truncated: " + what() + " has length " + std::to_string(len) + " at offset " +
                       std::to_string(pos_ - 8) + ", past the end of the file (" + std::to_string(size_) + " bytes)");
        std::string_view s(reinterpret_cast<const char*>(here()), static_cast<size_t>(len));
        pos_ += len;
        return s;
    }

private:
    const uint8_t* data_;
    uint64_t size_;
    uint64_t pos_ = 0;
    const GgufFile& file_;
};

// A fixed description, for read() calls that name one thing.
struct Named {
    const char* text;
    std::string operator()() const { return text; }
};

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::FLOAT64); }

// Where a value stored at p ends. Only for values parse_gguf has checked:
// it trusts every length and count.
const uint8_t* value_end(const uint8_t* p, GgufType type) {
    if (const uint64_t n = gguf_scalar_bytes(type)) return p + n;
    if (type == GgufType::STRING) return p + 8 + load<uint64_t>(p);
    const GgufType elem = static_cast<GgufType>(load<uint32_t>(p));
    const uint64_t count = load<uint64_t>(p + 4);
    p += 12;
    if (const uint64_t n = gguf_scalar_bytes(elem)) return p + count * n;
    for (uint64_t i = 0; i < count; ++i) p = value_end(p, elem);
    return p;
}

// The value stored at p (checked by parse_gguf, as for value_end).
GgufValue value_at(const uint8_t* p, GgufType type) {
    GgufValue v;
    v.type = type;
    if (type == GgufType::STRING) {
        v.str = std::string_view(reinterpret_cast<const char*>(p + 8), static_cast<size_t>(load<uint64_t>(p)));
    } else if (type == GgufType::ARRAY) {
        v.elem_type = static_cast<GgufType>(load<uint32_t>(p));
        v.count = load<uint64_t>(p + 4);
        v.data = p + 12;
        v.bytes = static_cast<uint64_t>(value_end(p, type) - v.data);
    } else {
        v.data = p;
    }
    return v;
}

void read_value(Reader& r, GgufValue& v, GgufType type, const std::string& what, int depth, const GgufFile& f);

// Checks an array's elements and keeps one view of them: nothing is
// allocated per element, however many the file holds.
void read_array(Reader& r, GgufValue& v, const std::string& what, int depth, const GgufFile& f) {
    if (depth >= kMaxArrayDepth)
        f.fail(what + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth) +
               " levels (llama.cpp reads no arrays of arrays at all)");
    const uint32_t elem = r.read<uint32_t>([&] { return what + " element type"; });
    if (!known_type(elem)) f.fail(what + ": unknown array element type " + std::to_string(elem));
    v.elem_type = static_cast<GgufType>(elem);
    v.count = r.read<uint64_t>([&] { return what + " element count"; });
    const uint64_t scalar = gguf_scalar_bytes(v.elem_type);
    // The smallest an element can be: a scalar's bytes, a string's length
    // field, an array's type and count.
    const uint64_t min_bytes = scalar ? scalar : v.elem_type == GgufType::STRING ? 8 : 12;
    if (v.count > r.left() / min_bytes)
        f.fail("truncated: " + what + " claims " + std::to_string(v.count) + " elements of type " +
               gguf_type_name(v.elem_type) + ", more than the " + std::to_string(r.left()) +
               " bytes left in the file can hold");
    auto element = [&](uint64_t i) { return what + " element " + std::to_string(i); };
    v.data = r.here();
    const uint64_t start = r.pos();
    if (scalar) {
        r.skip(v.count * scalar, [&] { return what; });
        if (v.elem_type == GgufType::BOOL)
            for (uint64_t i = 0; i < v.count; ++i)
                if (v.data[i] > 1) f.fail(element(i) + " is not a valid bool (" + std::to_string(v.data[i]) + ")");
    } else {
        GgufValue e;
        for (uint64_t i = 0; i < v.count; ++i) read_value(r, e, v.elem_type, element(i), depth + 1, f);
    }
    v.bytes = r.pos() - start;
}

void read_value(Reader& r, GgufValue& v, GgufType type, const std::string& what, int depth, const GgufFile& f) {
    v.type = type;
    auto named = [&] { return what; };
    if (type == GgufType::STRING) {
        v.str = r.string(named);
    } else if (type == GgufType::ARRAY) {
        read_array(r, v, what, depth, f);
    } else {
        v.data = r.here();
        r.skip(gguf_scalar_bytes(type), named);
        if (type == GgufType::BOOL && v.data[0] > 1)
            f.fail(what + " is not a valid bool (" + std::to_string(v.data[0]) + ")");
    }
}

// Indices of `items` sorted by name(item), for binary search.
template <typename T, typename Name>
std::vector<size_t> sorted_order(const std::vector<T>& items, Name name) {
    std::vector<size_t> order(items.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return name(items[a]) < name(items[b]); });
    return order;
}

// The item called `wanted`, by binary search over `order`; nullptr if none.
template <typename T, typename Name>
const T* find_sorted(const std::vector<T>& items, const std::vector<size_t>& order, std::string_view wanted,
                     Name name) {
    auto it = std::lower_bound(order.begin(), order.end(), wanted,
                               [&](size_t i, std::string_view w) { return name(items[i]) < w; });
    return it != order.end() && name(items[*it]) == wanted ? &items[*it] : nullptr;
}

// The first name that appears twice in sorted order, if any.
template <typename T, typename Name>
const T* first_duplicate(const std::vector<T>& items, const std::vector<size_t>& order, Name name) {
    for (size_t i = 1; i < order.size(); ++i)
        if (name(items[order[i - 1]]) == name(items[order[i]])) return &items[order[i]];
    return nullptr;
}

std::string_view key_of(const GgufKV& kv) { return kv.key; }
std::string_view name_of(const GgufTensor& t) { return t.name; }

std::optional<int64_t> scalar_int(GgufType type, const uint8_t* p) {
    switch (type) {
        case GgufType::UINT8: return load<uint8_t>(p);
        case GgufType::INT8: return load<int8_t>(p);
        case GgufType::UINT16: return load<uint16_t>(p);
        case GgufType::INT16: return load<int16_t>(p);
        case GgufType::UINT32: return load<uint32_t>(p);
        case GgufType::INT32: return load<int32_t>(p);
        case GgufType::BOOL: return load<uint8_t>(p);
        case GgufType::INT64: return load<int64_t>(p);
        case GgufType::UINT64: {
            const uint64_t u = load<uint64_t>(p);
            if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
            return static_cast<int64_t>(u);
        }
        default: return std::nullopt;
    }
}

std::optional<double> scalar_float(GgufType type, const uint8_t* p) {
    if (type == GgufType::FLOAT32) return load<float>(p);
    if (type == GgufType::FLOAT64) return load<double>(p);
    if (type == GgufType::BOOL) return std::nullopt;
    const std::optional<int64_t> i = scalar_int(type, p);
    if (i) return static_cast<double>(*i);
    return std::nullopt;
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// The number of values of shape ne, if it and the row count fit int64 (then
// rows(), cols() and every product of dimensions are safe to compute).
std::optional<int64_t> element_count(const int64_t ne[4], std::string* why) {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    int64_t rows = 1;
    for (int d = 1; d < 4; ++d) {
        if (ne[d] != 0 && rows > kMax / ne[d]) {
            *why = "the product of its dimensions overflows 64 bits";
            return std::nullopt;
        }
        rows *= ne[d];
    }
    if (ne[0] != 0 && rows > kMax / ne[0]) {
        *why = "the product of its dimensions overflows 64 bits";
        return std::nullopt;
    }
    return rows * ne[0];
}

// Bytes of a tensor of `type` and shape ne; nullopt on overflow or a first
// dimension that is not a whole number of blocks (the reason in *why).
std::optional<uint64_t> tensor_data_bytes(TensorType type, const int64_t ne[4], std::string* why) {
    const TensorTypeTraits* t = tensor_type_traits(type);
    if (ne[0] % t->block_values != 0) {
        *why = "its row length " + std::to_string(ne[0]) + " is not a multiple of the " + t->name + " block of " +
               std::to_string(t->block_values);
        return std::nullopt;
    }
    const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    uint64_t bytes = static_cast<uint64_t>(ne[0] / t->block_values) * static_cast<uint64_t>(t->block_bytes);
    if (ne[0] != 0 && bytes / static_cast<uint64_t>(t->block_bytes) != static_cast<uint64_t>(ne[0] / t->block_values)) {
        *why = "its size overflows";
        return std::nullopt;
    }
    for (int d = 1; d < 4; ++d) {
        const uint64_t n = static_cast<uint64_t>(ne[d]);
        if (n != 0 && bytes > max / n) {
            *why = "its shape's size overflows 64 bits";
            return std::nullopt;
        }
        bytes *= n;
    }
    return bytes;
}

}  // namespace

const char* gguf_type_name(GgufType type) {
    switch (type) {
        case GgufType::UINT8: return "u8";
        case GgufType::INT8: return "i8";
        case GgufType::UINT16: return "u16";
        case GgufType::INT16: return "i16";
        case GgufType::UINT32: return "u32";
        case GgufType::INT32: return "i32";
        case GgufType::FLOAT32: return "f32";
        case GgufType::BOOL: return "bool";
        case GgufType::STRING: return "string";
        case GgufType::ARRAY: return "array";
        case GgufType::UINT64: return "u64";
        case GgufType::INT64: return "i64";
        case GgufType::FLOAT64: return "f64";
    }
    return "unknown";
}

uint64_t gguf_scalar_bytes(GgufType type) {
    switch (type) {
        case GgufType::UINT8:
        case GgufType::INT8:
        case GgufType::BOOL: return 1;
        case GgufType::UINT16:
        case GgufType::INT16: return 2;
        case GgufType::UINT32:
        case GgufType::INT32:
        case GgufType::FLOAT32: return 4;
        case GgufType::UINT64:
        case GgufType::INT64:
        case GgufType::FLOAT64: return 8;
        default: return 0;
    }
}

const char* ggml_type_name(uint32_t id) {
    // 36 was iq4_nl_4_4 upstream (removed, never in files); bitnet.cpp's ggml
    // gives it to I2_S, which files do hold.
    // clang-format off
    static const char* const kNames[] = {
        "f32",     "f16",    "q4_0",   "q4_1",     "q4_2 (removed)", "q4_3 (removed)", "q5_0",  "q5_1",
        "q8_0",    "q8_1",   "q2_K",   "q3_K",     "q4_K",           "q5_K",           "q6_K",  "q8_K",
        "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",   "iq4_nl",         "iq3_s",          "iq2_s", "iq4_xs",
        "i8",      "i16",    "i32",    "i64",      "f64",            "iq1_m",          "bf16",  "q4_0_4_4 (removed)",
        "q4_0_4_8 (removed)", "q4_0_8_8 (removed)", "tq1_0", "tq2_0", "i2_s",
        "iq4_nl_4_8 (removed)", "iq4_nl_8_8 (removed)", "mxfp4",
    };
    // clang-format on
    return id < sizeof kNames / sizeof kNames[0] ? kNames[id] : nullptr;
}

std::optional<int64_t> GgufValue::as_int() const {
    if (type == GgufType::ARRAY || type == GgufType::STRING || !data) return std::nullopt;
    return scalar_int(type, data);
}

std::optional<double> GgufValue::as_float() const {
    if (type == GgufType::ARRAY || type == GgufType::STRING || !data) return std::nullopt;
    return scalar_float(type, data);
}

std::optional<bool> GgufValue::as_bool() const {
    if (type != GgufType::BOOL || !data) return std::nullopt;
    return data[0] != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
    if (type != GgufType::STRING) return std::nullopt;
    return str;
}

std::optional<int64_t> GgufValue::int_at(uint64_t i) const {
    if (type != GgufType::ARRAY || i >= count || !gguf_scalar_bytes(elem_type)) return std::nullopt;
    return scalar_int(elem_type, data + i * gguf_scalar_bytes(elem_type));
}

std::optional<double> GgufValue::float_at(uint64_t i) const {
    if (type != GgufType::ARRAY || i >= count || !gguf_scalar_bytes(elem_type)) return std::nullopt;
    return scalar_float(elem_type, data + i * gguf_scalar_bytes(elem_type));
}

GgufElements GgufValue::elements() const {
    if (type != GgufType::ARRAY) return GgufElements(GgufValue{});  // no elements
    return GgufElements(*this);
}

GgufValue GgufElements::iterator::operator*() const { return value_at(at_, type_); }

GgufElements::iterator& GgufElements::iterator::operator++() {
    at_ = value_end(at_, type_);
    return *this;
}

std::string GgufValue::describe() const {
    switch (type) {
        case GgufType::STRING: return "string " + quoted(str);
        case GgufType::ARRAY: return "array of " + std::to_string(count) + " " + gguf_type_name(elem_type);
        case GgufType::FLOAT32:
        case GgufType::FLOAT64: return std::string(gguf_type_name(type)) + " " + std::to_string(*as_float());
        case GgufType::BOOL: return *as_bool() ? "bool true" : "bool false";
        case GgufType::UINT64: return "u64 " + std::to_string(load<uint64_t>(data));
        default: return std::string(gguf_type_name(type)) + " " + std::to_string(*as_int());
    }
}

void GgufFile::fail(const std::string& message) const { throw Error(path + ": " + message); }

const GgufValue* GgufFile::find(std::string_view key) const {
    const GgufKV* kv = find_sorted(metadata, key_order_, key, key_of);
    return kv ? &kv->value : nullptr;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
    return find_sorted(tensors, tensor_order_, name, name_of);
}

std::optional<int64_t> GgufFile::get_int(std::string_view key, int64_t min, int64_t max) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    const std::optional<int64_t> i = v->type == GgufType::BOOL ? std::nullopt : v->as_int();
    if (!i) fail("metadata " + std::string(key) + " should be an integer, it is " + v->describe());
    if (*i < min || *i > max)
        fail("metadata " + std::string(key) + " = " + std::to_string(*i) + " is out of range [" + std::to_string(min) +
             ", " + std::to_string(max) + "]");
    return i;
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    const std::optional<double> d = v->as_float();
    if (!d) fail("metadata " + std::string(key) + " should be a number, it is " + v->describe());
    return d;
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    const std::optional<bool> b = v->as_bool();
    if (!b) fail("metadata " + std::string(key) + " should be a bool, it is " + v->describe());
    return b;
}

std::optional<std::string_view> GgufFile::get_string(std::string_view key) const {
    const GgufValue* v = find(key);
    if (!v) return std::nullopt;
    if (v->type != GgufType::STRING)
        fail("metadata " + std::string(key) + " should be a string, it is " + v->describe());
    return v->str;
}

const GgufValue* GgufFile::get_array(std::string_view key, GgufType elem) const {
    const GgufValue* v = find(key);
    if (!v) return nullptr;
    if (v->type != GgufType::ARRAY || v->elem_type != elem)
        fail("metadata " + std::string(key) + " should be an array of " + gguf_type_name(elem) + ", it is " +
             v->describe());
    return v;
}

bool is_gguf(const uint8_t* data, uint64_t size) { return size >= 4 && load<uint32_t>(data) == kMagic; }

GgufFile parse_gguf(const uint8_t* data, uint64_t size, const std::string& path) {
    GgufFile f;
    f.path = path;
    if (size < 4) f.fail("too short for a GGUF file (" + std::to_string(size) + " bytes)");
    if (!is_gguf(data, size)) {
        std::string magic;
        for (int i = 0; i < 4; ++i) magic += (data[i] >= 0x20 && data[i] < 0x7f) ? static_cast<char>(data[i]) : '?';
        f.fail("not a GGUF file (it starts with '" + magic + "', GGUF files start with 'GGUF')");
    }
    Reader r(data, size, f);
    r.skip(4, Named{"the magic"});
    f.version = r.read<uint32_t>(Named{"the version"});
    if (f.version == 1)
        f.fail("GGUF version 1 is not supported (ferry reads versions 2 and 3); convert the file again");
    if (f.version == 0x02000000u || f.version == 0x03000000u)
        f.fail("big-endian GGUF is not supported (ferry reads little-endian GGUF versions 2 and 3)");
    if (f.version != 2 && f.version != 3)
        f.fail("unknown GGUF version " + std::to_string(f.version) + " (ferry reads versions 2 and 3)");
    const uint64_t n_tensors = r.read<uint64_t>(Named{"the tensor count"});
    const uint64_t n_kv = r.read<uint64_t>(Named{"the metadata count"});
    // A key/value needs at least 8 (key length) + 4 (type) + 1 bytes; a
    // tensor info at least 8 + 4 + 4 + 8.
    if (n_kv > r.left() / 13)
        f.fail("truncated: the header claims " + std::to_string(n_kv) +
               " metadata entries, more than the file can hold");
    if (n_tensors > r.left() / 24)
        f.fail("truncated: the header claims " + std::to_string(n_tensors) + " tensors, more than the file can hold");
    // What holding the entries costs: each struct and its index slot (and,
    // for tensors, the overlap check's pointer). Vectors grow by doubling as
    // entries are read, so for a moment up to three times this is held.
    const uint64_t index_bytes = n_kv * (sizeof(GgufKV) + sizeof(size_t)) +
                                 n_tensors * (sizeof(GgufTensor) + sizeof(size_t) + sizeof(const GgufTensor*));
    const uint64_t index_budget = std::max(kIndexFloorBytes, size / kFileBytesPerIndexByte);
    if (index_bytes > index_budget)
        f.fail("the header claims " + std::to_string(n_kv) + " metadata entries and " + std::to_string(n_tensors) +
               " tensors, which would take " + format_bytes(index_bytes) + " of memory to hold, more than 1/" +
               std::to_string(kFileBytesPerIndexByte) + " of the file's " + format_bytes(size) +
               "; no model has so many (a corrupt or hostile file?)");

    for (uint64_t i = 0; i < n_kv; ++i) {
        GgufKV kv;
        kv.key =
            r.string([&] { return "the key of metadata entry " + std::to_string(i) + " of " + std::to_string(n_kv); });
        const std::string named = "metadata " + quoted(kv.key);
        const uint32_t type = r.read<uint32_t>([&] { return named + " type"; });
        if (!known_type(type)) f.fail(named + " has unknown value type " + std::to_string(type));
        read_value(r, kv.value, static_cast<GgufType>(type), named, 0, f);
        f.metadata.push_back(kv);
    }
    f.key_order_ = sorted_order(f.metadata, key_of);
    if (const GgufKV* twice = first_duplicate(f.metadata, f.key_order_, key_of))
        f.fail("metadata key " + quoted(twice->key) + " appears twice");

    if (const GgufValue* a = f.find("general.alignment")) {
        const std::optional<int64_t> v = a->type == GgufType::BOOL ? std::nullopt : a->as_int();
        if (!v || !is_power_of_two(static_cast<uint64_t>(*v)) || *v > kMaxAlignment)
            f.fail("general.alignment is " + a->describe() + "; it must be a power of two up to " +
                   std::to_string(kMaxAlignment));
        f.alignment = static_cast<uint64_t>(*v);
    }

    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensor t;
        t.name = r.string(
            [&] { return "the name of tensor info " + std::to_string(i) + " of " + std::to_string(n_tensors); });
        const std::string named = "tensor " + quoted(t.name);
        t.n_dims = r.read<uint32_t>([&] { return named + " dimension count"; });
        if (t.n_dims > kMaxDims)
            f.fail(named + " has " + std::to_string(t.n_dims) + " dimensions; GGML allows at most " +
                   std::to_string(kMaxDims));
        for (uint32_t d = 0; d < t.n_dims; ++d) {
            const uint64_t n = r.read<uint64_t>([&] { return named + " shape"; });
            if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
                f.fail(named + " has dimension " + std::to_string(d) + " of " + std::to_string(n) + ", too large");
            t.ne[d] = static_cast<int64_t>(n);
        }
        std::string why;
        if (!element_count(t.ne, &why)) f.fail(named + " has an impossible shape: " + why);
        const uint32_t type = r.read<uint32_t>([&] { return named + " type"; });
        const char* ggml_name = ggml_type_name(type);
        if (!ggml_name) f.fail(named + " has type id " + std::to_string(type) + ", which is not a GGML type");
        t.type = static_cast<TensorType>(type);
        const TensorTypeTraits* traits = tensor_type_traits(t.type);
        if (!traits || t.type == TensorType::Q8_GROUP)
            f.fail(named + " has type " + ggml_name + " (" + std::to_string(type) + "), which ferry does not support");
        const uint64_t rel = r.read<uint64_t>([&] { return named + " offset"; });
        if (rel % f.alignment != 0)
            f.fail(named + " has data offset " + std::to_string(rel) + ", not a multiple of the alignment " +
                   std::to_string(f.alignment));
        const std::optional<uint64_t> bytes = tensor_data_bytes(t.type, t.ne, &why);
        if (!bytes) f.fail(named + " cannot be stored: " + why);
        t.bytes = *bytes + static_cast<uint64_t>(tensor_tail_bytes(t.type));
        t.offset = rel;  // made absolute below, once the data section is known
        f.tensors.push_back(t);
    }
    f.tensor_order_ = sorted_order(f.tensors, name_of);
    if (const GgufTensor* twice = first_duplicate(f.tensors, f.tensor_order_, name_of))
        f.fail("tensor name " + quoted(twice->name) + " appears twice");

    // The data section starts at the next multiple of the alignment.
    const uint64_t end = r.pos();
    f.data_offset = end + (f.alignment - end % f.alignment) % f.alignment;
    if (n_tensors > 0 && f.data_offset > size)
        f.fail("truncated: the tensor data should start at offset " + std::to_string(f.data_offset) +
               ", the file has " + std::to_string(size) + " bytes");
    const uint64_t data_bytes = n_tensors > 0 ? size - f.data_offset : 0;
    for (GgufTensor& t : f.tensors) {
        if (t.offset > data_bytes || t.bytes > data_bytes - t.offset)
            f.fail("tensor " + quoted(t.name) + " (" + std::to_string(t.bytes) + " bytes at data offset " +
                   std::to_string(t.offset) + ") lies past the end of the file (the data section holds " +
                   std::to_string(data_bytes) + " bytes; truncated?)");
        t.offset += f.data_offset;
    }
    std::vector<const GgufTensor*> by_offset;
    for (const GgufTensor& t : f.tensors)
        if (t.bytes > 0) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const GgufTensor* a, const GgufTensor* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensor& a = *by_offset[i - 1];
        const GgufTensor& b = *by_offset[i];
        if (a.offset + a.bytes > b.offset)
            f.fail("tensors " + quoted(a.name) + " and " + quoted(b.name) + " overlap (bytes " +
                   std::to_string(b.offset) + ".." + std::to_string(a.offset + a.bytes) + ")");
    }
    return f;
}

}  // namespace ferry
