#include "coordinator/pipeline/node_table.h"

#include <cstdio>

#include "common/shard_memory.h"

namespace ferry {

namespace {
double per(double total, uint64_t n) { return n ? total / static_cast<double>(n) : 0.0; }
}  // namespace

std::string format_node_table(const PipelineStats& s) {
    std::string out;
    char line[400];
    std::snprintf(line, sizeof line, "%-22s %-10s %9s %8s %8s %7s %10s %9s %8s %8s %8s %9s %9s\n", "node", "layers",
                  "weight MB", "RSS MB", "peak MB", "tokens", "compute ms", "decode ms", "plan ms", "net ms",
                  "plan net", "sent B", "recv B");
    out += line;
    auto predicted = [](double ms) {
        char b[32];
        if (ms > 0) std::snprintf(b, sizeof b, "%.3f", ms);
        else std::snprintf(b, sizeof b, "-");
        return std::string(b);
    };
    for (const NodeStats& n : s.nodes) {
        std::snprintf(line, sizeof line, "%-22s %-10s %9.1f %8.1f %8.1f %7llu %10.3f %9.3f %8s %8.3f %8s %9.0f %9.0f\n",
                      n.address.c_str(), n.layers.c_str(), to_mb(n.weight_bytes), to_mb(n.rss), to_mb(n.peak_rss),
                      static_cast<unsigned long long>(n.positions), per(n.compute_ms, n.positions),
                      per(n.decode_compute_ms, n.decode_requests), predicted(n.predicted_compute_ms).c_str(),
                      n.decode_requests ? per(n.decode_net_ms, n.decode_requests) : per(n.net_ms, n.positions),
                      predicted(n.predicted_net_ms).c_str(), per(static_cast<double>(n.bytes_sent), n.positions),
                      per(static_cast<double>(n.bytes_received), n.positions));
        out += line;
    }
    out += "(compute ms, sent and recv B: per token processed, prefill included; decode ms: compute per decoded token, "
           "plan ms: the plan's prediction of it; net ms: the activation's trip into the node per decoded token, "
           "clocks aligned at connect, plan net: predicted)\n";
    if (s.decode_tokens > 0 && s.decode_ms > 0) {
        const double ms = s.decode_ms / s.decode_tokens;
        const double compute = s.decode_compute_ms / s.decode_tokens;
        const double net = ms > compute ? ms - compute : 0.0;
        std::snprintf(line, sizeof line,
                      "decode: %.2f tok/s end to end, %.3f ms per token = compute %.3f ms (%.1f%%) + network and "
                      "overhead %.3f ms (%.1f%%)\n",
                      1000.0 / ms, ms, compute, 100.0 * compute / ms, net, 100.0 * net / ms);
        out += line;
    }
    if (s.prefill_tokens > 0 && s.prefill_ms > 0) {
        std::snprintf(line, sizeof line, "prefill: %llu tokens in %.1f ms (%.1f tok/s)\n",
                      static_cast<unsigned long long>(s.prefill_tokens), s.prefill_ms,
                      s.prefill_tokens * 1000.0 / s.prefill_ms);
        out += line;
    }
    std::snprintf(line, sizeof line, "shard bytes sent: %llu", static_cast<unsigned long long>(s.shard_bytes_sent));
    out += line;
    if (s.shard_bytes_sent > 0 && s.shard_seconds > 0) {
        std::snprintf(line, sizeof line, " in %.2f s (%.1f MB/s)", s.shard_seconds,
                      to_mb(s.shard_bytes_sent) / s.shard_seconds);
        out += line;
    }
    out += "\n";
    if (s.recovery.count > 0) out += format_recovery(s.recovery) + "\n";
    return out;
}

std::string format_recovery(const RecoveryStats& r) {
    char line[400];
    std::snprintf(line, sizeof line,
                  "recoveries: %d; the last in %.0f ms after detection in %.0f ms: re-plan %.0f ms, shards %.0f ms "
                  "(%.1f MB sent), replay %.0f ms (%llu positions); cause: ",
                  r.count, r.total_ms, r.detect_ms, r.plan_ms, r.shards_ms, to_mb(r.shard_bytes), r.replay_ms,
                  static_cast<unsigned long long>(r.replayed_positions));
    return line + r.failure;
}

nlohmann::json recovery_json(const RecoveryStats& r) {
    return {{"count", r.count},         {"failure", r.failure},
            {"detect_ms", r.detect_ms}, {"plan_ms", r.plan_ms},
            {"shards_ms", r.shards_ms}, {"shard_bytes", r.shard_bytes},
            {"replay_ms", r.replay_ms}, {"replayed_positions", r.replayed_positions},
            {"total_ms", r.total_ms}};
}

nlohmann::json node_identity_json(const NodeStats& n) {
    return {{"address", n.address},   {"layers", n.layers}, {"arch", n.arch},         {"kernel_level", n.kernel_level},
            {"weight_bytes", n.weight_bytes}, {"rss", n.rss}, {"peak_rss", n.peak_rss}, {"memory_budget", n.memory_budget}};
}

nlohmann::json node_stats_json(const PipelineStats& s) {
    nlohmann::json j;
    j["nodes"] = nlohmann::json::array();
    for (const NodeStats& n : s.nodes) {
        const double decode_ms = n.decode_requests ? n.decode_compute_ms / static_cast<double>(n.decode_requests) : 0.0;
        const double decode_net = n.decode_requests ? n.decode_net_ms / static_cast<double>(n.decode_requests) : 0.0;
        nlohmann::json node = node_identity_json(n);
        node.update({{"positions", n.positions},
                              {"requests", n.requests},
                              {"compute_ms", n.compute_ms},
                              {"network_ms", n.net_ms},
                              {"decode_steps", n.decode_requests},
                              {"decode_compute_ms_per_token", decode_ms},
                              {"decode_network_ms_per_token", decode_net},
                              {"predicted_compute_ms_per_token", n.predicted_compute_ms},
                              {"predicted_network_ms_per_token", n.predicted_net_ms},
                              {"bytes_sent", n.bytes_sent},
                              {"bytes_received", n.bytes_received}});
        j["nodes"].push_back(std::move(node));
    }
    j["decode"] = {{"tokens", s.decode_tokens},
                   {"ms", s.decode_ms},
                   {"tok_s", s.decode_ms > 0 ? s.decode_tokens * 1000.0 / s.decode_ms : 0.0},
                   {"compute_ms", s.decode_compute_ms}};
    j["prefill"] = {{"tokens", s.prefill_tokens},
                    {"ms", s.prefill_ms},
                    {"tok_s", s.prefill_ms > 0 ? s.prefill_tokens * 1000.0 / s.prefill_ms : 0.0}};
    j["shards"] = {{"bytes_sent", s.shard_bytes_sent}, {"seconds", s.shard_seconds}};
    j["recoveries"] = s.recovery.count;
    j["last_recovery"] = recovery_json(s.recovery);
    return j;
}

}  // namespace ferry
