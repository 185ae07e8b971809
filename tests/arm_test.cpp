// ARM workers (issue 23): the aarch64 and armhf builds (scripts/build-arm.sh)
// under qemu-user, each level on an emulated CPU that has exactly its
// features. Every level must give the x86-64 host's logits bit for bit (the
// host's levels equal the naive reference: tests/quant_matmul_test.cpp), and
// a chain of x86-64 and ARM workers must print one machine's tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "tests/test_support.h"

namespace ferry {
namespace {

// A CPU and the level the build must choose on it by itself (auto), or is forced to.
struct ArmCpu {
    const char* target;  // "aarch64" | "armhf"
    const char* cpu;     // qemu's model
    const char* level;   // --kernels
};
// Cortex-A53 (Pi 3, Zero 2): NEON without dot products; Cortex-A76 (Pi 5):
// with them; Cortex-A7 (Pi 2): ARMv7 with NEON.
constexpr ArmCpu kArmCpus[] = {{"aarch64", "cortex-a53", "scalar"}, {"aarch64", "cortex-a53", "neon"},
                               {"aarch64", "cortex-a76", "dotprod"}, {"armhf", "cortex-a7", "scalar"},
                               {"armhf", "cortex-a7", "neon"}};

std::string json_field(const std::string& json, const std::string& key) {
    const size_t at = json.find("\"" + key + "\":");
    if (at == std::string::npos) return "";
    const size_t start = at + key.size() + 3;
    size_t end = start;
    int depth = 0;
    for (; end < json.size(); ++end) {
        const char c = json[end];
        if (c == '[') ++depth;
        if (c == ']') --depth;
        if (depth == 0 && (c == ',' || c == '}')) break;
    }
    return json.substr(start, end - start);
}

class ArmLevels : public ::testing::TestWithParam<const char*> {};

// Row widths of 256 so that every block type is used as such; 8 query heads
// on one key head (the grouped attention path); a prefill of 5 tokens (tiles
// of 4 and 1) and 6 decoded ones (attention over blocks of 8 positions): the
// logits checksum of each ARM level equals the host's.
TEST_P(ArmLevels, EveryLevelGivesTheHostsLogits) {
    const std::string type = GetParam();
    test::TempDir tmp;
    const std::string model = tmp.file(type + ".gguf");
    const auto synth = test::run_command({test::ferry_bin(), "synth", model, "--dim", "256", "--hidden-dim", "512",
                                          "--layers", "1", "--heads", "8", "--kv-heads", "1", "--vocab", "256",
                                          "--seq-len", "32", "--format", "gguf", "--type", type, "-q"});
    ASSERT_EQ(synth.exit_code, 0) << synth.err;
    const std::vector<std::string> bench = {"bench", model, "--threads", "2", "--runs", "1", "--prompt-tokens", "5",
                                            "--gen-tokens", "6", "--bandwidth-passes", "0", "--json"};
    // The host's scalar level: the naive reference's bits (tests/quant_matmul_test.cpp, kernels_dense_test.cpp).
    std::vector<std::string> host = {test::ferry_bin()};
    host.insert(host.end(), bench.begin(), bench.end());
    host.insert(host.end(), {"--kernels", "scalar"});
    const auto want = test::run_command(host);
    ASSERT_EQ(want.exit_code, 0) << want.err;
    const std::string checksum = json_field(want.out, "logits_checksum");
    ASSERT_FALSE(checksum.empty()) << want.out;
    for (const ArmCpu& c : kArmCpus) {
        const test::ArmLaunch l = test::arm_launch(c.target, "coordinator/ferry", c.cpu);
        if (!l.available) GTEST_SKIP() << l.why;
        std::vector<std::string> args = bench;
        args.insert(args.end(), {"--kernels", c.level});
        const auto got = test::run_command(l.argv(args), 300);
        ASSERT_EQ(got.exit_code, 0) << c.target << " " << c.level << ": " << got.err;
        EXPECT_EQ(json_field(got.out, "kernels"), std::string("\"") + c.level + "\"") << got.out;
        EXPECT_EQ(json_field(got.out, "logits_checksum"), checksum) << type << " on " << c.target << " " << c.cpu
                                                                     << " at " << c.level;
        // Only 32-bit ARM's dense types fall back (its NEON is not IEEE), and bench says so.
        const bool dense = type == "f32" || type == "f16" || type == "bf16";
        const bool falls_back = std::string(c.target) == "armhf" && std::string(c.level) == "neon" && dense;
        EXPECT_EQ(json_field(got.out, "scalar_fallback_types") != "[]", falls_back) << c.target << " " << c.level
                                                                                    << ": " << got.out;
    }
}

INSTANTIATE_TEST_SUITE_P(Types, ArmLevels,
                         ::testing::Values("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl",
                                           "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "tq1_0", "tq2_0"));

// Without --kernels each build picks the best level its CPU has.
TEST(ArmLevelsAuto, EachCpuGetsItsBestLevel) {
    for (const auto& [target, cpu, level] : {std::tuple{"aarch64", "cortex-a53", "neon"},
                                             std::tuple{"aarch64", "cortex-a76", "dotprod"},
                                             std::tuple{"armhf", "cortex-a7", "neon"}}) {
        const test::ArmLaunch l = test::arm_launch(target, "coordinator/ferry", cpu);
        if (!l.available) GTEST_SKIP() << l.why;
        const auto got = test::run_command(l.argv({"--version"}), 60);
        ASSERT_EQ(got.exit_code, 0) << got.err;
        EXPECT_NE(got.out.find(std::string("this CPU runs ") + level), std::string::npos) << cpu << ": " << got.out;
    }
}

// A level the CPU lacks, or one of another architecture, is refused in one line.
TEST(ArmLevelsAuto, ALevelTheCpuLacksIsRefusedInOneLine) {
    struct Case {
        const char* target;
        const char* cpu;
        const char* level;
        const char* says;
    };
    for (const Case& c : {Case{"armhf", "cortex-r5f", "neon", "this CPU lacks it"},
                          Case{"aarch64", "cortex-a53", "dotprod", "this CPU lacks it"},
                          Case{"aarch64", "cortex-a76", "avx2", "not a level of this build"}}) {
        const test::ArmLaunch l = test::arm_launch(c.target, "worker/ferry-worker", c.cpu);
        if (!l.available) GTEST_SKIP() << l.why;
        const auto got = test::run_command(l.argv({"--kernels", c.level, "--listen", "127.0.0.1:0"}), 60);
        EXPECT_NE(got.exit_code, 0) << c.target << " " << c.level;
        EXPECT_NE(got.err.find(std::string("--kernels ") + c.level), std::string::npos) << got.err;
        EXPECT_NE(got.err.find(c.says), std::string::npos) << got.err;
        EXPECT_EQ(std::count(got.err.begin(), got.err.end(), '\n'), 1) << got.err;
    }
    const auto host = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.bin"), "-z",
                                         test::model_path("tok512.bin"), "--kernels", "neon", "-n", "4"});
    EXPECT_NE(host.exit_code, 0);
    EXPECT_NE(host.err.find("--kernels neon: not a level of this build"), std::string::npos) << host.err;
    const auto typo = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.bin"), "-z",
                                         test::model_path("tok512.bin"), "--kernels", "avx9", "-n", "4"});
    EXPECT_NE(typo.exit_code, 0);
    EXPECT_NE(typo.err.find("--kernels avx9: unknown level; this build has scalar, sse2"), std::string::npos) << typo.err;
}

// The pool the issue asks for: an x86-64 coordinator, an armhf worker with the
// embedding (first stage), an x86-64 worker, an aarch64 worker with the head
// (last stage). Its tokens equal llama2.c's (greedy and seeded) and one x86-64
// process's on a quantized GGUF.
TEST(ArmChain, ArmhfX86AndAarch64WorkersGiveOneMachinesTokens) {
    const test::ArmLaunch armhf = test::arm_launch("armhf", "worker/ferry-worker", "cortex-a7");
    const test::ArmLaunch aarch64 = test::arm_launch("aarch64", "worker/ferry-worker", "cortex-a76");
    if (!armhf.available) GTEST_SKIP() << armhf.why;
    if (!aarch64.available) GTEST_SKIP() << aarch64.why;
    test::TempDir tmp;
    test::WorkerProcess pi2({"--threads", "1", "--cache-dir", tmp.file("c-armhf")}, tmp.file("armhf.log"),
                            armhf.prefix, "127.0.0.1:0", armhf.binary);
    test::WorkerProcess pc({"--threads", "1", "--cache-dir", tmp.file("c-x86")}, tmp.file("x86.log"));
    test::WorkerProcess pi5({"--threads", "1", "--cache-dir", tmp.file("c-aarch64")}, tmp.file("aarch64.log"),
                            aarch64.prefix, "127.0.0.1:0", aarch64.binary);
    const std::string workers = test::addresses({&pi2, &pc, &pi5});
    // Greedy and seeded, f32 and a quantized model (Q4_0 blocks through the NEON byte products).
    ASSERT_NO_FATAL_FAILURE(
        test::expect_chain_gives_one_machines_tokens(workers, "2,2,1", [&] { return pi2.log() + pi5.log(); }));
    // Each stage ran its own CPU's best level, and reported its architecture.
    EXPECT_NE(pi2.log().find("neon kernels"), std::string::npos) << pi2.log();
    EXPECT_NE(pi5.log().find("dotprod kernels"), std::string::npos) << pi5.log();
    const auto status = test::run_command({test::ferry_bin(), "status", "--workers", workers, "--json"}, 120);
    ASSERT_EQ(status.exit_code, 0) << status.err;
    EXPECT_NE(status.out.find("\"armhf\""), std::string::npos) << status.out;
    EXPECT_NE(status.out.find("\"aarch64\""), std::string::npos) << status.out;
    EXPECT_NE(status.out.find("\"dotprod\""), std::string::npos) << status.out;
}

}  // namespace
}  // namespace ferry
