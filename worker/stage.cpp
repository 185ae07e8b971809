#include "worker/stage.h"

#include <algorithm>

#include "common/error.h"
#include "common/net/values.h"
#include "common/sampler.h"

namespace ferry::worker {

namespace {
bool same_shape(const ModelConfig& a, const ModelConfig& b) {
    return a.dim == b.dim && a.hidden_dim == b.hidden_dim && a.n_layers == b.n_layers && a.n_heads == b.n_heads &&
           a.n_kv_heads == b.n_kv_heads && a.vocab_size == b.vocab_size && a.seq_len == b.seq_len &&
           a.norm_eps == b.norm_eps && a.rope_theta == b.rope_theta && a.rope_freq_factors == b.rope_freq_factors;
}
}  // namespace

Stage::Stage(const std::string& path, const ModelConfig& expected, const StageSetup& setup)
    : file_(open_model_file(path)), setup_(setup) {
    // A shard without layers holds no RoPE factors (rope_freqs.weight), and needs none.
    ModelConfig want = expected;
    if (setup.spec.last_layer == setup.spec.first_layer) want.rope_freq_factors = file_.config.rope_freq_factors;
    if (!same_shape(file_.config, want))
        throw Error(path + ": its shapes differ from the coordinator's model (dim " + std::to_string(file_.config.dim) +
                    " vs " + std::to_string(expected.dim) + ", layers " + std::to_string(file_.config.n_layers) +
                    " vs " + std::to_string(expected.n_layers) + ", RoPE frequency factors " +
                    (file_.config.rope_freq_factors ? "yes" : "no") + " vs " + (expected.rope_freq_factors ? "yes" : "no") +
                    "); delete it from the cache or the model dir");
    weights_ = bind_weights(file_.config, setup.spec, file_.tensors, file_.map.data(), path);
    weight_bytes_ = shard_weight_bytes(weights_);
    weight_type_ = dominant_tensor_type(file_);
    const int layers = setup.spec.last_layer - setup.spec.first_layer;
    kv_ = KVCache(layers, setup.context, file_.config.kv_dim(), setup.kv_type);
    ws_ = Workspace(file_.config, kMaxBatch, setup.context);
    if (setup.spec.head) logits_.resize(static_cast<size_t>(file_.config.vocab_size));
}

bool Stage::run(const wire::Forward& in, wire::Frame& out, kernels::ThreadPool* pool, std::atomic<int>& done) {
    const ModelConfig& c = file_.config;
    const int n = in.n_tokens(), pos = in.pos();
    if (n < 1 || pos < 0 || pos > setup_.context - n)
        throw Error("request " + std::to_string(in.request_id()) + ": positions " + std::to_string(pos) + ".." +
                    std::to_string(pos + n) + " do not fit the context of " + std::to_string(setup_.context));
    if (setup_.max_positions > 0 && n > setup_.max_positions)
        throw Error("request " + std::to_string(in.request_id()) + ": " + std::to_string(n) +
                    " positions in one request, but the assignment promised at most " +
                    std::to_string(setup_.max_positions) + " (its memory was counted for that)");
    const size_t dim = static_cast<size_t>(c.dim);
    x_.resize(static_cast<size_t>(n) * dim);
    if (setup_.spec.embedding) {
        if (in.tokens_size() != n)
            throw Error("request " + std::to_string(in.request_id()) + ": " + std::to_string(in.tokens_size()) +
                        " token ids for " + std::to_string(n) + " positions");
        embed_tokens(c, weights_, in.tokens().data(), n, x_.data());
    } else if (!net::decode_values(in.activations(), in.wire(), x_.size(), x_.data())) {
        throw Error("request " + std::to_string(in.request_id()) + ": " + std::to_string(in.activations().size()) +
                    " activation bytes, expected " + std::to_string(x_.size() * net::wire_value_bytes(in.wire())));
    }
    done = 0;
    // Kernel-sized chunks so heartbeats can report progress on a long prefill.
    for (int start = 0; start < n; start += kMaxBatch) {
        const int b = std::min(kMaxBatch, n - start);
        forward_layers(c, weights_, kv_, pos + start, b, x_.data() + static_cast<size_t>(start) * dim, ws_, pool);
        done = start + b;
    }

    if (!setup_.last) {
        wire::Forward* f = out.mutable_forward();
        f->set_request_id(in.request_id());
        f->set_seq_id(in.seq_id());
        f->set_pos(pos);
        f->set_n_tokens(n);
        f->set_wire(setup_.wire);
        f->set_activations(net::encode_values(x_.data(), x_.size(), setup_.wire));
        f->set_want(in.want());
        *f->mutable_sampling() = in.sampling();
        f->set_result_needed(in.result_needed());
        *f->mutable_trace() = in.trace();
        return true;
    }
    wire::Result* r = out.mutable_result();
    r->set_request_id(in.request_id());
    *r->mutable_trace() = in.trace();
    // A prefill micro-batch that is not the last: only the trace goes back.
    if (!in.result_needed()) return true;
    float* last = x_.data() + static_cast<size_t>(n - 1) * dim;
    if (in.want() == wire::WANT_ACTIVATION) {
        r->set_wire(setup_.wire);
        r->set_activation(net::encode_values(last, dim, setup_.wire));
        return true;
    }
    if (!setup_.spec.head)
        throw Error("request " + std::to_string(in.request_id()) + " asks for logits, but this stage has no head");
    compute_logits(c, weights_, last, logits_.data(), pos + n - 1, pool);
    if (in.want() == wire::WANT_LOGITS) {
        r->set_logits(net::encode_values(logits_.data(), logits_.size(), wire::WIRE_F32));
        return true;
    }
    // The coordinator's sampler state travels with the request, so this draw is
    // the very one the coordinator would make.
    Sampler sampler(c.vocab_size, SamplerParams{in.sampling().temperature(), in.sampling().topp(),
                                                in.sampling().rng_state()});
    r->set_token(sampler.sample(logits_.data()));
    r->set_rng_state(sampler.rng_state());
    return true;
}

}  // namespace ferry::worker
