#include "common/tokenizer.h"

#include <cctype>
#include <cstdio>
#include <cstring>

#include "common/error.h"
#include "common/mapped_file.h"

namespace ferry {

Tokenizer Tokenizer::load_llama2c(const std::string& path, int vocab_size) {
    MappedFile f(path);
    const uint8_t* p = f.data();
    const uint64_t size = f.size();
    uint64_t at = 4;  // max_token_length: not needed, pieces carry their lengths
    if (size < 4) throw Error(path + ": too short for a tokenizer (" + std::to_string(size) + " bytes)");
    Tokenizer t;
    t.pieces_.reserve(vocab_size);
    t.scores_.reserve(vocab_size);
    for (int i = 0; i < vocab_size; ++i) {
        if (size - at < 8)
            throw Error(path + ": truncated at token " + std::to_string(i) + " of " + std::to_string(vocab_size) +
                        " (does the tokenizer belong to this model?)");
        float score;
        int32_t len;
        std::memcpy(&score, p + at, 4);
        std::memcpy(&len, p + at + 4, 4);
        at += 8;
        if (len < 0 || static_cast<uint64_t>(len) > size - at)
            throw Error(path + ": token " + std::to_string(i) + " has length " + std::to_string(len) +
                        ", past the end of the file");
        t.pieces_.emplace_back(reinterpret_cast<const char*>(p + at), static_cast<size_t>(len));
        t.scores_.push_back(score);
        at += static_cast<uint64_t>(len);
    }
    t.index();
    return t;
}

Tokenizer::Tokenizer(std::vector<std::string> pieces, std::vector<float> scores, int bos_id, int eos_id)
    : pieces_(std::move(pieces)), scores_(std::move(scores)), bos_id_(bos_id), eos_id_(eos_id) {
    index();
}

void Tokenizer::index() {
    ids_.reserve(pieces_.size());
    // First occurrence wins, as run.c's bsearch over a sorted copy would find
    // some duplicate; vocabularies have none in practice.
    for (size_t i = 0; i < pieces_.size(); ++i) ids_.emplace(pieces_[i], static_cast<int>(i));
}

int Tokenizer::lookup(const std::string& s) const {
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
}

std::vector<int> Tokenizer::encode(const std::string& text, bool bos, bool eos) const {
    std::vector<int> tokens;
    if (bos) tokens.push_back(bos_id_);
    // SentencePiece's add_dummy_prefix: a space before non-empty text.
    if (!text.empty()) {
        const int space = lookup(" ");
        if (space >= 0) tokens.push_back(space);
    }
    // One token per UTF-8 code point if it is in the vocabulary, else its bytes (+3: after <unk>, <s>, </s>).
    std::string cp;
    for (size_t i = 0; i < text.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(text[i]);
        if ((c & 0xC0) != 0x80) cp.clear();
        cp.push_back(static_cast<char>(c));
        const bool next_continues = i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0) == 0x80;
        if (next_continues && cp.size() < 4) continue;
        const int id = lookup(cp);
        if (id >= 0) {
            tokens.push_back(id);
        } else {
            for (unsigned char b : cp) tokens.push_back(b + 3);
        }
        cp.clear();
    }
    // Merge the best-scoring adjacent pair until no pair is a token. Like run.c,
    // BOS takes part (its piece never merges in practice).
    for (;;) {
        float best_score = -1e10f;
        int best_id = -1;
        size_t best_at = 0;
        for (size_t i = 0; i + 1 < tokens.size(); ++i) {
            const int id = lookup(pieces_[tokens[i]] + pieces_[tokens[i + 1]]);
            if (id >= 0 && scores_[id] > best_score) {
                best_score = scores_[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_id < 0) break;
        tokens[best_at] = best_id;
        tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
    if (eos) tokens.push_back(eos_id_);
    return tokens;
}

std::string Tokenizer::decode(int prev, int token) const {
    if (token < 0 || token >= vocab_size()) return "";
    const std::string& piece = pieces_[token];
    size_t start = 0;
    if (prev == bos_id_ && !piece.empty() && piece[0] == ' ') start = 1;
    unsigned int byte;
    // run.c: sscanf(piece, "<0x%02hhX>", &byte) == 1
    if (piece.size() - start >= 4 && piece.compare(start, 3, "<0x") == 0 &&
        std::sscanf(piece.c_str() + start, "<0x%02X>", &byte) == 1)
        return std::string(1, static_cast<char>(byte & 0xFF));
    return piece.substr(start);
}

bool Tokenizer::printable(const std::string& piece) {
    if (piece.empty()) return false;
    if (piece.size() == 1) {
        const unsigned char b = static_cast<unsigned char>(piece[0]);
        return std::isprint(b) || std::isspace(b);
    }
    return true;
}

}  // namespace ferry
