// A worker's --memory is a promise: over its whole life (start-up speed
// probe, receiving its shard, loading it, prefill and decode) its peak RSS
// (VmHWM) stays at or under the budget, when the plan fills most of it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "tests/test_support.h"
#include "worker/capabilities.h"

namespace ferry {
namespace {

TEST(WorkerMemory, PeakRssStaysWithinA128MBudgetWithItsShardLoadedAndRunning) {
    test::TempDir tmp;
    // 8 layers of dim 512 in f32: 97.5 MB of weights, a small vocabulary (the
    // embedding and head are placed by the planner, on the worker or here).
    const auto synth = test::run_command({test::ferry_bin(), "synth", tmp.file("m.bin"), "--dim", "512", "--hidden-dim",
                                          "1376", "--layers", "8", "--heads", "8", "--vocab", "512", "--seq-len", "256",
                                          "-q"},
                                         60);
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
    constexpr uint64_t kBudget = 128ull << 20;
    test::WorkerProcess w({"--threads", "1", "--memory", "128M", "--cache-dir", tmp.file("cache")}, tmp.file("w.log"));
    const auto r = test::run_command({test::ferry_bin(), "bench", tmp.file("m.bin"), "--workers", w.address(),
                                      "--threads", "1", "--prompt-tokens", "64", "--gen-tokens", "16", "--runs", "1",
                                      "--bandwidth-passes", "0"},
                                     60);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // The plan filled most of the budget (else this test proves little).
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(layers 0-7[^\n]*?\s([0-9.]+)\s+128\.0\s)"))) << r.err;
    EXPECT_GT(std::stod(m[1]), 100.0) << r.err;
    // The node table reports the worker's peak, and `ferry status` its peak over its whole life.
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex(R"(\n127\.0\.0\.1:\d+\s+\S+\s+[0-9.]+\s+[0-9.]+\s+([0-9.]+))")))
        << r.err;
    EXPECT_LE(std::stod(m[1]), 128.0) << r.err;
    const auto s = test::run_command({test::ferry_bin(), "status", "--json", "--workers", w.address()}, 10);
    ASSERT_EQ(s.exit_code, 0) << s.err;
    const auto j = nlohmann::json::parse(s.out)[0];
    EXPECT_GE(j["shard_bytes_received"].get<uint64_t>(), 97ull << 20) << "the shard was not received";
    EXPECT_GT(j["peak_rss"].get<uint64_t>(), 97ull << 20) << "the weights were never resident";
    EXPECT_LE(j["peak_rss"].get<uint64_t>(), kBudget) << s.out << "\n" << r.err;
}

TEST(WorkerMemory, TheSpeedProbeIsBoundedByTheBudget) {
    EXPECT_EQ(worker::probe_limit(0), 64ll << 20);
    EXPECT_EQ(worker::probe_limit(128ull << 20), 16ll << 20);
    EXPECT_EQ(worker::probe_limit(1ull << 30), 64ll << 20);
    EXPECT_EQ(worker::probe_limit(64ull << 20), 4ll << 20);
    EXPECT_EQ(worker::probe_limit(4ull << 20), 1ll << 20);
}

}  // namespace
}  // namespace ferry
