#include "coordinator/serving/reply_text.h"

#include <algorithm>

namespace ferry {

namespace {

// Bytes of the UTF-8 sequence led by byte b; 0 for a continuation or invalid lead.
int sequence_length(unsigned char b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

bool continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

}  // namespace

size_t utf8_whole_prefix(const std::string& s) {
    // Look back at most 3 bytes for the lead of an unfinished sequence.
    const size_t n = s.size();
    for (size_t back = 1; back <= std::min<size_t>(3, n); ++back) {
        const unsigned char b = static_cast<unsigned char>(s[n - back]);
        if (continuation(b)) continue;
        const int len = sequence_length(b);
        return len > static_cast<int>(back) ? n - back : n;
    }
    return n;
}

std::string utf8_valid(const std::string& s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) {
        const unsigned char b = static_cast<unsigned char>(s[i]);
        const int len = sequence_length(b);
        bool ok = len > 0 && i + static_cast<size_t>(len) <= s.size();
        for (int k = 1; ok && k < len; ++k) ok = continuation(static_cast<unsigned char>(s[i + static_cast<size_t>(k)]));
        // Overlong three-byte forms, UTF-16 surrogates and code points past U+10FFFF.
        if (ok && len == 3) {
            const unsigned char c = static_cast<unsigned char>(s[i + 1]);
            ok = !(b == 0xE0 && c < 0xA0) && !(b == 0xED && c >= 0xA0);
        }
        if (ok && len == 4) {
            const unsigned char c = static_cast<unsigned char>(s[i + 1]);
            ok = !(b == 0xF0 && c < 0x90) && !(b == 0xF4 && c >= 0x90);
        }
        if (ok) {
            out.append(s, i, static_cast<size_t>(len));
            i += static_cast<size_t>(len);
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

ReplyText::ReplyText(const Tokenizer& tokenizer, std::vector<std::string> stop, int prev_token)
    : tokenizer_(tokenizer), prev_(prev_token) {
    for (std::string& s : stop)
        if (!s.empty()) stop_.push_back(std::move(s));
}

bool ReplyText::add(int token) {
    if (stopped_) return false;
    const std::string piece = tokenizer_.decode(prev_, token);
    prev_ = token;
    if (!Tokenizer::printable(piece)) return true;
    text_ += piece;
    // A stop string may begin in text held back, never in text sent.
    size_t cut = std::string::npos;
    for (const std::string& s : stop_)
        if (const size_t at = text_.find(s, sent_); at != std::string::npos) cut = std::min(cut, at);
    if (cut != std::string::npos) {
        text_.resize(cut);
        stopped_ = true;
        return false;
    }
    return true;
}

size_t ReplyText::safe_end() const {
    size_t end = utf8_whole_prefix(text_);
    // Hold back a tail that is the start of a stop string.
    for (const std::string& s : stop_)
        for (size_t k = std::min(s.size() - 1, end - std::min(end, sent_)); k > 0; --k)
            if (text_.compare(end - k, k, s, 0, k) == 0) {
                end -= k;
                break;
            }
    return std::max(end, sent_);
}

std::string ReplyText::take() {
    const size_t end = stopped_ ? text_.size() : safe_end();
    std::string out = utf8_valid(text_.substr(sent_, end - sent_));
    sent_ = end;
    return out;
}

std::string ReplyText::finish() {
    std::string out = utf8_valid(text_.substr(sent_));
    sent_ = text_.size();
    return out;
}

}  // namespace ferry
