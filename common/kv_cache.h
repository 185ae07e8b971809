// Keys and values of the layers one process runs, [layer][position][kv_dim],
// stored as f32, f16 or q8_0 (GGML blocks of 32). Smaller types trade a little
// agreement with f32 for memory, which on a 128 MB worker decides how much
// context fits (docs/BENCHMARKS.md measures both).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

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
    // Rows 0..n-1 of a layer as f32: straight from the cache for f32, else
    // decoded into scratch (resized as needed).
    const float* keys(int layer, int n, std::vector<float>& scratch) const;
    const float* values(int layer, int n, std::vector<float>& scratch) const;

private:
    const float* rows(const std::vector<uint8_t>& store, int layer, int n, std::vector<float>& scratch) const;
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
