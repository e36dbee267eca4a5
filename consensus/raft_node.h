// RaftNode: runs a RaftCore for real — one loop thread that ticks it, feeds
// it peer messages (Transport) and client requests, persists every Ready in
// one synced write (RaftStorage) BEFORE sending its messages, and hands
// committed entries, in order, to an applier thread that applies them to the
// StateMachine and answers the proposers.  Applying off the loop thread lets
// the next append be persisted and replicated while earlier entries apply
// (as etcd's raftNode does): the loop's own time per step is then mostly the
// synced write, not the state machine.
//
// Consensus stays ignorant of what an entry means: entries are opaque bytes,
// the StateMachine gives them meaning and returns an opaque result that is
// handed to whoever proposed the entry.
#pragma once

#include <any>
#include <atomic>
#include <chrono>
#include <optional>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <variant>

#include "consensus/raft_core.h"
#include "consensus/raft_storage.h"
#include "consensus/transport.h"

namespace cl::raft {

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies a committed kNormal entry; the result goes to its proposer (if
  // this node proposed it).  Must be deterministic.  A failure here is fatal
  // (replicas would diverge): implementations CL_CHECK.
  virtual std::any apply(const Entry& entry) = 0;
  // Notes that entry `index` (a no-op or configuration change) was applied.
  virtual void skip(Index index) = 0;
  // The index of the last applied entry, as durable as the state itself.
  virtual Index applied_index() const = 0;
  // Makes everything applied durable.
  virtual Status sync() { return Status::ok(); }
  // The highest applied index that survives a crash: the log is compacted
  // only up to it.  May start making more durable in the background (the
  // next call sees it).  Default: sync(), then everything applied.
  virtual Result<Index> durable_index() {
    Status s = sync();
    if (!s) return s;
    return applied_index();
  }
};

// Fetches the state the leader asked for (out of band, e.g. from the
// leader's journal), installs it, and returns the metadata of what was
// installed (index ≥ the requested one, with its term and configuration).
// It must call RaftNode::record_install(req.meta) before it writes anything
// into the state machine, and record_install(meta) before the installed
// state is durable: start-up then resumes an install a crash interrupted
// (before applying anything of the log onto a half-written state), and
// accounts for a state machine ahead of its log.
// Runs on a worker thread; while it runs the core applies nothing.  On a
// failure it is called again with the same request (applies stay paused):
// it must resume or redo the install, possibly from another source.
using SnapshotFetcher = std::function<Result<SnapshotMeta>(const SnapshotRequest&)>;

struct SlowReady {
  double persist_ms = 0;   // the synced write of entries and hard state
  double apply_ms = 0;     // applying committed entries (applier), or handing them over (Raft thread)
  double total_ms = 0;     // the whole Ready, including sending and compaction
  double cpu_ms = 0;       // CPU time the reporting thread spent in it (total_ms - cpu_ms: waiting for disk or a core)
  size_t entries = 0;      // entries persisted
  size_t committed = 0;    // entries applied, or handed over
  bool applier = false;    // reported by the applier thread (else by the Raft thread)
};

struct RaftNodeOptions {
  NodeId id = kNoNode;
  std::vector<NodeId> voters;             // bootstrap configuration
  std::map<NodeId, PeerAddress> peers;    // raft addresses of every voter (self included)
  std::string dir;                        // raft store directory
  StoreIo store_io;                       // the raft store's background I/O (see StoreIo)
  // One core tick.  Election timeout = 10-20 ticks = 0.5-1 s: long enough
  // that a leader busy applying a big batch on a loaded 2-core machine is not
  // deposed, short enough for sub-second failover.
  uint64_t tick_ms = 50;
  int election_tick = 10;
  uint64_t seed = 0;                      // election timeout randomness
  size_t inbox_max = 100000;              // queued messages/requests before dropping messages
  // Compact the log once this many entries are applied past the last
  // snapshot (0: never).  A follower that needs compacted entries gets the
  // state from fetch_snapshot instead.
  uint64_t compact_every = 10000;
  SnapshotFetcher fetch_snapshot;
  // Called on the Raft thread for every committed configuration change this
  // node reaches in its log (again after a restart: it must be idempotent).
  // A returned address is where the transport reaches cc.node from now on,
  // so every replica, and any later leader, knows a member added at run time.
  // (Called when the entry is handed to the applier, in log order.)
  std::function<std::optional<PeerAddress>(const ConfChange& cc)> on_conf_change;
  // Called on the Raft thread whenever this node's role, term or known
  // leader changes (for the operator's log).
  std::function<void(const SoftState&)> on_soft_state;
  // Called when handling one Ready took longer than slow_ready_ms (0:
  // never), with where the time went, so an operator can tell a slow disk
  // (persist) from a slow state machine (apply).  From the Raft thread for
  // its steps (apply_ms: handing entries to the applier, including waiting
  // for room in its queue), and from the applier thread for a run of
  // applies (persist_ms = 0, entries = 0).
  uint64_t slow_ready_ms = 0;
  std::function<void(const SlowReady&)> on_slow_ready;
  // Committed entries handed to the applier and not yet applied.  When it
  // is full the Raft thread waits: memory stays bounded when applying is
  // slower than committing.
  size_t apply_queue_max = 64;
};

struct RaftStatus {
  Role role = Role::kFollower;
  Term term = 0;
  NodeId leader = kNoNode;
  Index commit = 0;
  Index applied = 0;
  std::map<NodeId, Index> match;  // leader only
};

class RaftNode {
 public:
  // done(status, result): ok with the StateMachine's result once the entry is
  // committed AND applied here; "not_leader" / "lost" (superseded by another
  // leader's entry) / "stopped" otherwise.
  using ProposeDone = std::function<void(Status, std::any)>;
  using Done = std::function<void(Status)>;

  static Result<std::unique_ptr<RaftNode>> open(RaftNodeOptions options, StateMachine* sm);
  ~RaftNode();

  Status start();
  void stop();

  void propose(std::string data, ProposeDone done);
  // Linearizable read barrier (ReadIndex): done(ok) once this node (the
  // leader) confirmed its leadership and applied everything committed before.
  void read_barrier(Done done);
  void transfer_leadership(NodeId to, Done done);
  // Where the transport reaches "node" from now on.
  void set_peer_address(NodeId node, PeerAddress address);
  // "context" travels in the log entry to every replica (on_conf_change).
  void change_membership(ConfChangeType type, NodeId node, PeerAddress address, std::string context, Done done);

  // See SnapshotFetcher.  Thread-safe (the fetcher calls it).
  Status record_install(const SnapshotMeta& meta);
  // True while a state install is under way (or is to be resumed): the
  // state machine may then hold part of it, and must not be offered as a
  // source for another node's install.  Thread-safe.
  bool installing() const { return installing_.load(); }

  RaftStatus status() const;
  // The term and configuration at "index" (for a peer that installs state
  // up to it); "unavailable" once compacted away.  Thread-safe.
  Result<std::pair<Term, ConfState>> term_conf_at(Index index);
  uint16_t port() const { return transport_ ? transport_->port() : 0; }

 private:
  RaftNode(RaftNodeOptions options, StateMachine* sm, std::unique_ptr<RaftStorage> storage,
           std::unique_ptr<RaftCore> core);
  using Command = std::function<void()>;
  // Runs c on the loop thread; once the loop has ended, runs "stopped"
  // (if any) instead, on the caller's thread or in stop().
  void post(Command c, Command stopped = {});
  void loop();
  void handle_ready();
  void fail_all(const Status& s);
  void start_fetch(SnapshotRequest req);
  void apply_loop();
  void maybe_compact(Index at);
  // Blocks until every entry handed to the applier is applied (the fetcher
  // calls it before installing state).
  void wait_applier_idle();

  RaftNodeOptions options_;
  StateMachine* sm_;
  std::unique_ptr<RaftStorage> storage_;
  std::unique_ptr<RaftCore> core_;  // loop thread only
  std::unique_ptr<Transport> transport_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Message> inbox_;       // guarded by mu_
  struct Posted {
    Command run;
    Command stopped;
  };
  std::deque<Posted> commands_;     // guarded by mu_
  bool loop_ended_ = false;         // guarded by mu_: set by stop() after the loop ended
  bool stopping_ = false;           // guarded by mu_
  RaftStatus status_;               // guarded by mu_
  std::thread thread_;

  // Loop thread only.
  struct Pending {
    Term term;
    ProposeDone done;
  };
  std::map<Index, Pending> proposals_;
  uint64_t next_read_ctx_ = 1;
  std::map<uint64_t, Done> reads_waiting_quorum_;
  struct PendingChange {
    Term term;
    Done done;
  };
  std::map<Index, PendingChange> conf_changes_;
  std::thread fetcher_;
  bool fetching_ = false;
  // A failed install is retried (applies stay paused) after kFetchRetryMs.
  static constexpr uint64_t kFetchRetryMs = 500;
  std::optional<SnapshotRequest> retry_fetch_;
  std::optional<SnapshotMeta> resume_install_;  // set by open(): an install a crash interrupted
  std::atomic<bool> installing_{false};
  std::chrono::steady_clock::time_point retry_fetch_at_;
  SoftState last_soft_state_;  // as last reported to on_soft_state

  // The applier: committed entries in log order, with the proposer's and
  // the configuration change's callbacks taken from the maps above.
  struct ToApply {
    Entry entry;
    ProposeDone proposed;  // empty unless this node proposed the entry
    Done conf_done;        // empty unless this node proposed the change
  };
  std::mutex apply_mu_;
  std::condition_variable apply_cv_;        // work for the applier
  std::condition_variable apply_room_cv_;   // room in the queue, or the applier idle
  std::deque<ToApply> apply_queue_;         // guarded by apply_mu_
  bool applying_ = false;                   // guarded by apply_mu_: a run in progress
  bool apply_stopping_ = false;             // guarded by apply_mu_
  std::multimap<Index, Done> reads_waiting_apply_;  // guarded by apply_mu_
  std::thread applier_;
  Index compact_checked_ = 0;  // applier only: applied index of the last compaction check
};

}  // namespace cl::raft
