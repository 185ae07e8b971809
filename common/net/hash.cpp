#include "common/net/hash.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <chrono>
#include <functional>
#include <thread>

#include "common/error.h"
#include "common/platform/system.h"
#include "common/mapped_file.h"

namespace ferry::net {

uint64_t checksum64(const void* data, size_t n) { return XXH3_64bits(data, n); }

struct Hasher::State {
    XXH3_state_t s;
};

Hasher::Hasher() : state_(std::make_unique<State>()) { XXH3_128bits_reset(&state_->s); }
Hasher::~Hasher() = default;

void Hasher::update(const void* data, size_t n) { XXH3_128bits_update(&state_->s, data, n); }

std::string Hasher::digest() const {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&state_->s));
    return std::string(reinterpret_cast<const char*>(c.digest), sizeof c.digest);
}

std::string hash_bytes(const void* data, size_t n) {
    Hasher h;
    h.update(data, n);
    return h.digest();
}

std::string mapped_content_hash(const MappedFile& map, bool drop_behind) {
    Hasher h;
    constexpr uint64_t kStep = 8ull << 20;
    for (uint64_t off = 0; off < map.size(); off += kStep) {
        h.update(map.data() + off, static_cast<size_t>(std::min(kStep, map.size() - off)));
        if (drop_behind) map.drop_pages(off, kStep);
    }
    return h.digest();
}

std::string hex(const std::string& bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string default_cache_dir() {
    if (const char* d = std::getenv("FERRY_CACHE_DIR"); d && *d) return d;
    return default_cache_folder();
}

namespace {

// "size mtime_ns hexhash" of a file, as recorded in the sidecar.
std::string file_key(const std::string& path) {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path, ec);
    const auto mtime = ec ? std::filesystem::file_time_type{} : std::filesystem::last_write_time(path, ec);
    if (ec) throw Error(path + ": cannot read its size and time: " + ec.message());
    // Nanoseconds since 1970, as stat's st_mtim gave before: records written by earlier versions stay valid.
    const auto unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
        std::chrono::file_clock::to_sys(mtime).time_since_epoch());
    return std::to_string(size) + " " + std::to_string(static_cast<long long>(unix_ns.count()));
}

}  // namespace

std::optional<std::string> read_hash_record(const std::string& record, const std::string& name, const std::string& key) {
    std::ifstream in(record);
    std::string line_name, line_key, line_hash;
    if (!in || !std::getline(in, line_name) || !std::getline(in, line_key) || !std::getline(in, line_hash) ||
        line_name != name || line_key != key || line_hash.size() != 2 * kHashBytes ||
        line_hash.find_first_not_of("0123456789abcdef") != std::string::npos)
        return std::nullopt;
    std::string bytes;
    for (size_t i = 0; i < line_hash.size(); i += 2)
        bytes += static_cast<char>(std::stoi(line_hash.substr(i, 2), nullptr, 16));
    return bytes;
}

void write_hash_record(const std::string& record, const std::string& name, const std::string& key,
                       const std::string& digest) {
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(record).parent_path(), ec);
    // Unique per writer: two workers sharing a cache may record the same model at once.
    const std::string tmp = record + ".tmp" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()) +
                            "-" + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    std::ofstream out(tmp);
    out << name << "\n" << key << "\n" << hex(digest) << "\n";
    out.close();
    // A record that cannot be written only costs hashing again next time.
    if (out) std::filesystem::rename(tmp, record, ec);
    else std::filesystem::remove(tmp, ec);
}

std::string file_content_hash(const std::string& path, const std::string& cache_dir) {
    std::error_code ec;
    const std::string abs = std::filesystem::absolute(path, ec).lexically_normal().string();
    const std::string key = file_key(path);
    std::string record;
    if (!cache_dir.empty()) {
        record = cache_dir + "/model-hashes/" + hex(hash_bytes(abs.data(), abs.size())).substr(0, 16);
        if (std::optional<std::string> known = read_hash_record(record, abs, key)) return *known;
    }
    // Hashing a 1 GB model must not leave it in this process's RSS.
    const std::string digest = mapped_content_hash(MappedFile(path), true);
    if (!record.empty()) write_hash_record(record, abs, key, digest);
    return digest;
}

}  // namespace ferry::net
