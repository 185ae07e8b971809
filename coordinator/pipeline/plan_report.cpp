#include "coordinator/pipeline/plan_report.h"

#include <cstdio>

#include "common/shard_memory.h"
#include <nlohmann/json.hpp>

namespace ferry {

namespace {


std::string budget_text(uint64_t budget) {
    if (budget == 0) return "unlimited";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", to_mb(budget));
    return buf;
}

std::string use_text(uint64_t total, uint64_t budget) {
    if (budget == 0) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f%%", 100.0 * total / budget);
    return buf;
}

struct Split {
    double compute = 0, network = 0;
};
Split split_of(const PipelinePlan& plan) {
    Split s;
    for (const PlannedStage& st : plan.stages) {
        s.compute += st.compute_ms;
        s.network += st.hop_ms;
    }
    s.compute += plan.coordinator_ms;
    s.network += plan.return_hop_ms;
    // The slices run at once: the slowest one's share.
    const PlannedSlice* slowest = nullptr;
    for (const PlannedSlice& sl : plan.slices)
        if (!slowest || sl.compute_ms + sl.hop_ms > slowest->compute_ms + slowest->hop_ms) slowest = &sl;
    if (slowest) {
        s.compute += slowest->compute_ms;
        s.network += slowest->hop_ms;
    }
    return s;
}

std::string slice_text(const PlannedSlice& sl) {
    ShardSpec spec;
    spec.vocab_first = sl.vocab_first;
    spec.vocab_last = sl.vocab_last;
    return vocab_text(spec);
}

const PlannedSlice* slice_of(const PipelinePlan& plan, int worker) {
    for (const PlannedSlice& sl : plan.slices)
        if (sl.worker == worker) return &sl;
    return nullptr;
}

std::string coordinator_keeps(const PipelinePlan& plan) {
    const bool embedding = !plan.stages.empty() && !plan.stages.front().embedding;
    const bool head = !plan.stages.empty() && !plan.stages.back().head && plan.slices.empty();
    if (!embedding && !head) return "the tokenizer only";
    if (embedding && !head && plan.embedding_by_rows)
        return "the embedding, read a row at a time from the model file (" + format_bytes(plan.coordinator_weights) + ")";
    std::string what = embedding && head ? "the embedding and the head" : embedding ? "the embedding" : "the head";
    return what + " (" + format_bytes(plan.coordinator_weights) + " of weights)";
}

}  // namespace

std::string stage_holds(const PlannedStage& s) {
    std::string t = s.last_layer - s.first_layer == 1 ? "layer " + std::to_string(s.first_layer)
                                                      : "layers " + std::to_string(s.first_layer) + "-" +
                                                            std::to_string(s.last_layer - 1);
    if (s.embedding) t = "embedding + " + t;
    if (s.head) t += " + head";
    return t;
}

std::string format_plan(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers) {
    std::string out;
    char line[512];
    std::snprintf(line, sizeof line, "plan: context %d, KV cache %s, activations %s between stages%s", plan.context,
                  kv_type_name(plan.kv_type), plan.wire_bytes == 2 ? "f16" : "f32",
                  plan.forced_split ? ", layers as --split gives them" : "");
    out += line;
    if (plan.slots > 1) out += ", " + std::to_string(plan.slots) + " sequences at once (a KV cache each)";
    if (plan.max_positions > 0 && plan.max_positions < plan.context)
        out += ", prompts in requests of at most " + std::to_string(plan.max_positions) + " positions";
    out += "\n";
    std::snprintf(line, sizeof line, "%-5s %-22s %-36s %10s %8s %8s %9s %10s %5s %9s\n", "stage", "node", "holds",
                  "weights MB", "KV MB", "other MB", "total MB", "budget MB", "use", "ms/token");
    out += line;
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        const PlannedStage& s = plan.stages[i];
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        const ShardMemory& m = s.memory;
        const PlannedSlice* sl = slice_of(plan, s.worker);
        const std::string holds = stage_holds(s) + (sl ? " + " + slice_text(*sl) : std::string());
        std::snprintf(line, sizeof line, "%-5zu %-22s %-36s %10.1f %8.1f %8.1f %9.1f %10s %5s %9.3f\n", i + 1,
                      w.address.c_str(), holds.c_str(), to_mb(m.weights), to_mb(m.kv_cache),
                      to_mb(m.workspace + m.buffers + m.overhead), to_mb(m.total()), budget_text(w.memory_budget).c_str(),
                      use_text(m.total(), w.memory_budget).c_str(), s.compute_ms + s.hop_ms);
        out += line;
    }
    for (const PlannedSlice& sl : plan.slices) {
        if (!sl.slice_only) continue;
        const WorkerCapacity& w = workers[static_cast<size_t>(sl.worker)];
        const ShardMemory& m = sl.shard;
        std::snprintf(line, sizeof line, "%-5s %-22s %-36s %10.1f %8.1f %8.1f %9.1f %10s %5s %9.3f\n", "-",
                      w.address.c_str(), slice_text(sl).c_str(), to_mb(m.weights), to_mb(m.kv_cache),
                      to_mb(m.workspace + m.buffers + m.overhead), to_mb(m.total()), budget_text(w.memory_budget).c_str(),
                      use_text(m.total(), w.memory_budget).c_str(), sl.compute_ms + sl.hop_ms);
        out += line;
    }
    if (!plan.slices.empty()) {
        std::snprintf(line, sizeof line,
                      "classifier in %zu vocabulary slice%s, all answering each token at once: %.3f ms per token "
                      "(the slowest, with its hops)\n",
                      plan.slices.size(), plan.slices.size() == 1 ? "" : "s", plan.slices_ms);
        out += line;
    }
    out += "coordinator keeps " + coordinator_keeps(plan);
    if (plan.coordinator_ms > 0) {
        std::snprintf(line, sizeof line, "; its classifier: %.3f ms per token", plan.coordinator_ms);
        out += line;
    }
    out += "\n";
    const double ms = plan.predicted_ms_per_token;
    const Split sp = split_of(plan);
    std::snprintf(line, sizeof line,
                  "predicted: %.3f ms per token = compute %.3f ms + network %.3f ms (%.3g tok/s)\n", ms, sp.compute,
                  sp.network, ms > 0 ? 1000.0 / ms : 0.0);
    out += line;
    for (const LeftOutWorker& l : plan.left_out_reasons)
        out += "left out: " + workers[static_cast<size_t>(l.worker)].address + ": " + l.reason + "\n";
    return out;
}

std::string plan_json(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers) {
    nlohmann::json j;
    const Split sp = split_of(plan);
    j["context"] = plan.context;
    j["kv_type"] = kv_type_name(plan.kv_type);
    j["wire"] = plan.wire_bytes == 2 ? "f16" : "f32";
    j["forced_split"] = plan.forced_split;
    j["max_positions"] = plan.max_positions > 0 ? plan.max_positions : plan.context;
    j["parallel"] = plan.slots;
    j["predicted_ms_per_token"] = plan.predicted_ms_per_token;
    j["predicted_tok_per_s"] = plan.predicted_ms_per_token > 0 ? 1000.0 / plan.predicted_ms_per_token : 0.0;
    j["predicted_compute_ms"] = sp.compute;
    j["predicted_network_ms"] = sp.network;
    j["return_hop_ms"] = plan.return_hop_ms;
    const bool embedding_on_worker = !plan.stages.empty() && plan.stages.front().embedding;
    const bool head_on_worker = !plan.stages.empty() && plan.stages.back().head;
    j["coordinator"] = {{"embedding", !embedding_on_worker},
                        {"head", !head_on_worker && plan.slices.empty()},
                        {"weights_bytes", plan.coordinator_weights},
                        {"compute_ms", plan.coordinator_ms}};
    j["stages"] = nlohmann::json::array();
    for (size_t i = 0; i < plan.stages.size(); ++i) {
        const PlannedStage& s = plan.stages[i];
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        const ShardMemory& m = s.memory;
        j["stages"].push_back({{"stage", i + 1},
                               {"node", w.address},
                               {"worker_index", s.worker},
                               {"first_layer", s.first_layer},
                               {"end_layer", s.last_layer},  // exclusive
                               {"embedding", s.embedding},
                               {"head", s.head},
                               {"weights_bytes", m.weights},
                               {"embedding_bytes", m.embedding},
                               {"head_bytes", m.head},
                               {"kv_cache_bytes", m.kv_cache},
                               {"workspace_bytes", m.workspace},
                               {"buffers_bytes", m.buffers},
                               {"overhead_bytes", m.overhead},
                               {"total_bytes", m.total()},
                               {"budget_bytes", w.memory_budget},
                               {"compute_ms", s.compute_ms},
                               {"hop_ms", s.hop_ms}});
    }
    j["slices"] = nlohmann::json::array();
    for (const PlannedSlice& sl : plan.slices) {
        const WorkerCapacity& w = workers[static_cast<size_t>(sl.worker)];
        j["slices"].push_back({{"node", w.address},
                               {"worker_index", sl.worker},
                               {"vocab_first", sl.vocab_first},
                               {"vocab_end", sl.vocab_last},  // exclusive
                               {"slice_only", sl.slice_only},
                               {"bytes", sl.memory},
                               {"total_bytes", sl.slice_only ? sl.shard.total() : 0},
                               {"budget_bytes", w.memory_budget},
                               {"compute_ms", sl.compute_ms},
                               {"hop_ms", sl.hop_ms}});
    }
    j["slices_ms"] = plan.slices_ms;
    j["left_out"] = nlohmann::json::array();
    for (const LeftOutWorker& l : plan.left_out_reasons)
        j["left_out"].push_back({{"node", workers[static_cast<size_t>(l.worker)].address},
                                 {"worker_index", l.worker},
                                 {"reason", l.reason}});
    return j.dump(2);
}

}  // namespace ferry
