// `ferry serve`'s HTTP side (cpp-httplib): the OpenAI routes, the API key,
// body and connection limits, SSE streaming, and a client that goes away
// freeing its slot. Requests become CompletionRequests for the Scheduler.
#pragma once
#include <functional>
#include <memory>
#include <string>

#include "coordinator/serving/live_stats.h"
#include "coordinator/serving/openai_api.h"
#include "coordinator/serving/scheduler.h"

namespace ferry {

struct HttpOptions {
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string api_key;                  // empty: no key asked
    size_t max_body_bytes = 1u << 20;     // larger bodies get 413
    int threads = 256;                    // connections served at once; more wait for a thread
    int read_timeout_s = 10;              // a client silent this long mid-request is dropped
};

class HttpServer {
public:
    // live (may be null) feeds the dashboard (/, /api/status) and /metrics.
    HttpServer(Scheduler& scheduler, ApiContext api, HttpOptions options, LiveStats* live = nullptr);
    ~HttpServer();
    // Binds; throws ferry::Error naming the address if it cannot. Returns the port (for port 0).
    int bind();
    // Serves until stop(); returns then.
    void serve();
    // Waits (at most 10 s) for replies in flight to reach their clients, then ends serve(), waiting for it
    // to have started if need be. Call from another thread.
    void stop();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace ferry
