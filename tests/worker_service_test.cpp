// ferry-worker as a service: --version, the daemon's paths, pid file and log
// file (SIGHUP, dates), journald's priorities, systemd's notifications
// (READY, STATUS, WATCHDOG) through a real notify socket, the cache commands,
// and a --memory too small to ever hold a shard.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>

#include "tests/test_support.h"

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

bool wait_for(const std::function<bool()>& done, double seconds = 10) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
    while (!done()) {
        if (Clock::now() > deadline) return false;
        usleep(20000);
    }
    return true;
}

// Stops a daemon by its pid file, whatever the test's outcome.
struct Daemon {
    std::string pid_file;
    int pid() const { return std::atoi(test::read_file(pid_file).c_str()); }
    ~Daemon() {
        const int p = std::filesystem::exists(pid_file) ? pid() : 0;
        if (p > 0 && kill(p, SIGTERM) == 0) {
            wait_for([&] { return kill(p, 0) != 0; }, 10);
            if (kill(p, 0) == 0) kill(p, SIGKILL);
        }
    }
};

TEST(WorkerService, VersionNamesTheBuildAndItsKernels) {
    for (const std::string& bin : {test::ferry_bin(), test::worker_bin()}) {
        const auto r = test::run_command({bin, "--version"});
        ASSERT_EQ(r.exit_code, 0) << r.err;
        EXPECT_TRUE(std::regex_search(r.out, std::regex("^ferry(-worker)? \\d+\\.\\d+\\.\\d+\n"))) << r.out;
        EXPECT_NE(r.out.find("commit "), std::string::npos) << r.out;
        EXPECT_NE(r.out.find(" build"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("kernels compiled in: scalar"), std::string::npos) << r.out;
        EXPECT_NE(r.out.find("wire protocol "), std::string::npos) << r.out;
    }
}

// --daemon changes directory to /, so relative paths are resolved before; the
// log carries dates; SIGHUP reopens it (logrotate); the pid file is locked.
TEST(WorkerService, DaemonResolvesRelativePathsReopensItsLogAndLocksItsPidFile) {
    test::TempDir tmp;
    Daemon d{tmp.file("w.pid")};
    const std::string start = "cd " + tmp.path() + " && exec " + test::worker_bin() +
                              " --listen 127.0.0.1:0 --daemon --pid-file w.pid --log-file w.log --cache-dir rel-cache";
    const auto r = test::run_command({"/bin/sh", "-c", start});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(wait_for([&] { return test::read_file(tmp.file("w.log")).find("listening on port") != std::string::npos; }));
    const std::string log = test::read_file(tmp.file("w.log"));
    EXPECT_NE(log.find("cache " + tmp.path() + "/rel-cache"), std::string::npos) << log;
    EXPECT_TRUE(std::regex_search(log, std::regex("^\\[\\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}"))) << log;

    // A second worker given the same pid file is refused while the first runs.
    const auto second = test::run_command({test::worker_bin(), "--listen", "127.0.0.1:0", "--pid-file", tmp.file("w.pid"),
                                           "--cache-dir", tmp.file("c2")});
    EXPECT_EQ(second.exit_code, 1);
    EXPECT_NE(second.err.find("a running ferry-worker (pid " + std::to_string(d.pid()) + ") holds it"),
              std::string::npos)
        << second.err;

    // logrotate: move the file away, SIGHUP, and the worker writes a new one (and lives on).
    std::filesystem::rename(tmp.file("w.log"), tmp.file("w.log.1"));
    ASSERT_EQ(kill(d.pid(), SIGHUP), 0);
    EXPECT_TRUE(wait_for([&] {
        return std::filesystem::exists(tmp.file("w.log")) &&
               test::read_file(tmp.file("w.log")).find("log file reopened") != std::string::npos;
    }));
    EXPECT_EQ(kill(d.pid(), 0), 0) << "SIGHUP must not stop the worker";
}

// A log that cannot be reopened (its directory replaced by a file) keeps the
// worker running and writing to its old file.
TEST(WorkerService, ALogThatCannotBeReopenedKeepsTheOldFile) {
    test::TempDir tmp;
    std::filesystem::create_directory(tmp.file("logs"));
    Daemon d{tmp.file("w.pid")};
    const auto r = test::run_command({test::worker_bin(), "--listen", "127.0.0.1:0", "--daemon", "--pid-file",
                                      tmp.file("w.pid"), "--log-file", tmp.file("logs/w.log"), "--cache-dir",
                                      tmp.file("c")});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::filesystem::rename(tmp.file("logs"), tmp.file("logs.old"));
    test::write_file(tmp.file("logs"), "");  // now a file: logs/w.log cannot be created
    ASSERT_EQ(kill(d.pid(), SIGHUP), 0);
    EXPECT_TRUE(wait_for([&] {
        return test::read_file(tmp.file("logs.old/w.log")).find("cannot reopen the log file") != std::string::npos;
    })) << test::read_file(tmp.file("logs.old/w.log"));
    EXPECT_EQ(kill(d.pid(), 0), 0) << "a failed reopen must not stop the worker";
}

TEST(WorkerService, APidFileWithoutDaemonIsWrittenAndAStaleOneIsTakenOver) {
    test::TempDir tmp;
    test::write_file(tmp.file("w.pid"), "999999\n");  // left by a worker that died
    {
        test::WorkerProcess w({"--pid-file", tmp.file("w.pid"), "--cache-dir", tmp.file("c")}, tmp.file("w.log"));
        EXPECT_EQ(std::atoi(test::read_file(tmp.file("w.pid")).c_str()), w.pid());
        EXPECT_NE(w.log().find("taking over from pid 999999"), std::string::npos) << w.log();
        w.signal(SIGTERM);
        EXPECT_EQ(w.wait(10), 0);
    }
    EXPECT_FALSE(std::filesystem::exists(tmp.file("w.pid")));
}

// Under systemd, stderr is a journald stream (JOURNAL_STREAM names it): every
// line starts with its syslog priority and carries no time of its own.
TEST(WorkerService, OnAJournalStreamLinesCarryTheirPriority) {
    test::TempDir tmp;
    const std::string log = tmp.file("journal");
    test::write_file(log, "");
    struct stat st {};
    ASSERT_EQ(stat(log.c_str(), &st), 0);
    const std::string stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    setenv("JOURNAL_STREAM", stream.c_str(), 1);
    test::WorkerProcess w({"--memory", "1M", "--cache-dir", tmp.file("c")}, log);
    unsetenv("JOURNAL_STREAM");
    const std::string text = w.log();
    EXPECT_NE(text.find("<6>[info] "), std::string::npos) << text;
    // --memory below the idle footprint: a warning (priority 4) that it can never take a shard.
    EXPECT_NE(text.find("<4>[warning] --memory 1.0 MB is below this worker's own footprint"), std::string::npos) << text;
    EXPECT_NE(text.find("can never accept a shard"), std::string::npos) << text;
}

// systemd's notify protocol, through a datagram socket of our own as
// NOTIFY_SOCKET: READY=1, STATUS= with what the worker holds, and WATCHDOG=1
// at half of WATCHDOG_USEC.
TEST(WorkerService, SystemdHearsReadyStatusAndTheWatchdog) {
    test::TempDir tmp;
    const std::string path = tmp.file("notify");
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{0, 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    setenv("WATCHDOG_USEC", "400000", 1);
    test::WorkerProcess w({"--cache-dir", tmp.file("c")}, tmp.file("w.log"));
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    std::string heard;
    int watchdogs = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < deadline && watchdogs < 3) {
        char buf[512];
        const ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) continue;
        const std::string msg(buf, static_cast<size_t>(n));
        heard += msg + "\n";
        if (msg.find("WATCHDOG=1") != std::string::npos) ++watchdogs;
    }
    close(fd);
    if (test::run_command({test::worker_bin(), "--version"}).out.find("systemd notify: no") != std::string::npos)
        GTEST_SKIP() << "this ferry-worker was built without libsystemd";
    EXPECT_NE(heard.find("READY=1"), std::string::npos) << heard;
    EXPECT_NE(heard.find("STATUS=no shard loaded; waiting for a coordinator"), std::string::npos) << heard;
    EXPECT_GE(watchdogs, 3) << heard;
}

TEST(WorkerService, CacheListAndPrune) {
    test::TempDir tmp;
    const std::string dir = tmp.file("cache/0123abcd");
    std::filesystem::create_directories(dir);
    test::write_file(dir + "/0-1+emb.aaaa.gguf", std::string(3 << 20, 'a'));
    test::write_file(dir + "/2-3+head.bbbb.gguf", std::string(2 << 20, 'b'));
    test::write_file(dir + "/2-3+head.cccc.gguf.part", std::string(1 << 20, 'c'));
    // The first is the least recently used; the partial file was abandoned two hours ago.
    const auto now = std::filesystem::file_time_type::clock::now();
    std::filesystem::last_write_time(dir + "/0-1+emb.aaaa.gguf", now - std::chrono::hours(5));
    std::filesystem::last_write_time(dir + "/2-3+head.cccc.gguf.part", now - std::chrono::hours(2));

    auto list = test::run_command({test::worker_bin(), "--cache-list", "--cache-dir", tmp.file("cache")});
    ASSERT_EQ(list.exit_code, 0) << list.err;
    EXPECT_NE(list.out.find("0-1+emb.aaaa.gguf"), std::string::npos) << list.out;
    EXPECT_NE(list.out.find("(partial transfer)"), std::string::npos) << list.out;
    EXPECT_NE(list.out.find("3 files, 6.0 MB"), std::string::npos) << list.out;

    const auto refused = test::run_command({test::worker_bin(), "--cache-prune", "--cache-dir", tmp.file("cache")});
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_NE(refused.err.find("--cache-prune needs --cache-max"), std::string::npos) << refused.err;

    const auto prune =
        test::run_command({test::worker_bin(), "--cache-prune", "--cache-max", "4M", "--cache-dir", tmp.file("cache")});
    ASSERT_EQ(prune.exit_code, 0) << prune.err;
    EXPECT_FALSE(std::filesystem::exists(dir + "/0-1+emb.aaaa.gguf"));
    EXPECT_FALSE(std::filesystem::exists(dir + "/2-3+head.cccc.gguf.part"));
    EXPECT_TRUE(std::filesystem::exists(dir + "/2-3+head.bbbb.gguf"));
    EXPECT_NE(prune.out.find("removed 2 files"), std::string::npos) << prune.out;

    const auto empty =
        test::run_command({test::worker_bin(), "--cache-prune", "--cache-max", "0", "--cache-dir", tmp.file("cache")});
    ASSERT_EQ(empty.exit_code, 0) << empty.err;
    EXPECT_FALSE(std::filesystem::exists(dir + "/2-3+head.bbbb.gguf"));
}

// A --memory above what the cgroup allows (systemd's MemoryMax=): the kernel
// would kill the worker before its budget, so it says so at start.
TEST(WorkerService, AMemoryBudgetAboveTheCgroupLimitIsNamed) {
    std::string root;
    for (const char* r : {"/sys/fs/cgroup/memory", "/sys/fs/cgroup"})
        if (std::filesystem::exists(std::string(r) + "/cgroup.procs") &&
            (std::filesystem::exists(std::string(r) + "/memory.limit_in_bytes") ||
             std::filesystem::exists(std::string(r) + "/cgroup.subtree_control"))) {
            root = r;
            break;
        }
    const std::string dir = root + "/ferry-test-" + std::to_string(getpid());
    std::error_code ec;
    if (root.empty() || !std::filesystem::create_directory(dir, ec)) GTEST_SKIP() << "cannot make a memory cgroup here";
    struct Remove {  // the cgroup goes whatever happens (once its process has exited)
        std::string dir;
        ~Remove() {
            std::error_code e;
            for (int i = 0; i < 50 && !std::filesystem::remove(dir, e); ++i) usleep(100000);
        }
    } remove{dir};
    const std::string limit = dir + (std::filesystem::exists(dir + "/memory.limit_in_bytes") ? "/memory.limit_in_bytes"
                                                                                           : "/memory.max");
    if (!std::filesystem::exists(limit)) GTEST_SKIP() << "no memory controller in " << dir;
    test::write_file(limit, std::to_string(96 << 20));
    test::TempDir tmp;
    {
        test::WorkerProcess w({"--memory", "128M", "--cache-dir", tmp.file("c")}, tmp.file("w.log"),
                              {"/bin/sh", "-c", "echo $$ > " + dir + "/cgroup.procs && exec \"$0\" \"$@\""});
        EXPECT_NE(w.log().find("--memory 128.0 MB is above this process's cgroup limit of 96.0 MB"), std::string::npos)
            << w.log();
    }
}

TEST(WorkerService, UsageErrorsExitTwo) {
    const auto r = test::run_command({test::worker_bin(), "--no-such-flag"});
    EXPECT_EQ(r.exit_code, 2) << r.err;
    const auto bad = test::run_command({test::worker_bin(), "--memory", "lots"});
    EXPECT_EQ(bad.exit_code, 1) << bad.err;
    EXPECT_NE(bad.err.find("--memory lots"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace ferry
