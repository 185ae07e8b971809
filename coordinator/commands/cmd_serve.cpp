// `ferry serve`: the model (in this process or across workers) as a
// long-running OpenAI-compatible HTTP service; requests are batched through
// the chain by the scheduler (serving/).
#include <signal.h>
#include <spdlog/spdlog.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "common/error.h"
#include "common/tokenizer_loader.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"
#include "coordinator/commands/setup.h"
#include "coordinator/generation/conversation.h"
#include "coordinator/serving/http_server.h"
#include "coordinator/serving/live_stats.h"
#include "coordinator/serving/scheduler.h"

namespace ferry {

namespace {

struct ServeOptions {
    RunOptions run;
    std::string listen = "127.0.0.1:8080";
    int parallel = 4;
    int queue = 64;
    std::string api_key, api_key_file;
    std::string model_id;
    size_t max_body = 1u << 20;
    int http_threads = 256;
    double grace = 30;
};

std::pair<std::string, int> parse_listen(const std::string& text) {
    const size_t colon = text.rfind(':');
    int port = -1;
    if (colon != std::string::npos) {
        try {
            size_t used = 0;
            port = std::stoi(text.substr(colon + 1), &used);
            if (used != text.size() - colon - 1) port = -1;
        } catch (const std::exception&) {
            port = -1;
        }
    }
    if (colon == std::string::npos || colon == 0 || port < 0 || port > 65535)
        throw Error("--listen " + text + ": expected HOST:PORT, e.g. 0.0.0.0:8080 (port 0: any free port)");
    std::string host = text.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    return {host, port};
}

std::string read_key_file(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error("--api-key-file " + path + ": cannot read it");
    std::string key;
    std::getline(in, key);
    while (!key.empty() && (key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.empty()) throw Error("--api-key-file " + path + ": its first line is empty; put the key there");
    return key;
}

int cmd_serve(ServeOptions& o) {
    // SIGTERM and SIGINT are taken by one thread (sigwait), so no handler runs inside a request.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    signal(SIGPIPE, SIG_IGN);

    const auto [host, port] = parse_listen(o.listen);
    if (!o.api_key_file.empty()) {
        if (!o.api_key.empty()) throw Error("--api-key and --api-key-file: give one");
        o.api_key = read_key_file(o.api_key_file);
    }
    const RunOptions& r = o.run;
    select_kernels(r.kernels);
    const ModelFile file = open_model(r.model, r.workers.empty());
    const Tokenizer tokenizer = load_tokenizer(file, r.tokenizer, r.force_tokenizer);
    kernels::ThreadPool pool(resolve_threads(r.threads));
    const int context = context_for(file.config, r.ctx);
    RunOptions engine_options = r;
    // Requests to workers hold at most this many positions: a batch of decode
    // steps and prompt chunks (the scheduler's), which keeps workers' buffers small.
    if (engine_options.prefill_chunk == 0) engine_options.prefill_chunk = std::max(32, o.parallel);
    std::unique_ptr<Engine> engine = make_engine(file, engine_options, context, &pool, o.parallel);
    auto* batch = dynamic_cast<BatchEngine*>(engine.get());
    if (!batch) throw Error("this engine cannot serve several sequences");

    ApiContext api;
    api.model_id = o.model_id.empty() ? file.path.substr(file.path.find_last_of('/') + 1) : o.model_id;
    api.tokenizer = &tokenizer;
    try {
        const ChatTemplate t = choose_chat_template(file, r.chat_template);
        check_chat_template(t, tokenizer, r.no_think);
        api.chat_template = t;  // only once every check passed: never chat with half a template
        api.no_think = r.no_think;
        api.end_of_turn_ids = end_of_turn_ids(tokenizer, t);
    } catch (const Error& e) {  // completions still work; chat says why not
        if (!r.chat_template.empty() || r.no_think) throw;  // what the user asked for cannot be: say so
        api.no_template_reason = e.what();
        spdlog::warn("serve: {}; /v1/chat/completions is refused until then", e.what());
    }
    api.end_of_turn_ids.push_back(tokenizer.eos_id());  // as Conversation: the family's marker, else EOS
    api.context = context;

    LiveStats live;
    Scheduler scheduler(*batch, tokenizer, o.queue, &live);
    HttpOptions http;
    http.host = host;
    http.port = port;
    http.api_key = o.api_key;
    http.max_body_bytes = o.max_body;
    http.threads = o.http_threads;
    HttpServer server(scheduler, api, http, &live);
    const int bound = server.bind();

    std::thread engine_thread([&] { scheduler.run(); });
    std::atomic<bool> signalled{false};
    std::thread signal_thread([&] {
        int sig = 0;
        sigwait(&stop_signals, &sig);
        signalled = true;
        spdlog::warn("serve: signal {}: finishing requests in flight (at most {:.0f} s), then exiting", sig, o.grace);
        scheduler.stop(o.grace);
        engine_thread.join();
        server.stop();
    });
    std::fprintf(stderr, "serving %s on http://%s:%d/v1 (%d sequences at once, context %d, %s)%s; dashboard at /, metrics at /metrics\n",
                 api.model_id.c_str(), host.c_str(), bound, batch->slots(), context,
                 r.workers.empty() ? "this process" : (std::to_string(batch->depth()) + (batch->depth() == 1 ? " stage" : " stages")).c_str(),
                 o.api_key.empty() ? "" : ", API key required");
    std::fflush(stderr);
    server.serve();
    if (!signalled) kill(getpid(), SIGTERM);  // the server ended on its own: wake the signal thread to wind down
    signal_thread.join();
    report_engine(*engine);
    return 0;
}

}  // namespace

void register_serve(CLI::App& app, std::vector<Command>& commands) {
    static ServeOptions o;
    CLI::App* cmd = app.add_subcommand(
        "serve", "Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, "
                 "/v1/models, /health), single process or --workers; concurrent requests are batched through the chain");
    add_model_options(cmd, o.run);
    add_pipeline_options(cmd, o.run);
    cmd->add_option("--listen", o.listen, "HOST:PORT to listen on (default 127.0.0.1:8080; 0.0.0.0:8080 for the LAN; port 0: any free port)");
    cmd->add_option("--parallel,-P", o.parallel,
                    "Sequences in flight at once, each with its own KV cache of --ctx positions on every stage "
                    "(counted in the plan and each worker's --memory) (default 4)")
        ->check(CLI::Range(1, 256));
    cmd->add_option("--queue", o.queue, "Requests that may wait for a free sequence; more get 503 (default 64)")
        ->check(CLI::Range(0, 100000));
    cmd->add_option("--api-key", o.api_key, "Clients must send 'Authorization: Bearer KEY' (default: no key)");
    cmd->add_option("--api-key-file", o.api_key_file, "Read the API key from the first line of this file (keeps it out of ps)");
    cmd->add_option("--model-id", o.model_id, "The model's name in the API (default: the model file's name)");
    cmd->add_option("--max-body", o.max_body, "Largest request body in bytes; larger ones get 413 (default 1048576)")
        ->check(CLI::Range(size_t{1024}, size_t{1} << 30));
    cmd->add_option("--http-threads", o.http_threads,
                    "Connections served at once: idle keep-alive connections hold one each until they send or time "
                    "out (10 s) (default 256)")
        ->check(CLI::Range(2, 4096));
    cmd->add_option("--grace", o.grace, "Seconds SIGTERM lets requests in flight finish before cancelling them (default 30)")
        ->check(CLI::Range(0.0, 86400.0));
    add_chat_template_options(cmd, o.run);
    commands.push_back({cmd, [] {
        resolve_pool(o.run);
        return cmd_serve(o);
    }, &o.run.log_level});
}

}  // namespace ferry
