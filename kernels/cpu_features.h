// Run-time choice of the instruction set the kernels use, so one portable
// binary runs on a Pentium II and uses AVX2/FMA where the CPU has them.
#pragma once
#include <string>
#include <vector>

namespace ferry::kernels {

// x86: scalar < sse2 < ssse3 < avx2 < avxvnni | avx512; ARM: scalar < neon < dotprod.
// A level may use the instruction sets of the levels below it; avxvnni (AVX2
// with the 256-bit VEX vpdpbusd of Alder Lake and later) and avx512 (whose
// VNNI is EVEX) are siblings: Zen 4 and Ice Lake have avx512 without
// avxvnni. The values only name levels (a build has one architecture's), and
// are not an order: which levels a CPU runs is level_runs_here().
enum class Level { scalar = 0, sse2 = 1, ssse3 = 2, avx2 = 3, avx512 = 4, neon = 5, dotprod = 6, avxvnni = 7 };

struct CpuFeatures {
    bool sse2 = false;
    bool ssse3 = false;
    bool avx2 = false;
    bool fma = false;
    bool f16c = false;
    bool avx512f = false;
    bool avx512bw = false;
    bool avx512vl = false;
    bool avx512dq = false;
    bool avx512vnni = false;
    bool avxvnni = false;  // VEX-encoded 256-bit VNNI (CPUID 7.1 EAX bit 4)
    bool neon = false;     // Advanced SIMD (every aarch64 CPU; most ARMv7 ones)
    bool dotprod = false;  // aarch64 SDOT/UDOT (Cortex-A55/A76 and later, Pi 5)
};

CpuFeatures detect_cpu_features();
// Whether a CPU with features f has every instruction `level` uses.
bool cpu_has_level(Level level, const CpuFeatures& f);
// The most preferred compiled level this CPU can run.
Level best_level();
// The levels this binary has kernels for, least preferred first (x86-64:
// scalar, sse2, ssse3, avx2, avxvnni, avx512; i686: scalar, sse2, ssse3, avx2;
// aarch64: scalar, neon, dotprod; armhf: scalar, neon; elsewhere scalar).
std::vector<Level> compiled_levels();
// The level every kernel uses now; starts at best_level().
Level active_level();
// Whether this build has `level` and this CPU can run it.
bool level_runs_here(Level level);
// Forces a level; returns false (and changes nothing) if the CPU lacks it.
bool set_active_level(Level level);
const char* level_name(Level level);
// "scalar" | "sse2" | "ssse3" | "avx2" | "avxvnni" | "avx512" | "neon" | "dotprod" | "auto"; false if unknown.
// "auto" gives best_level().
bool parse_level(const std::string& name, Level* out);
// Parses and sets a --kernels value; false with *why (one line naming the
// value and what to use instead) if it is unknown, not in this build, or
// beyond this CPU.
bool select_level(const std::string& name, std::string* why);
// "sse2 avx2 fma f16c" (or "neon dotprod") style list of what the CPU has.
std::string cpu_features_string();

}  // namespace ferry::kernels
