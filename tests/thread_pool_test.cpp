// kernels::ThreadPool: every index exactly once, the edge cases, exceptions,
// nested and concurrent callers, and no deadlock or stall when there are far
// more threads than cores.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/thread_pool.h"

namespace ferry::kernels {
namespace {

// Runs parallel_for and checks that the ranges are disjoint, at most grain
// long, and cover [0, n) exactly once.
void expect_exact_cover(ThreadPool& pool, int64_t n, int64_t grain) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n > 0 ? n : 0));
    std::atomic<int64_t> too_long{0};
    pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        if (e - b > (grain < 1 ? 1 : grain) || b >= e) too_long.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    EXPECT_EQ(too_long.load(), 0) << "n " << n << " grain " << grain;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " n " << n << " grain " << grain;
}

TEST(ThreadPool, EveryIndexExactlyOnce) {
    for (int threads : {1, 2, 3, 8}) {
        ThreadPool pool(threads);
        EXPECT_EQ(pool.size(), threads);
        for (int64_t n : {1, 2, 3, 7, 64, 1000, 4097})
            for (int64_t grain : {1, 2, 3, 16, 1000}) expect_exact_cover(pool, n, grain);
    }
}

TEST(ThreadPool, EdgeCases) {
    ThreadPool pool(3);
    int calls = 0;
    pool.parallel_for(0, 1, [&](int64_t, int64_t) { ++calls; });
    pool.parallel_for(-5, 1, [&](int64_t, int64_t) { ++calls; });
    EXPECT_EQ(calls, 0) << "n <= 0 calls nothing";

    // grain > n: one call on the caller's thread.
    std::vector<std::pair<int64_t, int64_t>> ranges;
    std::thread::id ran_on;
    pool.parallel_for(5, 100, [&](int64_t b, int64_t e) {
        ranges.emplace_back(b, e);
        ran_on = std::this_thread::get_id();
    });
    ASSERT_EQ(ranges.size(), 1u);
    EXPECT_EQ(ranges[0], std::make_pair(int64_t{0}, int64_t{5}));
    EXPECT_EQ(ran_on, std::this_thread::get_id()) << "a job of one chunk stays on the caller";

    expect_exact_cover(pool, 10, 0);   // grain < 1 counts as 1
    expect_exact_cover(pool, 10, -3);
    ThreadPool no_helpers(0);  // counts as 1
    EXPECT_EQ(no_helpers.size(), 1);
    expect_exact_cover(no_helpers, 100, 7);
}

TEST(ThreadPool, HelpersTakeChunks) {
    ThreadPool pool(2);
    std::atomic<int> on_caller{0}, elsewhere{0};
    const std::thread::id caller = std::this_thread::get_id();
    // Chunks long enough (~1 ms each) that the helper wakes and takes some.
    for (int round = 0; round < 20 && elsewhere.load() == 0; ++round)
        pool.parallel_for(8, 1, [&](int64_t, int64_t) {
            const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
            while (std::chrono::steady_clock::now() < until) {
            }
            (std::this_thread::get_id() == caller ? on_caller : elsewhere).fetch_add(1);
        });
    EXPECT_GT(elsewhere.load(), 0) << "the helper thread never ran a chunk";
}

TEST(ThreadPool, ExceptionReachesTheCallerAndThePoolStaysUsable) {
    ThreadPool pool(3);
    for (int round = 0; round < 10; ++round) {
        std::atomic<int> ran{0};
        EXPECT_THROW(pool.parallel_for(100, 1,
                                       [&](int64_t b, int64_t) {
                                           ran.fetch_add(1);
                                           if (b == 37) throw std::runtime_error("chunk 37");
                                       }),
                     std::runtime_error);
        EXPECT_LE(ran.load(), 100);
        expect_exact_cover(pool, 500, 3);
    }
    try {
        pool.parallel_for(4, 1, [](int64_t b, int64_t) {
            if (b == 2) throw std::invalid_argument("the message");
        });
        FAIL() << "no exception";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "the message");
    }
}

TEST(ThreadPool, NestedCallsRunInline) {
    ThreadPool pool(3);
    std::vector<std::atomic<int>> hits(40 * 30);
    pool.parallel_for(40, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
            pool.parallel_for(30, 4, [&](int64_t b2, int64_t e2) {
                for (int64_t j = b2; j < e2; ++j) hits[i * 30 + j].fetch_add(1);
            });
    });
    for (auto& h : hits) ASSERT_EQ(h.load(), 1);
}

TEST(ThreadPool, ConcurrentCallersBothFinish) {
    ThreadPool pool(2);
    std::vector<std::atomic<int>> a(5000), b(5000);
    auto job = [&](std::vector<std::atomic<int>>& hits) {
        for (int round = 0; round < 50; ++round)
            pool.parallel_for(100, 3, [&](int64_t s, int64_t e) {
                for (int64_t i = s; i < e; ++i) hits[round * 100 + i].fetch_add(1);
            });
    };
    std::thread other([&] { job(b); });
    job(a);
    other.join();
    for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_EQ(a[i].load(), 1);
        ASSERT_EQ(b[i].load(), 1);
    }
}

// 8 threads squeezed onto one core (the worst oversubscription): thousands
// of small jobs must still finish promptly, because nobody waits for a chunk
// that a descheduled thread has not started.
TEST(ThreadPool, OversubscribedPoolDoesNotStall) {
    cpu_set_t saved;
    ASSERT_EQ(sched_getaffinity(0, sizeof saved, &saved), 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    int first_cpu = 0;
    while (first_cpu < CPU_SETSIZE && !CPU_ISSET(first_cpu, &saved)) ++first_cpu;
    CPU_SET(first_cpu, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);  // helpers inherit it
    {
        auto pool = std::make_unique<ThreadPool>(8);
        const auto t0 = std::chrono::steady_clock::now();
        std::atomic<int64_t> sum{0};
        // 500 jobs of 16 chunks of ~20 us: 160 ms of work, with helpers
        // descheduled while they hold chunks.
        for (int job = 0; job < 500; ++job)
            pool->parallel_for(64, 4, [&](int64_t b, int64_t e) {
                const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
                while (std::chrono::steady_clock::now() < until) {
                }
                sum.fetch_add(e - b);
            });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        EXPECT_EQ(sum.load(), 500 * 64);
        // A fraction of a second normally; generous for a loaded machine.
        EXPECT_LT(seconds, 20.0);
        pool.reset();  // joins sleeping and spinning helpers
    }
    ASSERT_EQ(sched_setaffinity(0, sizeof saved, &saved), 0);
}

TEST(ThreadPool, IdleHelpersSleepAndWakeForTheNextJob) {
    ThreadPool pool(3);
    expect_exact_cover(pool, 100, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin: helpers are asleep
    expect_exact_cover(pool, 100, 1);
    std::atomic<int> helpers_ran{0};
    const std::thread::id caller = std::this_thread::get_id();
    for (int round = 0; round < 20 && helpers_ran.load() == 0; ++round) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        pool.parallel_for(16, 1, [&](int64_t, int64_t) {
            std::this_thread::sleep_for(std::chrono::microseconds(500));
            if (std::this_thread::get_id() != caller) helpers_ran.fetch_add(1);
        });
    }
    EXPECT_GT(helpers_ran.load(), 0) << "sleeping helpers never woke up";
}

}  // namespace
}  // namespace ferry::kernels
