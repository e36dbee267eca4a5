// A deterministic whole-cluster Raft simulation in one process: N nodes, each
// a RaftCore with simulated durable storage and a state machine, driven by a
// seeded discrete-event scheduler that injects message loss, duplication,
// reordering and delay, symmetric and asymmetric partitions, crashes that lose
// everything not yet persisted, restarts, leader transfers and membership
// changes, while clients propose payloads (retrying elsewhere on timeout) and
// readers issue ReadIndex reads.  The Checker runs after every event; after
// the fault phase every partition heals and the cluster must converge.
//
// One seed determines everything, so `raft_sim --seed S` replays a run
// exactly (add --trace to print every event).
#pragma once

#include <cstdint>
#include <string>

#include "consensus/raft_core.h"

namespace cl::sim {

struct SimOptions {
  uint64_t seed = 1;
  raft::TestFault fault = raft::TestFault::kNone;
  bool trace = false;  // print every event to stdout
  // The real ledger (LedgerMachine) instead of PayloadLog: clients propose
  // batches of signed ops, and the end-of-seed checks audit every replica's
  // journal, Merkle root and supply.
  bool ledger = false;
  // false: never snapshot/compact (every seed's compact_every forced to 0).
  bool compaction = true;
};

struct SimStats {
  uint64_t events = 0;
  uint64_t virtual_ms = 0;
  uint64_t messages_sent = 0;
  uint64_t messages_dropped = 0;
  uint64_t proposals = 0;
  uint64_t acked = 0;
  uint64_t reads_checked = 0;
  uint64_t leaders = 0;
  uint64_t crashes = 0;
  uint64_t snapshots_installed = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t partitions = 0;
  uint64_t final_commit = 0;
};

struct SimResult {
  bool ok = true;
  std::string checker;  // which checker fired
  std::string detail;
  std::string params;   // the cluster and fault parameters this seed chose
  SimStats stats;
};

SimResult run_simulation(const SimOptions& options);

}  // namespace cl::sim
