#include "kernels/thread_pool.h"

#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace ferry::kernels {

namespace {

using Fn = std::function<void(int64_t, int64_t)>;
using Clock = std::chrono::steady_clock;

// How long an idle helper polls for the next job before it sleeps. Decode
// runs a job per matrix with microseconds in between, so the helpers stay
// awake through a token; a pool idle for longer costs no CPU.
constexpr auto kHelperSpin = std::chrono::microseconds(100);
// A helper that finds it was descheduled while polling shares its core with
// another process. Polling would spend its share of that core (and make the
// scheduler preempt it in the middle of a chunk, which the caller then waits
// for), so it sleeps at once for a while: a thread woken from sleep runs
// promptly and finishes its short chunk.
constexpr auto kDescheduledGap = std::chrono::microseconds(100);
constexpr auto kContendedFor = std::chrono::milliseconds(50);
// How long the caller polls for chunks other threads are finishing before
// it starts yielding its core (to a helper the OS may have put on it).
constexpr auto kCallerSpin = std::chrono::microseconds(50);

// The claim word: generation in the high half, next chunk in the low half.
constexpr uint64_t kChunkMask = 0xffffffffu;
constexpr uint64_t kClosed = 0xffffffffu;  // low half of a finished job: nothing to claim
constexpr int64_t kMaxChunks = int64_t{1} << 31;

void cpu_relax() {
#if defined(__i386__) || defined(__x86_64__)
    __asm__ __volatile__("rep; nop");  // PAUSE; a plain NOP on CPUs older than the Pentium 4
#endif
}

// Set while a thread runs chunks of a job, so a nested parallel_for runs inline.
thread_local bool t_in_job = false;

void run_inline(int64_t n, int64_t grain, const Fn& fn) {
    for (int64_t b = 0; b < n; b += grain) fn(b, b + grain < n ? b + grain : n);
}

}  // namespace

struct ThreadPool::State {
    std::vector<std::thread> threads;
    std::mutex caller;  // one job at a time

    // The current job. Written by the caller only between jobs (while the
    // claim word is closed), read by helpers after they see its generation.
    std::atomic<const Fn*> fn{nullptr};
    std::atomic<int64_t> n{0};
    std::atomic<int64_t> grain{1};
    std::atomic<int64_t> chunks{0};
    std::atomic<uint64_t> claim{kClosed};
    std::atomic<int64_t> done{0};
    std::atomic<bool> failed{false};
    std::mutex error_mutex;
    std::exception_ptr error;

    // Sleeping helpers wait on `posted` (the generation, 32 bits for a futex).
    std::atomic<uint32_t> posted{0};
    std::atomic<int> sleepers{0};
    std::atomic<bool> stop{false};

    // Claims the next chunk of generation gen; false once there is none.
    bool claim_chunk(uint32_t gen, int64_t n_chunks, int64_t* chunk) {
        uint64_t w = claim.load(std::memory_order_acquire);
        for (;;) {
            if (static_cast<uint32_t>(w >> 32) != gen || static_cast<int64_t>(w & kChunkMask) >= n_chunks) return false;
            if (claim.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
                *chunk = static_cast<int64_t>(w & kChunkMask);
                return true;
            }
        }
    }

    // Runs chunks of generation gen until none is left.
    void run_chunks(uint32_t gen) {
        const Fn* f = fn.load(std::memory_order_relaxed);
        const int64_t total = n.load(std::memory_order_relaxed);
        const int64_t g = grain.load(std::memory_order_relaxed);
        const int64_t n_chunks = chunks.load(std::memory_order_relaxed);
        // If these were read while the caller was already setting up the next
        // job, the fence makes claim_chunk see the closed claim word and refuse.
        std::atomic_thread_fence(std::memory_order_acquire);
        int64_t c;
        t_in_job = true;
        while (claim_chunk(gen, n_chunks, &c)) {
            if (!failed.load(std::memory_order_relaxed)) {
                try {
                    const int64_t begin = c * g;
                    (*f)(begin, begin + g < total ? begin + g : total);
                } catch (...) {
                    std::lock_guard<std::mutex> lock(error_mutex);
                    if (!error) error = std::current_exception();
                    failed.store(true, std::memory_order_relaxed);
                }
            }
            done.fetch_add(1, std::memory_order_acq_rel);
        }
        t_in_job = false;
    }

    void helper_loop() {
        uint32_t seen = static_cast<uint32_t>(claim.load(std::memory_order_acquire) >> 32);
        Clock::time_point contended_until{};
        for (;;) {
            // Wait for a generation we have not worked on: spin, then sleep.
            Clock::time_point last_poll = Clock::now();
            const Clock::time_point spin_end = last_poll < contended_until ? last_poll : last_poll + kHelperSpin;
            uint32_t gen;
            for (int polls = 0;; ++polls) {
                if (stop.load(std::memory_order_acquire)) return;
                gen = static_cast<uint32_t>(claim.load(std::memory_order_acquire) >> 32);
                if (gen != seen) break;
                if ((polls & 15) != 15) {
                    cpu_relax();
                    continue;
                }
                const Clock::time_point now = Clock::now();
                if (now - last_poll > kDescheduledGap) contended_until = now + kContendedFor;
                last_poll = now;
                if (now < spin_end && now >= contended_until) continue;
                sleepers.fetch_add(1, std::memory_order_seq_cst);
                if (posted.load(std::memory_order_seq_cst) == seen && !stop.load(std::memory_order_seq_cst))
                    posted.wait(seen, std::memory_order_seq_cst);
                sleepers.fetch_sub(1, std::memory_order_seq_cst);
                last_poll = Clock::now();
            }
            seen = gen;
            run_chunks(gen);
        }
    }
};

ThreadPool::ThreadPool(int n_threads) : state_(new State) {
    for (int i = 1; i < n_threads; ++i) state_->threads.emplace_back([s = state_] { s->helper_loop(); });
}

ThreadPool::~ThreadPool() {
    state_->stop.store(true, std::memory_order_seq_cst);
    state_->posted.fetch_add(1, std::memory_order_seq_cst);
    state_->posted.notify_all();
    for (std::thread& t : state_->threads) t.join();
    delete state_;
}

int ThreadPool::size() const { return static_cast<int>(state_->threads.size()) + 1; }

void ThreadPool::parallel_for(int64_t n, int64_t grain, const Fn& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (n / grain >= kMaxChunks) grain = n / (kMaxChunks - 1) + 1;
    State& s = *state_;
    if (s.threads.empty() || n <= grain || t_in_job) return run_inline(n, grain, fn);
    std::unique_lock<std::mutex> lock(s.caller, std::try_to_lock);
    if (!lock.owns_lock()) return run_inline(n, grain, fn);  // another thread's job holds the helpers

    const int64_t n_chunks = (n + grain - 1) / grain;
    // The previous job's claim word is closed; a helper that reads any of the
    // values below also sees that, so it cannot claim with mixed values.
    std::atomic_thread_fence(std::memory_order_release);
    s.fn.store(&fn, std::memory_order_relaxed);
    s.n.store(n, std::memory_order_relaxed);
    s.grain.store(grain, std::memory_order_relaxed);
    s.chunks.store(n_chunks, std::memory_order_relaxed);
    s.done.store(0, std::memory_order_relaxed);
    s.failed.store(false, std::memory_order_relaxed);
    s.error = nullptr;
    const uint32_t gen = static_cast<uint32_t>(s.claim.load(std::memory_order_relaxed) >> 32) + 1;
    s.claim.store(static_cast<uint64_t>(gen) << 32, std::memory_order_release);
    s.posted.store(gen, std::memory_order_seq_cst);
    if (s.sleepers.load(std::memory_order_seq_cst) > 0) s.posted.notify_all();

    s.run_chunks(gen);
    // Every chunk is claimed; wait only for those other threads are running.
    const Clock::time_point wait_start = Clock::now();
    for (int polls = 0; s.done.load(std::memory_order_acquire) != n_chunks; ++polls) {
        if ((polls & 63) != 63 || Clock::now() - wait_start < kCallerSpin) cpu_relax();
        else std::this_thread::yield();
    }
    s.claim.store((static_cast<uint64_t>(gen) << 32) | kClosed, std::memory_order_relaxed);
    if (s.failed.load(std::memory_order_relaxed)) std::rethrow_exception(s.error);
}

}  // namespace ferry::kernels
