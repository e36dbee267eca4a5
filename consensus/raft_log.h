// The in-memory Raft log of one server: a snapshot base (index, term, conf)
// followed by contiguous entries, and the boundary up to which the entries are
// known durable ("stabled").  No I/O: the owner (RaftCore) hands unstable
// entries to the application through Ready and is told when they are durable.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "consensus/types.h"

namespace cl::raft {

class RaftLog {
 public:
  // `entries` must be contiguous from snapshot.index + 1; all are durable.
  RaftLog(SnapshotMeta snapshot, std::vector<Entry> entries);

  const SnapshotMeta& snapshot() const { return snapshot_; }
  Index first_index() const { return snapshot_.index + 1; }
  Index last_index() const { return snapshot_.index + entries_.size(); }
  Term last_term() const;
  // Entries up to and including stabled() are durable.
  Index stabled() const { return stabled_; }

  // The term of entry `i`; the snapshot's term for i == snapshot().index
  // (term 0 for index 0); nullopt if `i` is compacted away or beyond the end.
  std::optional<Term> term_at(Index i) const;
  // Entry `i`, or nullptr if outside [first_index(), last_index()].
  const Entry* entry_at(Index i) const;
  bool matches(Index i, Term t) const { return term_at(i) == t; }

  // Leader append.  Precondition: e.index == last_index() + 1.
  void append(Entry e);
  // Follower append of `entries` (contiguous) that follow an index whose term
  // matched the leader's.  Entries already present with the same term are
  // skipped; from the first conflicting one on, the suffix is replaced.
  // Returns the first index removed, or 0 if nothing was removed.
  Index append_after_match(const std::vector<Entry>& entries);

  // Up to `max_count` entries starting at `from`, stopping before `max_bytes`
  // of data is exceeded (but always at least one entry if any exists).
  // Precondition: from >= first_index().
  std::vector<Entry> slice(Index from, size_t max_count, size_t max_bytes) const;
  // The not-yet-durable entries up to `upto` (inclusive).
  std::vector<Entry> unstable(Index upto) const;

  // Marks entries up to `i` durable if entry `i` still has term `t` (it may
  // have been replaced since it was handed out).
  void stable_to(Index i, Term t);

  // Largest index <= i whose term is <= t, stopping at the snapshot base
  // (thesis §5.3 fast backtracking: skip a whole conflicting term at once).
  Index find_conflict_by_term(Index i, Term t) const;

  // Drops entries up to meta.index, which the application has snapshotted.
  // Preconditions: first_index() <= meta.index <= stabled(), term matches.
  void compact(const SnapshotMeta& meta);
  // Installs a snapshot received from the leader.  If entry meta.index is
  // present with meta.term the suffix after it is kept (it may hold entries
  // this server acknowledged); otherwise the whole log is discarded.  Either
  // way nothing after meta.index counts as durable any more: the application
  // rewrites its durable log from the snapshot (see Ready::snapshot).
  void restore(const SnapshotMeta& meta);

 private:
  SnapshotMeta snapshot_;
  std::deque<Entry> entries_;
  Index stabled_ = 0;
};

}  // namespace cl::raft
