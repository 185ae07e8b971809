#include "common/net/shard_cache.h"

#include <cerrno>
#include <cstring>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <vector>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/net/shard_image.h"
#include "common/shard_memory.h"

namespace ferry::net {

ShardPaths shard_paths(const std::string& cache_dir, const std::string& model_hash, const ShardSpec& spec,
                       const std::string& image_hash) {
    ShardPaths p;
    p.dir = cache_dir + "/" + hex(model_hash);
    std::string name = shard_file_name(spec);                           // "0-3-head.gguf"
    name.insert(name.size() - 5, "." + hex(image_hash));                // "0-3-head.<hash>.gguf"
    p.final_path = p.dir + "/" + name;
    p.part_path = p.final_path + ".part";
    return p;
}


ShardReceiver::ShardReceiver(ShardPaths paths, uint64_t image_bytes)
    : paths_(std::move(paths)), image_bytes_(image_bytes), hasher_(std::make_unique<Hasher>()) {
    std::error_code ec;
    std::filesystem::create_directories(paths_.dir, ec);
    if (ec) throw Error(paths_.dir + ": cannot create the shard cache directory: " + ec.message());
    file_ = File(paths_.part_path, File::Mode::read_write);
    const uint64_t size = file_.size();
    have_ = std::min<uint64_t>(size, image_bytes_);
    if (size > have_ && !file_.truncate(have_))
        throw Error(paths_.part_path + ": cannot truncate: " + last_system_error());
    // Hash what is there, so the coordinator can check it before resuming.
    std::vector<char> buf(1 << 20);
    for (uint64_t off = 0; off < have_;) {
        const int64_t n = file_.read_at(buf.data(), std::min<uint64_t>(buf.size(), have_ - off), off);
        if (n <= 0) {
            have_ = off;
            break;
        }
        hasher_->update(buf.data(), static_cast<size_t>(n));
        off += static_cast<uint64_t>(n);
    }
    have_hash_ = hasher_->digest();
    if (const auto space = std::filesystem::space(paths_.dir, ec); !ec) {
        const uint64_t free_bytes = space.available;
        if (free_bytes < image_bytes_ - have_)
            throw Error(paths_.dir + ": the shard needs " + format_bytes(image_bytes_ - have_) + " more and the disk has " +
                        format_bytes(free_bytes) + " free; free space or give --cache-dir on a larger disk");
    }
}

void ShardReceiver::begin(uint64_t offset) {
    if (offset == have_) return;
    if (offset != 0)
        throw Error("the coordinator resumes the shard at byte " + std::to_string(offset) + ", the cache has " +
                    std::to_string(have_));
    if (!file_.truncate(0)) throw Error(paths_.part_path + ": cannot truncate: " + last_system_error());
    have_ = 0;
    hasher_ = std::make_unique<Hasher>();
}

void ShardReceiver::write(uint64_t offset, const std::string& data, uint64_t checksum) {
    if (offset != have_)
        throw Error("shard chunk at byte " + std::to_string(offset) + ", expected " + std::to_string(have_));
    if (data.size() > image_bytes_ - have_)
        throw Error("shard chunk at byte " + std::to_string(offset) + " runs past the image's " +
                    std::to_string(image_bytes_) + " bytes");
    if (checksum64(data.data(), data.size()) != checksum)
        throw Error("shard chunk at byte " + std::to_string(offset) + " fails its checksum (corrupted in transit)");
    const char* p = data.data();
    size_t left = data.size();
    while (left > 0) {
        const int64_t n = file_.write_at(p, left, have_);
        if (n < 0) throw Error(paths_.part_path + ": write failed: " + last_system_error() + " (disk full?)");
        p += n;
        left -= static_cast<size_t>(n);
        have_ += static_cast<uint64_t>(n);
    }
    hasher_->update(data.data(), data.size());
    received_ += data.size();
}

void ShardReceiver::finish(const std::string& image_hash) {
    if (have_ != image_bytes_ || hasher_->digest() != image_hash) {
        file_.truncate(0);
        file_.close();
        std::error_code ec;
        std::filesystem::remove(paths_.part_path, ec);
        throw Error(paths_.part_path + ": the received shard (" + std::to_string(have_) + " of " +
                    std::to_string(image_bytes_) + " bytes) does not match the coordinator's image hash; deleted it");
    }
    if (!file_.sync_and_drop_pages()) throw Error(paths_.part_path + ": fsync failed: " + last_system_error());
    file_.close();
    std::error_code ec;
    std::filesystem::rename(paths_.part_path, paths_.final_path, ec);
    if (ec) throw Error(paths_.final_path + ": cannot rename the finished shard: " + ec.message());
}

namespace {

// "0-3-head" of ".../0-3-head.<hash>.gguf[.part]": the range a cache file holds.
std::string range_of(const std::string& path) {
    const std::string name = std::filesystem::path(path).filename().string();
    return name.substr(0, name.find('.'));
}

bool is_partial(const std::string& path) { return path.ends_with(".gguf.part"); }
bool is_cache_file(const std::string& path) { return path.ends_with(".gguf") || is_partial(path); }

}  // namespace

std::vector<CacheFile> list_cache(const std::string& cache_dir) {
    namespace fs = std::filesystem;
    std::vector<CacheFile> files;
    std::error_code ec;
    const auto now = fs::file_time_type::clock::now();
    for (auto it = fs::recursive_directory_iterator(cache_dir, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
        if (it->is_symlink(ec) || !it->is_regular_file(ec) || !is_cache_file(it->path().string())) continue;
        CacheFile f;
        f.path = it->path().string();
        f.bytes = it->file_size(ec);
        f.age_s = std::chrono::duration<double>(now - it->last_write_time(ec)).count();
        f.partial = is_partial(f.path);
        files.push_back(f);
    }
    return files;
}

std::vector<CacheFile> prune_cache(const std::string& cache_dir, uint64_t max_bytes, const std::string& keep) {
    std::vector<CacheFile> files = list_cache(cache_dir);
    std::vector<CacheFile> removed;
    std::error_code ec;
    uint64_t total = 0;
    for (const CacheFile& f : files) total += f.bytes;
    auto remove = [&](const CacheFile& f) {
        if (f.path == keep || !std::filesystem::remove(f.path, ec)) return;
        removed.push_back(f);
        total -= f.bytes;
    };
    for (const CacheFile& f : files)
        if (f.partial && f.age_s > kPartMaxAgeS) remove(f);
    if (max_bytes == 0) return removed;
    std::sort(files.begin(), files.end(), [](const CacheFile& a, const CacheFile& b) { return a.age_s > b.age_s; });
    for (const CacheFile& f : files) {
        if (total <= max_bytes) break;
        if (f.partial) continue;  // a transfer in progress (old ones went above)
        if (std::filesystem::exists(f.path, ec)) remove(f);
    }
    return removed;
}

void remove_other_parts(const ShardPaths& paths) {
    std::error_code ec;
    const std::string range = range_of(paths.final_path);
    for (const auto& e : std::filesystem::directory_iterator(paths.dir, ec)) {
        const std::string p = e.path().string();
        if (p != paths.part_path && is_partial(p) && range_of(p) == range)
            std::filesystem::remove(p, ec);
    }
}

void touch_cache_file(const std::string& path) {
    std::error_code ec;
    std::filesystem::last_write_time(path, std::filesystem::file_time_type::clock::now(), ec);
}

}  // namespace ferry::net
