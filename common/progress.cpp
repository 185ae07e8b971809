#include "common/progress.h"

#include <algorithm>

#include "common/platform/system.h"
#include "common/shard_memory.h"

namespace ferry {

namespace {
// A log gets a line this often; a terminal is redrawn this often.
constexpr double kLogEveryS = 3, kRedrawEveryS = 0.2;

std::string eta_text(double seconds) {
    if (!(seconds >= 0) || seconds > 360000) return "ETA ?";
    if (seconds < 90) return "ETA " + std::to_string(static_cast<int>(seconds + 0.5)) + " s";
    return "ETA " + std::to_string(static_cast<int>(seconds / 60 + 0.5)) + " min";
}
}  // namespace

Progress::Progress(std::string verb, std::vector<std::string> parts, std::FILE* out)
    : verb_(std::move(verb)),
      parts_(std::move(parts)),
      out_(out),
      tty_(is_terminal(out)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {
    const size_t n = std::max<size_t>(1, parts_.size());
    done_.assign(n, 0);
    total_.assign(n, 0);
}

double Progress::elapsed_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::set_total(size_t part, uint64_t total) {
    if (part < total_.size()) total_[part] = total;
}

void Progress::update_part(size_t part, uint64_t done) {
    if (part >= done_.size()) return;
    done_[part] = std::min(done, total_[part]);
    uint64_t all = 0, total = 0;
    for (size_t i = 0; i < done_.size(); ++i) {
        all += done_[i];
        total += total_[i];
    }
    // The moment everything is done is always shown (a short job may never reach a periodic line).
    const bool complete = total > 0 && all == total && !drew_complete_;
    drew_complete_ = drew_complete_ || complete;
    draw(complete);
}

void Progress::update(uint64_t done, uint64_t total) {
    total_[0] = total;
    update_part(0, done);
}

std::vector<std::string> Progress::lines() const {
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < done_.size(); ++i) {
        done += done_[i];
        total += total_[i];
    }
    const double s = elapsed_s();
    const double rate = s > 0 ? done / s : 0;
    std::string head = verb_ + ": " + format_bytes(done) + " / " + format_bytes(total);
    if (total > 0) head += " (" + std::to_string(static_cast<int>(100.0 * done / total)) + "%)";
    head += ", " + format_bytes(static_cast<uint64_t>(rate)) + "/s";
    if (finished_) {
        char t[32];
        std::snprintf(t, sizeof t, ", done in %.1f s", s);
        head += t;
    } else if (!phase_.empty()) {
        head += ", " + phase_;
    } else if (done < total) {
        head += ", " + (done > 0 ? eta_text((total - done) / rate) : std::string("ETA ?"));
    }
    std::vector<std::string> out = {head};
    if (parts_.size() > 1)
        for (size_t i = 0; i < parts_.size(); ++i)
            out.push_back("  " + parts_[i] + ": " + format_bytes(done_[i]) + " / " + format_bytes(total_[i]) +
                          (done_[i] >= total_[i] ? " delivered" : ""));
    return out;
}

void Progress::draw(bool force) {
    const auto now = std::chrono::steady_clock::now();
    const double since = std::chrono::duration<double>(now - last_draw_).count();
    // A log's first line comes after a second, so its ETA rests on a measured rate.
    if (!force && since < (tty_ ? kRedrawEveryS : (drew_ ? kLogEveryS : 1.0))) return;
    last_draw_ = now;
    drew_ = true;
    const std::vector<std::string> ls = lines();
    std::string text;
    if (tty_) {
        if (drawn_lines_ > 1) text += "\r\x1b[" + std::to_string(drawn_lines_ - 1) + "A";
        for (size_t i = 0; i < ls.size(); ++i) text += "\r" + ls[i] + "\x1b[K" + (i + 1 < ls.size() ? "\n" : "");
        drawn_lines_ = ls.size();
        if (finished_) text += "\n";
    } else {
        // A log: the total, and the parts on the same line.
        text = ls[0];
        for (size_t i = 1; i < ls.size(); ++i) {
            text += ';';
            text.append(ls[i], 1, std::string::npos);
        }
        text += "\n";
    }
    std::fputs(text.c_str(), out_);
    std::fflush(out_);
}

void Progress::note(const std::string& line) {
    if (tty_ && drawn_lines_ > 0) {
        if (drawn_lines_ > 1) std::fprintf(out_, "\r\x1b[%zuA", drawn_lines_ - 1);
        std::fprintf(out_, "\r%s\x1b[K\n", line.c_str());
        drawn_lines_ = 0;  // the progress lines are drawn again below the note
        draw(true);
    } else {
        std::fprintf(out_, "%s\n", line.c_str());
        std::fflush(out_);
    }
}

void Progress::phase(const std::string& text) {
    if (phase_ == text) return;
    phase_ = text;
    draw(true);
}

void Progress::finish() {
    if (finished_) return;
    finished_ = true;
    phase_.clear();
    draw(true);
}

}  // namespace ferry
