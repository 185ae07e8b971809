#include "common/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/mapped_file.h"
#include "common/tokenizer_unicode.h"

namespace ferry {

namespace {
const char* const kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's stand-in for a space

std::string spaces_from_pieces(const std::string& piece) {
    std::string out;
    for (size_t i = 0; i < piece.size();) {
        if (piece.compare(i, 3, kSpace) == 0) {
            out += ' ';
            i += 3;
        } else {
            out += piece[i++];
        }
    }
    return out;
}

// "<0xNN>" -> NN, else -1 (run.c's sscanf("<0x%02hhX>") accepts the same).
int parse_byte_piece(const std::string& p, size_t start) {
    unsigned int byte;
    if (p.size() - start >= 4 && p.compare(start, 3, "<0x") == 0 &&
        std::sscanf(p.c_str() + start, "<0x%02X>", &byte) == 1)
        return static_cast<int>(byte & 0xFF);
    return -1;
}

// The control-token texts llama.cpp also treats as end of generation.
bool named_like_end(const std::string& s) {
    static const char* const kNames[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",  "<|endoftext|>",
                                         "<|eom_id|>", "<EOT>",      "_<EOT>",  "<|end_of_text|>"};
    for (const char* n : kNames)
        if (s == n) return true;
    return false;
}
}  // namespace

Tokenizer Tokenizer::load_llama2c(const std::string& path, int vocab_size, bool allow_more) {
    MappedFile f(path);
    const uint8_t* p = f.data();
    const uint64_t size = f.size();
    uint64_t at = 4;  // max_token_length: not needed, pieces carry their lengths
    if (size < 4) throw Error(path + ": too short for a tokenizer (" + std::to_string(size) + " bytes)");
    Vocabulary v;
    v.kind = TokenizerKind::llama2c;
    v.pieces.reserve(vocab_size);
    v.scores.reserve(vocab_size);
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
        v.pieces.emplace_back(reinterpret_cast<const char*>(p + at), static_cast<size_t>(len));
        v.scores.push_back(score);
        at += static_cast<uint64_t>(len);
    }
    // run.c reads vocab_size pieces and ignores the rest; so does ferry, but a
    // file with more is likely another model's tokenizer (tokenizer.bin for a
    // tok512 model): the text would be nonsense, so say so.
    if (at < size && !allow_more)
        throw Error(path + ": " + std::to_string(size - at) + " bytes after the " + std::to_string(vocab_size) +
                    " pieces the model's vocabulary needs: it is another model's tokenizer, and its text would be "
                    "nonsense; give the model's own with -z, or --force-tokenizer to read its first " +
                    std::to_string(vocab_size) + " pieces as run.c does");
    if (at < size)
        spdlog::warn("{}: {} bytes after the {} pieces the model's vocabulary needs: is this the model's tokenizer?",
                     path, size - at, vocab_size);
    // run.c hard-codes these.
    v.bos = vocab_size > 1 ? 1 : -1;
    v.eos = vocab_size > 2 ? 2 : -1;
    v.add_bos = true;
    return Tokenizer(std::move(v));
}

Tokenizer::Tokenizer(Vocabulary vocab) : v_(std::move(vocab)) {
    const int n = vocab_size();
    if (n == 0) throw Error("the vocabulary is empty");
    if (!v_.scores.empty() && static_cast<int>(v_.scores.size()) != n)
        throw Error("the vocabulary has " + std::to_string(n) + " tokens but " + std::to_string(v_.scores.size()) +
                    " scores");
    if (!v_.types.empty() && static_cast<int>(v_.types.size()) != n)
        throw Error("the vocabulary has " + std::to_string(n) + " tokens but " + std::to_string(v_.types.size()) +
                    " token types");
    for (int* id : {&v_.bos, &v_.eos, &v_.eot, &v_.eom, &v_.unk})
        if (*id >= n) *id = -1;  // llama.cpp ignores ids outside the vocabulary too
    if (v_.kind != TokenizerKind::llama2c && v_.bos < 0 && v_.add_bos)
        throw Error("the vocabulary asks for a BOS token but has none");
    index();
}

void Tokenizer::index() {
    ids_.reserve(v_.pieces.size());
    // First occurrence wins, as run.c's bsearch over a sorted copy would find
    // some duplicate; vocabularies have none in practice.
    for (size_t i = 0; i < v_.pieces.size(); ++i) ids_.emplace(v_.pieces[i], static_cast<int>(i));
    for (size_t r = 0; r < v_.merges.size(); ++r) ranks_.emplace(v_.merges[r], static_cast<int>(r));
    if (v_.kind == TokenizerKind::llama2c) {
        if (v_.bos >= 0) end_ids_.push_back(v_.bos);
        return;
    }
    for (int id = 0; id < vocab_size(); ++id) {
        const TokenType t = type(id);
        if (t == TokenType::control || t == TokenType::user_defined || t == TokenType::unknown)
            if (!v_.pieces[id].empty()) specials_.push_back(id);
        if (t == TokenType::control && named_like_end(v_.pieces[id])) end_ids_.push_back(id);
    }
    std::stable_sort(specials_.begin(), specials_.end(),
                     [&](int a, int b) { return v_.pieces[a].size() > v_.pieces[b].size(); });
    for (int id : {v_.bos, v_.eos, v_.eot, v_.eom})
        if (id >= 0) end_ids_.push_back(id);
}

int Tokenizer::lookup(const std::string& s) const {
    auto it = ids_.find(s);
    return it == ids_.end() ? -1 : it->second;
}

int Tokenizer::token_id(const std::string& piece) const { return lookup(piece); }

bool Tokenizer::ends_generation(int id) const {
    return std::find(end_ids_.begin(), end_ids_.end(), id) != end_ids_.end();
}

int Tokenizer::merge_rank(const std::string& left, const std::string& right) const {
    auto it = ranks_.find(left + " " + right);
    return it == ranks_.end() ? -1 : it->second;
}

int Tokenizer::byte_token(uint8_t b) const {
    if (v_.kind == TokenizerKind::bpe) return lookup(unicode::byte_piece(b));
    static const char* const kHex = "0123456789ABCDEF";
    const char name[7] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>', 0};
    int id = lookup(name);
    if (id < 0) id = lookup(std::string(1, static_cast<char>(b)));
    if (id < 0) id = v_.unk;
    // An id of -1 would reach the embedding lookup as a token.
    if (id < 0)
        throw Error(std::string("tokenizer: the text needs byte ") + name +
                    ", and this vocabulary has neither that byte token nor an unknown token "
                    "(tokenizer.ggml.unknown_token_id) to stand in for it");
    return id;
}

void Tokenizer::encode_llama2c(const std::string& text, std::vector<int>& tokens) const {
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
            for (unsigned char b : cp) {
                if (b + 3 >= vocab_size()) {
                    char hex[8];
                    std::snprintf(hex, sizeof hex, "0x%02X", b);
                    throw Error(std::string("tokenizer: the text needs byte ") + hex + " but this vocabulary of " +
                                std::to_string(vocab_size()) +
                                " pieces has no byte tokens (run.c's fallback needs 259); use the model's own tokenizer");
                }
                tokens.push_back(b + 3);
            }
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
            const int id = lookup(v_.pieces[tokens[i]] + v_.pieces[tokens[i + 1]]);
            if (id >= 0 && v_.scores[id] > best_score) {
                best_score = v_.scores[id];
                best_id = id;
                best_at = i;
            }
        }
        if (best_id < 0) break;
        tokens[best_at] = best_id;
        tokens.erase(tokens.begin() + static_cast<std::ptrdiff_t>(best_at) + 1);
    }
}

std::vector<int> Tokenizer::encode(const std::string& text, bool bos, bool eos, bool parse_special) const {
    return encode(std::vector<TextPiece>{{text, parse_special}}, bos, eos);
}

std::vector<int> Tokenizer::encode(const std::vector<TextPiece>& pieces, bool bos, bool eos) const {
    std::vector<int> tokens;
    if (v_.kind == TokenizerKind::llama2c) {
        std::string text;
        for (const TextPiece& p : pieces) text += p.text;
        if (bos && v_.bos >= 0) tokens.push_back(v_.bos);
        encode_llama2c(text, tokens);
        if (eos && v_.eos >= 0) tokens.push_back(v_.eos);
        return tokens;
    }
    if (bos && v_.add_bos) tokens.push_back(v_.bos);

    // Special tokens are cut out of the text first (user-defined ones always,
    // control ones only from special pieces), as llama.cpp does, longest
    // first; the ordinary text around them is then encoded stretch by stretch.
    struct Fragment {
        int token;  // -1: text
        std::string text;
    };
    std::vector<Fragment> fragments;
    for (const TextPiece& piece : pieces) {
        std::vector<Fragment> cut;
        if (!piece.text.empty()) cut.push_back({-1, piece.text});
        for (int id : specials_) {
            if (!piece.special && type(id) != TokenType::user_defined) continue;
            const std::string& s = v_.pieces[id];
            std::vector<Fragment> next;
            for (Fragment& f : cut) {
                if (f.token >= 0) {
                    next.push_back(std::move(f));
                    continue;
                }
                size_t at = 0;
                for (size_t hit; (hit = f.text.find(s, at)) != std::string::npos; at = hit + s.size()) {
                    if (hit > at) next.push_back({-1, f.text.substr(at, hit - at)});
                    next.push_back({id, ""});
                }
                if (at < f.text.size()) next.push_back({-1, f.text.substr(at)});
            }
            cut = std::move(next);
        }
        for (Fragment& f : cut) {
            if (f.token < 0 && !fragments.empty() && fragments.back().token < 0) fragments.back().text += f.text;
            else fragments.push_back(std::move(f));
        }
    }

    bool after_special = true;  // spm: the dummy prefix goes before text that starts a sequence or follows a special
    for (const Fragment& f : fragments) {
        if (f.token >= 0) {
            tokens.push_back(f.token);
            after_special = true;
        } else if (v_.kind == TokenizerKind::spm) {
            encode_spm((v_.add_space_prefix && after_special ? " " : "") + f.text, tokens);
            after_special = false;
        } else {
            encode_bpe(f.text, tokens);
        }
    }
    if (eos && v_.add_eos && v_.eos >= 0) tokens.push_back(v_.eos);
    // Generation needs a first token even for an empty prompt.
    if (bos && tokens.empty()) tokens.push_back(v_.bos >= 0 ? v_.bos : v_.eos >= 0 ? v_.eos : 0);
    return tokens;
}

std::string Tokenizer::decode(int prev, int token) const {
    if (token < 0 || token >= vocab_size()) return "";
    const std::string& piece = v_.pieces[token];
    if (v_.kind == TokenizerKind::llama2c) {
        const size_t start = prev == v_.bos && !piece.empty() && piece[0] == ' ' ? 1 : 0;
        const int byte = parse_byte_piece(piece, start);
        if (byte >= 0) return std::string(1, static_cast<char>(byte));
        return piece.substr(start);
    }
    switch (type(token)) {
        case TokenType::control:
        case TokenType::unused: return "";
        case TokenType::user_defined:
        case TokenType::unknown: return piece;
        case TokenType::byte: {
            const int byte = parse_byte_piece(piece, 0);
            if (byte >= 0) return std::string(1, static_cast<char>(byte));
            if (v_.kind == TokenizerKind::bpe) break;
            return piece;
        }
        default: break;
    }
    if (v_.kind == TokenizerKind::spm) {
        std::string text = spaces_from_pieces(piece);
        // As run.c: the dummy-prefix space of the first word is not printed.
        if (prev == v_.bos && v_.add_space_prefix && !text.empty() && text[0] == ' ') text.erase(0, 1);
        return text;
    }
    std::string bytes;
    for (uint32_t cp : unicode::decode_utf8(piece)) {
        const int b = unicode::piece_byte(cp);
        if (b >= 0) bytes += static_cast<char>(b);
        else unicode::append_utf8(bytes, cp);  // not byte-level: keep the character
    }
    return bytes;
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
