// A worker's shard cache: --cache-dir/<model-hash>/<first>-<last>[-embed][-head].gguf.
// A shard arrives into "<name>.part", chunk by checksummed chunk; when the whole
// image hash matches it is renamed, and from then on a restart or a second
// run finds it and nothing is sent. An interrupted transfer leaves the .part,
// whose bytes are hashed and offered to the coordinator for a resume.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "common/net/hash.h"
#include "common/unique_fd.h"
#include "common/weights.h"

namespace ferry::net {

struct ShardPaths {
    std::string dir;         // <cache>/<model hash hex>
    std::string final_path;  // dir/<name>.gguf
    std::string part_path;   // final_path + ".part"
};
ShardPaths shard_paths(const std::string& cache_dir, const std::string& model_hash, const ShardSpec& spec);

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
    // final path. On a mismatch the .part is deleted and ferry::Error thrown.
    void finish(const std::string& image_hash);
    uint64_t received() const { return received_; }

private:
    ShardPaths paths_;
    uint64_t image_bytes_;
    UniqueFd fd_;  // closed on every path, a throwing constructor's too
    uint64_t have_ = 0;
    uint64_t received_ = 0;
    std::string have_hash_;
    std::unique_ptr<Hasher> hasher_;
};

}  // namespace ferry::net
