#include "consensus/progress.h"

#include <algorithm>

#include "common/check.h"

namespace cl::raft {

bool Progress::paused() const {
  switch (state_) {
    case State::kProbe: return probe_sent_;
    case State::kReplicate: return inflight_.size() >= max_inflight_;
    case State::kSnapshot: return true;
  }
  return true;
}

void Progress::become_probe(Index next_hint) {
  next_ = std::max(match_ + 1, next_hint);
  state_ = State::kProbe;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflight_.clear();
}

void Progress::become_replicate() {
  state_ = State::kReplicate;
  next_ = match_ + 1;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflight_.clear();
}

void Progress::become_snapshot(Index snapshot_index) {
  state_ = State::kSnapshot;
  pending_snapshot_ = snapshot_index;
  snapshot_elapsed_ = 0;
  probe_sent_ = false;
  inflight_.clear();
}

void Progress::on_append_sent(Index last, bool had_entries) {
  switch (state_) {
    case State::kProbe:
      probe_sent_ = true;
      break;
    case State::kReplicate:
      if (had_entries) {
        CL_CHECK(last >= next_);
        next_ = last + 1;
        inflight_.push_back(last);
      }
      break;
    case State::kSnapshot:
      CL_CHECK_MSG(false, "append sent to a follower awaiting a snapshot");
  }
}

bool Progress::maybe_update(Index n) {
  bool updated = false;
  if (match_ < n) {
    match_ = n;
    updated = true;
    probe_sent_ = false;
  }
  next_ = std::max(next_, n + 1);
  while (!inflight_.empty() && inflight_.front() <= n) inflight_.pop_front();
  return updated;
}

bool Progress::maybe_decrease_to(Index rejected, Index hint) {
  if (state_ == State::kReplicate) {
    // In the pipeline the follower refuses only what it cannot yet attach
    // (a lost or reordered message); restart from what is known to match.
    if (rejected <= match_) return false;  // stale
    next_ = match_ + 1;
    return true;
  }
  if (state_ == State::kSnapshot) return false;  // waiting for the snapshot, not for this
  // Probing: only the answer to the latest probe counts.
  if (next_ == 0 || next_ - 1 != rejected) return false;
  next_ = std::max(std::min(rejected, hint + 1), match_ + 1);
  probe_sent_ = false;
  return true;
}

void Progress::on_heartbeat_response() {
  probe_sent_ = false;
  if (state_ == State::kReplicate && inflight_.size() >= max_inflight_) inflight_.pop_front();
}

}  // namespace cl::raft
