// The pool of issue 6 in small: four workers, each in its own network
// namespace behind a 100 Mbit/s link and in its own memory cgroup capped at
// its --memory budget, run a model none of them can hold alone (8 layers of
// 7.1 MB, 57 MB in all; each worker holds 32 MB, so all four are needed). Built with bench/pool-lan.sh (the
// benchmark's own script, so it is tested too). The run completes with the
// single process's exact output, no worker is OOM-killed, each worker's peak
// RSS stays under its budget and within 10% of the plan. Skipped with a
// clear message where namespaces or cgroups are not allowed; the namespaces,
// bridge, cgroups and workers are removed in every case.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr int kWorkers = 4;
constexpr uint64_t kBudget = 32ull << 20;

class PoolLan {
public:
    PoolLan() : prefix_("fpt" + std::to_string(::getpid())) {}
    ~PoolLan() { script({"down"}); }
    PoolLan(const PoolLan&) = delete;
    PoolLan& operator=(const PoolLan&) = delete;

    test::CommandResult script(const std::vector<std::string>& args, double timeout_s = 60) const {
        std::vector<std::string> argv = {"/usr/bin/env", "FERRY_POOL_PREFIX=" + prefix_, "FERRY_POOL_NET=10.78.0",
                                         "FERRY_BIN=" + test::ferry_bin(), "FERRY_WORKER_BIN=" + test::worker_bin(),
                                         "/bin/bash", std::string(FERRY_SOURCE_DIR) + "/bench/pool-lan.sh"};
        argv.insert(argv.end(), args.begin(), args.end());
        return test::run_command(argv, timeout_s);
    }
    std::string address(int i) const { return "10.78.0." + std::to_string(10 + i) + ":7070"; }

private:
    std::string prefix_;
};

// "node" -> total MB of the plan `ferry run` printed.
std::map<std::string, double> plan_totals(const std::string& err) {
    std::map<std::string, double> totals;
    std::istringstream in(err);
    for (std::string line; std::getline(in, line);) {
        std::istringstream f(line);
        std::vector<std::string> w;
        for (std::string x; f >> x;) w.push_back(x);
        // stage node holds... weights KV other total budget use ms
        if (w.size() >= 9 && std::isdigit(static_cast<unsigned char>(w[0][0])) && w[1].find(":7070") != std::string::npos)
            totals[w[1]] = std::atof(w[w.size() - 4].c_str());
    }
    return totals;
}

TEST(PoolCgroup, FourCappedWorkersOnSlowLinksRunAModelNoneCanHold) {
    FERRY_SKIP_IF_SANITIZED();
    PoolLan lan;
    const auto check = lan.script({"check"});
    if (check.exit_code != 0)
        GTEST_SKIP() << "this machine does not allow the pool's network namespaces or memory cgroups: " << check.err;
    test::TempDir tmp;
    const auto synth = test::run_command({test::ferry_bin(), "synth", tmp.file("m.bin"), "--dim", "384", "--hidden-dim",
                                          "1024", "--layers", "8", "--heads", "6", "--vocab", "512", "--seq-len", "256",
                                          "--tokenizer-out", tmp.file("tok.bin"), "-q"});
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
    const auto up = lan.script({"up", std::to_string(kWorkers), "100mbit"});
    ASSERT_EQ(up.exit_code, 0) << up.err;
    std::string list;
    for (int i = 1; i <= kWorkers; ++i) {
        const auto w = lan.script({"worker", std::to_string(i), "32M", "--threads", "1", "--cache-dir",
                                   tmp.file("c" + std::to_string(i))});
        ASSERT_EQ(w.exit_code, 0) << w.err;
        list += (list.empty() ? "" : ",") + lan.address(i);
    }
    // A prompt of ~100 tokens: the prefill is a large request, as the plan reserves for.
    std::string prompt = "Once upon a time there was a tiny machine";
    prompt += " and once upon a time there was a tiny machine";
    const std::vector<std::string> run = {test::ferry_bin(), "run", tmp.file("m.bin"), "-z", tmp.file("tok.bin"),
                                          "-n", "200", "-t", "0", "-i", prompt, "--threads", "1"};
    std::vector<std::string> pooled = {"coord"};
    pooled.insert(pooled.end(), run.begin(), run.end());
    pooled.insert(pooled.end(), {"--workers", list});
    const auto r = lan.script(pooled, 120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto local = test::run_command(run, 60);
    ASSERT_EQ(local.exit_code, 0) << local.err;
    EXPECT_EQ(r.out, local.out) << "the pool gives the single process's tokens";

    // Every worker used (none can hold the model, three cannot either), none killed.
    const std::map<std::string, double> plan = plan_totals(r.err);
    EXPECT_EQ(plan.size(), static_cast<size_t>(kWorkers)) << r.err;
    const auto s = lan.script({"coord", test::ferry_bin(), "status", "--workers", list, "--json"});
    ASSERT_EQ(s.exit_code, 0) << s.err << s.out;
    const nlohmann::json status = nlohmann::json::parse(s.out);
    ASSERT_EQ(status.size(), static_cast<size_t>(kWorkers));
    for (int i = 1; i <= kWorkers; ++i) {
        const nlohmann::json& w = status[static_cast<size_t>(i - 1)];
        EXPECT_TRUE(w["shard_loaded"].get<bool>()) << lan.address(i);
        const uint64_t peak = w["peak_rss"];
        EXPECT_LE(peak, kBudget) << lan.address(i) << ": the budget is a promise";
        const auto it = plan.find(lan.address(i));
        ASSERT_NE(it, plan.end()) << lan.address(i);
        const double error = (it->second - peak / 1048576.0) / (peak / 1048576.0);
        EXPECT_LE(std::fabs(error), 0.10) << lan.address(i) << ": plan " << it->second << " MB, peak RSS "
                                          << peak / 1048576.0 << " MB";
        RecordProperty("worker" + std::to_string(i) + "_plan_error_percent", std::to_string(100 * error));
        const auto oom = lan.script({"oom", std::to_string(i)});
        EXPECT_EQ(oom.out, "0\n") << lan.address(i) << " OOM kills: " << oom.out << oom.err;
    }
    EXPECT_NE(r.err.find("end to end"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry
