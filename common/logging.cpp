#include "common/logging.h"

#include <spdlog/details/file_helper.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>

#include "common/error.h"
#include "common/platform/system.h"

namespace ferry {

namespace {

// A log file that SIGHUP reopens (logrotate moves it, then signals).
class ReopenableFileSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    explicit ReopenableFileSink(const std::string& path) : path_(path), file_(std::make_unique<spdlog::details::file_helper>()) {
        file_->open(path, false);
    }
    // Opens the name afresh and swaps it in only if that worked: a log that
    // cannot be reopened (its directory gone, no permission) keeps the old file.
    bool reopen() {
        auto fresh = std::make_unique<spdlog::details::file_helper>();
        try {
            fresh->open(path_, false);
        } catch (const spdlog::spdlog_ex&) {
            return false;
        }
        std::lock_guard<std::mutex> lock(mutex_);
        file_ = std::move(fresh);
        return true;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        spdlog::memory_buf_t formatted;
        formatter_->format(msg, formatted);
        file_->write(formatted);
    }
    void flush_() override { file_->flush(); }

private:
    std::string path_;
    std::unique_ptr<spdlog::details::file_helper> file_;
};

// stderr read by journald (JOURNAL_STREAM names it): each line starts with its
// syslog priority ("<4>" for a warning), which journald strips and keeps, and
// carries no time (journald stamps it).
class JournalSink : public spdlog::sinks::base_sink<std::mutex> {
protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        static constexpr int kPriority[] = {7, 7, 6, 4, 3, 2, 6};  // trace debug info warn err critical off
        spdlog::memory_buf_t formatted;
        formatter_->format(msg, formatted);
        // One record per line: a newline inside the message (text a peer chose) must not start a forged "<0>" line.
        std::string line(formatted.data(), formatted.size());
        for (size_t i = 0; i + 1 < line.size(); ++i)
            if (line[i] == '\n' || line[i] == '\r') line[i] = ' ';
        std::fprintf(stderr, "<%d>%s", kPriority[msg.level], line.c_str());
    }
    void flush_() override { std::fflush(stderr); }
};

std::shared_ptr<ReopenableFileSink> g_file_sink;

// Lines that outlive the day they were written (a file, a pipe, a service's log) carry the date.
constexpr const char* kDatedPattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

}  // namespace

void setup_logging(const std::string& level, const std::string& file) {
    const auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off")
        throw Error("--log-level " + level + ": unknown level; use trace, debug, info, warn, error or off");
    std::shared_ptr<spdlog::logger> logger;
    spdlog::drop("ferry");
    if (!file.empty()) {
        try {
            g_file_sink = std::make_shared<ReopenableFileSink>(file);
        } catch (const spdlog::spdlog_ex& e) {
            throw Error(file + ": cannot open the log file: " + e.what());
        }
        logger = std::make_shared<spdlog::logger>("ferry", g_file_sink);
        logger->flush_on(spdlog::level::info);
        logger->set_pattern(kDatedPattern);
    } else if (stderr_is_journal()) {
        logger = std::make_shared<spdlog::logger>("ferry", std::make_shared<JournalSink>());
        logger->flush_on(spdlog::level::trace);
        logger->set_pattern("[%l] %v");
    } else {
        logger = spdlog::stderr_color_mt("ferry");
        logger->set_pattern(is_terminal(stderr) ? "[%H:%M:%S.%e] [%^%l%$] %v" : kDatedPattern);  // a terminal: the time of day
    }
    logger->set_level(lvl);
    spdlog::set_default_logger(logger);
}

bool reopen_log_file() { return !g_file_sink || g_file_sink->reopen(); }

}  // namespace ferry
