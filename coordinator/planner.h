// The one place a pipeline's partition is decided: which workers run which
// contiguous layer ranges, and what that is predicted to cost.
//
// For one stream the stages run one after another, so the time per token is
// the sum over used stages of (compute + the hop into the stage) plus the hop
// back. The planner minimises that under every worker's memory budget, keeping
// the workers in the order given (the chain) and skipping any whose use would
// cost more time than it saves. It is exact (dynamic programming over
// (layers placed, last worker used)) and deterministic.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/shard_memory.h"

namespace ferry {

struct WorkerCapacity {
    std::string address;
    uint64_t memory_budget = 0;  // bytes the worker may use; 0 = not limited
    double matvec_gbps = 0;      // measured weight-streaming speed; 0 = unknown (treated as equal)
    double link_mbps = 0;        // coordinator <-> worker throughput, Mbit/s; 0 = unknown (free)
    double link_latency_ms = 0;  // one-way latency
};

struct PlannedStage {
    int worker = 0;  // index into the capacities given to the planner
    int first_layer = 0;
    int last_layer = 0;  // exclusive
    ShardMemory memory;
    double compute_ms = 0;  // predicted per decoded token
    double hop_ms = 0;      // predicted for the activation into this stage
};

struct PipelinePlan {
    std::vector<PlannedStage> stages;  // in chain order
    double predicted_ms_per_token = 0;
    std::vector<int> left_out;  // workers given but not used
};

// The planner's view of a model: what each layer costs in memory and time.
struct PlanProblem {
    std::vector<uint64_t> layer_memory;      // weights + KV cache of each layer
    std::vector<uint64_t> layer_read_bytes;  // weight bytes read per decoded token
    uint64_t stage_fixed_memory = 0;         // workspace, buffers and process overhead of any stage
    uint64_t hop_bytes = 0;                  // activation bytes crossing one stage boundary per token
};

PlanProblem make_plan_problem(const ModelFile& file, int context, int wire_bytes_per_value,
                              KvType kv_type = KvType::f32);

// Cost of one stage: worker w running layers [first, last). Infinity if it does not fit.
double stage_cost_ms(const PlanProblem& p, const WorkerCapacity& w, int first, int last);
double hop_ms(const PlanProblem& p, const WorkerCapacity& w);

// The optimal plan, or throws ferry::Error explaining the shortfall.
PipelinePlan plan_optimal(const PlanProblem& p, const std::vector<WorkerCapacity>& workers);
// A plan with the given layers per worker (each >= 1, summing to the layers).
PipelinePlan plan_forced(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                         const std::vector<int>& layers_per_worker);

// Entry point for `ferry run/plan/bench --workers`: forced_split empty means optimal.
PipelinePlan plan_pipeline(const ModelFile& file, int context, const std::vector<WorkerCapacity>& workers,
                           const std::vector<int>& forced_split, int wire_bytes_per_value = 4,
                           KvType kv_type = KvType::f32);

// Fills each stage's ShardMemory with shard_memory() for its range.
void fill_stage_memory(const ModelFile& file, int context, KvType kv_type, PipelinePlan& plan);

// Bytes of weights each layer holds, from the model's tensor directory.
std::vector<uint64_t> layer_weight_bytes(const ModelFile& file);

}  // namespace ferry
