// SentencePiece-style encoding of a GGUF "llama" vocabulary, as llama.cpp's
// SPM tokenizer does it: spaces become U+2581, the text is cut into UTF-8
// characters, and the adjacent pair whose concatenation is the best-scoring
// token (leftmost on ties) is merged until no pair is a token. A character
// that is no token is spelled in its bytes (<0xNN> tokens). (Merged pieces are
// tokens by construction, so llama.cpp's undoing of merges never applies.)
#include <algorithm>
#include <queue>

#include "common/tokenizer.h"
#include "common/tokenizer_unicode.h"

namespace ferry {

namespace {

struct Symbol {
    int prev, next;
    size_t start, n;  // byte range in the text; n == 0 once merged into its left neighbour
};

struct Bigram {
    int left, right;
    float score;
    size_t size;
};

struct WorseBigram {
    bool operator()(const Bigram& a, const Bigram& b) const {
        return a.score < b.score || (a.score == b.score && a.left > b.left);
    }
};

}  // namespace

void Tokenizer::encode_spm(const std::string& raw, std::vector<int>& out) const {
    std::string text;
    for (char c : raw) {
        if (c == ' ') text += "\xE2\x96\x81";
        else text += c;
    }
    std::vector<Symbol> symbols;
    for (size_t at = 0; at < text.size();) {
        const size_t n = std::min(unicode::utf8_len(static_cast<uint8_t>(text[at])), text.size() - at);
        const int index = static_cast<int>(symbols.size());
        symbols.push_back({index - 1, at + n == text.size() ? -1 : index + 1, at, n});
        at += n;
    }

    std::priority_queue<Bigram, std::vector<Bigram>, WorseBigram> queue;
    auto try_pair = [&](int left, int right) {
        if (left < 0 || right < 0) return;
        const std::string s = text.substr(symbols[left].start, symbols[left].n + symbols[right].n);
        const int id = lookup(s);
        if (id >= 0) queue.push({left, right, v_.scores.empty() ? 0.0f : v_.scores[id], s.size()});
    };
    for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_pair(i - 1, i);

    while (!queue.empty()) {
        const Bigram b = queue.top();
        queue.pop();
        Symbol& left = symbols[b.left];
        Symbol& right = symbols[b.right];
        // Stale: one side was merged into something else since.
        if (left.n == 0 || right.n == 0 || left.n + right.n != b.size) continue;
        left.n += right.n;
        right.n = 0;
        left.next = right.next;
        if (right.next >= 0) symbols[right.next].prev = b.left;
        try_pair(left.prev, b.left);
        try_pair(b.left, left.next);
    }

    if (symbols.empty()) return;
    for (int i = 0; i != -1; i = symbols[i].next) {
        const std::string piece = text.substr(symbols[i].start, symbols[i].n);
        const int id = lookup(piece);
        if (id >= 0) {
            out.push_back(id);
        } else {
            for (char c : piece) out.push_back(byte_token(static_cast<uint8_t>(c)));
        }
    }
}

}  // namespace ferry
