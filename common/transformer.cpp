#include "common/transformer.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "kernels/kernels.h"

namespace ferry {

namespace k = kernels;

namespace {
// Floats of each Workspace buffer; the one place its size is decided.
struct WorkspaceSizes {
    size_t dim_buffers, kv_buffers, hidden_buffers, att;
    // xb, xb2 and q hold rows of the residual (dim) or of the queries (q_dim): the wider of the two.
    WorkspaceSizes(const ModelConfig& c, int max_batch, int ctx)
        : dim_buffers(static_cast<size_t>(max_batch) * std::max(c.dim, c.q_dim())),
          kv_buffers(static_cast<size_t>(max_batch) * c.kv_dim()),
          hidden_buffers(static_cast<size_t>(max_batch) * c.hidden_dim),
          att(static_cast<size_t>(max_batch) * c.n_heads * static_cast<size_t>(ctx)) {}
    uint64_t floats() const { return 3 * dim_buffers + 2 * kv_buffers + 2 * hidden_buffers + att; }
};
}  // namespace

Workspace::Workspace(const ModelConfig& c, int max_batch_, int ctx) : max_batch(max_batch_), context(ctx) {
    const WorkspaceSizes n(c, max_batch, ctx);
    xb.resize(n.dim_buffers);
    xb2.resize(n.dim_buffers);
    q.resize(n.dim_buffers);
    k.resize(n.kv_buffers);
    v.resize(n.kv_buffers);
    hb.resize(n.hidden_buffers);
    hb2.resize(n.hidden_buffers);
    att.resize(n.att);
}

uint64_t Workspace::bytes() const {
    return (xb.size() + xb2.size() + q.size() + k.size() + v.size() + hb.size() + hb2.size() + att.size()) *
           sizeof(float);
}

uint64_t Workspace::bytes_for(const ModelConfig& c, int max_batch, int ctx) {
    return WorkspaceSizes(c, max_batch, ctx).floats() * sizeof(float);
}

void check_token_id(const ModelConfig& c, int token) {
    if (token < 0 || token >= c.vocab_size)
        throw Error("token id " + std::to_string(token) + " is outside the vocabulary of " + std::to_string(c.vocab_size));
}

void embed_tokens(const ModelConfig& c, const Weights& w, const int* tokens, int n_tokens, float* x) {
    for (int t = 0; t < n_tokens; ++t) {
        check_token_id(c, tokens[t]);
        k::dequantize_row(w.token_embedding, tokens[t], x + static_cast<int64_t>(t) * c.dim);
    }
}

namespace {

void add_in_place(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

// B rows of `width` values: each += bias (a projection's bias: qwen2).
void add_bias(float* x, const float* bias, int B, int width) {
    for (int t = 0; t < B; ++t) add_in_place(x + static_cast<int64_t>(t) * width, bias, width);
}

void scale(float* x, float s, int64_t n) {
    if (s == 1.0f) return;
    for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

// RMSNorm of each of n vectors of `width` values in place, with one weight vector (qwen3's per-head norms, bitnet's sub-norms).
void norm_each(float* x, const float* weight, int64_t n, int width, float eps) {
    for (int64_t i = 0; i < n; ++i) k::rmsnorm(x + i * width, x + i * width, weight, width, eps);
}

// True if no value is NaN or Inf (all exponent bits set). Integer ops, so
// the loop vectorizes and costs a pass over memory already in cache.
bool all_finite(const float* x, int64_t n) {
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &x[i], 4);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

// The first of n rows of `width` values that holds a NaN or Inf.
int first_non_finite_row(const float* x, int n, int width) {
    for (int t = 0; t < n; ++t)
        if (!all_finite(x + static_cast<int64_t>(t) * width, width)) return t;
    return n;
}

// One transformer block over B rows, row t at rows[t].
void forward_block(const ModelConfig& c, const LayerWeights& L, const float* rope_freqs, int layer, const RowRef* rows,
                   int B, float* x, Workspace& ws, k::ThreadPool* pool) {
    const int dim = c.dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), hs = c.head_size(), hidden = c.hidden_dim;

    // Attention: norm, q/k/v projections (+ bias, scale), per-head norms,
    // rotate, append to the cache, attend.
    for (int t = 0; t < B; ++t) k::rmsnorm(&ws.xb[t * dim], &x[t * dim], L.attn_norm, dim, c.norm_eps);
    k::matmul(ws.q.data(), L.wq, ws.xb.data(), B, pool);
    k::matmul(ws.k.data(), L.wk, ws.xb.data(), B, pool);
    k::matmul(ws.v.data(), L.wv, ws.xb.data(), B, pool);
    if (L.bq) {
        add_bias(ws.q.data(), L.bq, B, q_dim);
        add_bias(ws.k.data(), L.bk, B, kv_dim);
        add_bias(ws.v.data(), L.bv, B, kv_dim);
    }
    scale(ws.q.data(), L.sq, static_cast<int64_t>(B) * q_dim);
    scale(ws.k.data(), L.sk, static_cast<int64_t>(B) * kv_dim);
    scale(ws.v.data(), L.sv, static_cast<int64_t>(B) * kv_dim);
    if (L.q_norm) {
        norm_each(ws.q.data(), L.q_norm, static_cast<int64_t>(B) * c.n_heads, hs, c.norm_eps);
        norm_each(ws.k.data(), L.k_norm, static_cast<int64_t>(B) * c.n_kv_heads, hs, c.norm_eps);
    }
    for (int t = 0; t < B; ++t) {
        if (c.neox_rope()) k::rope_neox(&ws.q[t * q_dim], &ws.k[t * kv_dim], q_dim, kv_dim, hs, rows[t].pos, c.rope_theta);
        else k::rope(&ws.q[t * q_dim], &ws.k[t * kv_dim], q_dim, kv_dim, hs, rows[t].pos, c.rope_theta, rope_freqs);
        rows[t].kv->store(layer, rows[t].pos, 1, &ws.k[t * kv_dim], &ws.v[t * kv_dim]);
    }
    const int64_t att_stride = static_cast<int64_t>(c.n_heads) * ws.context;
    auto attend = [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
            const KVCache& kv = *rows[t].kv;
            k::attention(&ws.xb[t * q_dim], &ws.att[t * att_stride], &ws.q[t * q_dim], kv.key_rows(layer),
                         kv.value_rows(layer), rows[t].pos, c.n_heads, c.n_kv_heads, hs);
        }
    };
    if (pool) pool->parallel_for(B, 1, attend);
    else attend(0, B);
    if (L.attn_sub_norm) norm_each(ws.xb.data(), L.attn_sub_norm, B, q_dim, c.norm_eps);
    k::matmul(ws.xb2.data(), L.wo, ws.xb.data(), B, pool);
    scale(ws.xb2.data(), L.so, static_cast<int64_t>(B) * dim);
    add_in_place(x, ws.xb2.data(), static_cast<int64_t>(B) * dim);

    // Feed-forward: norm, SwiGLU (+ scales, sub-norm), down projection.
    for (int t = 0; t < B; ++t) k::rmsnorm(&ws.xb[t * dim], &x[t * dim], L.ffn_norm, dim, c.norm_eps);
    k::matmul(ws.hb.data(), L.w1, ws.xb.data(), B, pool);
    k::matmul(ws.hb2.data(), L.w3, ws.xb.data(), B, pool);
    scale(ws.hb.data(), L.s1, static_cast<int64_t>(B) * hidden);
    scale(ws.hb2.data(), L.s3, static_cast<int64_t>(B) * hidden);
    k::swiglu(ws.hb.data(), ws.hb2.data(), B * hidden);
    if (L.ffn_sub_norm) norm_each(ws.hb.data(), L.ffn_sub_norm, B, hidden, c.norm_eps);
    k::matmul(ws.xb2.data(), L.w2, ws.hb.data(), B, pool);
    scale(ws.xb2.data(), L.s2, static_cast<int64_t>(B) * dim);
    add_in_place(x, ws.xb2.data(), static_cast<int64_t>(B) * dim);
}

}  // namespace

void forward_rows(const ModelConfig& c, const Weights& w, const RowRef* rows, int n, float* x, Workspace& ws,
                  k::ThreadPool* pool) {
    for (int t = 0; t < n; ++t)
        if (rows[t].pos < 0 || rows[t].pos >= rows[t].kv->seq_len() || rows[t].pos >= ws.context)
            throw Error("position " + std::to_string(rows[t].pos) + " does not fit the context of " +
                        std::to_string(std::min(rows[t].kv->seq_len(), ws.context)));
    for (int start = 0; start < n; start += ws.max_batch) {
        const int B = std::min(ws.max_batch, n - start);
        float* xc = x + static_cast<int64_t>(start) * c.dim;
        for (size_t l = 0; l < w.layers.size(); ++l) {
            forward_block(c, w.layers[l], w.rope_freqs, static_cast<int>(l), rows + start, B, xc, ws, pool);
            // A NaN or Inf weight spreads to every later value and makes the
            // sampler print garbage without a word: stop at the first layer.
            if (!all_finite(xc, static_cast<int64_t>(B) * c.dim))
                throw Error(w.source + ": non-finite activations after layer " +
                            std::to_string(w.spec.first_layer + static_cast<int>(l)) + " at position " +
                            std::to_string(rows[start + first_non_finite_row(xc, B, c.dim)].pos) +
                            ": does the model file hold NaN/Inf weights?");
        }
    }
}

void forward_layers(const ModelConfig& c, const Weights& w, KVCache& kv, int pos, int n_tokens, float* x, Workspace& ws,
                    k::ThreadPool* pool) {
    if (pos < 0 || n_tokens < 0 || pos + n_tokens > kv.seq_len())
        throw Error("positions " + std::to_string(pos) + ".." + std::to_string(pos + n_tokens) +
                    " do not fit the context of " + std::to_string(kv.seq_len()));
    std::vector<RowRef> rows(static_cast<size_t>(n_tokens));
    for (int t = 0; t < n_tokens; ++t) rows[static_cast<size_t>(t)] = RowRef{&kv, pos + t};
    forward_rows(c, w, rows.data(), n_tokens, x, ws, pool);
}

void compute_logits(const ModelConfig& c, const Weights& w, float* x, float* logits, int pos, k::ThreadPool* pool) {
    compute_logits_rows(c, w, x, 1, logits, &pos, pool);
}

void compute_logits_rows(const ModelConfig& c, const Weights& w, float* x, int n, float* logits, const int* pos,
                         k::ThreadPool* pool) {
    for (int t = 0; t < n; ++t) {
        float* xt = x + static_cast<int64_t>(t) * c.dim;
        k::rmsnorm(xt, xt, w.output_norm, c.dim, c.norm_eps);
    }
    k::matmul(logits, w.classifier, x, n, pool);
    const int bad = first_non_finite_row(logits, n, static_cast<int>(w.classifier.rows));
    if (bad < n)
        throw Error(w.source + ": non-finite logits at position " + std::to_string(pos[bad]) +
                    ": does the classifier (output.weight or token_embd.weight) hold NaN/Inf weights?");
}

}  // namespace ferry
