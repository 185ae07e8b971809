// An open file and its memory map, over the operating system's own calls:
// POSIX descriptors with pread/mmap (file_posix.cpp) or Windows handles with
// ReadFile at an offset and file mappings (file_windows.cpp). Everything else
// in common/ reads and writes files through this, so it has one code path.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

namespace ferry {

class File {
public:
    enum class Mode { read, read_write };  // read_write creates a missing file
    File() = default;
    // Throws ferry::Error "<path>: cannot open: <reason>"; read mode also
    // refuses what is not a regular file.
    File(const std::string& path, Mode mode);
    ~File() { close(); }
    File(File&& o) noexcept : handle_(std::exchange(o.handle_, kNone)) {}
    File& operator=(File&& o) noexcept {
        if (this != &o) {
            close();
            handle_ = std::exchange(o.handle_, kNone);
        }
        return *this;
    }
    File(const File&) = delete;
    File& operator=(const File&) = delete;

    bool is_open() const { return handle_ != kNone; }
    void close();  // on every path: a worker refusing thousands of assignments keeps no handle
    uint64_t size() const;
    // Reads up to n bytes at offset: how many were read, 0 at the end, -1 on an error.
    int64_t read_at(void* out, size_t n, uint64_t offset) const;
    // All n bytes at offset, or false (a short file or an error).
    bool read_exact_at(void* out, size_t n, uint64_t offset) const;
    // Writes up to n bytes at offset: how many were written, -1 on an error.
    int64_t write_at(const void* data, size_t n, uint64_t offset);
    bool truncate(uint64_t size);
    // Durable, and out of the page cache (see sync_and_drop_pages below).
    bool sync_and_drop_pages();
    intptr_t native() const { return handle_; }

private:
    static constexpr intptr_t kNone = -1;
    intptr_t handle_ = kNone;  // a descriptor, or a Windows HANDLE
};

// The reason the last failed call of this thread gave: strerror(errno) or
// Windows' message for GetLastError().
std::string last_system_error();

// Makes a file just written durable and drops its pages from the page cache,
// so whoever maps it next (a worker's shard, a model from `ferry synth` or
// `ferry quantize`) has it read back by readahead into large folios: pages
// left as the writer dirtied them stream up to 2x slower on some CPUs (AMD
// Zen 5; docs/DESIGN.md, "The shard cache"). Returns false if the sync failed.
// Windows has no advice to drop pages: it only flushes.
bool sync_and_drop_pages(std::FILE* written);

// A read-only view of a whole file.
struct FileView {
    const uint8_t* data = nullptr;
    uint64_t size = 0;
    intptr_t mapping = -1;  // Windows' mapping object; unused on POSIX
};
// Throws ferry::Error naming `path` if the file cannot be mapped.
FileView map_read_only(const File& file, uint64_t size, const std::string& path);
void unmap(FileView& view);
// Bytes [offset, offset + n) leave the resident set (they stay cached).
void drop_pages(const FileView& view, uint64_t offset, uint64_t n);
// Brings the parts of the file not yet in the page cache into it in file
// order (one read per page), so that they arrive by sequential readahead:
// Linux then caches them as large folios (on filesystems with large folios:
// XFS since 5.18, ext4 since 6.16) and maps them with 2 MB entries, where a
// forward pass faulting a cold model in its own order (tensor by tensor,
// rows split between threads) leaves most of it in 4 KB pages, and on a VM
// with nested paging every miss over those costs (docs/DESIGN.md, "Where the
// weights lie"). Parts mostly cached already (mincore, 64 MB at a time) are
// skipped: their page sizes are settled until they leave the cache. Windows
// maps files in 4 KB pages whatever the order, so nothing is read there.
void read_in_order(const FileView& view);

}  // namespace ferry
