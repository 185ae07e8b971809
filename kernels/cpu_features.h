// Run-time choice of the instruction set the kernels use, so one portable
// binary runs on a Pentium II and uses AVX2/FMA where the CPU has them.
#pragma once
#include <string>
#include <vector>

namespace ferry::kernels {

// Ordered: a level may use every instruction set of the levels below it.
enum class Level { scalar = 0, sse2 = 1, ssse3 = 2, avx2 = 3, avx512 = 4 };

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
};

CpuFeatures detect_cpu_features();
// Highest level this CPU can run.
Level best_level();
// The levels this binary has kernels for (x86-64: scalar, sse2, ssse3, avx2,
// avx512; i686: scalar, sse2, ssse3, avx2; elsewhere scalar).
std::vector<Level> compiled_levels();
// The level every kernel uses now; starts at best_level().
Level active_level();
// Forces a level; returns false (and changes nothing) if the CPU lacks it.
bool set_active_level(Level level);
const char* level_name(Level level);
// "scalar" | "sse2" | "ssse3" | "avx2" | "avx512" | "auto"; false if unknown. "auto" gives best_level().
bool parse_level(const std::string& name, Level* out);
// "sse2 avx2 fma f16c" style list of what the CPU has.
std::string cpu_features_string();

}  // namespace ferry::kernels
