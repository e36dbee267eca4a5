// Where a node's CPU goes: the process's CPU time and resident memory, and
// CPU time per thread name (cl-verify, cl-http, cl-raft, cl-apply,
// rocksdb:low...), read from /proc at scrape time and rendered in the
// Prometheus text format.  `cityledger bench rush` reads these series from
// every node before and after a phase to report CPU per op per node and
// per thread, so that what bounds a cluster sharing one machine's cores is
// measured, not guessed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace cl::api {

// CPU time of one /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat line:
// utime + stime in clock ticks, and the name in parentheses (which may hold
// spaces and parentheses itself).  nullopt if the line is not one.
struct ProcStat {
  std::string name;
  uint64_t cpu_ticks = 0;
};
std::optional<ProcStat> parse_proc_stat(std::string_view line);

// The group a thread's CPU is counted under: its name without trailing
// digits ("rocksdb:low3" → "rocksdb:low"), so the series stay few whatever
// the number of threads; characters outside [A-Za-z0-9:_.-] become '_'.
std::string thread_group(std::string_view name);

// CPU seconds per thread group of the calling process, for its live
// threads (a thread that exited takes its time with it; the process total
// keeps it).  "live", if given, receives the number of threads read.
std::map<std::string, double> thread_cpu_seconds(size_t* live = nullptr);

// The whole of a (small, /proc) file, or nullopt if it cannot be read.
std::optional<std::string> read_proc_file(const std::string& path);
// Clock ticks (ProcStat::cpu_ticks) in seconds.
double ticks_to_seconds(uint64_t ticks);

// Appends process_cpu_seconds_total, process_resident_memory_bytes,
// process_threads and cityledger_thread_cpu_seconds_total{thread="..."}.
// Series that /proc cannot give (another OS) are left out.
void render_process_metrics(std::string* out);

}  // namespace cl::api
