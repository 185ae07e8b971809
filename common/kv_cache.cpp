#include "common/kv_cache.h"

#include <cstring>

#include "common/error.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

namespace ferry {

const char* kv_type_name(KvType type) {
    switch (type) {
        case KvType::f32: return "f32";
        case KvType::f16: return "f16";
        case KvType::q8_0: return "q8_0";
    }
    return "unknown";
}

bool parse_kv_type(const std::string& name, KvType* out) {
    if (name == "f32") *out = KvType::f32;
    else if (name == "f16") *out = KvType::f16;
    else if (name == "q8_0") *out = KvType::q8_0;
    else return false;
    return true;
}

namespace {
uint64_t row_bytes_for(int kv_dim, KvType type) {
    switch (type) {
        case KvType::f32: return 4ull * kv_dim;
        case KvType::f16: return 2ull * kv_dim;
        case KvType::q8_0: return static_cast<uint64_t>(kv_dim / kQK8_0) * sizeof(BlockQ8_0);
    }
    return 0;
}
}  // namespace

uint64_t KVCache::bytes_for(int n_layers, int seq_len, int kv_dim, KvType type) {
    return 2ull * static_cast<uint64_t>(n_layers) * static_cast<uint64_t>(seq_len) * row_bytes_for(kv_dim, type);
}

KVCache::KVCache(int n_layers, int seq_len, int kv_dim, KvType type)
    : type_(type), n_layers_(n_layers), seq_len_(seq_len), kv_dim_(kv_dim), row_bytes_(row_bytes_for(kv_dim, type)) {
    if (type == KvType::q8_0 && kv_dim % kQK8_0 != 0)
        throw Error("--kv-type q8_0 needs a key/value width that is a multiple of 32; this model's is " +
                    std::to_string(kv_dim) + "; use f16");
    const uint64_t n = bytes_for(n_layers, seq_len, kv_dim, type) / 2;
    key_.assign(n, 0);
    value_.assign(n, 0);
}

void KVCache::put(std::vector<uint8_t>& store, int layer, int pos, int n, const float* rows) {
    uint8_t* dst = store.data() + offset(layer, pos);
    switch (type_) {
        case KvType::f32:
            std::memcpy(dst, rows, static_cast<size_t>(n) * row_bytes_);
            return;
        case KvType::f16: {
            uint16_t* h = reinterpret_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < static_cast<int64_t>(n) * kv_dim_; ++i) h[i] = fp32_to_fp16(rows[i]);
            return;
        }
        case KvType::q8_0:
            for (int r = 0; r < n; ++r)
                kernels::quantize_row_q8_0(rows + static_cast<int64_t>(r) * kv_dim_,
                                           reinterpret_cast<BlockQ8_0*>(dst + r * row_bytes_), kv_dim_);
            return;
    }
}

void KVCache::store(int layer, int pos, int n, const float* keys, const float* values) {
    put(key_, layer, pos, n, keys);
    put(value_, layer, pos, n, values);
}

TensorType KVCache::tensor_type() const {
    switch (type_) {
        case KvType::f32: return TensorType::F32;
        case KvType::f16: return TensorType::F16;
        case KvType::q8_0: return TensorType::Q8_0;
    }
    return TensorType::F32;
}

}  // namespace ferry
