// Writer for GGUF version 3, the exact layout common/gguf_file.cpp reads and
// ggml writes: header, metadata in the order added, tensor infos, padding to
// the alignment, then each tensor's data padded to the alignment. Tensor data
// is pulled a few MB of rows at a time from a callback and streamed to disk,
// so a multi-GB model never sits in RAM (`ferry quantize`, `ferry synth`,
// tests making models).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "common/gguf_file.h"
#include "kernels/tensor_type.h"

namespace ferry {

class GgufWriter {
public:
    // Fills `out` with rows [first, first + count) of the tensor (rows are
    // ne[1]*ne[2]*ne[3] runs of ne[0] values), each its row size in bytes.
    // Asked for in order, about 4 MB at a time. A type with a tail after its
    // rows (I2_S's scale: tensor_tail_bytes) is asked once more for it, with
    // first = the row count and count 0.
    using RowSource = std::function<void(int64_t first, int64_t count, uint8_t* out)>;

    void add_u8(const std::string& key, uint8_t v);
    void add_u32(const std::string& key, uint32_t v);
    void add_i32(const std::string& key, int32_t v);
    void add_u64(const std::string& key, uint64_t v);
    void add_f32(const std::string& key, float v);
    void add_f64(const std::string& key, double v);
    void add_bool(const std::string& key, bool v);
    void add_string(const std::string& key, const std::string& v);
    void add_string_array(const std::string& key, const std::vector<std::string>& v);
    void add_f32_array(const std::string& key, const std::vector<float>& v);
    void add_i32_array(const std::string& key, const std::vector<int32_t>& v);
    // A value read from another file, copied as it is (nested arrays too).
    void add_value(const std::string& key, const GgufValue& v);
    // Replaces the value of a key added before (same position); adds it if new.
    void set_u32(const std::string& key, uint32_t v);
    bool has_key(const std::string& key) const;

    // ne in ggml order (ne[0] = row length). Throws ferry::Error if ne[0] is
    // not a whole number of `type` blocks.
    void add_tensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne, RowSource rows);

    uint64_t alignment() const { return alignment_; }
    // Bytes the file will have.
    uint64_t file_bytes() const;

    // The layout, for a file assembled elsewhere (a worker's shard image is
    // read straight from the model's memory map): the header as write()
    // emits it, padded, and where each tensor's data starts in the file.
    std::string header_bytes() const { return header(); }
    struct Placement {
        std::string name;
        uint64_t offset = 0;  // from the start of the file
        uint64_t bytes = 0;   // without the padding that follows
    };
    std::vector<Placement> placements() const;

    // Called with (bytes written, total) as the file grows.
    using Progress = std::function<void(uint64_t done, uint64_t total)>;
    // Writes through path + ".partial", renamed at the end. Throws ferry::Error naming the path.
    void write(const std::string& path, const Progress& progress = {}) const;
    // The whole file in memory (tests).
    std::string to_bytes() const;

private:
    struct Tensor {
        std::string name;
        TensorType type;
        std::vector<int64_t> ne;
        uint64_t row_bytes;
        int64_t rows;
        uint64_t bytes;   // rows and tail
        uint64_t offset;  // within the data section
        RowSource source;
    };
    void add_raw(const std::string& key, GgufType type, std::string bytes);
    std::string header() const;
    void emit(const std::function<void(const char*, size_t)>& sink, const Progress& progress) const;

    std::vector<std::pair<std::string, std::string>> kv_;  // key, encoded type + value
    std::vector<Tensor> tensors_;
    uint64_t alignment_ = 32;
    uint64_t data_bytes_ = 0;
};

}  // namespace ferry
