// The process and machine figures from Linux's /proc and sysconf.
#include "common/process_stats.h"

#include <fstream>

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>

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

std::optional<uint64_t> file_bytes_in_large_pages(const std::string& path) {
    char resolved[PATH_MAX];
    if (!::realpath(path.c_str(), resolved)) return std::nullopt;
    const std::string name = resolved;  // how smaps names the mapping
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool ours = false, told = false;
    uint64_t kb_total = 0;
    while (std::getline(smaps, line)) {
        // A mapping's header ("start-end perms offset dev inode path") has a
        // space before its first colon; its fields ("Rss:  12 kB") do not.
        if (line.find(':') > line.find(' ')) {
            ours = line.size() > name.size() && line.compare(line.size() - name.size(), name.size(), name) == 0 &&
                   line[line.size() - name.size() - 1] == ' ';
        } else if (line.rfind("FilePmdMapped:", 0) == 0) {
            told = true;
            unsigned long long kb = 0;
            if (ours && std::sscanf(line.c_str() + 14, "%llu", &kb) == 1) kb_total += kb;
        }
    }
    if (!told) return std::nullopt;
    return kb_total * 1024;
}

uint64_t cgroup_memory_limit() {
    std::ifstream cgroups("/proc/self/cgroup");
    std::string line;
    while (std::getline(cgroups, line)) {
        // "0::/system.slice/x.service" (v2) or "9:memory:/docker/abc" (v1)
        const size_t a = line.find(':'), b = line.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) continue;
        const std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        std::string file;
        if (controllers.empty()) file = "/sys/fs/cgroup" + path + "/memory.max";
        else if (controllers == "memory" || controllers.find("memory,") == 0 || controllers.find(",memory") != std::string::npos)
            file = "/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes";
        else continue;
        std::ifstream in(file);
        std::string value;
        if (!(in >> value) || value == "max") continue;
        const uint64_t limit = std::strtoull(value.c_str(), nullptr, 10);
        if (limit > 0 && limit < (1ull << 60)) return limit;  // v1 says "no limit" with a huge number
    }
    return 0;
}

}  // namespace ferry
