// Text <-> token ids, for three kinds of vocabulary:
//  * llama2c: llama2.c's tokenizer.bin, encoded and decoded exactly as run.c
//    does (merge the best-scoring pair until none is a token; byte fallback
//    <0xNN>; strip the leading space after BOS; stop only at BOS);
//  * spm: a GGUF "llama" vocabulary (SentencePiece pieces with U+2581 for
//    space, scores, token types), encoded as llama.cpp's SPM tokenizer does;
//  * bpe: a GGUF "gpt2" vocabulary (byte-level BPE with ranked merges and a
//    pre-tokenizer split such as GPT-2's or Llama 3's), as llama.cpp does it.
// GGUF vocabularies stop generation at their end-of-generation tokens.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ferry {

class GgufFile;

// GGUF's tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
    undefined = 0,
    normal = 1,
    unknown = 2,
    control = 3,
    user_defined = 4,
    unused = 5,
    byte = 6,
};

enum class TokenizerKind { llama2c, spm, bpe };

// How text is cut into words before BPE merges (llama.cpp's pre-tokenizer types).
enum class PreTokenizer {
    gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
    llama3,  // case-insensitive contractions, [^\r\n\p{L}\p{N}]?\p{L}+, \p{N}{1,3}, ...
    smollm,  // every digit alone, then gpt2
    qwen2,   // llama3's, but every digit alone (\p{N}, not \p{N}{1,3}): Qwen2.5 and Qwen3
};

// The words `pre` cuts UTF-8 text into before byte-level BPE merges them:
// llama.cpp's hand-written equivalents of the split regexes.
std::vector<std::string> pre_tokenize(PreTokenizer pre, const std::string& text);

// Everything a tokenizer is made of, as a file stores it.
struct Vocabulary {
    TokenizerKind kind = TokenizerKind::spm;
    std::vector<std::string> pieces;
    std::vector<float> scores;        // spm / llama2c; empty = all 0
    std::vector<TokenType> types;     // empty = all normal
    std::vector<std::string> merges;  // bpe: "left right", best first
    PreTokenizer pre = PreTokenizer::gpt2;
    int bos = -1, eos = -1, eot = -1, eom = -1, unk = -1;
    bool add_bos = false;
    bool add_eos = false;
    bool add_space_prefix = true;  // spm: SentencePiece's dummy prefix
};

// A stretch of text to encode; `special`: text like "<|eot_id|>" in it
// becomes that control token (a chat template's own text), else it is
// spelled out (what a user typed).
struct TextPiece {
    std::string text;
    bool special = false;
};

class Tokenizer {
public:
    // Reads llama2.c's tokenizer.bin (int32 max_token_length, then per token
    // f32 score, int32 length, bytes). Throws ferry::Error naming the file,
    // also when it holds more than vocab_size pieces (another model's
    // tokenizer) unless allow_more (then a warning, and run.c's reading).
    static Tokenizer load_llama2c(const std::string& path, int vocab_size, bool allow_more = false);
    // Throws ferry::Error if the vocabulary is inconsistent (ids out of range, ...).
    explicit Tokenizer(Vocabulary vocab);

    TokenizerKind kind() const { return v_.kind; }
    const Vocabulary& vocabulary() const { return v_; }
    int vocab_size() const { return static_cast<int>(v_.pieces.size()); }
    int bos_id() const { return v_.bos; }
    int eos_id() const { return v_.eos; }
    int eot_id() const { return v_.eot; }
    // True if sampling `id` ends generation: BOS (run.c's rule, the only one
    // for llama2.c vocabularies), and for GGUF vocabularies also EOS, EOT,
    // EOM and the control tokens named like them (<|eot_id|>, <|im_end|>, ...).
    bool ends_generation(int id) const;
    const std::string& piece(int id) const { return v_.pieces[id]; }
    TokenType type(int id) const { return v_.types.empty() ? TokenType::normal : v_.types[id]; }
    // -1 if no token has exactly this text.
    int token_id(const std::string& piece) const;

    // bos: begin a sequence (BOS where the vocabulary uses one, and always
    // some first token when the text is empty); eos: end with EOS where the
    // vocabulary wants it. parse_special: text like "<|eot_id|>" becomes that
    // control token instead of being spelled out.
    std::vector<int> encode(const std::string& text, bool bos, bool eos, bool parse_special = false) const;
    // The pieces encoded as one text (ordinary text flows across piece
    // boundaries), with special tokens taken only from the `special` pieces.
    std::vector<int> encode(const std::vector<TextPiece>& pieces, bool bos, bool eos) const;
    // The text of `token` following `prev`: strips the leading space after
    // BOS (spm, llama2c), turns byte tokens into the raw byte, control tokens
    // into nothing.
    std::string decode(int prev, int token) const;
    // run.c's safe_printf filter: empty pieces and lone unprintable bytes print nothing.
    static bool printable(const std::string& piece);

private:
    void index();
    int lookup(const std::string& s) const;
    void encode_llama2c(const std::string& text, std::vector<int>& out) const;
    void encode_spm(const std::string& text, std::vector<int>& out) const;
    void encode_bpe(const std::string& text, std::vector<int>& out) const;
    int byte_token(uint8_t b) const;
    int merge_rank(const std::string& left, const std::string& right) const;

    Vocabulary v_;
    std::unordered_map<std::string, int> ids_;
    std::unordered_map<std::string, int> ranks_;  // bpe: "left right" -> rank
    std::vector<int> specials_;                   // tokens matched in text before splitting, longest first
    std::vector<int> end_ids_;
};

}  // namespace ferry
