// RaftCore: the Raft consensus algorithm (Ongaro's thesis) as a pure state
// machine, in the shape of etcd's raft.  It owns no clock, socket, disk,
// thread or global state: time arrives as tick(), the network as step(), the
// disk as the Ready/advance() handshake, and randomness as a seed.  The same
// code runs in the node and in the deterministic simulator (tests/sim).
//
// Driving loop (one thread; the core is not thread-safe):
//
//   every tick interval:        core.tick();
//   on a message from a peer:   core.step(msg);
//   on a client request:        core.propose(data) / read_index(ctx) / ...
//   whenever core.has_ready():
//     Ready rd = core.ready();
//     1. persist, in ONE synced write: rd.snapshot (replaces the durable log),
//        rd.entries (replacing any durable entries at or after
//        rd.entries.front().index), rd.hard_state;
//     2. only then send rd.messages;
//     3. apply rd.committed_entries in order; serve rd.read_states once
//        applied >= their index; start fetching rd.snapshot_request;
//     4. core.advance(rd).
//
// Everything the core decides that another server may rely on (a vote, an
// acknowledged entry, a term) is in the Ready's hard state or entries, and the
// messages that announce it are in the same Ready, so step 1-before-2 is what
// makes "persist before you reply" (thesis Fig. 3.1) true.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "consensus/progress.h"
#include "consensus/raft_log.h"
#include "consensus/types.h"

namespace cl::raft {

// Deliberate protocol bugs for proving that the simulator's checkers bite.
// Never set outside tests.
enum class TestFault : uint8_t {
  kNone = 0,
  // The leader commits any entry stored on a quorum, whatever its term: the
  // exact mistake thesis Fig. 3.7 ("Figure 8") shows to lose committed entries.
  kCommitPreviousTerm = 1,
  // Entries are acknowledged (and counted) at once but handed to the disk only
  // at the next tick: a lazy fsync.  A crash in between loses acked entries.
  kAckBeforePersist = 2,
};

struct Config {
  NodeId id = kNoNode;
  // The cluster's initial configuration (the genesis node list): the
  // configuration in force before the first kConfChange entry.  It must be
  // the same on every server, including servers that join later (they are
  // not in it, so they wait to be added): a server that compacts its log
  // records the configuration at that point, and that must not depend on
  // which server computed it.
  std::vector<NodeId> voters;

  int election_tick = 10;  // ticks without a leader before campaigning (randomized up to 2x)
  int heartbeat_tick = 1;  // ticks between leader heartbeats; < election_tick
  size_t max_inflight_msgs = 64;      // unacknowledged appends per follower
  size_t max_entries_per_msg = 64;
  size_t max_bytes_per_msg = 1 << 20;  // entry data per append (one entry may exceed it)
  size_t max_entry_bytes = 8 << 20;    // propose() refuses larger payloads
  size_t max_uncommitted_entries = 4096;  // propose() refuses beyond this (flow control)
  size_t max_pending_reads = 1024;
  size_t max_committed_per_ready = 1024;
  // While a follower has not caught up after a snapshot notice, the leader
  // re-probes it this often (the notice or its acknowledgement may have been
  // lost; a follower still fetching ignores the repeat).  0: 2 * election_tick.
  int snapshot_retry_ticks = 0;
  bool pre_vote = true;      // thesis §9.6
  bool check_quorum = true;  // thesis §6.2 (leader steps down) and §4.2.3 (lease on votes)
  uint64_t seed = 0;         // for randomized election timeouts, the only randomness
  TestFault test_fault = TestFault::kNone;
};

// What the application restored from its durable storage at start-up.
struct RestoredState {
  HardState hard_state;
  SnapshotMeta snapshot;        // index 0: no snapshot yet
  std::vector<Entry> entries;   // the durable log after snapshot.index, contiguous
  Index applied = 0;            // state machine's applied index; >= snapshot.index
};

struct SoftState {
  Role role = Role::kFollower;
  NodeId leader = kNoNode;
  Term term = 0;
  bool operator==(const SoftState&) const = default;
};

// A confirmed linearizable read (thesis §6.4): once the state machine has
// applied `index`, a read issued with read_index(ctx) may be served.
struct ReadState {
  Index index = 0;
  uint64_t ctx = 0;
};

// The leader says this follower needs the state at (at least) `meta`; the
// application fetches it from `from` out of band, installs it, and calls
// report_snapshot_done with the metadata of what it actually installed.
// True for a leader's appends and heartbeats: they vouch for nothing the
// leader has yet to make durable (the leader counts its own log towards
// commit only up to what advance() reported durable), so they may leave
// before the Ready's write and the followers' writes overlap the leader's
// (thesis §10.2.1).  Everything else waits for the write.
bool may_send_before_persist(const Message& m);

struct SnapshotRequest {
  SnapshotMeta meta;
  NodeId from = kNoNode;
};

// A batch of work for the application.  THE RULE: messages of a Ready may be
// sent only after its snapshot, entries and hard state are durable (one synced
// write); a vote or an acknowledgement must never leave the server before the
// state it vouches for.  Process Readys one at a time, in order, and call
// advance(rd) after each.  The one exception: see may_send_before_persist.
struct Ready {
  SoftState soft_state;                 // always set; informational (role, leader, term)
  std::optional<HardState> hard_state;  // set if changed since the last Ready: persist
  // Set after report_snapshot_done: persist it and delete the whole durable
  // log (entries kept in memory after the snapshot are in `entries`).
  std::optional<SnapshotMeta> snapshot;
  std::vector<Entry> entries;           // append to the durable log (see loop above)
  std::vector<Message> messages;        // send after persisting
  std::vector<Entry> committed_entries; // apply in order (only durable entries appear)
  std::vector<ReadState> read_states;
  std::optional<SnapshotRequest> snapshot_request;
};

class RaftCore {
 public:
  // Validates `config` and `restored` ("invalid" for a bad config,
  // "corruption" for an inconsistent restored state) and builds a follower.
  static Result<std::unique_ptr<RaftCore>> open(Config config, RestoredState restored);

  RaftCore(const RaftCore&) = delete;
  RaftCore& operator=(const RaftCore&) = delete;

  // Advances logical time by one tick: elections, heartbeats, check-quorum,
  // transfer and snapshot timeouts.
  void tick();

  // Handles one message from a peer.  Stale messages are ignored (ok); a
  // message that is malformed for its type or not addressed to this server
  // returns "invalid" and changes nothing.
  Status step(const Message& m);

  // Leader only: appends `data` as a normal entry and returns its index.  The
  // entry is committed once it appears in Ready::committed_entries; if
  // leadership is lost first it may be committed or overwritten — the client
  // retries with an idempotency key.  Errors: "not_leader" (message names the
  // known leader, if any), "transferring", "overloaded", "too_large".
  Result<Index> propose(std::string data);

  // Leader only: proposes adding or removing one voter (thesis §4.1).  The
  // change takes effect on every server as soon as the entry is appended to
  // its log.  Errors: "not_leader", "transferring", "conf_pending" (a change
  // is uncommitted, or no entry of this term is committed yet), "invalid".
  Result<Index> propose_conf_change(ConfChangeType type, NodeId node, std::string context = {});

  // Leader only: starts a linearizable read.  Once a quorum confirms this
  // server is still leader, Ready::read_states carries {commit index now, ctx}.
  // `ctx` must be non-zero and unique among outstanding reads.  Reads pending
  // when leadership is lost are dropped (the caller times out and retries).
  // Errors: "not_leader", "not_ready" (no entry of this term committed yet:
  // the leader does not yet know the commit index, thesis §6.4 step 1),
  // "overloaded", "invalid".
  Status read_index(uint64_t ctx);

  // Leader only: hands leadership to voter `to` (thesis §3.10): stops taking
  // proposals, brings `to` up to date, then tells it to campaign at once.
  // Abandoned after an election timeout.  Errors: "not_leader", "invalid".
  Status transfer_leadership(NodeId to);

  // While paused, Readies carry no committed entries (everything else goes
  // on: persisting, messages).  The application pauses applying while it
  // installs a snapshot's state, which it must not interleave with applies.
  void set_apply_paused(bool paused) { apply_paused_ = paused; }

  bool has_ready() const;
  // Precondition: has_ready().  See Ready for the contract.
  Ready ready();
  // The application has durably stored, sent and applied everything in `rd`
  // (the Ready most recently returned).
  void advance(const Ready& rd);

  // The application snapshotted its state at `meta.index` (<= applied()):
  // drop the log up to there.  meta.term and meta.conf must be the term and
  // configuration at that index (conf_at).  Errors: "invalid".
  Status compact(const SnapshotMeta& meta);

  // The application installed the state described by `meta` (fetched after a
  // SnapshotRequest; it may be newer than the one requested).  The log
  // restarts after meta.index, which becomes both committed and applied; a
  // snapshot from a later term moves this server to that term.  Errors:
  // "invalid" if meta.index <= applied() (the application must then discard
  // the fetched state, not install it) or this server is the leader.
  Status report_snapshot_done(const SnapshotMeta& meta);

  // The transport could not reach `id`: stop pipelining to it and probe.
  void report_unreachable(NodeId id);

  // Read-only state.
  NodeId id() const { return cfg_.id; }
  Role role() const { return role_; }
  Term term() const { return term_; }
  NodeId leader() const { return leader_; }
  NodeId vote() const { return vote_; }
  Index commit() const { return commit_; }
  Index applied() const { return applied_; }
  Index first_index() const { return log_.first_index(); }
  Index last_index() const { return log_.last_index(); }
  const SnapshotMeta& snapshot() const { return log_.snapshot(); }
  std::optional<Term> term_at(Index i) const { return log_.term_at(i); }
  const Entry* entry_at(Index i) const { return log_.entry_at(i); }
  const ConfState& conf() const { return conf_; }
  // The configuration in force at index i (first_index()-1 <= i <= last_index()).
  ConfState conf_at(Index i) const;
  // Leader only: the follower's match index, if it is a voter.
  std::optional<Index> match_index(NodeId id) const;
  NodeId transfer_target() const { return lead_transferee_; }

 private:
  enum class CampaignKind : uint8_t { kPreElection, kElection, kTransfer };
  enum class VoteResult : uint8_t { kPending, kWon, kLost };
  struct PendingRead {
    uint64_t ctx;
    Index index;
    std::vector<NodeId> acks;
  };

  RaftCore(Config config, RestoredState restored);

  // Roles.
  void reset(Term term);
  void become_follower(Term term, NodeId leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void campaign(CampaignKind kind);
  VoteResult poll(NodeId from, bool granted);
  bool promotable() const { return conf_.contains(cfg_.id); }
  size_t quorum() const { return conf_.voters.size() / 2 + 1; }

  // Ticks.
  void tick_election();
  void tick_leader();
  bool quorum_active() const;

  // Message handling.
  Status validate(const Message& m) const;
  void handle_vote_request(const Message& m);
  void step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  void handle_append_response(const Message& m);
  void handle_heartbeat_response(const Message& m);

  // Replication (leader).
  void append_leader_entry(EntryType type, std::string data);
  bool send_append(NodeId to, bool send_if_empty);
  void send_appends(NodeId to, bool send_if_empty);  // fills the pipeline
  void bcast_append();
  void bcast_heartbeat();
  bool maybe_commit();
  void after_commit_advanced();
  void send_timeout_now(NodeId to);
  void abort_transfer() { lead_transferee_ = kNoNode; }
  void release_reads(size_t upto_position);

  // Log and configuration.
  void commit_to(Index index);
  void apply_conf(const ConfState& conf, Index index);
  void recompute_conf();
  Index durable_last() const;  // what this server may count as its own match

  void send(Message m);
  uint64_t next_random();
  void reset_randomized_election_timeout();
  SoftState soft_state() const { return {role_, leader_, term_}; }
  HardState hard_state() const { return {term_, vote_, commit_}; }

  Config cfg_;
  RaftLog log_;
  uint64_t rng_state_;

  // Persistent (HardState).
  Term term_ = 0;
  NodeId vote_ = kNoNode;
  Index commit_ = 0;

  // Volatile.
  Role role_ = Role::kFollower;
  NodeId leader_ = kNoNode;
  Index applied_ = 0;
  ConfState conf_;
  Index conf_index_ = 0;  // index of the kConfChange entry that set conf_ (0: none in log)
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  std::map<NodeId, bool> votes_;         // candidate: responses received this election
  std::map<NodeId, Progress> progress_;  // leader: every voter but itself
  NodeId lead_transferee_ = kNoNode;
  int transfer_elapsed_ = 0;
  std::vector<PendingRead> pending_reads_;  // leader, oldest first
  Index fault_hold_index_ = 0;              // TestFault::kAckBeforePersist only

  // Output, drained by ready().
  std::vector<Message> msgs_;
  std::vector<ReadState> read_states_;
  std::optional<SnapshotRequest> snapshot_request_;
  bool snapshot_to_persist_ = false;
  bool ready_pending_ = false;  // between ready() and advance()
  bool apply_paused_ = false;   // set_apply_paused
  HardState persisted_hard_state_;
  SoftState reported_soft_state_;
};

}  // namespace cl::raft
