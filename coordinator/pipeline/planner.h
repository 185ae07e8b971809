// The one place a pipeline's partition is decided: which workers run which
// contiguous layer ranges, where the embedding table and the head (final
// norm and classifier) live, and what that is predicted to cost.
//
// The cost model, per decoded token (one stream: the stages run one after
// another, so times add up):
//   - compute of a stage: the bytes it reads per token (its layers' weights,
//     their KV cache up to half the context, the mean over a generation that
//     fills it, and the classifier if it holds the head) over the worker's
//     measured GB/s for each type (WorkerCapacity::type_gbps, else matvec_gbps);
//   - a hop between two nodes: latency plus bytes over bandwidth. Links are
//     measured from the coordinator, so a hop worker a -> worker b takes the
//     mean of their one-way latencies and the smaller of their Mbit/s (on a
//     switched LAN the slower end limits); the coordinator's own end is free.
//     The hop into the first stage carries token ids (4 bytes each) if it holds
//     the embedding, else dim activations; the hop back carries a token id if
//     the last stage holds the head, else dim activations;
//   - the head on the coordinator: the classifier over the coordinator's GB/s
//     (unknown: the fastest worker's);
//   - or the head in vocabulary slices on workers (place_slices): the last
//     stage returns its activation, every slice reads its rows at once, and the
//     slowest slice with its two hops (the hidden state there, a best value or
//     its logits back) counts.
// Memory: every stage's shard_memory() (weights, KV cache, workspace, buffers,
// the process) must fit its worker's budget; the coordinator's budget (if
// given) must hold what it keeps.
//
// The search is exact: dynamic programming over (layers placed, last worker
// used, where the embedding is), with the head decided at the last stage, so
// every subset of workers (kept in the given chain order), every split and
// every embedding/head placement is covered. Time is counted in whole
// nanoseconds so that equal plans tie exactly; ties go, in order, to (1)
// fewer stages, (2) the plan whose stages, compared from the last one back,
// are on earlier workers and, on the same worker, end at a later layer (so
// the earliest workers are used and fill first), (3) the embedding, then the
// head, kept on the coordinator (workers' memory is the scarce resource).
// O(workers^2 x layers^2): 64 workers and 128 layers plan in milliseconds.
// The sliced head is searched after it (plan_pipeline): the layers planned
// with the head on neither end, then the slices over what is left (every
// slice count, the roomiest workers first); it wins when strictly faster than
// the best whole-head plan, or when that does not fit.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/kv_cache.h"
#include "common/model_file.h"
#include "common/shard_memory.h"

namespace ferry {

struct WorkerCapacity {
    std::string address;
    uint64_t memory_budget = 0;  // bytes the worker may use; 0 = not limited
    double matvec_gbps = 0;      // weight-streaming speed for the model's dominant type; 0 = unknown
    double link_mbps = 0;        // coordinator <-> worker throughput, Mbit/s; 0 = unknown (free)
    double link_latency_ms = 0;  // one-way latency from the coordinator
    std::string arch;            // "x86_64" or "i686" (the process overhead); "" = x86_64
    std::map<std::string, double> type_gbps;  // GB/s per tensor type name ("f32", "q8_0"), where measured
};

// The coordinator keeps what no stage holds (the embedding table, the head).
struct CoordinatorCapacity {
    // Its peak RSS (--memory with --workers, ferry plan --coordinator-memory):
    // the process (coordinator_process_memory) and the weights it keeps; 0 = not limited.
    uint64_t memory_budget = 0;
    double matvec_gbps = 0;      // 0 = unknown: as fast as the fastest worker
};

struct PlannedStage {
    int worker = 0;  // index into the capacities given to the planner
    int first_layer = 0;
    int last_layer = 0;      // exclusive
    bool embedding = false;  // holds the embedding table: its input is token ids
    bool head = false;       // holds the final norm and classifier: returns the sampled token (or logits)
    ShardMemory memory;
    double compute_ms = 0;  // predicted per decoded token (layers, and the classifier if head)
    double hop_ms = 0;      // predicted for the input into this stage
};

// A vocabulary slice of the classifier (the head split across nodes): the
// worker applies the final norm and the rows [vocab_first, vocab_last) to
// the final hidden state the coordinator sends every slice at once.
struct PlannedSlice {
    int worker = 0;  // index into the capacities given to the planner
    int vocab_first = 0, vocab_last = 0;
    bool slice_only = false;  // the worker holds no layers: the slice is its whole shard
    uint64_t memory = 0;      // bytes the slice adds to its worker (its weights and buffers; a
                              // slice-only worker's process is in its stage memory)
    ShardMemory shard;        // slice_only: the worker's whole shard
    double compute_ms = 0;    // predicted per decoded token
    double hop_ms = 0;        // the hidden state there and the answer back
};

struct LeftOutWorker {
    int worker = 0;
    std::string reason;     // one clause with the numbers: why the plan does without it
    double best_ms_with = -1;  // the fastest plan that uses it, per token; -1 if none fits
};

struct PipelinePlan {
    std::vector<PlannedStage> stages;  // in chain order
    double predicted_ms_per_token = 0;  // hops + stage compute + the return + the coordinator's head
    double return_hop_ms = 0;           // last stage -> coordinator
    double coordinator_ms = 0;          // the classifier on the coordinator, if it keeps the head
    std::vector<PlannedSlice> slices;   // the classifier by vocabulary slices, in vocabulary order; empty: whole
    double slices_ms = 0;               // the slowest slice with its hops (they run at once)
    uint64_t coordinator_weights = 0;   // bytes of weights the coordinator keeps
    bool embedding_by_rows = false;     // it keeps the embedding as rows read from the file, not the table
    std::vector<int> left_out;          // workers given but not used, ascending
    std::vector<LeftOutWorker> left_out_reasons;  // one per left_out, same order
    // What it was planned for.
    int context = 0;
    KvType kv_type = KvType::f32;
    int wire_bytes = 4;
    int slots = 1;          // sequences each stage holds a KV cache for
    int max_positions = 0;  // largest request (prefill batch) the stages were sized for; 0 = the context.
                            // When the request left it 0 and a whole-context request did not fit, the
                            // plan chose it: the pipeline must then send prompts in requests this large.
    bool forced_split = false;
};

// Where a placeable unit may go.
enum class Placement { planned, coordinator, worker };

// Everything a plan depends on besides the workers.
struct PlanRequest {
    int context = 0;  // 0: the model's seq_len
    KvType kv_type = KvType::f32;
    int wire_bytes = 4;      // 4 (f32) or 2 (f16) per activation value between stages
    int slots = 1;           // sequences in flight at once (`ferry serve --parallel`): a KV cache each
    int max_positions = 0;   // largest request a stage gets (--prefill-chunk); 0 = planned: the context if
                             // that fits, else the largest of 512, 128, 32 positions that does
    std::vector<int> split;  // layers per worker (--split): every worker used, in order; empty = planned
    Placement embedding = Placement::planned;
    Placement head = Placement::planned;
    // The classifier in this many vocabulary slices on workers (--head-slices);
    // 0: planned (sliced when that is faster or the only plan that fits).
    int head_slices = 0;
    // Slices answer with their logits (sampling at a temperature) instead of
    // a best value and index per sequence (greedy): the network prediction.
    bool sampled = false;
    CoordinatorCapacity coordinator;
};

// The planner's view of a model: what each layer and each placeable unit
// costs in memory and in bytes read per token.
struct TypedBytes {
    std::string type;  // tensor_type_name()
    uint64_t bytes = 0;
};
struct PlanProblem {
    std::vector<uint64_t> layer_memory;               // weights + KV cache of each layer
    std::vector<std::vector<TypedBytes>> layer_reads;  // bytes read per decoded token (weights, KV cache), by type
    // Workspace, buffers and shared tensors of a stage with layers, by role,
    // excluding the process overhead (per worker arch):
    // stage_memory[first][last][embedding][head].
    uint64_t stage_memory[2][2][2][2] = {};
    uint64_t embedding_memory = 0;    // the table
    // The coordinator looking tokens up without the table resident (a row read
    // from the file at a time; PipelineEngine::embed_locally): a row and its values.
    uint64_t embedding_lookup_memory = 0;
    bool tied = false;                // the classifier is the embedding table (kept whole where both are)
    uint64_t head_memory = 0;         // final norm and classifier
    uint64_t tied_shared = 0;         // bytes counted in both when one stage holds both (tied classifier)
    std::vector<TypedBytes> head_reads;  // the classifier, per token
    uint64_t activation_bytes = 0;    // one position of activations on the wire (dim x wire bytes)
    uint64_t token_bytes = 4;         // a token id
    uint64_t coordinator_extra = 0;   // logits and sampler when the coordinator keeps the head
    uint64_t coordinator_process = 0; // the coordinator itself: code, libraries, tokenizer, a token's logits
    // Vocabulary slices: a slice of R rows adds slice_fixed + R x slice_row
    // bytes to its worker and reads R x classifier_row bytes per token.
    int vocab = 0;
    uint64_t classifier_row = 0;      // bytes of one classifier row in its stored type
    std::string classifier_type;      // tensor_type_name() of the classifier
    bool classifier_sliceable = false;  // rows are contiguous (every GGUF type; not llama2.c's int8 groups)
    uint64_t slice_fixed = 0;         // the final norm and the buffers of the hidden states
    uint64_t slice_row = 0;           // classifier_row plus the logits' buffers per row
    uint64_t hidden_bytes = 0;        // the hidden state sent to each slice (dim f32 values)
};

PlanProblem make_plan_problem(const ModelFile& file, const PlanRequest& request);

// The cost primitives (exposed for tests and reports).
struct StageShape {
    int first_layer = 0, last_layer = 0;  // [first, last)
    bool first = false, last = false;     // first / last stage of the chain
    bool embedding = false, head = false;
};
uint64_t stage_memory(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s);
bool stage_fits(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s);
int64_t stage_compute_ns(const PlanProblem& p, const WorkerCapacity& w, const StageShape& s);
// A hop from `from` to `to` (nullptr: the coordinator) carrying `bytes`.
int64_t hop_ns(const WorkerCapacity* from, const WorkerCapacity* to, uint64_t bytes);
// The classifier on the coordinator, per token.
int64_t coordinator_head_ns(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                            const CoordinatorCapacity& coordinator);
uint64_t coordinator_memory(const PlanProblem& p, bool keeps_embedding, bool keeps_head);
// The coordinator process besides the weights it keeps: its peak RSS measured
// in runs across workers that stream every shard (the peak) and then generate
// (docs/BENCHMARKS.md): 17 MB with a 512-entry vocabulary (code, libraries,
// heap), 27 MB with 32000 entries, 53.6-58.9 MB with Llama 3's 128256 (a BPE
// tokenizer's strings, merges and tables, the logits and the sampler's
// candidates grow with the vocabulary), of which shard streaming's queues
// and reads are up to ~10 MB for a moment.
constexpr uint64_t kCoordinatorOverhead = 24ull << 20;
constexpr uint64_t kCoordinatorBytesPerToken = 304;
uint64_t coordinator_process_memory(int vocab_size);
// Total predicted time of a chain, in ns; -1 if any stage or the coordinator does not fit.
int64_t chain_ns(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                 const CoordinatorCapacity& coordinator, const std::vector<PlannedStage>& stages);

// Why the pool cannot hold the model, with the numbers. plan_optimal throws it;
// plan_pipeline turns it into the one-line refusal with the fixes.
struct PoolTooSmall : Error {
    uint64_t need = 0, offered = 0;  // bytes: every layer, the units and one stage per worker / the budgets
    explicit PoolTooSmall(const std::string& what, uint64_t need_, uint64_t offered_)
        : Error(what), need(need_), offered(offered_) {}
};

// The optimal plan under the request's placements, or throws PoolTooSmall.
PipelinePlan plan_optimal(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                          const PlanRequest& request = {});
// Every worker used with the given layers each (each >= 1, summing to the
// layers), placements chosen; throws ferry::Error naming a worker it does not fit.
PipelinePlan plan_forced(const PlanProblem& p, const std::vector<WorkerCapacity>& workers,
                         const std::vector<int>& layers_per_worker, const PlanRequest& request = {});

// The classifier split into vocabulary slices on the workers, after the
// layers of `plan` (whose head is on neither end): water-filled by speed
// into what each worker has left, `count` slices (0: the fastest count).
// False if they do not fit.
bool place_slices(const PlanProblem& p, const std::vector<WorkerCapacity>& workers, const PlanRequest& request,
                  PipelinePlan& plan, int count);

// What worker `worker` holds in the plan: its stage's layers, ends and vocabulary slice.
ShardSpec planned_spec(const PipelinePlan& plan, int worker);

// Entry point for `ferry run/plan/bench --workers`: the plan with each
// stage's exact ShardMemory, or ferry::Error with one line: the shortfall and
// the cheapest fixes (a shorter --ctx, a smaller --kv-type, a quantized
// model, more memory on one worker), each computed.
PipelinePlan plan_pipeline(const ModelFile& file, const std::vector<WorkerCapacity>& workers,
                           const PlanRequest& request);
PipelinePlan plan_pipeline(const ModelFile& file, int context, const std::vector<WorkerCapacity>& workers,
                           const std::vector<int>& forced_split, int wire_bytes_per_value = 4,
                           KvType kv_type = KvType::f32);

// Whether a request fits: a pool's plan, or one machine's memory.
using FitsTest = std::function<bool(const ModelFile& file, const PlanRequest& request)>;
// The fixes a memory refusal offers, each found with `fits`; "" if none fits:
// the longest context ("--ctx 812"), a smaller KV cache type ("--kv-type
// f16"), the model quantized ("a q8_0 model (ferry quantize ...)").
std::string shorter_context_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits);
std::string smaller_kv_type_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits);
std::string quantized_model_fix(const ModelFile& file, const PlanRequest& r, const FitsTest& fits);
// "; any of these fits: a, b or c" from the fixes that are not empty ("" if none).
std::string any_of_these_fits(const std::vector<std::string>& fixes);

// Bytes of weights each layer holds, from the model's tensor directory.
std::vector<uint64_t> layer_weight_bytes(const ModelFile& file);

}  // namespace ferry
