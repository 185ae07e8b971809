// Byte-level BPE of a GGUF "gpt2" vocabulary, as llama.cpp does it:
//  1. the pre-tokenizer cuts the text into words (hand-written equivalents of
//     the GPT-2 and Llama 3 split patterns, as in llama.cpp's unicode.cpp);
//  2. every byte of a word is written in GPT-2's byte alphabet;
//  3. the adjacent pair with the lowest merge rank (leftmost on ties) is
//     merged until no pair has a rank; Llama 3 first takes a whole word that
//     is a token as it is ("ignore_merges");
//  4. each final piece is its token, or its single bytes where those are tokens.
#include <algorithm>
#include <queue>

#include "common/tokenizer.h"
#include "common/tokenizer_unicode.h"

namespace ferry {

namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kWhitespace;
constexpr uint8_t kInText = 0x80;  // the position is inside the text (llama.cpp: flags != 0)
constexpr uint32_t kOutside = 0xFFFFFFFF;

// Code points of one fragment [begin, end) with their class flags; reads
// past the end give kOutside / 0, as llama.cpp's splitters expect.
struct Cursor {
    const std::vector<uint32_t>& cps;
    const std::vector<uint8_t>& fl;
    size_t end;
    uint32_t at(size_t p) const { return p < end ? cps[p] : kOutside; }
    uint8_t flags(size_t p) const { return p < end ? fl[p] : 0; }
};

using Words = std::vector<std::pair<size_t, size_t>>;  // [begin, end) in code points

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
void split_gpt2(const Cursor& t, size_t begin, Words& out) {
    size_t start = begin, pos = begin;
    auto cut = [&](size_t to) {
        if (to > start) out.emplace_back(start, to);
        start = pos = to;
    };
    const uint8_t kClasses = kWhitespace | kLetter | kNumber;
    while (pos < t.end) {
        const uint32_t c = t.at(pos);
        const uint8_t f = t.flags(pos);
        if (c == '\'' && pos + 1 < t.end) {
            const uint32_t n1 = t.at(pos + 1);
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                cut(pos + 2);
                continue;
            }
            if (pos + 2 < t.end) {
                const uint32_t n2 = t.at(pos + 2);
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    cut(pos + 3);
                    continue;
                }
            }
        }
        const uint8_t f2 = c == ' ' ? t.flags(pos + 1) : f;
        const uint8_t run = (f2 & kLetter) ? kLetter : (f2 & kNumber) ? kNumber : 0;
        if (run) {  // ' ?\p{L}+' or ' ?\p{N}+'
            pos += c == ' ';
            while (t.flags(pos) & run) ++pos;
            cut(pos);
            continue;
        }
        if (!(f2 & kClasses) && f2) {  // ' ?[^\s\p{L}\p{N}]+'

            pos += c == ' ';
            while (!(t.flags(pos) & kClasses) && t.flags(pos)) ++pos;
            cut(pos);
            continue;
        }
        size_t spaces = 0;
        while (t.flags(pos + spaces) & kWhitespace) ++spaces;
        if (spaces > 1 && t.at(pos + spaces) != kOutside) cut(pos + spaces - 1);  // \s+(?!\S)
        else if (spaces > 0) cut(pos + spaces);
        else cut(pos + 1);
    }
}

uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

// (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// qwen2's is the same with \p{N} for \p{N}{1,3}: digits per word, 3 or 1.
void split_llama3(const Cursor& t, size_t begin, Words& out, size_t digits_per_word = 3) {
    size_t start = begin, pos = begin;
    auto cut = [&](size_t to) {
        if (to > start) out.emplace_back(start, to);
        start = pos = to;
    };
    const uint8_t kClasses = kWhitespace | kLetter | kNumber;
    auto newline = [](uint32_t c) { return c == '\r' || c == '\n'; };
    while (pos < t.end) {
        const uint32_t c = t.at(pos);
        const uint8_t f = t.flags(pos);
        if (c == '\'' && pos + 1 < t.end) {
            const uint32_t n1 = ascii_lower(t.at(pos + 1));
            if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
                cut(pos + 2);
                continue;
            }
            if (pos + 2 < t.end) {
                const uint32_t n2 = ascii_lower(t.at(pos + 2));
                if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
                    cut(pos + 3);
                    continue;
                }
            }
        }
        if (!newline(c) && !(f & kNumber) && ((f & kLetter) || (t.flags(pos + 1) & kLetter))) {
            ++pos;
            while (t.flags(pos) & kLetter) ++pos;
            cut(pos);
            continue;
        }
        if (f & kNumber) {  // digits in groups of up to three (qwen2: one)
            size_t group = pos;
            while (t.flags(pos) & kNumber) {
                if (++pos - group >= digits_per_word) {
                    cut(pos);
                    group = pos;
                }
            }
            cut(pos);
            continue;
        }
        const uint8_t f2 = c == ' ' ? t.flags(pos + 1) : f;
        if (!(f2 & kClasses) && f) {
            pos += c == ' ';
            while (!(t.flags(pos) & kClasses) && t.flags(pos)) ++pos;
            while (newline(t.at(pos))) ++pos;
            cut(pos);
            continue;
        }
        size_t spaces = 0, after_newline = 0;
        for (; t.flags(pos + spaces) & kWhitespace; ++spaces)
            if (newline(t.at(pos + spaces))) after_newline = pos + spaces + 1;
        if (after_newline > 0) cut(after_newline);                                     // \s*[\r\n]+
        else if (spaces > 1 && t.at(pos + spaces) != kOutside) cut(pos + spaces - 1);  // \s+(?!\S)
        else if (spaces > 0) cut(pos + spaces);
        else cut(pos + 1);
    }
}

// \p{N}: every digit a word of its own, the stretches between them too.
void split_digits(const Cursor& t, size_t begin, Words& out) {
    size_t start = begin;
    for (size_t pos = begin; pos < t.end; ++pos) {
        if (!(t.flags(pos) & kNumber)) continue;
        if (pos > start) out.emplace_back(start, pos);
        out.emplace_back(pos, pos + 1);
        start = pos + 1;
    }
    if (t.end > start) out.emplace_back(start, t.end);
}

Words split_words(PreTokenizer pre, const std::vector<uint32_t>& cps, const std::vector<uint8_t>& fl) {
    Words words;
    const Cursor all{cps, fl, cps.size()};
    switch (pre) {
        case PreTokenizer::gpt2: split_gpt2(all, 0, words); break;
        case PreTokenizer::llama3: split_llama3(all, 0, words); break;
        case PreTokenizer::qwen2: split_llama3(all, 0, words, 1); break;
        case PreTokenizer::smollm: {
            Words parts;
            split_digits(all, 0, parts);
            for (const auto& [b, e] : parts) split_gpt2(Cursor{cps, fl, e}, b, words);
            break;
        }
    }
    return words;
}

struct Symbol {
    int prev, next;
    size_t start, n;  // byte range in the word; n == 0 once merged into its left neighbour
};

struct Bigram {
    int left, right;
    int rank;
    std::string text;
};

struct WorseBigram {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
    }
};

}  // namespace

// Invalid UTF-8 bytes become U+FFFD, as in llama.cpp.
std::vector<std::string> pre_tokenize(PreTokenizer pre, const std::string& text) {
    const std::vector<uint32_t> cps = unicode::decode_utf8(text);
    std::vector<uint8_t> fl(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) fl[i] = unicode::flags(cps[i]) | kInText;
    std::vector<std::string> words;
    for (const auto& [begin, end] : split_words(pre, cps, fl)) {
        std::string& w = words.emplace_back();
        for (size_t i = begin; i < end; ++i) unicode::append_utf8(w, cps[i]);
    }
    return words;
}

void Tokenizer::encode_bpe(const std::string& text, std::vector<int>& out) const {
    const bool ignore_merges = v_.pre == PreTokenizer::llama3;
    for (const std::string& utf8 : pre_tokenize(v_.pre, text)) {
        std::string word;
        for (char b : utf8) word += unicode::byte_piece(static_cast<uint8_t>(b));
        if (ignore_merges) {
            const int id = lookup(word);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
        }
        std::vector<Symbol> symbols;
        for (size_t at = 0; at < word.size();) {
            const size_t n = std::min(unicode::utf8_len(static_cast<uint8_t>(word[at])), word.size() - at);
            const int index = static_cast<int>(symbols.size());
            symbols.push_back({index - 1, at + n == word.size() ? -1 : index + 1, at, n});
            at += n;
        }
        std::priority_queue<Bigram, std::vector<Bigram>, WorseBigram> queue;
        auto try_pair = [&](int left, int right) {
            if (left < 0 || right < 0) return;
            const std::string l = word.substr(symbols[left].start, symbols[left].n);
            const std::string r = word.substr(symbols[right].start, symbols[right].n);
            const int rank = merge_rank(l, r);
            if (rank >= 0) queue.push({left, right, rank, l + r});
        };
        for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_pair(i - 1, i);
        while (!queue.empty()) {
            const Bigram b = queue.top();
            queue.pop();
            Symbol& left = symbols[b.left];
            Symbol& right = symbols[b.right];
            if (left.n == 0 || right.n == 0) continue;
            // Stale: a side has changed since the pair was queued.
            if (left.n + right.n != b.text.size() || word.compare(left.start, left.n + right.n, b.text) != 0 ||
                left.next != b.right)
                continue;
            left.n += right.n;
            right.n = 0;
            left.next = right.next;
            if (right.next >= 0) symbols[right.next].prev = b.left;
            try_pair(left.prev, b.left);
            try_pair(b.left, left.next);
        }
        for (const Symbol& s : symbols) {
            if (s.n == 0) continue;
            const std::string piece = word.substr(s.start, s.n);
            const int id = lookup(piece);
            if (id >= 0) {
                out.push_back(id);
                continue;
            }
            for (char b : piece) {
                const int bid = lookup(std::string(1, b));
                if (bid >= 0) out.push_back(bid);
            }
        }
    }
}

}  // namespace ferry
