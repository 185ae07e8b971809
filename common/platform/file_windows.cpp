#include "common/platform/file.h"

#include <windows.h>
#include <io.h>

#include <algorithm>

#include "common/error.h"

namespace ferry {

namespace {
HANDLE handle_of(intptr_t h) { return reinterpret_cast<HANDLE>(h); }

OVERLAPPED at_offset(uint64_t offset) {
    OVERLAPPED o{};
    o.Offset = static_cast<DWORD>(offset);
    o.OffsetHigh = static_cast<DWORD>(offset >> 32);
    return o;
}

// ReadFile and WriteFile take 32-bit counts.
constexpr size_t kMostPerCall = 1u << 30;
}  // namespace

std::string last_system_error() {
    const DWORD code = GetLastError();
    char text[512] = {};
    DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code, 0, text,
                             sizeof text, nullptr);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == '.')) text[--n] = 0;
    return n > 0 ? std::string(text) : "Windows error " + std::to_string(code);
}

File::File(const std::string& path, Mode mode) {
    // Shared for reading and writing, and deletable while open: what POSIX
    // code expects of a file (a cache prune may remove a shard in use).
    const DWORD share = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;
    HANDLE h = mode == Mode::read
                   ? CreateFileA(path.c_str(), GENERIC_READ, share, nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr)
                   : CreateFileA(path.c_str(), GENERIC_READ | GENERIC_WRITE, share, nullptr, OPEN_ALWAYS,
                                 FILE_ATTRIBUTE_NORMAL, nullptr);
    if (h == INVALID_HANDLE_VALUE) throw Error(path + ": cannot open: " + last_system_error());
    handle_ = reinterpret_cast<intptr_t>(h);
    if (mode == Mode::read && GetFileType(h) != FILE_TYPE_DISK) {
        close();
        throw Error(path + ": not a regular file");
    }
}

void File::close() {
    if (handle_ != kNone) CloseHandle(handle_of(handle_));
    handle_ = kNone;
}

uint64_t File::size() const {
    LARGE_INTEGER n{};
    return GetFileSizeEx(handle_of(handle_), &n) ? static_cast<uint64_t>(n.QuadPart) : 0;
}

int64_t File::read_at(void* out, size_t n, uint64_t offset) const {
    OVERLAPPED o = at_offset(offset);
    DWORD got = 0;
    if (ReadFile(handle_of(handle_), out, static_cast<DWORD>(std::min(n, kMostPerCall)), &got, &o)) return got;
    return GetLastError() == ERROR_HANDLE_EOF ? 0 : -1;
}

int64_t File::write_at(const void* data, size_t n, uint64_t offset) {
    OVERLAPPED o = at_offset(offset);
    DWORD put = 0;
    if (WriteFile(handle_of(handle_), data, static_cast<DWORD>(std::min(n, kMostPerCall)), &put, &o)) return put;
    return -1;
}

bool File::truncate(uint64_t size) {
    FILE_END_OF_FILE_INFO end{};
    end.EndOfFile.QuadPart = static_cast<LONGLONG>(size);
    return SetFileInformationByHandle(handle_of(handle_), FileEndOfFileInfo, &end, sizeof end) != 0;
}

bool File::sync_and_drop_pages() { return FlushFileBuffers(handle_of(handle_)) != 0; }

bool sync_and_drop_pages(std::FILE* written) {
    return FlushFileBuffers(reinterpret_cast<HANDLE>(_get_osfhandle(_fileno(written)))) != 0;
}

FileView map_read_only(const File& file, uint64_t size, const std::string& path) {
    FileView view;
    if (size == 0) return view;
    if (size > SIZE_MAX) throw Error(path + ": " + std::to_string(size) + " bytes do not fit a 32-bit address space");
    HANDLE mapping = CreateFileMappingA(handle_of(file.native()), nullptr, PAGE_READONLY, 0, 0, nullptr);
    if (!mapping) throw Error(path + ": cannot map " + std::to_string(size) + " bytes: " + last_system_error());
    const void* p = MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, static_cast<SIZE_T>(size));
    if (!p) {
        const std::string why = last_system_error();
        CloseHandle(mapping);
        throw Error(path + ": cannot map " + std::to_string(size) + " bytes: " + why);
    }
    view.data = static_cast<const uint8_t*>(p);
    view.size = size;
    view.mapping = reinterpret_cast<intptr_t>(mapping);
    return view;
}

void unmap(FileView& view) {
    if (view.data) UnmapViewOfFile(view.data);
    if (view.mapping != -1) CloseHandle(reinterpret_cast<HANDLE>(view.mapping));
    view = FileView{};
}

// Windows maps a file in 4 KB pages whatever order it was read in.
void read_in_order(const FileView&) {}

void drop_pages(const FileView& view, uint64_t offset, uint64_t n) {
    if (!view.data || offset >= view.size) return;
    // Unlocking pages that were never locked takes them out of the working
    // set (documented behaviour of VirtualUnlock); the call then fails,
    // which changes nothing else.
    const uint64_t end = std::min(view.size, offset + n);
    VirtualUnlock(const_cast<uint8_t*>(view.data) + offset, static_cast<SIZE_T>(end - offset));
}

}  // namespace ferry
