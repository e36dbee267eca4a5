#include "api/log.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace cl::api {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;

const char* level_name(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

void append_value(std::string* out, const std::string& v) {
  bool quote = v.empty() || v.find_first_of(" =\"\t\n") != std::string::npos;
  if (!quote) {
    *out += v;
    return;
  }
  out->push_back('"');
  for (char c : v) {
    if (c == '"' || c == '\\') out->push_back('\\');
    if (c == '\n') { *out += "\\n"; continue; }
    out->push_back(c);
  }
  out->push_back('"');
}
}  // namespace

void set_log_level(const std::string& level) {
  LogLevel l = LogLevel::kInfo;
  if (level == "debug") l = LogLevel::kDebug;
  else if (level == "warn") l = LogLevel::kWarn;
  else if (level == "error") l = LogLevel::kError;
  g_level.store(static_cast<int>(l));
}

void log_event(LogLevel level, std::string_view event, std::initializer_list<LogField> fields) {
  if (static_cast<int>(level) < g_level.load()) return;
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char ts[96];
  std::snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  std::string line = std::string("ts=") + ts + " level=" + level_name(level) + " event=" + std::string(event);
  for (const auto& [k, v] : fields) {
    line += ' ';
    line += k;
    line += '=';
    append_value(&line, v);
  }
  line += '\n';
  std::lock_guard<std::mutex> lock(g_mu);
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace cl::api
