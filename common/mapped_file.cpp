#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "common/unique_fd.h"

namespace ferry {

MappedFile::MappedFile(const std::string& path) : path_(path) {
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) throw Error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) throw Error(path + ": not a regular file");
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
        void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd.get(), 0);
        if (p == MAP_FAILED) {
            const int e = errno;
            throw Error(path + ": cannot map " + std::to_string(size_) + " bytes: " + std::strerror(e));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
}

MappedFile::~MappedFile() { release(); }

void MappedFile::drop_pages(uint64_t offset, uint64_t n) const {
    static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    if (!data_ || offset >= size_) return;
    const uint64_t begin = offset / page * page;
    const uint64_t end = std::min(size_, offset + n);
    // Advice only: a failure changes nothing but the resident set.
    ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

MappedFile::MappedFile(MappedFile&& o) noexcept
    : path_(std::move(o.path_)), data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        release();
        path_ = std::move(o.path_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
    }
    return *this;
}

void MappedFile::release() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

bool sync_and_drop_pages(int fd) {
    if (::fsync(fd) != 0) return false;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // advice: pages are clean after fsync, so it is honoured
    return true;
}

}  // namespace ferry
