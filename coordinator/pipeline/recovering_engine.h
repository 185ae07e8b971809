// A pipeline that survives the loss of a worker. It wraps a PipelineEngine
// and remembers every token fed at every position of every sequence. When a
// call fails because of one worker (WorkerError: closed, silent past the
// timeout, refused), it drops that engine, plans again over the workers
// still alive plus the spares (workers the plan left out, and --spare),
// sends the shards the new plan needs (a worker that held a range keeps it
// in its cache), replays each sequence's tokens as batched prefill to
// rebuild the KV caches, and repeats the failed call. Kernels are
// deterministic and a sampler's state only advances when a call succeeds,
// so the text is what an uninterrupted run prints.
#pragma once
#include <chrono>
#include <deque>
#include <memory>
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
    PipelineStats batch_stats() const override { return inner_ ? inner_->batch_stats() : PipelineStats{}; }
    void release(int slot) override;

    // False once a recovery gave up (then only the figures above remain).
    bool alive() const { return inner_ != nullptr; }
    const PipelineEngine& inner() const { return *inner_; }
    int recoveries() const { return recoveries_; }

private:
    // Replaces inner_ after `failure`; replays the KV caches. Throws ferry::Error when it cannot.
    void recover(const WorkerError& failure);
    std::unique_ptr<PipelineEngine> start(const std::vector<std::string>& workers, bool first);
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
    std::vector<std::vector<int>> histories_;  // per slot: the token fed at each position
    std::deque<Batch> in_flight_;              // copies of what inner_ has in flight, to resubmit
    int recoveries_ = 0;
    int recent_recoveries_ = 0;  // within an hour of each other: a limit for a flapping worker, not a lifetime one
    std::chrono::steady_clock::time_point last_recovery_{};
};

}  // namespace ferry
