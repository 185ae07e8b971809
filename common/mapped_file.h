// A read-only memory map of a whole file: weights are used where they lie,
// never copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace ferry {

class MappedFile {
public:
    MappedFile() = default;
    // Throws ferry::Error naming the path if it cannot be opened or mapped.
    explicit MappedFile(const std::string& path);
    ~MappedFile();
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    uint64_t size() const { return size_; }
    const std::string& path() const { return path_; }
    // Done with bytes [offset, offset + n) for now: their pages leave this
    // process's resident set (they stay in the page cache, and reading them
    // again brings them back). A long sequential pass over a model
    // (`ferry quantize`) calls it so the model streams through memory
    // instead of piling up in it.
    void drop_pages(uint64_t offset, uint64_t n) const;

private:
    void release();
    std::string path_;
    const uint8_t* data_ = nullptr;
    uint64_t size_ = 0;
};

// Makes a file just written durable and drops its pages from the page cache,
// so whoever maps it next (a worker's shard, a model from `ferry synth` or
// `ferry quantize`) has it read back by readahead into large folios: pages
// left as the writer dirtied them stream up to 2x slower on some CPUs (AMD
// Zen 5; docs/DESIGN.md, "The shard cache"). Returns false if fsync failed.
bool sync_and_drop_pages(int fd);

}  // namespace ferry
