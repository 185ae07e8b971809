#include "common/platform/file.h"

namespace ferry {

bool File::read_exact_at(void* out, size_t n, uint64_t offset) const {
    auto* p = static_cast<uint8_t*>(out);
    while (n > 0) {
        const int64_t got = read_at(p, n, offset);
        if (got <= 0) return false;
        p += got;
        n -= static_cast<size_t>(got);
        offset += static_cast<uint64_t>(got);
    }
    return true;
}

uint32_t read_in_order(const FileView& view) {
    constexpr uint64_t kPage = 4096;  // the smallest page of every supported system: no page is skipped
    const volatile uint8_t* bytes = view.data;  // volatile: each read is a page to bring in, not a value to fold
    uint32_t sum = 0;
    for (uint64_t at = 0; at < view.size; at += kPage) sum += bytes[at];
    return sum;
}

}  // namespace ferry
