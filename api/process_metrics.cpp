#include "api/process_metrics.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace cl::api {
namespace {

std::string fixed(double v) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.6f", v);
  return buf;
}

}  // namespace

std::optional<std::string> read_proc_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  if (in.bad()) return std::nullopt;
  return s.str();
}

double ticks_to_seconds(uint64_t ticks) {
  static const long per_second = sysconf(_SC_CLK_TCK);
  return static_cast<double>(ticks) / static_cast<double>(per_second > 0 ? per_second : 100);
}

std::optional<ProcStat> parse_proc_stat(std::string_view line) {
  // "pid (name) state ppid ... utime stime ...": the name ends at the LAST
  // ')', since a thread may call itself anything.
  size_t open = line.find('(');
  size_t close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return std::nullopt;
  ProcStat st;
  st.name = std::string(line.substr(open + 1, close - open - 1));
  // After ") ": field 3 (state) onwards; utime and stime are fields 14, 15.
  std::string_view rest = line.substr(close + 1);
  uint64_t values[2] = {0, 0};
  int field = 2;
  size_t i = 0;
  while (i < rest.size() && field < 15) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    if (i >= rest.size()) break;
    size_t end = rest.find(' ', i);
    if (end == std::string_view::npos) end = rest.size();
    ++field;
    if (field == 14 || field == 15) {
      uint64_t v = 0;
      for (size_t k = i; k < end; ++k) {
        char c = rest[k];
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<uint64_t>(c - '0');
      }
      if (end == i) return std::nullopt;
      values[field - 14] = v;
    }
    i = end;
  }
  if (field < 15) return std::nullopt;
  st.cpu_ticks = values[0] + values[1];
  return st;
}

std::string thread_group(std::string_view name) {
  size_t end = name.size();
  while (end > 0 && name[end - 1] >= '0' && name[end - 1] <= '9') --end;
  if (end == 0) end = name.size();  // all digits: keep them
  std::string out;
  for (size_t i = 0; i < end; ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' || c == '_' ||
              c == '.' || c == '-';
    out.push_back(ok ? c : '_');
  }
  return out.empty() ? "_" : out;
}

std::map<std::string, double> thread_cpu_seconds(size_t* live) {
  std::map<std::string, double> out;
  size_t threads = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    const std::string dir = task.path().string();
    auto stat = read_proc_file(dir + "/stat");
    if (!stat) continue;  // the thread exited meanwhile
    auto st = parse_proc_stat(*stat);
    if (!st) continue;
    ++threads;
    // schedstat's first field is the time on a CPU in ns (finer than ticks).
    double seconds = ticks_to_seconds(st->cpu_ticks);
    if (auto sched = read_proc_file(dir + "/schedstat")) {
      unsigned long long ns = 0;
      if (std::sscanf(sched->c_str(), "%llu", &ns) == 1) seconds = static_cast<double>(ns) / 1e9;
    }
    out[thread_group(st->name)] += seconds;
  }
  if (live) *live = threads;
  return out;
}

void render_process_metrics(std::string* out) {
  auto stat = read_proc_file("/proc/self/stat");
  auto st = stat ? parse_proc_stat(*stat) : std::nullopt;
  if (st) {
    *out += "# HELP process_cpu_seconds_total User and system CPU time of the process, seconds.\n";
    *out += "# TYPE process_cpu_seconds_total counter\n";
    *out += "process_cpu_seconds_total " + fixed(ticks_to_seconds(st->cpu_ticks)) + "\n";
  }
  if (auto statm = read_proc_file("/proc/self/statm")) {
    unsigned long long pages = 0, resident = 0;
    if (std::sscanf(statm->c_str(), "%llu %llu", &pages, &resident) == 2) {
      *out += "# HELP process_resident_memory_bytes Resident memory of the process.\n";
      *out += "# TYPE process_resident_memory_bytes gauge\n";
      *out += "process_resident_memory_bytes " +
              std::to_string(resident * static_cast<unsigned long long>(sysconf(_SC_PAGESIZE))) + "\n";
    }
  }
  size_t live = 0;
  auto threads = thread_cpu_seconds(&live);
  if (threads.empty()) return;
  *out += "# HELP process_threads Live threads of the process.\n# TYPE process_threads gauge\n";
  *out += "process_threads " + std::to_string(live) + "\n";
  *out += "# HELP cityledger_thread_cpu_seconds_total CPU time of the live threads, by thread name (trailing digits "
          "dropped), seconds.\n";
  *out += "# TYPE cityledger_thread_cpu_seconds_total counter\n";
  for (const auto& [name, seconds] : threads)
    *out += "cityledger_thread_cpu_seconds_total{thread=\"" + name + "\"} " + fixed(seconds) + "\n";
}

}  // namespace cl::api
