// A reply's tokens turned into text for a client: pieces as run.c prints
// them, cut at the first stop string, and released only as far as it is
// safe: never half of a UTF-8 character (JSON needs whole ones) nor the
// start of what may become a stop string.
#pragma once
#include <string>
#include <vector>

#include "common/tokenizer.h"

namespace ferry {

class ReplyText {
public:
    ReplyText(const Tokenizer& tokenizer, std::vector<std::string> stop, int prev_token);

    // Appends the piece of `token`; returns false once a stop string was met
    // (the text then ends before it).
    bool add(int token);
    // Text that became safe to send since the last call.
    std::string take();
    // Everything that is left, at the end of the reply (an incomplete UTF-8
    // tail becomes U+FFFD).
    std::string finish();
    bool stopped() const { return stopped_; }

private:
    size_t safe_end() const;

    const Tokenizer& tokenizer_;
    std::vector<std::string> stop_;
    int prev_;
    std::string text_;  // the reply so far
    size_t sent_ = 0;   // bytes of text_ handed out
    bool stopped_ = false;
};

// Length of the longest prefix of s that does not end inside a UTF-8 sequence.
size_t utf8_whole_prefix(const std::string& s);
// s with every invalid UTF-8 sequence replaced by U+FFFD.
std::string utf8_valid(const std::string& s);

}  // namespace ferry
