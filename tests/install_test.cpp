// Installing ferry: `cmake --install` puts the binaries, the systemd unit
// (pointing at the installed worker, hardened), the docs, a man page per
// binary and the bash completion where they belong; `cpack -G DEB` makes a
// package that declares its dependencies.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>

#include "tests/test_support.h"

namespace ferry {
namespace {

namespace fs = std::filesystem;

TEST(Install, PutsBinariesUnitDocsManPagesAndCompletionInPlace) {
    test::TempDir tmp;
    const std::string prefix = tmp.file("prefix");
    const auto r = test::run_command({"/usr/bin/cmake", "--install", FERRY_BUILD_DIR, "--prefix", prefix}, 120);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    for (const char* f : {"bin/ferry", "bin/ferry-worker", "lib/systemd/system/ferry-worker.service",
                          "share/doc/ferry/README.md", "share/doc/ferry/PROTOCOL.md", "share/doc/ferry/SERVICES.md",
                          "share/man/man1/ferry.1", "share/man/man1/ferry-worker.1",
                          "share/bash-completion/completions/ferry", "share/bash-completion/completions/ferry-worker"})
        EXPECT_TRUE(fs::exists(prefix + "/" + f)) << f;
    const std::string unit = test::read_file(prefix + "/lib/systemd/system/ferry-worker.service");
    EXPECT_NE(unit.find("ExecStart=" + prefix + "/bin/ferry-worker "), std::string::npos) << unit;
    // The man pages are the programs' own --help.
    EXPECT_NE(test::read_file(prefix + "/share/man/man1/ferry-worker.1").find("cache\\-max"), std::string::npos);
    EXPECT_NE(test::read_file(prefix + "/share/man/man1/ferry.1").find("serve"), std::string::npos);
    const auto v = test::run_command({prefix + "/bin/ferry-worker", "--version"});
    EXPECT_EQ(v.exit_code, 0) << v.err;
}

// `systemd-analyze security` rates the unit's sandbox (lower is safer); 3 is
// the bound, the unit scores about 1.4.
TEST(Install, TheUnitIsHardened) {
    if (access("/usr/bin/systemd-analyze", X_OK) != 0) GTEST_SKIP() << "no systemd-analyze on this machine";
    const auto r = test::run_command({"/usr/bin/systemd-analyze", "security", "--offline=true", "--no-pager",
                                      std::string(FERRY_SOURCE_DIR) + "/deploy/ferry-worker.service"},
                                     60);
    std::smatch m;
    const std::string text = r.out + r.err;
    ASSERT_TRUE(std::regex_search(text, m, std::regex("Overall exposure level for ferry-worker.service: ([0-9.]+)")))
        << text;
    EXPECT_LE(std::stod(m[1]), 3.0) << text;
    const auto verify = test::run_command({"/usr/bin/systemd-analyze", "verify", "--man=no",
                                           std::string(FERRY_SOURCE_DIR) + "/deploy/ferry-worker.service"},
                                          60);
    EXPECT_EQ(verify.err.find("Unknown key"), std::string::npos) << verify.err;
    EXPECT_EQ(verify.err.find("Unknown lvalue"), std::string::npos) << verify.err;
}

TEST(Install, CpackMakesADebThatDeclaresItsDependencies) {
    if (access("/usr/bin/dpkg-deb", X_OK) != 0) GTEST_SKIP() << "not a Debian system";
    test::TempDir tmp;
    const auto r = test::run_command({"/usr/bin/cpack", "-G", "DEB", "--config",
                                      std::string(FERRY_BUILD_DIR) + "/CPackConfig.cmake", "-B", tmp.path()},
                                     300);
    ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
    std::string deb;
    for (const auto& e : fs::directory_iterator(tmp.path()))
        if (e.path().extension() == ".deb") deb = e.path().string();
    ASSERT_FALSE(deb.empty()) << r.out;
    const auto info = test::run_command({"/usr/bin/dpkg-deb", "--field", deb, "Package", "Depends"});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_NE(info.out.find("Package: ferry"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("libprotobuf"), std::string::npos) << info.out;
    EXPECT_NE(info.out.find("libc6"), std::string::npos) << info.out;
    const auto files = test::run_command({"/usr/bin/dpkg-deb", "--contents", deb});
    for (const char* f : {"./usr/bin/ferry-worker", "./usr/lib/systemd/system/ferry-worker.service",
                          "./usr/share/man/man1/ferry.1"})
        EXPECT_NE(files.out.find(f), std::string::npos) << f << "\n" << files.out;
}

// The completion reads the options from the programs' --help.
TEST(Install, BashCompletesSubcommandsAndOptions) {
    const std::string script = std::string(FERRY_SOURCE_DIR) + "/deploy/ferry.bash-completion";
    auto complete = [&](const std::string& words, int cword) {
        const auto r = test::run_command(
            {"/bin/bash", "-c",
             "source " + script + "; COMP_WORDS=(" + words + "); COMP_CWORD=" + std::to_string(cword) +
                 "; if [[ ${COMP_WORDS[0]} == *worker ]]; then _ferry_worker; else _ferry; fi; echo \"${COMPREPLY[*]}\""});
        return r.out;
    };
    EXPECT_NE(complete(test::ferry_bin() + " se", 1).find("serve"), std::string::npos);
    EXPECT_EQ(complete(test::ferry_bin() + " run --tem", 2), "--temperature\n");
    EXPECT_NE(complete(test::worker_bin() + " --cache-", 1).find("--cache-prune"), std::string::npos);
}

// scripts/build-static-worker.sh (run by the test command): one file that
// needs no shared library, and serves a stage with the same tokens.
TEST(Install, TheStaticWorkerNeedsNoLibraryAndServesAStage) {
    const std::string worker = std::string(FERRY_SOURCE_DIR) + "/build-static/worker/ferry-worker";
    if (!fs::exists(worker)) GTEST_SKIP() << "build it with scripts/build-static-worker.sh (the test command does)";
    const auto ldd = test::run_command({"/usr/bin/ldd", worker});
    EXPECT_NE((ldd.out + ldd.err).find("not a dynamic executable"), std::string::npos) << ldd.out << ldd.err;
    test::TempDir tmp;
    test::WorkerProcess w({"--threads", "1", "--cache-dir", tmp.file("c")}, tmp.file("w.log"), {}, "127.0.0.1:0", worker);
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin",
                                                          {"-t", "0", "-n", "256", "--workers", w.address()}));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.n256.noprompt.txt")));
}

}  // namespace
}  // namespace ferry
