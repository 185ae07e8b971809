#include "common/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/error.h"

namespace ferry {

void setup_logging(const std::string& level, const std::string& file) {
    std::shared_ptr<spdlog::logger> logger;
    if (file.empty()) {
        logger = spdlog::stderr_color_mt("ferry");
    } else {
        try {
            logger = spdlog::basic_logger_mt("ferry", file);
        } catch (const spdlog::spdlog_ex& e) {
            throw Error(file + ": cannot open the log file: " + e.what());
        }
        logger->flush_on(spdlog::level::info);
    }
    const auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off")
        throw Error("--log-level " + level + ": unknown level; use trace, debug, info, warn, error or off");
    logger->set_level(lvl);
    logger->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
    spdlog::set_default_logger(logger);
}

}  // namespace ferry
