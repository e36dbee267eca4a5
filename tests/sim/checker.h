// Safety checkers for the simulated cluster (thesis Fig. 3.2 properties),
// fed by the simulator after every event and at every persist and apply.
// The first violation is kept; the simulator stops there and prints it.
//
//   election_safety        at most one leader per term
//   log_matching           entries with the same index and term are identical
//                          and have identical predecessors (checked on every
//                          durable append)
//   committed_changed      an index, once committed anywhere, is committed with
//                          the same entry everywhere, forever
//   leader_completeness    a leader of term T holds every entry committed in
//                          a term before T
//   state_machine_safety   every replica applies the committed entry at each
//                          index, and reaches the same digest there
//
// The simulator adds its own: ack_durability (an acknowledgement or a vote
// leaves only when the disk backs it), double_vote and durable_term (on
// persist), linearizable_read, acked_payload (every acknowledged payload is in
// every final replica exactly once), and liveness after healing.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "consensus/raft_core.h"

namespace cl::sim {

struct Violation {
  std::string checker;
  std::string detail;
};

class Checker {
 public:
  // After every event, for every live node.
  void observe(const raft::RaftCore& core);
  // `e` is being appended to `node`'s durable log after an entry of `prev_term`.
  void on_persist(raft::NodeId node, const raft::Entry& e, raft::Term prev_term);
  // `node` applied `e`; its state machine digest is now `digest`.
  void on_apply(raft::NodeId node, const raft::Entry& e, const std::string& digest);
  // `node` installed a snapshot at `index` whose state has `digest`.
  void on_snapshot_installed(raft::NodeId node, raft::Index index, const std::string& digest);
  // `node` restarted from durable state; its commit is re-examined from `from`.
  void on_restart(raft::NodeId node, raft::Index from);

  void fail(std::string checker, std::string detail);
  const std::optional<Violation>& violation() const { return violation_; }
  bool failed() const { return violation_.has_value(); }

  size_t leaders_elected() const { return leaders_.size(); }
  raft::Index max_committed() const { return committed_.empty() ? 0 : committed_.size() - 1; }

  static uint64_t fingerprint(const raft::Entry& e);

 private:
  struct Committed {
    bool known = false;
    raft::Term term = 0;
    uint64_t fingerprint = 0;
    raft::Term commit_term = 0;  // lowest term of a server that saw it committed
  };
  struct NodeView {
    raft::Index seen_commit = 0;
    raft::Term leader_checked_term = 0;
  };
  struct Persisted {
    uint64_t fingerprint;
    raft::Term prev_term;
  };

  void record_commit(const raft::RaftCore& core, raft::Index i);
  void check_leader_completeness(const raft::RaftCore& core);

  std::optional<Violation> violation_;
  std::map<raft::Term, raft::NodeId> leaders_;
  std::vector<Committed> committed_;  // by index
  std::vector<std::string> digests_;  // by index: state machine digest after applying it
  std::map<std::pair<raft::Index, raft::Term>, Persisted> persisted_;
  std::map<raft::NodeId, NodeView> nodes_;
};

}  // namespace cl::sim
