// `ferry serve` as users run it: a real server process on loopback, driven
// over HTTP (cpp-httplib's client, raw sockets, curl and the official openai
// npm client). Exactness: each reply equals `ferry run` alone with the same
// prompt and settings, whatever ran beside it, single process and across
// 2 and 3 workers.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/test_support.h"

namespace ferry::test {
namespace {

using nlohmann::json;

std::string stories() { return model_path("stories260K.bin"); }
std::string tok512() { return model_path("tok512.bin"); }

// A `ferry serve` process on 127.0.0.1:<free port>, stopped with SIGTERM.
class ServeProcess {
public:
    ServeProcess(const TempDir& dir, std::vector<std::string> extra, const std::string& model = stories(),
                 const std::string& tokenizer = tok512())
        : log_(dir.file("serve-" + std::to_string(++count_) + ".log")) {
        std::vector<std::string> argv = {ferry_bin(), "serve", model, "-z", tokenizer, "--listen", "127.0.0.1:0",
                                         "--chat-template", "llama2", "--log-level", "info"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::string why;
        pid_ = spawn(argv, fd, fd, &why);
        ::close(fd);
        if (pid_ < 0) throw std::runtime_error(why);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string text = read_file(log_);
            const size_t at = text.find("on http://127.0.0.1:");
            if (at != std::string::npos && text.find("/v1", at) != std::string::npos) {
                port_ = std::stoi(text.substr(at + 20));
                return;
            }
            int status = 0;
            if (waitpid(pid_, &status, WNOHANG) == pid_) {
                reaped_ = true;
                throw std::runtime_error("ferry serve ended (" + describe_exit(status) + "): " + text);
            }
            usleep(20000);
        }
        throw std::runtime_error("ferry serve did not start: " + read_file(log_));
    }
    ~ServeProcess() {
        if (!reaped_) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    int port() const { return port_; }
    int pid() const { return pid_; }
    std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }
    std::string log() const { return read_file(log_); }
    httplib::Client client() const {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(120, 0);
        return c;
    }
    // SIGTERM, then the exit code (-1 if it did not exit within timeout_s).
    int terminate(double timeout_s) {
        ::kill(pid_, SIGTERM);
        const int code = wait_exit(pid_, timeout_s);
        reaped_ = code >= 0;
        return code;
    }

private:
    static inline int count_ = 0;
    std::string log_;
    int pid_ = -1, port_ = 0;
    bool reaped_ = false;
};

struct Case {
    std::string prompt;
    float temperature;
    float topp;
    int seed;
    int max_tokens;
};

// Eight different requests: greedy and seeded, different lengths.
std::vector<Case> eight_cases() {
    return {{"Once upon a time", 0, 0.9f, 1, 120},   {"Tom had a red ball", 0.8f, 0.9f, 7, 90},
            {"The cat", 1.0f, 0.9f, 42, 150},        {"Lily and Ben", 0.5f, 0.5f, 3, 60},
            {"", 0, 0.9f, 1, 80},                    {"One day, a big dog", 1.0f, 1.0f, 99, 110},
            {"Sue wanted to", 0.9f, 0.8f, 1234, 40}, {"The sun was hot and", 0.7f, 0.95f, 5, 130}};
}

json completion_body(const Case& c, bool stream) {
    return {{"prompt", c.prompt}, {"temperature", c.temperature}, {"top_p", c.topp}, {"seed", c.seed},
            {"max_tokens", c.max_tokens}, {"echo", true}, {"stream", stream}};
}

// What `ferry run` prints for the case, without its final "\n": -n counts the
// prompt's positions (BOS and prompt) and the first token drawn after them.
std::string ferry_run_text(const Case& c, int prompt_tokens, int completion_tokens) {
    const CommandResult r = run_command({ferry_bin(), "run", stories(), "-z", tok512(), "-i", c.prompt, "-t",
                                         std::to_string(c.temperature), "-p", std::to_string(c.topp), "-s",
                                         std::to_string(c.seed), "-n",
                                         std::to_string(prompt_tokens + completion_tokens - 1)});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string out = r.out;
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
}

// The text of an SSE completion stream (data: lines until [DONE]); usage if sent.
std::string stream_text(const std::string& body, json* usage = nullptr, bool chat = false) {
    std::string text;
    size_t at = 0;
    bool done = false;
    while ((at = body.find("data: ", at)) != std::string::npos) {
        const size_t end = body.find("\n\n", at);
        const std::string data = body.substr(at + 6, end - at - 6);
        at = end;
        if (data == "[DONE]") {
            done = true;
            break;
        }
        const json j = json::parse(data);
        if (j.contains("usage") && usage) *usage = j["usage"];
        if (j["choices"].empty()) continue;
        const json& ch = j["choices"][0];
        if (chat) {
            if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
        } else {
            text += ch["text"].get<std::string>();
        }
    }
    EXPECT_TRUE(done) << "no data: [DONE] in " << body.substr(0, 400);
    return text;
}

// Sends the eight cases at once (half streamed) and checks each against ferry run alone.
void expect_concurrent_exact(const ServeProcess& server) {
    const std::vector<Case> cases = eight_cases();
    std::vector<std::future<std::pair<std::string, json>>> replies;
    for (size_t i = 0; i < cases.size(); ++i) {
        replies.push_back(std::async(std::launch::async, [&, i] {
            httplib::Client c = server.client();
            const bool stream = i % 2 == 1;
            auto res = c.Post("/v1/completions", completion_body(cases[i], stream).dump(), "application/json");
            if (!res || res->status != 200)
                return std::make_pair(std::string("HTTP failure ") + (res ? res->body : "no response"), json());
            if (!stream) {
                const json j = json::parse(res->body);
                return std::make_pair(j["choices"][0]["text"].get<std::string>(), j["usage"]);
            }
            return std::make_pair(stream_text(res->body), json());
        }));
    }
    for (size_t i = 0; i < cases.size(); ++i) {
        auto [text, usage] = replies[i].get();
        // Streamed replies carry no usage: the same request again, alone and not streamed, gives it.
        if (usage.is_null()) {
            auto res = server.client().Post("/v1/completions", completion_body(cases[i], false).dump(), "application/json");
            ASSERT_TRUE(res && res->status == 200);
            const json j = json::parse(res->body);
            EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), text) << "streamed and not streamed differ, case " << i;
            usage = j["usage"];
        }
        EXPECT_EQ(text, ferry_run_text(cases[i], usage["prompt_tokens"], usage["completion_tokens"]))
            << "case " << i << " (\"" << cases[i].prompt << "\")";
    }
}

TEST(Serve, ConcurrentRequestsEqualFerryRunAloneSingleProcess) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "4", "--threads", "1"});
    expect_concurrent_exact(server);
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(Serve, ConcurrentRequestsEqualFerryRunAloneAcross2Workers) {
    TempDir dir;
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    ServeProcess server(dir, {"--parallel", "8", "--workers", addresses({&a, &b}), "--split", "3,2",
                              "--head-on-worker", "--embedding-on-worker"});
    expect_concurrent_exact(server);
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(Serve, ConcurrentRequestsEqualFerryRunAloneAcross3WorkersHeadOnCoordinator) {
    TempDir dir;
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    WorkerProcess c({"--threads", "1", "--cache-dir", dir.file("cc")}, dir.file("c.log"));
    ServeProcess server(dir, {"--parallel", "3", "--workers", addresses({&a, &b, &c}), "--split", "1,2,2",
                              "--head-on-coordinator", "--embedding-on-coordinator", "--wire", "f32"});
    expect_concurrent_exact(server);
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

// The classifier in vocabulary slices on the three stages, and three
// batches in flight along the chain while the slices answer: the same
// replies (results of later batches that arrive meanwhile wait their turn).
TEST(Serve, ConcurrentRequestsEqualFerryRunAloneWithTheHeadInSlices) {
    TempDir dir;
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    WorkerProcess c({"--threads", "1", "--cache-dir", dir.file("cc")}, dir.file("c.log"));
    ServeProcess server(dir, {"--parallel", "8", "--workers", addresses({&a, &b, &c}), "--split", "1,2,2",
                              "--head-slices", "3"});
    expect_concurrent_exact(server);
    EXPECT_NE(server.log().find("classifier in 3 vocabulary slices"), std::string::npos) << server.log();
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(Serve, ChatReplyEqualsFerryRunChat) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "2"});
    const json body = {{"messages", json::array({{{"role", "user"}, {"content", "Tell me a story"}}})},
                       {"temperature", 0}, {"max_tokens", 50}};
    auto res = server.client().Post("/v1/chat/completions", body.dump(), "application/json");
    ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "no response");
    const json j = json::parse(res->body);
    const std::string content = j["choices"][0]["message"]["content"];
    const CommandResult run = run_command({ferry_bin(), "run", stories(), "-z", tok512(), "--chat", "-i",
                                           "Tell me a story", "-t", "0", "-n", "50"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_EQ(content + "\n", run.out);
    // The same request streamed gives the same text.
    json streamed = body;
    streamed["stream"] = true;
    auto s = server.client().Post("/v1/chat/completions", streamed.dump(), "application/json");
    ASSERT_TRUE(s && s->status == 200);
    EXPECT_EQ(stream_text(s->body, nullptr, true), content);
}

TEST(Serve, ErrorsAnswerWithOpenAiJsonAndTheServerKeepsServing) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "2", "--api-key", "k3y", "--max-body", "65536"});
    httplib::Client c = server.client();
    const httplib::Headers key = {{"Authorization", "Bearer k3y"}};
    struct Bad {
        std::string path, body;
        httplib::Headers headers;
        int status;
        std::string code;
    };
    const std::string long_prompt = json({{"prompt", std::string(4000, 'a') + " " + [] {
                                               std::string s;
                                               for (int i = 0; i < 600; ++i) s += "Once upon a time ";
                                               return s;
                                           }()}}).dump();
    const std::vector<Bad> bad = {
        {"/v1/completions", R"({"prompt":"x"})", {}, 401, "invalid_api_key"},
        {"/v1/completions", R"({"prompt":"x"})", {{"Authorization", "Bearer nope"}}, 401, "invalid_api_key"},
        {"/v1/completions", "{bad json", key, 400, ""},
        {"/v1/completions", R"({"prompt": 5})", key, 400, ""},
        {"/v1/completions", R"({"prompt":"x","max_tokens":"5"})", key, 400, ""},
        {"/v1/completions", R"({"prompt":"x","bogus":1})", key, 400, ""},
        {"/v1/completions", "{\"prompt\":\"\xff\xfe\"}", key, 400, ""},
        {"/v1/completions", R"({"prompt":"x","model":"gpt-4"})", key, 404, "model_not_found"},
        {"/v1/completions", R"({"prompt":"x","n":2})", key, 400, ""},
        {"/v1/completions", long_prompt, key, 400, "context_length_exceeded"},
        {"/v1/chat/completions", R"({"messages":[]})", key, 400, ""},
        {"/v1/chat/completions", R"({"messages":[{"role":"user"}]})", key, 400, ""},
        {"/v1/chat/completions", R"({"messages":[{"role":"wizard","content":"hi"}]})", key, 400, ""},
        {"/v1/nowhere", "{}", key, 404, ""},
        {"/v1/completions", std::string(70000, ' '), key, 413, ""},
    };
    for (const Bad& b : bad) {
        auto res = c.Post(b.path, b.headers, b.body, "application/json");
        ASSERT_TRUE(res) << b.body.substr(0, 80);
        EXPECT_EQ(res->status, b.status) << b.body.substr(0, 80) << " -> " << res->body;
        json j;
        ASSERT_NO_THROW(j = json::parse(res->body)) << res->body;
        EXPECT_TRUE(j["error"]["message"].is_string()) << res->body;
        EXPECT_TRUE(j["error"]["type"].is_string()) << res->body;
        if (!b.code.empty()) {
            EXPECT_EQ(j["error"]["code"], b.code) << res->body;
        }
    }
    EXPECT_EQ(c.Get("/health")->status, 200);  // no key needed
    EXPECT_EQ(c.Get("/v1/models")->status, 401);
    auto models = c.Get("/v1/models", key);
    ASSERT_TRUE(models && models->status == 200);
    EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "stories260K.bin");
    // Still serving.
    auto ok = c.Post("/v1/completions", key, R"({"prompt":"Once upon a time","temperature":0,"max_tokens":8})",
                     "application/json");
    ASSERT_TRUE(ok && ok->status == 200) << (ok ? ok->body : "");
    const json j = json::parse(ok->body);
    EXPECT_EQ(j["usage"]["completion_tokens"], 8);
    EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(Serve, StopStringsEndTheReplyBeforeThem) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "1"});
    httplib::Client c = server.client();
    auto full = c.Post("/v1/completions", R"({"prompt":"Once upon a time","temperature":0,"max_tokens":60})",
                       "application/json");
    ASSERT_TRUE(full && full->status == 200);
    const std::string text = json::parse(full->body)["choices"][0]["text"];
    const size_t lily = text.find("Lily");
    ASSERT_NE(lily, std::string::npos) << text;
    for (bool stream : {false, true}) {
        const json body = {{"prompt", "Once upon a time"}, {"temperature", 0}, {"max_tokens", 60},
                           {"stop", json::array({"Lily", "zzz"})}, {"stream", stream}};
        auto res = c.Post("/v1/completions", body.dump(), "application/json");
        ASSERT_TRUE(res && res->status == 200);
        if (stream) {
            EXPECT_EQ(stream_text(res->body), text.substr(0, lily));
            EXPECT_NE(res->body.find("\"finish_reason\":\"stop\""), std::string::npos);
        } else {
            const json j = json::parse(res->body);
            EXPECT_EQ(j["choices"][0]["text"], text.substr(0, lily));
            EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
        }
    }
}

// A TCP connection to the server that sends `request` and reads what comes.
int connect_loopback(int port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

TEST(Serve, AClientThatDisconnectsFreesItsSlotAtOnce) {
    TempDir dir;
    // A model slow enough that a 4000-token reply takes many seconds.
    const SynthModel m = synth_64mb_model(dir, 4096);
    ServeProcess server(dir, {"--parallel", "1", "--threads", "1", "--ctx", "4096"}, m.model, m.tokenizer);
    const int fd = connect_loopback(server.port());
    ASSERT_GE(fd, 0);
    const std::string body = R"({"prompt":"a","max_tokens":4000,"stream":true,"temperature":1,"seed":3})";
    const std::string req = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(::write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
    char buf[4096];
    std::string got;
    while (got.find("data: ") == std::string::npos) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        ASSERT_GT(n, 0);
        got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);  // gone mid-stream
    // The only slot is free again well before the first reply could have ended.
    const auto t0 = std::chrono::steady_clock::now();
    auto res = server.client().Post("/v1/completions", R"({"prompt":"b","max_tokens":4,"temperature":0})",
                                    "application/json");
    const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "");
    EXPECT_EQ(json::parse(res->body)["usage"]["completion_tokens"], 4);
    // Generating the rest of the first reply's 4000 tokens takes far longer than this.
    EXPECT_LT(waited, 5.0);
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

// Waits until the server has a sequence in flight (its slot taken).
void wait_until_active(const ServeProcess& server) {
    for (int i = 0; i < 500; ++i) {
        auto h = server.client().Get("/health");
        if (h && json::parse(h->body)["active"] == 1) return;
        usleep(10000);
    }
}

TEST(Serve, AFullQueueAnswers503) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 512);
    ServeProcess server(dir, {"--parallel", "1", "--queue", "0", "--threads", "1"}, m.model, m.tokenizer);
    auto first = std::async(std::launch::async, [&] {
        return server.client().Post("/v1/completions", R"({"prompt":"a","max_tokens":200,"temperature":0})",
                                    "application/json");
    });
    wait_until_active(server);
    auto busy = server.client().Post("/v1/completions", R"({"prompt":"b","max_tokens":2})", "application/json");
    ASSERT_TRUE(busy);
    EXPECT_EQ(busy->status, 503) << busy->body;
    auto res = first.get();
    ASSERT_TRUE(res && res->status == 200);
}

TEST(Serve, IdleConnectionsAndASlowClientDoNotStopOthers) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "2"});
    std::vector<int> idle;
    for (int i = 0; i < 200; ++i) {
        const int fd = connect_loopback(server.port());
        ASSERT_GE(fd, 0);
        idle.push_back(fd);
    }
    // A slow client: half a request, then nothing.
    const int slow = connect_loopback(server.port());
    const std::string half = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro";
    ASSERT_EQ(::write(slow, half.data(), half.size()), static_cast<ssize_t>(half.size()));
    const auto t0 = std::chrono::steady_clock::now();
    auto res = server.client().Post("/v1/completions", R"({"prompt":"Once","max_tokens":5,"temperature":0})",
                                    "application/json");
    ASSERT_TRUE(res && res->status == 200) << (res ? res->body : "no response");
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
    for (int fd : idle) ::close(fd);
    ::close(slow);
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

// Open descriptors and RSS of a process.
size_t open_fds(int pid) {
    size_t n = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
    return n;
}
uint64_t rss_kb(int pid) {
    const std::string s = read_file("/proc/" + std::to_string(pid) + "/status");
    const size_t at = s.find("VmRSS:");
    return at == std::string::npos ? 0 : std::stoull(s.substr(at + 6));
}

TEST(Serve, SoakOf1000MixedRequestsFrom16Clients) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "8", "--threads", "1"});
    // Twelve distinct requests, each answered alone first: the expected texts.
    std::vector<json> bodies;
    std::vector<std::string> expected;
    for (int i = 0; i < 12; ++i) {
        json b = {{"prompt", std::string(i % 3 == 0 ? "Once upon a time" : i % 3 == 1 ? "Tom and" : "The little")},
                  {"temperature", i % 4 == 0 ? 0.0 : 0.9}, {"seed", 100 + i}, {"max_tokens", 1 + (i * 37) % 90}};
        if (i % 5 == 0) b["stop"] = "park";
        auto res = server.client().Post("/v1/completions", b.dump(), "application/json");
        ASSERT_TRUE(res && res->status == 200);
        bodies.push_back(b);
        expected.push_back(json::parse(res->body)["choices"][0]["text"]);
    }
    std::atomic<int> next{0}, wrong{0}, failed{0};
    std::mutex mu;
    std::string first_failure;
    size_t fds_early = 0;
    uint64_t rss_early = 0;
    auto client = [&] {
        httplib::Client c = server.client();
        for (int i; (i = next++) < 1000;) {
            if (i == 200) {
                fds_early = open_fds(server.pid());
                rss_early = rss_kb(server.pid());
            }
            const size_t k = static_cast<size_t>(i) % bodies.size();
            json b = bodies[k];
            b["stream"] = i % 2 == 0;
            auto res = c.Post("/v1/completions", b.dump(), "application/json");
            if (!res || res->status != 200) {
                if (failed++ == 0) {
                    std::lock_guard lock(mu);
                    first_failure = res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error());
                }
                continue;
            }
            const std::string text = i % 2 == 0 ? stream_text(res->body) : json::parse(res->body)["choices"][0]["text"].get<std::string>();
            if (text != expected[k]) ++wrong;
        }
    };
    std::vector<std::thread> clients;
    for (int t = 0; t < 16; ++t) clients.emplace_back(client);
    for (auto& t : clients) t.join();
    EXPECT_EQ(failed.load(), 0) << "first: " << first_failure;
    EXPECT_EQ(wrong.load(), 0);
    // Flat: no descriptor or memory growth from 200 to 1000 requests.
    EXPECT_LE(open_fds(server.pid()), fds_early + 4);
    EXPECT_LE(rss_kb(server.pid()), rss_early + 8 * 1024) << "RSS grew from " << rss_early << " kB";
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(Serve, SigtermFinishesARequestInFlightAndExitsZero) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 512);
    ServeProcess server(dir, {"--parallel", "1", "--threads", "1", "--grace", "30"}, m.model, m.tokenizer);
    auto reply = std::async(std::launch::async, [&] {
        return server.client().Post("/v1/completions", R"({"prompt":"a","max_tokens":30,"temperature":0})",
                                    "application/json");
    });
    wait_until_active(server);
    EXPECT_EQ(server.terminate(60), 0) << server.log();
    auto res = reply.get();
    ASSERT_TRUE(res) << "the request in flight was dropped";
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(json::parse(res->body)["usage"]["completion_tokens"], 30);
}

TEST(Serve, PlanCountsAKvCachePerSequenceAndRefusesWhatDoesNotFit) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 1024);
    // 64 MB of weights; a KV cache of 1024 positions is 5 layers x 1024 x 256 x 2 x 4 B = 10 MB per sequence.
    const CommandResult one = run_command({ferry_bin(), "plan", m.model, "--pool", "1x120M", "--parallel", "1", "--json"});
    ASSERT_EQ(one.exit_code, 0) << one.err;
    const json p1 = json::parse(one.out);
    const CommandResult four = run_command({ferry_bin(), "plan", m.model, "--pool", "1x200M", "--parallel", "4", "--json"});
    ASSERT_EQ(four.exit_code, 0) << four.err;
    const json p4 = json::parse(four.out);
    EXPECT_EQ(p4["parallel"], 4);
    const uint64_t kv1 = p1["stages"][0]["kv_cache_bytes"], kv4 = p4["stages"][0]["kv_cache_bytes"];
    EXPECT_EQ(kv4, 4 * kv1);
    const CommandResult many = run_command({ferry_bin(), "plan", m.model, "--pool", "1x120M", "--parallel", "8"});
    EXPECT_NE(many.exit_code, 0);
    EXPECT_NE(many.err.find("--parallel 8"), std::string::npos) << many.err;
    EXPECT_NE(many.err.find("KV cache"), std::string::npos) << many.err;
}

TEST(Serve, AWorkerServingEightSequencesStaysWithinItsMemory) {
    FERRY_SKIP_IF_SANITIZED();
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 512);
    WorkerProcess w({"--threads", "1", "--memory", "140M", "--cache-dir", dir.file("cw")}, dir.file("w.log"));
    ServeProcess server(dir, {"--parallel", "8", "--workers", w.address(), "--ctx", "512"}, m.model, m.tokenizer);
    std::vector<std::future<bool>> replies;
    for (int i = 0; i < 8; ++i)
        replies.push_back(std::async(std::launch::async, [&, i] {
            const json b = {{"prompt", "a b c"}, {"max_tokens", 60}, {"seed", i + 1}};
            auto res = server.client().Post("/v1/completions", b.dump(), "application/json");
            return res && res->status == 200;
        }));
    for (auto& r : replies) EXPECT_TRUE(r.get());
    const std::string status = read_file("/proc/" + std::to_string(w.pid()) + "/status");
    const uint64_t peak_kb = std::stoull(status.substr(status.find("VmHWM:") + 6));
    EXPECT_LE(peak_kb * 1024, 140ull << 20) << "peak RSS " << peak_kb << " kB over --memory 140M";
    // Sixty-four sequences of 512 positions (5 MB of KV cache each) do not fit: refused with the numbers.
    TempDir dir2;
    WorkerProcess w2({"--threads", "1", "--memory", "140M", "--cache-dir", dir2.file("cw")}, dir2.file("w.log"));
    const CommandResult r = run_command({ferry_bin(), "serve", m.model, "-z", m.tokenizer, "--listen", "127.0.0.1:0",
                                         "--parallel", "64", "--workers", w2.address(), "--ctx", "512"},
                                        60);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("--parallel 64"), std::string::npos) << r.err;
}

// The official clients: curl and the openai npm package (installed by
// scripts/test.sh into build/clients-node).
TEST(Serve, CurlAndTheOpenAiNpmClientConform) {
    TempDir dir;
    ServeProcess server(dir, {"--parallel", "4", "--api-key", "sekrit"});
    // The overload server's model is slow enough (a 400-token reply takes about a
    // second) that its one slot is surely taken while the other 11 curls start.
    const SynthModel slow = synth_64mb_model(dir, 512);
    ServeProcess overload(dir, {"--parallel", "1", "--queue", "0", "--api-key", "sekrit"}, slow.model, slow.tokenizer);
    const std::string src = FERRY_SOURCE_DIR;
    const CommandResult curl = run_command({"/bin/bash", src + "/tests/clients/curl_conformance.sh", server.base() + "/v1",
                                            "sekrit", "stories260K.bin", overload.base() + "/v1",
                                            std::filesystem::path(slow.model).filename().string()},
                                           120);
    EXPECT_EQ(curl.exit_code, 0) << curl.out << curl.err;
    const std::string modules = src + "/build/clients-node/node_modules";
    ASSERT_TRUE(std::filesystem::exists(modules + "/openai"))
        << "the openai npm package is not installed: run scripts/test.sh (it runs npm install into build/clients-node)";
    const CommandResult node = run_command({"/usr/bin/env", "BASE_URL=" + server.base() + "/v1", "API_KEY=sekrit",
                                            "MODEL=stories260K.bin", "FERRY_NODE_MODULES=" + modules, "node",
                                            src + "/tests/clients/openai_conformance.mjs"},
                                           120);
    EXPECT_EQ(node.exit_code, 0) << node.out << node.err;
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

}  // namespace
}  // namespace ferry::test

namespace ferry::test {
namespace {

TEST(ServeDashboard, EveryNodeIsLiveInARealBrowserAndTheChatBoxStreams) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 512);
    WorkerProcess a({"--threads", "1", "--memory", "100M", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--memory", "100M", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    ServeProcess server(dir, {"--parallel", "4", "--workers", addresses({&a, &b}), "--split", "3,2"}, m.model,
                        m.tokenizer);
    const std::string src = FERRY_SOURCE_DIR;
    const std::string modules = src + "/build/clients-node/node_modules";
    ASSERT_TRUE(std::filesystem::exists(modules + "/playwright-core"))
        << "playwright-core is not installed: run scripts/test.sh (npm install into build/clients-node)";
    ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium")) << "chromium is not installed: run scripts/install-deps.sh";
    std::filesystem::create_directories(src + "/build/test-artifacts");
    const std::string shot = src + "/build/test-artifacts/dashboard.png";
    std::filesystem::remove(shot);
    const CommandResult r = run_command({"/usr/bin/env", "ROOT_URL=" + server.base(), "NODES=" + addresses({&a, &b}),
                                         "SCREENSHOT=" + shot, "FERRY_NODE_MODULES=" + modules, "node",
                                         src + "/tests/clients/dashboard_browser.mjs"},
                                        150);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_TRUE(std::filesystem::exists(shot));
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

// A worker killed while four requests decode: the server plans again over the
// survivor and the spare, replays every sequence and the clients see only a
// pause; each reply equals `ferry run` alone.
TEST(ServeRecovery, AKilledWorkerCostsAPauseNotAnErrorAndRepliesAreUnchanged) {
    TempDir dir;
    const SynthModel m = synth_64mb_model(dir, 2048);
    WorkerProcess a({"--threads", "1", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    WorkerProcess spare({"--threads", "1", "--cache-dir", dir.file("cs")}, dir.file("s.log"));
    ServeProcess server(dir, {"--parallel", "4", "--workers", addresses({&a, &b}), "--split", "3,2", "--spare",
                              spare.address()},
                        m.model, m.tokenizer);
    struct Req {
        std::string prompt;
        double t;
        int seed;
    };
    const std::vector<Req> reqs = {{"a", 0, 1}, {"b c", 0.5, 5}, {"d", 0, 2}, {"e f g", 0.5, 5}};
    std::vector<std::future<json>> replies;
    for (const Req& r : reqs)
        replies.push_back(std::async(std::launch::async, [&, r] {
            const json body = {{"prompt", r.prompt}, {"temperature", r.t}, {"top_p", 0.9}, {"seed", r.seed},
                               {"max_tokens", 700}, {"echo", true}};
            auto res = server.client().Post("/v1/completions", body.dump(), "application/json");
            return res && res->status == 200 ? json::parse(res->body) : json{{"error", res ? res->body : "no response"}};
        }));
    // Mid-generation: every sequence has decoded for a while.
    for (int i = 0; i < 400; ++i) {
        auto h = server.client().Get("/api/status");
        if (h && h->status == 200) {
            const json j = json::parse(h->body);
            if (j.value("tokens_generated", 0) + [&] {
                    int n = 0;
                    for (const json& q : j["requests"]) n += q.value("generated", 0);
                    return n;
                }() > 200)
                break;
        }
        usleep(20000);
    }
    a.signal(SIGKILL);
    for (size_t i = 0; i < reqs.size(); ++i) {
        const json j = replies[i].get();
        ASSERT_FALSE(j.contains("error")) << j.dump();
        const int n = j["usage"]["prompt_tokens"].get<int>() + j["usage"]["completion_tokens"].get<int>() - 1;
        const CommandResult run = run_command({ferry_bin(), "run", m.model, "-z", m.tokenizer, "-i", reqs[i].prompt, "-t",
                                               std::to_string(reqs[i].t), "-p", "0.9", "-s", std::to_string(reqs[i].seed),
                                               "-n", std::to_string(n)},
                                              120);
        ASSERT_EQ(run.exit_code, 0) << run.err;
        std::string want = run.out;
        if (!want.empty() && want.back() == '\n') want.pop_back();
        EXPECT_EQ(j["choices"][0]["text"].get<std::string>(), want) << "request " << i;
    }
    EXPECT_NE(server.log().find("replayed"), std::string::npos) << server.log();
    // Counted where operators look: the dashboard's JSON and /metrics.
    json status;
    for (int i = 0; i < 100; ++i) {  // the scheduler publishes its figures four times a second
        status = json::parse(server.client().Get("/api/status")->body);
        if (status.contains("recovery") && status["recovery"]["count"] == 1) break;
        usleep(100000);
    }
    EXPECT_EQ(status["recovery"]["count"], 1) << status.dump();
    EXPECT_GT(status["recovery"]["replayed_positions"].get<int>(), 100) << status.dump();
    EXPECT_NE(status["recovery"]["failure"].get<std::string>().find(a.address()), std::string::npos) << status.dump();
    const std::string metrics = server.client().Get("/metrics")->body;
    EXPECT_NE(metrics.find("\nferry_recoveries_total 1\n"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("ferry_last_recovery_seconds{phase=\"replay\"}"), std::string::npos) << metrics;
    EXPECT_EQ(server.terminate(20), 0) << server.log();
}

TEST(ServeDashboard, MetricsAreValidPrometheusTextWithEveryNode) {
    TempDir dir;
    WorkerProcess a({"--threads", "1", "--memory", "64M", "--cache-dir", dir.file("ca")}, dir.file("a.log"));
    WorkerProcess b({"--threads", "1", "--cache-dir", dir.file("cb")}, dir.file("b.log"));
    ServeProcess server(dir, {"--parallel", "2", "--workers", addresses({&a, &b}), "--split", "3,2"});
    httplib::Client c = server.client();
    for (int i = 0; i < 3; ++i)
        ASSERT_EQ(c.Post("/v1/completions", R"({"prompt":"Once","max_tokens":20})", "application/json")->status, 200);
    ASSERT_EQ(c.Post("/v1/completions", "{bad", "application/json")->status, 400);
    usleep(400000);  // the scheduler publishes its figures four times a second
    auto res = c.Get("/metrics");
    ASSERT_TRUE(res && res->status == 200);
    EXPECT_NE(res->get_header_value("Content-Type").find("text/plain; version=0.0.4"), std::string::npos);
    write_file(dir.file("metrics.txt"), res->body);
    // Prometheus' own Python parser (Debian python3-prometheus-client) reads every family.
    const std::string check = R"(
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
def samples(name): return fams[name].samples
nodes = {s.labels["node"] for s in samples("ferry_node_positions")}
assert set(sys.argv[2].split(",")) <= nodes, nodes
assert any(s.value > 0 for s in samples("ferry_node_positions") if s.labels["node"] != "coordinator")
assert any(s.labels["node"] == sys.argv[2].split(",")[0] and s.value == 64 * 2**20 for s in samples("ferry_node_memory_budget_bytes"))
assert any(s.value == 2 for s in samples("ferry_node_kv_slots"))
codes = {s.labels["status"]: s.value for s in samples("ferry_responses")}
assert codes.get("200", 0) >= 3 and codes.get("400", 0) >= 1, codes
ttft = [s for s in samples("ferry_time_to_first_token_seconds") if s.name.endswith("_count")]
assert ttft and ttft[0].value >= 3, ttft
assert fams["ferry_token_latency_seconds"].type == "histogram"
assert "ferry_queue_depth" in fams and "ferry_sequences_active" in fams
assert samples("ferry_recoveries")[0].value == 0, samples("ferry_recoveries")
assert {s.labels["phase"] for s in samples("ferry_last_recovery_seconds")} == {"detect", "plan", "shards", "replay", "total"}
print("ok", sorted(fams))
)";
    write_file(dir.file("check.py"), check);
    const CommandResult r = run_command({"/usr/bin/python3", dir.file("check.py"), dir.file("metrics.txt"), addresses({&a, &b})});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << res->body;
}

}  // namespace
}  // namespace ferry::test
