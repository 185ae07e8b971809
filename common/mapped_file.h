// A read-only memory map of a whole file: weights are used where they lie,
// never copied.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/platform/file.h"

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

    const uint8_t* data() const { return view_.data; }
    uint64_t size() const { return view_.size; }
    const std::string& path() const { return path_; }
    // Done with bytes [offset, offset + n) for now: their pages leave this
    // process's resident set (they stay in the page cache, and reading them
    // again brings them back). A long sequential pass over a model
    // (`ferry quantize`) calls it so the model streams through memory
    // instead of piling up in it.
    void drop_pages(uint64_t offset, uint64_t n) const;
    // Brings the file into memory in file order (read_in_order in
    // common/platform/file.h): before a process that keeps the whole file
    // resident first computes on it.
    void read_in_order() const;

private:
    std::string path_;
    FileView view_;
};

}  // namespace ferry
