// A pipeline that survives the loss of a worker. It wraps a PipelineEngine
// and remembers every token fed at every position of every sequence. When a
// call fails because of one worker (WorkerError: closed, silent past the
// timeout, refused), it drops that engine and builds a new chain: first the
// same ranges, a dead stage's taken by a spare (a worker the plan left out,
// or --spare) or merged into a neighbour, so every survivor keeps its shard;
// if that does not fit, a new plan over the workers still alive and the
// spares. It sends the shards the new chain needs (a worker that held a
// range keeps it in its cache), replays each sequence's tokens as batched
// prefill to rebuild the KV caches, and repeats the failed call. Kernels are
// deterministic and a sampler's state only advances when a call succeeds,
// so the text is what an uninterrupted run prints.
#pragma once
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "coordinator/pipeline/pipeline_engine.h"
#include "coordinator/pipeline/pipeline_probe.h"

namespace ferry {

struct RecoveryOptions {
    std::vector<std::string> spares;  // --spare: more workers to plan over after a failure
    double wait_s = 60;               // --recover-wait: how long to wait for workers to return when too few are left
    int max_recoveries = 16;          // a worker failing again and again is a bug, not bad luck
};

class RecoveringEngine : public Engine, public BatchEngine {
public:
    using Clock = std::chrono::steady_clock;
    RecoveringEngine(const ModelFile& file, const PipelineOptions& options, const RecoveryOptions& recovery, int context,
                     kernels::ThreadPool* pool);

    const ModelConfig& config() const override { return config_; }
    int context() const override { return context_; }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    int forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) override;

    const ModelConfig& batch_config() const override { return config_; }
    int slot_context() const override { return context_; }
    int slots() const override { return static_cast<int>(histories_.size()); }
    int max_rows() const override { return inner_ ? inner_->max_rows() : 1; }
    int depth() const override { return inner_ ? inner_->depth() : 1; }
    void submit(Batch batch) override;
    Batch wait() override;
    size_t in_flight() const override { return in_flight_.size(); }
    // The chain's figures (none once a recovery gave up) and the recoveries'.
    PipelineStats batch_stats() const override;
    void release(int slot) override;

private:
    // The workers of a chain in stage order, their layer counts and where the
    // embedding and head are: what a new chain copies to keep every
    // survivor's range (and cached shard).
    struct ChainShape {
        std::vector<std::string> workers;
        std::vector<int> layers;
        bool embedding_on_worker = false, head_on_worker = false;
        bool sliced = false;  // the classifier in vocabulary slices (workers with 0 layers hold only one)
    };
    // Replaces inner_ after `failure`; replays the KV caches. Throws ferry::Error when it cannot.
    void recover(const WorkerError& failure, Clock::time_point detected);
    // A chain over `workers` as planned (a forced --split only for the workers as given).
    PipelineOptions planned(const std::vector<std::string>& workers) const;
    // A chain of exactly `shape`.
    PipelineOptions shaped(const ChainShape& shape) const;
    std::unique_ptr<PipelineEngine> start(PipelineOptions o);
    ChainShape shape_of(const PipelineEngine& chain) const;
    // `before` with each dead stage's range given to a spare (taken from
    // `spares`) or merged into its lighter neighbour; nullopt if no stage is left.
    static std::optional<ChainShape> keep_ranges(ChainShape before, const std::set<std::string>& dead,
                                                 std::deque<std::string> spares);
    void replay();
    // Positions 0..pos of slot's history are what its KV cache holds (tokens fed), the rest dropped.
    std::vector<int>& history(int slot);
    template <class Call>
    auto retrying(Call call);

    const ModelFile& file_;
    PipelineOptions options_;
    RecoveryOptions recovery_;
    int context_;
    ModelConfig config_;
    kernels::ThreadPool* pool_;
    std::unique_ptr<PipelineEngine> inner_;
    std::vector<std::string> inner_workers_;  // the worker list inner_ was planned over (its plan's indices)
    std::vector<std::vector<int>> histories_;  // per slot: the token fed at each position
    std::deque<Batch> in_flight_;              // copies of what inner_ has in flight, to resubmit
    RecoveryStats recovery_stats_;
    // When the call that may fail began (in a decode loop, the last answer): what detection is timed from.
    Clock::time_point call_started_ = Clock::now();
    int recent_recoveries_ = 0;  // within an hour of each other: a limit for a flapping worker, not a lifetime one
    Clock::time_point last_recovery_{};
};

}  // namespace ferry
