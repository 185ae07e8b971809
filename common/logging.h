// spdlog set up once per binary: logs go to stderr (stdout carries only
// generated text), with a level the user picks.
#pragma once
#include <string>

namespace ferry {

// level: trace, debug, info, warn, error, off. file: empty for stderr.
void setup_logging(const std::string& level, const std::string& file = "");

}  // namespace ferry
