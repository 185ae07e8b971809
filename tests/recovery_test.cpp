// Losing a worker mid-generation: the coordinator plans again over the
// workers still alive (and spares), replays the tokens so far and goes on,
// and the text equals an uninterrupted run's token for token.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace ferry::test {
namespace {

using nlohmann::json;

// A model slow enough that a run lasts seconds: 64 MB, 2048 positions.
struct Slow {
    TempDir dir;
    SynthModel m = synth_64mb_model(dir, 2048);
    // Seeded sampling that runs the whole way on this model (no end token drawn before 1500).
    std::vector<std::string> sampling = {"-t", "0.5", "-p", "0.9", "-s", "5", "-n", "1500"};

    // The uninterrupted run's token ids, in this process.
    std::string reference_ids() {
        std::vector<std::string> argv = {ferry_bin(), "run", m.model, "-z", m.tokenizer, "--threads", "1", "--ids-out",
                                         dir.file("ref.ids")};
        argv.insert(argv.end(), sampling.begin(), sampling.end());
        const CommandResult r = run_command(argv, 120);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        return read_file(dir.file("ref.ids"));
    }
};

// Starts `ferry run` over workers in the background; returns its pid.
int start_run(Slow& s, const std::vector<std::string>& extra, const std::string& name) {
    std::vector<std::string> argv = {ferry_bin(), "run", s.m.model, "-z", s.m.tokenizer, "--threads", "1",
                                     "--ids-out", s.dir.file(name + ".ids"), "--log-level", "warn"};
    argv.insert(argv.end(), s.sampling.begin(), s.sampling.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    const int fd = ::open(s.dir.file(name + ".log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string why;
    const int pid = spawn(argv, fd, fd, &why);
    ::close(fd);
    EXPECT_GT(pid, 0) << why;
    return pid;
}

// Waits until the worker has processed at least n positions (it is mid-generation).
void wait_for_tokens(const WorkerProcess& w, int n) {
    for (int i = 0; i < 400; ++i) {
        const CommandResult s = run_command({ferry_bin(), "status", "--workers", w.address(), "--json"}, 10);
        if (s.exit_code == 0 && json::parse(s.out)[0].value("tokens", 0) >= n) return;
        usleep(25000);
    }
    ADD_FAILURE() << "worker " << w.address() << " never reached " << n << " positions";
}

// The run's exit code; a run still going after timeout_s is killed (and fails the test).
int run_exit(int pid, double timeout_s) {
    const int code = wait_exit(pid, timeout_s);
    if (code < 0) {
        ::kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
    }
    return code;
}

TEST(Recovery, AKilledFirstStageIsReplacedByASpareAndTheTextIsUnchanged) {
    Slow s;
    const std::string want = s.reference_ids();
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    WorkerProcess spare({"--threads", "1", "--cache-dir", s.dir.file("cs")}, s.dir.file("s.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--split", "3,2", "--spare", spare.address()}, "run");
    wait_for_tokens(a, 300);
    a.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("recovery 1:"), std::string::npos) << log;
    EXPECT_NE(log.find("replayed"), std::string::npos) << log;
    EXPECT_NE(log.find("recovered from 1 failed worker"), std::string::npos) << log;
}

TEST(Recovery, AKilledLastStageLeavesTheSurvivorHoldingEveryLayer) {
    Slow s;
    const std::string want = s.reference_ids();
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--split", "2,3", "--head-on-worker",
                                  "--embedding-on-worker"},
                              "run");
    wait_for_tokens(b, 500);
    b.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
}

TEST(Recovery, AStalledStageIsDetectedByItsTimeoutAndItsLateWakeCorruptsNothing) {
    Slow s;
    const std::string want = s.reference_ids();
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    WorkerProcess spare({"--threads", "1", "--cache-dir", s.dir.file("cs")}, s.dir.file("s.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--split", "3,2", "--spare", spare.address(),
                                  "--timeout", "2", "--connect-timeout", "1"},
                              "run");
    wait_for_tokens(b, 300);
    b.signal(SIGSTOP);
    // Replaced while stalled; then it wakes up (a zombie stage) before the run ends.
    std::this_thread::sleep_for(std::chrono::seconds(5));
    b.signal(SIGCONT);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
}

TEST(Recovery, APoolTooSmallAfterAFailureStopsWithTheTextSoFarWhenNoWorkerReturns) {
    Slow s;
    // Each worker holds about half the model; one alone cannot hold it all.
    WorkerProcess a({"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--ctx", "1300", "--recover-wait", "2"}, "run");
    wait_for_tokens(b, 200);
    b.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 60), 1);
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("cannot recover"), std::string::npos) << log;
    EXPECT_NE(log.find("--recover-wait 2"), std::string::npos) << log;
}

TEST(Recovery, NoRecoverKeepsTheOldBehaviour) {
    Slow s;
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--split", "3,2", "--no-recover"}, "run");
    wait_for_tokens(b, 200);
    b.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 60), 1);
    EXPECT_NE(read_file(s.dir.file("run.log")).find(b.address()), std::string::npos);
}

}  // namespace
}  // namespace ferry::test
