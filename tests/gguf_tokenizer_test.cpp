// Tokenizers read from GGUF vocabularies: llama.cpp's own fixtures
// (../shared/models/gguf/vocab: 46 inputs with the ids HF tokenizers give,
// no BOS, special-token text not parsed), detokenization back to the input,
// and the Llama 3 pre-tokenizer on a small vocabulary this test writes.
#include <gtest/gtest.h>

#include <algorithm>

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
        EXPECT_EQ(ids_string(ids), ids_string(expected[i]))
            << name << " input " << i << ": '" << printable(inputs[i]) << "'";
        matched += ids == expected[i];
        const std::string back = detokenize(tok, expected[i]);
        const std::string want = spm && !inputs[i].empty() ? " " + inputs[i] : inputs[i];
        EXPECT_EQ(printable(back), printable(want)) << name << " input " << i;
    }
    std::cout << "[ measured ] " << name << ": " << matched << "/46 lines identical to llama.cpp's fixture\n";
}

INSTANTIATE_TEST_SUITE_P(LlamaCppFixtures, VocabFixture, ::testing::Values("ggml-vocab-llama-spm", "ggml-vocab-gpt-2"),
                         [](const auto& info) {
                             std::string n = info.param;
                             for (char& c : n)
                                 if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

// ---------------------------------------------------------------------------
// The Llama 3 pre-tokenizer. The Llama 3 vocabulary is not in ../shared, so
// the test writes a small one: ids 0..255 are the byte alphabet in GPT-2's
// order, as in Llama 3 (and GPT-2), and each further token stands for the
// Llama 3 token it maps to below. Merges are the few needed to split words
// as Llama 3 does. Inputs whose expected ids (ggml-vocab-llama-bpe.gguf.out)
// use only these tokens must come out exactly; merges never cross the
// pre-tokenizer's word boundaries, so any misplaced boundary shows.

// Byte b's place in GPT-2's alphabet: printable bytes first, then the rest.
std::vector<uint8_t> gpt2_byte_order() {
    std::vector<uint8_t> order;
    auto printable = [](int b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); };
    for (int b = 0; b < 256; ++b)
        if (printable(b)) order.push_back(static_cast<uint8_t>(b));
    for (int b = 0; b < 256; ++b)
        if (!printable(b)) order.push_back(static_cast<uint8_t>(b));
    return order;
}

std::string byte_level(const std::string& raw) {
    std::string s;
    for (char c : raw) s += unicode::byte_piece(static_cast<uint8_t>(c));
    return s;
}

struct Llama3Token {
    int id;            // in Llama 3's vocabulary
    const char* text;  // raw UTF-8 (or bytes)
};

// clang-format off
const Llama3Token kLlama3Tokens[] = {
    {256, "  "}, {262, "   "}, {271, "\n\n"}, {1432, "\n\n\n"}, {1602, "\t\n"}, {1142, "ied"}, {27154, "\xc2\xbd"},
    {4038, " months"}, {9906, "Hello"}, {1917, " world"}, {22691, " Hello"}, {4435, " World"}, {320, " ("},
    {284, " ="}, {11639, " era"}, {17523, "!!!!"}, {3001, "!!"}, {1644, "33"}, {8765, "333"}, {497, ".."},
    {1131, "..."}, {2624, " disc"}, {2402, "ards"}, {23904, "048"}, {2005, "ui"}, {42908, "jk"}, {11729, " ds"},
    {3013, "df"}, {17156, "hu"}, {358, " I"}, {3077, "'ve"}, {1027, " been"}, {364, " '"}, {820, "old"},
    {568, " he"}, {596, "'s"}, {1070, " there"}, {793, "RE"}, {499, " you"}, {2771, " sure"}, {539, " not"},
    {3358, "'ll"}, {1304, " make"}, {433, " it"}, {1093, " like"}, {1063, " some"}, {15600, " tea"},
    {1226, " We"}, {43712, "Ve"}, {264, " a"}, {64966, "'l"}, {379, " y"}, {65948, "'all"}, {2650, " How"},
    {527, " are"}, {27623, " \xf0\x9f\x98"}, {949, " ?"}, {37046, "\xe6\x88\x91"}, {101067, "\xe6\x83\xb3"},
    {19000, "\xe5\x9c\xa8"}, {23182, "apple"}, {102301, "\xe5\xb7\xa5\xe4\xbd\x9c"}, {9263, "131"},
    {18136, "415"}, {36827, "\xe5\xa4\xa9"}, {21909, "\xef\xbd\x9e"},
    // Control tokens, as Llama 3 has them.
    {128000, "<|begin_of_text|>"}, {128001, "<|end_of_text|>"}, {128009, "<|eot_id|>"},
};
// clang-format on
constexpr int kFirstControl = 128000;

// Raw pairs, best first: each makes one of the tokens above from its parts.
// clang-format off
const std::pair<const char*, const char*> kLlama3Merges[] = {
    {" ", "d"}, {" d", "s"}, {"d", "f"}, {"h", "u"}, {"u", "i"}, {"j", "k"}, {" d", "i"}, {" di", "s"},
    {" dis", "c"}, {"a", "r"}, {"ar", "d"}, {"ard", "s"}, {"!", "!"}, {"!!", "!!"}, {"o", "l"}, {"ol", "d"},
    {"V", "e"}, {"'", "l"}, {" ", "\xf0"}, {" \xf0", "\x9f"}, {" \xf0\x9f", "\x98"}, {"\xe6", "\x88"},
    {"\xe6\x88", "\x91"}, {"\xe6", "\x83"}, {"\xe6\x83", "\xb3"}, {"\xe5", "\x9c"}, {"\xe5\x9c", "\xa8"},
    {"\xe5", "\xb7"}, {"\xe5\xb7", "\xa5"}, {"\xe4", "\xbd"}, {"\xe4\xbd", "\x9c"},
    {"\xe5\xb7\xa5", "\xe4\xbd\x9c"}, {"a", "p"}, {"ap", "p"}, {"app", "l"}, {"appl", "e"},
};
// clang-format on

struct Llama3Vocab {
    std::string bytes;            // the GGUF file
    std::vector<int> llama3_ids;  // our id -> Llama 3's
};

Llama3Vocab llama3_vocab(const std::string& pre = "llama-bpe") {
    Llama3Vocab v;
    std::vector<std::string> tokens;
    std::vector<int32_t> types;
    for (uint8_t b : gpt2_byte_order()) {
        v.llama3_ids.push_back(static_cast<int>(tokens.size()));
        tokens.push_back(unicode::byte_piece(b));
        types.push_back(static_cast<int32_t>(TokenType::normal));
    }
    for (const Llama3Token& t : kLlama3Tokens) {
        v.llama3_ids.push_back(t.id);
        const bool control = t.id >= kFirstControl;
        tokens.push_back(control ? t.text : byte_level(t.text));
        types.push_back(static_cast<int32_t>(control ? TokenType::control : TokenType::normal));
    }
    std::vector<std::string> merges;
    for (const auto& [l, r] : kLlama3Merges) merges.push_back(byte_level(l) + " " + byte_level(r));
    auto id_of = [&](int llama3) {
        return static_cast<uint32_t>(std::find(v.llama3_ids.begin(), v.llama3_ids.end(), llama3) -
                                     v.llama3_ids.begin());
    };
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_string("tokenizer.ggml.model", "gpt2");
    w.add_string("tokenizer.ggml.pre", pre);
    w.add_string_array("tokenizer.ggml.tokens", tokens);
    w.add_i32_array("tokenizer.ggml.token_type", types);
    w.add_string_array("tokenizer.ggml.merges", merges);
    w.add_u32("tokenizer.ggml.bos_token_id", id_of(128000));
    w.add_u32("tokenizer.ggml.eos_token_id", id_of(128001));
    w.add_u32("tokenizer.ggml.eot_token_id", id_of(128009));
    v.bytes = w.to_bytes();
    return v;
}

Tokenizer tokenizer_from_bytes(const std::string& bytes) {
    return tokenizer_from_gguf(parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.gguf"));
}

std::vector<int> as_llama3(const Llama3Vocab& v, const std::vector<int>& ids) {
    std::vector<int> out;
    for (int id : ids) out.push_back(v.llama3_ids.at(static_cast<size_t>(id)));
    return out;
}

// The position of `part` inside `whole`, or npos.
size_t find_ids(const std::vector<int>& whole, const std::vector<int>& part) {
    auto it = std::search(whole.begin(), whole.end(), part.begin(), part.end());
    return it == whole.end() ? std::string::npos : static_cast<size_t>(it - whole.begin());
}

TEST(Llama3PreTokenizer, ReproducesTheExpectedIdsItsTokensCover) {
    const Llama3Vocab v = llama3_vocab();
    const Tokenizer tok = tokenizer_from_bytes(v.bytes);
    const std::vector<std::string> inputs = read_inputs(vocab_path("ggml-vocab-llama-bpe.gguf.inp"));
    const std::vector<std::vector<int>> expected = read_outputs(vocab_path("ggml-vocab-llama-bpe.gguf.out"));
    ASSERT_EQ(inputs.size(), 46u);
    ASSERT_EQ(expected.size(), 46u);
    // Whole lines: whitespace runs, words with and without a leading space,
    // punctuation, digits in groups of three, "\xc2\xbd" as a number, CJK
    // letters running into Latin ones, an emoji, contractions.
    // clang-format off
    const int covered[] = {0,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 19, 23, 24, 25,
                           26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 44};
    // clang-format on
    for (int i : covered) {
        const std::vector<int> ids = tok.encode(inputs[i], false, false, false);
        EXPECT_EQ(ids_string(as_llama3(v, ids)), ids_string(expected[i]))
            << "input " << i << ": '" << printable(inputs[i]) << "'";
        EXPECT_EQ(detokenize(tok, ids), inputs[i]) << "input " << i;
    }
    // Parts of the long input 45 that start and end on word boundaries: the
    // digit runs and the contractions, upper case included.
    const std::string& long_input = inputs[45];
    for (const auto& [from, to] : {std::pair<std::string, std::string>{" 3 33", "3...3"},
                                   std::pair<std::string, std::string>{" I've", "a'lL"}}) {
        const size_t a = long_input.find(from), b = long_input.find(to);
        ASSERT_NE(a, std::string::npos);
        ASSERT_NE(b, std::string::npos);
        const std::string part = long_input.substr(a, b + to.size() - a);
        const std::vector<int> ids = as_llama3(v, tok.encode(part, false, false, false));
        EXPECT_NE(find_ids(expected[45], ids), std::string::npos)
            << "'" << printable(part) << "' gives" << ids_string(ids) << ", not a run of line 45";
        EXPECT_GT(ids.size(), 20u);
    }
}

// Splits checked by hand against the Llama 3 pattern
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// (and Python's `regex` module, Unicode 14): contractions in any case,
// digits of every script in threes, whitespace runs before newlines and
// words, letters of other scripts, combining marks (not letters).
TEST(Llama3PreTokenizer, SplitsCheckedByHand) {
    // clang-format off
    const std::pair<std::string, std::vector<std::string>> cases[] = {
        {"he'Sgood and I'M sure YOU'LL see it'D, don'T 'S 'sA",
         {"he", "'S", "good", " and", " I", "'M", " sure", " YOU", "'LL", " see", " it", "'D", ",", " don", "'T", " '", "S", " '", "sA"}},
        {"\xd9\xa3\xd9\xa4\xd9\xa5\xd9\xa6\xd9\xa7 \xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa2\xe2\x91\xa3 \xe2\x85\xab\xe2\x85\xaa \xef\xbc\x91\xef\xbc\x92\xef\xbc\x93\xef\xbc\x94\xef\xbc\x95 12345678 x1234y",
         {"\xd9\xa3\xd9\xa4\xd9\xa5", "\xd9\xa6\xd9\xa7", " ", "\xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa2", "\xe2\x91\xa3", " ", "\xe2\x85\xab\xe2\x85\xaa", " ", "\xef\xbc\x91\xef\xbc\x92\xef\xbc\x93", "\xef\xbc\x94\xef\xbc\x95", " ", "123", "456", "78", " x", "123", "4", "y"}},
        {"a\r\n\r\nb \n c  \n\n  d\t\t x   ",
         {"a", "\r\n\r\n", "b", " \n", " c", "  \n\n", " ", " d", "\t\t", " x", "   "}},
        {"\xc2\xa0\xc2\xa0x\xe2\x80\xa8y\xe3\x80\x80z",
         {"\xc2\xa0", "\xc2\xa0x", "\xe2\x80\xa8y", "\xe3\x80\x80z"}},
        {"\xc3\x80\xc3\x89\xc3\x8e\xc3\xb5\xc3\xbc \xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4 \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 e\xcc\x81",
         {"\xc3\x80\xc3\x89\xc3\x8e\xc3\xb5\xc3\xbc", " \xce\x95\xce\xbb\xce\xbb\xce\xb7\xce\xbd\xce\xb9\xce\xba\xce\xac", " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", " \xed\x95\x9c\xea\xb5\xad\xec\x96\xb4", " \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8", "\xe0\xa5\x8d\xe0\xa4\xa4", "\xe0\xa5\x87", " e", "\xcc\x81"}},
        {"x\xe2\x80\x8dy \xf0\x9f\x9a\x80\xf0\x9f\x9a\x80 $$$ ... ,,,\n\n!!",
         {"x", "\xe2\x80\x8dy", " \xf0\x9f\x9a\x80\xf0\x9f\x9a\x80", " $$$", " ...", " ,,,\n\n", "!!"}},
        {"\xc3\x84pfel",
         {"\xc3\x84pfel"}},
        {" this is \xf0\x9f\xa6\x99.cpp",
         {" this", " is", " \xf0\x9f\xa6\x99.", "cpp"}},
        {"\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe \xd0\xbd\xd0\xb0 \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8",
         {"\xd0\xbd\xd0\xb5\xd1\x89\xd0\xbe", " \xd0\xbd\xd0\xb0", " \xd0\x91\xd1\x8a\xd0\xbb\xd0\xb3\xd0\xb0\xd1\x80\xd1\x81\xd0\xba\xd0\xb8"}},
        {"\xe1\x9e\x80\xe1\x9e\xb6\xe1\x9e\x93\xe1\x9f\x8b\xe1\x9e\x8f\xe1\x9f\x82\xe1\x9e\x96\xe1\x9e\xb7\xe1\x9e\x9f\xe1\x9f\x81\xe1\x9e\x9f\xe1\x9e\xa2\xe1\x9e\xb6\xe1\x9e\x85\xe1\x9e\x81\xe1\x9e\x9b\xe1\x9e\x85\xe1\x9f\x81\xe1\x9e\x89",
         {"\xe1\x9e\x80", "\xe1\x9e\xb6\xe1\x9e\x93", "\xe1\x9f\x8b\xe1\x9e\x8f", "\xe1\x9f\x82\xe1\x9e\x96", "\xe1\x9e\xb7\xe1\x9e\x9f", "\xe1\x9f\x81\xe1\x9e\x9f\xe1\x9e\xa2", "\xe1\x9e\xb6\xe1\x9e\x85\xe1\x9e\x81\xe1\x9e\x9b\xe1\x9e\x85", "\xe1\x9f\x81\xe1\x9e\x89"}},
        {"C\xe1\xbb\xad" "a Vi\xe1\xbb\x87t",
         {"C\xe1\xbb\xad" "a", " Vi\xe1\xbb\x87t"}},
    };
    // clang-format on
    for (const auto& [text, words] : cases)
        EXPECT_EQ(pre_tokenize(PreTokenizer::llama3, text), words) << printable(text);
    // GPT-2's split differs where Llama 3 changed it.
    EXPECT_EQ(pre_tokenize(PreTokenizer::gpt2, "I'M 12345 a\n\nb"),
              (std::vector<std::string>{"I", "'", "M", " 12345", " a", "\n", "\n", "b"}));
    EXPECT_EQ(pre_tokenize(PreTokenizer::llama3, "I'M 12345 a\n\nb"),
              (std::vector<std::string>{"I", "'M", " ", "123", "45", " a", "\n\n", "b"}));
    // Qwen2's is Llama 3's with every digit alone.
    EXPECT_EQ(pre_tokenize(PreTokenizer::qwen2, "I'M 12345 a\n\nb"),
              (std::vector<std::string>{"I", "'M", " ", "1", "2", "3", "4", "5", " a", "\n\n", "b"}));
    for (const auto& [text, words] : cases) {
        bool digits = false;
        for (char ch : text) digits = digits || (ch >= '0' && ch <= '9');
        if (!digits) EXPECT_EQ(pre_tokenize(PreTokenizer::qwen2, text), words) << printable(text);
    }
}

TEST(Llama3Vocabulary, PreKeySelectsTheSplit) {
    const Llama3Vocab l3 = llama3_vocab("llama-bpe");
    const Llama3Vocab g2 = llama3_vocab("gpt-2");
    EXPECT_EQ(as_llama3(l3, tokenizer_from_bytes(l3.bytes).encode("333333", false, false)),
              (std::vector<int>{8765, 8765}));
    // One word under GPT-2's split; no merge joins 3s, so byte by byte.
    EXPECT_EQ(as_llama3(g2, tokenizer_from_bytes(g2.bytes).encode("333333", false, false)),
              (std::vector<int>{18, 18, 18, 18, 18, 18}));
    // Qwen2's split: every digit a word of its own, so no merge joins them.
    const Llama3Vocab q2 = llama3_vocab("qwen2");
    EXPECT_EQ(as_llama3(q2, tokenizer_from_bytes(q2.bytes).encode("333333", false, false)),
              (std::vector<int>{18, 18, 18, 18, 18, 18}));
    const Llama3Vocab unknown = llama3_vocab("deepseek-llm");
    try {
        tokenizer_from_bytes(unknown.bytes);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.pre 'deepseek-llm' is not supported"), std::string::npos)
            << e.what();
    }
}

TEST(Llama3Vocabulary, SpecialTokensBosAndEndOfGeneration) {
    const Llama3Vocab v = llama3_vocab();
    const Tokenizer tok = tokenizer_from_bytes(v.bytes);
    EXPECT_EQ(v.llama3_ids[tok.bos_id()], 128000);
    EXPECT_EQ(v.llama3_ids[tok.eos_id()], 128001);
    EXPECT_EQ(v.llama3_ids[tok.eot_id()], 128009);
    // Llama 3 begins a sequence with BOS.
    EXPECT_EQ(as_llama3(v, tok.encode("Hello", true, false)), (std::vector<int>{128000, 9906}));
    // Special-token text is a token only where asked for.
    EXPECT_EQ(as_llama3(v, tok.encode("Hello<|eot_id|>", false, false, true)), (std::vector<int>{9906, 128009}));
    const std::vector<int> spelled = as_llama3(v, tok.encode("Hello<|eot_id|>", false, false, false));
    EXPECT_EQ(std::count(spelled.begin(), spelled.end(), 128009), 0);
    EXPECT_EQ(detokenize(tok, tok.encode("Hello<|eot_id|>", false, false, false)), "Hello<|eot_id|>");
    // A template's text may hold specials, a user's may not.
    const std::vector<int> mixed =
        as_llama3(v, tok.encode({{"<|eot_id|>", true}, {"Hello<|eot_id|>", false}}, false, false));
    EXPECT_EQ(mixed.front(), 128009);
    EXPECT_EQ(std::count(mixed.begin(), mixed.end(), 128009), 1);
    // Generation ends at EOS and EOT, never at ordinary tokens; control
    // tokens print nothing.
    EXPECT_TRUE(tok.ends_generation(tok.eos_id()));
    EXPECT_TRUE(tok.ends_generation(tok.eot_id()));
    EXPECT_FALSE(tok.ends_generation(tok.token_id(byte_level(" Hello"))));
    EXPECT_EQ(tok.decode(0, tok.eot_id()), "");
}

// The classes the split patterns use, where ASCII rules would go wrong.
TEST(UnicodeClasses, LettersNumbersAndWhitespaceBeyondAscii) {
    using namespace unicode;
    for (uint32_t cp : {0xC4u, 0x436u, 0x4E2Du, 0xD55Cu, 0x1EA1u, 0x10400u, 0x2A6D6u})  // Ä ж 中 한 ạ 𐐀 𪛖
        EXPECT_EQ(flags(cp), kLetter) << std::hex << cp;
    for (uint32_t cp : {0xBDu, 0x663u, 0x2460u, 0x216Bu, 0xFF11u, 0x1D7CEu})  // ½ ٣ ① Ⅻ １ 𝟎
        EXPECT_EQ(flags(cp), kNumber) << std::hex << cp;
    for (uint32_t cp : {0xA0u, 0x1680u, 0x2028u, 0x3000u, 0x85u}) EXPECT_EQ(flags(cp), kWhitespace) << std::hex << cp;
    // Marks, joiners, symbols, punctuation, emoji, unassigned: none of them.
    for (uint32_t cp : {0x301u, 0x94Du, 0x200Du, 0xFF5Eu, 0x3002u, 0x1F600u, 0x378u, 0x10FFFFu})
        EXPECT_EQ(flags(cp), 0) << std::hex << cp;
}

// An spm vocabulary's ids, flags and byte fallback come from its keys.
TEST(SpmVocabulary, KeysAndByteFallback) {
    const VocabFile file(vocab_path("ggml-vocab-llama-spm.gguf"));
    const Tokenizer tok = tokenizer_from_gguf(file.gguf);
    EXPECT_EQ(tok.bos_id(), 1);
    EXPECT_EQ(tok.eos_id(), 2);
    EXPECT_TRUE(tok.ends_generation(2));
    EXPECT_EQ(tok.encode("Hello world", true, false), (std::vector<int>{1, 15043, 3186}));
    // U+1F600 is no piece: its bytes are, after the dummy-prefix space.
    EXPECT_EQ(tok.encode("\xf0\x9f\x98\x80", false, false), (std::vector<int>{29871, 243, 162, 155, 131}));
    EXPECT_EQ(detokenize(tok, {29871, 243, 162, 155, 131}), " \xf0\x9f\x98\x80");
    EXPECT_EQ(tok.decode(1, 15043), "Hello") << "the first word after BOS loses its dummy-prefix space";
    // The same vocabulary without SentencePiece's dummy prefix.
    GgufWriter w;
    for (const GgufKV& kv : file.gguf.metadata) w.add_value(std::string(kv.key), kv.value);
    w.add_bool("tokenizer.ggml.add_space_prefix", false);
    const Tokenizer bare = tokenizer_from_bytes(w.to_bytes());
    EXPECT_EQ(bare.encode("Hello world", false, false), (std::vector<int>{10994, 3186}));
}

}  // namespace
}  // namespace ferry
