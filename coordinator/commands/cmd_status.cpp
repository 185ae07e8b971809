// `ferry status`: asks live ferry-worker daemons what they are doing, as a
// status client: it never takes a worker's coordinator slot and never
// disturbs a run in progress.
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/error.h"
#include "common/net/handshake.h"
#include "common/net/hash.h"
#include "common/net/hub.h"
#include "common/shard_memory.h"
#include "coordinator/commands/commands.h"
#include "coordinator/commands/options.h"

namespace ferry {

namespace {

struct StatusArgs {
    std::vector<std::string> workers;
    bool json = false;
    double timeout = 5;
    std::string log_level = "warn";
};

struct Answer {
    std::string address;
    std::string error;  // empty when `report` is valid
    wire::StatusReport report;
};

std::vector<Answer> ask_all(const StatusArgs& a) {
    net::Hub hub;
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
    std::string t = std::to_string(r.first_layer()) + "-" + std::to_string(r.last_layer() - 1);
    if (r.embedding()) t += "+emb";
    if (r.head()) t += "+head";
    return t;
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
        j["last_layer"] = r.last_layer();
        j["embedding"] = r.embedding();
        j["head"] = r.head();
        j["weight_bytes"] = r.weight_bytes();
    }
    j["coordinator_connected"] = r.coordinator_connected();
    if (r.coordinator_connected()) {
        j["coordinator"] = r.coordinator();
        j["coordinator_since_s"] = r.coordinator_since_s();
        j["next_stage"] = r.next_stage();
    }
    j["busy"] = r.busy();
    j["rss"] = r.rss();
    j["peak_rss"] = r.peak_rss();
    j["tokens"] = r.tokens();
    j["requests"] = r.requests();
    j["compute_ms"] = r.compute_ms();
    j["compute_ms_per_token"] = r.tokens() ? r.compute_ms() / static_cast<double>(r.tokens()) : 0.0;
    j["bytes_in"] = r.bytes_in();
    j["bytes_out"] = r.bytes_out();
    j["shard_bytes_received"] = r.shard_bytes_received();
    return j;
}

int cmd_status(const StatusArgs& a) {
    if (a.workers.empty()) throw Error("--workers: give at least one HOST:PORT");
    const std::vector<Answer> answers = ask_all(a);
    bool all_ok = true;
    for (const Answer& x : answers) all_ok = all_ok && x.error.empty();
    if (a.json) {
        nlohmann::json j = nlohmann::json::array();
        for (const Answer& x : answers) j.push_back(to_json(x));
        std::printf("%s\n", j.dump(2).c_str());
        return all_ok ? 0 : 1;
    }
    std::printf("%-22s %-8s %-10s %8s %9s %8s %8s %9s %10s  %s\n", "node", "uptime", "layers", "weight MB", "RSS MB",
                "peak MB", "tokens", "ms/token", "GB/s f32", "coordinator");
    for (const Answer& x : answers) {
        if (!x.error.empty()) {
            std::printf("%-22s unreachable: %s\n", x.address.c_str(), x.error.c_str());
            continue;
        }
        const wire::StatusReport& r = x.report;
        char up[32];
        std::snprintf(up, sizeof up, "%.0fs", r.uptime_s());
        const std::string coord = r.coordinator_connected() ? r.coordinator() + (r.busy() ? " (busy)" : "") : "none";
        std::printf("%-22s %-8s %-10s %8.1f %9.1f %8.1f %8llu %9.3f %10.2f  %s\n", x.address.c_str(), up,
                    layers_of(r).c_str(), r.weight_bytes() / 1048576.0, r.rss() / 1048576.0, r.peak_rss() / 1048576.0,
                    static_cast<unsigned long long>(r.tokens()), r.tokens() ? r.compute_ms() / r.tokens() : 0.0,
                    r.capabilities().matvec_gbps(), coord.c_str());
    }
    return all_ok ? 0 : 1;
}

}  // namespace

void register_status(CLI::App& app, std::vector<Command>& commands) {
    static StatusArgs a;
    CLI::App* cmd = app.add_subcommand("status", "Ask live ferry-worker daemons what they hold and have done");
    cmd->add_option("--workers", a.workers, "Workers to ask (HOST:PORT,...)")->delimiter(',')->required();
    cmd->add_flag("--json", a.json, "Print a JSON array, one object per worker");
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
