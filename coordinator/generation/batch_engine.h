// What serving many sequences at once needs from the model: batches of
// several sequences' positions, each sequence in its own KV cache slot,
// several batches in flight along a chain. The single-process engine and the
// pipeline of workers both provide it, so the scheduler (serving/) does not
// know the difference.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/model_config.h"
#include "common/sampler.h"
#include "coordinator/pipeline/node_table.h"

namespace ferry {

// One sequence's part of a batch: positions pos.. of slot `slot`.
struct SeqStep {
    int slot = 0;
    int pos = 0;
    std::vector<int> tokens;
    // Draw the token after the last position (a decode step, or a prompt's
    // last chunk) with *sampler, advancing it exactly as sampler->sample().
    bool draw = false;
    Sampler* sampler = nullptr;
    int token = -1;  // the token drawn, filled by the engine
};

struct Batch {
    std::vector<SeqStep> steps;
    int rows() const {
        int n = 0;
        for (const SeqStep& s : steps) n += static_cast<int>(s.tokens.size());
        return n;
    }
};

class BatchEngine {
public:
    virtual ~BatchEngine() = default;
    virtual const ModelConfig& batch_config() const = 0;
    // Positions each slot's KV cache holds.
    virtual int slot_context() const = 0;
    virtual int slots() const = 0;
    // Most positions in one batch.
    virtual int max_rows() const = 0;
    // Batches in flight that keep every stage busy: 1 in one process, the
    // number of stages along a chain.
    virtual int depth() const = 0;
    // Starts a batch; a slot is in at most one batch in flight, and its
    // sampler lives until the batch is back. Throws ferry::Error on a failure.
    virtual void submit(Batch batch) = 0;
    // The oldest batch submitted, with its tokens drawn (batches complete in
    // order). Throws ferry::Error on a failure (naming the node).
    virtual Batch wait() = 0;
    virtual size_t in_flight() const = 0;
    // What each node did so far (cumulative): this process, then the stages.
    virtual PipelineStats batch_stats() const = 0;
    // The slot's sequence is over (its KV cache may be reused from position 0).
    virtual void release(int slot) { (void)slot; }
};

}  // namespace ferry
