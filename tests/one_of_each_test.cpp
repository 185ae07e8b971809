// One of each: one size parser and one byte formatter with one convention
// (MB = 2^20 bytes), so that a plan, a progress line and a table agree.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "common/shard_memory.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

TEST(OneOfEach, SizesParseAndPrintInOneConvention) {
    uint64_t v = 0;
    ASSERT_TRUE(parse_bytes("128M", &v));
    EXPECT_EQ(v, 128ull << 20);
    EXPECT_EQ(format_bytes(v), "128.0 MB");
    EXPECT_DOUBLE_EQ(to_mb(v), 128.0);
    ASSERT_TRUE(parse_bytes("1.5G", &v));
    EXPECT_EQ(format_bytes(v), "1.50 GB");
}

// No second formatter or divisor hides in the sources: sizes go through
// format_bytes / to_mb (common/shard_memory.cpp) and sizes are read by parse_bytes.
TEST(OneOfEach, NoOtherByteFormatterOrSizeParserInTheSources) {
    const std::regex divisor(R"((/|\*)\s*(1048576|1024\.0\s*\*\s*1024|1e6\s*/\s*s\.))");
    const std::regex parser(R"(\b(parse_size|parse_memory|AsSizeValue|megabytes_text)\b)");
    for (const char* dir : {"coordinator", "common", "worker"}) {
        for (const auto& e : std::filesystem::recursive_directory_iterator(std::string(FERRY_SOURCE_DIR) + "/" + dir)) {
            const std::string path = e.path().string();
            if (!(path.ends_with(".cpp") || path.ends_with(".h")) || path.ends_with("shard_memory.cpp")) continue;
            const std::string text = test::read_file(path);
            EXPECT_FALSE(std::regex_search(text, divisor)) << path << ": use format_bytes or to_mb";
            EXPECT_FALSE(std::regex_search(text, parser)) << path << ": use parse_bytes";
        }
    }
}

}  // namespace
}  // namespace ferry
