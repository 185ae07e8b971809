// shard_memory() against what the kernel measures: real ferry-worker
// processes serve a shard through `ferry run --workers`, then `ferry status
// --json` reports each one's peak RSS (VmHWM from /proc/self/status). The
// prediction for exactly what each worker held (layers, embedding, head),
// the context, the KV type and the largest request the run sent must be
// within kTolerance of the measured peak, for several models (llama2.c and
// GGUF, f32, q8_0 and q4_0), ranges, contexts, KV types, and for the 32-bit
// worker where it is built.
//
// The speed probe a worker runs at start (a few MB under a small budget, up
// to 64 MB unbudgeted; worker/capabilities.cpp) is freed before any shard
// arrives, so each worker's high-water mark is reset (/proc/PID/clear_refs)
// once it listens: what is compared is the serving footprint.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/model_file.h"
#include "common/shard_memory.h"
#include "common/tokenizer_loader.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

constexpr double kTolerance = 0.10;

std::string i686_worker() { return test::i686_binary("worker/ferry-worker"); }

// Synthetic models shared by the cases: ~64 MB f32 (5 layers of 12.6 MB, kv_dim 256) and its q4_0.
class MemoryAccounting : public ::testing::Test {
protected:
    void SetUp() override { FERRY_SKIP_IF_SANITIZED(); }
    static void SetUpTestSuite() {
        dir_ = new test::TempDir();
        const auto synth = test::run_command({test::ferry_bin(), "synth", dir_->file("syn.bin"), "--dim", "512",
                                              "--hidden-dim", "1536", "--layers", "5", "--heads", "8", "--kv-heads", "4",
                                              "--vocab", "512", "--seq-len", "256", "--tokenizer-out",
                                              dir_->file("syn-tok.bin"), "-q"});
        ASSERT_EQ(synth.exit_code, 0) << synth.err;
        const auto quant = test::run_command({test::ferry_bin(), "quantize", dir_->file("syn.bin"),
                                              dir_->file("syn-q4_0.gguf"), "--type", "q4_0", "-z",
                                              dir_->file("syn-tok.bin"), "-q"});
        ASSERT_EQ(quant.exit_code, 0) << quant.err;
    }
    static void TearDownTestSuite() {
        delete dir_;
        dir_ = nullptr;
    }
    static test::TempDir* dir_;
};
test::TempDir* MemoryAccounting::dir_ = nullptr;

struct Case {
    std::string model, tokenizer;  // paths
    std::vector<std::string> split;
    int ctx = 0;
    std::string kv = "f32";
    std::vector<std::string> flags;  // placement overrides and such
    std::string prompt = "Once upon a time";
    int steps = 200;
    std::vector<bool> i686;  // per worker: run the 32-bit build
};

struct Measured {
    std::string worker;
    uint64_t predicted = 0, peak = 0;
    double error = 0;
};

void reset_peak(int pid) {
    std::ofstream f("/proc/" + std::to_string(pid) + "/clear_refs");
    f << "5";
}

std::vector<Measured> measure(const Case& c, const std::string& label) {
    test::TempDir tmp;
    std::vector<std::unique_ptr<test::WorkerProcess>> workers;
    std::string list;
    for (size_t i = 0; i < c.split.size(); ++i) {
        const bool i686 = i < c.i686.size() && c.i686[i];
        const test::I686Launch launch = i686 ? test::i686_launch(i686_worker()) : test::I686Launch{};
        workers.push_back(std::make_unique<test::WorkerProcess>(
            std::vector<std::string>{"--threads", "1", "--memory", "256M", "--cache-dir", tmp.file("c" + std::to_string(i))},
            tmp.file("w" + std::to_string(i) + ".log"), launch.prefix, "127.0.0.1:0", i686 ? i686_worker() : ""));
        reset_peak(workers.back()->pid());
        list += (list.empty() ? "" : ",") + workers.back()->address();
    }
    std::string split;
    for (const std::string& s : c.split) split += (split.empty() ? "" : ",") + s;
    std::vector<std::string> run = {test::ferry_bin(), "run", c.model, "--workers", list, "--split", split, "-n",
                                    std::to_string(c.steps), "-t", "1", "-s", "7", "-i", c.prompt, "--ctx",
                                    std::to_string(c.ctx), "--kv-type", c.kv, "--threads", "1"};
    if (!c.tokenizer.empty()) run.insert(run.end(), {"-z", c.tokenizer});
    run.insert(run.end(), c.flags.begin(), c.flags.end());
    const auto r = test::run_command(run, 120);
    if (r.exit_code != 0) {
        ADD_FAILURE() << label << ": " << r.err;
        return {};
    }
    const auto s = test::run_command({test::ferry_bin(), "status", "--workers", list, "--json"}, 30);
    EXPECT_EQ(s.exit_code, 0) << s.err;
    const nlohmann::json status = nlohmann::json::parse(s.out);

    const ModelFile file = open_model_file(c.model);
    const Tokenizer tok = load_tokenizer(file, c.tokenizer);
    const int prompt_tokens = static_cast<int>(tok.encode(c.prompt, true, false).size());
    std::vector<Measured> out;
    for (size_t i = 0; i < workers.size(); ++i) {
        const nlohmann::json& w = status[i];
        // A vocabulary slice too, where the plan cut the classifier.
        const ShardSpec spec{w.value("first_layer", 0), w.value("end_layer", 0), w.value("embedding", false),
                             w.value("head", false),   w.value("vocab_first", 0), w.value("vocab_end", 0)};
        StageLoad load;
        load.context = c.ctx;
        load.kv_type = c.kv == "f16" ? KvType::f16 : c.kv == "q8_0" ? KvType::q8_0 : KvType::f32;
        load.max_positions = std::min(prompt_tokens, c.steps);
        load.first = i == 0;
        load.last = i + 1 == workers.size();
        load.arch = w.value("arch", "x86_64");
        const ShardMemory m = shard_memory(file.config, file.tensors, spec, load);
        Measured x;
        x.worker = label + " stage " + std::to_string(i + 1) + " (" + load.arch + ", layers " +
                   std::to_string(spec.first_layer) + "-" + std::to_string(spec.last_layer - 1) +
                   (spec.embedding ? " +emb" : "") + (spec.head ? " +head" : "") +
                   (spec.has_slice() ? " +vocab slice" : "") + ")";
        x.predicted = m.total();
        x.peak = w.value("peak_rss", uint64_t{0});
        x.error = x.peak ? (static_cast<double>(x.predicted) - static_cast<double>(x.peak)) / x.peak : 1.0;
        std::printf("%-62s predicted %7.2f MB (weights %6.2f, KV %5.2f, workspace %5.2f, buffers %5.2f, process %5.2f)"
                    "  peak RSS %7.2f MB  error %+5.1f%%\n",
                    x.worker.c_str(), m.total() / 1048576.0, m.weights / 1048576.0, m.kv_cache / 1048576.0,
                    m.workspace / 1048576.0, m.buffers / 1048576.0, m.overhead / 1048576.0, x.peak / 1048576.0,
                    100 * x.error);
        out.push_back(x);
    }
    return out;
}

void expect_within_tolerance(const std::vector<Measured>& ms) {
    EXPECT_FALSE(ms.empty());
    for (const Measured& m : ms) {
        EXPECT_LE(std::fabs(m.error), kTolerance) << m.worker << ": predicted " << m.predicted << " B, peak RSS "
                                                  << m.peak << " B";
        ::testing::Test::RecordProperty(m.worker, std::to_string(100 * m.error) + "%");
    }
}

uint64_t status_kb(int pid, const std::string& key) {
    std::istringstream in(test::read_file("/proc/" + std::to_string(pid) + "/status"));
    for (std::string line; std::getline(in, line);)
        if (line.rfind(key + ":", 0) == 0) return std::stoull(line.substr(key.size() + 1)) * 1024;
    return 0;
}

// The overhead constants stay honest: an idle worker (after its start-up
// probe) is below them, and not so far below that they stopped meaning much;
// serving adds the rest (the cases below).
TEST_F(MemoryAccounting, ProcessOverheadConstantsAreAboveAnIdleWorker) {
    test::TempDir tmp;
    test::I686Launch host;
    host.available = host.native = true;
    for (const bool i686 : {false, true}) {
        const test::I686Launch launch = i686 ? test::i686_launch(i686_worker()) : host;
        if (!launch.available) GTEST_SKIP() << "x86_64 checked; i686: " << launch.why;
        // Under qemu-i386 VmRSS is the emulator's, not the 32-bit worker's.
        if (!launch.native) GTEST_SKIP() << "x86_64 checked; the i686 worker's own RSS cannot be measured: " << launch.why;
        test::WorkerProcess w({"--threads", "1", "--memory", "128M", "--cache-dir", tmp.file("c")},
                              tmp.file(i686 ? "i686.log" : "x86_64.log"), {}, "127.0.0.1:0", i686 ? i686_worker() : "");
        const uint64_t idle = status_kb(w.pid(), "VmRSS");
        const uint64_t constant = worker_process_overhead(i686 ? "i686" : "x86_64");
        std::printf("%s worker idle VmRSS %.2f MB, overhead constant %.2f MB\n", i686 ? "i686" : "x86_64",
                    idle / 1048576.0, constant / 1048576.0);
        EXPECT_LT(idle, constant);
        EXPECT_GT(idle, constant / 3);
    }
}

TEST_F(MemoryAccounting, Stories260KF32AcrossTwoWorkers) {
    Case c;
    c.model = test::model_path("stories260K.bin");
    c.tokenizer = test::model_path("tok512.bin");
    c.split = {"2", "3"};
    c.ctx = 512;
    expect_within_tolerance(measure(c, "stories260K f32 ctx512 kv-f32"));
}

TEST_F(MemoryAccounting, Aidreams260KWithF16CacheAndTheEmbeddingOnAWorker) {
    Case c;
    c.model = test::model_path("aidreams260K.bin");
    c.tokenizer = test::model_path("aidreams260K-tok512.bin");
    c.split = {"1", "3"};
    c.ctx = 128;
    c.kv = "f16";
    c.flags = {"--embedding-on-worker"};
    expect_within_tolerance(measure(c, "aidreams260K f32 ctx128 kv-f16"));
}

TEST_F(MemoryAccounting, Stories260KQ8_0OnThreeWorkersWithQ8Cache) {
    Case c;
    c.model = test::model_path("gguf/stories260K-q8_0.gguf");
    c.split = {"1", "2", "2"};
    c.ctx = 512;
    c.kv = "q8_0";
    c.flags = {"--head-on-worker"};
    expect_within_tolerance(measure(c, "stories260K q8_0 ctx512 kv-q8_0"));
}

TEST_F(MemoryAccounting, Synthetic64MBF32WithBothEndsOnWorkers) {
    Case c;
    c.model = dir_->file("syn.bin");
    c.tokenizer = dir_->file("syn-tok.bin");
    c.split = {"2", "3"};
    c.ctx = 256;
    c.flags = {"--embedding-on-worker", "--head-on-worker"};
    c.prompt = std::string(120, 'a');
    expect_within_tolerance(measure(c, "synthetic 64 MB f32 ctx256 kv-f32"));
}

TEST_F(MemoryAccounting, SyntheticQ4_0WithQ8Cache) {
    Case c;
    c.model = dir_->file("syn-q4_0.gguf");
    c.split = {"3", "2"};
    c.ctx = 200;
    c.kv = "q8_0";
    expect_within_tolerance(measure(c, "synthetic q4_0 ctx200 kv-q8_0"));
}

// The coordinator keeps the embedding while the head is on a worker: it reads
// each token's row from the file and maps none of the 62.5 MB table, so after
// 1500 sampled tokens spread over a 32000-token vocabulary its resident set is
// what a coordinator holding only the tokenizer has (mapped rows grew it by
// 30 MB per 2000 tokens), and the text is the same.
TEST_F(MemoryAccounting, TheCoordinatorReadsEmbeddingRowsWithoutKeepingTheTable) {
    const std::string model = dir_->file("vocab32k.gguf");
    auto r = test::run_command({test::ferry_bin(), "synth", model, "--dim", "512", "--hidden-dim", "512", "--layers",
                                "2", "--heads", "8", "--vocab", "32000", "--seq-len", "2048", "--format", "gguf", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    test::WorkerProcess w({"--threads", "1", "--cache-dir", dir_->file("rows-cache")}, dir_->file("rows.log"));
    auto run = [&](const char* embedding) {
        return test::run_command({test::ferry_bin(), "run", model, "--workers", w.address(), embedding,
                                  "--head-on-worker", "-n", "1000", "-t", "1", "-s", "7"},
                                 180);
    };
    // The coordinator's row of the node table: name, layers, weight MB, RSS MB, ...
    auto coordinator_rss = [](const std::string& err) {
        std::istringstream in(err);
        std::string line, name, layers;
        double weight = 0, rss = -1;
        while (std::getline(in, line))
            if (line.rfind("coordinator ", 0) == 0) std::istringstream(line) >> name >> layers >> weight >> rss;
        return rss;
    };
    const auto on_worker = run("--embedding-on-worker");
    ASSERT_EQ(on_worker.exit_code, 0) << on_worker.err;
    const auto here = run("--embedding-on-coordinator");
    ASSERT_EQ(here.exit_code, 0) << here.err;
    EXPECT_EQ(here.out, on_worker.out);
    const double with_table = coordinator_rss(here.err), without = coordinator_rss(on_worker.err);
    std::printf("[ measured ] coordinator RSS after 1000 tokens: %.1f MB looking rows up, %.1f MB with the embedding "
                "on the worker\n",
                with_table, without);
    ASSERT_GT(without, 0) << on_worker.err;
    EXPECT_LT(with_table, without + 6) << here.err;
}

TEST_F(MemoryAccounting, The32BitWorker) {
    const test::I686Launch launch = test::i686_launch(i686_worker());
    if (!launch.available) GTEST_SKIP() << launch.why;
    Case c;
    c.model = dir_->file("syn.bin");
    c.tokenizer = dir_->file("syn-tok.bin");
    c.split = {"2", "3"};
    c.ctx = 256;
    c.kv = "f16";
    c.i686 = {true, true};
    const std::vector<Measured> ms = measure(c, "synthetic 64 MB f32 ctx256 kv-f16 i686");
    ASSERT_EQ(ms.size(), 2u);  // the run itself worked, natively or emulated
    // Under qemu-i386 the peak RSS is the emulator's (its own code and translation cache), not the worker's.
    if (!launch.native) GTEST_SKIP() << "the run passed; its peak RSS is not compared with the prediction: " << launch.why;
    expect_within_tolerance(ms);
}

}  // namespace
}  // namespace ferry
