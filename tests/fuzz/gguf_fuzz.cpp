// libFuzzer target for the GGUF reader and everything that reads a parsed
// file: the llama.* config, the tokenizer (built, then used), every metadata
// value and every tensor's bytes. Any input must end in success or a
// ferry::Error: a crash, a sanitizer report, a hang or another exception
// type is a bug.
//
// Built with clang's libFuzzer (see tests/fuzz/CMakeLists.txt):
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DFERRY_FUZZ=ON
//   cmake --build build-fuzz --target gguf_fuzz
//   ./build-fuzz/common/gguf_fuzz -max_len=65536 corpus-dir ../shared/models/gguf
// tests/gguf_fuzz_test.cpp includes this file and runs the same entry over a
// fixed corpus of mutated real files in every ctest run.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/gguf_file.h"
#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {

// Reads every byte a value points at, walking arrays (nested ones too).
inline uint64_t touch(const GgufValue& v) {
    uint64_t sum = v.describe().size();
    if (!v.is_array()) return sum + (v.str.empty() ? 0 : static_cast<uint8_t>(v.str.back()));
    for (uint64_t i = 0; i < v.count && i < 4096; ++i) {
        sum += static_cast<uint64_t>(v.int_at(i).value_or(0));
        sum += static_cast<uint64_t>(v.float_at(i).value_or(0.0) != 0.0);
    }
    if (!gguf_scalar_bytes(v.elem_type))
        for (const GgufValue& e : v.elements()) sum += touch(e);
    return sum;
}

// Reads every byte the parsed file points at, so an address sanitizer sees
// any view that strays outside the input.
inline uint64_t touch(const GgufFile& g, const uint8_t* data) {
    uint64_t sum = 0;
    for (const GgufKV& kv : g.metadata) sum += kv.key.size() + touch(kv.value);
    for (const GgufTensor& t : g.tensors) {
        sum += static_cast<uint64_t>(t.rows()) + static_cast<uint64_t>(t.cols());
        if (t.bytes) sum += data[t.offset] + data[t.offset + t.bytes - 1];
    }
    return sum;
}

}  // namespace ferry::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace ferry;
    try {
        const GgufFile g = parse_gguf(data, size, "fuzz.gguf");
        volatile uint64_t sink = fuzz::touch(g, data);
        (void)sink;
        try {
            (void)gguf_model_config(g);
        } catch (const Error&) {
        }
        try {
            fuzz::use_tokenizer(tokenizer_from_gguf(g));
        } catch (const Error&) {
        }
    } catch (const Error&) {
    }
    return 0;
}
