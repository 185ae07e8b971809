// The GGUF fuzz target's entry (tests/fuzz/gguf_fuzz.cpp), run in every
// ctest over a fixed corpus: the real GGUF files, then thousands of
// deterministic mutations of them (bytes overwritten, length and count
// fields set to extremes, truncations, splices), concentrated on the header
// where the structure is. Every input must end in success or a ferry::Error;
// anything else (a crash, another exception) fails the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/llama2c_writer.h"
#include "common/tokenizer_loader.h"
#include "coordinator/model_files/quantize.h"
#include "tests/fuzz/gguf_fuzz.cpp"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string read_model(const std::string& name) { return test::read_file(test::model_path(name)); }

bool parses(const std::string& bytes) {
    try {
        parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "mutant");
        return true;
    } catch (const Error&) {
        return false;
    }
}

// Where the tensor data starts: mutations go before it. The whole of a seed
// that is itself cut short.
uint64_t header_end(const std::string& bytes) {
    try {
        const GgufFile g = parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "seed");
        return g.tensors.empty() ? bytes.size() : g.data_offset;
    } catch (const Error&) {
        return bytes.size();
    }
}

// One mutant of `seed`; `header` bytes at the front hold the structure.
std::string mutate(const std::string& seed, uint64_t header, std::mt19937_64& rng) {
    std::string m = seed;
    auto pick = [&](uint64_t n) { return n ? rng() % n : 0; };
    const uint64_t span = std::max<uint64_t>(1, std::min<uint64_t>(header, m.size()));
    switch (rng() % 5) {
        case 0:  // a few random bytes
            for (int i = 0, n = 1 + static_cast<int>(rng() % 4); i < n; ++i) m[pick(span)] = static_cast<char>(rng());
            break;
        case 1: {  // a count, length, type or offset field set to an extreme
            static const uint64_t kExtremes[] = {
                0, 1, 2, 7, 8, 9, 12, 31, 32, 255, 0xFFFFFFFFull, 1ull << 32, 1ull << 62, 0x7FFFFFFFFFFFFFFFull, ~0ull};
            const uint64_t v = rng() % 3 == 0 ? static_cast<uint64_t>(seed.size()) + pick(64)
                                              : kExtremes[rng() % (sizeof kExtremes / sizeof kExtremes[0])];
            const uint64_t at = pick(span) & ~uint64_t{3};
            const size_t width = rng() % 2 ? 8 : 4;
            if (at + width <= m.size()) std::memcpy(&m[at], &v, width);
            break;
        }
        case 2:  // truncated
            m.resize(pick(m.size()));
            break;
        case 3: {  // a stretch copied over another
            const uint64_t from = pick(span), to = pick(span), n = 1 + pick(64);
            if (from + n <= m.size() && to + n <= m.size()) std::memmove(&m[to], &m[from], n);
            break;
        }
        default:  // bytes inserted into the header
            m.insert(pick(span), std::string(1 + pick(16), static_cast<char>(rng())));
            break;
    }
    return m;
}

void run_entry(const std::string& bytes) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

TEST(GgufFuzzCorpus, RealFilesRunThroughTheEntry) {
    for (const char* name : {"stories260K.gguf", "gguf/stories260K-q8_0.gguf", "gguf/blocks.gguf",
                             "gguf/vocab/ggml-vocab-llama-spm.gguf", "gguf/vocab/ggml-vocab-gpt-2.gguf"}) {
        const std::string bytes = read_model(name);
        ASSERT_TRUE(parses(bytes)) << name;
        run_entry(bytes);
    }
}

TEST(GgufFuzzCorpus, MutantsOfRealFilesEndInSuccessOrFerryError) {
    // A small complete model with a vocabulary, written by ferry itself.
    test::TempDir dir;
    ModelConfig c;
    c.dim = 32, c.hidden_dim = 64, c.n_layers = 1, c.n_heads = 4, c.n_kv_heads = 2, c.vocab_size = 260, c.seq_len = 16;
    RandomTensorSource random(3);
    GgufOutput o;
    o.type = TensorType::Q4_0;
    o.progress = false;
    write_model_gguf(dir.file("tiny.gguf"), c, true, random,
                     spm_vocabulary_from_llama2c(synthetic_llama2c_vocabulary(c.vocab_size)), "tiny", o);

    const std::vector<std::pair<std::string, int>> seeds = {
        {test::read_file(dir.file("tiny.gguf")), 20000},
        {read_model("gguf/stories260K-q4_0.gguf"), 3000},
        {read_model("gguf/blocks.gguf"), 3000},
        {read_model("gguf/vocab/ggml-vocab-gpt-2.gguf").substr(0, 1 << 16), 3000},
        // The other architectures' metadata and tensors (biases, per-head norms, sub-norms, scales).
        {read_model("arch/qwen3-tiny.gguf"), 1500},
        {read_model("arch/bitnet-tiny.gguf"), 1500},
    };
    std::mt19937_64 rng(20260524);
    int accepted = 0, rejected = 0;
    for (const auto& [seed, count] : seeds) {
        const uint64_t header = header_end(seed);
        for (int i = 0; i < count; ++i) {
            const std::string m = mutate(seed, header, rng);
            (parses(m) ? accepted : rejected)++;
            run_entry(m);
        }
    }
    std::cout << "[ measured ] " << accepted + rejected << " mutants: " << accepted << " parsed, " << rejected
              << " rejected with a ferry::Error\n";
    EXPECT_GT(accepted, 1000) << "the corpus must reach the code behind the parser";
    EXPECT_GT(rejected, 10000) << "and the parser's checks";
}

}  // namespace
}  // namespace ferry
