#include "kernels/thread_pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::kernels {

struct ThreadPool::State {
    std::vector<std::thread> threads;
    std::mutex mutex;
    std::condition_variable wake;
    bool stop = false;
    uint64_t generation = 0;
    // The job of the current generation.
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t grain = 1;
    int64_t chunks = 0;
    std::atomic<int64_t> next_chunk{0};
    std::atomic<int64_t> done_chunks{0};
    // Workers that joined the current job and have not left it; a new job may
    // only reset the counters once this is zero.
    std::atomic<int> active{0};

    void run_chunks() {
        for (;;) {
            const int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed);
            if (c >= chunks) return;
            const int64_t begin = c * grain;
            const int64_t end = begin + grain < n ? begin + grain : n;
            (*fn)(begin, end);
            done_chunks.fetch_add(1, std::memory_order_release);
        }
    }

    void worker_loop() {
        uint64_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex);
                wake.wait(lock, [&] { return stop || generation != seen; });
                if (stop) return;
                seen = generation;
                active.fetch_add(1, std::memory_order_acquire);
            }
            run_chunks();
            active.fetch_sub(1, std::memory_order_release);
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : state_(new State) {
    for (int i = 1; i < n_threads; ++i) state_->threads.emplace_back([s = state_] { s->worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(state_->mutex);
        state_->stop = true;
    }
    state_->wake.notify_all();
    for (std::thread& t : state_->threads) t.join();
    delete state_;
}

int ThreadPool::size() const { return static_cast<int>(state_->threads.size()) + 1; }

void ThreadPool::parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (state_->threads.empty() || n <= grain) {
        fn(0, n);
        return;
    }
    State& s = *state_;
    {
        std::unique_lock<std::mutex> lock(s.mutex);
        while (s.active.load(std::memory_order_acquire) != 0) {
            lock.unlock();
            std::this_thread::yield();
            lock.lock();
        }
        s.fn = &fn;
        s.n = n;
        s.grain = grain;
        s.chunks = (n + grain - 1) / grain;
        s.next_chunk.store(0, std::memory_order_relaxed);
        s.done_chunks.store(0, std::memory_order_relaxed);
        ++s.generation;
    }
    s.wake.notify_all();
    s.run_chunks();
    // Only chunks a descheduled worker already holds are left; wait for them.
    while (s.done_chunks.load(std::memory_order_acquire) != s.chunks) std::this_thread::yield();
}

}  // namespace ferry::kernels
