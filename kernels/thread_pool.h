// A persistent pool of compute threads. Work is handed out in small chunks
// from an atomic counter and the calling thread takes chunks too, so a thread
// that the OS deschedules (another process holding the core) only delays the
// chunk it holds instead of stalling a barrier.
#pragma once
#include <cstdint>
#include <functional>

namespace ferry::kernels {

class ThreadPool {
public:
    // n_threads counts the caller: 1 means no extra threads.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const;
    // Calls fn(begin, end) on disjoint ranges covering [0, n), each at most
    // `grain` long, and returns when all are done.
    void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

private:
    struct State;
    State* state_;
};

}  // namespace ferry::kernels
