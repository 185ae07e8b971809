#include "coordinator/pipeline/recovering_engine.h"

#include "common/shard_memory.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <thread>

namespace ferry {

namespace {

using Clock = RecoveringEngine::Clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The worker still has the old session open (it has not yet seen our side close): not a failure.
bool still_closing(const WorkerError& e) { return std::string(e.what()).find("one coordinator at a time") != std::string::npos; }

}  // namespace

RecoveringEngine::RecoveringEngine(const ModelFile& file, const PipelineOptions& options, const RecoveryOptions& recovery,
                                   int context, kernels::ThreadPool* pool)
    : file_(file), options_(options), recovery_(recovery), context_(context), config_(file.config), pool_(pool) {
    inner_ = start(planned(options_.workers));
    histories_.resize(static_cast<size_t>(inner_->slots()));
}

PipelineOptions RecoveringEngine::planned(const std::vector<std::string>& workers) const {
    PipelineOptions o = options_;
    o.workers = workers;
    if (workers != options_.workers) {  // a forced split and slice count are for the workers as given
        o.split.clear();
        o.head_slices = 0;
    }
    return o;
}

PipelineOptions RecoveringEngine::shaped(const ChainShape& shape) const {
    PipelineOptions o = options_;
    o.workers = shape.workers;
    o.split = shape.layers;
    o.embedding_on_worker = shape.embedding_on_worker;
    o.embedding_on_coordinator = !shape.embedding_on_worker;
    o.head_on_worker = shape.head_on_worker;
    o.head_on_coordinator = !shape.head_on_worker && !shape.sliced;
    o.head_slices = 0;  // sliced: planned again over the workers left
    return o;
}

std::unique_ptr<PipelineEngine> RecoveringEngine::start(PipelineOptions o) {
    o.recovery = recovery_stats_.count;
    inner_workers_ = o.workers;
    return std::make_unique<PipelineEngine>(file_, o, context_, pool_);
}

RecoveringEngine::ChainShape RecoveringEngine::shape_of(const PipelineEngine& chain) const {
    ChainShape shape;
    const PipelinePlan& plan = chain.plan();
    for (const PlannedStage& s : plan.stages) {
        shape.workers.push_back(inner_workers_.at(static_cast<size_t>(s.worker)));
        shape.layers.push_back(s.last_layer - s.first_layer);
    }
    shape.embedding_on_worker = !plan.stages.empty() && plan.stages.front().embedding;
    shape.head_on_worker = !plan.stages.empty() && plan.stages.back().head;
    // Holders of a vocabulary slice alone stay in the shape with no layers (--split 0).
    for (const PlannedSlice& sl : plan.slices)
        if (sl.slice_only) {
            shape.workers.push_back(inner_workers_.at(static_cast<size_t>(sl.worker)));
            shape.layers.push_back(0);
        }
    shape.sliced = !plan.slices.empty();
    return shape;
}

std::optional<RecoveringEngine::ChainShape> RecoveringEngine::keep_ranges(ChainShape k, const std::set<std::string>& dead,
                                                                        std::deque<std::string> spares) {
    for (size_t i = 0; i < k.workers.size();) {
        if (!dead.count(k.workers[i])) {
            ++i;
        } else if (!spares.empty()) {
            k.workers[i] = spares.front();
            spares.pop_front();
            ++i;
        } else if (k.workers.size() == 1) {
            return std::nullopt;
        } else {
            // Into the lighter neighbour (fewer layers; not the one holding the embedding or head): the new
            // shard it receives is the smaller.
            auto weight = [&](size_t j) {
                return 2 * k.layers[j] + (j == 0 && k.embedding_on_worker) + (j + 1 == k.workers.size() && k.head_on_worker);
            };
            size_t into = i > 0 ? i - 1 : 1;
            if (i > 0 && i + 1 < k.workers.size() && weight(i + 1) < weight(i - 1)) into = i + 1;
            k.layers[into] += k.layers[i];
            k.workers.erase(k.workers.begin() + static_cast<std::ptrdiff_t>(i));
            k.layers.erase(k.layers.begin() + static_cast<std::ptrdiff_t>(i));  // i is now the next stage
        }
    }
    if (k.workers.empty()) return std::nullopt;
    return k;
}

std::vector<int>& RecoveringEngine::history(int slot) {
    if (slot < 0 || static_cast<size_t>(slot) >= histories_.size())
        throw Error("slot " + std::to_string(slot) + " of " + std::to_string(histories_.size()));
    return histories_[static_cast<size_t>(slot)];
}

void RecoveringEngine::release(int slot) { history(slot).clear(); }

PipelineStats RecoveringEngine::batch_stats() const {
    PipelineStats s = inner_ ? inner_->batch_stats() : PipelineStats{};
    s.recovery = recovery_stats_;
    return s;
}

template <class Call>
auto RecoveringEngine::retrying(Call call) {
    call_started_ = Clock::now();
    for (;;) {
        try {
            return call();
        } catch (const WorkerError& e) {
            recover(e, Clock::now());
        }
    }
}

float* RecoveringEngine::forward(const int* tokens, int n_tokens, int pos) {
    std::vector<int>& h = history(0);
    h.resize(static_cast<size_t>(std::max(0, pos)));
    float* logits = retrying([&] { return inner_->forward(tokens, n_tokens, pos); });
    h.insert(h.end(), tokens, tokens + n_tokens);
    return logits;
}

int RecoveringEngine::forward_sample(const int* tokens, int n_tokens, int pos, Sampler& sampler) {
    std::vector<int>& h = history(0);
    h.resize(static_cast<size_t>(std::max(0, pos)));
    const int token = retrying([&] { return inner_->forward_sample(tokens, n_tokens, pos, sampler); });
    h.insert(h.end(), tokens, tokens + n_tokens);
    return token;
}

void RecoveringEngine::submit(Batch batch) {
    for (const SeqStep& s : batch.steps) {
        std::vector<int>& h = history(s.slot);
        h.resize(static_cast<size_t>(std::max(0, s.pos)));
        h.insert(h.end(), s.tokens.begin(), s.tokens.end());
    }
    in_flight_.push_back(batch);
    call_started_ = Clock::now();
    try {
        inner_->submit(std::move(batch));
    } catch (const WorkerError& e) {
        recover(e, Clock::now());  // resubmits everything in flight, this batch too
    }
}

Batch RecoveringEngine::wait() {
    Batch done = retrying([&] { return inner_->wait(); });
    in_flight_.pop_front();
    return done;
}

// Rebuilds every sequence's KV cache on the new chain: the positions before
// its first step in flight (or all it was fed), in batches of the plan's
// request size, then resubmits what was in flight.
void RecoveringEngine::replay() {
    std::vector<size_t> held(histories_.size());
    for (size_t s = 0; s < histories_.size(); ++s) held[s] = histories_[s].size();
    for (const Batch& b : in_flight_)
        for (const SeqStep& st : b.steps) held[static_cast<size_t>(st.slot)] = std::min(held[static_cast<size_t>(st.slot)], static_cast<size_t>(st.pos));
    const int rows = std::max(1, inner_->max_rows());
    size_t waiting = 0;
    Batch batch;
    auto flush = [&] {
        if (batch.steps.empty()) return;
        if (static_cast<int>(waiting) >= std::max(1, inner_->depth())) {
            inner_->wait();
            --waiting;
        }
        inner_->submit(std::move(batch));
        ++waiting;
        batch = Batch{};
    };
    for (size_t s = 0; s < histories_.size(); ++s) {
        const std::vector<int>& h = histories_[s];
        for (size_t at = 0; at < held[s];) {
            const int room = rows - batch.rows();
            if (room <= 0) {
                flush();
                continue;
            }
            const size_t n = std::min(static_cast<size_t>(room), held[s] - at);
            SeqStep step;
            step.slot = static_cast<int>(s);
            step.pos = static_cast<int>(at);
            step.tokens.assign(h.begin() + static_cast<std::ptrdiff_t>(at), h.begin() + static_cast<std::ptrdiff_t>(at + n));
            batch.steps.push_back(std::move(step));
            at += n;
        }
    }
    flush();
    while (waiting-- > 0) inner_->wait();
    for (const Batch& b : in_flight_) inner_->submit(b);
}

void RecoveringEngine::recover(const WorkerError& failure, Clock::time_point detected) {
    const auto t0 = Clock::now();
    RecoveryStats& r = recovery_stats_;
    r = RecoveryStats{recovery_stats_.count + 1};  // the last recovery's figures, never a mix with the one before
    r.failure = failure.what();
    r.detect_ms = std::chrono::duration<double, std::milli>(detected - call_started_).count();
    if (t0 - last_recovery_ > std::chrono::hours(1)) recent_recoveries_ = 0;
    last_recovery_ = t0;
    if (++recent_recoveries_ > recovery_.max_recoveries) {
        inner_.reset();
        throw WorkerError(failure.address, std::string(failure.what()) + " (gave up after " + std::to_string(recovery_.max_recoveries) +
                    " recoveries within an hour)");
    }
    spdlog::warn("recovery {}: {}; detected {:.0f} ms after the last answer; planning again without it", r.count,
                 failure.what(), r.detect_ms);
    const ChainShape before = inner_ ? shape_of(*inner_) : ChainShape{};
    inner_.reset();  // closes every connection: the survivors end the old session
    std::vector<std::string> candidates;
    for (const auto* list : {&options_.workers, &recovery_.spares})
        for (const std::string& a : *list)
            if (std::find(candidates.begin(), candidates.end(), a) == candidates.end()) candidates.push_back(a);
    std::set<std::string> dead = {failure.address};
    const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(recovery_.wait_s * 1000));
    std::string too_small;  // why the survivors cannot go on alone, once seen
    bool keep_fits = true;  // until a chain that keeps the survivors' ranges is found not to fit
    auto give_up = [&](const std::string& last) {
        return WorkerError(failure.address, std::string("cannot recover from \"") + failure.what() + "\": " + (too_small.empty() ? last : too_small) +
                     (too_small.empty() ? std::string()
                                        : "; no worker came back within --recover-wait " +
                                              std::to_string(static_cast<int>(recovery_.wait_s)) + " s"));
    };
    size_t replayed = 0;
    for (const auto& h : histories_) replayed += h.size();
    for (;;) {
        std::deque<std::string> spares;  // alive and in no chain
        std::vector<std::string> alive;
        for (const std::string& c : candidates) {
            if (dead.count(c)) continue;
            alive.push_back(c);
            if (std::find(before.workers.begin(), before.workers.end(), c) == before.workers.end()) spares.push_back(c);
        }
        // First choice: the same ranges, so every survivor keeps its shard.
        const std::optional<ChainShape> kept = keep_fits ? keep_ranges(before, dead, spares) : std::nullopt;
        try {
            if (alive.empty()) throw Error("no worker is left to plan over");
            const auto t_plan = Clock::now();
            inner_ = start(kept ? shaped(*kept) : planned(alive));
            const PipelineStats chain = inner_->stats();
            r.shards_ms = chain.shard_seconds * 1000;
            r.shard_bytes = chain.shard_bytes_sent;
            r.plan_ms = std::max(0.0, ms_since(t_plan) - r.shards_ms);
            const size_t stages = inner_->plan().stages.size();
            spdlog::warn("recovery {}: {} over {} worker{} in {:.0f} ms", r.count,
                         kept ? "kept the survivors' ranges" : "re-planned", stages, stages == 1 ? "" : "s", r.plan_ms);
            spdlog::warn("recovery {}: shards {} in {:.0f} ms", r.count,
                         r.shard_bytes ? format_bytes(r.shard_bytes) + " sent" : std::string("all from caches"),
                         r.shards_ms);
            const auto t_replay = Clock::now();
            replay();
            r.replay_ms = ms_since(t_replay);
            r.replayed_positions = replayed;
            r.total_ms = ms_since(t0);
            spdlog::warn("recovery {}: replayed {} positions in {:.0f} ms; {:.0f} ms in all", r.count, replayed,
                         r.replay_ms, r.total_ms);
            call_started_ = Clock::now();  // the repeated call is timed afresh
            return;
        } catch (const WorkerError& e) {
            inner_.reset();
            if (Clock::now() > deadline) throw give_up(e.what());
            if (still_closing(e) || e.address.empty()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(300));
            } else {
                spdlog::warn("recovery {}: {}; trying without it", r.count, e.what());
                dead.insert(e.address);
            }
        } catch (const Error& e) {
            inner_.reset();
            if (kept) {  // the kept ranges do not fit (a spare with less memory): plan afresh
                spdlog::info("recovery {}: keeping the ranges does not fit ({}); planning afresh", r.count, e.what());
                keep_fits = false;
                continue;
            }
            // Too few workers to hold the model (or none): wait for one to return.
            if (too_small.empty())
                spdlog::warn("recovery {}: {}; waiting up to {:.0f} s for a worker to return", r.count, e.what(),
                             recovery_.wait_s);
            too_small = e.what();
            if (Clock::now() > deadline) throw give_up(e.what());
            std::this_thread::sleep_for(std::chrono::seconds(1));
            dead.clear();  // a restarted worker is back with its cache
            keep_fits = true;
        }
    }
}

}  // namespace ferry
