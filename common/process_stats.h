// What the OS says about this process and machine: resident memory (current
// and peak), RAM, the largest CPU cache. Linux: /proc/self/status,
// /proc/meminfo, sysconf (platform/process_stats_linux.cpp); Windows: the
// process's working set counters, GlobalMemoryStatusEx and the processor
// cache table (platform/process_stats_windows.cpp). Zero where unknown.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace ferry {

struct ProcessMemory {
    uint64_t rss = 0;       // VmRSS; Windows: the working set
    uint64_t peak_rss = 0;  // VmHWM; Windows: the peak working set
};

struct MachineMemory {
    uint64_t total = 0;      // MemTotal
    uint64_t available = 0;  // MemAvailable
};

ProcessMemory read_process_memory();
MachineMemory read_machine_memory();
// The memory limit of this process's cgroup (v2 memory.max, v1
// memory.limit_in_bytes: systemd's MemoryMax=, a container's limit); on
// Windows the memory limit of the job object the process runs in; 0 if none.
uint64_t cgroup_memory_limit();
// The last-level cache (L3, else L2) in bytes.
uint64_t last_level_cache_bytes();
// Bytes of this process's mappings of the file at `path` that the kernel maps
// with large (2 MB) page-table entries: Linux's FilePmdMapped in
// /proc/self/smaps (see read_in_order in platform/file.h). Nothing where the
// system does not tell (Windows, a kernel without the field).
std::optional<uint64_t> file_bytes_in_large_pages(const std::string& path);
// What this binary was built for: "x86_64", "i686", "aarch64", "armhf" ("unknown").
const char* machine_arch();

}  // namespace ferry
