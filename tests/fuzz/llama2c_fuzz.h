// The llama2.c checkpoint target's entry: the bytes as a model file opened
// the way `ferry run` opens one (open_model_file, which tells llama2.c legacy,
// "ak42" v1/v2 and GGUF apart by the first bytes), every tensor range checked
// against the file and read at both ends, then the weights bound for the
// whole model as the engine binds them. Any input must end in success or a
// ferry::Error; a tensor outside the file, a crash, a sanitizer report or
// another exception type is a bug. Used by llama2c_fuzz.cpp (libFuzzer) and
// tests/llama2c_fuzz_test.cpp (every ctest run).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/error.h"
#include "common/model_file.h"
#include "common/weights.h"
#include "tests/fuzz/fuzz_support.h"

namespace ferry::fuzz {

// True if the file opened as a model (whether or not its weights bind).
inline bool fuzz_llama2c(const uint8_t* data, size_t size) {
    try {
        const ModelFile f = open_model_file(input_file().write(data, size));
        if (f.map.size() != size) broken("the reader mapped " + std::to_string(f.map.size()) + " of " + std::to_string(size) + " bytes");
        uint64_t sum = 0;
        for (const TensorInfo& t : f.tensors) {
            if (t.bytes > size || t.offset > size - t.bytes)
                broken(t.name + " at " + std::to_string(t.offset) + " + " + std::to_string(t.bytes) + " lies outside the " +
                       std::to_string(size) + "-byte file");
            if (t.bytes) sum += f.data(t)[0] + f.data(t)[t.bytes - 1];
        }
        try {
            const ShardSpec all{0, f.config.n_layers, true, true};
            const Weights w = bind_weights(f.config, all, f.tensors, f.map.data(), f.path);
            sum += shard_weight_bytes(w);
            for (const LayerWeights& l : w.layers) sum += *reinterpret_cast<const uint8_t*>(l.attn_norm);
        } catch (const Error&) {
        }
        volatile uint64_t sink = sum;
        (void)sink;
        return true;
    } catch (const Error&) {
        return false;
    }
}

}  // namespace ferry::fuzz
