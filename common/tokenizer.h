// SentencePiece-style BPE over llama2.c's tokenizer.bin: encode merges the
// highest-scoring adjacent pair until none is in the vocabulary; decode maps
// ids to pieces with byte fallback (<0xNN>) and run.c's leading-space rule.
#pragma once
#include <string>
#include <unordered_map>
#include <vector>

namespace ferry {

class Tokenizer {
public:
    // Reads llama2.c's tokenizer.bin (int32 max_token_length, then per token
    // f32 score, int32 length, bytes). Throws ferry::Error naming the file.
    static Tokenizer load_llama2c(const std::string& path, int vocab_size);
    // From pieces and scores already read (GGUF).
    Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, int bos_id, int eos_id);

    int vocab_size() const { return static_cast<int>(pieces_.size()); }
    int bos_id() const { return bos_id_; }
    int eos_id() const { return eos_id_; }
    // True if sampling `id` ends generation. llama2.c's run.c stops only at
    // BOS (its tokenizer.bin files carry no end-of-generation marks).
    bool ends_generation(int id) const { return id == bos_id_; }
    const std::string& piece(int id) const { return pieces_[id]; }

    // BOS (if bos), a dummy-prefix space for non-empty text, then merged BPE.
    std::vector<int> encode(const std::string& text, bool bos, bool eos) const;
    // The text of `token` following `prev`: strips the leading space after
    // BOS and turns <0xNN> into the raw byte, as run.c's decode does.
    std::string decode(int prev, int token) const;
    // run.c's safe_printf filter: empty pieces and lone unprintable bytes print nothing.
    static bool printable(const std::string& piece);

private:
    Tokenizer() = default;
    void index();
    int lookup(const std::string& s) const;

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::unordered_map<std::string, int> ids_;
    int bos_id_ = 1;
    int eos_id_ = 2;
};

}  // namespace ferry
