#include "common/platform/file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/error.h"

static_assert(sizeof(off_t) == 8, "shard files can exceed 2 GB: build with -D_FILE_OFFSET_BITS=64 (cmake/i686.cmake does)");

namespace ferry {

File::File(const std::string& path, Mode mode) {
    const int fd = mode == Mode::read ? ::open(path.c_str(), O_RDONLY | O_CLOEXEC)
                                      : ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
    handle_ = fd;
    struct stat st {};
    if (mode == Mode::read && (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close();
        throw Error(path + ": not a regular file");
    }
}

void File::close() {
    if (handle_ != kNone) ::close(static_cast<int>(handle_));
    handle_ = kNone;
}

uint64_t File::size() const {
    struct stat st {};
    return ::fstat(static_cast<int>(handle_), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

int64_t File::read_at(void* out, size_t n, uint64_t offset) const {
    for (;;) {
        const ssize_t got = ::pread(static_cast<int>(handle_), out, n, static_cast<off_t>(offset));
        if (got >= 0 || errno != EINTR) return got;
    }
}

int64_t File::write_at(const void* data, size_t n, uint64_t offset) {
    for (;;) {
        const ssize_t put = ::pwrite(static_cast<int>(handle_), data, n, static_cast<off_t>(offset));
        if (put >= 0 || errno != EINTR) return put;
    }
}

bool File::truncate(uint64_t size) { return ::ftruncate(static_cast<int>(handle_), static_cast<off_t>(size)) == 0; }

namespace {
bool sync_and_drop(int fd) {
    if (::fsync(fd) != 0) return false;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // advice: pages are clean after fsync, so it is honoured
    return true;
}
}  // namespace

bool File::sync_and_drop_pages() { return sync_and_drop(static_cast<int>(handle_)); }
bool sync_and_drop_pages(std::FILE* written) { return sync_and_drop(fileno(written)); }

std::string last_system_error() { return std::strerror(errno); }

FileView map_read_only(const File& file, uint64_t size, const std::string& path) {
    FileView view;
    if (size == 0) return view;
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, static_cast<int>(file.native()), 0);
    if (p == MAP_FAILED) throw Error(path + ": cannot map " + std::to_string(size) + " bytes: " + std::strerror(errno));
    view.data = static_cast<const uint8_t*>(p);
    view.size = size;
    return view;
}

void unmap(FileView& view) {
    if (view.data) ::munmap(const_cast<uint8_t*>(view.data), view.size);
    view = FileView{};
}

void read_in_order(const FileView& view) {
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t window = uint64_t{64} << 20;  // a multiple of every page size, so each window starts on a page
    std::vector<unsigned char> cached(static_cast<size_t>(window / page));
    const volatile uint8_t* bytes = view.data;  // volatile: each read is a page to bring in, not a value to fold
    uint32_t sum = 0;
    for (uint64_t at = 0; at < view.size; at += window) {
        const uint64_t n = std::min(window, view.size - at);
        const uint64_t pages = (n + page - 1) / page;
        uint64_t resident = 0;
        if (::mincore(const_cast<uint8_t*>(view.data) + at, static_cast<size_t>(n), cached.data()) == 0)
            for (uint64_t p = 0; p < pages; ++p) resident += cached[static_cast<size_t>(p)] & 1;
        if (resident * 2 > pages) continue;
        for (uint64_t b = 0; b < n; b += page) sum += bytes[at + b];
    }
    (void)sum;
}

void drop_pages(const FileView& view, uint64_t offset, uint64_t n) {
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    if (!view.data || offset >= view.size) return;
    const uint64_t begin = offset / page * page;
    const uint64_t end = std::min(view.size, offset + n);
    // Advice only: a failure changes nothing but the resident set.
    ::madvise(const_cast<uint8_t*>(view.data) + begin, end - begin, MADV_DONTNEED);
}

}  // namespace ferry
