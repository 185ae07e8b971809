#include "coordinator/serving/scheduler.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "common/error.h"
#include "coordinator/serving/live_stats.h"
#include "coordinator/serving/reply_text.h"

namespace ferry {

namespace {

double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Positions of prompt read per sequence and batch while others decode: small
// enough that a long prompt delays the others' next token by little.
constexpr int kPromptChunk = 32;

}  // namespace

bool ReplyStream::next(ReplyEvent* event, int timeout_ms) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !events_.empty(); })) return false;
    *event = std::move(events_.front());
    events_.pop_front();
    return true;
}

void ReplyStream::push(ReplyEvent event) {
    {
        std::lock_guard lock(mu_);
        events_.push_back(std::move(event));
    }
    cv_.notify_all();
}

struct Scheduler::Sequence {
    CompletionRequest request;
    std::shared_ptr<ReplyStream> stream;
    int slot = 0;
    int fed = 0;          // prompt ids fed so far
    int pos = 0;          // next position
    int last = -1;        // the token to feed next (after the prompt)
    int generated = 0;
    bool in_flight = false;
    double arrived_s = 0, first_token_s = 0, last_token_s = 0;
    Sampler sampler;
    ReplyText text;
    Sequence(CompletionRequest r, std::shared_ptr<ReplyStream> s, int slot_, int vocab, const Tokenizer& tok)
        : request(std::move(r)),
          stream(std::move(s)),
          slot(slot_),
          sampler(vocab, request.sampling),
          text(tok, request.stop, request.prompt.back()) {}
};

Scheduler::Scheduler(BatchEngine& engine, const Tokenizer& tokenizer, int queue_limit, LiveStats* live)
    : engine_(engine), tokenizer_(tokenizer), queue_limit_(queue_limit), live_(live) {
    slots_.resize(static_cast<size_t>(engine.slots()));
    stats_.slots = engine.slots();
}

Scheduler::~Scheduler() = default;

std::shared_ptr<ReplyStream> Scheduler::submit(CompletionRequest request) {
    auto stream = std::make_shared<ReplyStream>();
    {
        std::lock_guard lock(mu_);
        // Waiting means: beyond the slots free now.
        const int free_slots = stats_.slots - stats_.active;
        if (stopping_ || !stats_.failure.empty() || static_cast<int>(queue_.size()) >= queue_limit_ + free_slots)
            return nullptr;
        request.arrived_s = now_s();
        queue_.emplace_back(std::move(request), stream);
        stats_.queued = static_cast<int>(queue_.size());
    }
    cv_.notify_all();
    return stream;
}

void Scheduler::stop(double grace_s) {
    {
        std::lock_guard lock(mu_);
        stopping_ = true;
        grace_deadline_ = now_s() + grace_s;
    }
    cv_.notify_all();
}

SchedulerStats Scheduler::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

// Moves queued requests into free slots; true if any sequence is active.
bool Scheduler::admit() {
    std::lock_guard lock(mu_);
    for (auto& s : slots_) {
        if (s || queue_.empty()) continue;
        auto [request, stream] = std::move(queue_.front());
        queue_.pop_front();
        if (stream->cancelled()) continue;
        const int slot = static_cast<int>(&s - slots_.data());
        const double arrived = request.arrived_s;
        s = std::make_unique<Sequence>(std::move(request), std::move(stream), slot, engine_.batch_config().vocab_size,
                                       tokenizer_);
        s->arrived_s = arrived;
    }
    // Requests still queued when stopping are refused now.
    while (stopping_ && !queue_.empty()) {
        ReplyEvent e;
        e.done = true;
        e.error = "the server is shutting down";
        queue_.front().second->push(std::move(e));
        queue_.pop_front();
    }
    stats_.queued = static_cast<int>(queue_.size());
    int active = 0;
    for (auto& s : slots_) active += s != nullptr;
    stats_.active = active;
    return active > 0;
}

// Forms one batch of ready sequences, at most ceil(active / depth) of them
// so that `depth` groups circulate along the chain. False if none is ready.
bool Scheduler::submit_batch() {
    int active = 0;
    std::vector<Sequence*> ready;
    for (auto& s : slots_) {
        if (!s) continue;
        ++active;
        if (!s->in_flight) ready.push_back(s.get());
    }
    if (ready.empty()) return false;
    const int depth = std::max(1, engine_.depth());
    const size_t group = static_cast<size_t>((active + depth - 1) / depth);
    // Decoding sequences first (their latency), then prompts by arrival.
    std::stable_sort(ready.begin(), ready.end(),
                     [](const Sequence* a, const Sequence* b) { return (a->last >= 0) > (b->last >= 0); });
    Batch batch;
    int rows_left = engine_.max_rows();
    for (Sequence* s : ready) {
        if (batch.steps.size() >= group || rows_left <= 0) break;
        SeqStep step;
        step.slot = s->slot;
        step.pos = s->pos;
        step.sampler = &s->sampler;
        const int prompt = static_cast<int>(s->request.prompt.size());
        if (s->fed < prompt) {
            const int n = std::min({prompt - s->fed, rows_left, kPromptChunk});
            step.tokens.assign(s->request.prompt.begin() + s->fed, s->request.prompt.begin() + s->fed + n);
            step.draw = s->fed + n == prompt;
        } else {
            step.tokens = {s->last};
            step.draw = true;
        }
        rows_left -= static_cast<int>(step.tokens.size());
        s->in_flight = true;
        batch.steps.push_back(std::move(step));
    }
    submitted_.push_back(std::chrono::steady_clock::now());
    engine_.submit(std::move(batch));
    return true;
}

void Scheduler::finish(Sequence& s, const std::string& reason, const std::string& error) {
    ReplyEvent e;
    e.text = s.text.finish();
    e.done = true;
    e.finish_reason = reason;
    e.error = error;
    e.prompt_tokens = static_cast<int>(s.request.prompt.size());
    e.completion_tokens = s.generated;
    s.stream->push(std::move(e));
    {
        std::lock_guard lock(mu_);
        ++stats_.requests_done;
        stats_.tokens_generated += static_cast<uint64_t>(s.generated);
        stats_.prompt_tokens += s.request.prompt.size();
        --stats_.active;
    }
    engine_.release(s.slot);
    slots_[static_cast<size_t>(s.slot)].reset();
}

void Scheduler::complete(Batch batch) {
    const int context = engine_.slot_context();
    for (SeqStep& step : batch.steps) {
        Sequence& s = *slots_[static_cast<size_t>(step.slot)];
        s.in_flight = false;
        s.pos += static_cast<int>(step.tokens.size());
        if (s.fed < static_cast<int>(s.request.prompt.size())) s.fed += static_cast<int>(step.tokens.size());
        if (s.stream->cancelled()) {
            finish(s, "stop", "cancelled");
            continue;
        }
        if (!step.draw) continue;
        const int t = step.token;
        const auto& ends = s.request.end_ids;
        if (tokenizer_.ends_generation(t) || std::find(ends.begin(), ends.end(), t) != ends.end()) {
            finish(s, "stop");
            continue;
        }
        ++s.generated;
        s.last = t;
        const double now = now_s();
        if (live_) {
            if (s.generated == 1) live_->observe_first_token(now - s.arrived_s);
            else live_->observe_token_gap(now - s.last_token_s);
        }
        if (s.generated == 1) s.first_token_s = now;
        s.last_token_s = now;
        const bool going = s.text.add(t);
        if (!going) {
            finish(s, "stop");
            continue;
        }
        if ((s.request.max_tokens > 0 && s.generated >= s.request.max_tokens) || s.pos >= context) {
            finish(s, "length");
            continue;
        }
        if (std::string delta = s.text.take(); !delta.empty()) {
            ReplyEvent e;
            e.text = std::move(delta);
            s.stream->push(std::move(e));
        }
    }
}

void Scheduler::fail_all(const std::string& error) {
    {
        std::lock_guard lock(mu_);
        stats_.failure = error;
    }
    for (auto& s : slots_)
        if (s) finish(*s, "stop", error);
    std::lock_guard lock(mu_);
    for (auto& [request, stream] : queue_) {
        ReplyEvent e;
        e.done = true;
        e.error = error;
        stream->push(std::move(e));
    }
    queue_.clear();
}

// Hands the engine's figures and the requests in flight to live_, at most
// four times a second (the engine's stats are read on this thread only).
void Scheduler::publish(bool force) {
    const double now = now_s();
    if (!live_ || (!force && now - published_s_ < 0.25)) return;
    published_s_ = now;
    std::vector<ActiveRequest> active;
    for (const auto& s : slots_) {
        if (!s) continue;
        active.push_back(ActiveRequest{s->slot, static_cast<int>(s->request.prompt.size()), s->fed, s->generated,
                                       now - s->arrived_s, s->generated > 0 ? now - s->first_token_s : 0.0});
    }
    SchedulerStats st = stats();
    live_->record(engine_.batch_stats(), std::move(active), st.tokens_generated + [&] {
        uint64_t n = 0;
        for (const auto& s : slots_)
            if (s) n += static_cast<uint64_t>(s->generated);
        return n;
    }(), st.slots, st.queued, now);
}

void Scheduler::run() {
    for (;;) {
        publish(false);
        bool active = admit();
        bool past_grace = false;
        {
            std::unique_lock lock(mu_);
            past_grace = stopping_ && now_s() > grace_deadline_;
            if (past_grace && engine_.in_flight() == 0) {
                lock.unlock();
                for (auto& s : slots_)
                    if (s) finish(*s, "stop", "the server is shutting down");
                active = false;
                lock.lock();
            }
            if (!active && engine_.in_flight() == 0) {
                // Stopping or failed: done once nothing waits (admit() answers what is still queued).
                if ((stopping_ || !stats_.failure.empty()) && queue_.empty()) return;
                cv_.wait_for(lock, std::chrono::milliseconds(250),
                             [&] { return !queue_.empty() || stopping_ || !stats_.failure.empty(); });
                lock.unlock();
                publish(true);
                continue;
            }
        }
        try {
            // Past the grace period nothing new is started: what is in flight drains, then everything ends.
            while (!past_grace && static_cast<int>(engine_.in_flight()) < std::max(1, engine_.depth()) &&
                   submit_batch()) {
            }
            {
                std::lock_guard lock(mu_);
                stats_.in_flight_batches = static_cast<int>(engine_.in_flight());
            }
            if (engine_.in_flight() > 0) {
                Batch done = engine_.wait();
                const auto sent = submitted_.front();
                submitted_.pop_front();
                spdlog::debug("serve: batch of {} sequences, {} positions back {:.1f} ms after it was formed",
                              done.steps.size(), done.rows(),
                              std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count());
                complete(std::move(done));
            }
        } catch (const std::exception& e) {
            spdlog::error("serving stopped: {}", e.what());
            // Batches still in flight are lost with the engine.
            fail_all(e.what());
            return;
        }
    }
}

}  // namespace ferry
