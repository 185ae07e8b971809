#include "coordinator/plan_report.h"

#include <nlohmann/json.hpp>

namespace ferry {

namespace {
double mb(uint64_t bytes) { return bytes / 1048576.0; }

std::string budget_text(uint64_t budget) {
    if (budget == 0) return "unlimited";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f", mb(budget));
    return buf;
}
}  // namespace

std::string format_plan(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers) {
    std::string out;
    char line[256];
    std::snprintf(line, sizeof line, "%-22s %-8s %10s %8s %9s %10s %9s\n", "node", "layers", "weights MB", "KV MB",
                  "total MB", "budget MB", "ms/token");
    out += line;
    for (const PlannedStage& s : plan.stages) {
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        const std::string layers = std::to_string(s.first_layer) + "-" + std::to_string(s.last_layer - 1);
        std::snprintf(line, sizeof line, "%-22s %-8s %10.1f %8.1f %9.1f %10s %9.2f\n", w.address.c_str(),
                      layers.c_str(), mb(s.memory.weights), mb(s.memory.kv_cache), mb(s.memory.total()),
                      budget_text(w.memory_budget).c_str(), s.compute_ms + s.hop_ms);
        out += line;
    }
    const double ms = plan.predicted_ms_per_token;
    std::snprintf(line, sizeof line, "predicted: %.2f ms per token through the workers (%.1f tok/s)\n", ms,
                  ms > 0 ? 1000.0 / ms : 0.0);
    out += line;
    for (int w : plan.left_out)
        out += "left out: " + workers[static_cast<size_t>(w)].address +
               " (the plan is faster without it: another hop costs more than its speed or memory adds)\n";
    return out;
}

std::string plan_json(const PipelinePlan& plan, const std::vector<WorkerCapacity>& workers) {
    nlohmann::json j;
    j["predicted_ms_per_token"] = plan.predicted_ms_per_token;
    j["predicted_tok_per_s"] = plan.predicted_ms_per_token > 0 ? 1000.0 / plan.predicted_ms_per_token : 0.0;
    j["stages"] = nlohmann::json::array();
    for (const PlannedStage& s : plan.stages) {
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        j["stages"].push_back({{"node", w.address},
                               {"first_layer", s.first_layer},
                               {"last_layer", s.last_layer},
                               {"weights_bytes", s.memory.weights},
                               {"kv_cache_bytes", s.memory.kv_cache},
                               {"workspace_bytes", s.memory.workspace + s.memory.buffers},
                               {"overhead_bytes", s.memory.overhead},
                               {"total_bytes", s.memory.total()},
                               {"budget_bytes", w.memory_budget},
                               {"compute_ms", s.compute_ms},
                               {"hop_ms", s.hop_ms}});
    }
    j["left_out"] = nlohmann::json::array();
    for (int w : plan.left_out) j["left_out"].push_back(workers[static_cast<size_t>(w)].address);
    return j.dump(2);
}

}  // namespace ferry
