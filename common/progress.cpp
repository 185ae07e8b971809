#include "common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace ferry {

ProgressBar::ProgressBar(std::string label)
    : label_(std::move(label)), start_(std::chrono::steady_clock::now()), tty_(isatty(fileno(stderr))) {}

void ProgressBar::update(uint64_t done, uint64_t total) {
    const int step = tty_ ? 1 : 10;
    const int percent = (total ? static_cast<int>(done * 100 / total) : 100) / step * step;
    if (percent == last_percent_) return;
    last_percent_ = percent;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    constexpr int kWidth = 30;
    const int filled = percent * kWidth / 100;
    std::fprintf(stderr, "%s%s [%s%s] %3d%% %s of %s, %.0f MB/s", tty_ ? "\r" : "", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, '.').c_str(), percent,
                 format_gb(static_cast<double>(done)).c_str(), format_gb(static_cast<double>(total)).c_str(),
                 s > 0 ? done / s / 1e6 : 0.0);
    if (!tty_ || done >= total) std::fputc('\n', stderr);
    std::fflush(stderr);
}

std::string format_gb(double bytes) {
    char buf[32];
    if (bytes >= 1e9) std::snprintf(buf, sizeof buf, "%.2f GB", bytes / 1e9);
    else if (bytes >= 1e6) std::snprintf(buf, sizeof buf, "%.1f MB", bytes / 1e6);
    else std::snprintf(buf, sizeof buf, "%.1f KB", bytes / 1e3);
    return buf;
}

}  // namespace ferry
