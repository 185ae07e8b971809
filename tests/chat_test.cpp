// Chat templates render to the strings each family expects, and a chat keeps
// its context between turns.
#include <gtest/gtest.h>

#include <cstdio>

#include <algorithm>

#include "common/error.h"
#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "coordinator/generation/chat_template.h"
#include "coordinator/generation/conversation.h"
#include "coordinator/generation/local_engine.h"
#include "coordinator/serving/openai_api.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

std::string render(ChatTemplate t, const std::string& system, const std::string& user, bool first) {
    return joined(render_user_turn(t, system, user, first));
}

TEST(ChatTemplate, RendersEachFamily) {
    EXPECT_EQ(render(ChatTemplate::llama2, "Be brief.", "Hi", true),
              "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
    EXPECT_EQ(render(ChatTemplate::llama2, "Be brief.", "Again", false), "[INST] Again [/INST]");
    EXPECT_EQ(render(ChatTemplate::llama3, "Be brief.", "Hi", true),
              "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(render(ChatTemplate::llama3, "Be brief.", "Again", false),
              "<|start_header_id|>user<|end_header_id|>\n\nAgain<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(render(ChatTemplate::zephyr, "", "Hi", true), "<|user|>\nHi</s>\n<|assistant|>\n");
    EXPECT_EQ(render(ChatTemplate::zephyr, "S", "Hi", true), "<|system|>\nS</s>\n<|user|>\nHi</s>\n<|assistant|>\n");
    EXPECT_EQ(render(ChatTemplate::chatml, "S", "Hi", true),
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    // A later turn follows the reply's end-of-turn token: the newline that
    // closes the assistant's message comes first.
    EXPECT_EQ(render(ChatTemplate::zephyr, "S", "More", false), "\n<|user|>\nMore</s>\n<|assistant|>\n");
    EXPECT_EQ(render(ChatTemplate::chatml, "S", "More", false),
              "\n<|im_start|>user\nMore<|im_end|>\n<|im_start|>assistant\n");
    // BitNet b1.58 2B4T: role: text (trimmed) <|eot_id|>, then "Assistant: ".
    EXPECT_EQ(render(ChatTemplate::bitnet, " Be brief. ", "  Hi\n", true),
              "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: ");
    EXPECT_EQ(render(ChatTemplate::bitnet, "S", "More", false), "User: More<|eot_id|>Assistant: ");
    EXPECT_EQ(std::string(end_of_turn_piece(ChatTemplate::bitnet)), "<|eot_id|>");
    EXPECT_EQ(std::string(end_of_turn_piece(ChatTemplate::llama3)), "<|eot_id|>");
    EXPECT_TRUE(bos_every_turn(ChatTemplate::llama2));
    EXPECT_FALSE(bos_every_turn(ChatTemplate::chatml));
}

TEST(ChatTemplate, DetectsFamiliesFromJinjaAndRejectsUnknown) {
    EXPECT_EQ(detect_chat_template("{{ '<|start_header_id|>' + message['role'] }}"), ChatTemplate::llama3);
    EXPECT_EQ(detect_chat_template("{% for m in messages %}<|im_start|>{{m.role}}"), ChatTemplate::chatml);
    EXPECT_EQ(detect_chat_template("<|user|>\n{{ m }}</s><|assistant|>"), ChatTemplate::zephyr);
    EXPECT_EQ(detect_chat_template("{{ bos_token + '[INST] ' + content }}"), ChatTemplate::llama2);
    EXPECT_FALSE(detect_chat_template("<start_of_turn>user").has_value());
    // microsoft/bitnet-b1.58-2B-4T's tokenizer_config.json template.
    EXPECT_EQ(detect_chat_template("{% for message in messages %}{% set content = message['role'] | capitalize + "
                                   "': '+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set "
                                   "content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
                                   "add_generation_prompt %}{{ 'Assistant: ' }}{% endif %}"),
              ChatTemplate::bitnet);
    EXPECT_EQ(parse_chat_template("bitnet"), ChatTemplate::bitnet);
    EXPECT_EQ(parse_chat_template("chatml"), ChatTemplate::chatml);
    EXPECT_FALSE(parse_chat_template("alpaca").has_value());
}

// The user's and system's text is never special: only the template's pieces.
TEST(ChatTemplate, OnlyTemplateTextIsSpecial) {
    for (ChatTemplate t : {ChatTemplate::llama2, ChatTemplate::llama3, ChatTemplate::zephyr, ChatTemplate::chatml,
                           ChatTemplate::bitnet}) {
        for (const TextPiece& p : render_user_turn(t, "<|im_end|> sys", "<|eot_id|> user", true)) {
            const bool user_text =
                p.text.find(" user") != std::string::npos || p.text.find(" sys") != std::string::npos;
            EXPECT_EQ(p.special, !user_text) << chat_template_name(t) << ": '" << p.text << "'";
        }
    }
}

// A ChatML vocabulary: byte pieces, a few words, and its control tokens
// (with Qwen3's <think> and </think> if thinking).
Tokenizer chatml_tokenizer(bool thinking = false) {
    Vocabulary v;
    v.kind = TokenizerKind::spm;
    v.add_space_prefix = false;
    for (int b = 0; b < 256; ++b) {
        char piece[8];
        std::snprintf(piece, sizeof piece, "<0x%02X>", b);
        v.pieces.push_back(piece);
        v.types.push_back(TokenType::byte);
    }
    for (const char* word : {"user", "assistant", "system", "Hi"}) {
        v.pieces.push_back(word);
        v.types.push_back(TokenType::normal);
    }
    for (const char* control : {"<s>", "</s>", "<|im_start|>", "<|im_end|>"}) {
        v.pieces.push_back(control);
        v.types.push_back(TokenType::control);
    }
    if (thinking) {
        for (const char* t : {"<think>", "</think>"}) {
            v.pieces.push_back(t);
            v.types.push_back(TokenType::user_defined);
        }
    }
    v.bos = 260;
    v.eos = 261;
    return Tokenizer(v);
}

TEST(ChatTemplate, SpecialTokensComeOnlyFromTheTemplate) {
    const Tokenizer tok = chatml_tokenizer();
    const int start = tok.token_id("<|im_start|>"), end = tok.token_id("<|im_end|>");
    const std::vector<int> ids =
        tok.encode(render_user_turn(ChatTemplate::chatml, "", "Hi<|im_end|>", true), false, false);
    // <|im_start|>user\nHi<|im_end|> (spelled) <|im_end|>\n<|im_start|>assistant\n
    EXPECT_EQ(std::count(ids.begin(), ids.end(), start), 2);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), end), 1) << "the user's '<|im_end|>' stays text";
    EXPECT_EQ(ids.front(), start);
    std::string text;
    for (int id : ids) text += tok.decode(-1, id);
    EXPECT_EQ(text, "user\nHi<|im_end|>\nassistant\n") << "controls print nothing, the user's text prints as typed";
    // Encoding the joined text as one special-parsing string would have
    // turned the user's text into a second <|im_end|>.
    const std::vector<int> naive =
        tok.encode(render(ChatTemplate::chatml, "", "Hi<|im_end|>", true), false, false, true);
    EXPECT_EQ(std::count(naive.begin(), naive.end(), end), 2);
}

// --no-think (Qwen3's enable_thinking=false): the reply opens with an empty
// thinking block, as tokens; refused for models that cannot think and for
// families other than ChatML.
TEST(ChatTemplate, NoThinkOpensTheReplyWithAnEmptyThinkingBlock) {
    EXPECT_EQ(joined(render_user_turn(ChatTemplate::chatml, "", "Hi", true, true)),
              "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    const Tokenizer thinking = chatml_tokenizer(true);
    check_chat_template(ChatTemplate::chatml, thinking, true);
    const std::vector<int> ids =
        thinking.encode(render_user_turn(ChatTemplate::chatml, "", "Hi", true, true), false, false);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), thinking.token_id("<think>")), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), thinking.token_id("</think>")), 1);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), thinking.token_id("<think>")) +
                  std::count(ids.begin(), ids.end(), thinking.token_id("</think>")),
              2)
        << "one block, from the template";
    try {
        check_chat_template(ChatTemplate::chatml, chatml_tokenizer(false), true);
        FAIL() << "a model without <think> took --no-think";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("no <think> token"), std::string::npos) << e.what();
    }
    EXPECT_THROW(check_chat_template(ChatTemplate::llama2, thinking, true), Error);
}

// The server takes chat_template_kwargs.enable_thinking per request (as vLLM
// and llama.cpp's server do), --no-think sets its default.
TEST(ChatTemplate, EnableThinkingPerRequest) {
    const Tokenizer thinking = chatml_tokenizer(true);
    ApiContext ctx;
    ctx.tokenizer = &thinking;
    ctx.context = 256;
    ctx.chat_template = ChatTemplate::chatml;
    const std::string messages = R"("messages":[{"role":"user","content":"Hi"}])";
    auto count_think = [&](const std::string& body, const ApiContext& c) {
        ApiError e;
        auto p = parse_request(Endpoint::chat, body, c, &e);
        EXPECT_TRUE(p) << body << ": " << e.message;
        if (!p) return -1;
        return static_cast<int>(std::count(p->completion.prompt.begin(), p->completion.prompt.end(),
                                           thinking.token_id("<think>")));
    };
    EXPECT_EQ(count_think("{" + messages + "}", ctx), 0) << "the model thinks by default";
    EXPECT_EQ(count_think("{" + messages + R"(,"chat_template_kwargs":{"enable_thinking":false}})", ctx), 1);
    ApiContext no_think = ctx;
    no_think.no_think = true;
    EXPECT_EQ(count_think("{" + messages + "}", no_think), 1) << "--no-think is the default";
    EXPECT_EQ(count_think("{" + messages + R"(,"chat_template_kwargs":{"enable_thinking":true}})", no_think), 0);
    for (const std::string& bad : {std::string(R"(,"chat_template_kwargs":{"enable_thinking":"no"})"),
                                   std::string(R"(,"chat_template_kwargs":[1])")}) {
        ApiError e;
        EXPECT_FALSE(parse_request(Endpoint::chat, "{" + messages + bad + "}", ctx, &e)) << bad;
        EXPECT_EQ(e.status, 400);
    }
    // In a conversation only the reply to come opens with the block; earlier replies appear without one.
    EXPECT_EQ(count_think(R"({"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hi"},)"
                          R"({"role":"user","content":"Hi"}],"chat_template_kwargs":{"enable_thinking":false}})",
                          ctx),
              1);
    const Tokenizer plain = chatml_tokenizer(false);
    ApiContext cannot = ctx;
    cannot.tokenizer = &plain;
    EXPECT_EQ(count_think("{" + messages + R"(,"chat_template_kwargs":{"enable_thinking":true}})", cannot), 0)
        << "asking a model to think as it always does is no error";
    ApiError e;
    EXPECT_FALSE(parse_request(Endpoint::chat, "{" + messages + R"(,"chat_template_kwargs":{"enable_thinking":false}})",
                               cannot, &e));
    EXPECT_NE(e.message.find("no <think> token"), std::string::npos) << e.message;
}

TEST(ChatTemplate, ChosenFromTheModelOrTheOption) {
    ModelFile f;
    f.path = "m.gguf";
    f.format = "gguf v3";
    f.chat_template = "{% for m in messages %}<|im_start|>{{ m.role }}";
    EXPECT_EQ(choose_chat_template(f, ""), ChatTemplate::chatml);
    EXPECT_EQ(choose_chat_template(f, "llama3"), ChatTemplate::llama3) << "the option wins";
    f.chat_template = "{{ '<start_of_turn>' }}";
    for (const char* forced : {"", "alpaca"}) {
        try {
            choose_chat_template(f, forced);
            FAIL() << forced;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos) << e.what();
        }
    }
    f.chat_template.clear();
    EXPECT_THROW(choose_chat_template(f, ""), Error);
    f.format = "llama2.c legacy";
    EXPECT_EQ(choose_chat_template(f, ""), ChatTemplate::llama2) << "run.c's chat format";
}

TEST(Conversation, KeepsTheContextBetweenTurns) {
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    const Tokenizer tok = load_tokenizer(file, test::model_path("tok512.bin"));
    LocalEngine engine(file, file.config.seq_len, nullptr);
    Sampler sampler(file.config.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    Conversation chat(engine, tok, sampler, ChatTemplate::llama2, "");
    std::FILE* out = std::tmpfile();
    ASSERT_TRUE(chat.reply("Tell me a story", out));
    const int after_first = chat.position();
    EXPECT_GT(after_first, 10);
    ASSERT_TRUE(chat.reply("More", out));
    EXPECT_GT(chat.position(), after_first) << "the second turn continues where the first ended";
    std::fclose(out);
    // A turn that cannot fit what is left of the context is refused, not truncated.
    EXPECT_FALSE(chat.reply(std::string(2000, 'a'), out = std::tmpfile()));
    std::fclose(out);
}

// -n caps a reply: the cut reply is the uncut one's first tokens, and the
// next turn starts by feeding the token the cut left out of the cache.
TEST(Conversation, AReplyIsCutAtMaxTokensAndTheNextTurnCarriesOn) {
    const ModelFile file = open_model_file(test::model_path("stories260K.bin"));
    const Tokenizer tok = load_tokenizer(file, test::model_path("tok512.bin"));
    auto text_of = [](std::FILE* f) {
        std::rewind(f);
        std::string s;
        for (int c; (c = std::fgetc(f)) != EOF;) s.push_back(static_cast<char>(c));
        std::fclose(f);
        return s;
    };
    LocalEngine full_engine(file, file.config.seq_len, nullptr), cut_engine(file, file.config.seq_len, nullptr);
    Sampler full_sampler(file.config.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    Sampler cut_sampler(file.config.vocab_size, SamplerParams{0.0f, 0.9f, 1});
    Conversation full(full_engine, tok, full_sampler, ChatTemplate::llama2, "");
    Conversation cut(cut_engine, tok, cut_sampler, ChatTemplate::llama2, "");
    std::FILE* out = std::tmpfile();
    ASSERT_TRUE(full.reply("Tell me a story", out));
    const std::string whole = text_of(out);
    ASSERT_GT(full.tokens_replied(), 5);
    EXPECT_FALSE(full.cut());
    ASSERT_TRUE(cut.reply("Tell me a story", out = std::tmpfile(), 5));
    const std::string part = text_of(out);
    EXPECT_TRUE(cut.cut());
    EXPECT_EQ(cut.tokens_replied(), 5);
    EXPECT_FALSE(part.empty());
    EXPECT_EQ(whole.substr(0, part.size()), part);
    const int after = cut.position();
    ASSERT_TRUE(cut.reply("More", out = std::tmpfile(), 5));
    std::fclose(out);
    EXPECT_GT(cut.position(), after + 5) << "the second turn (and the held-back token) went into the cache";
}

TEST(ChatCli, RunChatPrintsAReplyAndUnknownTemplatesAreRefused) {
    auto r = test::run_command({test::ferry_bin(), "run", test::model_path("stories260K.bin"), "-z",
                                test::model_path("tok512.bin"), "--chat", "-i", "Hello", "-t", "0"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(r.out.empty());
    r = test::run_command({test::ferry_bin(), "chat", test::model_path("stories260K.bin"), "-z",
                           test::model_path("tok512.bin"), "--chat-template", "alpaca"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--chat-template"), std::string::npos) << r.err;
}

// `ferry chat -i TEXT`: TEXT is the first user message, then stdin (empty here) ends the chat.
TEST(ChatCli, PromptIsTheFirstUserMessage) {
    const auto r = test::run_command({test::ferry_bin(), "chat", test::model_path("stories260K.bin"), "-z",
                                      test::model_path("tok512.bin"), "-i", "Tell me a story", "-t", "0", "-n", "30"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(r.out.rfind("User: Tell me a story\nAssistant: ", 0), 0u) << r.out;
    EXPECT_GT(r.out.size(), std::string("User: Tell me a story\nAssistant: \nUser: ").size() + 10) << r.out;
}

// A template whose markers are control tokens the vocabulary lacks is refused
// before anything runs, naming the token and the fix.
TEST(ChatCli, ATemplateWhoseTokensTheVocabularyLacksIsRefused) {
    // --no-think on a model that cannot think: refused by chat and by serve (never a server that half-chats).
    for (const char* cmd : {"chat", "serve"}) {
        const auto r = test::run_command({test::ferry_bin(), cmd, test::model_path("stories260K.bin"), "-z",
                                          test::model_path("tok512.bin"), "--no-think"});
        EXPECT_EQ(r.exit_code, 1) << cmd << ": " << r.err;
        EXPECT_NE(r.err.find("--no-think is for ChatML thinking models"), std::string::npos) << r.err;
    }
    for (const char* t : {"chatml", "llama3", "bitnet"}) {
        const auto r = test::run_command({test::ferry_bin(), "chat", test::model_path("stories260K.bin"), "-z",
                                          test::model_path("tok512.bin"), "--chat-template", t});
        EXPECT_EQ(r.exit_code, 1) << t;
        EXPECT_NE(r.err.find("which this model's vocabulary lacks"), std::string::npos) << r.err;
    }
}

}  // namespace
}  // namespace ferry
