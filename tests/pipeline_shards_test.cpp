// Shards travel once: a second run, or a restarted worker, finds its shard in
// the cache and nothing is sent; a partial transfer resumes where it stopped
// (and starts over if what is there is not the image); a worker with the
// model file in --model-dir loads its range from disk.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <regex>

#include "common/model_file.h"
#include "common/net/hash.h"
#include "common/net/shard_cache.h"
#include "common/net/shard_image.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

const std::vector<std::string> kGreedy = {"-t", "0", "-n", "256", "-i", "Once upon a time", "--threads", "1"};

// Runs the greedy reference through `workers`; returns the "shard bytes sent" count.
long long run_greedy(const std::string& workers, const std::vector<std::string>& more = {}) {
    std::vector<std::string> flags = kGreedy;
    flags.insert(flags.end(), {"--workers", workers, "--stats-every", "100"});
    flags.insert(flags.end(), more.begin(), more.end());
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", flags), 60);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, test::read_file(test::reference_path("stories260K.greedy.n256.txt")));
    // The node table every 100 decoded tokens (251 of them) and once at the end.
    size_t tables = 0;
    for (size_t at = r.err.find("end to end"); at != std::string::npos; at = r.err.find("end to end", at + 1)) ++tables;
    EXPECT_EQ(tables, 3u) << r.err;
    std::smatch m;
    if (!std::regex_search(r.err, m, std::regex("shard bytes sent: (\\d+)"))) {
        ADD_FAILURE() << "no shard line in: " << r.err;
        return -1;
    }
    return std::stoll(m[1]);
}

std::vector<std::string> worker_args(const std::string& cache) { return {"--threads", "1", "--cache-dir", cache}; }

TEST(PipelineShards, SecondRunAndRestartedWorkerSendNothing) {
    test::TempDir tmp;
    const std::string cache = tmp.file("cache");
    {
        test::WorkerProcess w(worker_args(cache), tmp.file("w.log"));
        EXPECT_GT(run_greedy(w.address()), 1000000 / 2);
        EXPECT_EQ(run_greedy(w.address()), 0);
    }
    test::WorkerProcess again(worker_args(cache), tmp.file("w2.log"));
    EXPECT_EQ(run_greedy(again.address()), 0);
    EXPECT_NE(again.log().find("shard loaded from cache"), std::string::npos) << again.log();
}

// The placement is forced so that the shard (and its file name) does not
// depend on the planner's choice.
const std::vector<std::string> kWholeModel = {"--embedding-on-worker", "--head-on-worker"};

class PartialShard : public ::testing::Test {
protected:
    // Plants the first `keep` bytes of the 1-worker shard image (or garbage) as a .part file.
    uint64_t plant(const std::string& cache, uint64_t keep, bool garbage) {
        const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
        const std::string hash = net::file_content_hash(file.path, "");
        const ShardSpec spec{0, file.config.n_layers, true, true};
        const net::ShardImage image(file, spec, hash);
        std::string bytes(static_cast<size_t>(keep), '\0');
        image.read(0, keep, reinterpret_cast<uint8_t*>(bytes.data()));
        if (garbage) bytes[bytes.size() / 2] ^= 0x5a;
        const net::ShardPaths paths = net::shard_paths(cache, hash, spec, image.content_hash(""));
        std::filesystem::create_directories(paths.dir);
        test::write_file(paths.part_path, bytes);
        return image.size();
    }
};

TEST_F(PartialShard, AnInterruptedTransferResumesFromThePartFile) {
    test::TempDir tmp;
    const uint64_t size = plant(tmp.file("cache"), 300000, false);
    test::WorkerProcess w(worker_args(tmp.file("cache")), tmp.file("w.log"));
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), static_cast<long long>(size - 300000));
    EXPECT_NE(w.log().find("300000 bytes of"), std::string::npos) << w.log();
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), 0);
}

TEST_F(PartialShard, APartFileThatIsNotTheImageIsSentAgain) {
    test::TempDir tmp;
    const uint64_t size = plant(tmp.file("cache"), 300000, true);
    test::WorkerProcess w(worker_args(tmp.file("cache")), tmp.file("w.log"));
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), static_cast<long long>(size));
}

// The one file a worker's cache holds after serving the whole model.
std::string cached_shard(const std::string& cache) {
    std::vector<std::string> found;
    for (const auto& e : std::filesystem::recursive_directory_iterator(cache))
        if (e.path().extension() == ".gguf") found.push_back(e.path().string());
    EXPECT_EQ(found.size(), 1u);
    return found.empty() ? "" : found[0];
}

// Bit rot on an old disk: 1,000 bytes flipped inside a cached tensor are
// found at the next load, the shard is sent again and the text is exact.
TEST(PipelineShards, ACorruptedCachedShardIsFoundAndSentAgain) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp.file("cache")), tmp.file("w.log"));
    const long long size = run_greedy(w.address(), kWholeModel);
    ASSERT_GT(size, 0);
    const std::string path = cached_shard(tmp.file("cache"));
    std::string bytes = test::read_file(path);
    for (size_t i = 0; i < 1000; ++i) bytes[bytes.size() / 2 + i] ^= 0x21;
    test::write_file(path, bytes);
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), size);
    EXPECT_NE(w.log().find("is corrupted"), std::string::npos) << w.log();
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), 0);  // the new copy is sound
}

// A sound cached file is never removed because an assignment names another
// image: shards of another split sit beside it, and it is used again.
TEST(PipelineShards, AnotherSplitLeavesTheCachedShardAlone) {
    test::TempDir tmp;
    test::WorkerProcess w(worker_args(tmp.file("cache")), tmp.file("w.log"));
    ASSERT_GT(run_greedy(w.address(), kWholeModel), 0);
    const std::string path = cached_shard(tmp.file("cache"));
    const std::string sound = test::read_file(path);
    // The other split's shards sit beside it; the first one stays.
    EXPECT_GT(run_greedy(w.address(), {"--embedding-on-worker", "--head-on-coordinator"}), 0);
    EXPECT_EQ(test::read_file(path), sound);
    EXPECT_EQ(run_greedy(w.address(), kWholeModel), 0);
}

// The coordinator reads a 64 MB model to hash it and send it, but keeps none
// of what a worker holds: its peak RSS stays far under the shard's size.
TEST(PipelineShards, TheCoordinatorDoesNotKeepWhatItSent) {
    FERRY_SKIP_IF_SANITIZED();
    test::TempDir tmp;
    const test::SynthModel model = test::synth_64mb_model(tmp, 64);
    test::WorkerProcess w(worker_args(tmp.file("cache")), tmp.file("w.log"));
    const auto r = test::run_command({test::ferry_bin(), "run", model.model, "-z", model.tokenizer, "-n", "8",
                                      "--threads", "1", "--workers", w.address(), "--embedding-on-worker",
                                      "--head-on-worker"},
                                     120);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex("shard bytes sent: (\\d+)"))) << r.err;
    const double sent_mb = std::stod(m[1]) / 1048576.0;
    ASSERT_TRUE(std::regex_search(r.err, m, std::regex("memory: peak RSS ([0-9.]+) MB"))) << r.err;
    const double peak_mb = std::stod(m[1]);
    EXPECT_GT(sent_mb, 60);
    // The same run again, the shard now in the worker's cache: the process without the transfer (its
    // libraries, hashing the model page by page, the session). What sending added must be small
    // (the 8 MB send window and a chunk), and the whole far under the shard.
    const auto again = test::run_command({test::ferry_bin(), "run", model.model, "-z", model.tokenizer, "-n", "8",
                                          "--threads", "1", "--workers", w.address(), "--embedding-on-worker",
                                          "--head-on-worker"},
                                         120);
    ASSERT_EQ(again.exit_code, 0) << again.err;
    ASSERT_TRUE(std::regex_search(again.err, m, std::regex("memory: peak RSS ([0-9.]+) MB"))) << again.err;
    const double without_mb = std::stod(m[1]);
    EXPECT_LT(peak_mb - without_mb, sent_mb / 4) << "sending added " << peak_mb - without_mb << " MB\n" << r.err;
    EXPECT_LT(peak_mb, sent_mb * 0.6) << r.err;
}

// The cache cannot be filled by abandonment or by many models: partial
// transfers untouched for an hour go at start, and --cache-max evicts the
// least recently used shard.
TEST(PipelineShards, TheCacheIsBounded) {
    test::TempDir tmp;
    const std::string cache = tmp.file("cache");
    std::filesystem::create_directories(cache + "/0123");
    const std::string stale = cache + "/0123/0-4-embed.00.gguf.part", fresh = cache + "/0123/0-4-embed.11.gguf.part";
    test::write_file(stale, "abandoned");
    test::write_file(fresh, "in progress");
    std::filesystem::last_write_time(stale, std::filesystem::file_time_type::clock::now() - std::chrono::hours(2));
    std::vector<std::string> args = worker_args(cache);
    args.insert(args.end(), {"--cache-max", "1500K"});  // one stories260K shard (~1.1 MB), not two
    test::WorkerProcess w(args, tmp.file("w.log"));
    EXPECT_FALSE(std::filesystem::exists(stale)) << w.log();
    EXPECT_TRUE(std::filesystem::exists(fresh));
    std::filesystem::remove(fresh);

    ASSERT_GT(run_greedy(w.address(), kWholeModel), 0);
    const std::string first = cached_shard(cache);
    ASSERT_GT(run_greedy(w.address(), {"--embedding-on-worker", "--head-on-coordinator"}), 0);
    EXPECT_FALSE(std::filesystem::exists(first)) << w.log();  // least recently used, over the bound
    EXPECT_NE(w.log().find("over --cache-max"), std::string::npos) << w.log();
    cached_shard(cache);  // exactly one left
}

TEST(PipelineShards, AShardLargerThanTheCacheBoundIsRefused) {
    test::TempDir tmp;
    std::vector<std::string> args = worker_args(tmp.file("cache"));
    args.insert(args.end(), {"--cache-max", "100K"});
    test::WorkerProcess w(args, tmp.file("w.log"));
    std::vector<std::string> flags = kGreedy;
    flags.insert(flags.end(), {"--workers", w.address()});
    const auto r = test::run_command(test::ferry_run_args("stories260K.bin", "tok512.bin", flags), 60);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("over --cache-max 100.0 KB; raise --cache-max"), std::string::npos) << r.err;
}

TEST(PipelineShards, AWorkerWithTheModelInModelDirLoadsItFromDisk) {
    test::TempDir tmp;
    std::vector<std::string> args = worker_args(tmp.file("cache"));
    args.insert(args.end(), {"--model-dir", test::shared_dir() + "/models"});
    test::WorkerProcess a(args, tmp.file("a.log")), b(args, tmp.file("b.log"));
    EXPECT_EQ(run_greedy(test::addresses({&a, &b}), {"--split", "3,2"}), 0);
    EXPECT_NE(a.log().find("shard loaded from model-dir"), std::string::npos) << a.log();
}

}  // namespace
}  // namespace ferry
