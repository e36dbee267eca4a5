// Process metrics: /proc lines are parsed right (names with spaces and
// parentheses, malformed lines refused), threads are grouped by name, a
// thread that burns CPU shows it under its own name in the exposition, and
// the benchmark's CPU meter reads back what a node renders.
#include <doctest/doctest.h>
#include <pthread.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <string>
#include <thread>

#include "api/process_metrics.h"
#include "cli/cpu_meter.h"

using namespace cl::api;

namespace {

// The value of the sample whose line starts with "prefix" (name{labels} ),
// or -1 if none.
double sample(const std::string& text, const std::string& prefix) {
  size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return -1;
  at += 1 + prefix.size();
  return std::stod(text.substr(at, text.find('\n', at) - at));
}

}  // namespace

TEST_CASE("parse_proc_stat reads utime + stime and a name holding spaces and parentheses") {
  auto st = parse_proc_stat(
      "4242 (cl-verify) S 1 4242 4242 0 -1 4194368 512 0 0 0 1234 56 0 0 20 0 9 0 100 1000 200 18446744073709551615");
  REQUIRE(st);
  CHECK(st->name == "cl-verify");
  CHECK(st->cpu_ticks == 1234 + 56);

  auto odd = parse_proc_stat("7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 10 20 0 0 20 0 1 0 5 6 7\n");
  REQUIRE(odd);
  CHECK(odd->name == "a) b (c)");
  CHECK(odd->cpu_ticks == 30);
}

TEST_CASE("parse_proc_stat refuses lines that are not stat lines") {
  CHECK_FALSE(parse_proc_stat(""));
  CHECK_FALSE(parse_proc_stat("no parentheses 1 2 3"));
  CHECK_FALSE(parse_proc_stat("1 (short) R 1 2 3"));                                  // ends before utime
  CHECK_FALSE(parse_proc_stat("1 (x) R 1 1 1 0 -1 0 0 0 0 0 12a 3 0 0 20 0 1 0 5"));  // utime not a number
}

TEST_CASE("thread_group drops trailing digits and replaces characters a label must not hold") {
  CHECK(thread_group("rocksdb:low3") == "rocksdb:low");
  CHECK(thread_group("rocksdb:low") == "rocksdb:low");
  CHECK(thread_group("cl-verify") == "cl-verify");
  CHECK(thread_group("worker 12") == "worker_");
  CHECK(thread_group("say \"hi\"\\") == "say__hi__");
  CHECK(thread_group("1234") == "1234");
  CHECK(thread_group("") == "_");
}

TEST_CASE("a thread burning CPU is counted under its name, and within the process total") {
  std::string before;
  render_process_metrics(&before);
  const double process_before = sample(before, "process_cpu_seconds_total ");
  REQUIRE(process_before >= 0);
  CHECK(sample(before, "cityledger_thread_cpu_seconds_total{thread=\"cl-burn-test\"} ") == -1);

  std::atomic<bool> measured{false};
  std::atomic<bool> burned{false};
  std::thread burner([&] {
    pthread_setname_np(pthread_self(), "cl-burn-test7");
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
    volatile uint64_t x = 0;
    while (std::chrono::steady_clock::now() < until) x = x + 1;
    burned = true;
    while (!measured) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  while (!burned) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  std::string after;
  render_process_metrics(&after);
  measured = true;
  burner.join();

  const double burn = sample(after, "cityledger_thread_cpu_seconds_total{thread=\"cl-burn-test\"} ");
  INFO(after);
  // 300 ms of spinning: at least a third of it on a CPU even on a busy machine.
  CHECK(burn >= 0.1);
  CHECK(burn <= 1.0);
  // Ticks are coarser than schedstat's ns: allow one tick either way.
  CHECK(sample(after, "process_cpu_seconds_total ") - process_before >= burn - 0.02);
  CHECK(sample(after, "process_resident_memory_bytes ") > 1 << 20);
  CHECK(sample(after, "process_threads ") >= 2);
  CHECK(after.find("# TYPE cityledger_thread_cpu_seconds_total counter\n") != std::string::npos);
}

TEST_CASE("the benchmark's CPU meter reads back the process and thread CPU a node renders") {
  std::string text = "# HELP x y\ncityledger_ops_total{type=\"fare\",result=\"ok\"} 5\n";
  render_process_metrics(&text);
  cl::cli::NodeCpu n = cl::cli::parse_node_cpu(text);
  REQUIRE(n.ok);
  CHECK(n.process_s == doctest::Approx(sample(text, "process_cpu_seconds_total ")));
  REQUIRE_FALSE(n.threads_s.empty());
  double sum = 0;
  for (const auto& [name, seconds] : n.threads_s) {
    CHECK(name.find('"') == std::string::npos);
    CHECK(seconds == doctest::Approx(sample(text, "cityledger_thread_cpu_seconds_total{thread=\"" + name + "\"} ")));
    sum += seconds;
  }
  // Live threads' CPU cannot exceed the process's (ticks: one either way).
  CHECK(sum <= n.process_s + 0.02);

  CHECK_FALSE(cl::cli::parse_node_cpu("cityledger_ops_total 3\n").ok);
  CHECK_FALSE(cl::cli::parse_node_cpu("process_cpu_seconds_total abc\n").ok);
}

TEST_CASE("processes_cpu_seconds counts this process by its name, and nothing for a name no process has") {
  auto stat = parse_proc_stat([] {
    std::FILE* f = std::fopen("/proc/self/stat", "r");
    char buf[1024] = {};
    if (f) {
      size_t got = std::fread(buf, 1, sizeof(buf) - 1, f);
      buf[got] = 0;
      std::fclose(f);
    }
    return std::string(buf);
  }());
  REQUIRE(stat);
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  volatile uint64_t x = 0;
  while (std::chrono::steady_clock::now() < until) x = x + 1;
  CHECK(cl::cli::processes_cpu_seconds(stat->name) >= 0.05);
  CHECK(cl::cli::processes_cpu_seconds("no-such-process-name") == 0);
}
