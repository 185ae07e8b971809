#include "coordinator/generation/local_engine.h"

#include <algorithm>

namespace ferry {

LocalEngine::LocalEngine(const ModelFile& file, int context, kernels::ThreadPool* pool, KvType kv_type)
    : config_(file.config),
      weights_(bind_weights(file.config, ShardSpec{0, file.config.n_layers, true, true}, file.tensors,
                            file.map.data(), file.path)),
      kv_(file.config.n_layers, context, file.config.kv_dim(), kv_type),
      ws_(file.config, kMaxBatch, context),
      pool_(pool),
      logits_(static_cast<size_t>(file.config.vocab_size)) {}

float* LocalEngine::forward(const int* tokens, int n_tokens, int pos) {
    x_.resize(static_cast<size_t>(n_tokens) * config_.dim);
    embed_tokens(config_, weights_, tokens, n_tokens, x_.data());
    forward_layers(config_, weights_, kv_, pos, n_tokens, x_.data(), ws_, pool_);
    compute_logits(config_, weights_, x_.data() + static_cast<size_t>(n_tokens - 1) * config_.dim, logits_.data(),
                   pos + n_tokens - 1, pool_);
    return logits_.data();
}

}  // namespace ferry
