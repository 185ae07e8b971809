// ferry: the coordinator. Runs a model in this process or across ferry-worker
// daemons, and the tools around it (synth, bench, status).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/error.h"
#include "common/logging.h"
#include "coordinator/commands/commands.h"

int main(int argc, char** argv) {
    using namespace ferry;
    CLI::App app{"ferry: run a Llama-family model on one machine or pooled across several old ones"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "Help for every subcommand");
    std::vector<Command> commands;
    register_run(app, commands);
    register_synth(app, commands);
    register_bench(app, commands);
    register_status(app, commands);
    register_quantize(app, commands);
    register_plan(app, commands);
    register_chat(app, commands);
#ifdef FERRY_SERVE
    register_serve(app, commands);  // not in the 32-bit build (no cpp-httplib there)
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        for (const Command& c : commands) {
            if (!*c.app) continue;
            setup_logging(c.log_level ? *c.log_level : "warn");
            return c.run();
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
