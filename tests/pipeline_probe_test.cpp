// probe_workers (what `ferry plan --workers` asks): each worker's capacity
// as the planner needs it, learnt as a status client, so probing a pool that
// is mid-run neither takes a worker's coordinator slot nor changes the run.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "common/error.h"
#include "common/sampler.h"
#include "common/model_file.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "tests/test_support.h"
#include "worker/capabilities.h"

namespace ferry {
namespace {

TEST(PipelineProbe, CapacitiesOfLiveWorkersWhileAnotherCoordinatorRuns) {
    test::TwoWorkerSession s;
    test::WorkerProcess budgeted({"--threads", "1", "--memory", "96M", "--cache-dir", s.dir.file("cc")},
                                 s.dir.file("c.log"));
    test::follow_greedy_reference(*s.engine, "stories260K.greedy.n256.noprompt", 0, [&](int pos) {
        if (pos != 50) return;
        ProbeOptions o;
        o.tensor_type = "q8_0";
        const std::vector<WorkerCapacity> caps = probe_workers({s.a.address(), s.b.address(), budgeted.address()}, o);
        ASSERT_EQ(caps.size(), 3u);
        EXPECT_EQ(caps[0].address, s.a.address());
        EXPECT_EQ(caps[2].address, budgeted.address());
        EXPECT_EQ(caps[0].memory_budget, 0u);
        EXPECT_EQ(caps[2].memory_budget, 96ull << 20);
        for (const WorkerCapacity& c : caps) {
            EXPECT_GT(c.matvec_gbps, 0.0) << c.address;
            EXPECT_GT(c.link_mbps, 0.0) << c.address;
            EXPECT_GT(c.link_latency_ms, 0.0) << c.address;
            EXPECT_GT(c.type_gbps.count("f32"), 0u) << c.address;
        }
    });
    // The run's workers never saw a second coordinator.
    EXPECT_EQ(s.a.log().find("refused"), std::string::npos) << s.a.log();
}

// The start-up probe may read from cache; decode steps served read the shard
// from memory. After 32 of them the worker reports their rate (weights over
// compute time per step) as its speed for that type, and plans use it; a
// shard that fits the cache (stories260K's 1 MB) teaches nothing.
TEST(PipelineProbe, AWorkerReportsTheSpeedItServedDecodeStepsAt) {
    test::TempDir tmp;
    test::WorkerProcess w({"--threads", "1", "--cache-dir", tmp.file("c")}, tmp.file("w.log"));
    auto gbps = [&] {
        const auto r = test::run_command({test::ferry_bin(), "status", "--json", "--workers", w.address()}, 10);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return nlohmann::json::parse(r.out)[0]["type_gbps"].value("f32", 0.0);
    };
    auto run = [&](const std::string& model, const std::string& tok) {
        return test::run_command({test::ferry_bin(), "run", model, "-z", tok, "-n", "50", "-t", "0", "--threads", "1",
                                  "--workers", w.address(), "--embedding-on-worker", "--head-on-worker"},
                                 120);
    };
    const double probed = gbps();
    const auto small = run(test::model_path("stories260K.bin"), test::model_path("tok512.bin"));
    ASSERT_EQ(small.exit_code, 0) << small.err;
    EXPECT_EQ(gbps(), probed) << "a cache-sized shard changed the worker's speed";

    // Layers of 4 MB, enough of them to count.
    const int layers = static_cast<int>(worker::served_speed_min_bytes() / (4ull << 20)) + 2;
    const auto synth = test::run_command({test::ferry_bin(), "synth", tmp.file("m.bin"), "--dim", "512",
                                          "--hidden-dim", "768", "--layers", std::to_string(layers), "--heads", "8",
                                          "--vocab", "256", "--seq-len", "64", "--tokenizer-out", tmp.file("tok.bin"),
                                          "-q"},
                                         120);
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
    const auto big = run(tmp.file("m.bin"), tmp.file("tok.bin"));
    ASSERT_EQ(big.exit_code, 0) << big.err;
    const double served = gbps();
    EXPECT_NE(served, probed);
    EXPECT_NE(w.log().find("decode steps streamed f32 weights"), std::string::npos) << w.log();
    // The node table's weight MB over its mean compute ms per decoded token is the same rate.
    std::smatch m;
    ASSERT_TRUE(std::regex_search(big.err, m, std::regex(R"(\n127\.0\.0\.1:\d+\s+\S+\s+([0-9.]+)\s+[0-9.]+\s+[0-9.]+\s+\d+\s+[0-9.]+\s+([0-9.]+))")))
        << big.err;
    const double table = std::stod(m[1]) * 1048576.0 / (std::stod(m[2]) * 1e6);
    EXPECT_NEAR(served, table, 0.15 * table) << big.err;
}

TEST(PipelineProbe, AnUnreachableWorkerIsNamed) {
    ProbeOptions o;
    o.connect_timeout_s = 2;
    try {
        probe_workers({"127.0.0.1:1"}, o);
        FAIL() << "probed a closed port";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("worker 127.0.0.1:1: cannot connect"), std::string::npos) << e.what();
    }
}

TEST(PipelineProbe, DominantTensorTypeIsWhatTheLayersAreStoredIn) {
    EXPECT_EQ(dominant_tensor_type(open_model_file(test::model_path("stories260K.bin"))), "f32");
    // Its 172-wide feed-forward rows cannot be Q8_0 blocks: most layer bytes stay f32.
    EXPECT_EQ(dominant_tensor_type(open_model_file(test::model_path("gguf/stories260K-q8_0.gguf"))), "f32");
}

}  // namespace
}  // namespace ferry
