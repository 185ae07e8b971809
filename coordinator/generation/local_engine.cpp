#include "coordinator/generation/local_engine.h"

#include <algorithm>
#include <chrono>

#include "common/error.h"
#include "common/process_stats.h"
#include "kernels/cpu_features.h"

namespace ferry {

LocalEngine::LocalEngine(const ModelFile& file, int context, kernels::ThreadPool* pool, KvType kv_type, int slots)
    : config_(file.config),
      weights_(bind_weights(file.config, ShardSpec{0, file.config.n_layers, true, true}, file.tensors,
                            file.map.data(), file.path)),
      ws_(file.config, kMaxBatch, context),
      pool_(pool),
      logits_(static_cast<size_t>(file.config.vocab_size)) {
    for (int i = 0; i < std::max(1, slots); ++i) kv_.emplace_back(file.config.n_layers, context, file.config.kv_dim(), kv_type);
    stats_.address = "this process";
    stats_.layers = "all";
    stats_.weight_bytes = shard_weight_bytes(weights_);
    stats_.arch = machine_arch();
    stats_.kernel_level = kernels::level_name(kernels::active_level());
    stats_.kv_slots = static_cast<int>(kv_.size());
}

PipelineStats LocalEngine::batch_stats() const {
    PipelineStats s;
    NodeStats n = stats_;
    const ProcessMemory mem = read_process_memory();
    n.rss = mem.rss;
    n.peak_rss = mem.peak_rss;
    s.nodes.push_back(n);
    return s;
}

float* LocalEngine::forward(const int* tokens, int n_tokens, int pos) {
    x_.resize(static_cast<size_t>(n_tokens) * config_.dim);
    embed_tokens(config_, weights_, tokens, n_tokens, x_.data());
    forward_layers(config_, weights_, kv_.front(), pos, n_tokens, x_.data(), ws_, pool_);
    compute_logits(config_, weights_, x_.data() + static_cast<size_t>(n_tokens - 1) * config_.dim, logits_.data(),
                   pos + n_tokens - 1, pool_);
    return logits_.data();
}

void LocalEngine::submit(Batch batch) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t dim = static_cast<size_t>(config_.dim), vocab = static_cast<size_t>(config_.vocab_size);
    std::vector<int> tokens;
    std::vector<RowRef> rows;
    std::vector<int> drawn_rows, drawn_pos;
    for (const SeqStep& s : batch.steps) {
        if (s.slot < 0 || s.slot >= slots()) throw Error("slot " + std::to_string(s.slot) + " of " + std::to_string(slots()));
        for (size_t t = 0; t < s.tokens.size(); ++t) {
            tokens.push_back(s.tokens[t]);
            rows.push_back(RowRef{&kv_[static_cast<size_t>(s.slot)], s.pos + static_cast<int>(t)});
        }
        if (s.draw) {
            drawn_rows.push_back(static_cast<int>(rows.size()) - 1);
            drawn_pos.push_back(rows.back().pos);
        }
    }
    const int n = static_cast<int>(rows.size());
    x_.resize(static_cast<size_t>(n) * dim);
    embed_tokens(config_, weights_, tokens.data(), n, x_.data());
    forward_rows(config_, weights_, rows.data(), n, x_.data(), ws_, pool_);
    // The drawn rows, gathered to the front in order, through the classifier at once.
    const int k = static_cast<int>(drawn_rows.size());
    for (int i = 0; i < k; ++i)
        if (drawn_rows[static_cast<size_t>(i)] != i)
            std::copy_n(x_.data() + static_cast<size_t>(drawn_rows[static_cast<size_t>(i)]) * dim, dim,
                        x_.data() + static_cast<size_t>(i) * dim);
    logits_.resize(std::max<size_t>(1, static_cast<size_t>(k)) * vocab);
    if (k > 0) compute_logits_rows(config_, weights_, x_.data(), k, logits_.data(), drawn_pos.data(), pool_);
    int i = 0;
    for (SeqStep& s : batch.steps)
        if (s.draw) s.token = s.sampler->sample(logits_.data() + static_cast<size_t>(i++) * vocab);
    stats_.compute_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    stats_.positions += static_cast<uint64_t>(n);
    ++stats_.requests;
    done_.push_back(std::move(batch));
}

Batch LocalEngine::wait() {
    if (done_.empty()) throw Error("no batch in flight");
    Batch b = std::move(done_.front());
    done_.pop_front();
    return b;
}

}  // namespace ferry
