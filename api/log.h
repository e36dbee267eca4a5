// Structured log lines on stderr: one line per event, logfmt (key=value).
//   ts=2026-11-29T09:00:00.123Z level=info event=node_started api=127.0.0.1:8081
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace cl::api {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Sets the minimum level printed ("debug", "info", "warn", "error").
void set_log_level(const std::string& level);

using LogField = std::pair<std::string_view, std::string>;

// Prints one event if "level" is enabled.  Values are quoted when needed.
void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields = {});

}  // namespace cl::api
