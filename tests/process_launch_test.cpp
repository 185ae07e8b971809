// How tests start other programs (test_support): a program the kernel cannot
// execute, or a worker that dies at start, is named with the reason, and the
// 32-bit build is started natively or under qemu-i386 as the host allows.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <stdexcept>

#include "tests/test_support.h"

namespace ferry {
namespace {

// A file with the execute bit whose bytes are no program any kernel runs:
// what a 32-bit ELF is to a kernel without IA-32 emulation.
std::string unrunnable_file(const test::TempDir& dir) {
    const std::string path = dir.file("not-a-program");
    test::write_file(path, "\x7f" "ELF but not really, just bytes");
    chmod(path.c_str(), 0755);
    return path;
}

TEST(ProcessLaunch, AFileTheKernelCannotExecuteIsNamedWithTheErrno) {
    test::TempDir dir;
    const std::string path = unrunnable_file(dir);
    const test::CommandResult r = test::run_command({path, "--help"});
    EXPECT_EQ(r.exit_code, 127);
    EXPECT_EQ(r.err, "cannot execute " + path + ": Exec format error");
}

TEST(ProcessLaunch, AMissingProgramIsNamedWithTheErrno) {
    test::TempDir dir;
    const test::CommandResult r = test::run_command({dir.file("absent")});
    EXPECT_EQ(r.err, "cannot execute " + dir.file("absent") + ": No such file or directory");
}

TEST(ProcessLaunch, AWorkerThatCannotBeExecutedSaysWhy) {
    test::TempDir dir;
    const std::string path = unrunnable_file(dir);
    try {
        test::WorkerProcess w({}, dir.file("w.log"), {}, "127.0.0.1:0", path);
        FAIL() << "started a file that is not a program";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("Exec format error"), std::string::npos) << e.what();
    }
}

TEST(ProcessLaunch, AWorkerThatExitsAtStartGivesItsStatusAndLog) {
    test::TempDir dir;
    try {
        test::WorkerProcess w({}, dir.file("w.log"), {}, "not-an-ip:0");
        FAIL() << "a worker with a bad --listen started";
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("exit status "), std::string::npos) << what;
        EXPECT_NE(what.find("--listen"), std::string::npos) << what;  // the worker's own line
    }
}

TEST(ProcessLaunch, DescribeExitNamesSignals) {
    EXPECT_EQ(test::describe_exit(9), "killed by signal 9 (Killed)");
    EXPECT_EQ(test::describe_exit(3 << 8), "exit status 3");
}

// A binary this kernel cannot execute runs under qemu-i386, with the reason.
TEST(ProcessLaunch, AnI686BinaryTheHostCannotRunIsEmulated) {
    test::TempDir dir;
    const std::string path = unrunnable_file(dir);
    const test::I686Launch l = test::i686_launch(path);
    EXPECT_FALSE(l.native);
    EXPECT_NE(l.why.find("Exec format error"), std::string::npos) << l.why;
    if (l.available) EXPECT_EQ(l.prefix, std::vector<std::string>{"/usr/bin/qemu-i386"});
}

TEST(ProcessLaunch, AnEmulatedCpuAlwaysGoesThroughQemu) {
    const std::string worker = test::i686_binary("worker/ferry-worker");
    const test::I686Launch l = test::i686_launch(worker, "pentium2");
    if (!l.available) GTEST_SKIP() << l.why;
    EXPECT_FALSE(l.native);
    EXPECT_EQ(l.prefix, (std::vector<std::string>{"/usr/bin/qemu-i386", "-cpu", "pentium2"}));
}

TEST(ProcessLaunch, AMissingI686BuildIsNotAvailableAndSaysWhatToRun) {
    const test::I686Launch l = test::i686_launch("/nonexistent/build-i686/worker/ferry-worker");
    EXPECT_FALSE(l.available);
    EXPECT_NE(l.why.find("scripts/build-i686.sh"), std::string::npos) << l.why;
}

// The 32-bit worker starts and answers --help however this host runs it.
TEST(ProcessLaunch, TheI686WorkerRunsNativelyOrEmulated) {
    const std::string worker = test::i686_binary("worker/ferry-worker");
    const test::I686Launch l = test::i686_launch(worker);
    if (!l.available) GTEST_SKIP() << l.why;
    std::vector<std::string> argv = l.prefix;
    argv.insert(argv.end(), {worker, "--help"});
    const test::CommandResult r = test::run_command(argv, 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("--memory"), std::string::npos);
    std::printf("the i686 worker runs %s%s\n", l.native ? "natively" : "emulated: ", l.why.c_str());
}

}  // namespace
}  // namespace ferry
