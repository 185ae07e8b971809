// Unicode facts the tokenizers need (see tokenizer_unicode.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::unicode {

constexpr uint8_t kLetter = 1;      // general category L*  (regex \p{L})
constexpr uint8_t kNumber = 2;      // general category N*  (regex \p{N})
constexpr uint8_t kWhitespace = 4;  // the White_Space property (regex \s)

// Class flags of a code point; 0 for everything else (punctuation, symbols, marks, ...).
uint8_t flags(uint32_t cp);

// Bytes of the UTF-8 sequence a lead byte starts, as llama.cpp counts them
// (a stray continuation byte counts as 1).
size_t utf8_len(uint8_t lead);
// Code points of text; each byte of an invalid sequence becomes U+FFFD, as
// llama.cpp's tokenizer treats it.
std::vector<uint32_t> decode_utf8(std::string_view text);
void append_utf8(std::string& out, uint32_t cp);

// GPT-2's byte-level alphabet: every byte stands for a printable code point
// (space is U+0120 'Ġ'). byte_piece(b) is that code point in UTF-8.
const std::string& byte_piece(uint8_t b);
// The byte a code point stands for, -1 if it is not in the alphabet.
int piece_byte(uint32_t cp);

}  // namespace ferry::unicode
