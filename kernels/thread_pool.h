// A persistent pool of compute threads, built to degrade gracefully when
// another process holds a core (OpenMP-style barriers collapse then: every
// step waits for the slowest, possibly descheduled, thread).
//
//  * Work is cut into chunks claimed one at a time from a shared counter, and
//    the calling thread claims chunks too. A helper that is descheduled can
//    only delay the one chunk it holds; everything nobody has started yet is
//    done by whoever is running. Nobody ever waits for an unstarted chunk.
//  * A job of one chunk (a tiny matrix) runs on the caller and never touches
//    the helpers.
//  * Idle helpers spin briefly (jobs of one token come back to back), then
//    sleep on a futex so an idle pool costs nothing.
//  * A job never waits for helpers to leave the previous one: chunks are
//    claimed with a generation-tagged counter, so a late helper cannot take
//    work from a job it did not see start.
#pragma once
#include <cstdint>
#include <functional>

namespace ferry::kernels {

class ThreadPool {
public:
    // n_threads counts the caller: 1 (or less) means no extra threads.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const;
    // Calls fn(begin, end) on disjoint ranges covering [0, n), each at most
    // `grain` long (grain < 1 counts as 1), and returns when all are done.
    // Which thread runs which range is unspecified, so fn must not depend on
    // it. If fn throws, the remaining ranges are skipped and the first
    // exception is rethrown here. Called from inside fn (nested) or while
    // another thread's job is running, it runs the ranges on the calling
    // thread.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

private:
    struct State;
    State* state_;
};

// Runs fn(t0, t1) over [0, n): on the pool in chunks of `grain` when there
// is one and more than one chunk, else on the calling thread. Each item is
// computed the same way either way.
template <class F>
void for_range(int64_t n, int64_t grain, ThreadPool* pool, F&& fn) {
    if (pool && n > grain) pool->parallel_for(n, grain, fn);
    else fn(0, n);
}

}  // namespace ferry::kernels
