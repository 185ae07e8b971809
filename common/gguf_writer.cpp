#include "common/gguf_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "common/mapped_file.h"

namespace ferry {

namespace {

template <typename T>
void put(std::string& out, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out.append(b, sizeof(T));
}

void put_string(std::string& out, std::string_view s) {
    put<uint64_t>(out, s.size());
    out.append(s.data(), s.size());
}

// The bytes of a value read from a file, without its type id.
void put_value(std::string& out, const GgufValue& v) {
    if (v.type == GgufType::STRING) {
        put_string(out, v.str);
    } else if (v.type == GgufType::ARRAY) {
        put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
        put<uint64_t>(out, v.count);
        // The elements as the file stores them, which is how GGUF writes them.
        out.append(reinterpret_cast<const char*>(v.data), static_cast<size_t>(v.bytes));
    } else {
        out.append(reinterpret_cast<const char*>(v.data), static_cast<size_t>(gguf_scalar_bytes(v.type)));
    }
}

uint64_t pad(uint64_t n, uint64_t a) { return (a - n % a) % a; }

}  // namespace

void GgufWriter::add_raw(const std::string& key, GgufType type, std::string bytes) {
    if (key == "general.alignment" && type == GgufType::UINT32) {
        uint32_t a;
        std::memcpy(&a, bytes.data(), 4);
        if (a == 0 || (a & (a - 1)) != 0)
            throw Error("general.alignment " + std::to_string(a) + " is not a power of two");
        // Tensor offsets are laid out as tensors are added.
        if (!tensors_.empty()) throw Error("general.alignment must be set before the first tensor");
        alignment_ = a;
    }
    std::string v;
    put<uint32_t>(v, static_cast<uint32_t>(type));
    v += bytes;
    for (auto& [k, value] : kv_) {
        if (k == key) {
            value = std::move(v);
            return;
        }
    }
    kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_u8(const std::string& key, uint8_t v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::UINT8, b);
}
void GgufWriter::add_u32(const std::string& key, uint32_t v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::UINT32, b);
}
void GgufWriter::set_u32(const std::string& key, uint32_t v) { add_u32(key, v); }
void GgufWriter::add_i32(const std::string& key, int32_t v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::INT32, b);
}
void GgufWriter::add_u64(const std::string& key, uint64_t v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::UINT64, b);
}
void GgufWriter::add_f32(const std::string& key, float v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::FLOAT32, b);
}
void GgufWriter::add_f64(const std::string& key, double v) {
    std::string b;
    put(b, v);
    add_raw(key, GgufType::FLOAT64, b);
}
void GgufWriter::add_bool(const std::string& key, bool v) {
    std::string b;
    put<uint8_t>(b, v ? 1 : 0);
    add_raw(key, GgufType::BOOL, b);
}
void GgufWriter::add_string(const std::string& key, const std::string& v) {
    std::string b;
    put_string(b, v);
    add_raw(key, GgufType::STRING, b);
}
void GgufWriter::add_string_array(const std::string& key, const std::vector<std::string>& v) {
    std::string b;
    put<uint32_t>(b, static_cast<uint32_t>(GgufType::STRING));
    put<uint64_t>(b, v.size());
    for (const std::string& s : v) put_string(b, s);
    add_raw(key, GgufType::ARRAY, b);
}
void GgufWriter::add_f32_array(const std::string& key, const std::vector<float>& v) {
    std::string b;
    put<uint32_t>(b, static_cast<uint32_t>(GgufType::FLOAT32));
    put<uint64_t>(b, v.size());
    for (float x : v) put(b, x);
    add_raw(key, GgufType::ARRAY, b);
}
void GgufWriter::add_i32_array(const std::string& key, const std::vector<int32_t>& v) {
    std::string b;
    put<uint32_t>(b, static_cast<uint32_t>(GgufType::INT32));
    put<uint64_t>(b, v.size());
    for (int32_t x : v) put(b, x);
    add_raw(key, GgufType::ARRAY, b);
}
void GgufWriter::add_value(const std::string& key, const GgufValue& v) {
    std::string b;
    put_value(b, v);
    add_raw(key, v.type, b);
}

bool GgufWriter::has_key(const std::string& key) const {
    for (const auto& kv : kv_)
        if (kv.first == key) return true;
    return false;
}

void GgufWriter::add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne, RowSource rows) {
    const TensorTypeTraits* t = tensor_type_traits(type);
    if (!t || type == TensorType::Q8_GROUP) throw Error("tensor " + name + ": type cannot be stored in GGUF");
    if (ne.empty() || ne.size() > 4) throw Error("tensor " + name + ": GGUF tensors have 1 to 4 dimensions");
    int64_t n_rows = 1;
    for (size_t d = 1; d < ne.size(); ++d) n_rows *= ne[d];
    const int64_t row_bytes = tensor_bytes(type, 1, ne[0]);
    if (row_bytes < 0)
        throw Error("tensor " + name + ": rows of " + std::to_string(ne[0]) + " values are not whole " + t->name +
                    " blocks of " + std::to_string(t->block_values));
    for (const Tensor& other : tensors_)
        if (other.name == name) throw Error("tensor " + name + " is added twice");
    const uint64_t bytes =
        static_cast<uint64_t>(row_bytes) * static_cast<uint64_t>(n_rows) + static_cast<uint64_t>(tensor_tail_bytes(type));
    Tensor x{name, type, ne, static_cast<uint64_t>(row_bytes), n_rows, bytes, data_bytes_, std::move(rows)};
    data_bytes_ += bytes + pad(bytes, alignment_);
    tensors_.push_back(std::move(x));
}

std::string GgufWriter::header() const {
    std::string h;
    put<uint32_t>(h, 0x46554747);  // "GGUF"
    put<uint32_t>(h, 3);
    put<uint64_t>(h, tensors_.size());
    put<uint64_t>(h, kv_.size());
    for (const auto& [key, value] : kv_) {
        put_string(h, key);
        h += value;
    }
    for (const Tensor& t : tensors_) {
        put_string(h, t.name);
        put<uint32_t>(h, static_cast<uint32_t>(t.ne.size()));
        for (int64_t n : t.ne) put<uint64_t>(h, static_cast<uint64_t>(n));
        put<uint32_t>(h, static_cast<uint32_t>(t.type));
        put<uint64_t>(h, t.offset);
    }
    h.append(pad(h.size(), alignment_), '\0');
    return h;
}

uint64_t GgufWriter::file_bytes() const { return header().size() + data_bytes_; }

std::vector<GgufWriter::Placement> GgufWriter::placements() const {
    const uint64_t data_start = header().size();
    std::vector<Placement> out;
    for (const Tensor& t : tensors_)
        out.push_back({t.name, data_start + t.offset, t.bytes});
    return out;
}

void GgufWriter::emit(const std::function<void(const char*, size_t)>& sink, const Progress& progress) const {
    const std::string h = header();
    const uint64_t total = h.size() + data_bytes_;
    uint64_t done = h.size();
    sink(h.data(), h.size());
    std::vector<uint8_t> buf;
    const std::string zeros(alignment_, '\0');
    for (const Tensor& t : tensors_) {
        // About 4 MB per write, at least one row.
        const int64_t per_chunk =
            std::max<int64_t>(1, static_cast<int64_t>((4u << 20) / std::max<uint64_t>(1, t.row_bytes)));
        for (int64_t r0 = 0; r0 < t.rows; r0 += per_chunk) {
            const int64_t n = std::min(per_chunk, t.rows - r0);
            buf.assign(static_cast<size_t>(n * t.row_bytes), 0);
            t.source(r0, n, buf.data());
            sink(reinterpret_cast<const char*>(buf.data()), buf.size());
            done += buf.size();
            if (progress) progress(done, total);
        }
        const uint64_t tail = t.bytes - t.row_bytes * static_cast<uint64_t>(t.rows);
        if (tail > 0) {
            buf.assign(static_cast<size_t>(tail), 0);
            t.source(t.rows, 0, buf.data());
            sink(reinterpret_cast<const char*>(buf.data()), buf.size());
            done += tail;
        }
        sink(zeros.data(), static_cast<size_t>(pad(t.bytes, alignment_)));
        done += pad(t.bytes, alignment_);
    }
    if (progress) progress(total, total);
}

void GgufWriter::write(const std::string& path, const Progress& progress) const {
    const std::string partial = path + ".partial";
    std::FILE* out = std::fopen(partial.c_str(), "wb");
    if (!out) throw Error(path + ": cannot create " + partial + ": " + std::strerror(errno));
    bool ok = true;
    try {
        emit([&](const char* p, size_t n) { ok = ok && std::fwrite(p, 1, n, out) == n; }, progress);
    } catch (...) {
        std::fclose(out);
        std::remove(partial.c_str());
        throw;
    }
    // Large files only: a model's pages are worth re-reading in large folios; a test's small file is not worth an fsync.
    ok = ok && std::fflush(out) == 0 && (std::ftell(out) < (16l << 20) || sync_and_drop_pages(out));
    ok = std::fclose(out) == 0 && ok;
    if (!ok) {
        std::remove(partial.c_str());
        throw Error(path + ": write failed (disk full?)");
    }
    std::error_code ec;
    std::filesystem::rename(partial, path, ec);
    if (ec) throw Error(path + ": cannot rename " + partial + ": " + ec.message());
}

std::string GgufWriter::to_bytes() const {
    std::string s;
    emit([&](const char* p, size_t n) { s.append(p, n); }, {});
    return s;
}

}  // namespace ferry
