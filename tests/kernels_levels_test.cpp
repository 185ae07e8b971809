// Which kernel level a CPU runs: the levels are not a ladder on x86-64
// (avxvnni and avx512 are siblings), so each is chosen by its own flags.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "kernels/cpu_features.h"

namespace ferry {
namespace {

using kernels::CpuFeatures;
using kernels::cpu_has_level;
using kernels::Level;

CpuFeatures haswell() {
    CpuFeatures f;
    f.sse2 = f.ssse3 = f.avx2 = f.fma = f.f16c = true;
    return f;
}
CpuFeatures zen4() {  // AVX-512 with its EVEX VNNI, no VEX AVX-VNNI
    CpuFeatures f = haswell();
    f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512vnni = true;
    return f;
}
CpuFeatures alder_lake() {  // AVX-VNNI, AVX-512 fused off
    CpuFeatures f = haswell();
    f.avxvnni = true;
    return f;
}

TEST(KernelLevels, SiblingLevelsFollowTheirOwnFlags) {
    EXPECT_TRUE(cpu_has_level(Level::avx512, zen4()));
    EXPECT_FALSE(cpu_has_level(Level::avxvnni, zen4())) << "Zen 4 has no VEX vpdpbusd: avxvnni would be SIGILL there";
    EXPECT_TRUE(cpu_has_level(Level::avxvnni, alder_lake()));
    EXPECT_FALSE(cpu_has_level(Level::avx512, alder_lake()));
    CpuFeatures skylake_x = zen4();
    skylake_x.avx512vnni = false;
    EXPECT_FALSE(cpu_has_level(Level::avx512, skylake_x));
    EXPECT_TRUE(cpu_has_level(Level::avx2, skylake_x));
    CpuFeatures no_fma = alder_lake();
    no_fma.fma = false;
    EXPECT_FALSE(cpu_has_level(Level::avxvnni, no_fma));
    EXPECT_FALSE(cpu_has_level(Level::avx2, no_fma));
    for (const CpuFeatures& f : {haswell(), zen4(), alder_lake()}) {
        EXPECT_TRUE(cpu_has_level(Level::ssse3, f));
        EXPECT_FALSE(cpu_has_level(Level::neon, f));
    }
}

// The kernel's own reading of CPUID (/proc/cpuinfo flags) against ferry's.
std::string cpu_flags() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("flags", 0) == 0) return line.substr(line.find(':') + 1) + " ";
    return "";
}

TEST(KernelLevels, AvxVnniIsChosenExactlyWhereTheCpuHasIt) {
#if !defined(__x86_64__)
    GTEST_SKIP() << "avxvnni is an x86-64 level";
#else
    const std::string flags = cpu_flags();
    if (flags.empty()) GTEST_SKIP() << "no /proc/cpuinfo flags line to compare with";
    const bool has = flags.find(" avx_vnni ") != std::string::npos;
    EXPECT_EQ(kernels::detect_cpu_features().avxvnni, has) << flags;
    EXPECT_EQ(kernels::level_runs_here(Level::avxvnni), has && kernels::level_runs_here(Level::avx2));
    const Level saved = kernels::active_level();
    std::string why;
    if (kernels::level_runs_here(Level::avxvnni)) {
        EXPECT_TRUE(kernels::select_level("avxvnni", &why)) << why;
        EXPECT_EQ(kernels::active_level(), Level::avxvnni);
    } else {
        EXPECT_FALSE(kernels::select_level("avxvnni", &why));
        EXPECT_NE(why.find("--kernels avxvnni: this CPU lacks it"), std::string::npos) << why;
        EXPECT_EQ(why.find('\n'), std::string::npos) << why;
    }
    kernels::set_active_level(saved);
    // avx512 where the CPU has it, else avxvnni where it has that, else avx2.
    const bool avx512 = kernels::level_runs_here(Level::avx512);
    if (avx512) {
        EXPECT_EQ(kernels::best_level(), Level::avx512);
    } else if (has) {
        EXPECT_EQ(kernels::best_level(), Level::avxvnni);
    }
#endif
}

}  // namespace
}  // namespace ferry
