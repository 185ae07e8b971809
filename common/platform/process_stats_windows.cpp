// The process and machine figures from Windows' own counters.
#include "common/process_stats.h"

#include <windows.h>
#include <psapi.h>

#include <algorithm>
#include <vector>

namespace ferry {

ProcessMemory read_process_memory() {
    PROCESS_MEMORY_COUNTERS c{};
    c.cb = sizeof c;
    if (!GetProcessMemoryInfo(GetCurrentProcess(), &c, sizeof c)) return {};
    return {static_cast<uint64_t>(c.WorkingSetSize), static_cast<uint64_t>(c.PeakWorkingSetSize)};
}

MachineMemory read_machine_memory() {
    MEMORYSTATUSEX m{};
    m.dwLength = sizeof m;
    if (!GlobalMemoryStatusEx(&m)) return {};
    return {m.ullTotalPhys, m.ullAvailPhys};
}

// Windows maps files in 4 KB pages and has no counter to ask.
std::optional<uint64_t> file_bytes_in_large_pages(const std::string&) { return std::nullopt; }

uint64_t cgroup_memory_limit() {
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION job{};
    if (!QueryInformationJobObject(nullptr, JobObjectExtendedLimitInformation, &job, sizeof job, nullptr)) return 0;
    const DWORD flags = job.BasicLimitInformation.LimitFlags;
    if (flags & JOB_OBJECT_LIMIT_PROCESS_MEMORY) return job.ProcessMemoryLimit;
    if (flags & JOB_OBJECT_LIMIT_JOB_MEMORY) return job.JobMemoryLimit;
    return 0;
}

uint64_t last_level_cache_bytes() {
    DWORD bytes = 0;
    GetLogicalProcessorInformation(nullptr, &bytes);
    std::vector<SYSTEM_LOGICAL_PROCESSOR_INFORMATION> table(bytes / sizeof(SYSTEM_LOGICAL_PROCESSOR_INFORMATION) + 1);
    bytes = static_cast<DWORD>(table.size() * sizeof table[0]);
    if (!GetLogicalProcessorInformation(table.data(), &bytes)) return 0;
    uint64_t largest = 0;
    for (size_t i = 0; i < bytes / sizeof table[0]; ++i)
        if (table[i].Relationship == RelationCache && table[i].Cache.Level >= 2)
            largest = std::max<uint64_t>(largest, table[i].Cache.Size);
    return largest;
}

}  // namespace ferry
