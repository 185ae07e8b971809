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

}  // namespace ferry
