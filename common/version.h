// What this build is: `ferry --version` and `ferry-worker --version`, and the
// version a Hello carries.
#pragma once
#include <cstdint>
#include <string>

namespace ferry {

// The wire protocol (docs/PROTOCOL.md). Bump when a peer of the previous
// version would misread a frame.
constexpr uint32_t kProtocolVersion = 2;  // 2: vocabulary slices (Assign.vocab_*, Classify)

// "0.1.0"
const char* ferry_version();
// Several lines: program and version, git commit and build type, the kernel
// levels compiled in and the one this CPU runs, the wire protocol.
std::string version_text(const std::string& program);

}  // namespace ferry
