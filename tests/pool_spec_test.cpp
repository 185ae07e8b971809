// The offline pool description of `ferry plan --pool`: what it means, and
// one clear error (never a crash) for anything malformed.
#include <gtest/gtest.h>

#include <random>

#include "common/error.h"
#include "common/shard_memory.h"
#include "coordinator/pipeline/pool_spec.h"

namespace ferry {
namespace {

TEST(PoolSpec, CountsBudgetsSpeedsAndArchitectures) {
    PoolDefaults d;
    d.reference_gbps = 2.0;
    d.link_mbps = 10;
    d.link_latency_ms = 1.5;
    const std::vector<WorkerCapacity> w = parse_pool("2x160M,256M@0.5,512M@3G:i686,unlimited:x86_64", d);
    ASSERT_EQ(w.size(), 5u);
    EXPECT_EQ(w[0].address, "pool-1");
    EXPECT_EQ(w[4].address, "pool-5");
    EXPECT_EQ(w[0].memory_budget, 160ull << 20);
    EXPECT_EQ(w[1].memory_budget, 160ull << 20);
    EXPECT_DOUBLE_EQ(w[0].matvec_gbps, 2.0);
    EXPECT_EQ(w[2].memory_budget, 256ull << 20);
    EXPECT_DOUBLE_EQ(w[2].matvec_gbps, 1.0) << "relative: half the reference";
    EXPECT_DOUBLE_EQ(w[3].matvec_gbps, 3.0) << "absolute GB/s";
    EXPECT_EQ(w[3].arch, "i686");
    EXPECT_EQ(w[4].memory_budget, 0u);
    EXPECT_EQ(w[4].arch, "x86_64");
    for (const WorkerCapacity& x : w) {
        EXPECT_DOUBLE_EQ(x.link_mbps, 10);
        EXPECT_DOUBLE_EQ(x.link_latency_ms, 1.5);
    }
    EXPECT_EQ(parse_pool("1.5G").front().memory_budget, 3ull << 29);
}

// Raspberry Pis: 64-bit and 32-bit ARM workers, each with its process overhead.
TEST(PoolSpec, ArmWorkersCountTheirOwnOverhead) {
    const std::vector<WorkerCapacity> w = parse_pool("4x1G:aarch64,2x512M:armhf");
    ASSERT_EQ(w.size(), 6u);
    EXPECT_EQ(w[0].arch, "aarch64");
    EXPECT_EQ(w[3].arch, "aarch64");
    EXPECT_EQ(w[4].arch, "armhf");
    EXPECT_EQ(w[5].memory_budget, 512ull << 20);
    EXPECT_EQ(worker_process_overhead("aarch64"), kWorkerOverheadAarch64);
    EXPECT_EQ(worker_process_overhead("armhf"), kWorkerOverheadArmhf);
    EXPECT_LT(worker_process_overhead("armhf"), worker_process_overhead("aarch64"));
    EXPECT_EQ(worker_process_overhead("x86_64"), kWorkerOverheadX86_64);
}

TEST(PoolSpec, MalformedEntriesAreOneClearError) {
    for (const char* bad : {"", ",", "160M,", ",160M", "4x", "x160M", "0x160M", "99999x1M", "4x4x1M", "160M@",
                            "160M@-1", "160M@0", "160M@nan", "160M@1e400", "160M@2GG", "160M@x", "160M:arm", "160M:",
                            "160Q", "-160M", "0", "160M@1:i686:i686", "3x0"}) {
        try {
            parse_pool(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const Error& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find("--pool"), std::string::npos) << m;
            EXPECT_EQ(m.find('\n'), std::string::npos) << m;
        }
    }
    EXPECT_THROW(parse_pool("4096x1M,1M"), Error) << "more than kMaxPoolWorkers";
}

TEST(PoolSpec, RandomTextNeverCrashes) {
    std::mt19937 rng(5);
    const std::string alphabet = "0123456789xX@:,.MGKkgBi686_unlimited -e";
    for (int i = 0; i < 20000; ++i) {
        std::string s(rng() % 24, ' ');
        for (char& c : s) c = alphabet[rng() % alphabet.size()];
        try {
            for (const WorkerCapacity& w : parse_pool(s)) {
                EXPECT_GT(w.matvec_gbps, 0);
                EXPECT_TRUE(w.arch == "x86_64" || w.arch == "i686");
            }
        } catch (const Error&) {
        }
    }
}

}  // namespace
}  // namespace ferry
