// A worker's shard cache:
// --cache-dir/<model-hash>/<first>-<last>[-embed][-head].<image-hash>.gguf.
// Files are named by what their bytes hash to, so a cached file is checked
// against its name at every load (bit rot on an old disk is found, not
// served), and an assignment that names another image never touches it.
// A shard arrives into "<name>.part", chunk by checksummed chunk; when the whole
// image hash matches it is renamed, and from then on a restart or a second
// run finds it and nothing is sent. An interrupted transfer leaves the .part,
// whose bytes are hashed and offered to the coordinator for a resume.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/net/hash.h"
#include "common/platform/file.h"
#include "common/weights.h"

namespace ferry::net {

struct ShardPaths {
    std::string dir;         // <cache>/<model hash hex>
    std::string final_path;  // dir/<name>.gguf
    std::string part_path;   // final_path + ".part"
};
ShardPaths shard_paths(const std::string& cache_dir, const std::string& model_hash, const ShardSpec& spec,
                       const std::string& image_hash);


class ShardReceiver {
public:
    // Opens (or creates) the .part file; bytes past image_bytes are dropped.
    // Throws ferry::Error if the cache cannot be written or the disk lacks room.
    ShardReceiver(ShardPaths paths, uint64_t image_bytes);
    ShardReceiver(const ShardReceiver&) = delete;
    ShardReceiver& operator=(const ShardReceiver&) = delete;

    uint64_t have() const { return have_; }
    // XXH3-128 of the bytes already there.
    std::string have_hash() const { return have_hash_; }
    // Continue at `offset`: have() to resume, 0 to start over.
    void begin(uint64_t offset);
    // Appends a chunk; throws ferry::Error on a wrong offset, a bad checksum or a write error.
    void write(uint64_t offset, const std::string& data, uint64_t checksum);
    // Verifies the size and the whole-image hash, syncs and renames to the
    // final path, and drops the written pages from the page cache, so the
    // mapping that serves the shard reads it back in large folios (pages left
    // by many small writes run the weights up to 2x slower on CPUs that
    // coalesce TLB entries, docs/DESIGN.md). On a mismatch the .part is
    // deleted and ferry::Error thrown.
    void finish(const std::string& image_hash);
    uint64_t received() const { return received_; }

private:
    ShardPaths paths_;
    uint64_t image_bytes_;
    File file_;  // closed on every path, a throwing constructor's too
    uint64_t have_ = 0;
    uint64_t received_ = 0;
    std::string have_hash_;
    std::unique_ptr<Hasher> hasher_;
};

// Keeping the cache from filling the disk. A .part file untouched for
// kPartMaxAgeS belongs to no live transfer (a resume comes back within
// minutes) and is removed; so is every .part of `range` but `keep` (one
// partial file per shard). Then, while the cache holds more than max_bytes
// (0: no bound), the least recently used shard files go, never `keep`.
// Returns what it removed (for the log).
constexpr double kPartMaxAgeS = 3600;
struct CacheFile {
    std::string path;
    uint64_t bytes = 0;
    double age_s = 0;  // since last use (modification time: a load touches it)
    bool partial = false;
};
std::vector<CacheFile> list_cache(const std::string& cache_dir);
std::vector<CacheFile> prune_cache(const std::string& cache_dir, uint64_t max_bytes, const std::string& keep = "");
// Removes the .part files of the shard `final_path` names, other than its own (another image of that range).
void remove_other_parts(const ShardPaths& paths);
// Marks a shard file as just used, for prune_cache's least-recently-used order.
void touch_cache_file(const std::string& path);

}  // namespace ferry::net
