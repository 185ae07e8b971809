#include "common/process_stats.h"

namespace ferry {

const char* machine_arch() {
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__i386__)
    return "i686";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__arm__)
    return "armhf";
#else
    return "unknown";
#endif
}

}  // namespace ferry
