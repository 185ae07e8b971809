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
    FERRY_SKIP_IF_SANITIZED();
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

// A whole 4096-position prompt would not fit the worker's 80 MB (its request
// buffers alone are 24 MB), prompts in requests of 512 do: the planner picks
// that, the worker is assigned it and accepts, and a 588-token prompt crosses
// in two requests with the single process's text.
TEST(WorkerMemory, APlannedRequestSizeIsWhatTheWorkerIsAssignedAndWhatIsSent) {
    FERRY_SKIP_IF_SANITIZED();
    test::TempDir tmp;
    const auto synth = test::run_command({test::ferry_bin(), "synth", tmp.file("m.bin"), "--dim", "512", "--hidden-dim",
                                          "512", "--layers", "2", "--heads", "8", "--vocab", "256", "--seq-len", "4096",
                                          "--tokenizer-out", tmp.file("tok.bin"), "-q"},
                                         60);
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
    std::string prompt = "the cat sat on a mat";
    for (int i = 0; i < 27; ++i) prompt += " the cat sat on a mat";
    // The model's whole context (run would size it to the 700 positions, which fit in one request).
    const std::vector<std::string> run = {test::ferry_bin(), "run", tmp.file("m.bin"), "-z", tmp.file("tok.bin"), "-i",
                                          prompt, "-n", "700", "-t", "0", "--threads", "1", "--ctx", "4096"};
    const auto single = test::run_command(run, 60);
    ASSERT_EQ(single.exit_code, 0) << single.err;
    test::WorkerProcess w({"--threads", "1", "--memory", "80M", "--cache-dir", tmp.file("cache")}, tmp.file("w.log"));
    std::vector<std::string> pipeline = run;
    for (const char* a : {"--embedding-on-coordinator", "--workers"}) pipeline.push_back(a);
    pipeline.push_back(w.address());
    const auto r = test::run_command(pipeline, 60);
    ASSERT_EQ(r.exit_code, 0) << r.err << w.log();
    EXPECT_NE(r.err.find("prompts in requests of at most 512 positions"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("prefill: 588 tokens"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, single.out);
}

TEST(WorkerMemory, TheSpeedProbeIsBoundedByTheBudget) {
    FERRY_SKIP_IF_SANITIZED();
    EXPECT_EQ(worker::probe_limit(0), 64ll << 20);
    EXPECT_EQ(worker::probe_limit(128ull << 20), 16ll << 20);
    EXPECT_EQ(worker::probe_limit(1ull << 30), 64ll << 20);
    EXPECT_EQ(worker::probe_limit(64ull << 20), 4ll << 20);
    EXPECT_EQ(worker::probe_limit(4ull << 20), 1ll << 20);
    // No budget: the machine's available RAM bounds it alike (a 128 MB PC with 100 MB free: 4 MB).
    EXPECT_EQ(worker::probe_limit(0, 100ull << 20), 4ll << 20);
    EXPECT_EQ(worker::probe_limit(0, 16ull << 30), 64ll << 20);
    EXPECT_EQ(worker::probe_limit(64ull << 20, 16ull << 30), 4ll << 20);  // a budget wins over free RAM
    EXPECT_GE(worker::served_speed_min_bytes(), 8ull << 20);
    EXPECT_LE(worker::served_speed_min_bytes(), 64ull << 20);
}

}  // namespace
}  // namespace ferry
