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
// Any failure throws ferry::Error with one line naming the node (address,
// stage, layers) and the cause. The coordinator knows every token so far, so
// a replacement stage could be re-prefilled (the roadmap's recovery).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/sampler.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "coordinator/engine.h"
#include "coordinator/node_table.h"
#include "coordinator/planner.h"
#include "kernels/thread_pool.h"

namespace ferry {

struct PipelineOptions {
    std::vector<std::string> workers;
    std::vector<int> split;        // empty: planned
    std::string wire = "f32";      // f32 | f16
    KvType kv_type = KvType::f32;
    bool embedding_on_worker = false;  // the first stage looks tokens up (input: token ids)
    bool head_on_worker = false;       // the last stage applies the final norm and classifier
    int prefill_chunk = 0;         // >0: prefill in micro-batches of this many positions, so stages overlap
    double timeout_s = 10;         // a link silent this long is dead; bounds every wait
    double connect_timeout_s = 5;
    int stats_every = 0;           // print the node table every N decoded tokens
    bool progress = true;          // progress bar while sending shards
};

class PipelineEngine : public Engine {
public:
    PipelineEngine(const ModelFile& file, const PipelineOptions& options, int context, kernels::ThreadPool* pool);
    ~PipelineEngine() override;

    const ModelConfig& config() const override { return config_; }
    int context() const override { return context_; }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    // sampler.sample(forward(...)) with the draw made where the logits are:
    // on the last worker when it holds the head (the sampler's RNG state
    // travels with the request and comes back advanced), else here.
    int forward_sample(const int* tokens, int n_tokens, int pos, const SamplerParams& params, Sampler& sampler);
    // Tells every stage that sequence `seq` starts over.
    void reset(uint64_t seq = 0);

    PipelineStats stats() const;
    const PipelinePlan& plan() const { return plan_; }

private:
    struct Node;
    void connect_all(const std::string& model_hash);
    void measure_links();
    void assign_all(const std::string& model_hash);
    void stream_shards();
    void wire_chain();
    void run_request(const int* tokens, int n_tokens, int pos, int want, const SamplerParams* params,
                     uint64_t rng_state);
    void account(const void* result, uint64_t sent_ns, uint64_t sent_bytes, uint64_t received_ns,
                 uint64_t received_bytes, int n_tokens, double* compute_ms);
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
    PipelinePlan plan_;
    Weights local_;  // embedding and/or head kept on the coordinator
    std::vector<float> x_, logits_;
    uint64_t next_request_ = 1;
    // Result of the last request.
    int result_token_ = -1;
    uint64_t result_rng_ = 0;
    // Statistics.
    NodeStats local_stats_;
    PipelineStats totals_;
    uint64_t decoded_since_print_ = 0;
};

}  // namespace ferry
