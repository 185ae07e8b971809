// Tokenizers read from GGUF vocabularies: llama.cpp's own fixtures
// (../shared/models/gguf/vocab: 46 inputs with the ids HF tokenizers give,
// no BOS, special-token text not parsed), detokenization back to the input,
// and the Llama 3 pre-tokenizer on a small vocabulary this test writes.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/gguf_writer.h"
#include "common/mapped_file.h"
#include "common/tokenizer.h"
#include "common/tokenizer_loader.h"
#include "common/tokenizer_unicode.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string vocab_path(const std::string& name) { return test::shared_dir() + "/models/gguf/vocab/" + name; }

// The .inp format: every input followed by "\n__ggml_vocab_test__\n".
std::vector<std::string> read_inputs(const std::string& path) {
    const std::string all = test::read_file(path);
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> inputs;
    size_t at = 0;
    for (size_t hit; (hit = all.find(sep, at)) != std::string::npos; at = hit + sep.size())
        inputs.push_back(all.substr(at, hit - at));
    return inputs;
}

// The .out format: one line per input, " id id id".
std::vector<std::vector<int>> read_outputs(const std::string& path) {
    const std::string all = test::read_file(path);
    std::vector<std::vector<int>> lines;
    size_t at = 0;
    for (size_t nl; (nl = all.find('\n', at)) != std::string::npos; at = nl + 1) {
        std::vector<int> ids;
        const std::string line = all.substr(at, nl - at);
        for (size_t p = 0; p < line.size();) {
            if (line[p] == ' ') {
                ++p;
                continue;
            }
            size_t used = 0;
            ids.push_back(std::stoi(line.substr(p), &used));
            p += used;
        }
        lines.push_back(ids);
    }
    return lines;
}

struct VocabFile {
    MappedFile map;
    GgufFile gguf;
    explicit VocabFile(const std::string& path) : map(path), gguf(parse_gguf(map.data(), map.size(), path)) {}
};

std::string printable(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
        if (c >= 0x20 && c < 0x7f) out += static_cast<char>(c);
        else {
            char b[8];
            std::snprintf(b, sizeof b, "\\x%02x", c);
            out += b;
        }
    }
    return out;
}

std::string ids_string(const std::vector<int>& ids) {
    std::string s;
    for (int id : ids) s += " " + std::to_string(id);
    return s;
}

std::string detokenize(const Tokenizer& t, const std::vector<int>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += t.decode(i ? ids[i - 1] : -1, ids[i]);
    return s;
}

class VocabFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(VocabFixture, ReproducesEveryExpectedLineAndDetokenizesBack) {
    const std::string name = GetParam();
    const VocabFile file(vocab_path(name + ".gguf"));
    const Tokenizer tok = tokenizer_from_gguf(file.gguf);
    const std::vector<std::string> inputs = read_inputs(vocab_path(name + ".gguf.inp"));
    const std::vector<std::vector<int>> expected = read_outputs(vocab_path(name + ".gguf.out"));
    ASSERT_EQ(inputs.size(), 46u);
    ASSERT_EQ(expected.size(), 46u);
    const bool spm = tok.kind() == TokenizerKind::spm;
    int matched = 0;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const std::vector<int> ids = tok.encode(inputs[i], false, false, false);
        EXPECT_EQ(ids_string(ids), ids_string(expected[i])) << name << " input " << i << ": '" << printable(inputs[i]) << "'";
        matched += ids == expected[i];
        const std::string back = detokenize(tok, expected[i]);
        const std::string want = spm && !inputs[i].empty() ? " " + inputs[i] : inputs[i];
        EXPECT_EQ(printable(back), printable(want)) << name << " input " << i;
    }
    std::cout << "[ measured ] " << name << ": " << matched << "/46 lines identical to llama.cpp's fixture\n";
}

INSTANTIATE_TEST_SUITE_P(LlamaCppFixtures, VocabFixture,
                         ::testing::Values("ggml-vocab-llama-spm", "ggml-vocab-gpt-2"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

}  // namespace
}  // namespace ferry
