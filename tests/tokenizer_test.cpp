// llama2.c tokenizer.bin vocabularies (tok512.bin of stories260K, the 32000
// Llama 2 tokenizer.bin): encodings known from elsewhere, round trips, byte
// fallback, run.c's decode rules, and hostile files.
#include <gtest/gtest.h>

#include <cstring>

#include "common/error.h"
#include "common/tokenizer.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

const Tokenizer& tok512() {
    static const Tokenizer t = Tokenizer::load_llama2c(test::model_path("tok512.bin"), 512);
    return t;
}

const Tokenizer& llama2() {
    static const Tokenizer t = Tokenizer::load_llama2c(test::model_path("tokenizer.bin"), 32000);
    return t;
}

// What run.c prints for ids[1..]: each piece decoded after its predecessor.
std::string decode_all(const Tokenizer& t, const std::vector<int>& ids) {
    std::string s;
    for (size_t i = 1; i < ids.size(); ++i) s += t.decode(ids[i - 1], ids[i]);
    return s;
}

std::vector<int> reference_ids(const std::string& name) {
    std::vector<int> ids;
    const std::string text = test::read_file(test::reference_path(name));
    size_t at = 0;
    while (at < text.size()) {
        size_t used = 0;
        ids.push_back(std::stoi(text.substr(at), &used));
        at += used;
        while (at < text.size() && (text[at] == ' ' || text[at] == '\n')) ++at;
    }
    return ids;
}

TEST(Tokenizer, PromptMatchesRunCReferenceIds) {
    // run.c's token stream for -i "Once upon a time" starts with BOS and the prompt.
    const std::vector<int> ref = reference_ids("stories260K.greedy.ids.txt");
    const std::vector<int> ids = tok512().encode("Once upon a time", true, false);
    ASSERT_GE(ids.size(), 3u);
    ASSERT_LT(ids.size(), ref.size());
    EXPECT_EQ(ids, std::vector<int>(ref.begin(), ref.begin() + static_cast<std::ptrdiff_t>(ids.size())));
    EXPECT_EQ(decode_all(tok512(), ids), "Once upon a time");
}

TEST(Tokenizer, KnownLlama2Encodings) {
    // SentencePiece's own output for the Llama 2 tokenizer.
    EXPECT_EQ(llama2().encode("Hello world", true, false), (std::vector<int>{1, 15043, 3186}));
    EXPECT_EQ(llama2().encode("Once upon a time", true, false), (std::vector<int>{1, 9038, 2501, 263, 931}));
    EXPECT_EQ(llama2().encode("I believe the meaning of life is", true, false),
              (std::vector<int>{1, 306, 4658, 278, 6593, 310, 2834, 338}));
    EXPECT_EQ(llama2().encode("Hello world", true, true), (std::vector<int>{1, 15043, 3186, 2}));
    EXPECT_EQ(llama2().encode("Hello world", false, false), (std::vector<int>{15043, 3186}));
}

TEST(Tokenizer, EmptyPromptIsJustBos) {
    EXPECT_EQ(tok512().encode("", true, false), std::vector<int>{1});
    EXPECT_EQ(llama2().encode("", true, false), std::vector<int>{1});
}

TEST(Tokenizer, RoundTrips) {
    const char* texts[] = {
        "Once upon a time, there was a little girl named Lily.",
        "  two leading spaces and trailing ones  ",
        "Line one.\nLine two,\ttabbed; digits 0123456789 and symbols !@#$%^&*()[]{}<>?/\\|~`'\"",
        "caf\xc3\xa9 na\xc3\xafve \xc3\x85ngstr\xc3\xb6m",                         // accented Latin
        "\xe4\xb8\xad\xe6\x96\x87 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",            // CJK
        "emoji \xf0\x9f\x98\x80 and \xf0\x9f\x9a\x80!",                             // 4-byte code points
        "x",
    };
    for (const Tokenizer* t : {&tok512(), &llama2()}) {
        for (const char* text : texts) {
            const std::vector<int> ids = t->encode(text, true, false);
            ASSERT_EQ(ids[0], 1);
            for (int id : ids) ASSERT_TRUE(id >= 0 && id < t->vocab_size()) << text;
            EXPECT_EQ(decode_all(*t, ids), text) << "vocab " << t->vocab_size();
        }
    }
}

TEST(Tokenizer, ByteFallbackForCodePointsNotInTheVocabulary) {
    // U+1F600 (F0 9F 98 80) is in neither vocabulary; U+4E2D (E4 B8 AD) is not in tok512.
    // Byte b is token b + 3 (after <unk>, <s>, </s>), after the dummy-prefix space.
    const int space512 = tok512().token_id(" ");
    ASSERT_GE(space512, 0);
    EXPECT_EQ(tok512().encode("\xf0\x9f\x98\x80", true, false),
              (std::vector<int>{1, space512, 0xF0 + 3, 0x9F + 3, 0x98 + 3, 0x80 + 3}));
    EXPECT_EQ(tok512().encode("\xe4\xb8\xad", true, false),
              (std::vector<int>{1, space512, 0xE4 + 3, 0xB8 + 3, 0xAD + 3}));
    EXPECT_EQ(llama2().encode("\xf0\x9f\x98\x80", true, false), (std::vector<int>{1, 29871, 243, 162, 155, 131}));
    // The Llama 2 vocabulary has U+4E2D as a piece of its own.
    EXPECT_EQ(llama2().encode("\xe4\xb8\xad", true, false), (std::vector<int>{1, 29871, 30275}));
    // A lone invalid byte (not UTF-8) still encodes, as its byte token.
    const std::vector<int> ids = tok512().encode("a\xff", true, false);
    EXPECT_EQ(ids.back(), 0xFF + 3);
    EXPECT_EQ(decode_all(tok512(), ids), "a\xff");
}

// A llama2.c vocabulary too small to hold the 256 byte tokens (ferry synth
// --vocab 64 --tokenizer-out writes one) refuses text it would need them for,
// in one line, instead of emitting ids past its end.
TEST(Tokenizer, ByteFallbackWithoutByteTokensIsAClearError) {
    test::TempDir dir;
    const auto r = test::run_command({test::ferry_bin(), "synth", dir.file("m.bin"), "--dim", "16", "--hidden-dim", "32",
                                      "--layers", "1", "--heads", "2", "--vocab", "64", "--seq-len", "16",
                                      "--tokenizer-out", dir.file("tok.bin"), "-q"},
                                     30);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Tokenizer t = Tokenizer::load_llama2c(dir.file("tok.bin"), 64);
    try {
        t.encode("\xf0\x9f\x98\x80", true, false);
        FAIL() << "encoded bytes the vocabulary has no tokens for";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("byte 0xF0"), std::string::npos) << msg;
        EXPECT_NE(msg.find("64 pieces"), std::string::npos) << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
    const auto run = test::run_command({test::ferry_bin(), "run", dir.file("m.bin"), "-z", dir.file("tok.bin"), "-i",
                                        "\xf0\x9f\x98\x80", "-n", "4"},
                                       30);
    EXPECT_NE(run.exit_code, 0);
    EXPECT_NE(run.err.find("no byte tokens"), std::string::npos) << run.err;
}

// Another model's tokenizer (the 32000-piece tokenizer.bin for the 512-token
// stories260K) is refused with the fix; --force-tokenizer reads it as run.c
// does, with a warning.
TEST(Tokenizer, AForeignTokenizerFileIsRefusedUnlessForced) {
    const std::string model = test::model_path("stories260K.bin");
    const std::vector<std::string> run = {test::ferry_bin(), "run", model, "-z", test::model_path("tokenizer.bin"),
                                          "-n", "4", "-t", "0"};
    const auto foreign = test::run_command(run, 30);
    EXPECT_EQ(foreign.exit_code, 1) << foreign.err;
    EXPECT_NE(foreign.err.find("another model's tokenizer"), std::string::npos) << foreign.err;
    EXPECT_NE(foreign.err.find("--force-tokenizer"), std::string::npos) << foreign.err;
    std::vector<std::string> forced = run;
    forced.push_back("--force-tokenizer");
    const auto f = test::run_command(forced, 30);
    EXPECT_EQ(f.exit_code, 0) << f.err;
    EXPECT_NE(f.err.find("is this the model's tokenizer?"), std::string::npos) << f.err;
    const auto own = test::run_command(
        {test::ferry_bin(), "run", model, "-z", test::model_path("tok512.bin"), "-n", "4", "-t", "0"}, 30);
    EXPECT_EQ(own.exit_code, 0) << own.err;
    EXPECT_EQ(own.err.find("is this the model's tokenizer?"), std::string::npos) << own.err;
}

TEST(Tokenizer, ByteTokensDecodeToTheirByte) {
    for (const Tokenizer* t : {&tok512(), &llama2()}) {
        for (int b = 0; b < 256; ++b) {
            char piece[8];
            std::snprintf(piece, sizeof piece, "<0x%02X>", b);
            ASSERT_EQ(t->piece(b + 3), piece);
            EXPECT_EQ(t->decode(5, b + 3), std::string(1, static_cast<char>(b))) << piece;
            EXPECT_EQ(t->decode(1, b + 3), std::string(1, static_cast<char>(b))) << "after BOS too: " << piece;
        }
    }
}

TEST(Tokenizer, LeadingSpaceIsStrippedOnlyAfterBos) {
    const int once = llama2().token_id(" Once");
    ASSERT_EQ(once, 9038);
    EXPECT_EQ(llama2().decode(1, once), "Once");
    EXPECT_EQ(llama2().decode(263, once), " Once");
    EXPECT_EQ(tok512().decode(1, 403), "Once");
    EXPECT_EQ(tok512().decode(378, 403), " Once");
    // A piece without a leading space is unchanged after BOS.
    const int he = tok512().token_id("he");
    ASSERT_GE(he, 0);
    EXPECT_EQ(tok512().decode(1, he), "he");
}

TEST(Tokenizer, PrintableFilterIsRunCSafePrintf) {
    EXPECT_FALSE(Tokenizer::printable(""));
    EXPECT_FALSE(Tokenizer::printable(std::string(1, '\x01')));
    EXPECT_FALSE(Tokenizer::printable(std::string(1, '\x7f')));
    EXPECT_FALSE(Tokenizer::printable(std::string(1, '\x80')));  // half of a code point alone
    EXPECT_TRUE(Tokenizer::printable("a"));
    EXPECT_TRUE(Tokenizer::printable("\n"));
    EXPECT_TRUE(Tokenizer::printable(" "));
    EXPECT_TRUE(Tokenizer::printable("\x01\x02"));  // only single bytes are filtered
    EXPECT_TRUE(Tokenizer::printable("\xc3\xa9"));
}

// ---------------------------------------------------------------------------
// Hostile files.

struct TokenizerFile {
    std::string bytes;
    void i32(int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); }
    void f32(float v) { bytes.append(reinterpret_cast<const char*>(&v), 4); }
    void token(float score, const std::string& piece) {
        f32(score);
        i32(static_cast<int32_t>(piece.size()));
        bytes += piece;
    }
};

void expect_error(const std::string& path, int vocab, const std::string& says) {
    try {
        Tokenizer::load_llama2c(path, vocab);
        FAIL() << path << " loaded";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find(says), std::string::npos) << "missing '" << says << "' in: " << msg;
        EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
}

TEST(TokenizerFiles, HostileFilesAreRejected) {
    test::TempDir dir;
    const std::string path = dir.file("tok.bin");
    auto with = [&](const std::string& bytes) {
        test::write_file(path, bytes);
        return path;
    };
    TokenizerFile good;
    good.i32(8);
    for (int i = 0; i < 4; ++i) good.token(-static_cast<float>(i), "tok" + std::to_string(i));
    ASSERT_EQ(Tokenizer::load_llama2c(with(good.bytes), 4).piece(3), "tok3");

    expect_error(with(""), 4, "too short");
    expect_error(with("ab"), 4, "too short");
    expect_error(with(good.bytes), 5, "truncated at token 4");  // fewer tokens than the model's vocabulary
    expect_error(with(good.bytes.substr(0, good.bytes.size() - 2)), 4, "past the end");
    expect_error(with(good.bytes.substr(0, 10)), 4, "truncated at token 0");

    TokenizerFile negative;
    negative.i32(8);
    negative.token(0, "a");
    negative.f32(0);
    negative.i32(-7);
    expect_error(with(negative.bytes), 2, "length -7");

    TokenizerFile past_eof;
    past_eof.i32(8);
    past_eof.f32(0);
    past_eof.i32(1 << 30);
    past_eof.bytes += "abc";
    expect_error(with(past_eof.bytes), 1, "past the end");

    expect_error(dir.file("missing.bin"), 4, "cannot open");
    expect_error(dir.path(), 4, "not a regular file");
    // Every truncation of a real tokenizer is an error, never a crash.
    const std::string real = test::read_file(test::model_path("tok512.bin"));
    for (size_t len = 0; len < real.size(); len += 97) EXPECT_THROW(Tokenizer::load_llama2c(with(real.substr(0, len)), 512), Error);
}

}  // namespace
}  // namespace ferry
