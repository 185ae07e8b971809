// spdlog set up once per binary: logs go to stderr (stdout carries only
// generated text), with a level the user picks.
#pragma once
#include <string>

namespace ferry {

// level: trace, debug, info, warn, error, off. file: empty for stderr. Lines
// carry the date, except on a terminal (the time) and on a stderr that
// journald reads (JOURNAL_STREAM: a syslog priority prefix instead).
void setup_logging(const std::string& level, const std::string& file = "");
// After SIGHUP: the log file again by its name (logrotate moved the old one).
// False if it cannot be opened (then the old file stays in use).
bool reopen_log_file();

}  // namespace ferry
