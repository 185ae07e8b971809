// Each `ferry` subcommand registers itself here; main() parses and runs the
// chosen one. One file per subcommand (cmd_*.cpp).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace ferry {

struct Command {
    CLI::App* app;
    std::function<int()> run;   // called after parsing when app was chosen
    std::string* log_level;     // where the subcommand keeps --log-level (may be null)
};

void register_run(CLI::App& app, std::vector<Command>& commands);
void register_synth(CLI::App& app, std::vector<Command>& commands);
void register_bench(CLI::App& app, std::vector<Command>& commands);
void register_status(CLI::App& app, std::vector<Command>& commands);
void register_quantize(CLI::App& app, std::vector<Command>& commands);
void register_plan(CLI::App& app, std::vector<Command>& commands);
void register_chat(CLI::App& app, std::vector<Command>& commands);
void register_keygen(CLI::App& app, std::vector<Command>& commands);
void register_serve(CLI::App& app, std::vector<Command>& commands);

}  // namespace ferry
