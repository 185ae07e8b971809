#include "common/process_stats.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace ferry {

namespace {
// Reads "Key:   123 kB" lines; returns bytes.
uint64_t read_kb_field(const char* path, const char* key) {
    std::FILE* f = std::fopen(path, "r");
    if (!f) return 0;
    char line[256];
    uint64_t value = 0;
    const size_t n = std::strlen(key);
    while (std::fgets(line, sizeof line, f)) {
        if (std::strncmp(line, key, n) == 0 && line[n] == ':') {
            unsigned long long kb = 0;
            if (std::sscanf(line + n + 1, "%llu", &kb) == 1) value = kb * 1024;
            break;
        }
    }
    std::fclose(f);
    return value;
}
}  // namespace

ProcessMemory read_process_memory() {
    return {read_kb_field("/proc/self/status", "VmRSS"), read_kb_field("/proc/self/status", "VmHWM")};
}

MachineMemory read_machine_memory() {
    return {read_kb_field("/proc/meminfo", "MemTotal"), read_kb_field("/proc/meminfo", "MemAvailable")};
}

uint64_t last_level_cache_bytes() {
    for (int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE}) {
        const long bytes = sysconf(name);
        if (bytes > 0) return static_cast<uint64_t>(bytes);
    }
    return 0;
}

const char* machine_arch() {
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__i386__)
    return "i686";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__arm__)
    return "armv7";
#else
    return "unknown";
#endif
}

}  // namespace ferry
