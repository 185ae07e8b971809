// A progress bar on stderr for long work (writing a model, quantizing): one
// line redrawn in place on a terminal, a line every 10% into a log file.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ferry {

class ProgressBar {
public:
    explicit ProgressBar(std::string label);
    // done of total units (bytes); redraws at most once per percent.
    void update(uint64_t done, uint64_t total);

private:
    std::string label_;
    std::chrono::steady_clock::time_point start_;
    bool tty_;
    int last_percent_ = -1;
};

// "4.40 GB" (decimal units, as the benchmarks report bandwidth).
std::string format_gb(double bytes);

}  // namespace ferry
