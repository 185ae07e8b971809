// Content identity and integrity: XXH3-128 names a model file (and a shard
// image), XXH3-64 checks each chunk on the wire. XXH3 runs at memory speed,
// so hashing costs about as much as reading the file once.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

namespace ferry {
class MappedFile;
}

namespace ferry::net {

constexpr size_t kHashBytes = 16;

// XXH3-64 of a buffer: the per-chunk checksum.
uint64_t checksum64(const void* data, size_t n);

// Incremental XXH3-128; digest() is 16 bytes, big-endian as xxhsum prints it.
class Hasher {
public:
    Hasher();
    ~Hasher();
    Hasher(const Hasher&) = delete;
    Hasher& operator=(const Hasher&) = delete;
    void update(const void* data, size_t n);
    std::string digest() const;

private:
    struct State;
    std::unique_ptr<State> state_;
};

std::string hash_bytes(const void* data, size_t n);
// XXH3-128 of a mapped file's bytes, read in order (so the kernel's readahead
// fills the page cache in large folios). drop_behind: each step's pages then
// leave this process's resident set (a coordinator hashing a model it does
// not serve); without it they stay mapped (a worker about to serve them).
std::string mapped_content_hash(const MappedFile& map, bool drop_behind);
// Lower-case hex of any bytes ("" stays "").
std::string hex(const std::string& bytes);

// The content hash of a whole file (mapped and hashed). A sidecar record in
// `cache_dir`/model-hashes, keyed by the file's absolute path, size and
// modification time, makes the second call free. cache_dir may be empty (no
// sidecar). Throws ferry::Error naming the file if it cannot be read.
std::string file_content_hash(const std::string& path, const std::string& cache_dir);

// A hash record: a small file holding `name`, `key` (what the hash is valid
// for) and the hex digest. read_hash_record gives the digest only if name and
// key match; write_hash_record replaces the file atomically (failures ignored:
// the hash is then computed again next time).
std::optional<std::string> read_hash_record(const std::string& record, const std::string& name, const std::string& key);
void write_hash_record(const std::string& record, const std::string& name, const std::string& key,
                       const std::string& digest);

// $FERRY_CACHE_DIR, else the platform's default_cache_folder() ($XDG_CACHE_HOME/ferry,
// ~/.cache/ferry or /tmp/ferry-cache; %LOCALAPPDATA%\ferry on Windows).
std::string default_cache_dir();

}  // namespace ferry::net
