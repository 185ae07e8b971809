#include "coordinator/serving/http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "common/error.h"
#include "coordinator/serving/dashboard_page.h"

namespace ferry {

using nlohmann::json;

namespace {

double seconds_now() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string reply_id(const char* prefix) {
    static std::atomic<uint64_t> counter{0};
    static const uint64_t salt = std::random_device{}();
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s-%08llx%06llx", prefix, static_cast<unsigned long long>(salt & 0xffffffffu),
                  static_cast<unsigned long long>(++counter));
    return buf;
}

void send_error(httplib::Response& res, const ApiError& e) {
    res.status = e.status;
    res.set_content(error_body(e), "application/json");
}

// Equal in constant time, so the key cannot be guessed byte by byte from timings.
bool same_key(const std::string& a, const std::string& b) {
    unsigned diff = a.size() != b.size();
    for (size_t i = 0; i < a.size() && i < b.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

// cpp-httplib 0.11 (Debian 12) listens with a backlog of 5 and does not
// expose its socket: a burst of clients (16 at once, or 200 idle ones) then
// has SYNs dropped and each waits a second for the retransmit. Linux lets a
// listening socket's backlog be raised by calling listen() again, so find
// ours by its port.
void widen_backlog(int port) {
    for (int fd = 0; fd < 4096; ++fd) {
        int listening = 0;
        socklen_t len = sizeof listening;
        if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) continue;
        sockaddr_storage a{};
        socklen_t alen = sizeof a;
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&a), &alen) != 0) continue;
        const int p = a.ss_family == AF_INET    ? ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port)
                      : a.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&a)->sin6_port)
                                                : -1;
        if (p == port) ::listen(fd, SOMAXCONN);
    }
}

}  // namespace

struct HttpServer::Impl {
    Scheduler& scheduler;
    ApiContext api;
    HttpOptions opt;
    httplib::Server server;

    LiveStats* live;
    std::atomic<int> open_replies{0};  // requests admitted and not yet fully answered
    std::atomic<bool> served{false};   // serve() has returned

    Impl(Scheduler& s, ApiContext a, HttpOptions o, LiveStats* l)
        : scheduler(s), api(std::move(a)), opt(std::move(o)), live(l) {}

    void routes() {
        const int threads = opt.threads;
        server.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
        server.set_payload_max_length(opt.max_body_bytes);
        server.set_read_timeout(opt.read_timeout_s, 0);
        server.set_write_timeout(opt.read_timeout_s, 0);
        server.set_keep_alive_timeout(5);
        server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
            // The page itself holds nothing; its data (/api/status) needs the key like the rest.
            if (opt.api_key.empty() || req.path == "/health" || req.path == "/")
                return httplib::Server::HandlerResponse::Unhandled;
            const std::string auth = req.get_header_value("Authorization");
            const std::string bearer = "Bearer ";
            if (auth.compare(0, bearer.size(), bearer) == 0 && same_key(auth.substr(bearer.size()), opt.api_key))
                return httplib::Server::HandlerResponse::Unhandled;
            send_error(res, ApiError{401, "invalid_request_error",
                                     auth.empty() ? "Missing API key: send 'Authorization: Bearer KEY'"
                                                  : "Incorrect API key provided",
                                     "", "invalid_api_key"});
            return httplib::Server::HandlerResponse::Handled;
        });
        server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
            if (!res.body.empty()) return;  // a route's own error
            if (res.status == 404)
                send_error(res, ApiError{404, "invalid_request_error", "Unknown path " + req.method + " " + req.path +
                                                                           "; see GET /v1/models, POST /v1/chat/completions, POST /v1/completions"});
            else if (res.status == 413)
                send_error(res, ApiError{413, "invalid_request_error", "the request body is larger than the server's limit"});
            else
                send_error(res, ApiError{res.status, "invalid_request_error", "HTTP error " + std::to_string(res.status)});
        });
        server.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
            std::string what = "internal error";
            try {
                std::rethrow_exception(ep);
            } catch (const std::exception& e) {
                what = e.what();
            } catch (...) {
            }
            spdlog::error("serve: {}", what);
            send_error(res, ApiError{500, "server_error", what});
        });
        server.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
            const SchedulerStats s = scheduler.stats();
            json j = {{"status", s.failure.empty() ? "ok" : "error"}, {"slots", s.slots}, {"active", s.active},
                      {"queued", s.queued}};
            if (!s.failure.empty()) j["error"] = s.failure;
            res.status = s.failure.empty() ? 200 : 503;
            res.set_content(dump(j), "application/json");
        });
        server.set_logger([this](const httplib::Request&, const httplib::Response& res) {
            if (live) live->count_response(res.status);
        });
        server.Get("/", [](const httplib::Request&, httplib::Response& res) {
            const std::string_view page = dashboard_page();
            res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
        });
        server.Get("/api/status", [this](const httplib::Request&, httplib::Response& res) {
            json j = live ? live->dashboard(api.model_id, seconds_now()) : json::object();
            const SchedulerStats s = scheduler.stats();
            j["queued"] = s.queued;
            j["failure"] = s.failure;
            j["requests_done"] = s.requests_done;
            j["chat"] = api.chat_template.has_value();
            res.set_header("Cache-Control", "no-store");
            res.set_content(dump(j), "application/json");
        });
        server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
            res.set_content(live ? live->prometheus() : std::string(), "text/plain; version=0.0.4; charset=utf-8");
        });
        server.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
            json model = {{"id", api.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "ferry"}};
            res.set_content(dump(json{{"object", "list"}, {"data", json::array({model})}}), "application/json");
        });
        server.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
            if (req.matches[1].str() != api.model_id)
                return send_error(res, ApiError{404, "invalid_request_error",
                                                "The model '" + req.matches[1].str() + "' does not exist", "model",
                                                "model_not_found"});
            res.set_content(dump(json{{"id", api.model_id}, {"object", "model"}, {"created", 0}, {"owned_by", "ferry"}}),
                            "application/json");
        });
        server.Post("/v1/chat/completions",
                    [this](const httplib::Request& req, httplib::Response& res) { complete(Endpoint::chat, req, res); });
        server.Post("/v1/completions",
                    [this](const httplib::Request& req, httplib::Response& res) { complete(Endpoint::completions, req, res); });
    }

    void complete(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
        ApiError error;
        std::optional<ParsedRequest> parsed = parse_request(endpoint, req.body, api, &error);
        if (!parsed) return send_error(res, error);
        const int prompt_tokens = static_cast<int>(parsed->completion.prompt.size());
        std::shared_ptr<ReplyStream> stream = scheduler.submit(std::move(parsed->completion));
        if (!stream) {
            const SchedulerStats s = scheduler.stats();
            return send_error(res, ApiError{503, "server_error",
                                            s.failure.empty() ? "every sequence slot is busy and the queue is full; retry later"
                                                              : "the model is unavailable: " + s.failure,
                                            "", "overloaded"});
        }
        ReplyIds ids{reply_id(endpoint == Endpoint::chat ? "chatcmpl" : "cmpl"), unix_now(), api.model_id};
        ++open_replies;
        if (!parsed->stream) {
            struct Done {
                std::atomic<int>& n;
                ~Done() { --n; }
            } done{open_replies};
            std::string text = parsed->echo ? parsed->echo_text : std::string();
            ReplyEvent e;
            for (;;) {
                if (!stream->next(&e, 1000)) continue;
                text += e.text;
                if (e.done) break;
            }
            if (!e.error.empty()) return send_error(res, ApiError{500, "server_error", e.error});
            res.set_content(dump(full_reply(endpoint, ids, text, e.finish_reason, prompt_tokens, e.completion_tokens)),
                            "application/json");
            return;
        }
        const bool usage = parsed->include_usage;
        const std::string echo = parsed->echo ? parsed->echo_text : std::string();
        res.set_header("Cache-Control", "no-cache");
        res.set_chunked_content_provider(
            "text/event-stream",
            [=, this, first = true](size_t, httplib::DataSink& sink) mutable {
                auto send = [&](const json& j) {
                    const std::string line = "data: " + dump(j) + "\n\n";
                    return sink.write(line.data(), line.size());
                };
                if (first && !echo.empty() && !send(stream_chunk(endpoint, ids, echo, true, ""))) {
                    stream->cancel();
                    return false;
                }
                ReplyEvent e;
                if (!stream->next(&e, 1000)) {
                    // Nothing yet: a comment line finds a client that went away.
                    if (!sink.is_writable() || !sink.write(": waiting\n\n", 11)) {
                        stream->cancel();
                        return false;
                    }
                    return true;
                }
                if (!e.error.empty()) {
                    const std::string line = "data: " + error_body(ApiError{500, "server_error", e.error}) + "\n\n";
                    sink.write(line.data(), line.size());
                    sink.done();
                    return true;
                }
                if ((!e.text.empty() || first) && !send(stream_chunk(endpoint, ids, e.text, first && echo.empty(), ""))) {
                    stream->cancel();
                    return false;
                }
                first = false;
                if (!e.done) return true;
                send(stream_chunk(endpoint, ids, "", false, e.finish_reason));
                if (usage) send(usage_chunk(endpoint, ids, prompt_tokens, e.completion_tokens));
                static const std::string kDone = "data: [DONE]\n\n";
                sink.write(kDone.data(), kDone.size());
                sink.done();
                return true;
            },
            [this, stream](bool success) {  // called once the response is gone, whatever happened
                if (!success) stream->cancel();
                --open_replies;
            });
    }
};

HttpServer::HttpServer(Scheduler& scheduler, ApiContext api, HttpOptions options, LiveStats* live)
    : impl_(std::make_unique<Impl>(scheduler, std::move(api), std::move(options), live)) {
    impl_->routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
    Impl& i = *impl_;
    if (i.opt.port == 0) {
        const int port = i.server.bind_to_any_port(i.opt.host);
        if (port <= 0) throw Error("--listen " + i.opt.host + ":0: cannot bind");
        i.opt.port = port;
        widen_backlog(port);
        return port;
    }
    if (!i.server.bind_to_port(i.opt.host, i.opt.port))
        throw Error("--listen " + i.opt.host + ":" + std::to_string(i.opt.port) +
                    ": cannot bind (in use, or not an address of this machine); choose another port or address");
    widen_backlog(i.opt.port);
    return i.opt.port;
}

void HttpServer::serve() {
    impl_->server.listen_after_bind();
    impl_->served = true;
}

void HttpServer::stop() {
    // Replies the scheduler has ended may still be on their way to slow clients: let them finish (at most 10 s).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (impl_->open_replies > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    // httplib's stop() acts only once the server listens: a signal during start-up must wait for that.
    while (!impl_->served) {
        impl_->server.stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace ferry
