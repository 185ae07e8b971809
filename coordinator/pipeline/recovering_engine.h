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

    const ModelConfig& config() const override { return inner_->config(); }
    int context() const override { return inner_->context(); }
    float* forward(const int* tokens, int n_tokens, int pos) override;
    int forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) override;

    const ModelConfig& batch_config() const override { return inner_->batch_config(); }
    int slot_context() const override { return inner_->slot_context(); }
    int slots() const override { return inner_->slots(); }
    int max_rows() const override { return inner_->max_rows(); }
    int depth() const override { return inner_->depth(); }
    void submit(Batch batch) override;
    Batch wait() override;
    size_t in_flight() const override { return in_flight_.size(); }
    PipelineStats batch_stats() const override { return inner_->batch_stats(); }
    void release(int slot) override;

    PipelineEngine& inner() { return *inner_; }
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
    kernels::ThreadPool* pool_;
    std::unique_ptr<PipelineEngine> inner_;
    std::vector<std::vector<int>> histories_;  // per slot: the token fed at each position
    std::deque<Batch> in_flight_;              // copies of what inner_ has in flight, to resubmit
    int recoveries_ = 0;
};

}  // namespace ferry
