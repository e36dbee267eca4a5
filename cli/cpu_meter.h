// Where the CPU goes during one benchmark phase, on one machine: every
// cityledger node's CPU time and its split by thread name (read from each
// node's /metrics), the load generator's own CPU time, PostgreSQL's server
// processes (when it is the target), and how busy the machine's cores were.
// Divided by the ops accepted, this says how much CPU one op costs in all,
// and so how many ops/s the machine's cores could take at most
// (cores / CPU per op) — the bound a cluster whose replicas share the
// machine runs into.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "api/http_client.h"
#include "wallet/jcs.h"

namespace cl::cli {

struct NodeCpu {
  std::string api;   // host:port
  std::string role;  // leader, follower, ... (at the phase start)
  bool ok = false;   // both scrapes answered
  double process_s = 0;
  std::map<std::string, double> threads_s;
};

struct CpuSnapshot {
  std::vector<NodeCpu> nodes;
  double self_s = 0;               // this process (getrusage)
  double postgres_s = -1;          // Σ CPU of processes named "postgres"; -1 if not asked
  uint64_t machine_busy_ticks = 0;  // /proc/stat: all but idle and iowait
  uint64_t machine_total_ticks = 0;
};

class CpuMeter {
 public:
  // "node": any node of the cluster under test (its /v1/cluster lists the
  // others), or nullopt; "postgres": also count PostgreSQL's processes.
  CpuMeter(std::optional<api::Url> node, bool postgres);

  void start();       // just before the first request of the phase
  void load_ended();  // when the phase's last answer arrived
  // After the replicas applied everything of the phase (their CPU for its
  // ops is spent by then); node CPU is counted from start() to here.
  void finish();

  // {"cores", "machine_busy", "generator_us_per_op", "nodes": [{"api",
  // "role", "us_per_op", "threads_us_per_op": {...}}], "postgres_us_per_op",
  // "total_us_per_op", "cpu_bound_ops_per_sec"}; null if nothing was
  // measured or no op was accepted.
  Json report(uint64_t accepted_ops) const;

 private:
  CpuSnapshot take(bool nodes) const;

  std::optional<api::Url> node_;
  bool postgres_;
  struct Member {
    api::Url url;
    std::string api;   // as /v1/cluster lists it
    std::string role;  // at the phase start
  };
  std::vector<Member> members_;
  std::optional<CpuSnapshot> start_, load_end_, end_;
};

// Parses the samples cpu accounting needs from a Prometheus exposition:
// process_cpu_seconds_total and cityledger_thread_cpu_seconds_total{thread}.
// ok is false if the process total is missing.
NodeCpu parse_node_cpu(const std::string& exposition);

// Σ user + system CPU seconds of the processes whose name is "name".
double processes_cpu_seconds(const std::string& name);

}  // namespace cl::cli
