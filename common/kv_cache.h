// Keys and values of the layers one process runs, [layer][position][kv_dim],
// stored as f32, f16 or q8_0 (GGML blocks of 32). Smaller types trade a little
// agreement with f32 for memory, which on a 128 MB worker decides how much
// context fits (docs/BENCHMARKS.md measures both).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor_type.h"

namespace ferry {

enum class KvType { f32, f16, q8_0 };

const char* kv_type_name(KvType type);
// "f32" | "f16" | "q8_0"; false if unknown.
bool parse_kv_type(const std::string& name, KvType* out);

class KVCache {
public:
    KVCache() = default;
    // Throws ferry::Error if kv_dim does not suit the type (q8_0 needs multiples of 32).
    KVCache(int n_layers, int seq_len, int kv_dim, KvType type = KvType::f32);
    // What the constructor allocates.
    static uint64_t bytes_for(int n_layers, int seq_len, int kv_dim, KvType type = KvType::f32);

    int n_layers() const { return n_layers_; }
    int seq_len() const { return seq_len_; }
    int kv_dim() const { return kv_dim_; }
    KvType type() const { return type_; }
    uint64_t bytes() const { return key_.size() + value_.size(); }

    // Stores n rows of keys and values (f32, [n][kv_dim]) at positions pos.. of a layer.
    void store(int layer, int pos, int n, const float* keys, const float* values);
    // A layer's keys or values as stored: row p (row_bytes() bytes) holds
    // position p, seq_len rows of kv_dim values of tensor_type(). Attention
    // reads them in place (kernels::attention), never as a decoded copy.
    Matrix key_rows(int layer) const { return rows(key_, layer); }
    Matrix value_rows(int layer) const { return rows(value_, layer); }
    TensorType tensor_type() const;
    uint64_t row_bytes() const { return row_bytes_; }

private:
    Matrix rows(const std::vector<uint8_t>& store, int layer) const {
        return Matrix{tensor_type(), store.data() + offset(layer, 0), seq_len_, kv_dim_, 0};
    }
    void put(std::vector<uint8_t>& store, int layer, int pos, int n, const float* rows);
    uint64_t offset(int layer, int pos) const {
        return (static_cast<uint64_t>(layer) * seq_len_ + static_cast<uint64_t>(pos)) * row_bytes_;
    }

    KvType type_ = KvType::f32;
    int n_layers_ = 0, seq_len_ = 0, kv_dim_ = 0;
    uint64_t row_bytes_ = 0;
    std::vector<uint8_t> key_, value_;
};

}  // namespace ferry
