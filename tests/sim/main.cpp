// raft_sim: runs the deterministic cluster simulation (simulation.h) over
// many seeds.
//
//   raft_sim --seeds 1000            seeds 1..1000 (what CI runs)
//   raft_sim --seed 17 --trace       replay one seed, printing every event
//   raft_sim --seeds 100000 --jobs 8 a soak; any failing seed is printed with
//                                    the command that reproduces it
//   raft_sim --fault commit_previous_term --expect-violation --seeds 2000
//                                    run a deliberately broken core and
//                                    succeed only if a checker catches it
//
// Exit status: 0 if every seed passed (or, with --expect-violation, if some
// seed was caught), 1 otherwise, 2 on bad usage.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/sim/simulation.h"

namespace {

using cl::raft::TestFault;

const char* fault_name(TestFault f) {
  switch (f) {
    case TestFault::kNone: return "none";
    case TestFault::kCommitPreviousTerm: return "commit_previous_term";
    case TestFault::kAckBeforePersist: return "ack_before_persist";
  }
  return "?";
}

bool parse_fault(const std::string& s, TestFault* out) {
  for (TestFault f : {TestFault::kNone, TestFault::kCommitPreviousTerm, TestFault::kAckBeforePersist}) {
    if (s == fault_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

bool parse_u64(const char* s, uint64_t* out) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0') return false;
  *out = v;
  return true;
}

// A core CL_CHECK aborts the process; say which seed did it.  Only
// async-signal-safe calls here.
thread_local uint64_t t_current_seed = 0;
bool g_expect_violation = false;
const char* g_fault = "none";
const char* g_mode = "";  // " --ledger" etc., for the reproduce lines

void write_str(const char* s) { [[maybe_unused]] ssize_t n = ::write(2, s, std::strlen(s)); }

void on_abort(int) {
  char digits[24];
  int i = 23;
  digits[i] = '\0';
  uint64_t v = t_current_seed;
  do {
    digits[--i] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  write_str("raft_sim: an invariant check inside the core aborted seed ");
  write_str(digits + i);
  write_str(" (fault ");
  write_str(g_fault);
  write_str("); reproduce: raft_sim --seed ");
  write_str(digits + i);
  write_str(" --fault ");
  write_str(g_fault);
  write_str(g_mode);
  write_str(" --trace\n");
  if (g_expect_violation) {
    write_str("raft_sim: expected violation found (core invariant)\n");
    ::_exit(0);
  }
  ::signal(SIGABRT, SIG_DFL);
  ::raise(SIGABRT);
}

struct Options {
  uint64_t first = 1;
  uint64_t count = 1000;
  uint64_t jobs = 0;  // 0: up to 2, the CI machine's cores
  bool single = false;
  bool trace = false;
  bool verbose = false;
  bool ledger = false;
  bool compaction = true;
  TestFault fault = TestFault::kNone;
};

struct Failure {
  uint64_t seed;
  cl::sim::SimResult result;
};

struct Outcome {
  std::vector<Failure> failures;  // sorted by seed
  cl::sim::SimStats total;
  uint64_t seeds_run = 0;
  double seconds = 0;
};

void usage() {
  std::fprintf(stderr,
               "usage: raft_sim (--seed S | --seeds N [--first F]) [--fault none|commit_previous_term|"
               "ack_before_persist]\n"
               "                [--expect-violation] [--jobs J] [--trace] [--verbose]\n"
               "                [--ledger] [--no-compaction]\n");
}

bool parse_args(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    if (arg == "--seed" && parse_u64(value, &o->first)) {
      o->single = true;
      ++i;
    } else if (arg == "--seeds" && parse_u64(value, &o->count) && o->count > 0) {
      ++i;
    } else if (arg == "--first" && parse_u64(value, &o->first)) {
      ++i;
    } else if (arg == "--jobs" && parse_u64(value, &o->jobs) && o->jobs > 0) {
      ++i;
    } else if (arg == "--fault" && parse_fault(value, &o->fault)) {
      ++i;
    } else if (arg == "--expect-violation") {
      g_expect_violation = true;
    } else if (arg == "--trace") {
      o->trace = true;
    } else if (arg == "--ledger") {
      o->ledger = true;
    } else if (arg == "--no-compaction") {
      o->compaction = false;
    } else if (arg == "--verbose") {
      o->verbose = true;
    } else {
      return false;
    }
  }
  if (o->single) o->count = 1;
  if (o->trace) o->jobs = 1;
  if (o->jobs == 0) o->jobs = std::clamp<uint64_t>(std::thread::hardware_concurrency(), 1, 2);
  return true;
}

void add(cl::sim::SimStats* total, const cl::sim::SimStats& s) {
  total->events += s.events;
  total->virtual_ms += s.virtual_ms;
  total->messages_sent += s.messages_sent;
  total->messages_dropped += s.messages_dropped;
  total->proposals += s.proposals;
  total->acked += s.acked;
  total->reads_checked += s.reads_checked;
  total->leaders += s.leaders;
  total->crashes += s.crashes;
  total->snapshots_installed += s.snapshots_installed;
  total->conf_changes += s.conf_changes;
  total->transfers += s.transfers;
  total->partitions += s.partitions;
}

void print_seed(uint64_t seed, const cl::sim::SimResult& r) {
  const auto& s = r.stats;
  std::printf("seed %llu: %s  events=%llu virtual=%llums acked=%llu leaders=%llu crashes=%llu snapshots=%llu "
              "conf=%llu commit=%llu  [%s]\n",
              static_cast<unsigned long long>(seed), r.ok ? "ok" : "VIOLATION",
              static_cast<unsigned long long>(s.events), static_cast<unsigned long long>(s.virtual_ms),
              static_cast<unsigned long long>(s.acked), static_cast<unsigned long long>(s.leaders),
              static_cast<unsigned long long>(s.crashes), static_cast<unsigned long long>(s.snapshots_installed),
              static_cast<unsigned long long>(s.conf_changes), static_cast<unsigned long long>(s.final_commit),
              r.params.c_str());
}

// Runs the seeds on `jobs` threads.  Seeds are independent and each is fully
// determined by its number, so the threads change nothing but the speed.
// With --expect-violation, seeds above the lowest failing one are skipped.
Outcome run_seeds(const Options& o) {
  Outcome out;
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> stop_after{UINT64_MAX};
  std::mutex mu;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (;;) {
      const uint64_t k = next.fetch_add(1);
      if (k >= o.count) return;
      const uint64_t seed = o.first + k;
      if (seed > stop_after.load()) return;
      t_current_seed = seed;
      cl::sim::SimOptions opts;
      opts.seed = seed;
      opts.fault = o.fault;
      opts.trace = o.trace;
      opts.ledger = o.ledger;
      opts.compaction = o.compaction;
      cl::sim::SimResult r = cl::sim::run_simulation(opts);
      std::lock_guard<std::mutex> lock(mu);
      ++out.seeds_run;
      add(&out.total, r.stats);
      if (o.verbose || o.single) print_seed(seed, r);
      if (r.ok) continue;
      if (g_expect_violation) {
        uint64_t cur = stop_after.load();
        while (seed < cur && !stop_after.compare_exchange_weak(cur, seed)) {
        }
      }
      out.failures.push_back(Failure{seed, std::move(r)});
    }
  };
  std::vector<std::thread> threads;
  for (uint64_t j = 0; j < o.jobs; ++j) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(out.failures.begin(), out.failures.end(),
            [](const Failure& a, const Failure& b) { return a.seed < b.seed; });
  return out;
}

void print_report(const Outcome& out) {
  for (const Failure& f : out.failures) {
    std::printf("VIOLATION seed=%llu fault=%s checker=%s: %s\n  params: %s\n  reproduce: raft_sim --seed %llu "
                "--fault %s%s --trace\n",
                static_cast<unsigned long long>(f.seed), g_fault, f.result.checker.c_str(), f.result.detail.c_str(),
                f.result.params.c_str(), static_cast<unsigned long long>(f.seed), g_fault, g_mode);
  }
  const auto& t = out.total;
  std::printf("raft_sim: %llu seeds (fault %s) in %.1f s = %.1f seeds/s, %.2fM events/s; %zu violation(s)\n",
              static_cast<unsigned long long>(out.seeds_run), g_fault, out.seconds, out.seeds_run / out.seconds,
              t.events / out.seconds / 1e6, out.failures.size());
  std::printf("  totals: events=%llu virtual=%.0fs msgs=%llu (dropped %llu) proposals=%llu acked=%llu "
              "reads_checked=%llu leaders=%llu crashes=%llu partitions=%llu snapshots=%llu conf_changes=%llu "
              "transfers=%llu\n",
              static_cast<unsigned long long>(t.events), t.virtual_ms / 1000.0,
              static_cast<unsigned long long>(t.messages_sent), static_cast<unsigned long long>(t.messages_dropped),
              static_cast<unsigned long long>(t.proposals), static_cast<unsigned long long>(t.acked),
              static_cast<unsigned long long>(t.reads_checked), static_cast<unsigned long long>(t.leaders),
              static_cast<unsigned long long>(t.crashes), static_cast<unsigned long long>(t.partitions),
              static_cast<unsigned long long>(t.snapshots_installed), static_cast<unsigned long long>(t.conf_changes),
              static_cast<unsigned long long>(t.transfers));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse_args(argc, argv, &o)) {
    usage();
    return 2;
  }
  g_fault = fault_name(o.fault);
  g_mode = o.ledger ? (o.compaction ? " --ledger" : " --ledger --no-compaction") : (o.compaction ? "" : " --no-compaction");
  ::signal(SIGABRT, on_abort);
  const Outcome out = run_seeds(o);
  print_report(out);
  if (!g_expect_violation) return out.failures.empty() ? 0 : 1;
  if (out.failures.empty()) {
    std::printf("raft_sim: FAILED: fault %s was not caught by any checker\n", g_fault);
    return 1;
  }
  std::printf("raft_sim: expected violation found: seed %llu, checker %s\n",
              static_cast<unsigned long long>(out.failures.front().seed), out.failures.front().result.checker.c_str());
  return 0;
}
