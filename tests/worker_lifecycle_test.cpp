// A worker's life around a coordinator: killed or stalled mid-generation (the
// coordinator stops within seconds naming it, the text so far printed), a
// restarted daemon serving again, SIGTERM draining to exit 0, a memory budget
// refusing what does not fit, the classic --daemon mode, and `ferry status`
// answering while another coordinator holds the worker.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>

#include "common/model_file.h"
#include "coordinator/pipeline/pipeline_engine.h"
#include "kernels/thread_pool.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

// A model whose generation takes seconds on scalar kernels: stories15M's shape, random weights.
class SlowModel : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        const auto r = test::run_command({test::ferry_bin(), "synth", dir_->file("s15.bin"), "--preset", "stories15m",
                                          "--tokenizer-out", dir_->file("tok.bin")},
                                         120);
        ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static std::vector<std::string> run_args(const std::string& workers, const std::vector<std::string>& more = {},
                                             const char* steps = "256") {
        std::vector<std::string> a = {test::ferry_bin(), "run", dir_->file("s15.bin"), "-z", dir_->file("tok.bin"),
                                      "-n", steps, "-s", "7", "--threads", "1", "--workers", workers};
        a.insert(a.end(), more.begin(), more.end());
        return a;
    }
    static std::vector<std::string> slow_worker(const std::string& cache) {
        return {"--threads", "1", "--kernels", "scalar", "--cache-dir", cache};
    }
    // Waits until the worker has processed at least `tokens` positions (its status says so).
    static void wait_for_tokens(const test::WorkerProcess& w, int tokens) {
        const auto deadline = Clock::now() + std::chrono::seconds(30);
        while (Clock::now() < deadline) {
            const auto r = test::run_command({test::ferry_bin(), "status", "--json", "--workers", w.address()}, 10);
            if (r.exit_code == 0) {
                const auto j = nlohmann::json::parse(r.out);
                if (j[0].value("tokens", 0) >= tokens) return;
            }
            usleep(50000);
        }
        FAIL() << "the worker never reached " << tokens << " tokens";
    }
    static test::TempDir* dir_;
};
test::TempDir* SlowModel::dir_ = nullptr;

TEST_F(SlowModel, SigkillMidGenerationStopsTheCoordinatorNamingTheNodeAndARestartServes) {
    test::TempDir tmp;
    auto a = std::make_unique<test::WorkerProcess>(slow_worker(tmp.file("ca")), tmp.file("a.log"));
    auto b = std::make_unique<test::WorkerProcess>(slow_worker(tmp.file("cb")), tmp.file("b.log"));
    const std::string list = test::addresses({a.get(), b.get()});
    const int port_b = b->port();
    // Placement pinned: the planner weighs measured speeds, which may differ between the two runs and
    // with them the shards, and then the restart would rightly be sent a new one.
    const std::vector<std::string> pinned = {"--split", "3,3", "--embedding-on-worker", "--head-on-worker"};
    // --no-recover: this is about detection and naming (tests/recovery_test.cpp has what recovery does).
    std::vector<std::string> once = pinned;
    once.push_back("--no-recover");
    auto run = std::async(std::launch::async, [&] { return test::run_command(run_args(list, once), 120); });
    wait_for_tokens(*b, 20);
    const auto killed = Clock::now();
    b->signal(SIGKILL);
    const test::CommandResult r = run.get();
    const double seconds = std::chrono::duration<double>(Clock::now() - killed).count();
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(seconds, 10.0);
    EXPECT_NE(r.err.find("127.0.0.1:" + std::to_string(port_b)), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("stage 2 of 2"), std::string::npos) << r.err;
    EXPECT_FALSE(r.out.empty()) << "the text generated before the failure was not printed";
    b.reset();
    // The daemon restarted on its port (with its cache) serves a new run; the survivor took the next coordinator.
    test::WorkerProcess again(slow_worker(tmp.file("cb")), tmp.file("b2.log"), {}, "127.0.0.1:" + std::to_string(port_b));
    const auto ok = test::run_command(run_args(list, pinned, "16"), 120);
    EXPECT_EQ(ok.exit_code, 0) << ok.err << again.log();
    EXPECT_NE(ok.err.find("shard bytes sent: 0"), std::string::npos) << ok.err;
}

TEST_F(SlowModel, AStalledWorkerIsDeclaredDeadWithinTheTimeout) {
    test::TempDir tmp;
    test::WorkerProcess a(slow_worker(tmp.file("ca")), tmp.file("a.log"));
    test::WorkerProcess b(slow_worker(tmp.file("cb")), tmp.file("b.log"));
    auto run = std::async(std::launch::async, [&] {
        return test::run_command(run_args(test::addresses({&a, &b}), {"--split", "3,3", "--timeout", "2", "--no-recover"}), 120);
    });
    wait_for_tokens(a, 20);
    const auto stopped = Clock::now();
    a.signal(SIGSTOP);
    const test::CommandResult r = run.get();
    const double seconds = std::chrono::duration<double>(Clock::now() - stopped).count();
    a.signal(SIGCONT);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_LT(seconds, 2.0 + 3.0) << r.err;  // the timeout, a heartbeat period and slack
    EXPECT_NE(r.err.find(a.address()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("silent"), std::string::npos) << r.err;
}

TEST_F(SlowModel, SigtermDrainsAndExitsZero) {
    test::TempDir tmp;
    test::WorkerProcess w(slow_worker(tmp.file("c")), tmp.file("w.log"));
    auto run = std::async(std::launch::async, [&] { return test::run_command(run_args(w.address(), {"--no-recover"}), 120); });
    wait_for_tokens(w, 10);
    w.signal(SIGTERM);
    EXPECT_EQ(w.wait(10), 0) << w.log();
    const test::CommandResult r = run.get();
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("shutting down (SIGTERM)"), std::string::npos) << r.err;
    EXPECT_NE(w.log().find("draining"), std::string::npos);
}

TEST(WorkerLifecycle, AnIdleWorkerStopsOnSigtermWithExitZero) {
    test::TempDir tmp;
    test::WorkerProcess w({"--cache-dir", tmp.file("c")}, tmp.file("w.log"));
    w.signal(SIGTERM);
    EXPECT_EQ(w.wait(5), 0) << w.log();
}

TEST(WorkerLifecycle, APlanOverAWorkersReportedBudgetIsRefusedWithTheNumbers) {
    test::TempDir tmp;
    test::WorkerProcess w({"--memory", "4M", "--cache-dir", tmp.file("c")}, tmp.file("w.log"));
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin",
                                                          {"-n", "8", "--workers", w.address(), "--split", "5"}));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find(w.address()), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("4.0 MB"), std::string::npos) << r.err;
    EXPECT_TRUE(r.out.empty());
    // Still serving: a status client gets its answer.
    const auto s = test::run_command({test::ferry_bin(), "status", "--json", "--workers", w.address()});
    EXPECT_EQ(s.exit_code, 0) << s.err;
    EXPECT_EQ(nlohmann::json::parse(s.out)[0]["memory_budget"], 4u << 20);
}

TEST(WorkerLifecycle, DaemonModeWritesAPidFileAndLogsToItsFile) {
    test::TempDir tmp;
    const auto r = test::run_command({test::worker_bin(), "--listen", "127.0.0.1:0", "--daemon", "--pid-file",
                                      tmp.file("w.pid"), "--log-file", tmp.file("w.log"), "--cache-dir", tmp.file("c")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const int pid = std::stoi(test::read_file(tmp.file("w.pid")));
    EXPECT_EQ(kill(pid, 0), 0);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (test::read_file(tmp.file("w.log")).find("listening on port") == std::string::npos && Clock::now() < deadline)
        usleep(20000);
    EXPECT_NE(test::read_file(tmp.file("w.log")).find("listening on port"), std::string::npos);
    kill(pid, SIGTERM);
    const auto stop = Clock::now() + std::chrono::seconds(10);
    while (kill(pid, 0) == 0 && Clock::now() < stop) usleep(20000);
    EXPECT_NE(kill(pid, 0), 0) << "the daemon did not stop on SIGTERM";
    if (kill(pid, 0) == 0) kill(pid, SIGKILL);  // never leave it behind
    EXPECT_FALSE(std::filesystem::exists(tmp.file("w.pid")));
}

// `ferry status` while a coordinator (this test, in-process) holds both
// workers mid-run: it answers, shows the session, and the run goes on exactly.
TEST(WorkerLifecycle, StatusAnswersWhileAnotherCoordinatorIsMidRunAndASecondCoordinatorIsRefused) {
    test::TwoWorkerSession s;
    const test::WorkerProcess& a = s.a;
    const test::WorkerProcess& b = s.b;
    test::follow_greedy_reference(*s.engine, "stories260K.greedy.n256.noprompt", 0, [&](int pos) {
        if (pos != 100) return;
        const auto st = test::run_command({test::ferry_bin(), "status", "--json", "--workers", test::addresses({&a, &b})});
        ASSERT_EQ(st.exit_code, 0) << st.err;
        const auto j = nlohmann::json::parse(st.out);
        for (int i = 0; i < 2; ++i) {
            EXPECT_TRUE(j[i]["coordinator_connected"].get<bool>());
            EXPECT_TRUE(j[i]["shard_loaded"].get<bool>());
            EXPECT_GE(j[i]["tokens"].get<int>(), 100);
            EXPECT_GT(j[i]["matvec_gbps"].get<double>(), 0.0);
        }
        EXPECT_EQ(j[0]["first_layer"], 0);
        EXPECT_EQ(j[0]["end_layer"], 2);
        EXPECT_EQ(j[1]["first_layer"], 2);
        EXPECT_EQ(j[1]["next_stage"], "");
        EXPECT_EQ(j[0]["next_stage"], b.address());
        const auto busy = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin",
                                                                 {"-n", "8", "--workers", a.address()}));
        EXPECT_EQ(busy.exit_code, 3);  // a peer refused
        EXPECT_NE(busy.err.find("busy: serving coordinator"), std::string::npos) << busy.err;
    });
}

// The coordinator drives its sockets only while it waits for an answer; an
// idle coordinator (a chat waiting for the user) still sends heartbeats, so
// workers with a short --timeout keep the session.
TEST(WorkerLifecycle, AnIdleCoordinatorKeepsItsSessionAlive) {
    test::TempDir tmp;
    test::WorkerProcess a({"--threads", "1", "--timeout", "1", "--cache-dir", tmp.file("ca")}, tmp.file("a.log"));
    test::WorkerProcess b({"--threads", "1", "--timeout", "1", "--cache-dir", tmp.file("cb")}, tmp.file("b.log"));
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    kernels::ThreadPool pool(1);
    PipelineOptions o;
    o.workers = {a.address(), b.address()};
    o.split = {2, 3};
    o.timeout_s = 1;
    o.progress = false;
    PipelineEngine engine(file, o, file.config.seq_len, &pool);
    test::follow_greedy_reference(engine, "stories260K.greedy.n256.noprompt", 20, [](int pos) {
        if (pos == 10) usleep(3'000'000);  // three timeouts without a request
    });
    EXPECT_EQ(a.log().find("session ended"), std::string::npos) << a.log();
}

}  // namespace
}  // namespace ferry
