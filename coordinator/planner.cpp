#include "coordinator/planner.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.h"
#include "common/weights.h"

namespace ferry {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
// Speed assumed for a worker that has not measured one: equal for all, so the
// plan then depends on memory and links only.
constexpr double kNominalGbps = 1.0;
}  // namespace

std::vector<uint64_t> layer_weight_bytes(const ModelFile& file) {
    const ModelConfig& c = file.config;
    std::vector<uint64_t> bytes(static_cast<size_t>(c.n_layers), 0);
    for (int l = 0; l < c.n_layers; ++l)
        bytes[static_cast<size_t>(l)] = shard_memory(c, file.tensors, ShardSpec{l, l + 1, false, false}, 0).weights;
    return bytes;
}

PlanProblem make_plan_problem(const ModelFile& file, int context, int wire_bytes_per_value, KvType kv_type) {
    const ModelConfig& c = file.config;
    PlanProblem p;
    p.layer_read_bytes = layer_weight_bytes(file);
    for (int l = 0; l < c.n_layers; ++l) {
        const ShardMemory m = shard_memory(c, file.tensors, ShardSpec{l, l + 1, false, false}, context, kv_type);
        p.layer_memory.push_back(m.weights + m.kv_cache);
        p.stage_fixed_memory = m.workspace + m.buffers + m.overhead;
    }
    p.hop_bytes = static_cast<uint64_t>(c.dim) * wire_bytes_per_value;
    return p;
}

double hop_ms(const PlanProblem& p, const WorkerCapacity& w) {
    const double transfer = w.link_mbps > 0 ? p.hop_bytes * 8.0 / (w.link_mbps * 1e6) * 1e3 : 0.0;
    return w.link_latency_ms + transfer;
}

double stage_cost_ms(const PlanProblem& p, const WorkerCapacity& w, int first, int last) {
    uint64_t memory = p.stage_fixed_memory, read = 0;
    for (int l = first; l < last; ++l) {
        memory += p.layer_memory[static_cast<size_t>(l)];
        read += p.layer_read_bytes[static_cast<size_t>(l)];
    }
    if (w.memory_budget > 0 && memory > w.memory_budget) return kInf;
    const double gbps = w.matvec_gbps > 0 ? w.matvec_gbps : kNominalGbps;
    return read / (gbps * 1e9) * 1e3 + hop_ms(p, w);
}

namespace {

PipelinePlan finish(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                    std::vector<PlannedStage> stages) {
    PipelinePlan plan;
    std::vector<bool> used(workers.size(), false);
    for (PlannedStage& s : stages) {
        const WorkerCapacity& w = workers[static_cast<size_t>(s.worker)];
        s.hop_ms = hop_ms(p, w);
        s.compute_ms = stage_cost_ms(p, w, s.first_layer, s.last_layer) - s.hop_ms;
        plan.predicted_ms_per_token += s.compute_ms + s.hop_ms;
        used[static_cast<size_t>(s.worker)] = true;
    }
    if (!stages.empty()) plan.predicted_ms_per_token += stages.back().hop_ms;  // back to the coordinator
    for (size_t w = 0; w < workers.size(); ++w)
        if (!used[w]) plan.left_out.push_back(static_cast<int>(w));
    plan.stages = std::move(stages);
    return plan;
}

[[noreturn]] void refuse(const PlanProblem& p, const std::vector<WorkerCapacity>& workers) {
    const uint64_t layers = std::accumulate(p.layer_memory.begin(), p.layer_memory.end(), uint64_t{0});
    const uint64_t weights = std::accumulate(p.layer_read_bytes.begin(), p.layer_read_bytes.end(), uint64_t{0});
    uint64_t offered = 0;
    for (const WorkerCapacity& w : workers) offered += w.memory_budget;
    // Each used worker also pays the fixed cost of a stage; with every worker used:
    const uint64_t need = layers + p.stage_fixed_memory * workers.size();
    std::string msg = "the " + std::to_string(workers.size()) + " workers cannot hold this model: its layers need " +
                      format_bytes(layers) + " (weights " + format_bytes(weights) + ", KV cache " +
                      format_bytes(layers - weights) + ") plus " + format_bytes(p.stage_fixed_memory) +
                      " per worker, and the budgets offer " + format_bytes(offered);
    if (need > offered) msg += " (at least " + format_bytes(need - offered) + " more)";
    else msg += " but not in pieces that fit";
    msg += "; fixes: a shorter --ctx, a smaller --kv-type, a quantized model (q8_0 ~3.8x, q4_0 ~7x smaller "
           "than f32), or more workers or memory";
    throw Error(msg);
}

}  // namespace

PipelinePlan plan_optimal(const PlanProblem& p, const std::vector<WorkerCapacity>& workers) {
    const int L = static_cast<int>(p.layer_memory.size());
    const int N = static_cast<int>(workers.size());
    if (N == 0) throw Error("--workers: no workers given");
    // best[j][i]: least cost with layers [0, i) placed and worker j holding the stage that ends at i.
    // reach[j][i]: least cost with layers [0, i) placed on workers before j (any of them last).
    std::vector<std::vector<double>> best(N, std::vector<double>(L + 1, kInf));
    std::vector<std::vector<int>> from(N, std::vector<int>(L + 1, -1));  // start layer of that stage
    std::vector<std::vector<int>> from_worker(N, std::vector<int>(L + 1, -1));
    std::vector<double> reach(L + 1, kInf);
    std::vector<int> reach_worker(L + 1, -1);  // which worker holds layer i-1 in reach (-1: none yet)
    reach[0] = 0;
    for (int j = 0; j < N; ++j) {
        for (int i = 1; i <= L; ++i) {
            for (int k = 0; k < i; ++k) {
                if (reach[k] == kInf) continue;
                const double c = reach[k] + stage_cost_ms(p, workers[j], k, i);
                if (c < best[j][i]) {
                    best[j][i] = c;
                    from[j][i] = k;
                    from_worker[j][i] = reach_worker[k];
                }
            }
        }
        for (int i = 1; i <= L; ++i)
            if (best[j][i] < reach[i]) {
                reach[i] = best[j][i];
                reach_worker[i] = j;
            }
    }
    int last = -1;
    double total = kInf;
    for (int j = 0; j < N; ++j) {
        const double c = best[j][L] + hop_ms(p, workers[j]);
        if (c < total) {
            total = c;
            last = j;
        }
    }
    if (last < 0) refuse(p, workers);
    std::vector<PlannedStage> stages;
    for (int j = last, i = L; j >= 0 && i > 0;) {
        const int k = from[j][i];
        stages.insert(stages.begin(), PlannedStage{j, k, i, {}, 0, 0});
        const int prev = from_worker[j][i];
        i = k;
        j = prev;
    }
    return finish(p, workers, std::move(stages));
}

PipelinePlan plan_forced(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                         const std::vector<int>& split) {
    const int L = static_cast<int>(p.layer_memory.size());
    if (split.size() != workers.size())
        throw Error("--split gives " + std::to_string(split.size()) + " layer counts for " +
                    std::to_string(workers.size()) + " workers; give one count per worker");
    for (int n : split)
        if (n < 1) throw Error("--split: every worker needs at least one layer (got " + std::to_string(n) + ")");
    const int sum = std::accumulate(split.begin(), split.end(), 0);
    if (sum != L) throw Error("--split adds up to " + std::to_string(sum) + " layers; the model has " + std::to_string(L));
    std::vector<PlannedStage> stages;
    int first = 0;
    for (size_t w = 0; w < split.size(); ++w) {
        if (stage_cost_ms(p, workers[w], first, first + split[w]) == kInf)
            throw Error(workers[w].address + ": layers " + std::to_string(first) + "-" +
                        std::to_string(first + split[w] - 1) + " do not fit its memory budget of " +
                        format_bytes(workers[w].memory_budget) + "; give it fewer layers or drop --split");
        stages.push_back({static_cast<int>(w), first, first + split[w], {}, 0, 0});
        first += split[w];
    }
    return finish(p, workers, std::move(stages));
}

void fill_stage_memory(const ModelFile& file, int context, KvType kv_type, PipelinePlan& plan) {
    for (PlannedStage& s : plan.stages)
        s.memory = shard_memory(file.config, file.tensors, ShardSpec{s.first_layer, s.last_layer, false, false},
                                context, kv_type);
}

PipelinePlan plan_pipeline(const ModelFile& file, int context, const std::vector<WorkerCapacity>& workers,
                           const std::vector<int>& forced_split, int wire_bytes_per_value, KvType kv_type) {
    const PlanProblem p = make_plan_problem(file, context, wire_bytes_per_value, kv_type);
    PipelinePlan plan = forced_split.empty() ? plan_optimal(p, workers) : plan_forced(p, workers, forced_split);
    fill_stage_memory(file, context, kv_type, plan);
    return plan;
}

}  // namespace ferry
