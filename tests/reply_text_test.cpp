// What a streaming client receives: whole UTF-8 characters only, nothing of
// a stop string, and the same text however it was cut into increments.
#include <gtest/gtest.h>

#include "common/tokenizer_loader.h"
#include "coordinator/serving/openai_api.h"
#include "coordinator/serving/reply_text.h"
#include "tests/test_support.h"

namespace ferry::test {
namespace {

TEST(ReplyText, Utf8WholePrefixHoldsBackAnUnfinishedCharacter) {
    EXPECT_EQ(utf8_whole_prefix("abc"), 3u);
    EXPECT_EQ(utf8_whole_prefix("ab\xE2\x82"), 2u);          // € cut after two of three bytes
    EXPECT_EQ(utf8_whole_prefix("ab\xE2\x82\xAC"), 5u);      // whole
    EXPECT_EQ(utf8_whole_prefix("\xF0\x9F\x98"), 0u);        // an emoji's first three bytes
    EXPECT_EQ(utf8_whole_prefix("x\xC3"), 1u);
    EXPECT_EQ(utf8_whole_prefix(""), 0u);
}

TEST(ReplyText, Utf8ValidReplacesWhatIsNotUtf8) {
    EXPECT_EQ(utf8_valid("plain"), "plain");
    EXPECT_EQ(utf8_valid("\xE2\x82\xAC"), "\xE2\x82\xAC");
    EXPECT_EQ(utf8_valid("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
    EXPECT_EQ(utf8_valid("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
    EXPECT_EQ(utf8_valid("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a UTF-16 surrogate
    EXPECT_EQ(utf8_valid("\xE2\x82"), "\xEF\xBF\xBD\xEF\xBF\xBD");
}

// Token ids of text under the stories tokenizer, BOS first.
struct Stories {
    Tokenizer tok = Tokenizer::load_llama2c(model_path("tok512.bin"), 512);
};

TEST(ReplyText, StreamedIncrementsJoinToTheWholeTextAndStopBeforeTheStopString) {
    Stories s;
    const std::vector<int> ids = s.tok.encode("Once upon a time, there was a little girl named Lily.", true, false);
    std::string whole;
    {
        ReplyText all(s.tok, {}, ids[0]);
        for (size_t i = 1; i < ids.size(); ++i) all.add(ids[i]);
        whole = all.finish();
    }
    ASSERT_EQ(whole, "Once upon a time, there was a little girl named Lily.");
    for (const std::string stop : {"little", "Lily", "e, t", "zzz"}) {
        ReplyText r(s.tok, {stop, "qqq"}, ids[0]);
        std::string streamed;
        size_t i = 1;
        for (; i < ids.size(); ++i) {
            const bool going = r.add(ids[i]);
            const std::string part = r.take();
            // Nothing sent ever holds the start of the stop string at its end.
            streamed += part;
            EXPECT_EQ(streamed.find(stop), std::string::npos) << stop;
            if (!going) break;
        }
        streamed += r.finish();
        const size_t at = whole.find(stop);
        EXPECT_EQ(streamed, whole.substr(0, at)) << stop;
        EXPECT_EQ(r.stopped(), at != std::string::npos);
    }
}

TEST(OpenAiRequest, ParsesWhatClientsSendAndRefusesTheRest) {
    Stories s;
    ApiContext ctx;
    ctx.model_id = "m";
    ctx.tokenizer = &s.tok;
    ctx.context = 64;
    ctx.chat_template = ChatTemplate::llama2;
    ApiError e;
    auto p = parse_request(Endpoint::completions,
                           R"({"model":"m","prompt":"Once","max_tokens":7,"temperature":0.5,"top_p":0.8,"seed":9,)"
                           R"("stop":["a","b"],"stream":true,"stream_options":{"include_usage":true},"user":"x"})",
                           ctx, &e);
    ASSERT_TRUE(p) << e.message;
    EXPECT_EQ(p->completion.max_tokens, 7);
    EXPECT_FLOAT_EQ(p->completion.sampling.temperature, 0.5f);
    EXPECT_FLOAT_EQ(p->completion.sampling.topp, 0.8f);
    EXPECT_EQ(p->completion.sampling.seed, 9u);
    EXPECT_EQ(p->completion.stop.size(), 2u);
    EXPECT_TRUE(p->stream);
    EXPECT_TRUE(p->include_usage);
    EXPECT_EQ(p->completion.prompt, s.tok.encode("Once", true, false));
    // Without a seed one is drawn (never 0: run.c's 0 means "the time").
    auto q = parse_request(Endpoint::completions, R"({"prompt":"x"})", ctx, &e);
    ASSERT_TRUE(q);
    EXPECT_NE(q->completion.sampling.seed, 0u);

    struct Bad {
        Endpoint endpoint;
        std::string body;
        int status;
        std::string param;
    };
    const std::vector<Bad> bad = {
        {Endpoint::completions, "", 400, ""},
        {Endpoint::completions, "[1,2]", 400, ""},
        {Endpoint::completions, R"({"prompt":"x","temperature":"hot"})", 400, "temperature"},
        {Endpoint::completions, R"({"prompt":"x","temperature":3})", 400, "temperature"},
        {Endpoint::completions, R"({"prompt":"x","max_tokens":0})", 400, "max_tokens"},
        {Endpoint::completions, R"({"prompt":"x","seed":1.5})", 400, "seed"},
        {Endpoint::completions, R"({"prompt":"x","stop":[1]})", 400, "stop"},
        {Endpoint::completions, R"({"prompt":"x","stop":["a","b","c","d","e"]})", 400, "stop"},
        {Endpoint::completions, R"({"prompt":"x","presence_penalty":1})", 400, "presence_penalty"},
        {Endpoint::completions, R"({"prompt":"x","stream":"yes"})", 400, "stream"},
        {Endpoint::completions, R"({"prompt":"x","model":"other"})", 404, "model"},
        {Endpoint::completions, R"({"messages":[]})", 400, "messages"},
        {Endpoint::chat, R"({"prompt":"x"})", 400, "prompt"},
        {Endpoint::chat, R"({"messages":[{"role":"assistant","content":"hi"}]})", 400, "messages[0]"},
        {Endpoint::chat, R"({"messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]})", 400, "messages[1]"},
        {Endpoint::chat, R"({"messages":[{"role":"user","content":[{"type":"image_url"}]}]})", 400, "messages[0].content"},
        {Endpoint::completions, "{\"prompt\":\"" + std::string(300, 'z') + " " + std::string(300, 'y') + "\"}", 400, "prompt"},
    };
    // A model without a known chat template: chat is refused saying so, completions still work.
    ApiContext no_template = ctx;
    no_template.chat_template.reset();
    no_template.no_template_reason = "the model names no chat template";
    ApiError why;
    EXPECT_FALSE(parse_request(Endpoint::chat, R"({"messages":[{"role":"user","content":"hi"}]})", no_template, &why));
    EXPECT_NE(why.message.find("no chat template"), std::string::npos) << why.message;
    EXPECT_TRUE(parse_request(Endpoint::completions, R"({"prompt":"hi"})", no_template, &why));
    for (const Bad& b : bad) {
        ApiError err;
        EXPECT_FALSE(parse_request(b.endpoint, b.body, ctx, &err)) << b.body;
        EXPECT_EQ(err.status, b.status) << b.body << ": " << err.message;
        if (!b.param.empty()) {
            EXPECT_EQ(err.param, b.param) << b.body << ": " << err.message;
        }
        EXPECT_FALSE(err.message.empty());
    }
}

TEST(OpenAiRequest, ChatTurnsBecomeTheTemplatesTokens) {
    Stories s;
    ApiContext ctx;
    ctx.model_id = "m";
    ctx.tokenizer = &s.tok;
    ctx.context = 512;
    ctx.chat_template = ChatTemplate::llama2;
    ctx.end_of_turn_ids = {s.tok.eos_id()};
    ApiError e;
    auto p = parse_request(Endpoint::chat,
                           R"({"messages":[{"role":"system","content":"Be kind."},{"role":"user","content":"Hi"},)"
                           R"({"role":"assistant","content":"Hello"},{"role":"user","content":"Tell a story"}]})",
                           ctx, &e);
    ASSERT_TRUE(p) << e.message;
    std::vector<int> want = s.tok.encode(render_user_turn(ChatTemplate::llama2, "Be kind.", "Hi", true), true, false);
    const std::vector<int> reply = s.tok.encode("Hello", false, false);
    want.insert(want.end(), reply.begin(), reply.end());
    want.push_back(s.tok.eos_id());
    const std::vector<int> turn2 = s.tok.encode(render_user_turn(ChatTemplate::llama2, "Be kind.", "Tell a story", false),
                                                bos_every_turn(ChatTemplate::llama2), false);
    want.insert(want.end(), turn2.begin(), turn2.end());
    EXPECT_EQ(p->completion.prompt, want);
}

}  // namespace
}  // namespace ferry::test
