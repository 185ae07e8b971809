// A 32-bit ferry-worker (scripts/build-i686.sh) on an emulated Pentium II as
// one stage of a pipeline whose other stage is native: its scalar x87 kernels
// must produce exactly the activations the native worker's would, so the
// output equals llama2.c's. Pentium II because it has MMX but no SSE at all:
// any stray SSE/SSE2 instruction in the portable path traps (a Pentium III
// would let SSE1 through), and it is the machine of the llama2.c-on-Windows-98
// demo this project descends from. The emulated worker must also stop
// cleanly on SIGTERM.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <sstream>

#include "tests/test_support.h"

namespace ferry {
namespace {

// FERRY_I686_WORKER names another build of it (an engineer's own build dir).
std::string i686_worker() {
    if (const char* path = std::getenv("FERRY_I686_WORKER")) return path;
    return test::i686_binary("worker/ferry-worker");
}

TEST(PipelineI686, APentiumIIWorkerUnderQemuBesideANativeOne) {
    const test::I686Launch pentium2 = test::i686_launch(i686_worker(), "pentium2");
    if (!pentium2.available) GTEST_SKIP() << pentium2.why;
    test::TempDir tmp;
    test::WorkerProcess old({"--threads", "1", "--cache-dir", tmp.file("c32")}, tmp.file("i686.log"), pentium2.prefix,
                            "127.0.0.1:0", i686_worker());
    test::WorkerProcess native({"--threads", "1", "--cache-dir", tmp.file("c64")}, tmp.file("native.log"));
    // 128 of the reference's 256 positions: emulation is slow; the ids and text are prefixes.
    const auto r = test::run_command(
        test::ferry_run_args("stories260K.bin", "tok512.bin",
                             {"-t", "1.0", "-p", "0.9", "-s", "42", "-n", "128", "--threads", "1", "--ids-out",
                              tmp.file("ids"), "--workers", test::addresses({&old, &native}), "--split", "3,2"}),
        300);
    ASSERT_EQ(r.exit_code, 0) << r.err << old.log();
    const std::string text = test::read_file(test::reference_path("stories260K.t1p09.s42.n256.txt"));
    ASSERT_GT(r.out.size(), 100u);
    EXPECT_EQ(r.out.substr(0, r.out.size() - 1), text.substr(0, r.out.size() - 1));  // all but the final newline
    std::istringstream got(test::read_file(tmp.file("ids"))), want(test::read_file(test::reference_path("stories260K.t1p09.s42.n256.ids.txt")));
    int count = 0;
    for (int a, b; got >> a && want >> b; ++count) ASSERT_EQ(a, b) << "token " << count;
    EXPECT_EQ(count, 129);
    EXPECT_NE(old.log().find("scalar kernels"), std::string::npos) << old.log();
    // SIGTERM drains and exits 0 under qemu too (the signal is read from a
    // signalfd: a handler's return corrupts the thread's TLS under qemu-i386).
    old.signal(SIGTERM);
    EXPECT_EQ(old.wait(30), 0) << old.log();
}

// A vocabulary slice on the 32-bit worker (issue 22): the native worker
// holds the layers and half the classifier, the Pentium II the other half.
TEST(PipelineI686, AVocabularySliceOnAPentiumII) {
    const test::I686Launch pentium2 = test::i686_launch(i686_worker(), "pentium2");
    if (!pentium2.available) GTEST_SKIP() << pentium2.why;
    test::TempDir tmp;
    test::WorkerProcess native({"--threads", "1", "--cache-dir", tmp.file("c64")}, tmp.file("native.log"));
    test::WorkerProcess old({"--threads", "1", "--cache-dir", tmp.file("c32")}, tmp.file("i686.log"), pentium2.prefix,
                            "127.0.0.1:0", i686_worker());
    for (const std::vector<std::string> sampling : {std::vector<std::string>{"-t", "0", "-i", "Once upon a time"},
                                                    std::vector<std::string>{"-t", "1.0", "-p", "0.9", "-s", "42"}}) {
        std::vector<std::string> flags = sampling;
        flags.insert(flags.end(), {"-n", "64", "--threads", "1", "--ids-out", tmp.file("ids"), "--workers",
                                   test::addresses({&native, &old}), "--split", "5,0", "--head-slices", "2"});
        const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", flags), 300);
        ASSERT_EQ(r.exit_code, 0) << r.err << old.log();
        // The plan's row for the 32-bit worker: a slice alone.
        const size_t row = r.err.find("-     " + old.address());
        ASSERT_NE(row, std::string::npos) << r.err;
        EXPECT_NE(r.err.substr(row, r.err.find('\n', row) - row).find("vocab "), std::string::npos) << r.err;
        const std::string ref = sampling[1] == "0" ? "stories260K.greedy.n256" : "stories260K.t1p09.s42.n256";
        std::istringstream got(test::read_file(tmp.file("ids"))), want(test::read_file(test::reference_path(ref + ".ids.txt")));
        int count = 0;
        for (int a, b; got >> a && want >> b; ++count) ASSERT_EQ(a, b) << ref << " token " << count;
        EXPECT_GE(count, 60) << ref;
    }
}

}  // namespace
}  // namespace ferry
