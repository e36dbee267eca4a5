// What a leader knows about one follower's log, and the flow control of the
// appends it sends there (etcd raft's Progress/Inflights, thesis §10.2.1).
//
//   kProbe:     next is a guess; one append at a time until the follower
//               answers (or a heartbeat response arrives).
//   kReplicate: the follower matched at `match`; appends are pipelined
//               optimistically (next advances on send) up to
//               max_inflight_msgs unacknowledged messages.
//   kSnapshot:  the follower needs entries the leader has compacted; nothing
//               is sent until it shows the snapshot installed or
//               snapshot_elapsed reaches the retry interval.
#pragma once

#include <cstddef>
#include <deque>

#include "consensus/types.h"

namespace cl::raft {

class Progress {
 public:
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };

  Progress(Index next, size_t max_inflight) : next_(next), max_inflight_(max_inflight) {}

  State state() const { return state_; }
  Index match() const { return match_; }
  Index next() const { return next_; }
  Index pending_snapshot() const { return pending_snapshot_; }
  bool recent_active() const { return recent_active_; }
  void set_recent_active(bool active) { recent_active_ = active; }
  int snapshot_elapsed() const { return snapshot_elapsed_; }
  void tick_snapshot() { ++snapshot_elapsed_; }

  // Whether no append may be sent now.
  bool paused() const;

  // Probes from max(match + 1, next_hint).
  void become_probe(Index next_hint = 0);
  void become_replicate();
  void become_snapshot(Index snapshot_index);

  // Records that an append carrying entries up to `last` (none if
  // last < next) was sent.
  void on_append_sent(Index last, bool had_entries);
  // A follower accepted everything up to `n`.  Returns true if match grew.
  bool maybe_update(Index n);
  // A follower refused the append after `rejected`; `hint` is the largest
  // index that may match.  Returns false if the refusal is stale.
  bool maybe_decrease_to(Index rejected, Index hint);
  // A heartbeat response: the follower is alive, so allow a new probe, and
  // free one pipeline slot in case an acknowledgement was lost.
  void on_heartbeat_response();

 private:
  State state_ = State::kProbe;
  Index match_ = 0;
  Index next_;
  Index pending_snapshot_ = 0;
  int snapshot_elapsed_ = 0;
  bool probe_sent_ = false;
  bool recent_active_ = true;
  size_t max_inflight_;
  std::deque<Index> inflight_;  // last index of each unacknowledged append
};

}  // namespace cl::raft
