// The replicated state machine as the simulator sees it.  The simulator only
// needs these operations, so the real ledger can replace PayloadLog behind
// this interface without touching the scheduler or the checkers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "consensus/types.h"

namespace cl::sim {

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies committed entry `e`.  Called exactly once per index, in index
  // order, for entries of every type (no-ops and configuration entries too).
  virtual void apply(const raft::Entry& e) = 0;
  virtual raft::Index applied_index() const = 0;
  // Identifies the applied prefix: replicas that applied the same entries
  // have equal digests (the ledger: its Merkle root).
  virtual std::string digest() const = 0;
  // The full state at applied_index() (a snapshot), and its inverse.
  virtual std::string save() const = 0;
  virtual Status load(std::string_view bytes) = 0;
  // How many times the client payload `id` was applied (dedup: at most 1).
  virtual size_t count(std::string_view payload_id) const = 0;
};

// Client payloads are "<id>|<filler>".  Returns the id part.
std::string_view payload_id(std::string_view data);

// The trivial state machine: the ordered list of distinct client payload ids
// (a retried payload already applied is skipped, like an op id in the
// ledger), plus a hash chain over every applied entry.
class PayloadLog final : public StateMachine {
 public:
  void apply(const raft::Entry& e) override;
  raft::Index applied_index() const override { return applied_; }
  std::string digest() const override;
  std::string save() const override;
  Status load(std::string_view bytes) override;
  size_t count(std::string_view payload_id) const override;

 private:
  raft::Index applied_ = 0;
  uint64_t chain_ = 0;
  std::vector<std::string> ids_;           // in apply order
  std::unordered_set<std::string> seen_;   // membership only; never iterated
};

// 64-bit FNV-1a, for digests and entry fingerprints in the simulator.
uint64_t fnv1a(std::string_view data, uint64_t h = 0xcbf29ce484222325ull);

}  // namespace cl::sim
