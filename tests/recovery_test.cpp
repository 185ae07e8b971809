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
#include <memory>
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

    std::string reference_text;

    // The uninterrupted run's token ids (and its text in reference_text), in this process.
    std::string reference_ids() {
        std::vector<std::string> argv = {ferry_bin(), "run", m.model, "-z", m.tokenizer, "--threads", "1", "--ids-out",
                                         dir.file("ref.ids")};
        argv.insert(argv.end(), sampling.begin(), sampling.end());
        const CommandResult r = run_command(argv, 120);
        EXPECT_EQ(r.exit_code, 0) << r.err;
        reference_text = r.out;
        return read_file(dir.file("ref.ids"));
    }
};

// Starts `ferry run` over workers in the background (text to NAME.out, the
// rest to NAME.log, its figures to NAME.json); returns its pid.
int start_run(Slow& s, const std::vector<std::string>& extra, const std::string& name) {
    std::vector<std::string> argv = {ferry_bin(), "run", s.m.model, "-z", s.m.tokenizer, "--threads", "1",
                                     "--ids-out", s.dir.file(name + ".ids"), "--json", s.dir.file(name + ".json"),
                                     "--log-level", "warn"};
    argv.insert(argv.end(), s.sampling.begin(), s.sampling.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    const int out = ::open(s.dir.file(name + ".out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(s.dir.file(name + ".log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::string why;
    const int pid = spawn(argv, out, err, &why);
    ::close(out);
    ::close(err);
    EXPECT_GT(pid, 0) << why;
    return pid;
}

json worker_status(const WorkerProcess& w) {
    const CommandResult s = run_command({ferry_bin(), "status", "--workers", w.address(), "--json"}, 10);
    return s.exit_code == 0 ? json::parse(s.out)[0] : json{};
}

// Waits until the worker has processed at least n positions (it is mid-generation).
void wait_for_tokens(const WorkerProcess& w, int n) {
    for (int i = 0; i < 400; ++i) {
        if (worker_status(w).value("tokens", 0) >= n) return;
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
    // The spare now serves stage 0, and `ferry status` shows the chain's recovery.
    wait_for_tokens(spare, 1);
    EXPECT_EQ(worker_status(spare).value("recoveries", -1), 1);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
    EXPECT_EQ(read_file(s.dir.file("run.out")), s.reference_text);
    // One line per phase, the table's summary and the JSON's figures.
    const std::string log = read_file(s.dir.file("run.log"));
    for (const char* phase : {"recovery 1: ", "ms after the last answer", "recovery 1: kept the survivors' ranges over 2 workers in", "recovery 1: shards ",
                              " sent in ", "replayed ", "recoveries: 1; the last in "})
        EXPECT_NE(log.find(phase), std::string::npos) << phase << "\n" << log;
    const json j = json::parse(read_file(s.dir.file("run.json")));
    EXPECT_EQ(j["recoveries"], 1);
    EXPECT_GE(j["last_recovery"]["replayed_positions"].get<int>(), 300);
    EXPECT_GT(j["last_recovery"]["shard_bytes"].get<uint64_t>(), 0u);  // the spare had nothing cached
    EXPECT_NE(j["last_recovery"]["failure"].get<std::string>().find(a.address()), std::string::npos);
}

// A worker holding only a vocabulary slice dies: the chain goes on with the
// classifier planned again over the workers left, and the same text.
TEST(Recovery, AKilledSliceHolderIsNamedAndTheTextIsUnchanged) {
    Slow s;
    const std::string want = s.reference_ids();
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    WorkerProcess c({"--threads", "1", "--cache-dir", s.dir.file("cc")}, s.dir.file("c.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b, &c}), "--split", "5,0,0", "--head-slices", "3"}, "run");
    wait_for_tokens(c, 300);
    c.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("recovery 1: worker " + c.address() + " (vocabulary slice"), std::string::npos) << log;
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

// Three workers, greedy: any stage killed at some token; with no spare the
// dead stage's layers merge into a neighbour and the other survivor keeps its
// shard (only the merged range is sent).
struct KilledStage {
    int stage;
    int at_token;
};
class RecoveryOfThree : public ::testing::TestWithParam<KilledStage> {};

TEST_P(RecoveryOfThree, AnyKilledStageMergesIntoANeighbourAndTheTextIsUnchanged) {
    Slow s;
    s.sampling = {"-t", "0", "-n", "900"};
    const std::string want = s.reference_ids();
    std::vector<std::unique_ptr<WorkerProcess>> w;
    for (const char* name : {"a", "b", "c"})
        w.push_back(std::make_unique<WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--cache-dir", s.dir.file(std::string("c") + name)},
            s.dir.file(std::string(name) + ".log")));
    const int run = start_run(s, {"--workers", addresses({w[0].get(), w[1].get(), w[2].get()}), "--split", "2,2,1",
                                  "--embedding-on-worker", "--head-on-worker"},
                              "run");
    const WorkerProcess& victim = *w[static_cast<size_t>(GetParam().stage)];
    wait_for_tokens(victim, GetParam().at_token);
    victim.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("kept the survivors' ranges over 2 workers"), std::string::npos) << log;
    // One survivor receives its merged range; the other's shard came from its cache.
    const json j = json::parse(read_file(s.dir.file("run.json")));
    EXPECT_GT(j["last_recovery"]["shard_bytes"].get<uint64_t>(), 0u);
    EXPECT_LT(j["last_recovery"]["shard_bytes"].get<uint64_t>(), 60u << 20) << j.dump();
}

INSTANTIATE_TEST_SUITE_P(Stages, RecoveryOfThree,
                         ::testing::Values(KilledStage{0, 100}, KilledStage{1, 400}, KilledStage{2, 250}),
                         [](const auto& info) {
                             return "stage" + std::to_string(info.param.stage) + "_at" +
                                    std::to_string(info.param.at_token);
                         });

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
    s.reference_ids();
    // Each worker holds about half the model; one alone cannot hold it all.
    WorkerProcess a({"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--ctx", "1300", "--recover-wait", "2"}, "run");
    wait_for_tokens(b, 200);
    b.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 60), 3);  // a peer failed
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("waiting up to 2 s for a worker to return"), std::string::npos) << log;
    EXPECT_NE(log.find("cannot recover"), std::string::npos) << log;
    EXPECT_NE(log.find("--recover-wait 2"), std::string::npos) << log;
    // The text so far was printed, and it is the uninterrupted run's.
    const std::string out = read_file(s.dir.file("run.out"));
    EXPECT_GT(out.size(), 100u);
    EXPECT_EQ(s.reference_text.compare(0, out.size(), out), 0) << out;
}

// Too few survivors, but the worker comes back (a restarted service, same
// port and cache): the run waits, uses it again without sending its shard,
// and the text is unchanged.
TEST(Recovery, APoolTooSmallWaitsForARestartedWorkerAndUsesItsCache) {
    Slow s;
    s.sampling = {"-t", "0.5", "-p", "0.9", "-s", "5", "-n", "1300"};
    const std::string want = s.reference_ids();
    WorkerProcess a({"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    auto b = std::make_unique<WorkerProcess>(
        std::vector<std::string>{"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const std::string b_address = b->address();
    // The classifier pinned whole: left to the planner it may be sliced by the
    // measured speeds, and the re-plan with the restarted worker's new probe
    // could cut the slices elsewhere, so its shard would not be the cached one.
    const int run = start_run(s, {"--workers", addresses({&a, b.get()}), "--recover-wait", "60", "--head-on-coordinator"},
                              "run");
    wait_for_tokens(*b, 200);
    b->signal(SIGKILL);
    b.reset();
    // The coordinator has seen that it cannot go on alone before the worker returns.
    for (int i = 0; i < 200 && read_file(s.dir.file("run.log")).find("for a worker to return") == std::string::npos; ++i)
        usleep(50000);
    b = std::make_unique<WorkerProcess>(
        std::vector<std::string>{"--threads", "1", "--memory", "60M", "--cache-dir", s.dir.file("cb")}, s.dir.file("b2.log"),
        std::vector<std::string>{}, b_address);
    EXPECT_EQ(run_exit(run, 120), 0) << read_file(s.dir.file("run.log"));
    EXPECT_EQ(read_file(s.dir.file("run.ids")), want);
    const std::string log = read_file(s.dir.file("run.log"));
    EXPECT_NE(log.find("waiting up to 60 s for a worker to return"), std::string::npos) << log;
    EXPECT_NE(log.find("recovery 1: shards all from caches"), std::string::npos) << log;
}

TEST(Recovery, NoRecoverKeepsTheOldBehaviour) {
    Slow s;
    WorkerProcess a({"--threads", "1", "--cache-dir", s.dir.file("ca")}, s.dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", s.dir.file("cb")}, s.dir.file("b.log"));
    const int run = start_run(s, {"--workers", addresses({&a, &b}), "--split", "3,2", "--no-recover"}, "run");
    wait_for_tokens(b, 200);
    b.signal(SIGKILL);
    EXPECT_EQ(run_exit(run, 60), 3);  // a peer failed
    EXPECT_NE(read_file(s.dir.file("run.log")).find(b.address()), std::string::npos);
}

}  // namespace
}  // namespace ferry::test
