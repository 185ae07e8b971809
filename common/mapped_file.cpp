#include "common/mapped_file.h"

#include <utility>

#include "common/platform/file.h"

namespace ferry {

MappedFile::MappedFile(const std::string& path) : path_(path) {
    const File file(path, File::Mode::read);
    view_ = map_read_only(file, file.size(), path);  // the view outlives the handle
}

MappedFile::~MappedFile() { unmap(view_); }

void MappedFile::drop_pages(uint64_t offset, uint64_t n) const { ferry::drop_pages(view_, offset, n); }

void MappedFile::read_in_order() const { ferry::read_in_order(view_); }

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), view_(std::exchange(o.view_, FileView{})) {}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
    if (this != &o) {
        unmap(view_);
        path_ = std::move(o.path_);
        view_ = std::exchange(o.view_, FileView{});
    }
    return *this;
}

}  // namespace ferry
