// `ferry status`: asks live ferry-worker daemons what they are doing, as a
// status client: it never takes a worker's coordinator slot and never
// disturbs a run in progress.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>
#include <optional>

#include "common/error.h"
#include "common/weights.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/hub.h"
#include "common/shard_memory.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"
#include "coordinator/commands/setup.h"

namespace ferry {

namespace {

struct StatusArgs {
    std::vector<std::string> workers;
    bool json = false;
    double watch = 0;  // seconds between refreshes; 0: once
    int count = 0;     // --watch: stop after this many refreshes (0: until interrupted)
    double timeout = 5;
    std::string log_level = "warn";
    std::string key_file;
    double discover_wait = 2;
    std::optional<net::ClusterKey> key;
};

struct Answer {
    std::string address;
    std::string error;  // empty when `report` is valid
    wire::StatusReport report;
};

std::vector<Answer> ask_all(const StatusArgs& a) {
    net::Hub hub(a.key);
    std::vector<Answer> answers(a.workers.size());
    for (size_t i = 0; i < a.workers.size(); ++i) {
        answers[i].address = a.workers[i];
        net::split_address(a.workers[i], "--workers");
        hub.connect(a.workers[i], a.timeout);
    }
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    const std::string me = std::string("ferry status on ") + host;
    size_t done = 0;
    std::vector<bool> finished(a.workers.size(), false);
    auto finish = [&](int link, const std::string& error) {
        if (finished[static_cast<size_t>(link)]) return;
        finished[static_cast<size_t>(link)] = true;
        answers[static_cast<size_t>(link)].error = error;
        ++done;
        hub.close(link);
    };
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(static_cast<int>(a.timeout * 1000) + 500);
    while (done < a.workers.size()) {
        std::optional<net::Hub::Event> e = hub.wait(deadline);
        if (!e) {
            for (size_t i = 0; i < finished.size(); ++i)
                if (!finished[i]) finish(static_cast<int>(i), "no answer within " + std::to_string(static_cast<int>(a.timeout)) + " s");
            break;
        }
        const int link = e->link;
        if (finished[static_cast<size_t>(link)]) continue;
        switch (e->kind) {
            case net::Hub::Event::connected:
                hub.configure(link, net::kControlFrameBytes, a.timeout, 1.0);
                hub.send(link, net::make_hello(wire::STATUS_CLIENT, me));
                break;
            case net::Hub::Event::connect_failed:
            case net::Hub::Event::closed: finish(link, e->reason); break;
            case net::Hub::Event::received: {
                const wire::Frame& f = e->frame.frame;
                if (f.has_error()) {
                    finish(link, f.error().message());
                } else if (f.has_hello()) {
                    if (const std::string bad = net::check_protocol(f.hello(), a.workers[static_cast<size_t>(link)]); !bad.empty()) {
                        finish(link, bad);
                        break;
                    }
                    wire::Frame req;
                    req.mutable_status_request();
                    hub.send(link, req);
                } else if (f.has_status_report()) {
                    answers[static_cast<size_t>(link)].report = f.status_report();
                    finish(link, "");
                }
                break;
            }
        }
    }
    return answers;
}

std::string layers_of(const wire::StatusReport& r) {
    if (!r.shard_loaded()) return "-";
    return spec_text(
        ShardSpec{r.first_layer(), r.last_layer(), r.embedding(), r.head(), r.vocab_first(), r.vocab_last()});
}

// Rates of one worker between two answers (--watch): what it did in the window, not its lifetime mean.
struct Window {
    bool valid = false;
    double tok_s = 0, ms_per_token = 0, mb_in_s = 0;
};
Window window_of(const Answer& now, const Answer* before) {
    Window w;
    if (!before || !now.error.empty() || !before->error.empty()) return w;
    const wire::StatusReport &a = now.report, &b = before->report;
    const double dt = a.uptime_s() - b.uptime_s();
    if (dt <= 0 || a.tokens() < b.tokens()) return w;
    w.valid = true;
    const double tokens = static_cast<double>(a.tokens() - b.tokens());
    w.tok_s = tokens / dt;
    w.ms_per_token = tokens > 0 ? (a.compute_ms() - b.compute_ms()) / tokens : 0;
    w.mb_in_s = to_mb(a.bytes_in() - b.bytes_in()) / dt;
    return w;
}

nlohmann::json to_json(const Answer& a) {
    nlohmann::json j;
    j["address"] = a.address;
    j["ok"] = a.error.empty();
    if (!a.error.empty()) {
        j["error"] = a.error;
        return j;
    }
    const wire::StatusReport& r = a.report;
    const wire::Capabilities& c = r.capabilities();
    j["name"] = r.address();
    j["version"] = r.software_version();
    j["uptime_s"] = r.uptime_s();
    j["arch"] = c.arch();
    j["cores"] = c.cores();
    j["threads"] = c.threads();
    j["cpu_features"] = c.cpu_features();
    j["kernels"] = c.kernel_level();
    j["ram_total"] = c.ram_total();
    j["ram_available"] = c.ram_available();
    j["memory_budget"] = c.memory_budget();
    j["matvec_gbps"] = c.matvec_gbps();
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, gbps] : c.type_gbps()) types[type] = gbps;
    j["type_gbps"] = types;
    j["shard_loaded"] = r.shard_loaded();
    if (r.shard_loaded()) {
        j["model_hash"] = net::hex(r.model_hash());
        j["model"] = r.model_name();
        j["first_layer"] = r.first_layer();
        j["end_layer"] = r.last_layer();  // exclusive: layers first_layer .. end_layer-1
        j["embedding"] = r.embedding();
        j["head"] = r.head();
        if (r.vocab_last() > r.vocab_first()) {  // a vocabulary slice: rows vocab_first .. vocab_end-1
            j["vocab_first"] = r.vocab_first();
            j["vocab_end"] = r.vocab_last();
        }
        j["weight_bytes"] = r.weight_bytes();
    }
    j["coordinator_connected"] = r.coordinator_connected();
    if (r.coordinator_connected()) {
        j["coordinator"] = r.coordinator();
        j["coordinator_since_s"] = r.coordinator_since_s();
        j["next_stage"] = r.next_stage();
        j["recoveries"] = r.recoveries();  // of the coordinator's chain before this session
    }
    j["busy"] = r.busy();
    j["rss"] = r.rss();
    j["peak_rss"] = r.peak_rss();
    j["session_peak_rss"] = r.session_peak_rss();
    j["tokens"] = r.tokens();
    j["requests"] = r.requests();
    j["compute_ms"] = r.compute_ms();
    j["compute_ms_per_token"] = r.tokens() ? r.compute_ms() / static_cast<double>(r.tokens()) : 0.0;
    j["bytes_in"] = r.bytes_in();
    j["bytes_out"] = r.bytes_out();
    j["shard_bytes_received"] = r.shard_bytes_received();
    return j;
}

// The same worker's answer in the refresh before (discovered pools change between refreshes).
const Answer* same_worker(const std::vector<Answer>& before, const Answer& now) {
    for (const Answer& b : before)
        if (b.address == now.address) return &b;
    return nullptr;
}

void print_table(const std::vector<Answer>& answers, const std::vector<Answer>* before) {
    const bool rates = before != nullptr;
    std::printf("%-22s %-8s %-10s %8s %9s %8s %8s %8s %9s %10s  %s\n", "node", "uptime", "layers", "weight MB", "RSS MB",
                rates ? "sess. MB" : "peak MB", "tokens", rates ? "tok/s" : "", rates ? "ms/token" : "ms/token",
                "GB/s f32", "coordinator");
    for (size_t i = 0; i < answers.size(); ++i) {
        const Answer& x = answers[i];
        if (!x.error.empty()) {
            std::printf("%-22s unreachable: %s\n", x.address.c_str(), x.error.c_str());
            continue;
        }
        const wire::StatusReport& r = x.report;
        char up[32];
        std::snprintf(up, sizeof up, "%.0fs", r.uptime_s());
        std::string coord = r.coordinator_connected() ? r.coordinator() + (r.busy() ? " (busy)" : "") : "none";
        if (r.coordinator_connected() && r.recoveries() > 0)
            coord += ", its chain recovered " + std::to_string(r.recoveries()) + "x";
        const Window w = rates ? window_of(x, same_worker(*before, x)) : Window{};
        char rate[16] = "", ms[16];
        if (rates) std::snprintf(rate, sizeof rate, "%.1f", w.tok_s);
        std::snprintf(ms, sizeof ms, "%.3f", rates ? w.ms_per_token : r.tokens() ? r.compute_ms() / r.tokens() : 0.0);
        std::printf("%-22s %-8s %-10s %8.1f %9.1f %8.1f %8llu %8s %9s %10.2f  %s\n", x.address.c_str(), up,
                    layers_of(r).c_str(), to_mb(r.weight_bytes()), to_mb(r.rss()),
                    to_mb(rates ? r.session_peak_rss() : r.peak_rss()),
                    static_cast<unsigned long long>(r.tokens()), rate, ms, r.capabilities().matvec_gbps(),
                    coord.c_str());
    }
}

// The workers to ask: --workers, else those announcing themselves with the
// cluster key now (so one that left is no longer listed).
StatusArgs with_workers(const StatusArgs& given) {
    StatusArgs a = given;
    if (!a.workers.empty()) return a;
    if (!a.key) throw Error("--workers: give at least one HOST:PORT, or the cluster key (--key-file) to find the workers on the LAN");
    a.workers = discover_pool(*a.key, std::max(0.1, a.discover_wait));
    return a;
}

int cmd_status(StatusArgs& given) {
    given.key = cluster_key_from(given.key_file);
    if (given.watch <= 0) {
        const StatusArgs a = with_workers(given);
        if (a.workers.empty()) {
            std::fprintf(stderr, "no worker with this cluster key announced itself within %.1f s\n", a.discover_wait);
            return 1;
        }
        const std::vector<Answer> answers = ask_all(a);
        bool all_ok = true;
        for (const Answer& x : answers) all_ok = all_ok && x.error.empty();
        if (a.json) {
            nlohmann::json j = nlohmann::json::array();
            for (const Answer& x : answers) j.push_back(to_json(x));
            std::printf("%s\n", j.dump(2).c_str());
        } else {
            print_table(answers, nullptr);
        }
        return all_ok ? 0 : 1;
    }
    // --watch: refresh in place (a terminal) or append (a pipe), with rates over each interval.
    const bool tty = ::isatty(1) != 0;
    std::vector<Answer> before;
    for (int round = 0; given.count == 0 || round < given.count; ++round) {
        const auto t0 = std::chrono::steady_clock::now();
        const StatusArgs a = with_workers(given);
        std::vector<Answer> answers = ask_all(a);
        if (a.json) {
            nlohmann::json j = nlohmann::json::array();
            for (size_t i = 0; i < answers.size(); ++i) {
                nlohmann::json w = to_json(answers[i]);
                const Window win = window_of(answers[i], same_worker(before, answers[i]));
                if (win.valid) {
                    w["window_tok_s"] = win.tok_s;
                    w["window_ms_per_token"] = win.ms_per_token;
                    w["window_mb_in_s"] = win.mb_in_s;
                }
                j.push_back(w);
            }
            std::printf("%s\n", j.dump().c_str());  // one line per refresh
        } else {
            if (tty) std::printf("\x1b[H\x1b[2J");
            std::printf("ferry status, every %.1f s (rates over the last interval; Ctrl+C stops)\n", a.watch);
            print_table(answers, &before);
            if (!tty) std::printf("\n");
        }
        std::fflush(stdout);
        before = std::move(answers);
        if (a.count != 0 && round + 1 >= a.count) break;
        std::this_thread::sleep_until(t0 + std::chrono::milliseconds(static_cast<int>(a.watch * 1000)));
    }
    return 0;
}

}  // namespace

void register_status(CLI::App& app, std::vector<Command>& commands) {
    static StatusArgs a;
    CLI::App* cmd = app.add_subcommand("status", "Ask live ferry-worker daemons what they hold and have done");
    cmd->add_option("--workers", a.workers,
                    "Workers to ask (HOST:PORT,...); default: those announcing themselves with the cluster key")
        ->delimiter(',');
    add_key_options(cmd, a.key_file, a.discover_wait);
    cmd->add_flag("--json", a.json, "Print a JSON array, one object per worker (with --watch: one line per refresh)");
    cmd->add_option("--watch", a.watch,
                    "Refresh every S seconds, in place on a terminal, with each worker's tok/s and ms/token over the "
                    "last interval (not lifetime means) and its peak RSS this session")
        ->check(CLI::Range(0.1, 3600.0));
    cmd->add_option("--count", a.count, "With --watch: stop after N refreshes (default: until Ctrl+C)")
        ->check(CLI::Range(0, 1 << 30));
    cmd->add_option("--timeout", a.timeout, "Seconds to wait for each worker (default 5)")->check(CLI::Range(0.1, 600.0));
    add_log_level_option(cmd, a.log_level);
    cmd->footer(
        "Per worker: uptime, the shard it holds (model hash, layers), weight memory, resident memory now and its\n"
        "peak over the worker's life (VmHWM, to hold against --memory), tokens processed, mean compute time per\n"
        "token, its measured weight-streaming speed and the coordinator it serves (--json adds capabilities,\n"
        "budget, bytes in and out). Exits 1 if any worker could not be asked. A status client never takes the\n"
        "coordinator's place; the worker answers between requests (within a decode step), so a run in progress\n"
        "goes on undisturbed.");
    commands.push_back({cmd, [] { return cmd_status(a); }, &a.log_level});
}

}  // namespace ferry
