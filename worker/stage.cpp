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
           a.norm_eps == b.norm_eps && a.rope_theta == b.rope_theta && a.rope_freq_factors == b.rope_freq_factors &&
           a.arch == b.arch && a.head_dim == b.head_dim && a.projection_scales == b.projection_scales;
}
}  // namespace

Stage::Stage(const std::string& path, const ModelConfig& expected, const StageSetup& setup)
    : file_(open_model_file(path)), setup_(setup) {
    // A shard without layers holds no RoPE factors (rope_freqs.weight), and needs none.
    ModelConfig want = expected;
    if (setup.spec.last_layer == setup.spec.first_layer) {
        want.rope_freq_factors = file_.config.rope_freq_factors;
        want.projection_scales = file_.config.projection_scales;  // likewise the scales of bitnet's projections
    }
    if (!same_shape(file_.config, want))
        throw Error(path + ": its shapes differ from the coordinator's model (dim " + std::to_string(file_.config.dim) +
                    " vs " + std::to_string(expected.dim) + ", layers " + std::to_string(file_.config.n_layers) +
                    " vs " + std::to_string(expected.n_layers) + ", RoPE frequency factors " +
                    (file_.config.rope_freq_factors ? "yes" : "no") + " vs " + (expected.rope_freq_factors ? "yes" : "no") +
                    ", architecture " + arch_name(file_.config.arch) + " vs " + arch_name(expected.arch) + ", head length " +
                    std::to_string(file_.config.head_size()) + " vs " + std::to_string(expected.head_size()) +
                    "); delete it from the cache or the model dir");
    weights_ = bind_weights(file_.config, setup.spec, file_.tensors, file_.map.data(), path);
    weight_bytes_ = shard_weight_bytes(weights_);
    if (setup.spec.has_slice() && weights_.classifier.data != weights_.token_embedding.data)
        slice_bytes_ = static_cast<uint64_t>(tensor_bytes(weights_.classifier.type, weights_.classifier.rows,
                                                          weights_.classifier.cols, weights_.classifier.group));
    weight_type_ = dominant_tensor_type(file_);
    const int layers = setup.spec.last_layer - setup.spec.first_layer;
    for (int i = 0; i < std::max(1, setup.slots); ++i)
        kv_.emplace_back(layers, setup.context, file_.config.kv_dim(), setup.kv_type);
    if (layers > 0) ws_ = Workspace(file_.config, kMaxBatch, setup.context);  // what shard_memory counts
}

namespace {

// The Forward's rows as spans: its own, or the one sequence a Forward
// without spans carries.
std::vector<wire::Span> spans_of(const wire::Forward& in) {
    if (in.spans_size() > 0) return {in.spans().begin(), in.spans().end()};
    wire::Span s;
    s.set_seq_id(in.seq_id());
    s.set_pos(in.pos());
    s.set_n_tokens(in.n_tokens());
    s.set_result_needed(in.result_needed());
    *s.mutable_sampling() = in.sampling();
    return {s};
}

}  // namespace

bool Stage::run(const wire::Forward& in, wire::Frame& out, kernels::ThreadPool* pool, std::atomic<int>& done) {
    const ModelConfig& c = file_.config;
    const int n = in.n_tokens();
    const std::string request = "request " + std::to_string(in.request_id());
    if (n < 1) throw Error(request + ": " + std::to_string(n) + " positions");
    if (setup_.max_positions > 0 && n > setup_.max_positions)
        throw Error(request + ": " + std::to_string(n) + " positions in one request, but the assignment promised at most " +
                    std::to_string(setup_.max_positions) + " (its memory was counted for that)");
    const std::vector<wire::Span> spans = spans_of(in);
    rows_.clear();
    last_rows_.clear();
    for (const wire::Span& sp : spans) {
        if (sp.seq_id() >= kv_.size())
            throw Error(request + ": sequence " + std::to_string(sp.seq_id()) + ", but this stage holds " +
                        std::to_string(kv_.size()) + " (Assign.slots)");
        if (sp.n_tokens() < 1 || sp.n_tokens() > n - static_cast<int>(rows_.size()) || sp.pos() < 0 ||
            sp.pos() > setup_.context - sp.n_tokens())
            throw Error(request + ": positions " + std::to_string(sp.pos()) + ".." +
                        std::to_string(static_cast<int64_t>(sp.pos()) + sp.n_tokens()) + " of sequence " +
                        std::to_string(sp.seq_id()) + " do not fit the context of " + std::to_string(setup_.context) +
                        " or the request's " + std::to_string(n) + " positions");
        for (int t = 0; t < sp.n_tokens(); ++t) rows_.push_back(RowRef{&kv_[sp.seq_id()], sp.pos() + t});
        if (sp.result_needed()) last_rows_.push_back(static_cast<int>(rows_.size()) - 1);
    }
    if (static_cast<int>(rows_.size()) != n)
        throw Error(request + ": its spans hold " + std::to_string(rows_.size()) + " positions, not " + std::to_string(n));
    const size_t dim = static_cast<size_t>(c.dim);
    x_.resize(static_cast<size_t>(n) * dim);
    if (setup_.spec.embedding) {
        if (in.tokens_size() != n)
            throw Error(request + ": " + std::to_string(in.tokens_size()) + " token ids for " + std::to_string(n) +
                        " positions");
        embed_tokens(c, weights_, in.tokens().data(), n, x_.data());
    } else if (!net::decode_values(in.activations(), in.wire(), x_.size(), x_.data())) {
        throw Error(request + ": " + std::to_string(in.activations().size()) + " activation bytes, expected " +
                    std::to_string(x_.size() * net::wire_value_bytes(in.wire())));
    }
    done = 0;
    // Kernel-sized chunks so heartbeats can report progress on a long prefill.
    for (int start = 0; start < n; start += kMaxBatch) {
        const int b = std::min(kMaxBatch, n - start);
        forward_rows(c, weights_, rows_.data() + start, b, x_.data() + static_cast<size_t>(start) * dim, ws_, pool);
        done = start + b;
    }

    if (!setup_.last) {
        wire::Forward* f = out.mutable_forward();
        f->set_request_id(in.request_id());
        f->set_seq_id(in.seq_id());
        f->set_pos(in.pos());
        f->set_n_tokens(n);
        f->set_want(in.want());
        *f->mutable_sampling() = in.sampling();
        f->set_result_needed(in.result_needed());
        *f->mutable_spans() = in.spans();
        *f->mutable_trace() = in.trace();
        f->set_wire(setup_.wire);
        f->set_activations(net::encode_values(x_.data(), x_.size(), setup_.wire));
        return true;
    }
    wire::Result* r = out.mutable_result();
    r->set_request_id(in.request_id());
    *r->mutable_trace() = in.trace();
    // A prefill micro-batch that is not the last: only the trace goes back.
    if (last_rows_.empty()) return true;
    // The answered rows, gathered to the front of x_ (in order, so no row is overwritten before it is read).
    const int k = static_cast<int>(last_rows_.size());
    for (int i = 0; i < k; ++i)
        if (last_rows_[i] != i) std::copy_n(x_.data() + last_rows_[i] * dim, dim, x_.data() + i * dim);
    if (in.want() == wire::WANT_ACTIVATION) {
        r->set_wire(setup_.wire);
        r->set_activation(net::encode_values(x_.data(), static_cast<size_t>(k) * dim, setup_.wire));
        return true;
    }
    if (!setup_.spec.head) throw Error(request + " asks for logits, but this stage has no head");
    const size_t vocab = static_cast<size_t>(c.vocab_size);
    logits_.resize(static_cast<size_t>(k) * vocab);
    std::vector<int> positions;
    for (int row : last_rows_) positions.push_back(rows_[row].pos);
    compute_logits_rows(c, weights_, x_.data(), k, logits_.data(), positions.data(), pool);
    if (in.want() == wire::WANT_LOGITS) {
        r->set_logits(net::encode_values(logits_.data(), logits_.size(), wire::WIRE_F32));
        return true;
    }
    // Each sequence's sampler state travels with the request, so this draw is
    // the very one the coordinator would make.
    int i = 0;
    for (const wire::Span& sp : spans) {
        if (!sp.result_needed()) continue;
        Sampler sampler(c.vocab_size, SamplerParams{sp.sampling().temperature(), sp.sampling().topp(),
                                                    sp.sampling().rng_state()});
        const int token = sampler.sample(logits_.data() + static_cast<size_t>(i++) * vocab);
        if (in.spans_size() == 0) {
            r->set_token(token);
            r->set_rng_state(sampler.rng_state());
        } else {
            wire::SpanResult* sr = r->add_spans();
            sr->set_seq_id(sp.seq_id());
            sr->set_token(token);
            sr->set_rng_state(sampler.rng_state());
        }
    }
    return true;
}

void Stage::classify(const wire::Classify& in, wire::Classified& out, kernels::ThreadPool* pool) {
    const ModelConfig& c = file_.config;
    const ShardSpec& spec = setup_.spec;
    const std::string request = "classify request " + std::to_string(in.request_id());
    if (!spec.has_slice()) throw Error(request + ", but this worker holds no vocabulary slice");
    const int k = in.rows();
    if (k < 1 || k > std::max(1, setup_.slots))
        throw Error(request + ": " + std::to_string(k) + " rows, but this slice answers 1.." +
                    std::to_string(std::max(1, setup_.slots)) + " (Assign.slots)");
    const size_t dim = static_cast<size_t>(c.dim), rows = static_cast<size_t>(spec.vocab_last - spec.vocab_first);
    x_.resize(static_cast<size_t>(k) * dim);
    if (!net::decode_values(in.hidden(), wire::WIRE_F32, x_.size(), x_.data()))
        throw Error(request + ": " + std::to_string(in.hidden().size()) + " bytes of hidden state, expected " +
                    std::to_string(x_.size() * 4));
    logits_.resize(static_cast<size_t>(k) * rows);
    const std::vector<int> positions(static_cast<size_t>(k), 0);
    compute_logits_rows(c, weights_, x_.data(), k, logits_.data(), positions.data(), pool);
    out.set_request_id(in.request_id());
    if (in.logits()) {
        out.set_logits(net::encode_values(logits_.data(), logits_.size(), wire::WIRE_F32));
        return;
    }
    for (int t = 0; t < k; ++t) {
        const float* row = logits_.data() + static_cast<size_t>(t) * rows;
        const int best = argmax(row, static_cast<int>(rows));
        out.add_best_value(row[best]);
        out.add_best_index(spec.vocab_first + best);
    }
}

}  // namespace ferry::worker
