// Many requests through one BatchEngine (continuous batching): up to
// slots() sequences are in flight; new requests join between steps; each
// step's batch holds every ready sequence's next token plus chunks of
// prompts still being read, so a long prompt never stalls the others; and
// along a chain up to depth() batches are in flight at once, so every stage
// works on a different group of sequences at the same time.
//
// A sequence's tokens depend only on its own prompt, sampler and seed: rows
// of one batch are computed independently bit for bit, so what runs beside
// it never changes its output.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/sampler.h"
#include "common/tokenizer.h"
#include "coordinator/generation/batch_engine.h"

namespace ferry {

class LiveStats;

struct CompletionRequest {
    std::vector<int> prompt;  // the ids fed: BOS, the prompt (or the chat turns)
    int max_tokens = 0;       // tokens to generate at most; 0: until the context is full
    SamplerParams sampling;   // seed != 0
    std::vector<std::string> stop;
    std::vector<int> end_ids;  // tokens that end the reply besides the tokenizer's own (end of turn)
    double arrived_s = 0;      // set by Scheduler::submit
};

// One increment of a reply, as the HTTP side receives it.
struct ReplyEvent {
    std::string text;
    bool done = false;
    std::string finish_reason;  // "stop" | "length" when done
    std::string error;          // set when the request failed (done is then true)
    int prompt_tokens = 0;
    int completion_tokens = 0;
};

// The HTTP side's handle on a request; thread-safe.
class ReplyStream {
public:
    // Waits up to timeout_ms for the next event; false if none came.
    bool next(ReplyEvent* event, int timeout_ms);
    // The client is gone: its slot is freed at the next step.
    void cancel() { cancelled_ = true; }
    bool cancelled() const { return cancelled_; }
    void push(ReplyEvent event);

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<ReplyEvent> events_;
    std::atomic<bool> cancelled_{false};
};

struct SchedulerStats {
    int slots = 0, active = 0, queued = 0, in_flight_batches = 0;
    uint64_t requests_done = 0, tokens_generated = 0, prompt_tokens = 0;
    std::string failure;  // the engine's error, once it failed
};

class Scheduler {
public:
    // queue_limit: requests waiting for a slot before submit() refuses.
    // live (may be null) gets the engine's figures a few times a second.
    Scheduler(BatchEngine& engine, const Tokenizer& tokenizer, int queue_limit, LiveStats* live = nullptr);
    ~Scheduler();

    // Queues a request; nullptr when the queue is full or the scheduler stops.
    // The prompt must fit the context (checked by the caller, who answers 400).
    std::shared_ptr<ReplyStream> submit(CompletionRequest request);
    // The loop; returns once stop() was called and nothing is left in flight.
    void run();
    // Refuses new requests; lets the ones in flight finish within grace_s,
    // then ends the rest with an error.
    void stop(double grace_s);
    SchedulerStats stats() const;

private:
    struct Sequence;
    bool admit();
    bool submit_batch();
    void complete(Batch batch);
    void finish(Sequence& s, const std::string& reason, const std::string& error = {});
    void fail_all(const std::string& error);
    void publish(bool force);

    BatchEngine& engine_;
    const Tokenizer& tokenizer_;
    const int queue_limit_;
    LiveStats* live_;
    double published_s_ = 0;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::pair<CompletionRequest, std::shared_ptr<ReplyStream>>> queue_;
    bool stopping_ = false;
    double grace_deadline_ = 0;  // steady-clock seconds
    std::vector<std::unique_ptr<Sequence>> slots_;  // null: free (engine thread only)
    std::deque<std::chrono::steady_clock::time_point> submitted_;  // when each batch in flight was formed
    SchedulerStats stats_;
};

}  // namespace ferry
