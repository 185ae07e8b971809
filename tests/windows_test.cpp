// The Windows worker (scripts/build-windows.sh) under Wine: one stage of a
// pipeline whose coordinator and other stage are Linux, with the tokens of one
// machine; its console stop, memory counters, default cache and the service.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <asio.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/test_support.h"

namespace ferry {
namespace {

// Skipped where Wine or the build cannot be had (the reason says which); a
// Wine that is there but cannot make its prefix fails the test.
#define SKIP_WITHOUT_WINE(win)                      \
    do {                                            \
        if (!(win).available) {                     \
            if ((win).broken) FAIL() << (win).why;  \
            GTEST_SKIP() << (win).why;              \
        }                                           \
    } while (0)

// Windows paths for files of the test: Wine maps drive Z: to the Linux root.
std::string windows_path(const std::string& linux_path) { return "Z:" + linux_path; }
// The same path as Windows itself spells it (what GetModuleFileName and an absolute path give).
std::string native_windows_path(const std::string& linux_path) {
    std::string p = windows_path(linux_path);
    std::replace(p.begin(), p.end(), '/', '\\');
    return p;
}

// A command that may leave Wine's processes running (wineserver, services.exe
// and the service it starts inherit the standard streams): its output goes
// through files, so that the test waits for the command, not for them.
// `cwd`: the directory it runs in.
test::CommandResult run_detaching(const std::vector<std::string>& argv, const test::TempDir& tmp, double timeout_s = 120,
                                  const std::string& cwd = ".") {
    std::vector<std::string> sh = {"/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\" </dev/null >\"$0.out\" 2>\"$0.err\"",
                                   tmp.file("cmd"), cwd};
    sh.insert(sh.end(), argv.begin(), argv.end());
    test::CommandResult r = test::run_command(sh, timeout_s);
    r.out = test::read_file(tmp.file("cmd.out"));
    r.err = test::read_file(tmp.file("cmd.err"));
    return r;
}

// A free loopback port for a worker that must be told its port (the service).
int free_port() {
    asio::io_context io;
    asio::ip::tcp::acceptor a(io, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    return a.local_endpoint().port();
}

class WindowsChain : public ::testing::TestWithParam<std::string> {};

// Linux coordinator, a Linux worker with the embedding and layers 0-2, the
// Windows worker with layers 3-4 and the head: llama2c's greedy and seeded
// ids for the f32 model, one Linux process's text for a Q4_0 GGUF, at the
// scalar and SSE2 levels (and the best this CPU has, on the 64-bit build).
TEST_P(WindowsChain, LinuxAndWindowsWorkersGiveOneMachinesTokens) {
    const test::WindowsLaunch win = test::windows_launch(GetParam());
    SKIP_WITHOUT_WINE(win);
    test::TempDir tmp;
    test::WorkerProcess linux_worker({"--threads", "1", "--cache-dir", tmp.file("c-linux")}, tmp.file("linux.log"));
    std::vector<std::string> levels = {"scalar", "sse2"};
    if (GetParam() == "x86_64") levels.push_back("auto");
    for (const std::string& level : levels) {
        SCOPED_TRACE("--kernels " + level);
        std::vector<std::string> args = {"--threads", "1", "--kernels", level};
        // The best level keeps the default cache (%LOCALAPPDATA%\ferry, emptied first: the prefix outlives the
        // test); the others one of the test's.
        if (level != "auto") args.insert(args.end(), {"--cache-dir", windows_path(tmp.file("c-win-" + level))});
        std::error_code ec;
        for (const auto& user : std::filesystem::directory_iterator(win.wine_prefix + "/drive_c/users", ec))
            std::filesystem::remove_all(user.path() / "AppData/Local/ferry", ec);
        test::WorkerProcess windows_worker(args, tmp.file("win-" + level + ".log"), win.prefix, "127.0.0.1:0",
                                           win.binary);
        if (level != "auto")
            EXPECT_NE(windows_worker.log().find(", " + level + " kernels"), std::string::npos) << windows_worker.log();
        else
            EXPECT_NE(windows_worker.log().find("\\AppData\\Local\\ferry)"), std::string::npos) << windows_worker.log();
        const std::string workers = test::addresses({&linux_worker, &windows_worker});
        ASSERT_NO_FATAL_FAILURE(
            test::expect_chain_gives_one_machines_tokens(workers, "3,2", [&] { return windows_worker.log(); }));
        if (level == "auto") {
            // The shards went to %LOCALAPPDATA%\ferry of Wine's user.
            size_t shards = 0;
            std::error_code ec;
            for (auto it = std::filesystem::recursive_directory_iterator(win.wine_prefix + "/drive_c/users", ec);
                 !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
                if (it->path().string().find("/AppData/Local/ferry/") != std::string::npos &&
                    it->path().extension() == ".gguf")
                    ++shards;
            EXPECT_GE(shards, 2u) << "no shard under " << win.wine_prefix << "/drive_c/users/*/AppData/Local/ferry";
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Builds, WindowsChain, ::testing::Values("x86_64", "i686"));

// Ctrl+C (Wine turns SIGINT into the console's CTRL_C_EVENT) drains and exits 0.
TEST(WindowsWorker, StopsCleanlyOnCtrlC) {
    const test::WindowsLaunch win = test::windows_launch("x86_64");
    SKIP_WITHOUT_WINE(win);
    test::TempDir tmp;
    test::WorkerProcess w({"--threads", "1", "--cache-dir", windows_path(tmp.file("c"))}, tmp.file("w.log"), win.prefix,
                          "127.0.0.1:0", win.binary);
    w.signal(SIGINT);
    EXPECT_EQ(w.wait(30), 0) << w.log();
    EXPECT_NE(w.log().find("Ctrl+C: draining"), std::string::npos) << w.log();
}

// --memory is judged by Windows' own counters: a budget below the idle
// working set is called out at start, and status reports the working set.
TEST(WindowsWorker, MemoryBudgetUsesTheProcessCounters) {
    const test::WindowsLaunch win = test::windows_launch("x86_64");
    SKIP_WITHOUT_WINE(win);
    test::TempDir tmp;
    test::WorkerProcess w({"--threads", "1", "--memory", "1M", "--cache-dir", windows_path(tmp.file("c"))},
                          tmp.file("w.log"), win.prefix, "127.0.0.1:0", win.binary);
    for (int i = 0; i < 100 && w.log().find("below this worker's own footprint") == std::string::npos; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_NE(w.log().find("--memory 1.0 MB is below this worker's own footprint"), std::string::npos) << w.log();
    const auto status = test::run_command({test::ferry_bin(), "status", "--workers", w.address(), "--json"}, 60);
    ASSERT_EQ(status.exit_code, 0) << status.err;
    EXPECT_NE(status.out.find("\"arch\": \"x86_64\""), std::string::npos) << status.out;
    const size_t at = status.out.find("\"rss\": ");
    ASSERT_NE(at, std::string::npos) << status.out;
    EXPECT_GT(std::atoll(status.out.c_str() + at + 7), 1ll << 20) << status.out;
    // A chain that would need more than the budget is refused with the numbers.
    test::WorkerProcess linux_worker({"--threads", "1", "--cache-dir", tmp.file("c-linux")}, tmp.file("linux.log"));
    const auto r = test::run_command(
        test::ferry_run_args("stories260K.bin", "tok512.bin",
                             {"-n", "8", "--workers", test::addresses({&linux_worker, &w}), "--split", "3,2"}),
        120);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("over its memory budget of 1.0 MB"), std::string::npos) << r.err;
}

// --model-dir on Windows: the range is mapped from the model file (found by
// size and content hash, the hash recorded under the cache) instead of sent.
TEST(WindowsWorker, LoadsItsRangeFromModelDir) {
    const test::WindowsLaunch win = test::windows_launch("x86_64");
    SKIP_WITHOUT_WINE(win);
    test::TempDir tmp;
    test::WorkerProcess linux_worker({"--threads", "1", "--cache-dir", tmp.file("c-linux")}, tmp.file("linux.log"));
    test::WorkerProcess w({"--threads", "1", "--cache-dir", windows_path(tmp.file("c")), "--model-dir",
                           windows_path(test::shared_dir() + "/models")},
                          tmp.file("w.log"), win.prefix, "127.0.0.1:0", win.binary);
    const auto r = test::run_command(
        test::ferry_run_args("stories260K.bin", "tok512.bin",
                             {"-t", "0", "-i", "Once upon a time", "-n", "96", "--threads", "1", "--ids-out",
                              tmp.file("ids"), "--workers", test::addresses({&linux_worker, &w}), "--split", "3,2"}),
        300);
    ASSERT_EQ(r.exit_code, 0) << r.err << w.log();
    test::expect_reference_ids(tmp.file("ids"), "stories260K.greedy.n256.ids.txt", 90);
    EXPECT_NE(w.log().find("shard loaded from model-dir"), std::string::npos) << w.log();
    EXPECT_TRUE(std::filesystem::exists(tmp.file("c/model-hashes")));
}

// --install-service registers the worker with the service manager (Wine's
// services.exe here), which starts it: it listens and logs to
// %ProgramData%\ferry; --uninstall-service stops and removes it.
TEST(WindowsService, InstallStartsTheWorkerAndUninstallStopsIt) {
    const test::WindowsLaunch win = test::windows_launch("x86_64", "wine-prefix-service");
    SKIP_WITHOUT_WINE(win);
    test::TempDir tmp;
    std::vector<std::string> server = {win.prefix.begin(), win.prefix.end() - 1};
    server.push_back("/usr/lib/wine/wineserver64");
    // Wine ends services with the last program of the session: keep the session for the test.
    std::vector<std::string> persist = server;
    persist.push_back("-p");
    run_detaching(persist, tmp, 30);
    struct Cleanup {
        std::vector<std::string> server;
        const test::WindowsLaunch& win;
        const test::TempDir& tmp;
        ~Cleanup() {
            run_detaching(win.argv({"--uninstall-service"}), tmp, 60);
            server.push_back("-k");
            run_detaching(server, tmp, 30);
        }
    } cleanup{server, win, tmp};
    run_detaching(win.argv({"--uninstall-service"}), tmp, 60);  // one a failed run left behind
    const std::string log_path = win.wine_prefix + "/drive_c/ProgramData/ferry/ferry-worker.log";
    std::filesystem::remove(log_path);
    // Installed from a folder with a space, with a key given by a relative path: the service's command line
    // quotes the one and makes the other absolute (a service starts in the system's folder).
    const std::string folder = tmp.file("Program Files");
    std::filesystem::create_directories(folder);
    std::filesystem::copy_file(win.binary, folder + "/ferry-worker.exe");
    ASSERT_EQ(test::run_command({test::ferry_bin(), "keygen", "-o", folder + "/ferry.key"}).exit_code, 0);
    test::WindowsLaunch copied = win;
    copied.binary = folder + "/ferry-worker.exe";
    const std::string port = std::to_string(free_port());
    const auto installed = run_detaching(copied.argv({"--install-service", "--listen", "127.0.0.1:" + port, "--threads",
                                                      "1", "--name", "win-service", "--key-file", "ferry.key"}),
                                         tmp, 120, folder);
    ASSERT_EQ(installed.exit_code, 0) << installed.out << installed.err;
    EXPECT_NE(installed.out.find("installed and started the service ferry-worker"), std::string::npos) << installed.out;
    test::CommandResult status;
    for (int i = 0; i < 60; ++i) {
        status = test::run_command(
            {test::ferry_bin(), "status", "--workers", "127.0.0.1:" + port, "--key-file", folder + "/ferry.key", "--json"}, 30);
        if (status.exit_code == 0) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    ASSERT_EQ(status.exit_code, 0) << status.err;
    EXPECT_NE(status.out.find("\"name\": \"win-service\""), std::string::npos) << status.out;
    // Registered to start at boot (Start=2, SERVICE_AUTO_START), with absolute paths for its log and cache.
    std::vector<std::string> reg = {win.prefix.begin(), win.prefix.end()};
    reg.insert(reg.end(), {"reg", "query", "HKLM\\System\\CurrentControlSet\\Services\\ferry-worker"});
    const auto entry = run_detaching(reg, tmp, 60);
    EXPECT_NE(entry.out.find("Start    REG_DWORD    0x2"), std::string::npos) << entry.out;
    EXPECT_NE(entry.out.find("\"" + native_windows_path(folder + "/ferry-worker.exe") + "\" --service --listen 127.0.0.1:" + port),
              std::string::npos) << entry.out;
    EXPECT_NE(entry.out.find("--key-file \"" + native_windows_path(folder + "/ferry.key") + "\""), std::string::npos) << entry.out;
    EXPECT_NE(entry.out.find("--log-file C:\\ProgramData\\ferry\\ferry-worker.log --cache-dir C:\\ProgramData\\ferry\\cache"),
              std::string::npos) << entry.out;
    const std::string log = test::read_file(log_path);
    EXPECT_NE(log.find("listening on port " + port), std::string::npos) << log;
    const auto removed = run_detaching(win.argv({"--uninstall-service"}), tmp, 60);
    ASSERT_EQ(removed.exit_code, 0) << removed.out << removed.err;
    EXPECT_NE(removed.out.find("stopped and removed the service ferry-worker"), std::string::npos) << removed.out;
    // Stopped like Ctrl+C stops it: drained, and no longer answering.
    const std::string after = test::read_file(log_path);
    EXPECT_NE(after.find("service stop: draining"), std::string::npos) << after;
    EXPECT_NE(test::run_command({test::ferry_bin(), "status", "--workers", "127.0.0.1:" + port}, 30).exit_code, 0);
}

}  // namespace
}  // namespace ferry
