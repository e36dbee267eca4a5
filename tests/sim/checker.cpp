#include "tests/sim/checker.h"

#include <algorithm>

#include "tests/sim/state_machine.h"

namespace cl::sim {
namespace {

std::string str(uint64_t v) { return std::to_string(v); }

}  // namespace

uint64_t Checker::fingerprint(const raft::Entry& e) {
  const char type = static_cast<char>(e.type);
  return fnv1a(e.data, fnv1a(std::string_view(&type, 1)));
}

void Checker::fail(std::string checker, std::string detail) {
  if (!violation_) violation_ = Violation{std::move(checker), std::move(detail)};
}

void Checker::observe(const raft::RaftCore& core) {
  NodeView& view = nodes_[core.id()];
  if (core.role() == raft::Role::kLeader) {
    auto [it, inserted] = leaders_.emplace(core.term(), core.id());
    if (!inserted && it->second != core.id()) {
      fail("election_safety", "two leaders in term " + str(core.term()) + ": nodes " + str(it->second) + " and " +
                                  str(core.id()));
      return;
    }
    if (view.leader_checked_term != core.term()) {
      view.leader_checked_term = core.term();
      check_leader_completeness(core);
    }
  }
  if (core.commit() > view.seen_commit) {
    for (raft::Index i = std::max(view.seen_commit + 1, core.first_index()); i <= core.commit(); ++i) {
      record_commit(core, i);
    }
    view.seen_commit = core.commit();
  }
}

void Checker::record_commit(const raft::RaftCore& core, raft::Index i) {
  const raft::Entry* e = core.entry_at(i);
  if (e == nullptr) {
    fail("commit_beyond_log", "node " + str(core.id()) + " commits " + str(i) + " but lacks the entry");
    return;
  }
  if (committed_.size() <= i) committed_.resize(i + 1);
  Committed& c = committed_[i];
  const uint64_t fp = fingerprint(*e);
  if (!c.known) {
    c = Committed{true, e->term, fp, core.term()};
    return;
  }
  if (c.term != e->term || c.fingerprint != fp) {
    fail("committed_changed", "index " + str(i) + " was committed with an entry of term " + str(c.term) +
                                  ", node " + str(core.id()) + " now commits one of term " + str(e->term));
    return;
  }
  c.commit_term = std::min(c.commit_term, core.term());
}

void Checker::check_leader_completeness(const raft::RaftCore& core) {
  // Entries at or below the leader's snapshot are in its state, not its log.
  for (raft::Index i = core.first_index(); i < committed_.size(); ++i) {
    const Committed& c = committed_[i];
    if (!c.known || c.commit_term >= core.term()) continue;
    const raft::Entry* e = core.entry_at(i);
    if (e == nullptr || e->term != c.term || fingerprint(*e) != c.fingerprint) {
      fail("leader_completeness", "node " + str(core.id()) + " leads term " + str(core.term()) +
                                      " without the entry committed at index " + str(i) + " (term " + str(c.term) +
                                      ", committed by term " + str(c.commit_term) + "); it has " +
                                      (e ? "term " + str(e->term) : std::string("nothing")) + " there");
      return;
    }
  }
}

void Checker::on_persist(raft::NodeId node, const raft::Entry& e, raft::Term prev_term) {
  auto [it, inserted] = persisted_.emplace(std::make_pair(e.index, e.term), Persisted{fingerprint(e), prev_term});
  if (inserted) return;
  if (it->second.fingerprint != fingerprint(e) || it->second.prev_term != prev_term) {
    fail("log_matching", "node " + str(node) + " stores at index " + str(e.index) + " term " + str(e.term) +
                             " an entry (or predecessor term " + str(prev_term) + ") different from another node's");
  }
}

void Checker::on_apply(raft::NodeId node, const raft::Entry& e, const std::string& digest) {
  if (e.index >= committed_.size() || !committed_[e.index].known) {
    fail("state_machine_safety", "node " + str(node) + " applies index " + str(e.index) + " never seen committed");
    return;
  }
  const Committed& c = committed_[e.index];
  if (c.term != e.term || c.fingerprint != fingerprint(e)) {
    fail("state_machine_safety", "node " + str(node) + " applies at index " + str(e.index) +
                                     " an entry other than the committed one");
    return;
  }
  if (digests_.size() <= e.index) digests_.resize(e.index + 1);
  std::string& d = digests_[e.index];
  if (d.empty()) {
    d = digest;
  } else if (d != digest) {
    fail("state_machine_safety", "node " + str(node) + " digest after index " + str(e.index) + " is " + digest +
                                     ", another replica had " + d);
  }
}

void Checker::on_snapshot_installed(raft::NodeId node, raft::Index index, const std::string& digest) {
  if (index < digests_.size() && !digests_[index].empty() && digests_[index] != digest) {
    fail("state_machine_safety", "node " + str(node) + " installed a snapshot at " + str(index) +
                                     " whose digest differs from the replicas'");
  }
}

void Checker::on_restart(raft::NodeId node, raft::Index from) {
  NodeView& view = nodes_[node];
  view.seen_commit = from;
  view.leader_checked_term = 0;
}

}  // namespace cl::sim
