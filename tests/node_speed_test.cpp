// A node that serves far slower than the plan predicted is named once, so a
// user learns which machine holds the chain back. The slow machine is made by
// stopping and continuing the worker process many times a second (a CPU
// throttled to about a tenth), after its start-up probe measured it at full
// speed: every decode step then takes several times the planned time.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/test_support.h"

namespace ferry {
namespace {

// Stops and continues `pid` (2 ms running, 18 ms stopped) until destroyed.
class Throttle {
public:
    explicit Throttle(int pid)
        : thread_([this, pid] {
              while (!stop_) {
                  kill(pid, SIGSTOP);
                  usleep(18000);
                  kill(pid, SIGCONT);
                  usleep(2000);
              }
          }) {}
    ~Throttle() {
        stop_ = true;
        thread_.join();
    }

private:
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

const char* kWarning = "decode steps took";

std::vector<std::string> run_args(const test::SynthModel& m, const test::WorkerProcess& w) {
    return {test::ferry_bin(), "run", m.model, "-z", m.tokenizer, "-n", "60", "-t", "0", "--threads", "1", "--workers",
            w.address(), "--embedding-on-worker", "--head-on-worker"};
}

TEST(NodeSpeed, AWorkerFarSlowerThanPlannedIsNamedOnce) {
    test::TempDir tmp;
    const test::SynthModel m = test::synth_64mb_model(tmp, 64);
    test::WorkerProcess w({"--threads", "1", "--cache-dir", tmp.file("cache")}, tmp.file("w.log"));
    // Sends the shard, at full speed. (Whether it warns is not checked: on a
    // loaded test machine a normal run may well be 1.5x slower than planned.)
    const auto normal = test::run_command(run_args(m, w), 120);
    ASSERT_EQ(normal.exit_code, 0) << normal.err;

    test::CommandResult slow;
    {
        Throttle throttle(w.pid());
        slow = test::run_command(run_args(m, w), 120);
    }
    ASSERT_EQ(slow.exit_code, 0) << slow.err;
    EXPECT_EQ(slow.out, normal.out);
    const size_t at = slow.err.find(kWarning);
    ASSERT_NE(at, std::string::npos) << slow.err;
    EXPECT_EQ(slow.err.find(kWarning, at + 1), std::string::npos) << "said twice: " << slow.err;
    EXPECT_NE(slow.err.find("worker " + w.address()), std::string::npos) << slow.err;
}

}  // namespace
}  // namespace ferry
