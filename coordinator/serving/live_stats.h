// What `ferry serve` shows about itself while it runs: per node rates over
// the last seconds (from the engine's cumulative figures, sampled by the
// scheduler's thread), the requests in flight, a few minutes of aggregate
// tok/s, and latency histograms. Read by the dashboard's JSON (/api/status)
// and by Prometheus (/metrics) from HTTP threads; thread-safe.
#pragma once
#include <array>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "coordinator/pipeline/node_table.h"

namespace ferry {

struct ActiveRequest {
    int slot = 0;
    int prompt_tokens = 0;
    int prompt_done = 0;  // prompt positions processed so far
    int generated = 0;
    double age_s = 0;     // since the request arrived
    double decode_s = 0;  // since its first token
};

// Cumulative counts of a histogram with Prometheus' fixed upper bounds.
struct Histogram {
    static constexpr std::array<double, 12> kBounds = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                       0.5,   1,    2.5,   5,    10,  30};
    std::array<uint64_t, kBounds.size()> buckets{};  // observations <= bound (not yet cumulative)
    uint64_t count = 0;
    double sum = 0;
    void observe(double seconds);
};

class LiveStats {
public:
    // The scheduler's thread, a few times a second.
    void record(const PipelineStats& nodes, std::vector<ActiveRequest> active, uint64_t tokens_generated,
                int slots, int queued, double now_s);
    void observe_first_token(double seconds);
    void observe_token_gap(double seconds);
    // HTTP threads, once per answered request.
    void count_response(int status);

    // The dashboard's JSON: nodes with their rates, requests, history.
    nlohmann::json dashboard(const std::string& model, double now_s) const;
    // Prometheus text exposition format 0.0.4.
    std::string prometheus() const;

private:
    struct Sample {
        double t = 0;
        PipelineStats nodes;
        uint64_t tokens = 0;
    };
    mutable std::mutex mu_;
    std::deque<Sample> recent_;                  // the last ~10 s of samples
    std::deque<std::pair<double, double>> history_;  // (time, aggregate tok/s) per second, 10 minutes
    std::vector<ActiveRequest> active_;
    uint64_t tokens_ = 0;
    int slots_ = 0, queued_ = 0;
    Histogram first_token_, token_gap_;
    std::vector<std::pair<int, uint64_t>> responses_;  // (status, count)
    double started_s_ = -1;
};

}  // namespace ferry
