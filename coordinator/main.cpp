// ferry: the coordinator. Runs a model in this process or across ferry-worker
// daemons, and the tools around it (synth, bench).
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/error.h"
#include "common/logging.h"
#include "coordinator/options.h"

int main(int argc, char** argv) {
    using namespace ferry;
    CLI::App app{"ferry: run a Llama-family model on one machine or pooled across several old ones"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "Help for every subcommand");

    RunOptions run;
    CLI::App* run_cmd = app.add_subcommand("run", "Generate text from a model (single process or --workers)");
    add_model_options(run_cmd, run);
    add_sampling_options(run_cmd, run);
    add_pipeline_options(run_cmd, run);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (*run_cmd) {
            setup_logging(run.log_level);
            return cmd_run(run);
        }
    } catch (const ferry::Error& e) {
        std::fprintf(stderr, "ferry: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
