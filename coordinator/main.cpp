// ferry: the coordinator. Runs a model in this process or across ferry-worker
// daemons, and the tools around it (synth, bench, status).
#include <malloc.h>
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/error.h"
#include "common/exit_codes.h"
#include "common/logging.h"
#include "common/version.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/suggest.h"
#include "coordinator/pipeline/pipeline_probe.h"

int main(int argc, char** argv) {
    using namespace ferry;
#if defined(__GLIBC__)
    // A fixed threshold: buffers of 256 KB and more (shard chunks, link echoes,
    // logits) are mapped and given back when freed. glibc's default raises the
    // threshold after the first such free and keeps later ones in the heap,
    // which grew a coordinator streaming shards by 10 MB that the plan, which
    // counts its memory (kCoordinatorOverhead), never gets back.
    mallopt(M_MMAP_THRESHOLD, 256 << 10);
#endif
    CLI::App app{"ferry: run a Llama-family model on one machine or pooled across several old ones"};
    app.require_subcommand(1);
    app.set_help_all_flag("--help-all", "Help for every subcommand");
    app.set_version_flag("--version", version_text("ferry"), "Version, git commit, build type and kernel levels");
    app.footer("Exit codes: 0 done, 1 bad input (a model, a file, a value), 2 usage (the command line), 3 a worker "
               "failed or could not be reached, 130 interrupted (the text so far was printed).");
    std::vector<Command> commands;
    register_run(app, commands);
    register_synth(app, commands);
    register_bench(app, commands);
    register_status(app, commands);
    register_quantize(app, commands);
    register_plan(app, commands);
    register_chat(app, commands);
    register_keygen(app, commands);
#ifdef FERRY_SERVE
    register_serve(app, commands);  // not in the 32-bit build (no cpp-httplib there)
#endif
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (app.exit(e) == 0) return kExitOk;  // --help, --version
        const std::string hint = suggest_option(app, argc, argv);
        if (!hint.empty()) std::fprintf(stderr, "%s\n", hint.c_str());
        return kExitUsage;
    }
    try {
        for (const Command& c : commands) {
            if (!*c.app) continue;
            setup_logging(c.log_level ? *c.log_level : "warn");
            return c.run();
        }
    } catch (const WorkerError& e) {
        std::fprintf(stderr, "ferry: error: %s\n", e.what());
        return kExitPeer;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry: error: %s\n", e.what());
        return kExitError;
    }
    return kExitOk;
}
