#include "coordinator/pipeline/recovering_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

namespace ferry {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// The worker still has the old session open (it has not yet seen our side close): not a failure.
bool still_closing(const WorkerError& e) { return std::string(e.what()).find("one coordinator at a time") != std::string::npos; }

}  // namespace

RecoveringEngine::RecoveringEngine(const ModelFile& file, const PipelineOptions& options, const RecoveryOptions& recovery,
                                   int context, kernels::ThreadPool* pool)
    : file_(file), options_(options), recovery_(recovery), context_(context), config_(file.config), pool_(pool) {
    inner_ = start(options_.workers, true);
    histories_.resize(static_cast<size_t>(inner_->slots()));
}

std::unique_ptr<PipelineEngine> RecoveringEngine::start(const std::vector<std::string>& workers, bool first) {
    PipelineOptions o = options_;
    o.workers = workers;
    if (!first) o.split.clear();  // a forced split was for the workers as they were
    return std::make_unique<PipelineEngine>(file_, o, context_, pool_);
}

std::vector<int>& RecoveringEngine::history(int slot) {
    if (slot < 0 || static_cast<size_t>(slot) >= histories_.size())
        throw Error("slot " + std::to_string(slot) + " of " + std::to_string(histories_.size()));
    return histories_[static_cast<size_t>(slot)];
}

void RecoveringEngine::release(int slot) { history(slot).clear(); }

template <class Call>
auto RecoveringEngine::retrying(Call call) {
    for (;;) {
        try {
            return call();
        } catch (const WorkerError& e) {
            recover(e);
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
    try {
        inner_->submit(std::move(batch));
    } catch (const WorkerError& e) {
        recover(e);  // resubmits everything in flight, this batch too
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

void RecoveringEngine::recover(const WorkerError& failure) {
    const auto t0 = Clock::now();
    ++recoveries_;
    if (t0 - last_recovery_ > std::chrono::hours(1)) recent_recoveries_ = 0;
    last_recovery_ = t0;
    if (++recent_recoveries_ > recovery_.max_recoveries) {
        inner_.reset();
        throw Error(std::string(failure.what()) + " (gave up after " + std::to_string(recovery_.max_recoveries) +
                    " recoveries within an hour)");
    }
    spdlog::warn("recovery {}: {}; planning again without it", recoveries_, failure.what());
    inner_.reset();  // closes every connection: the survivors end the old session
    std::vector<std::string> candidates;
    for (const auto* list : {&options_.workers, &recovery_.spares})
        for (const std::string& a : *list)
            if (std::find(candidates.begin(), candidates.end(), a) == candidates.end()) candidates.push_back(a);
    std::set<std::string> dead = {failure.address};
    const auto deadline = t0 + std::chrono::milliseconds(static_cast<int64_t>(recovery_.wait_s * 1000));
    std::string too_small;  // why the survivors cannot go on alone, once seen
    auto give_up = [&](const std::string& last) {
        return Error(std::string("cannot recover from \"") + failure.what() + "\": " + (too_small.empty() ? last : too_small) +
                     (too_small.empty() ? std::string()
                                        : "; no worker came back within --recover-wait " +
                                              std::to_string(static_cast<int>(recovery_.wait_s)) + " s"));
    };
    size_t replayed = 0;
    for (const auto& h : histories_) replayed += h.size();
    for (;;) {
        std::vector<std::string> alive;
        for (const std::string& a : candidates)
            if (!dead.count(a)) alive.push_back(a);
        try {
            if (alive.empty()) throw Error("no worker is left to plan over");
            const auto t_plan = Clock::now();
            inner_ = start(alive, false);
            spdlog::warn("recovery {}: re-planned over {} worker{} in {:.0f} ms", recoveries_, alive.size(),
                         alive.size() == 1 ? "" : "s", ms_since(t_plan));
            const auto t_replay = Clock::now();
            replay();
            spdlog::warn("recovery {}: replayed {} positions in {:.0f} ms; {:.0f} ms in all", recoveries_, replayed,
                         ms_since(t_replay), ms_since(t0));
            return;
        } catch (const WorkerError& e) {
            inner_.reset();
            if (Clock::now() > deadline) throw give_up(e.what());
            if (still_closing(e) || e.address.empty()) {
                std::this_thread::sleep_for(std::chrono::milliseconds(300));
            } else {
                spdlog::warn("recovery {}: {}; trying without it", recoveries_, e.what());
                dead.insert(e.address);
            }
        } catch (const Error& e) {
            // Too few workers to hold the model (or none): wait for one to return.
            inner_.reset();
            if (too_small.empty())
                spdlog::warn("recovery {}: {}; waiting up to {:.0f} s for a worker to return", recoveries_, e.what(),
                             recovery_.wait_s);
            too_small = e.what();
            if (Clock::now() > deadline) throw give_up(e.what());
            std::this_thread::sleep_for(std::chrono::seconds(1));
            dead.clear();  // a restarted worker is back with its cache
        }
    }
}

}  // namespace ferry
