// What a worker receives: a GGUF (v3) image holding exactly one shard's
// tensors (shard_tensor_names) in their stored types, plus the llama.*
// metadata that rebuilds the model's config (add_model_metadata) and
// ferry.shard.* keys naming the model and the range. GgufWriter lays it out;
// the bytes are then read straight from the model's memory map (header first,
// then tensor bytes), never written to disk on the coordinator, and they are
// a pure function of (model, shard): a transfer can resume at any offset.
//
// The worker opens the finished file with open_model_file() and binds it with
// bind_weights(), the same path as a local model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "common/model_file.h"
#include "common/weights.h"
#include "ferry.pb.h"

namespace ferry::net {

class ShardImage {
public:
    // Throws ferry::Error if a tensor's type cannot be stored in GGUF (llama2.c
    // v2 int8 groups: give the worker --model-dir, or convert the model to GGUF).
    ShardImage(const ModelFile& model, const ShardSpec& spec, const std::string& model_hash);

    uint64_t size() const { return size_; }
    // Copies image bytes [offset, offset + n) into out.
    void read(uint64_t offset, uint64_t n, uint8_t* out) const;
    // Done with image bytes [offset, offset + n): the model's pages behind
    // them leave this process's resident set. A coordinator that sends (or
    // hashes) a 1 GB shard keeps only what it computes with itself.
    void drop_pages(uint64_t offset, uint64_t n) const;
    // XXH3-128 of the whole image, what the worker's cached file must hash
    // to. Reading a shard costs a pass over its share of the model, so the
    // digest is kept in a record under `cache_dir` (empty: none) keyed by the
    // model's hash, the shard and this ferry's version.
    std::string content_hash(const std::string& cache_dir) const;
    // The model's tensors that the image holds, in image order.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    uint64_t weight_bytes() const { return weight_bytes_; }

private:
    struct Piece {
        uint64_t at = 0;  // offset in the image
        const uint8_t* src = nullptr;
        uint64_t bytes = 0;
    };
    std::string header_;
    std::vector<Piece> pieces_;  // header, then each tensor; gaps are zero padding
    std::vector<TensorInfo> tensors_;
    const MappedFile* map_ = nullptr;  // the model's, where pieces' bytes lie
    std::string model_hash_, name_;
    uint64_t size_ = 0;
    uint64_t weight_bytes_ = 0;
};

// The most bytes an image of these tensors can have: their bytes, each
// tensor's GGUF entry (name, shape, type, offset) and alignment padding, and
// kShardHeaderBytes for the header and metadata.
constexpr uint64_t kShardHeaderBytes = 64u << 10;
uint64_t shard_image_max_bytes(const std::vector<TensorInfo>& tensors);

// "" if an assignment's tensor list is exactly what `spec` of a model of
// shape `c` needs (the names of shard_tensor_names, each once, with the
// shapes and types bind_weights accepts and the bytes its shape and type
// make) and its image_bytes fit them (0: no image, the shard must be found
// here); else one line saying what is wrong. The worker's memory check counts
// these tensors, so what it then receives and maps is what it counted.
std::string shard_tensors_problem(const ModelConfig& c, const ShardSpec& spec, const std::vector<TensorInfo>& tensors,
                                  uint64_t image_bytes);

// A model's shape as an Assign carries it, and back.
wire::ModelShape shape_to_wire(const ModelConfig& c);
ModelConfig shape_from_wire(const wire::ModelShape& s);

// "<first>-<last>[-embed][-head].gguf", layers inclusive ("none" for no layers).
std::string shard_file_name(const ShardSpec& spec);
// Reads the ferry.shard.* keys of an opened shard image: model hash (hex) and spec.
// False if the file is not a ferry shard.
bool read_shard_identity(const ModelFile& file, std::string* model_hash_hex, ShardSpec* spec);

}  // namespace ferry::net
