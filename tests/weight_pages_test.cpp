// Where a one-process run's weights lie in memory: a model file not yet in
// the page cache is read in in file order before anything computes on it, so
// that Linux caches it as large folios and maps it with 2 MB entries (decode
// and prefill read every weight on every pass; docs/DESIGN.md, "Where the
// weights lie").
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/mapped_file.h"
#include "common/platform/file.h"
#include "common/process_stats.h"
#include "coordinator/commands/setup.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

#if defined(__linux__)

// kB of this process's mappings of `path` in 2 MB pages (0 where the kernel does not tell).
long pmd_mapped_kb(const std::string& path) {
    return static_cast<long>(file_bytes_in_large_pages(path).value_or(0) / 1024);
}

void drop_from_page_cache(const std::string& path) {
    File f(path, File::Mode::read);
    ASSERT_TRUE(f.sync_and_drop_pages()) << path;
}

TEST(WeightPages, ColdModelOfOneProcessIsMappedInLargePages) {
    const test::TempDir dir;
    const test::SynthModel m = test::synth_64mb_model(dir);
    const long file_kb = static_cast<long>(File(m.model, File::Mode::read).size() / 1024);
    long witness_kb = 0;

    // What this kernel and filesystem do for a file read in order through a
    // map (the test's own loop, the same kernel path as the read-in):
    // without large folios (an older kernel, another filesystem) there is
    // nothing to check.
    drop_from_page_cache(m.model);
    {
        const MappedFile map(m.model);
        uint32_t sum = 0;
        for (uint64_t at = 0; at < map.size(); at += 4096) sum += static_cast<const volatile uint8_t*>(map.data())[at];
        const long witness = pmd_mapped_kb(m.model);
        RecordProperty("sequential_read_pmd_kb", std::to_string(witness) + " of " + std::to_string(file_kb) +
                                                     " (byte sum " + std::to_string(sum) + ")");
        // Readahead starts small and grows, so the first megabytes of a file
        // read in order are small folios whatever reads it: a 64 MB file
        // gets about half in 2 MB pages.
        if (witness < 8 * 1024)
            GTEST_SKIP() << "this kernel maps only " << witness << " of " << file_kb
                         << " kB of a file read in order with 2 MB entries (no large folios here)";
        witness_kb = witness;
    }

    drop_from_page_cache(m.model);
    const ModelFile file = open_model(m.model, true);
    const long got = pmd_mapped_kb(m.model);
    EXPECT_GE(got, witness_kb / 2) << "of " << file_kb << " kB, a cold model opened for one process is mapped with "
                                       << got << " kB in 2 MB pages, a file read in order with " << witness_kb
                                       << ": it was not read in in file order";

    // `ferry bench` says so (the file now cached in large folios).
    const test::CommandResult r = test::run_command({test::ferry_bin(), "bench", m.model, "--json", "--runs", "1",
                                                     "--prompt-tokens", "2", "--gen-tokens", "1", "--bandwidth-passes", "0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json j = nlohmann::json::parse(r.out);
    ASSERT_TRUE(j.at("weights_file_bytes_in_large_pages").is_number()) << r.out;
    EXPECT_GE(j.at("weights_file_bytes_in_large_pages").get<long>() / 1024, witness_kb / 2) << r.out;
}

#endif

}  // namespace
}  // namespace ferry
