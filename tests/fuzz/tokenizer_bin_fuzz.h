// The llama2.c tokenizer.bin target's entry: the bytes loaded as a
// tokenizer.bin (Tokenizer::load_llama2c) for the vocabulary sizes a model
// may ask for: 512 and 32000 (the real ones), and 0..3, picked by the last
// byte, where BOS/EOS fall outside the vocabulary. Each tokenizer that loads
// has exactly that many tokens and, if it has run.c's 256 byte tokens,
// encodes and decodes a fixed text. Any
// input must end in success or a ferry::Error. Used by tokenizer_bin_fuzz.cpp
// (libFuzzer) and tests/tokenizer_bin_fuzz_test.cpp (every ctest run).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/tokenizer.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {

// How many of the vocabulary sizes loaded.
inline int fuzz_tokenizer_bin(const uint8_t* data, size_t size) {
    const std::string& path = input_file().write(data, size);
    const QuietLogs quiet;
    int loaded = 0;
    for (const int vocab : {size ? data[size - 1] % 4 : 0, 512, 32000}) {
        try {
            const Tokenizer tok = Tokenizer::load_llama2c(path, vocab, /*allow_more=*/true);  // run.c reads a prefix too
            if (tok.vocab_size() != vocab)
                broken("asked for " + std::to_string(vocab) + " tokens, loaded " + std::to_string(tok.vocab_size()));
            ++loaded;
            use_tokenizer(tok);  // a vocabulary without byte tokens refuses text that needs them
        } catch (const Error&) {
        }
    }
    return loaded;
}

}  // namespace ferry::fuzz
