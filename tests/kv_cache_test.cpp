// KV cache types: storage round trips, sizes the memory planner relies on,
// and the effect of each type on a real model's greedy output.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "common/error.h"
#include "common/kv_cache.h"
#include "common/model_file.h"
#include "common/shard_memory.h"
#include "common/tokenizer_loader.h"
#include "common/transformer.h"
#include "common/weights.h"
#include "coordinator/generation/generate.h"
#include "coordinator/generation/local_engine.h"
#include "kernels/kernels.h"
#include "kernels/reference.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

TEST(KVCache, StoresAndReturnsRowsPerType) {
    const int layers = 2, ctx = 5, kv_dim = 64;
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.0f, 1.0f);
    std::vector<float> k(3 * kv_dim), v(3 * kv_dim);
    for (float& x : k) x = g(rng);
    for (float& x : v) x = g(rng);
    for (KvType type : {KvType::f32, KvType::f16, KvType::q8_0}) {
        KVCache cache(layers, ctx, kv_dim, type);
        EXPECT_EQ(cache.bytes(), KVCache::bytes_for(layers, ctx, kv_dim, type));
        cache.store(1, 2, 3, k.data(), v.data());
        const Matrix keys = cache.key_rows(1), values = cache.value_rows(1);
        ASSERT_EQ(keys.rows, ctx);
        ASSERT_EQ(keys.cols, kv_dim);
        EXPECT_EQ(static_cast<uint64_t>(tensor_bytes(keys.type, 1, kv_dim)), cache.row_bytes());
        std::vector<float> kr(ctx * kv_dim), vr(ctx * kv_dim);
        for (int p = 0; p < ctx; ++p) {
            kernels::dequantize_row(keys, p, &kr[p * kv_dim]);
            kernels::dequantize_row(values, p, &vr[p * kv_dim]);
        }
        // f16 keeps 11 significant bits; q8_0 rounds to 1/127 of a block's largest magnitude.
        const float tol = type == KvType::f32 ? 0.0f : type == KvType::f16 ? 2e-3f : 0.03f;
        for (int i = 0; i < 3 * kv_dim; ++i) {
            EXPECT_NEAR(kr[2 * kv_dim + i], k[i], tol * (1 + std::fabs(k[i]))) << kv_type_name(type);
            EXPECT_NEAR(vr[2 * kv_dim + i], v[i], tol * (1 + std::fabs(v[i]))) << kv_type_name(type);
        }
        for (int i = 0; i < 2 * kv_dim; ++i) EXPECT_EQ(kr[i], 0.0f) << "rows not stored stay zero";
    }
    EXPECT_EQ(KVCache::bytes_for(1, 10, 64, KvType::f16) * 2, KVCache::bytes_for(1, 10, 64, KvType::f32));
    EXPECT_EQ(KVCache::bytes_for(1, 10, 64, KvType::q8_0), 2u * 10 * 2 * 34);
}

TEST(KVCache, Q8NeedsWidthsOfWholeBlocks) {
    EXPECT_THROW(KVCache(1, 4, 48, KvType::q8_0), Error);
    KvType t;
    EXPECT_FALSE(parse_kv_type("q4", &t));
    EXPECT_TRUE(parse_kv_type("q8_0", &t));
}

std::vector<int> greedy_ids(KvType type) {
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    const Tokenizer tok = load_tokenizer(file, test::model_path("tok512.bin"));
    LocalEngine engine(file, 256, nullptr, type);
    Sampler sampler(file.config.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    std::FILE* devnull = std::fopen("/dev/null", "w");
    const GenerateResult r = generate(engine, tok, sampler, GenerateOptions{"", 256}, devnull);
    std::fclose(devnull);
    return r.ids;
}

int agreeing_prefix(const std::vector<int>& a, const std::vector<int>& b) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
    return static_cast<int>(i);
}

TEST(KVCache, SmallerTypesAgreeWithF32OnARealModel) {
    const std::vector<int> f32 = greedy_ids(KvType::f32);
    const int f16 = agreeing_prefix(f32, greedy_ids(KvType::f16));
    const int q8 = agreeing_prefix(f32, greedy_ids(KvType::q8_0));
    RecordProperty("f16_agreeing_tokens", f16);
    RecordProperty("q8_0_agreeing_tokens", q8);
    // Measured on stories260K: f16 agrees on all 257 ids, q8_0 on the first 115.
    EXPECT_EQ(f16, 257);
    EXPECT_GE(q8, 64);
}

// Greedy decoding of stories260K with a cache of `type`, one layer at a time
// (each layer its own one-layer cache), checking at every layer and position
// that attention over the cache's rows as stored equals, bit for bit,
// decoding every row to f32 first (how ferry computed it before attention read
// the rows in place). Returns the ids, BOS first.
std::vector<int> greedy_ids_checking_attention(KvType type, int steps) {
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    const ModelConfig& c = file.config;
    const Weights all =
        bind_weights(c, ShardSpec{0, c.n_layers, true, true}, file.tensors, file.map.data(), file.path);
    std::vector<Weights> layer(c.n_layers, all);
    std::vector<KVCache> cache;
    for (int l = 0; l < c.n_layers; ++l) {
        layer[l].layers = {all.layers[l]};
        cache.emplace_back(1, steps, c.kv_dim(), type);
    }
    Workspace ws(c, 1, steps);
    std::vector<float> x(c.dim), logits(c.vocab_size), got(c.dim), want(c.dim), att(c.n_heads * steps);
    Sampler sampler(c.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    std::vector<int> ids{1};
    for (int pos = 0; pos + 1 < steps; ++pos) {
        embed_tokens(c, all, &ids.back(), 1, x.data());
        for (int l = 0; l < c.n_layers; ++l) {
            forward_layers(c, layer[l], cache[l], pos, 1, x.data(), ws, nullptr);
            // ws.q still holds this layer's query (the feed-forward does not touch it).
            const Matrix keys = cache[l].key_rows(0), values = cache[l].value_rows(0);
            kernels::attention(got.data(), att.data(), ws.q.data(), keys, values, pos, c.n_heads, c.n_kv_heads,
                               c.head_size());
            kernels::reference::attention_rows(want.data(), ws.q.data(), keys, values, pos, c.n_heads,
                                               c.n_kv_heads, c.head_size());
            if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) {
                ADD_FAILURE() << kv_type_name(type) << ": attention differs at layer " << l << " position " << pos;
                return ids;
            }
        }
        compute_logits(c, all, x.data(), logits.data(), pos, nullptr);
        ids.push_back(sampler.sample(logits.data()));
    }
    return ids;
}

TEST(KVCache, EveryTypeGivesTheTokensOfDecodingTheWholeCache) {
    for (KvType type : {KvType::f32, KvType::f16, KvType::q8_0}) {
        const std::vector<int> checked = greedy_ids_checking_attention(type, 257);
        EXPECT_EQ(checked, greedy_ids(type)) << kv_type_name(type) << ": the engine's ids";
    }
}

TEST(ShardMemory, AddsUpTheParts) {
    const ModelFile f = open_model_file(test::model_path("stories260K.bin"));
    const ShardMemory all = shard_memory(f.config, f.tensors, ShardSpec{0, 5, true, true}, 512);
    const ShardMemory a = shard_memory(f.config, f.tensors, ShardSpec{0, 2, false, false}, 512);
    const ShardMemory b = shard_memory(f.config, f.tensors, ShardSpec{2, 5, false, false}, 512);
    EXPECT_EQ(all.weights, f.map.size() - 28 - 512 * 8 * 4) << "every weight byte except the header and RoPE tables";
    EXPECT_EQ(a.kv_cache + b.kv_cache, all.kv_cache);
    EXPECT_EQ(a.kv_cache, 2u * 2 * 512 * 32 * 4);
    const ShardMemory q8 = shard_memory(f.config, f.tensors, ShardSpec{0, 2, false, false}, 512, KvType::q8_0);
    EXPECT_LT(q8.kv_cache * 3, a.kv_cache);
    uint64_t v = 0;
    EXPECT_TRUE(parse_bytes("128M", &v));
    EXPECT_EQ(v, 128ull << 20);
    EXPECT_TRUE(parse_bytes("1.5G", &v));
    EXPECT_EQ(v, 3ull << 29);
    EXPECT_FALSE(parse_bytes("12Q", &v));
    EXPECT_FALSE(parse_bytes("", &v));
}

}  // namespace
}  // namespace ferry
