#include "kernels/cpu_features.h"

#include <atomic>

#if defined(__i386__) || defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) || defined(__arm__)
#include <sys/auxv.h>
#endif

namespace ferry::kernels {

namespace {
std::atomic<int> g_level{-1};

#if defined(__i386__) || defined(__x86_64__)
uint64_t read_xcr0() {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
}
#endif
}  // namespace

CpuFeatures detect_cpu_features() {
    CpuFeatures f;
#if defined(__i386__) || defined(__x86_64__)
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return f;  // a CPU without CPUID
    const unsigned max_leaf = eax;
    __get_cpuid(1, &eax, &ebx, &ecx, &edx);
    f.sse2 = (edx >> 26) & 1;
    f.ssse3 = (ecx >> 9) & 1;
    const bool osxsave = (ecx >> 27) & 1;
    const bool avx = (ecx >> 28) & 1;
    f.fma = (ecx >> 12) & 1;
    f.f16c = (ecx >> 29) & 1;
    // AVX state must be enabled by the OS (XCR0 bits 1 and 2) before any ymm use.
    const bool os_avx = osxsave && avx && (read_xcr0() & 6) == 6;
    if (max_leaf >= 7) {
        __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx);
        f.avx2 = os_avx && ((ebx >> 5) & 1);
        // zmm and mask state too (XCR0 bits 5-7).
        const bool os_avx512 = os_avx && (read_xcr0() & 0xe6) == 0xe6;
        f.avx512f = os_avx512 && ((ebx >> 16) & 1);
        f.avx512dq = f.avx512f && ((ebx >> 17) & 1);
        f.avx512bw = f.avx512f && ((ebx >> 30) & 1);
        f.avx512vl = f.avx512f && ((ebx >> 31) & 1);
        f.avx512vnni = f.avx512f && ((ecx >> 11) & 1);
        __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx);
        f.avxvnni = f.avx2 && ((eax >> 4) & 1);
#if defined(FERRY_EMULATE_AVXVNNI)
        f.avxvnni = f.avx2;  // kernels/CMakeLists.txt: a test build
#endif
    }
    f.fma = f.fma && os_avx;
    f.f16c = f.f16c && os_avx;
#elif defined(__aarch64__)
    // The kernel's hardware capabilities (asm/hwcap.h: HWCAP_ASIMD, HWCAP_ASIMDDP).
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f.neon = (hwcap >> 1) & 1;
    f.dotprod = (hwcap >> 20) & 1;
#elif defined(__arm__)
    f.neon = (getauxval(AT_HWCAP) >> 12) & 1;  // HWCAP_NEON
#endif
    return f;
}

bool cpu_has_level(Level level, const CpuFeatures& f) {
    const bool avx2 = f.avx2 && f.fma && f.f16c;
    switch (level) {
        case Level::scalar: return true;
        case Level::sse2: return f.sse2;
        case Level::ssse3: return f.sse2 && f.ssse3;
        case Level::avx2: return avx2;
        case Level::avxvnni: return avx2 && f.avxvnni;
        // VNNI is part of the level, not optional: its integer dot products are
        // vpdpbusd. Only Skylake-SP/X (2017) have AVX-512 without it; they get avx2.
        case Level::avx512:
            return avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vnni;
        case Level::neon: return f.neon;
        case Level::dotprod: return f.neon && f.dotprod;
    }
    return false;
}

Level best_level() {
    const CpuFeatures f = detect_cpu_features();
    Level best = Level::scalar;
    for (const Level l : compiled_levels())
        if (cpu_has_level(l, f)) best = l;
    return best;
}

std::vector<Level> compiled_levels() {
#if defined(__x86_64__) || defined(_M_X64)
    return {Level::scalar, Level::sse2, Level::ssse3, Level::avx2, Level::avxvnni, Level::avx512};
#elif defined(__i386__) || defined(_M_IX86)
    return {Level::scalar, Level::sse2, Level::ssse3, Level::avx2};
#elif defined(__aarch64__)
    return {Level::scalar, Level::neon, Level::dotprod};
#elif defined(__arm__)
    return {Level::scalar, Level::neon};
#else
    return {Level::scalar};
#endif
}

Level active_level() {
    int l = g_level.load(std::memory_order_relaxed);
    if (l < 0) {
        l = static_cast<int>(best_level());
        g_level.store(l, std::memory_order_relaxed);
    }
    return static_cast<Level>(l);
}

bool level_runs_here(Level level) {
    bool compiled = false;
    for (const Level l : compiled_levels()) compiled = compiled || l == level;
    return compiled && cpu_has_level(level, detect_cpu_features());
}

bool set_active_level(Level level) {
    if (!level_runs_here(level)) return false;
    g_level.store(static_cast<int>(level), std::memory_order_relaxed);
    return true;
}

const char* level_name(Level level) {
    switch (level) {
        case Level::scalar: return "scalar";
        case Level::sse2: return "sse2";
        case Level::ssse3: return "ssse3";
        case Level::avx2: return "avx2";
        case Level::avxvnni: return "avxvnni";
        case Level::avx512: return "avx512";
        case Level::neon: return "neon";
        case Level::dotprod: return "dotprod";
    }
    return "unknown";
}

bool parse_level(const std::string& name, Level* out) {
    if (name == "scalar") *out = Level::scalar;
    else if (name == "sse2") *out = Level::sse2;
    else if (name == "ssse3") *out = Level::ssse3;
    else if (name == "avx2") *out = Level::avx2;
    else if (name == "avxvnni") *out = Level::avxvnni;
    else if (name == "avx512") *out = Level::avx512;
    else if (name == "neon") *out = Level::neon;
    else if (name == "dotprod") *out = Level::dotprod;
    else if (name == "auto") *out = best_level();
    else return false;
    return true;
}

bool select_level(const std::string& name, std::string* why) {
    std::string choices;
    for (const Level l : compiled_levels()) choices += std::string(level_name(l)) + ", ";
    choices += "or auto";
    Level level;
    if (!parse_level(name, &level)) {
        *why = "--kernels " + name + ": unknown level; this build has " + choices;
        return false;
    }
    bool compiled = false;
    for (const Level l : compiled_levels()) compiled = compiled || l == level;
    if (!compiled) {
        *why = "--kernels " + name + ": not a level of this build (it has " + choices + ")";
        return false;
    }
    if (!set_active_level(level)) {
        *why = "--kernels " + name + ": this CPU lacks it (it has: " + cpu_features_string() + "); use --kernels " +
               level_name(best_level()) + " or auto";
        return false;
    }
    return true;
}

std::string cpu_features_string() {
    const CpuFeatures f = detect_cpu_features();
    std::string s;
    auto add = [&](bool has, const char* name) {
        if (!has) return;
        if (!s.empty()) s += ' ';
        s += name;
    };
    add(f.sse2, "sse2");
    add(f.ssse3, "ssse3");
    add(f.avx2, "avx2");
    add(f.fma, "fma");
    add(f.f16c, "f16c");
    add(f.avx512f, "avx512f");
    add(f.avx512bw, "avx512bw");
    add(f.avx512vl, "avx512vl");
    add(f.avx512dq, "avx512dq");
    add(f.avx512vnni, "avx512vnni");
    add(f.avxvnni, "avxvnni");
    add(f.neon, "neon");
    add(f.dotprod, "dotprod");
    return s.empty() ? "none" : s;
}

}  // namespace ferry::kernels
