#include "common/tokenizer_loader.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <limits>

#include "common/error.h"

namespace ferry {

namespace {

// A token id key: absent, negative or past the vocabulary means "none" (files
// write 0xFFFFFFFF or -1 for that). Any other id past the vocabulary is a
// damaged or foreign key: said once, as ferry then does without the token.
int token_id_key(const GgufFile& g, const char* key, int fallback, int n_tokens) {
    const GgufValue* v = g.find(key);
    if (!v) return fallback;
    const std::optional<int64_t> id = v->type == GgufType::BOOL ? std::nullopt : v->as_int();
    if (!id) g.fail("metadata " + std::string(key) + " should be a token id, it is " + v->describe());
    if (*id >= 0 && *id < n_tokens) return static_cast<int>(*id);
    if (*id != -1 && *id != 0xFFFFFFFFll)
        spdlog::warn("{}: metadata {} = {} is outside the vocabulary of {} tokens; ferry runs without that token",
                     g.path, key, *id, n_tokens);
    return -1;
}

// The name llama.cpp's converter writes for each split, first in each list.
bool parse_pre_tokenizer(std::string_view name, PreTokenizer* out) {
    for (const char* n : {"gpt-2", "gpt2", "phi-2"})
        if (name == n) return *out = PreTokenizer::gpt2, true;
    for (const char* n : {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"})
        if (name == n) return *out = PreTokenizer::llama3, true;
    if (name == "smollm") return *out = PreTokenizer::smollm, true;
    for (const char* n : {"qwen2", "stablelm2", "hunyuan"})
        if (name == n) return *out = PreTokenizer::qwen2, true;
    return false;
}

const char* pre_tokenizer_name(PreTokenizer p) {
    switch (p) {
        case PreTokenizer::gpt2: return "gpt-2";
        case PreTokenizer::llama3: return "llama-bpe";
        case PreTokenizer::smollm: return "smollm";
        case PreTokenizer::qwen2: return "qwen2";
    }
    return "default";
}

}  // namespace

Tokenizer tokenizer_from_gguf(const GgufFile& g) {
    const std::optional<std::string_view> model = g.get_string("tokenizer.ggml.model");
    if (!model)
        g.fail("missing required metadata tokenizer.ggml.model (no vocabulary inside; give a tokenizer with -z)");
    Vocabulary v;
    if (*model == "llama") {
        v.kind = TokenizerKind::spm;
    } else if (*model == "gpt2") {
        v.kind = TokenizerKind::bpe;
    } else {
        g.fail("tokenizer.ggml.model '" + std::string(*model) + "' is not supported (ferry reads 'llama' and 'gpt2')");
    }
    const GgufValue* tokens = g.get_array("tokenizer.ggml.tokens", GgufType::STRING);
    if (!tokens) g.fail("missing required metadata tokenizer.ggml.tokens");
    if (tokens->count == 0 || tokens->count > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
        g.fail("tokenizer.ggml.tokens has " + std::to_string(tokens->count) + " tokens");
    const int n = static_cast<int>(tokens->count);
    for (const GgufValue& s : tokens->elements()) v.pieces.emplace_back(s.str);

    if (const GgufValue* scores = g.find("tokenizer.ggml.scores")) {
        if (!scores->is_array() || scores->count != tokens->count || !scores->float_at(0))
            g.fail("tokenizer.ggml.scores should be " + std::to_string(n) + " numbers, it is " + scores->describe());
        v.scores.resize(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) v.scores[i] = static_cast<float>(*scores->float_at(i));
    }
    if (const GgufValue* types = g.find("tokenizer.ggml.token_type")) {
        if (!types->is_array() || types->count != tokens->count || !types->int_at(0))
            g.fail("tokenizer.ggml.token_type should be " + std::to_string(n) + " integers, it is " +
                   types->describe());
        v.types.resize(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) {
            const int64_t t = *types->int_at(i);
            v.types[i] = t >= 0 && t <= 6 ? static_cast<TokenType>(t) : TokenType::undefined;
        }
    }
    if (v.kind == TokenizerKind::bpe) {
        const GgufValue* merges = g.get_array("tokenizer.ggml.merges", GgufType::STRING);
        if (!merges) g.fail("missing required metadata tokenizer.ggml.merges (a 'gpt2' vocabulary needs its merges)");
        for (const GgufValue& merge : merges->elements()) {
            const std::string_view m = merge.str;
            // "left right"; the split is the first space after the first
            // character, as a piece may itself begin with a space.
            const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
            if (sp == std::string_view::npos)
                g.fail("tokenizer.ggml.merges entry '" + std::string(m) + "' has no space");
            v.merges.emplace_back(m);
            v.merges.back()[sp] = ' ';
        }
        const std::string_view pre = g.get_string("tokenizer.ggml.pre").value_or("default");
        if (!parse_pre_tokenizer(pre, &v.pre))
            g.fail("tokenizer.ggml.pre '" + std::string(pre) +
                   "' is not supported (ferry knows gpt-2, llama-bpe/llama3, qwen2 and smollm)");
        v.add_bos = v.pre == PreTokenizer::llama3;
    } else {
        v.add_bos = true;
        v.add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
    }
    const bool spm = v.kind == TokenizerKind::spm;
    v.bos = token_id_key(g, "tokenizer.ggml.bos_token_id", spm ? 1 : -1, n);
    v.eos = token_id_key(g, "tokenizer.ggml.eos_token_id", spm ? 2 : -1, n);
    v.unk = token_id_key(g, "tokenizer.ggml.unknown_token_id", spm ? 0 : -1, n);
    v.eot = token_id_key(g, "tokenizer.ggml.eot_token_id", -1, n);
    v.eom = token_id_key(g, "tokenizer.ggml.eom_token_id", -1, n);
    v.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
    v.add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
    if (v.add_bos && v.bos < 0) v.add_bos = false;
    try {
        return Tokenizer(std::move(v));
    } catch (const Error& e) {
        g.fail(e.what());
    }
}

void add_vocabulary_to_gguf(GgufWriter& w, const Vocabulary& v) {
    if (v.kind == TokenizerKind::llama2c)
        throw Error("a llama2.c vocabulary cannot go into GGUF as it is; convert it with spm_vocabulary_from_llama2c");
    const bool spm = v.kind == TokenizerKind::spm;
    w.add_string("tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (!spm) w.add_string("tokenizer.ggml.pre", pre_tokenizer_name(v.pre));
    w.add_string_array("tokenizer.ggml.tokens", v.pieces);
    if (!v.scores.empty()) w.add_f32_array("tokenizer.ggml.scores", v.scores);
    if (!v.types.empty()) {
        std::vector<int32_t> types;
        for (TokenType t : v.types) types.push_back(static_cast<int32_t>(t));
        w.add_i32_array("tokenizer.ggml.token_type", types);
    }
    if (!spm) w.add_string_array("tokenizer.ggml.merges", v.merges);
    const std::pair<const char*, int> ids[] = {{"tokenizer.ggml.bos_token_id", v.bos},
                                               {"tokenizer.ggml.eos_token_id", v.eos},
                                               {"tokenizer.ggml.unknown_token_id", v.unk},
                                               {"tokenizer.ggml.eot_token_id", v.eot},
                                               {"tokenizer.ggml.eom_token_id", v.eom}};
    for (const auto& [key, id] : ids)
        if (id >= 0) w.add_u32(key, static_cast<uint32_t>(id));
    w.add_bool("tokenizer.ggml.add_bos_token", v.add_bos);
    w.add_bool("tokenizer.ggml.add_eos_token", v.add_eos);
    if (spm && !v.add_space_prefix) w.add_bool("tokenizer.ggml.add_space_prefix", false);
}

Vocabulary spm_vocabulary_from_llama2c(const Vocabulary& in) {
    Vocabulary v;
    v.kind = TokenizerKind::spm;
    v.scores = in.scores;
    v.bos = in.bos;
    v.eos = in.eos;
    v.unk = 0;
    v.add_bos = true;
    for (size_t id = 0; id < in.pieces.size(); ++id) {
        std::string piece = in.pieces[id];
        TokenType type = TokenType::normal;
        unsigned int byte;
        char close;
        if (static_cast<int>(id) == v.unk) {
            piece = "<unk>", type = TokenType::unknown;
        } else if (static_cast<int>(id) == v.bos) {
            piece = "<s>", type = TokenType::control;
        } else if (static_cast<int>(id) == v.eos) {
            piece = "</s>", type = TokenType::control;
        } else if (piece.empty()) {
            type = TokenType::control;
        } else if (piece.size() == 6 && std::sscanf(piece.c_str(), "<0x%2X%c", &byte, &close) == 2 && close == '>') {
            type = TokenType::byte;
        } else {
            std::string escaped;
            for (char c : piece) escaped += c == ' ' ? std::string("\xE2\x96\x81") : std::string(1, c);
            piece = std::move(escaped);
        }
        v.pieces.push_back(std::move(piece));
        v.types.push_back(type);
    }
    return v;
}

Tokenizer load_tokenizer(const ModelFile& model, const std::string& tokenizer_path, bool force) {
    if (tokenizer_path.empty() && model.gguf) return tokenizer_from_gguf(*model.gguf);
    std::string path = tokenizer_path;
    if (path.empty()) path = (std::filesystem::path(model.path).parent_path() / "tokenizer.bin").string();
    return Tokenizer::load_llama2c(path, model.config.vocab_size, force);
}

}  // namespace ferry
