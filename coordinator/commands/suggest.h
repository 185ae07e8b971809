// "did you mean --temperature?" for an option the command line got wrong:
// CLI11 (2.1) refuses unknown options without suggesting a near one.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace ferry {

// For the first --option in argv that neither `app` nor the subcommand named
// in argv knows: "; did you mean --x?" (a known option it begins, or one within
// two edits of it), else "".
std::string suggest_option(CLI::App& app, int argc, char** argv);

}  // namespace ferry
