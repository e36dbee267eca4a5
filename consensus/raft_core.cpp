#include "consensus/raft_core.h"

#include <algorithm>
#include <utility>

#include "common/check.h"
#include "consensus/codec.h"

namespace cl::raft {
namespace {

Status invalid(std::string what) { return Status::error("invalid", std::move(what)); }
Status corruption(std::string what) { return Status::error("corruption", "restored raft state: " + std::move(what)); }

bool voters_well_formed(const std::vector<NodeId>& voters) {
  if (voters.size() > kMaxVoters) return false;
  for (size_t i = 0; i < voters.size(); ++i) {
    if (voters[i] == kNoNode || (i > 0 && voters[i] <= voters[i - 1])) return false;
  }
  return true;
}

Message make(MessageType type, NodeId to) {
  Message m;
  m.type = type;
  m.to = to;
  return m;
}

// Upper bound of the encoded size of an append built within the limits.
size_t worst_append_bytes(const Config& c) {
  return 4096 + c.max_entries_per_msg * 32 + c.max_bytes_per_msg + c.max_entry_bytes;
}

}  // namespace

// ---------------------------------------------------------------------------
// Construction

Result<std::unique_ptr<RaftCore>> RaftCore::open(Config c, RestoredState r) {
  if (c.id == kNoNode) return invalid("raft config: id must be non-zero");
  if (c.heartbeat_tick < 1 || c.election_tick <= c.heartbeat_tick) {
    return invalid("raft config: need 1 <= heartbeat_tick < election_tick");
  }
  if (c.max_inflight_msgs < 1 || c.max_entries_per_msg < 1 || c.max_bytes_per_msg < 1 || c.max_entry_bytes < 1 ||
      c.max_uncommitted_entries < 1 || c.max_pending_reads < 1 || c.max_committed_per_ready < 1) {
    return invalid("raft config: every limit must be at least 1");
  }
  if (c.max_entries_per_msg > kMaxEntriesPerFrame || worst_append_bytes(c) > kMaxFrameBytes) {
    return invalid("raft config: message limits exceed the frame limit");
  }
  std::sort(c.voters.begin(), c.voters.end());
  if (!voters_well_formed(c.voters)) return invalid("raft config: voters must be unique, non-zero, at most 64");
  if (c.snapshot_retry_ticks <= 0) c.snapshot_retry_ticks = 2 * c.election_tick;

  const SnapshotMeta& s = r.snapshot;
  if (!voters_well_formed(s.conf.voters)) return corruption("snapshot voters malformed");
  if (s.index == 0 && s.term != 0) return corruption("snapshot at index 0 with a term");
  Index expect = s.index + 1;
  Term prev_term = s.term;
  for (const Entry& e : r.entries) {
    if (e.index != expect++) return corruption("log entries are not contiguous after the snapshot");
    if (e.term < prev_term) return corruption("log terms decrease");
    prev_term = e.term;
    if (e.type == EntryType::kConfChange && !decode_conf_change(e.data).is_ok()) {
      return corruption("undecodable configuration entry at index " + std::to_string(e.index));
    }
  }
  if (prev_term > r.hard_state.term) return corruption("log holds a term above the persisted term");
  const Index last = s.index + r.entries.size();
  if (r.hard_state.commit > last) return corruption("commit index beyond the last log entry");
  if (r.applied > std::max(r.hard_state.commit, s.index)) return corruption("applied index beyond commit index");
  return std::unique_ptr<RaftCore>(new RaftCore(std::move(c), std::move(r)));
}

RaftCore::RaftCore(Config config, RestoredState restored)
    : cfg_(std::move(config)),
      log_(restored.snapshot, std::move(restored.entries)),
      rng_state_(cfg_.seed ^ (cfg_.id * 0x9E3779B97F4A7C15ull)) {
  term_ = restored.hard_state.term;
  vote_ = restored.hard_state.vote;
  commit_ = std::max(restored.hard_state.commit, log_.snapshot().index);
  applied_ = std::max(restored.applied, log_.snapshot().index);
  persisted_hard_state_ = restored.hard_state;
  recompute_conf();
  become_follower(term_, kNoNode);
  reported_soft_state_ = soft_state();
  fault_hold_index_ = log_.last_index();
}

// ---------------------------------------------------------------------------
// Roles

void RaftCore::reset(Term term) {
  CL_CHECK_MSG(term >= term_, "a server's term never decreases");
  if (term != term_) {
    term_ = term;
    vote_ = kNoNode;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_election_timeout();
  abort_transfer();
  votes_.clear();
  progress_.clear();
  pending_reads_.clear();
}

void RaftCore::become_follower(Term term, NodeId leader) {
  reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
}

// Pre-vote (thesis §9.6): ask first whether a quorum would vote for us,
// without touching our term or vote, so a server that rejoins from a partition
// cannot force a stable cluster into a new election.
void RaftCore::become_pre_candidate() {
  CL_CHECK(role_ != Role::kLeader);
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  votes_.clear();
  election_elapsed_ = 0;
  reset_randomized_election_timeout();
}

void RaftCore::become_candidate() {
  CL_CHECK(role_ != Role::kLeader);
  reset(term_ + 1);
  vote_ = cfg_.id;
  role_ = Role::kCandidate;
}

void RaftCore::become_leader() {
  CL_CHECK(role_ == Role::kCandidate);
  reset(term_);
  role_ = Role::kLeader;
  leader_ = cfg_.id;
  for (NodeId v : conf_.voters) {
    if (v != cfg_.id) progress_.emplace(v, Progress(log_.last_index() + 1, cfg_.max_inflight_msgs));
  }
  // A new leader does not know which of its entries are committed until it
  // commits one of its own term (§3.6.2, §6.4): append a no-op at once.
  append_leader_entry(EntryType::kNoop, std::string());
  bcast_append();
}

void RaftCore::campaign(CampaignKind kind) {
  if (!promotable()) return;
  MessageType type;
  Term vote_term;
  if (kind == CampaignKind::kPreElection) {
    become_pre_candidate();
    type = MessageType::kPreVote;
    vote_term = term_ + 1;
  } else {
    become_candidate();
    type = MessageType::kVote;
    vote_term = term_;
  }
  if (poll(cfg_.id, true) == VoteResult::kWon) {  // a configuration of one
    if (kind == CampaignKind::kPreElection) {
      campaign(CampaignKind::kElection);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId v : conf_.voters) {
    if (v == cfg_.id) continue;
    Message m = make(type, v);
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    m.transfer = kind == CampaignKind::kTransfer;
    send(std::move(m));
  }
}

RaftCore::VoteResult RaftCore::poll(NodeId from, bool granted) {
  votes_.emplace(from, granted);  // only a server's first answer counts
  size_t yes = 0, no = 0;
  for (NodeId v : conf_.voters) {
    auto it = votes_.find(v);
    if (it == votes_.end()) continue;
    (it->second ? yes : no)++;
  }
  if (yes >= quorum()) return VoteResult::kWon;
  if (no > conf_.voters.size() - quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

// ---------------------------------------------------------------------------
// Time

void RaftCore::tick() {
  if (cfg_.test_fault == TestFault::kAckBeforePersist) fault_hold_index_ = log_.last_index();
  if (role_ == Role::kLeader) {
    tick_leader();
  } else {
    tick_election();
  }
}

void RaftCore::tick_election() {
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    campaign(cfg_.pre_vote ? CampaignKind::kPreElection : CampaignKind::kElection);
  }
}

void RaftCore::tick_leader() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    // Check-quorum (§6.2): "a leader steps down if an election timeout
    // elapses without a successful round of heartbeats to a majority of its
    // cluster", so a partitioned leader stops accepting work it cannot commit.
    if (cfg_.check_quorum) {
      if (!quorum_active()) {
        become_follower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : progress_) pr.set_recent_active(false);
    }
  }
  if (lead_transferee_ != kNoNode && ++transfer_elapsed_ >= cfg_.election_tick) abort_transfer();
  for (auto& [id, pr] : progress_) {
    if (pr.state() != Progress::State::kSnapshot) continue;
    pr.tick_snapshot();
    if (pr.snapshot_elapsed() >= cfg_.snapshot_retry_ticks) {
      pr.become_probe();  // the notice or the answer may be lost: probe, which asks again if still needed
      send_appends(id, true);
    }
  }
  if (heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    bcast_heartbeat();
  }
}

bool RaftCore::quorum_active() const {
  size_t active = promotable() ? 1 : 0;
  for (const auto& [id, pr] : progress_) active += pr.recent_active() ? 1 : 0;
  return active >= quorum();
}

// ---------------------------------------------------------------------------
// Messages

Status RaftCore::validate(const Message& m) const {
  if (m.to != cfg_.id) return invalid("message not addressed to this server");
  if (m.from == kNoNode || m.from == cfg_.id) return invalid("message from an invalid sender");
  if (m.type != MessageType::kAppend && !m.entries.empty()) return invalid("entries in a non-append message");
  if (m.type == MessageType::kAppend) {
    if (m.log_term > m.term) return invalid("append: previous term above message term");
    Term prev = m.log_term;
    for (size_t i = 0; i < m.entries.size(); ++i) {
      const Entry& e = m.entries[i];
      if (e.index == 0 || e.index != m.index + 1 + i) return invalid("append: entries not contiguous");
      if (e.term < prev || e.term > m.term) return invalid("append: entry terms out of order");
      prev = e.term;
      if (e.type == EntryType::kConfChange && !decode_conf_change(e.data).is_ok()) {
        return invalid("append: undecodable configuration entry");
      }
    }
  }
  if (m.type == MessageType::kSnapshot) {
    const SnapshotMeta& s = m.snapshot;
    if (s.index == 0 || s.term > m.term || s.conf.voters.empty() || !voters_well_formed(s.conf.voters)) {
      return invalid("snapshot: malformed metadata");
    }
  }
  return Status::ok();
}

Status RaftCore::step(const Message& m) {
  if (Status s = validate(m); !s) return s;

  if (m.term > term_) {
    const bool vote_request = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
    if (vote_request && !m.transfer && cfg_.check_quorum && leader_ != kNoNode &&
        election_elapsed_ < cfg_.election_tick) {
      // §4.2.3: "if a server receives a RequestVote request within the minimum
      // election timeout of hearing from a current leader, it does not update
      // its term or grant its vote" — removed or partitioned servers cannot
      // disrupt a healthy cluster.
      return Status::ok();
    }
    if (m.type == MessageType::kPreVote) {
      // A pre-vote never changes our term.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // Granted at the term we would campaign at; counted below.
    } else {
      const bool from_leader = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                               m.type == MessageType::kSnapshot;
      become_follower(m.term, from_leader ? m.from : kNoNode);
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat)) {
      // A stale leader.  With pre-vote/check-quorum it may never see a higher
      // term otherwise (our vote requests are ignored while it holds a lease),
      // so tell it our term and it steps down.
      send(make(MessageType::kAppendResp, m.from));
    } else if (m.type == MessageType::kPreVote) {
      Message r = make(MessageType::kPreVoteResp, m.from);
      r.term = term_;
      r.reject = true;
      send(std::move(r));
    }
    return Status::ok();
  }

  if (m.type == MessageType::kVote || m.type == MessageType::kPreVote) {
    handle_vote_request(m);
    return Status::ok();
  }
  switch (role_) {
    case Role::kLeader: step_leader(m); break;
    case Role::kPreCandidate:
    case Role::kCandidate: step_candidate(m); break;
    case Role::kFollower: step_follower(m); break;
  }
  return Status::ok();
}

void RaftCore::handle_vote_request(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // At most one vote per term (§3.4); a pre-vote for a later term is not a vote.
  const bool can_vote =
      vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) || (pre && m.term > term_);
  // Election restriction (§3.6.1): grant only if the candidate's log is at
  // least as up-to-date as ours, so every leader holds every committed entry.
  const bool up_to_date = m.log_term > log_.last_term() ||
                          (m.log_term == log_.last_term() && m.index >= log_.last_index());
  Message r = make(pre ? MessageType::kPreVoteResp : MessageType::kVoteResp, m.from);
  if (can_vote && up_to_date) {
    r.term = m.term;
    if (!pre) {
      // Persisted with the hard state of this Ready, before the reply leaves.
      vote_ = m.from;
      election_elapsed_ = 0;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  send(std::move(r));
}

void RaftCore::step_leader(const Message& m) {
  switch (m.type) {
    case MessageType::kAppendResp: handle_append_response(m); break;
    case MessageType::kHeartbeatResp: handle_heartbeat_response(m); break;
    default: break;  // late votes, our own term's leader traffic cannot come from others
  }
}

void RaftCore::step_candidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from);
      handle_append(m);
      break;
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      handle_heartbeat(m);
      break;
    case MessageType::kSnapshot:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      break;
    case MessageType::kPreVoteResp:
    case MessageType::kVoteResp: {
      const bool ours = (role_ == Role::kPreCandidate) == (m.type == MessageType::kPreVoteResp);
      if (!ours) break;
      switch (poll(m.from, !m.reject)) {
        case VoteResult::kWon:
          if (role_ == Role::kPreCandidate) {
            campaign(CampaignKind::kElection);
          } else {
            become_leader();
          }
          break;
        case VoteResult::kLost: become_follower(term_, kNoNode); break;
        case VoteResult::kPending: break;
      }
      break;
    }
    default: break;
  }
}

void RaftCore::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_append(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // §3.10: the leader has brought us up to date and asks us to start an
      // election now (skipping pre-vote; voters must not ignore it).
      campaign(CampaignKind::kTransfer);
      break;
    default: break;
  }
}

void RaftCore::handle_append(const Message& m) {
  Message r = make(MessageType::kAppendResp, m.from);
  if (m.index < commit_) {
    // Everything up to our commit index is already the leader's.
    r.index = commit_;
    send(std::move(r));
    return;
  }
  if (log_.matches(m.index, m.log_term)) {
    const Index last_new = m.index + m.entries.size();
    if (!m.entries.empty()) {
      const Entry* first_conflict = nullptr;
      for (const Entry& e : m.entries) {
        if (!log_.matches(e.index, e.term) && e.index <= log_.last_index()) {
          first_conflict = &e;
          break;
        }
      }
      CL_CHECK_MSG(first_conflict == nullptr || first_conflict->index > commit_,
                   "a committed entry must never be overwritten");
      const Index removed = log_.append_after_match(m.entries);
      const bool conf_entry = std::any_of(m.entries.begin(), m.entries.end(),
                                          [](const Entry& e) { return e.type == EntryType::kConfChange; });
      if (conf_entry || (removed != 0 && removed <= conf_index_)) recompute_conf();
    }
    // Commit only what this append proved we share with the leader.
    commit_to(std::min(m.commit, last_new));
    r.index = last_new;  // acknowledged once this Ready's entries are durable
  } else {
    // Fast backtracking (§5.3): point the leader at the last index that can
    // match, skipping every entry of a term it cannot share.
    const Index hint = log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
    r.reject = true;
    r.index = m.index;
    r.reject_hint = hint;
    r.log_term = log_.term_at(hint).value_or(0);
  }
  send(std::move(r));
}

void RaftCore::handle_heartbeat(const Message& m) {
  // The leader sends min(our match, its commit): entries it knows we hold.
  commit_to(m.commit);
  Message r = make(MessageType::kHeartbeatResp, m.from);
  r.context = m.context;
  r.commit = commit_;  // lets a leader see that a snapshot was installed
  send(std::move(r));
}

void RaftCore::handle_snapshot(const Message& m) {
  const SnapshotMeta& s = m.snapshot;
  Message r = make(MessageType::kAppendResp, m.from);
  if (s.index <= commit_) {
    r.index = commit_;
    send(std::move(r));
    return;
  }
  if (log_.matches(s.index, s.term)) {
    // We already hold everything the snapshot covers: just learn the commit.
    commit_to(s.index);
    r.index = commit_;
    send(std::move(r));
    return;
  }
  // The state comes from the application (report_snapshot_done).
  snapshot_request_ = SnapshotRequest{s, m.from};
}

void RaftCore::handle_append_response(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.set_recent_active(true);
  if (m.index > log_.last_index()) return;  // cannot accept what we never sent

  if (m.reject) {
    Index hint = m.reject_hint;
    if (m.log_term > 0) hint = log_.find_conflict_by_term(m.reject_hint, m.log_term);
    if (pr.maybe_decrease_to(m.index, hint)) {
      if (pr.state() == Progress::State::kReplicate) pr.become_probe();
      send_appends(m.from, true);
    }
    return;
  }

  const bool probe_matched = pr.state() == Progress::State::kProbe && pr.match() == m.index;
  if (!pr.maybe_update(m.index) && !probe_matched) return;  // stale
  if (pr.state() == Progress::State::kProbe ||
      (pr.state() == Progress::State::kSnapshot && pr.match() + 1 >= log_.first_index())) {
    pr.become_replicate();
  }
  if (maybe_commit()) {
    bcast_append();
    after_commit_advanced();
    if (role_ != Role::kLeader) return;
  } else {
    send_appends(m.from, false);
  }
  if (m.from == lead_transferee_ && pr.match() == log_.last_index()) send_timeout_now(m.from);
}

void RaftCore::handle_heartbeat_response(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.set_recent_active(true);
  pr.on_heartbeat_response();
  if (pr.state() == Progress::State::kSnapshot && m.commit >= pr.pending_snapshot()) {
    // The follower installed the snapshot (its acknowledgement may be lost):
    // resume appending just after it.
    pr.become_probe(pr.pending_snapshot() + 1);
  }
  if (pr.match() < log_.last_index()) send_appends(m.from, true);

  if (m.context == 0) return;
  for (size_t i = 0; i < pending_reads_.size(); ++i) {
    PendingRead& read = pending_reads_[i];
    if (read.ctx != m.context) continue;
    if (std::find(read.acks.begin(), read.acks.end(), m.from) == read.acks.end()) read.acks.push_back(m.from);
    const size_t acks = std::count_if(read.acks.begin(), read.acks.end(),
                                      [this](NodeId id) { return conf_.contains(id); });
    if (acks >= quorum()) release_reads(i);
    return;
  }
}

// ---------------------------------------------------------------------------
// Replication

void RaftCore::append_leader_entry(EntryType type, std::string data) {
  Entry e;
  e.term = term_;
  e.index = log_.last_index() + 1;
  e.type = type;
  e.data = std::move(data);
  const Index index = e.index;
  std::optional<ConfState> conf;
  if (type == EntryType::kConfChange) conf = decode_conf_change(e.data).value().after;
  log_.append(std::move(e));
  // Single-server changes take effect as soon as the entry is in the log
  // (§4.1: "a server always uses the latest configuration in its log").
  if (conf) apply_conf(*conf, index);
}

// Sends one append (or the snapshot notice) to `to`.  Returns whether a
// message was sent.
bool RaftCore::send_append(NodeId to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.paused()) return false;
  CL_CHECK(pr.next() >= 1 && pr.next() <= log_.last_index() + 1);
  const Index prev = pr.next() - 1;
  const std::optional<Term> prev_term = log_.term_at(prev);
  if (!prev_term) {
    // The entries this follower needs are compacted away: it must install the
    // application's snapshot instead (§5.3), fetched outside the core.
    Message m = make(MessageType::kSnapshot, to);
    m.snapshot = log_.snapshot();
    send(std::move(m));
    pr.become_snapshot(log_.snapshot().index);
    return true;
  }
  std::vector<Entry> entries;
  if (pr.next() <= log_.last_index()) entries = log_.slice(pr.next(), cfg_.max_entries_per_msg, cfg_.max_bytes_per_msg);
  if (entries.empty() && !send_if_empty) return false;
  Message m = make(MessageType::kAppend, to);
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  const bool had_entries = !entries.empty();
  const Index last = had_entries ? entries.back().index : prev;
  m.entries = std::move(entries);
  send(std::move(m));
  pr.on_append_sent(last, had_entries);
  return true;
}

void RaftCore::send_appends(NodeId to, bool send_if_empty) {
  bool sent = send_append(to, send_if_empty);
  const Progress& pr = progress_.at(to);
  while (sent && pr.state() == Progress::State::kReplicate && pr.next() <= log_.last_index()) {
    sent = send_append(to, false);
  }
}

void RaftCore::bcast_append() {
  for (const auto& [id, pr] : progress_) send_appends(id, true);
}

void RaftCore::bcast_heartbeat() {
  const uint64_t ctx = pending_reads_.empty() ? 0 : pending_reads_.back().ctx;
  for (const auto& [id, pr] : progress_) {
    Message m = make(MessageType::kHeartbeat, id);
    m.commit = std::min(pr.match(), commit_);
    m.context = ctx;
    send(std::move(m));
  }
}

Index RaftCore::durable_last() const {
  return cfg_.test_fault == TestFault::kAckBeforePersist ? log_.last_index() : log_.stabled();
}

bool may_send_before_persist(const Message& m) {
  return m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat;
}

bool RaftCore::maybe_commit() {
  if (conf_.voters.empty()) return false;
  std::vector<Index> matches;
  matches.reserve(conf_.voters.size());
  for (NodeId v : conf_.voters) matches.push_back(v == cfg_.id ? durable_last() : progress_.at(v).match());
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const Index quorum_index = matches[quorum() - 1];  // stored on a quorum
  if (quorum_index <= commit_) return false;
  // §3.6.2 (Figure 3.7, "Figure 8" of the paper): "Raft never commits log
  // entries from previous terms by counting replicas. Only log entries from
  // the leader's current term are committed by counting replicas; once an
  // entry from the current term has been committed in this way, then all
  // prior entries are committed indirectly because of the Log Matching
  // Property."  An older-term entry on a quorum can still be overwritten by
  // a leader elected with a later-term last entry.
  if (log_.term_at(quorum_index) != term_ && cfg_.test_fault != TestFault::kCommitPreviousTerm) return false;
  commit_to(quorum_index);
  return true;
}

void RaftCore::after_commit_advanced() {
  if (role_ != Role::kLeader || promotable() || commit_ < conf_index_) return;
  // §4.2.2: a leader removed from the configuration steps down once the
  // configuration entry is committed.  Hand over to the best-placed voter
  // so the cluster need not wait for an election timeout.
  NodeId best = kNoNode;
  Index best_match = 0;
  for (const auto& [id, pr] : progress_) {
    if (pr.match() > best_match) {
      best = id;
      best_match = pr.match();
    }
  }
  if (best != kNoNode && best_match == log_.last_index()) send_timeout_now(best);
  become_follower(term_, kNoNode);
}

void RaftCore::send_timeout_now(NodeId to) { send(make(MessageType::kTimeoutNow, to)); }

void RaftCore::release_reads(size_t upto_position) {
  // A quorum confirmed leadership after this read was registered, so also
  // after every earlier one.
  for (size_t i = 0; i <= upto_position; ++i) {
    read_states_.push_back(ReadState{pending_reads_[i].index, pending_reads_[i].ctx});
  }
  pending_reads_.erase(pending_reads_.begin(), pending_reads_.begin() + static_cast<std::ptrdiff_t>(upto_position + 1));
}

// ---------------------------------------------------------------------------
// Log and configuration

void RaftCore::commit_to(Index index) {
  if (index <= commit_) return;  // the commit index never decreases
  CL_CHECK_MSG(index <= log_.last_index(),
               "commit index beyond the last log entry: was the durable log lost or truncated?");
  commit_ = index;
}

void RaftCore::apply_conf(const ConfState& conf, Index index) {
  conf_ = conf;
  conf_index_ = index;
  if (role_ != Role::kLeader) return;
  for (NodeId v : conf_.voters) {
    if (v != cfg_.id && !progress_.count(v)) {
      progress_.emplace(v, Progress(log_.last_index() + 1, cfg_.max_inflight_msgs));
    }
  }
  for (auto it = progress_.begin(); it != progress_.end();) {
    it = conf_.contains(it->first) ? std::next(it) : progress_.erase(it);
  }
  if (lead_transferee_ != kNoNode && !conf_.contains(lead_transferee_)) abort_transfer();
}

ConfState RaftCore::conf_at(Index i) const {
  for (Index j = std::min(i, log_.last_index()); j >= log_.first_index(); --j) {
    const Entry* e = log_.entry_at(j);
    if (e->type == EntryType::kConfChange) return decode_conf_change(e->data).value().after;
  }
  const ConfState& base = log_.snapshot().conf;
  return base.voters.empty() ? ConfState{cfg_.voters} : base;
}

void RaftCore::recompute_conf() {
  for (Index j = log_.last_index(); j >= log_.first_index(); --j) {
    const Entry* e = log_.entry_at(j);
    if (e->type == EntryType::kConfChange) {
      apply_conf(decode_conf_change(e->data).value().after, j);
      return;
    }
  }
  apply_conf(conf_at(log_.snapshot().index), 0);
}

std::optional<Index> RaftCore::match_index(NodeId id) const {
  if (role_ != Role::kLeader) return std::nullopt;
  if (id == cfg_.id) return promotable() ? std::optional<Index>(durable_last()) : std::nullopt;
  auto it = progress_.find(id);
  if (it == progress_.end()) return std::nullopt;
  return it->second.match();
}

// ---------------------------------------------------------------------------
// Application requests

Result<Index> RaftCore::propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Status::error("not_leader", leader_ != kNoNode ? "leader is " + std::to_string(leader_) : "no known leader");
  }
  if (lead_transferee_ != kNoNode) return Status::error("transferring", "leadership transfer in progress");
  if (data.size() > cfg_.max_entry_bytes) return Status::error("too_large", "entry larger than max_entry_bytes");
  if (log_.last_index() - commit_ >= cfg_.max_uncommitted_entries) {
    return Status::error("overloaded", "too many uncommitted entries");
  }
  append_leader_entry(EntryType::kNormal, std::move(data));
  bcast_append();
  return log_.last_index();
}

Result<Index> RaftCore::propose_conf_change(ConfChangeType type, NodeId node, std::string context) {
  if (role_ != Role::kLeader) return Status::error("not_leader", "only the leader changes membership");
  if (lead_transferee_ != kNoNode) return Status::error("transferring", "leadership transfer in progress");
  if (node == kNoNode) return invalid("node id must be non-zero");
  if (context.size() > kConfContextMax) return invalid("conf change context too large");
  // One change at a time (§4.1): the next may start only once the previous
  // is committed.
  if (conf_index_ > commit_) return Status::error("conf_pending", "another membership change is uncommitted");
  // And not before this leader has committed an entry of its own term: the
  // fix Ongaro posted to raft-dev (2015) for single-server changes, without
  // which two leaders' overlapping changes can elect two leaders in one term.
  if (log_.term_at(commit_) != term_) {
    return Status::error("conf_pending", "leader has not yet committed an entry in its term");
  }
  ConfChange cc;
  cc.type = type;
  cc.node = node;
  cc.after = conf_;
  cc.context = std::move(context);
  auto& v = cc.after.voters;
  if (type == ConfChangeType::kAddNode) {
    if (conf_.contains(node)) return invalid("node is already a voter");
    if (v.size() >= kMaxVoters) return invalid("too many voters");
    v.insert(std::upper_bound(v.begin(), v.end(), node), node);
  } else {
    if (!conf_.contains(node)) return invalid("node is not a voter");
    if (v.size() == 1) return invalid("cannot remove the last voter");
    v.erase(std::find(v.begin(), v.end(), node));
  }
  append_leader_entry(EntryType::kConfChange, encode_conf_change(cc));
  bcast_append();
  return log_.last_index();
}

Status RaftCore::read_index(uint64_t ctx) {
  if (role_ != Role::kLeader) return Status::error("not_leader", "reads are served by the leader");
  if (ctx == 0) return invalid("read context must be non-zero");
  // §6.4 step 1: the leader's commit index is known to be current only once
  // it has committed an entry (the no-op) of its own term.
  if (log_.term_at(commit_) != term_) return Status::error("not_ready", "no entry of this term committed yet");
  if (pending_reads_.size() >= cfg_.max_pending_reads) return Status::error("overloaded", "too many pending reads");
  for (const PendingRead& r : pending_reads_) {
    if (r.ctx == ctx) return invalid("read context already pending");
  }
  PendingRead read{ctx, commit_, {}};
  if (promotable()) read.acks.push_back(cfg_.id);
  if (read.acks.size() >= quorum()) {
    read_states_.push_back(ReadState{commit_, ctx});
    return Status::ok();
  }
  pending_reads_.push_back(std::move(read));
  bcast_heartbeat();  // §6.4 step 3: confirm leadership with a heartbeat round
  return Status::ok();
}

Status RaftCore::transfer_leadership(NodeId to) {
  if (role_ != Role::kLeader) return Status::error("not_leader", "only the leader can transfer leadership");
  if (to == cfg_.id) return invalid("already the leader");
  if (!conf_.contains(to)) return invalid("transfer target is not a voter");
  if (lead_transferee_ == to) return Status::ok();
  lead_transferee_ = to;
  transfer_elapsed_ = 0;
  if (progress_.at(to).match() == log_.last_index()) {
    send_timeout_now(to);
  } else {
    send_appends(to, true);
  }
  return Status::ok();
}

Status RaftCore::compact(const SnapshotMeta& meta) {
  if (meta.index <= log_.snapshot().index) return invalid("compact: index already compacted");
  if (meta.index > applied_) return invalid("compact: index not yet applied");
  if (log_.term_at(meta.index) != meta.term) return invalid("compact: term does not match the log");
  if (meta.conf.voters.empty() || conf_at(meta.index) != meta.conf) {
    return invalid("compact: configuration does not match the log");
  }
  log_.compact(meta);
  return Status::ok();
}

Status RaftCore::report_snapshot_done(const SnapshotMeta& meta) {
  if (role_ == Role::kLeader) return invalid("snapshot installed on the leader");
  if (meta.index <= applied_) return invalid("snapshot is not newer than the applied state");
  if (meta.conf.voters.empty() || !voters_well_formed(meta.conf.voters)) return invalid("snapshot: bad voters");
  // The application may have fetched a newer snapshot than the one asked
  // for, taken in a later term.  Its last entry is committed, so a leader of
  // that term existed: move to it, or this log would hold a term above ours
  // (and a later campaign could append below its own last term).
  if (meta.term > term_) become_follower(meta.term, kNoNode);
  log_.restore(meta);
  commit_to(meta.index);
  applied_ = meta.index;
  snapshot_to_persist_ = true;
  snapshot_request_.reset();
  fault_hold_index_ = std::max(fault_hold_index_, meta.index);
  recompute_conf();
  if (leader_ != kNoNode) {
    Message r = make(MessageType::kAppendResp, leader_);
    r.index = meta.index;  // sent once the snapshot metadata is durable
    send(std::move(r));
  }
  return Status::ok();
}

void RaftCore::report_unreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it != progress_.end() && it->second.state() == Progress::State::kReplicate) it->second.become_probe();
}

// ---------------------------------------------------------------------------
// Ready / advance

bool RaftCore::has_ready() const {
  if (ready_pending_) return false;
  const Index unstable_upto =
      cfg_.test_fault == TestFault::kAckBeforePersist ? std::min(fault_hold_index_, log_.last_index()) : log_.last_index();
  return soft_state() != reported_soft_state_ || hard_state() != persisted_hard_state_ || snapshot_to_persist_ ||
         snapshot_request_.has_value() || !msgs_.empty() || !read_states_.empty() ||
         log_.stabled() < unstable_upto || (!apply_paused_ && applied_ < std::min(commit_, log_.stabled()));
}

Ready RaftCore::ready() {
  CL_CHECK_MSG(!ready_pending_, "ready() called again before advance()");
  ready_pending_ = true;
  // What reaches the disk only ever moves forward.
  CL_CHECK_MSG(term_ >= persisted_hard_state_.term, "the persisted term would decrease");
  CL_CHECK_MSG(commit_ >= persisted_hard_state_.commit, "the persisted commit index would decrease");
  CL_CHECK_MSG(commit_ <= log_.last_index(), "commit index beyond the last log entry");
  CL_CHECK_MSG(applied_ <= commit_, "applied index beyond the commit index");
  Ready rd;
  rd.soft_state = soft_state();
  reported_soft_state_ = rd.soft_state;
  if (hard_state() != persisted_hard_state_) rd.hard_state = hard_state();
  if (snapshot_to_persist_) rd.snapshot = log_.snapshot();
  const Index unstable_upto =
      cfg_.test_fault == TestFault::kAckBeforePersist ? std::min(fault_hold_index_, log_.last_index()) : log_.last_index();
  rd.entries = log_.unstable(unstable_upto);
  rd.messages = std::move(msgs_);
  msgs_.clear();
  // Only durable entries are applied: a crash must never leave the state
  // machine ahead of the log it restarts from.
  const Index apply_upto = apply_paused_ ? applied_ : std::min(commit_, log_.stabled());
  for (Index i = applied_ + 1; i <= apply_upto && rd.committed_entries.size() < cfg_.max_committed_per_ready; ++i) {
    rd.committed_entries.push_back(*log_.entry_at(i));
  }
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.snapshot_request = std::move(snapshot_request_);
  snapshot_request_.reset();
  return rd;
}

void RaftCore::advance(const Ready& rd) {
  CL_CHECK_MSG(ready_pending_, "advance() without a matching ready()");
  ready_pending_ = false;
  if (rd.hard_state) persisted_hard_state_ = *rd.hard_state;
  if (rd.snapshot && *rd.snapshot == log_.snapshot()) snapshot_to_persist_ = false;
  if (!rd.entries.empty()) log_.stable_to(rd.entries.back().index, rd.entries.back().term);
  if (!rd.committed_entries.empty()) {
    const Index applied = rd.committed_entries.back().index;
    CL_CHECK_MSG(applied <= commit_, "applied an entry that is not committed");
    applied_ = std::max(applied_, applied);
  }
  // Our own entries just became durable: they may complete a quorum.
  if (role_ == Role::kLeader && maybe_commit()) {
    bcast_append();
    after_commit_advanced();
  }
}

// ---------------------------------------------------------------------------
// Helpers

void RaftCore::send(Message m) {
  m.from = cfg_.id;
  if (m.type != MessageType::kPreVote && m.type != MessageType::kPreVoteResp) m.term = term_;
  msgs_.push_back(std::move(m));
}

uint64_t RaftCore::next_random() {
  // splitmix64: small, fast, and fully determined by the seed.
  uint64_t z = (rng_state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void RaftCore::reset_randomized_election_timeout() {
  // §3.4: uniformly in [election_tick, 2 * election_tick).
  randomized_election_timeout_ = cfg_.election_tick + static_cast<int>(next_random() % cfg_.election_tick);
}

}  // namespace cl::raft
