// The model across a chain of ferry-worker daemons, behind the same Engine
// interface as the single-process engine, so generate(), chat and bench do
// not know the difference.
//
// Setup: connect and handshake with every worker, measure each link (pings
// and a 1 MB echo), plan the layer ranges (planner.h), assign them, stream
// every shard a worker does not already have, then tell worker i to open a
// data connection to worker i+1. Per request: the coordinator sends token ids
// or activations to the first worker; each worker forwards its output
// straight to the next; the last returns the final activation (or logits, or
// a sampled token) on its control connection.
//
// Any failure throws ferry::Error (WorkerError) with one line naming the node
// (address, stage, layers) and the cause; RecoveringEngine builds a new chain
// and replays the tokens so far.
#pragma once
#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/platform/file.h"
#include "common/net/cluster_key.h"
#include "common/sampler.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "coordinator/generation/batch_engine.h"
#include "coordinator/generation/engine.h"
#include "coordinator/pipeline/node_table.h"
#include "coordinator/pipeline/planner.h"
#include "kernels/thread_pool.h"

namespace ferry {

struct PipelineOptions {
    std::vector<std::string> workers;
    std::vector<int> split;        // empty: planned
    std::string wire = "f32";      // f32 | f16
    KvType kv_type = KvType::f32;
    // Overrides of the plan's placement: the first stage looks tokens up (input:
    // token ids) / the last stage applies the final norm and classifier; or
    // the coordinator keeps them.
    bool embedding_on_worker = false;
    bool head_on_worker = false;
    bool embedding_on_coordinator = false;
    bool head_on_coordinator = false;
    int head_slices = 0;           // the classifier in this many vocabulary slices on workers; 0: planned
    uint64_t coordinator_memory = 0;  // --memory: the coordinator's peak RSS the plan must keep within; 0: unlimited
    bool sampled = false;          // sampling at a temperature: what the plan predicts the slices return
    int prefill_chunk = 0;         // >0: prefill in micro-batches of this many positions, so stages overlap
    int slots = 1;                 // sequences every stage keeps a KV cache for (`ferry serve --parallel`)
    int recovery = 0;              // recoveries before this chain (told to the workers, shown by `ferry status`)
    double timeout_s = 10;         // a link silent this long is dead; bounds every wait
    double connect_timeout_s = 5;
    int stats_every = 0;           // print the node table every N decoded tokens
    bool progress = true;          // progress bar while sending shards
    std::optional<net::ClusterKey> cluster_key;  // prove it to every worker and seal the links (secure_link.h)
};

// What `ferry plan --workers` learns without starting a session: each
// worker's capacity (memory budget, measured GB/s, and the link's latency and
// Mbit/s measured from here). It connects as a status client, so it never
// takes a worker's coordinator slot nor disturbs a run in progress.
struct ProbeOptions {
    double connect_timeout_s = 5;
    double timeout_s = 10;            // for each answer (hello, ping)
    std::string tensor_type = "f32";  // whose GB/s is the capacity's: dominant_tensor_type(model)
    bool measure_links = true;        // false: capacities without link figures (no pings)
    std::optional<net::ClusterKey> cluster_key;
};
// Throws ferry::Error naming the worker that cannot be reached or answers wrongly.
std::vector<WorkerCapacity> probe_workers(const std::vector<std::string>& addresses, const ProbeOptions& options);

class PipelineEngine : public Engine, public BatchEngine {
public:
    PipelineEngine(const ModelFile& file, const PipelineOptions& options, int context, kernels::ThreadPool* pool);
    ~PipelineEngine() override;

    const ModelConfig& config() const override { return config_; }
    int context() const override { return context_; }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    // sampler.sample(forward(...)) with the draw made where the logits are:
    // on the last worker when it holds the head (the sampler's temperature,
    // top-p and RNG state travel with the request and the state comes back
    // advanced; only the token id crosses the network), else here.
    int forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) override;
    // Tells every stage that sequence `seq` starts over.
    void reset(uint64_t seq = 0);

    // Batches of several sequences (slots 0..slots-1), up to depth() of them
    // in flight along the chain: while stage 2 computes one, stage 1 computes
    // the next. The head's draws happen where the head is, per sequence.
    const ModelConfig& batch_config() const override { return config_; }
    int slot_context() const override { return context_; }
    int slots() const override { return plan_.slots; }
    int max_rows() const override { return plan_.max_positions > 0 ? std::min(plan_.max_positions, context_) : context_; }
    int depth() const override { return static_cast<int>(chain_.size()); }
    void submit(Batch batch) override;
    Batch wait() override;
    size_t in_flight() const override { return in_flight_.size(); }
    PipelineStats batch_stats() const override { return stats(); }

    PipelineStats stats() const;
    const PipelinePlan& plan() const { return plan_; }

private:
    struct Node;
    void assign_all(const std::string& model_hash);
    void stream_shards();
    void wire_chain();
    void run_request(const int* tokens, int n_tokens, int pos, int want, const SamplerParams* params,
                     uint64_t rng_state);
    void account(const void* result, uint64_t sent_ns, uint64_t sent_bytes, uint64_t received_ns,
                 uint64_t received_bytes, int n_tokens, double* compute_ms);
    void note_decode_speed(Node& n, double compute_ms);
    // x_ = the tokens' embeddings, from the table kept here.
    void embed_locally(const int* tokens, int n_tokens);
    // The vocabulary slices applied to k final hidden states x_[k][dim], sent
    // to every slice at once: logits_[k][vocab] (want_logits), else each
    // row's greedy token in best_[k] (the single process's argmax: the
    // largest value, the lowest index on a tie).
    // `decode`: the request was a decode step (its time joins the decode totals, else the prefill's).
    void classify_sliced(int k, bool want_logits, bool decode = true);
    [[noreturn]] void fail_node(int link, const std::string& what) const;
    // Throws naming the node for a closed link or an Error frame; returns other frames.
    void check_event(const void* event) const;
    std::string node_name(int link) const;

    const ModelFile& file_;
    PipelineOptions opt_;
    ModelConfig config_;
    int context_;
    kernels::ThreadPool* pool_;
    struct Net;
    std::unique_ptr<Net> net_;
    std::vector<std::unique_ptr<Node>> nodes_;  // one per --workers address, in order
    std::vector<Node*> chain_;                  // the nodes the plan uses, in stage order
    std::vector<Node*> slices_;                 // the holders of vocabulary slices, in vocabulary order
    std::vector<Node*> assigned_;               // every node with a shard: the chain, then slice-only holders
    PipelinePlan plan_;
    bool embedding_remote_ = false, head_remote_ = false;  // the first stage embeds, the last applies the head
    bool sliced_ = false;                                  // the classifier is in slices_
    Weights local_;  // embedding and/or head kept on the coordinator
    // The model file read a row at a time when the coordinator looks tokens
    // up without keeping the table (not valid: it keeps it).
    File embedding_file_;
    uint64_t embedding_offset_ = 0, embedding_row_bytes_ = 0;
    std::vector<uint8_t> embedding_row_;
    std::vector<float> x_, logits_;
    std::vector<int> best_;  // classify_sliced's greedy tokens
    uint64_t next_request_ = 1;
    // Result of the last request.
    int result_token_ = -1;
    uint64_t result_rng_ = 0;
    // Statistics.
    NodeStats local_stats_;
    PipelineStats totals_;
    uint64_t decoded_since_print_ = 0;
    struct InFlight {
        uint64_t id, sent_ns, bytes;
        Batch batch;
    };
    std::deque<InFlight> in_flight_;
};

}  // namespace ferry
