// Where the numbers of a model being written come from, one f32 row at a
// time: random weights (`ferry synth`) or another model file (format
// conversion, `ferry quantize`). Writers pull rows and stream them to disk,
// so a multi-GB model never sits in RAM.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>

#include "common/model_file.h"

namespace ferry {

// One weight tensor of a model: a matrix, or a vector (rows == 1).
struct ModelTensor {
    std::string name;  // GGUF naming ("blk.0.attn_q.weight")
    int64_t rows = 1;  // 1 for the norm vectors
    int64_t cols = 0;
    bool matrix = false;  // a weight matrix (quantizable); norms stay f32
};

class TensorSource {
public:
    virtual ~TensorSource() = default;
    // Fills `out` (t.cols floats) with row r of t; rows may be asked for in any order.
    virtual void row(const ModelTensor& t, int64_t r, float* out) = 0;
    // The writer is done with rows [first, first + count) of t: a source
    // backed by a mapped file lets their pages go.
    virtual void done_with(const ModelTensor& t, int64_t first, int64_t count) {}
};

// Random weights: matrices normal(0, stddev), norms 1.0. Each row has its own
// stream seeded from (seed, tensor name, row), so every format written with
// the same seed holds the same numbers, whatever the order of writing.
class RandomTensorSource : public TensorSource {
public:
    explicit RandomTensorSource(uint64_t seed, float stddev = 0.02f) : seed_(seed), stddev_(stddev) {}
    void row(const ModelTensor& t, int64_t r, float* out) override;

private:
    uint64_t seed_;
    float stddev_;
};

// The tensors of an opened model file, decoded to f32. row() may be called
// from several threads at once.
class ModelFileTensorSource : public TensorSource {
public:
    explicit ModelFileTensorSource(const ModelFile& file);
    void row(const ModelTensor& t, int64_t r, float* out) override;
    void done_with(const ModelTensor& t, int64_t first, int64_t count) override;

private:
    const TensorInfo& info(const ModelTensor& t) const;
    const ModelFile& file_;
    std::unordered_map<std::string, const TensorInfo*> by_name_;
};

}  // namespace ferry
