// `ferry plan` as a user runs it: the table, the JSON, the refusal line with
// its fixes, a left-out worker and why, where the embedding and the head go,
// for a described pool and for live workers.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace ferry {
namespace {

// A 6-layer model of 3.4 MB per f32 layer and a 4 MB embedding table (vocab 4096, tied).
class PlanCli : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        const auto r = test::run_command({test::ferry_bin(), "synth", model(), "--dim", "256", "--hidden-dim", "768",
                                          "--layers", "6", "--heads", "8", "--vocab", "4096", "--seq-len", "512", "-q"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static std::string model() { return dir_->file("m.bin"); }
    static test::CommandResult plan(std::vector<std::string> args) {
        args.insert(args.begin(), {test::ferry_bin(), "plan", model()});
        return test::run_command(args, 60);
    }
    static test::TempDir* dir_;
};
test::TempDir* PlanCli::dir_ = nullptr;

TEST_F(PlanCli, PrintsThePlanForADescribedPool) {
    const auto r = plan({"--pool", "3x24M", "--link-mbps", "100"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("ferry plan: m.bin (6 layers"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("weights MB"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("pool-1"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("predicted: "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("tok/s"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("budget MB"), std::string::npos) << r.out;
}

TEST_F(PlanCli, JsonCarriesEveryFigure) {
    const auto r = plan({"--pool", "3x24M", "--ctx", "256", "--kv-type", "f16", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j["fits"].get<bool>());
    EXPECT_EQ(j["model"], "m.bin");
    EXPECT_EQ(j["context"], 256);
    EXPECT_EQ(j["kv_type"], "f16");
    EXPECT_EQ(j["source"], "pool");
    EXPECT_GT(j["predicted_tok_per_s"].get<double>(), 0);
    EXPECT_NEAR(j["predicted_compute_ms"].get<double>() + j["predicted_network_ms"].get<double>(),
                j["predicted_ms_per_token"].get<double>(), 1e-6);
    ASSERT_GE(j["stages"].size(), 1u);
    int next = 0;
    for (const auto& s : j["stages"]) {
        EXPECT_EQ(s["first_layer"], next);
        next = s["end_layer"];
        for (const char* key : {"node", "weights_bytes", "kv_cache_bytes", "workspace_bytes", "buffers_bytes",
                                "overhead_bytes", "total_bytes", "budget_bytes", "compute_ms", "hop_ms", "embedding",
                                "head"})
            EXPECT_TRUE(s.contains(key)) << key;
        EXPECT_LE(s["total_bytes"].get<uint64_t>(), s["budget_bytes"].get<uint64_t>());
    }
    EXPECT_EQ(next, 6);
    EXPECT_TRUE(j["coordinator"].contains("embedding"));
    EXPECT_TRUE(j["left_out"].is_array());
}

TEST_F(PlanCli, RefusesAPoolTooSmallInOneLineWithFixes) {
    const auto r = plan({"--pool", "2x20M"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(r.out.empty()) << r.out;
    ASSERT_EQ(r.err.rfind("ferry: error: the 2 workers cannot hold m.bin at --ctx 512 --kv-type f32"), 0u) << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_NE(r.err.find("short"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("any of these fits: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("q8_0 model"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(" more on pool-"), std::string::npos) << r.err;
    // As JSON too.
    const auto j = plan({"--pool", "2x20M", "--json"});
    EXPECT_EQ(j.exit_code, 1);
    const nlohmann::json o = nlohmann::json::parse(j.out);
    EXPECT_FALSE(o["fits"].get<bool>());
    EXPECT_NE(o["error"].get<std::string>().find("cannot hold"), std::string::npos);
}

TEST_F(PlanCli, LeavesOutASlowWorkerAndSaysWhy) {
    // The fast worker holds everything; the slow one would only add its slowness and a hop.
    const auto r = plan({"--pool", "200M@0.02,200M@4"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("left out: pool-1: the best plan using it takes"), std::string::npos) << r.out;
    const auto j = plan({"--pool", "200M@0.02,200M@4", "--json"});
    const nlohmann::json o = nlohmann::json::parse(j.out);
    ASSERT_EQ(o["left_out"].size(), 1u);
    EXPECT_EQ(o["left_out"][0]["node"], "pool-1");
    EXPECT_FALSE(o["left_out"][0]["reason"].get<std::string>().empty());
}

TEST_F(PlanCli, ShowsWhereTheEmbeddingAndTheHeadGo) {
    // A coordinator with room for itself alone (25.2 MB with this vocabulary): the classifier goes
    // to the workers, split between them (faster than whole on one), and the embedding stays, read
    // a row at a time from the file.
    auto r = plan({"--pool", "2x40M", "--coordinator-memory", "26M"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("classifier in 2 vocabulary slices"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("coordinator keeps the embedding, read a row at a time from the model file (2.0 KB)"),
              std::string::npos)
        << r.out;
    r = plan({"--pool", "2x40M", "--coordinator-memory", "26M", "--embedding", "worker", "--head", "worker"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find(" + head"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("embedding + layer"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("coordinator keeps the tokenizer only"), std::string::npos) << r.out;
    // Too small for the coordinator itself.
    r = plan({"--pool", "2x40M", "--coordinator-memory", "2M"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("the coordinator's memory budget of 2.0 MB cannot hold the coordinator itself (25.2 MB"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("give it at least 26M"), std::string::npos) << r.err;
    // Forced onto the coordinator.
    r = plan({"--pool", "2x40M", "--embedding", "coordinator", "--head", "coordinator", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_TRUE(j["coordinator"]["embedding"].get<bool>());
    EXPECT_TRUE(j["coordinator"]["head"].get<bool>());
    EXPECT_GT(j["coordinator"]["weights_bytes"].get<uint64_t>(), 4000000u);
    for (const auto& s : j["stages"]) {
        EXPECT_FALSE(s["embedding"].get<bool>());
        EXPECT_FALSE(s["head"].get<bool>());
    }
}

// Workers that hold the layers but not the vocabulary table beside one, and a
// coordinator too small for it: the refusal says the table is the problem and
// names fixes that work, each checked here by doing it.
TEST_F(PlanCli, ATableThatFitsNoNodeIsNamedWithFixesThatWork) {
    // 18 MB workers hold a layer each and the table in six vocabulary slices beside them.
    auto r = plan({"--pool", "6x18M", "--coordinator-memory", "26M"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("classifier in 6 vocabulary slices"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("layer 5 + vocab 3414-4095"), std::string::npos) << r.out;
    // 16.9 MB workers hold the layers but leave too little for the table, whole or sliced.
    r = plan({"--pool", "6x16.9M", "--coordinator-memory", "26M"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("the workers can hold the layers of m.bin, but no node can hold its vocabulary table (4.0 MB)"),
              std::string::npos)
        << r.err;
    const std::string flag = "--coordinator-memory ";
    const size_t at = r.err.find(flag, r.err.find("any of these fits"));
    ASSERT_NE(at, std::string::npos) << r.err;
    const std::string budget = r.err.substr(at + flag.size(), r.err.find(',', at + flag.size()) - at - flag.size());
    EXPECT_NE(r.err.find("a q8_0 table (ferry quantize --token-embedding-type q8_0: 1.1 MB instead of 4.0 MB)"),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("1 more worker of 16.9 MB"), std::string::npos) << r.err;
    r = plan({"--pool", "6x16.9M", "--coordinator-memory", budget});
    EXPECT_EQ(r.exit_code, 0) << budget << ": " << r.err;
    r = plan({"--pool", "7x16.9M", "--coordinator-memory", "26M"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("vocabulary slices"), std::string::npos) << r.out;
    // The smaller table, made as the message says, fits beside the layers.
    const std::string gguf = dir_->file("m.gguf"), small = dir_->file("m-q8table.gguf");
    auto w = test::run_command({test::ferry_bin(), "synth", gguf, "--dim", "256", "--hidden-dim", "768", "--layers", "6",
                                "--heads", "8", "--vocab", "4096", "--seq-len", "512", "--format", "gguf", "-q"});
    ASSERT_EQ(w.exit_code, 0) << w.err;
    w = test::run_command({test::ferry_bin(), "quantize", gguf, small, "--type", "f32", "--token-embedding-type", "q8_0",
                           "-q"});
    ASSERT_EQ(w.exit_code, 0) << w.err;
    EXPECT_NE(w.err.find("1 q8_0, 55 f32"), std::string::npos) << w.err;
    r = test::run_command({test::ferry_bin(), "plan", small, "--pool", "6x16.9M", "--coordinator-memory", "26M"}, 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    w = test::run_command({test::ferry_bin(), "quantize", gguf, dir_->file("x.gguf"), "--type", "f32",
                           "--output-type", "q9_0"});
    EXPECT_EQ(w.exit_code, 1);
    EXPECT_NE(w.err.find("--output-type q9_0: unknown; use one of"), std::string::npos) << w.err;
}

TEST_F(PlanCli, ForcedSplitIsCheckedAgainstTheBudgets) {
    auto r = plan({"--pool", "2x30M", "--split", "1,5"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("pool-2: layers 1-5 need"), std::string::npos) << r.err;
    r = plan({"--pool", "2x30M", "--split", "3,3"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("layers as --split gives them"), std::string::npos) << r.out;
}

TEST_F(PlanCli, BadArgumentsAreOneLine) {
    auto r = plan({});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("either --workers"), std::string::npos) << r.err;
    r = plan({"--pool", "4x"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("--pool entry '4x'"), std::string::npos) << r.err;
    r = plan({"--pool", "1G", "--ctx", "100000"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("longer than the model's context"), std::string::npos) << r.err;
    r = test::run_command({test::ferry_bin(), "plan", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("ENTRY := [COUNTx]BUDGET[@SPEED][:ARCH]"), std::string::npos) << r.out;
}

TEST_F(PlanCli, AsksLiveWorkersWithoutTakingThem) {
    test::TempDir tmp;
    test::WorkerProcess big({"--threads", "1", "--memory", "200M", "--cache-dir", tmp.file("a")}, tmp.file("a.log"));
    test::WorkerProcess tiny({"--threads", "1", "--memory", "2M", "--cache-dir", tmp.file("b")}, tmp.file("b.log"));
    const std::string list = big.address() + "," + tiny.address();
    const auto r = test::run_command({test::ferry_bin(), "plan", model(), "--workers", list, "--json"}, 60);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["source"], "workers");
    ASSERT_EQ(j["stages"].size(), 1u);
    EXPECT_EQ(j["stages"][0]["node"], big.address());
    EXPECT_EQ(j["stages"][0]["budget_bytes"], 200ull << 20);
    ASSERT_EQ(j["left_out"].size(), 1u);
    EXPECT_NE(j["left_out"][0]["reason"].get<std::string>().find("cannot hold one layer"), std::string::npos)
        << j["left_out"][0]["reason"];
    // Nothing was sent: the workers hold no shard.
    const auto s = test::run_command({test::ferry_bin(), "status", "--workers", list, "--json"}, 30);
    const nlohmann::json st = nlohmann::json::parse(s.out);
    for (const auto& w : st) EXPECT_FALSE(w["shard_loaded"].get<bool>());
}

}  // namespace
}  // namespace ferry
