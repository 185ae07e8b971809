#include "coordinator/serving/live_stats.h"

#include <algorithm>
#include <cstdio>

namespace ferry {

using nlohmann::json;

namespace {

constexpr double kWindowS = 5;     // rates are over the last 5 seconds
constexpr double kHistoryS = 600;  // the chart's span

// Prometheus label values escape backslash, quote and newline.
std::string label(const std::string& v) {
    std::string out;
    for (char c : v) {
        if (c == '\\' || c == '"') out += '\\';
        if (c == '\n') {
            out += "\\n";
            continue;
        }
        out += c;
    }
    return out;
}

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

}  // namespace

void Histogram::observe(double seconds) {
    for (size_t i = 0; i < kBounds.size(); ++i)
        if (seconds <= kBounds[i]) {
            ++buckets[i];
            break;
        }
    ++count;
    sum += seconds;
}

void LiveStats::record(const PipelineStats& nodes, std::vector<ActiveRequest> active, uint64_t tokens_generated,
                       int slots, int queued, double now_s) {
    std::lock_guard lock(mu_);
    if (started_s_ < 0) started_s_ = now_s;
    // A new chain (after a recovery) counts from zero: rates restart with it.
    if (!recent_.empty()) {
        const auto& before = recent_.back().nodes.nodes;
        bool same = before.size() == nodes.nodes.size();
        for (size_t i = 0; same && i < before.size(); ++i)
            same = before[i].address == nodes.nodes[i].address && before[i].positions <= nodes.nodes[i].positions;
        if (!same) recent_.clear();
    }
    recent_.push_back(Sample{now_s, nodes, tokens_generated});
    while (recent_.size() > 2 && recent_.front().t < now_s - 2 * kWindowS) recent_.pop_front();
    active_ = std::move(active);
    tokens_ = tokens_generated;
    slots_ = slots;
    queued_ = queued;
    // One history point per second: tokens generated over the last second.
    if (history_.empty() || now_s - history_.back().first >= 1) {
        const Sample* base = &recent_.front();
        for (const Sample& s : recent_)
            if (s.t <= now_s - 1) base = &s;
        const double dt = now_s - base->t;
        history_.emplace_back(now_s, dt > 0 ? (tokens_generated - base->tokens) / dt : 0.0);
        while (!history_.empty() && history_.front().first < now_s - kHistoryS) history_.pop_front();
    }
}

void LiveStats::observe_first_token(double seconds) {
    std::lock_guard lock(mu_);
    first_token_.observe(seconds);
}

void LiveStats::observe_token_gap(double seconds) {
    std::lock_guard lock(mu_);
    token_gap_.observe(seconds);
}

void LiveStats::count_response(int status) {
    std::lock_guard lock(mu_);
    for (auto& [s, n] : responses_)
        if (s == status) {
            ++n;
            return;
        }
    responses_.emplace_back(status, 1);
}

json LiveStats::dashboard(const std::string& model, double now_s) const {
    std::lock_guard lock(mu_);
    json j;
    j["model"] = model;
    j["slots"] = slots_;
    j["queued"] = queued_;
    j["active"] = static_cast<int>(active_.size());
    j["uptime_s"] = started_s_ < 0 ? 0.0 : now_s - started_s_;
    j["tokens_generated"] = tokens_;
    j["nodes"] = json::array();
    j["requests"] = json::array();
    j["history"] = json::array();
    if (recent_.empty()) return j;
    const Sample& last = recent_.back();
    j["recovery"] = recovery_json(last.nodes.recovery);
    const Sample* base = &recent_.front();
    for (const Sample& s : recent_)
        if (s.t <= last.t - kWindowS) base = &s;
    const double dt = last.t - base->t;
    j["tok_s"] = dt > 0 ? (last.tokens - base->tokens) / dt : 0.0;
    for (size_t i = 0; i < last.nodes.nodes.size(); ++i) {
        const NodeStats& n = last.nodes.nodes[i];
        const NodeStats* b = i < base->nodes.nodes.size() ? &base->nodes.nodes[i] : nullptr;
        const double positions = b ? static_cast<double>(n.positions - b->positions) : 0;
        const double steps = b ? static_cast<double>(n.requests - b->requests) : 0;
        const double compute = b ? n.compute_ms - b->compute_ms : 0, net = b ? n.net_ms - b->net_ms : 0;
        json node = node_identity_json(n);
        node.update({{"memory_needed", n.memory_needed},
                     {"kv_slots", n.kv_slots},
                     {"kv_slots_in_use", static_cast<int>(active_.size())},
                     {"link_rtt_ms", n.link_rtt_ms},
                     {"positions", n.positions},
                     {"tok_s", dt > 0 ? positions / dt : 0.0},
                     {"compute_ms_per_step", steps > 0 ? compute / steps : 0.0},
                     {"network_ms_per_step", steps > 0 ? net / steps : 0.0},
                     {"busy", dt > 0 ? std::min(1.0, compute / (dt * 1000)) : 0.0},
                     {"predicted_compute_ms", n.predicted_compute_ms},
                     {"predicted_network_ms", n.predicted_net_ms}});
        j["nodes"].push_back(node);
    }
    for (const ActiveRequest& r : active_)
        j["requests"].push_back({{"slot", r.slot},
                                 {"prompt_tokens", r.prompt_tokens},
                                 {"prompt_done", r.prompt_done},
                                 {"generated", r.generated},
                                 {"age_s", r.age_s},
                                 {"tok_s", r.decode_s > 0 ? r.generated / r.decode_s : 0.0}});
    for (const auto& [t, v] : history_) j["history"].push_back({t - last.t, v});
    return j;
}

std::string LiveStats::prometheus() const {
    std::lock_guard lock(mu_);
    std::string out;
    auto family = [&](const char* name, const char* type, const char* help) {
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    };
    const PipelineStats empty;
    const PipelineStats& nodes = recent_.empty() ? empty : recent_.back().nodes;
    struct PerNode {
        const char* name;
        const char* type;
        const char* help;
        double (*value)(const NodeStats&);
    };
    const PerNode per_node[] = {
        {"ferry_node_positions_total", "counter", "Token positions the node processed.",
         [](const NodeStats& n) { return static_cast<double>(n.positions); }},
        {"ferry_node_compute_seconds_total", "counter", "Seconds the node computed.",
         [](const NodeStats& n) { return n.compute_ms / 1e3; }},
        {"ferry_node_network_seconds_total", "counter", "Seconds activations travelled into the node.",
         [](const NodeStats& n) { return n.net_ms / 1e3; }},
        {"ferry_node_resident_bytes", "gauge", "Resident memory of the node's process.",
         [](const NodeStats& n) { return static_cast<double>(n.rss); }},
        {"ferry_node_peak_resident_bytes", "gauge", "Peak resident memory of the node's process.",
         [](const NodeStats& n) { return static_cast<double>(n.peak_rss); }},
        {"ferry_node_memory_budget_bytes", "gauge", "The node's --memory (0: not limited).",
         [](const NodeStats& n) { return static_cast<double>(n.memory_budget); }},
        {"ferry_node_kv_slots", "gauge", "Sequences the node keeps a KV cache for.",
         [](const NodeStats& n) { return static_cast<double>(n.kv_slots); }},
        {"ferry_node_shard_bytes", "gauge", "Bytes of weights the node holds.",
         [](const NodeStats& n) { return static_cast<double>(n.weight_bytes); }},
    };
    for (const PerNode& m : per_node) {
        family(m.name, m.type, m.help);
        for (const NodeStats& n : nodes.nodes)
            out += std::string(m.name) + "{node=\"" + label(n.address) + "\",layers=\"" + label(n.layers) + "\"} " +
                   number(m.value(n)) + "\n";
    }
    family("ferry_responses_total", "counter", "HTTP responses by status code.");
    for (const auto& [status, n] : responses_)
        out += "ferry_responses_total{status=\"" + std::to_string(status) + "\"} " + std::to_string(n) + "\n";
    family("ferry_tokens_generated_total", "counter", "Tokens generated for all requests.");
    out += "ferry_tokens_generated_total " + std::to_string(tokens_) + "\n";
    family("ferry_sequences_active", "gauge", "Sequences in flight.");
    out += "ferry_sequences_active " + std::to_string(active_.size()) + "\n";
    family("ferry_sequence_slots", "gauge", "Sequences that may be in flight at once (--parallel).");
    out += "ferry_sequence_slots " + std::to_string(slots_) + "\n";
    family("ferry_queue_depth", "gauge", "Requests waiting for a free slot.");
    out += "ferry_queue_depth " + std::to_string(queued_) + "\n";
    const RecoveryStats& r = nodes.recovery;
    family("ferry_recoveries_total", "counter", "Times the chain was rebuilt after a worker failed.");
    out += "ferry_recoveries_total " + std::to_string(r.count) + "\n";
    family("ferry_last_recovery_seconds", "gauge", "What the last recovery took, by phase (total: all but detect).");
    for (const auto& [phase, ms] : {std::pair<const char*, double>{"detect", r.detect_ms}, {"plan", r.plan_ms},
                                    {"shards", r.shards_ms}, {"replay", r.replay_ms}, {"total", r.total_ms}})
        out += std::string("ferry_last_recovery_seconds{phase=\"") + phase + "\"} " + number(ms / 1e3) + "\n";
    auto histogram = [&](const char* name, const char* help, const Histogram& h) {
        family(name, "histogram", help);
        uint64_t cumulative = 0;
        for (size_t i = 0; i < Histogram::kBounds.size(); ++i) {
            cumulative += h.buckets[i];
            out += std::string(name) + "_bucket{le=\"" + number(Histogram::kBounds[i]) + "\"} " +
                   std::to_string(cumulative) + "\n";
        }
        out += std::string(name) + "_bucket{le=\"+Inf\"} " + std::to_string(h.count) + "\n";
        out += std::string(name) + "_sum " + number(h.sum) + "\n";
        out += std::string(name) + "_count " + std::to_string(h.count) + "\n";
    };
    histogram("ferry_time_to_first_token_seconds", "From a request's arrival to its first token.", first_token_);
    histogram("ferry_token_latency_seconds", "Between consecutive tokens of a reply.", token_gap_);
    return out;
}

}  // namespace ferry
