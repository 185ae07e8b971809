// A test's kernel level, put back when the test ends (kept apart from
// test_support.h so the kernel tests build against kernels/ alone).
#pragma once
#include "kernels/cpu_features.h"

namespace ferry::test {

// Puts back the kernel level that was active when it was made.
struct LevelGuard {
    kernels::Level saved = kernels::active_level();
    ~LevelGuard() { kernels::set_active_level(saved); }
};

}  // namespace ferry::test
