// The machine-readable outputs: `ferry run --json`, `ferry status --json`
// (once and --watch), `ferry plan --json`: stable field names, exclusive
// ranges named end_layer, live rates over a window, per-session peaks.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/test_support.h"

namespace ferry::test {
namespace {

using nlohmann::json;

void expect_fields(const json& j, const std::vector<std::string>& names, const std::string& what) {
    for (const std::string& n : names) EXPECT_TRUE(j.contains(n)) << what << " lacks \"" << n << "\": " << j.dump();
}

TEST(JsonOutputs, RunWritesItsStatisticsAndTheNodeTable) {
    TempDir dir;
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    const CommandResult r = run_command(ferry_run_args(
        "stories260K.bin", "tok512.bin",
        // The ends pinned: planned, they follow the two workers' start-up probes, and
        // a probe that measures the first worker much faster than the second moves
        // the classifier to the coordinator ("as fast as the fastest worker").
        {"-t", "0", "-n", "60", "--workers", addresses({&a, &b}), "--split", "3,2", "--embedding-on-worker",
         "--head-on-worker", "--json", dir.file("run.json")}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = json::parse(read_file(dir.file("run.json")));
    expect_fields(j, {"model", "prompt_tokens", "generated_tokens", "run", "kernels", "threads", "peak_rss", "nodes",
                      "decode", "prefill", "shards"},
                  "run --json");
    expect_fields(j["run"], {"prefill_tokens", "prefill_tok_s", "decode_tokens", "decode_tok_s"}, "run");
    ASSERT_EQ(j["nodes"].size(), 3u);  // the coordinator, then the stages in chain order
    EXPECT_EQ(j["nodes"][0]["address"], "coordinator");
    EXPECT_EQ(j["nodes"][1]["address"], a.address());
    EXPECT_EQ(j["nodes"][1]["layers"], "0-2+emb");  // inclusive, as in the table
    EXPECT_EQ(j["nodes"][2]["layers"], "3-4+head");
    for (const json& n : j["nodes"])
        expect_fields(n, {"address", "layers", "arch", "kernel_level", "weight_bytes", "rss", "peak_rss", "positions",
                          "compute_ms", "network_ms", "decode_compute_ms_per_token", "predicted_compute_ms_per_token",
                          "bytes_sent", "bytes_received"},
                      "node");
    EXPECT_GT(j["nodes"][1]["positions"].get<int>(), 0);
    EXPECT_GT(j["decode"]["tok_s"].get<double>(), 0);
    // "-" writes it to stderr.
    const CommandResult e = run_command(ferry_run_args("stories260K.bin", "tok512.bin", {"-t", "0", "-n", "20", "--json", "-"}));
    ASSERT_EQ(e.exit_code, 0) << e.err;
    EXPECT_NE(e.err.find("\"decode_tok_s\""), std::string::npos) << e.err;
}

TEST(JsonOutputs, StatusWatchGivesRatesOverEachIntervalWhileARunGoes) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 2048);
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    // A greedy run of 2000 tokens in the background (several seconds).
    const int out = ::open(dir.file("run.out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string why;
    const int run = spawn({ferry_bin(), "run", m.model, "-z", m.tokenizer, "-t", "0", "-n", "2000", "--workers",
                           addresses({&a, &b}), "--split", "3,2"},
                          out, out, &why);
    ::close(out);
    ASSERT_GT(run, 0) << why;
    // Until the run decodes.
    for (int i = 0; i < 200; ++i) {
        const CommandResult s = run_command({ferry_bin(), "status", "--workers", a.address(), "--json"});
        if (s.exit_code == 0 && json::parse(s.out)[0].value("tokens", 0) > 10) break;
        usleep(50000);
    }
    const CommandResult w = run_command({ferry_bin(), "status", "--workers", addresses({&a, &b}), "--watch", "0.3",
                                         "--count", "3", "--json"});
    ASSERT_EQ(w.exit_code, 0) << w.err;
    std::istringstream lines(w.out);
    std::string line;
    int n = 0;
    bool rates = false;
    while (std::getline(lines, line)) {
        const json j = json::parse(line);  // one line per refresh
        ASSERT_EQ(j.size(), 2u);
        ++n;
        for (const json& x : j) {
            expect_fields(x, {"address", "first_layer", "end_layer", "busy", "rss", "peak_rss", "session_peak_rss",
                              "tokens"},
                          "status");
            EXPECT_FALSE(x.contains("last_layer")) << "exclusive ranges are named end_layer";
            if (x.contains("window_tok_s") && x["window_tok_s"].get<double>() > 0) {
                rates = true;
                EXPECT_TRUE(x["busy"].get<bool>()) << "a worker generating is busy: " << x.dump();
                EXPECT_GT(x["session_peak_rss"].get<uint64_t>(), 0u);
                EXPECT_LE(x["session_peak_rss"].get<uint64_t>(), x["peak_rss"].get<uint64_t>());
            }
        }
    }
    EXPECT_EQ(n, 3);
    EXPECT_TRUE(rates) << w.out;
    EXPECT_EQ(json::parse(w.out.substr(0, w.out.find('\n')))[0]["end_layer"], 3);
    // The text form has the window's columns.
    const CommandResult t = run_command({ferry_bin(), "status", "--workers", a.address(), "--watch", "0.2", "--count", "2"});
    EXPECT_NE(t.out.find("tok/s"), std::string::npos) << t.out;
    EXPECT_NE(t.out.find("sess. MB"), std::string::npos) << t.out;
    int status = 0;
    waitpid(run, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_file(dir.file("run.out"));
}

TEST(JsonOutputs, PlanNamesItsExclusiveRangeEndLayer) {
    const CommandResult r = run_command({ferry_bin(), "plan", model_path("stories260K.bin"), "--pool", "2x64M", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const json j = json::parse(r.out);
    int next = 0;
    for (const json& s : j["stages"]) {
        expect_fields(s, {"first_layer", "end_layer", "embedding", "head", "kv_cache_bytes", "total_bytes"}, "stage");
        EXPECT_EQ(s["first_layer"], next);
        next = s["end_layer"];
    }
    EXPECT_EQ(next, 5);  // stories260K's layers 0..4, end exclusive
    EXPECT_EQ(j["parallel"], 1);
}

}  // namespace
}  // namespace ferry::test
