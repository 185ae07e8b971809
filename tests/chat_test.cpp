// Chat templates render to the strings each family expects, and a chat keeps
// its context between turns.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/model_file.h"
#include "common/tokenizer_loader.h"
#include "coordinator/chat_template.h"
#include "coordinator/conversation.h"
#include "coordinator/local_engine.h"
#include "tests/test_support.h"

namespace ferry {
namespace {

TEST(ChatTemplate, RendersEachFamily) {
    EXPECT_EQ(render_user_turn(ChatTemplate::llama2, "Be brief.", "Hi", true),
              "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
    EXPECT_EQ(render_user_turn(ChatTemplate::llama2, "Be brief.", "Again", false), "[INST] Again [/INST]");
    EXPECT_EQ(render_user_turn(ChatTemplate::llama3, "Be brief.", "Hi", true),
              "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n");
    EXPECT_EQ(render_user_turn(ChatTemplate::zephyr, "", "Hi", true), "<|user|>\nHi</s>\n<|assistant|>\n");
    EXPECT_EQ(render_user_turn(ChatTemplate::chatml, "S", "Hi", true),
              "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
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
    EXPECT_EQ(parse_chat_template("chatml"), ChatTemplate::chatml);
    EXPECT_FALSE(parse_chat_template("alpaca").has_value());
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

}  // namespace
}  // namespace ferry
