#include "common/version.h"

#include "kernels/cpu_features.h"

namespace ferry {

extern const char* const kGitCommit;  // generated at build time (cmake/version_info.cmake)

const char* ferry_version() { return FERRY_VERSION; }

std::string version_text(const std::string& program) {
    std::string levels;
    for (const kernels::Level l : kernels::compiled_levels()) levels += std::string(levels.empty() ? "" : " ") + kernels::level_name(l);
    return program + " " + ferry_version() + "\ncommit " + kGitCommit + ", " + FERRY_BUILD_TYPE +
           " build\nkernels compiled in: " + levels + "; this CPU runs " + kernels::level_name(kernels::best_level()) +
           "\nwire protocol " + std::to_string(kProtocolVersion);
}

}  // namespace ferry
