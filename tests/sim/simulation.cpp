#include "tests/sim/simulation.h"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <unordered_set>
#include <vector>

#include "common/check.h"
#include "consensus/codec.h"
#include "api/replicated.h"
#include "tests/sim/checker.h"
#include "tests/sim/ledger_machine.h"
#include "tests/sim/rng.h"
#include "tests/sim/state_machine.h"

namespace cl::sim {
namespace {

using raft::Entry;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::RaftCore;
using raft::Term;

std::string str(uint64_t v) { return std::to_string(v); }

// How the scheduler attacks leaders, chosen per seed.
enum class Nemesis : uint8_t {
  kNone,        // random faults only
  kKill,        // a newly elected leader is often killed within ms
  kIsolate,     // a newly elected leader is often cut off within ms
  kRotate,      // every new leader is cut off within ms while every other link
                // heals (Jepsen's rotating "isolate the leader"): deposed
                // leaders rejoin with the entries they accepted alone — the
                // shape of thesis Fig. 3.7 ("Figure 8")
  kStorm,       // kill + isolate, faults every 10-20 ms, all but one node may
                // be down, quick restarts
};

const char* to_string(Nemesis n) {
  switch (n) {
    case Nemesis::kNone: return "none";
    case Nemesis::kKill: return "kill-new-leader";
    case Nemesis::kIsolate: return "isolate-new-leader";
    case Nemesis::kRotate: return "rotate-leader-isolation";
    case Nemesis::kStorm: return "storm";
  }
  return "?";
}

// Everything a seed chooses about the cluster and the weather.
struct Params {
  int nodes = 3;             // initial voters 1..nodes
  int spares = 2;            // nodes+1.. : running, not voters, may be added
  int tick_ms = 10;
  int latency_min_ms = 1;
  int latency_max_ms = 5;
  int loss_permille = 0;
  int dup_permille = 0;
  int spike_permille = 0;    // a message delayed by up to spike_max_ms (reordering)
  int spike_max_ms = 0;
  int disk_max_ms = 2;       // delay between a step and its Ready being persisted
  int fault_mean_ms = 150;
  int active_ms = 2000;      // fault phase; then heal and converge
  int heal_max_ms = 6000;
  int clients = 3;
  int client_retry_ms = 250; // doubled per retry of the same payload, up to 16x
  Index compact_every = 0;   // snapshot once this many entries are applied (0: never)
  size_t max_entries_per_msg = 64;
  size_t max_inflight = 64;
  bool pre_vote = true;
  Nemesis nemesis = Nemesis::kNone;
  int new_leader_kill_permille = 0;
  int new_leader_isolate_permille = 0;
  int nemesis_delay_max_ms = 40;
  int max_down = 1;          // nodes down at once
  int restart_min_ms = 20;
  int restart_max_ms = 600;
  int crash_mid_write_permille = 3;  // per disk write: crash after the early sends, before the write

  std::string describe() const {
    return "nodes=" + str(nodes) + "+" + str(spares) + " nemesis=" + to_string(nemesis) + " loss=" +
           str(loss_permille) + "‰ dup=" + str(dup_permille) + "‰ latency=" + str(latency_min_ms) + ".." +
           str(latency_max_ms) + "ms spikes=" + str(spike_permille) + "‰/" + str(spike_max_ms) + "ms disk<=" +
           str(disk_max_ms) + "ms faults/" + str(fault_mean_ms) + "ms active=" + str(active_ms) +
           "ms compact_every=" + str(compact_every) + " entries/msg=" + str(max_entries_per_msg) +
           " inflight=" + str(max_inflight) + " pre_vote=" + (pre_vote ? "1" : "0") + " max_down=" + str(max_down) +
           " clients=" + str(clients) + " retry=" + str(client_retry_ms) + "ms";
  }
};

// Safety must hold in every weather; liveness is asked only of the healed
// cluster at the end.
Params choose_params(Rng& rng) {
  Params p;
  p.nodes = rng.chance(500) ? 3 : 5;
  p.latency_min_ms = static_cast<int>(rng.range(1, 2));
  p.latency_max_ms = p.latency_min_ms + static_cast<int>(rng.range(0, 8));
  const int losses[] = {0, 10, 50, 150};
  p.loss_permille = losses[rng.below(4)];
  const int dups[] = {0, 20, 100};
  p.dup_permille = dups[rng.below(3)];
  p.spike_permille = rng.chance(500) ? static_cast<int>(rng.range(5, 50)) : 0;
  p.spike_max_ms = static_cast<int>(rng.range(20, 300));
  p.disk_max_ms = static_cast<int>(rng.range(0, 5));
  p.active_ms = static_cast<int>(rng.range(1000, 4000));
  const Index compactions[] = {0, 6, 25, 100};
  p.compact_every = compactions[rng.below(4)];
  const size_t inflights[] = {1, 4, 64};
  p.max_inflight = inflights[rng.below(3)];
  p.pre_vote = !rng.chance(150);
  p.clients = rng.chance(500) ? 3 : 6;
  p.client_retry_ms = rng.chance(500) ? 60 : 250;
  const int fault_means[] = {40, 120, 400};
  p.fault_mean_ms = fault_means[rng.below(3)];
  const size_t entries[] = {1, 3, 64};
  p.max_entries_per_msg = entries[rng.below(3)];
  p.max_down = (p.nodes - 1) / 2;  // "any minority"

  const uint64_t roll = rng.below(100);
  p.nemesis = roll < 35 ? Nemesis::kNone
              : roll < 50 ? Nemesis::kKill
              : roll < 65 ? Nemesis::kIsolate
              : roll < 85 ? Nemesis::kRotate
                          : Nemesis::kStorm;
  switch (p.nemesis) {
    case Nemesis::kNone: break;
    case Nemesis::kKill: p.new_leader_kill_permille = rng.chance(500) ? 200 : 500; break;
    case Nemesis::kIsolate: p.new_leader_isolate_permille = rng.chance(500) ? 200 : 500; break;
    case Nemesis::kRotate:
      p.new_leader_isolate_permille = 1000;
      p.fault_mean_ms = rng.chance(500) ? 120 : 400;
      p.max_entries_per_msg = rng.chance(500) ? 1 : 3;
      break;
    case Nemesis::kStorm:
      p.new_leader_kill_permille = rng.chance(500) ? 200 : 500;
      p.new_leader_isolate_permille = rng.chance(500) ? 200 : 500;
      p.fault_mean_ms = static_cast<int>(rng.range(10, 20));
      p.max_entries_per_msg = rng.chance(750) ? 1 : 3;
      p.loss_permille = std::min(p.loss_permille, 10);
      p.max_down = p.nodes - 1;  // safety must survive any crash pattern
      p.restart_min_ms = 5;
      p.restart_max_ms = 150;
      break;
  }
  return p;
}

struct Durable {
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;
  std::string snapshot_state;
  std::deque<Entry> log;  // after snapshot.index
  // Like RaftStorage: a write that only moves commit is not synced.  It
  // becomes durable with the next synced write (the WAL is sequential) and
  // is lost by a crash before that.
  std::optional<Index> unsynced_commit;
};

struct Node {
  NodeId id = 0;
  bool up = true;
  uint64_t incarnation = 0;
  std::unique_ptr<RaftCore> core;
  std::unique_ptr<StateMachine> sm;
  Durable durable;
  bool sync_scheduled = false;
  bool fetching = false;
  std::string installed_snapshot_state;  // persisted with the next Ready::snapshot
  std::vector<raft::ReadState> parked_reads;  // waiting for the state machine to catch up
};

struct Client {
  bool busy = false;
  bool proposed = false;
  uint64_t seq = 0;
  std::string id;
  std::string data;
  NodeId node = 0;
  Index index = 0;
  Term term = 0;
  uint64_t deadline = 0;
  NodeId hint = 0;
  int attempts = 0;  // proposals of the current payload (retry backoff doubles)
  std::vector<const PoolOp*> ops;  // ledger mode: the payload's ops (data re-encoded per proposal)
  bool setup = false;              // ledger mode: the batch that opens and funds the wallets
};

struct Read {
  NodeId node;
  uint64_t incarnation;
  size_t acked_before;  // every payload in acked_[0, acked_before) must be visible
};

enum class Ev : uint8_t {
  kTick, kDeliver, kSync, kClient, kReader, kFault, kCrash, kIsolate, kRestart, kFetched, kEndActive, kCheck
};

struct Event {
  uint64_t time = 0;
  uint64_t seq = 0;
  Ev kind = Ev::kTick;
  NodeId node = 0;
  uint64_t incarnation = 0;
  NodeId from = 0;
  int client = 0;
  std::string frame;
};

struct Later {
  bool operator()(const Event& a, const Event& b) const { return a.time != b.time ? a.time > b.time : a.seq > b.seq; }
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& opts) : opts_(opts), rng_(mix_seed(opts.seed, 0x5eed)) {}

  SimResult run();

 private:
  // Scheduling.
  void schedule(uint64_t delay_ms, Event ev);
  void handle(Event& ev);
  void trace(const std::string& line) const;

  // Nodes.
  Node& node(NodeId id) { return nodes_[id - 1]; }
  raft::Config config_for(const Node& n) const;
  void boot(Node& n);
  void crash(Node& n);
  void restart(Node& n);
  void after_step(Node& n);
  void sync(Node& n);
  void persist(Node& n, const raft::Ready& rd);
  void apply(Node& n, const Entry& e);
  void serve_parked_reads(Node& n);
  void maybe_compact(Node& n);
  void snapshot_fetched(Node& n, NodeId from);
  Node* find_leader();

  // Network.
  void send(const Message& m);
  void deliver(Event& ev);
  void check_backed_by_disk(const Message& m);
  bool blocked(NodeId from, NodeId to) const { return blocked_[from][to]; }
  uint64_t latency();

  // Actors.
  void client_event(int c);
  void reader_event();
  void fault_event();
  void partition_random(bool symmetric);
  void transfer(Node& leader);
  void change_membership(Node& leader);
  void watch_new_leaders();
  bool may_crash() const;
  void isolate(NodeId id);
  void end_active();
  std::string convergence_gap();
  void final_checks();
  std::unique_ptr<StateMachine> make_sm() const;
  bool next_ledger_payload(int c, Client& cl);
  void on_ledger_ack(Client& cl);
  void ledger_checks(Node& leader, const raft::ConfState& conf);

  SimOptions opts_;
  Rng rng_;
  Params p_;
  Checker checker_;
  SimStats stats_;
  std::vector<Node> nodes_;
  std::vector<std::vector<bool>> blocked_;  // [from][to], ids 1-based
  std::vector<Event> queue_;                // min-heap by (time, seq)
  uint64_t seq_ = 0;
  uint64_t now_ = 0;
  bool active_ = true;
  bool converged_ = false;
  std::vector<Client> clients_;
  std::vector<std::string> acked_;  // payload ids, in acknowledgement order
  std::map<uint64_t, Read> reads_;  // by ctx
  Term newest_leader_term_ = 0;     // nemesis: the newest term whose leader it has seen
  uint64_t next_ctx_ = 0;
  // Ledger mode.
  bool setup_acked_ = false;
  size_t pool_next_ = 0;                          // next unproposed op of ledger_world().pool
  std::vector<const PoolOp*> acked_ops_;          // acknowledged, non-conflicting (replay candidates)
  std::unordered_set<std::string> acked_set_;     // ids in acked_
  std::vector<std::string> acked_conflicting_;    // acknowledged twin payouts (at most one of a pair pays)
};

std::unique_ptr<StateMachine> Simulation::make_sm() const {
  if (opts_.ledger) return std::make_unique<LedgerMachine>();
  return std::make_unique<PayloadLog>();
}

// ---------------------------------------------------------------------------

void Simulation::schedule(uint64_t delay_ms, Event ev) {
  ev.time = now_ + delay_ms;
  ev.seq = seq_++;
  queue_.push_back(std::move(ev));
  std::push_heap(queue_.begin(), queue_.end(), Later());
}

void Simulation::trace(const std::string& line) const {
  if (opts_.trace) std::printf("%8llu  %s\n", static_cast<unsigned long long>(now_), line.c_str());
}

raft::Config Simulation::config_for(const Node& n) const {
  raft::Config c;
  c.id = n.id;
  // The genesis configuration, identical on every node; spares are not in it.
  for (int i = 1; i <= p_.nodes; ++i) c.voters.push_back(static_cast<NodeId>(i));
  c.election_tick = 10;
  c.heartbeat_tick = 1;
  c.max_entries_per_msg = p_.max_entries_per_msg;
  c.max_bytes_per_msg = 4096;
  c.max_inflight_msgs = p_.max_inflight;
  c.pre_vote = p_.pre_vote;
  c.check_quorum = true;
  c.seed = mix_seed(opts_.seed, n.id, n.incarnation);
  c.test_fault = opts_.fault;
  return c;
}

void Simulation::boot(Node& n) {
  raft::RestoredState r;
  r.hard_state = n.durable.hard_state;
  r.snapshot = n.durable.snapshot;
  r.entries.assign(n.durable.log.begin(), n.durable.log.end());
  r.applied = n.durable.snapshot.index;
  auto core = RaftCore::open(config_for(n), std::move(r));
  if (!core.is_ok()) {
    checker_.fail("restart", "node " + str(n.id) + " cannot restart: " + core.status().to_string());
    return;
  }
  n.core = std::move(*core);
  n.sm = make_sm();
  if (n.durable.snapshot.index > 0) CL_CHECK(n.sm->load(n.durable.snapshot_state).is_ok());
  n.up = true;
  checker_.on_restart(n.id, n.durable.snapshot.index);
}

void Simulation::crash(Node& n) {
  trace("node " + str(n.id) + " CRASH (unsynced state lost)");
  n.up = false;
  n.durable.unsynced_commit.reset();
  ++n.incarnation;
  n.core.reset();
  n.sm.reset();
  n.sync_scheduled = false;
  n.fetching = false;
  n.parked_reads.clear();
  ++stats_.crashes;
  Event ev;
  ev.kind = Ev::kRestart;
  ev.node = n.id;
  ev.incarnation = n.incarnation;
  schedule(rng_.range(p_.restart_min_ms, p_.restart_max_ms), std::move(ev));
}

void Simulation::restart(Node& n) {
  trace("node " + str(n.id) + " RESTART term=" + str(n.durable.hard_state.term) +
        " log_last=" + str(n.durable.log.empty() ? n.durable.snapshot.index : n.durable.log.back().index));
  boot(n);
  if (n.up) after_step(n);
}

void Simulation::after_step(Node& n) {
  if (!n.up || n.sync_scheduled || !n.core->has_ready()) return;
  n.sync_scheduled = true;
  Event ev;
  ev.kind = Ev::kSync;
  ev.node = n.id;
  ev.incarnation = n.incarnation;
  schedule(rng_.range(0, p_.disk_max_ms), std::move(ev));
}

// One "disk write + send + apply" round, following the Ready contract.
void Simulation::sync(Node& n) {
  n.sync_scheduled = false;
  for (int round = 0; round < 4 && n.core->has_ready() && !checker_.failed(); ++round) {
    raft::Ready rd = n.core->ready();
    for (const Message& m : rd.messages)              // 0. a leader's appends may go first
      if (raft::may_send_before_persist(m)) send(m);
    if (active_ && may_crash() && rng_.chance(p_.crash_mid_write_permille)) {
      trace("node " + str(n.id) + " crashes between sending its appends and its disk write");
      crash(n);
      return;
    }
    persist(n, rd);                                   // 1. durable
    for (const Message& m : rd.messages)              // 2. then send the rest
      if (!raft::may_send_before_persist(m)) send(m);
    for (const Entry& e : rd.committed_entries) apply(n, e);
    for (const raft::ReadState& rs : rd.read_states) {
      auto it = reads_.find(rs.ctx);
      if (it != reads_.end() && it->second.node == n.id) n.parked_reads.push_back(rs);
    }
    serve_parked_reads(n);
    if (rd.snapshot_request && !n.fetching) {
      n.fetching = true;
      Event ev;
      ev.kind = Ev::kFetched;
      ev.node = n.id;
      ev.incarnation = n.incarnation;
      ev.from = rd.snapshot_request->from;
      schedule(rng_.range(5, 60), std::move(ev));
      trace("node " + str(n.id) + " fetching snapshot " + str(rd.snapshot_request->meta.index) + " from " +
            str(rd.snapshot_request->from));
    }
    n.core->advance(rd);
    checker_.observe(*n.core);  // advance() may commit (the leader's own entries became durable)
  }
  maybe_compact(n);
  after_step(n);
}

void Simulation::persist(Node& n, const raft::Ready& rd) {
  Durable& d = n.durable;
  if (!rd.snapshot && rd.entries.empty() && rd.hard_state && rd.hard_state->term == d.hard_state.term &&
      rd.hard_state->vote == d.hard_state.vote) {
    d.unsynced_commit = rd.hard_state->commit;
    return;
  }
  if (d.unsynced_commit && (rd.snapshot || !rd.entries.empty() || rd.hard_state)) {
    d.hard_state.commit = *d.unsynced_commit;
    d.unsynced_commit.reset();
  }
  if (rd.snapshot) {
    d.log.clear();
    d.snapshot = *rd.snapshot;
    d.snapshot_state = n.installed_snapshot_state;
  }
  if (!rd.entries.empty()) {
    const Index first = rd.entries.front().index;
    while (!d.log.empty() && d.log.back().index >= first) d.log.pop_back();
    const Index expect = d.log.empty() ? d.snapshot.index + 1 : d.log.back().index + 1;
    if (first != expect) {
      checker_.fail("ready_contract", "node " + str(n.id) + " asked to persist entries from " + str(first) +
                                          " but its durable log ends at " + str(expect - 1));
      return;
    }
    for (const Entry& e : rd.entries) {
      const Term prev = d.log.empty() ? d.snapshot.term : d.log.back().term;
      checker_.on_persist(n.id, e, prev);
      d.log.push_back(e);
    }
  }
  if (rd.hard_state) {
    const raft::HardState& hs = *rd.hard_state;
    if (hs.term < d.hard_state.term) {
      checker_.fail("durable_term", "node " + str(n.id) + " persisted a lower term");
    } else if (hs.term == d.hard_state.term && d.hard_state.vote != raft::kNoNode && hs.vote != d.hard_state.vote) {
      checker_.fail("double_vote", "node " + str(n.id) + " changed its vote in term " + str(hs.term) + " from " +
                                       str(d.hard_state.vote) + " to " + str(hs.vote));
    }
    d.hard_state = hs;
  }
}

void Simulation::apply(Node& n, const Entry& e) {
  if (e.index != n.sm->applied_index() + 1) {
    checker_.fail("apply_order", "node " + str(n.id) + " applies " + str(e.index) + " after " +
                                     str(n.sm->applied_index()));
    return;
  }
  n.sm->apply(e);
  checker_.on_apply(n.id, e, n.sm->digest());
  if (e.type != raft::EntryType::kNormal) return;
  for (size_t c = 0; c < clients_.size(); ++c) {
    Client& cl = clients_[c];
    if (!cl.busy || !cl.proposed || cl.node != n.id || cl.index != e.index) continue;
    Event ev;
    ev.kind = Ev::kClient;
    ev.client = static_cast<int>(c);
    if (e.term == cl.term) {
      if (opts_.ledger ? e.data != cl.data : payload_id(e.data) != cl.id) {
        checker_.fail("client_ack", "index " + str(e.index) + " term " + str(e.term) + " holds another payload");
        return;
      }
      if (opts_.ledger) {
        on_ledger_ack(cl);
      } else {
        acked_.push_back(cl.id);  // the node it was proposed to saw it committed and applied it
      }
      ++stats_.acked;
      cl.busy = false;
      cl.proposed = false;
      schedule(rng_.range(1, 20), std::move(ev));
    } else {
      cl.proposed = false;  // overwritten by another leader: retry (same payload id)
      schedule(1, std::move(ev));
    }
  }
}

void Simulation::serve_parked_reads(Node& n) {
  for (auto it = n.parked_reads.begin(); it != n.parked_reads.end();) {
    if (n.sm->applied_index() < it->index) {
      ++it;
      continue;
    }
    const Read& read = reads_.at(it->ctx);
    for (size_t i = 0; i < read.acked_before; ++i) {
      if (n.sm->count(acked_[i]) == 0) {
        checker_.fail("linearizable_read", "node " + str(n.id) + " served read " + str(it->ctx) + " at index " +
                                               str(it->index) + " missing payload " + acked_[i] +
                                               " acknowledged before the read began");
        return;
      }
    }
    ++stats_.reads_checked;
    reads_.erase(it->ctx);
    it = n.parked_reads.erase(it);
  }
}

void Simulation::maybe_compact(Node& n) {
  if (p_.compact_every == 0 || !n.up) return;
  const Index applied = n.sm->applied_index();
  if (applied < n.durable.snapshot.index + p_.compact_every) return;
  raft::SnapshotMeta meta;
  meta.index = applied;
  meta.term = n.core->term_at(applied).value();
  meta.conf = n.core->conf_at(applied);
  const Status s = n.core->compact(meta);
  if (!s.is_ok()) {
    checker_.fail("compact", "node " + str(n.id) + ": " + s.to_string());
    return;
  }
  // One atomic durable write: snapshot state + meta, log prefix dropped.
  n.durable.snapshot = meta;
  n.durable.snapshot_state = n.sm->save();
  while (!n.durable.log.empty() && n.durable.log.front().index <= applied) n.durable.log.pop_front();
}

void Simulation::snapshot_fetched(Node& n, NodeId from) {
  n.fetching = false;
  Node& src = node(from);
  if (!src.up || blocked(from, n.id) || src.durable.snapshot.index == 0) return;  // failed; leader retries
  const raft::SnapshotMeta meta = src.durable.snapshot;
  if (meta.index <= n.core->applied() || n.core->role() == raft::Role::kLeader) return;  // stale: discard
  auto sm = make_sm();
  CL_CHECK(sm->load(src.durable.snapshot_state).is_ok());
  checker_.on_snapshot_installed(n.id, meta.index, sm->digest());
  n.sm = std::move(sm);
  n.installed_snapshot_state = src.durable.snapshot_state;
  const Status s = n.core->report_snapshot_done(meta);
  CL_CHECK_MSG(s.is_ok(), "report_snapshot_done refused a snapshot newer than the applied state");
  n.parked_reads.clear();
  ++stats_.snapshots_installed;
  trace("node " + str(n.id) + " installed snapshot " + str(meta.index) + " from " + str(from));
  after_step(n);
}

Node* Simulation::find_leader() {
  Node* best = nullptr;
  for (Node& n : nodes_) {
    if (n.up && n.core->role() == raft::Role::kLeader && (!best || n.core->term() > best->core->term())) best = &n;
  }
  return best;
}

// ---------------------------------------------------------------------------
// Network

uint64_t Simulation::latency() {
  uint64_t ms = rng_.range(p_.latency_min_ms, p_.latency_max_ms);
  if (rng_.chance(p_.spike_permille)) ms += rng_.range(1, p_.spike_max_ms);
  return ms;
}

void Simulation::send(const Message& m) {
  ++stats_.messages_sent;
  check_backed_by_disk(m);
  if (blocked(m.from, m.to) || rng_.chance(p_.loss_permille)) {
    ++stats_.messages_dropped;
    return;
  }
  Event ev;
  ev.kind = Ev::kDeliver;
  ev.node = m.to;
  ev.from = m.from;
  ev.frame = raft::encode_message(m);  // every message crosses the codec
  if (rng_.chance(p_.dup_permille)) {
    Event dup = ev;
    schedule(latency(), std::move(dup));
  }
  schedule(latency(), std::move(ev));
}

// The Ready contract seen from outside: a server vouches only for what its
// disk holds.  An accepting AppendResp for index i needs the durable log (or
// snapshot) to reach i; a granted vote needs the durable hard state to hold it.
// A message of an older term than the durable one is exempt: the server has
// durably moved past that term and will never act in it again.
void Simulation::check_backed_by_disk(const Message& m) {
  const Durable& d = node(m.from).durable;
  if (m.term != d.hard_state.term) return;
  if (m.type == raft::MessageType::kAppendResp && !m.reject) {
    const Index durable_last = d.log.empty() ? d.snapshot.index : d.log.back().index;
    if (m.index > durable_last) {
      checker_.fail("ack_durability", "node " + str(m.from) + " acknowledges index " + str(m.index) +
                                          " to " + str(m.to) + " but its disk holds entries only up to " +
                                          str(durable_last));
    }
  }
  if (m.type == raft::MessageType::kVoteResp && !m.reject && d.hard_state.vote != m.to) {
    checker_.fail("ack_durability", "node " + str(m.from) + " grants its vote in term " + str(m.term) +
                                        " before the vote is on disk");
  }
}

void Simulation::deliver(Event& ev) {
  Node& n = node(ev.node);
  if (!n.up || blocked(ev.from, ev.node)) {
    ++stats_.messages_dropped;
    return;
  }
  Result<Message> m = raft::decode_message(ev.frame);
  if (!m.is_ok()) {
    checker_.fail("codec", "a frame the core built does not decode: " + m.status().to_string());
    return;
  }
  if (opts_.trace) {
    const Message& x = *m;
    trace(str(x.from) + "->" + str(x.to) + " " + raft::to_string(x.type) + " t=" + str(x.term) + " i=" +
          str(x.index) + " lt=" + str(x.log_term) + " c=" + str(x.commit) + " n=" + str(x.entries.size()) +
          (x.reject ? " REJECT hint=" + str(x.reject_hint) : "") + (x.context ? " ctx=" + str(x.context) : ""));
  }
  const Status s = n.core->step(*m);
  if (!s.is_ok()) {
    checker_.fail("invalid_message", "node " + str(n.id) + " refused a message from " + str(ev.from) + ": " +
                                         s.to_string());
    return;
  }
  after_step(n);
}

// ---------------------------------------------------------------------------
// Actors

void Simulation::client_event(int c) {
  Client& cl = clients_[c];
  Event next;
  next.kind = Ev::kClient;
  next.client = c;
  if (!cl.busy) {
    if (!active_) return;  // no new work once the fault phase is over
    if (opts_.ledger) {
      if (!next_ledger_payload(c, cl)) {
        schedule(20, std::move(next));  // waiting for the setup batch, or the pool is used up
        return;
      }
    } else {
      cl.id = "c" + str(c) + "-" + str(cl.seq++);
      cl.data = cl.id + "|" + std::string(rng_.below(48), static_cast<char>('a' + c));
    }
    cl.busy = true;
    cl.proposed = false;
    cl.attempts = 0;
  }
  if (cl.proposed && now_ < cl.deadline) {
    schedule(cl.deadline - now_, std::move(next));
    return;
  }
  // (Re)submit, to the last leader we heard of or to any live node.
  NodeId target = (cl.hint != 0 && node(cl.hint).up) ? cl.hint : 0;
  if (target == 0 || rng_.chance(200)) {
    std::vector<NodeId> up;
    for (const Node& n : nodes_) {
      if (n.up) up.push_back(n.id);
    }
    target = up.empty() ? 0 : up[rng_.below(up.size())];
  }
  if (target == 0) {
    schedule(10, std::move(next));
    return;
  }
  Node& n = node(target);
  if (opts_.ledger) {  // the proposer stamps its own (virtual) clock; the ops are the same on every retry
    std::vector<Envelope> envs;
    for (const PoolOp* op : cl.ops) envs.push_back(op->env);
    cl.data = api::encode_batch(ledger_time_at(now_), envs);
  }
  Result<Index> r = n.core->propose(cl.data);
  if (r.is_ok()) {
    const uint64_t wait_ms = static_cast<uint64_t>(p_.client_retry_ms) << std::min(cl.attempts++, 4);
    cl.proposed = true;
    cl.node = target;
    cl.index = *r;
    cl.term = n.core->term();
    cl.deadline = now_ + wait_ms;
    ++stats_.proposals;
    trace("client " + str(c) + " proposed " + cl.id + " at node " + str(target) + " index " + str(cl.index));
    after_step(n);
    schedule(wait_ms, std::move(next));
  } else {
    cl.proposed = false;
    cl.hint = n.core->leader();
    schedule(rng_.range(1, 10), std::move(next));
  }
}

void Simulation::reader_event() {
  if (!active_) return;
  Event next;
  next.kind = Ev::kReader;
  schedule(rng_.range(20, 80), std::move(next));
  Node* leader = find_leader();
  if (leader == nullptr) return;
  const uint64_t ctx = ++next_ctx_;
  if (leader->core->read_index(ctx).is_ok()) {
    reads_.emplace(ctx, Read{leader->id, leader->incarnation, acked_.size()});
    after_step(*leader);
  }
}

void Simulation::fault_event() {
  if (!active_) return;
  Event next;
  next.kind = Ev::kFault;
  schedule(rng_.range(p_.fault_mean_ms / 2, p_.fault_mean_ms * 3 / 2), std::move(next));
  const size_t total = nodes_.size();
  Node* leader = find_leader();
  const uint64_t roll = rng_.below(100);
  if (roll < 12) {
    partition_random(/*symmetric=*/true);
  } else if (roll < 22) {
    partition_random(/*symmetric=*/false);
  } else if (roll < 30) {
    if (leader != nullptr) isolate(leader->id);
  } else if (roll < 40) {
    for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
    trace("HEAL");
  } else if (roll < 50) {  // one node's links come back
    const NodeId x = rng_.range(1, total);
    for (size_t y = 1; y <= total; ++y) blocked_[x][y] = blocked_[y][x] = false;
    trace("HEAL node " + str(x));
  } else if (roll < 66) {
    if (!may_crash()) return;
    std::vector<NodeId> up;
    for (const Node& n : nodes_) {
      if (n.up) up.push_back(n.id);
    }
    crash((leader != nullptr && rng_.chance(400)) ? *leader : node(up[rng_.below(up.size())]));
  } else if (roll < 76) {
    if (leader != nullptr) transfer(*leader);
  } else if (roll < 88) {
    if (leader != nullptr) change_membership(*leader);
  }
}

// Symmetric: every node on one of two random sides, links between sides cut.
// Asymmetric: one to three links fail in one direction only.
void Simulation::partition_random(bool symmetric) {
  const size_t total = nodes_.size();
  if (symmetric) {
    std::vector<int> side(total + 1);
    for (size_t i = 1; i <= total; ++i) side[i] = static_cast<int>(rng_.below(2));
    for (size_t a = 1; a <= total; ++a) {
      for (size_t b = 1; b <= total; ++b) {
        if (side[a] != side[b]) blocked_[a][b] = true;
      }
    }
  } else {
    for (uint64_t k = rng_.range(1, 3); k > 0; --k) {
      const NodeId a = rng_.range(1, total), b = rng_.range(1, total);
      if (a != b) blocked_[a][b] = true;
    }
  }
  ++stats_.partitions;
  trace(symmetric ? "PARTITION symmetric" : "PARTITION asymmetric");
}

void Simulation::transfer(Node& leader) {
  const auto& voters = leader.core->conf().voters;
  const NodeId to = voters[rng_.below(voters.size())];
  if (to != leader.id && leader.core->transfer_leadership(to).is_ok()) {
    ++stats_.transfers;
    trace("TRANSFER " + str(leader.id) + " -> " + str(to));
    after_step(leader);
  }
}

// Adds a non-voter or removes a voter (possibly the leader), keeping 3..5 voters.
void Simulation::change_membership(Node& leader) {
  const raft::ConfState conf = leader.core->conf();
  const bool add = conf.voters.size() <= 3 || (conf.voters.size() < 5 && rng_.chance(500));
  NodeId target = 0;
  if (add) {
    std::vector<NodeId> outside;
    for (const Node& n : nodes_) {
      if (!conf.contains(n.id)) outside.push_back(n.id);
    }
    if (!outside.empty()) target = outside[rng_.below(outside.size())];
  } else {
    target = conf.voters[rng_.below(conf.voters.size())];
  }
  if (target == 0) return;
  auto r = leader.core->propose_conf_change(add ? raft::ConfChangeType::kAddNode : raft::ConfChangeType::kRemoveNode,
                                            target);
  if (r.is_ok()) {
    ++stats_.conf_changes;
    trace(std::string("CONF ") + (add ? "add " : "remove ") + str(target) + " at " + str(*r));
    after_step(leader);
  }
}

bool Simulation::may_crash() const {
  int down = 0;
  for (const Node& n : nodes_) down += n.up ? 0 : 1;
  return down < p_.max_down;
}

void Simulation::isolate(NodeId id) {
  for (size_t x = 1; x <= nodes_.size(); ++x) blocked_[id][x] = blocked_[x][id] = true;
  ++stats_.partitions;
  trace("PARTITION isolate " + str(id));
}

void Simulation::watch_new_leaders() {
  Node* leader = find_leader();
  if (!active_ || leader == nullptr || leader->core->term() <= newest_leader_term_) return;
  newest_leader_term_ = leader->core->term();
  Event ev;
  ev.node = leader->id;
  ev.incarnation = leader->incarnation;
  if (rng_.chance(p_.new_leader_kill_permille)) {
    ev.kind = Ev::kCrash;
    schedule(rng_.range(0, p_.nemesis_delay_max_ms), std::move(ev));
  } else if (rng_.chance(p_.new_leader_isolate_permille)) {
    ev.kind = Ev::kIsolate;
    schedule(rng_.range(0, p_.nemesis_delay_max_ms), std::move(ev));
  }
}

void Simulation::end_active() {
  trace("END OF FAULTS: heal all, restart all");
  active_ = false;
  for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
  for (Node& n : nodes_) {
    if (!n.up) {
      ++n.incarnation;  // cancels the pending restart event
      restart(n);
    }
  }
  Event ev;
  ev.kind = Ev::kCheck;
  schedule(20, std::move(ev));
}

// "" once every voter of the leader's configuration has applied everything
// the leader committed (including a no-op of its term) with equal digests and
// every client has its answer; otherwise what is still missing.
std::string Simulation::convergence_gap() {
  Node* leader = find_leader();
  if (leader == nullptr) return "no leader";
  const RaftCore& l = *leader->core;
  const std::string where = "leader " + str(l.id()) + " term " + str(l.term()) + " commit " + str(l.commit()) +
                            " last " + str(l.last_index()) + ": ";
  if (l.term_at(l.commit()) != l.term()) return where + "nothing of its term committed";
  const std::string digest = leader->sm->digest();
  for (NodeId v : l.conf().voters) {
    const Node& n = node(v);
    if (!n.up) return where + "voter " + str(v) + " down";
    if (n.core->commit() != l.commit() || n.sm->applied_index() != l.commit() || n.sm->digest() != digest) {
      const auto match = l.match_index(v);
      return where + "voter " + str(v) + " (" + raft::to_string(n.core->role()) + ", term " +
             str(n.core->term()) + ") commit " + str(n.core->commit()) + " applied " +
             str(n.sm->applied_index()) + " last " + str(n.core->last_index()) + " match " +
             (match ? str(*match) : "-");
    }
  }
  for (size_t c = 0; c < clients_.size(); ++c) {
    if (clients_[c].busy) return where + "client " + str(c) + " still waiting";
  }
  return "";
}

void Simulation::final_checks() {
  Node* leader = find_leader();
  CL_CHECK(leader != nullptr);
  const raft::ConfState conf = leader->core->conf();
  for (NodeId v : conf.voters) {
    const Node& n = node(v);
    for (const std::string& id : acked_) {
      const size_t c = n.sm->count(id);
      if (c != 1) {
        checker_.fail("acked_payload", "acknowledged payload " + id + " appears " + str(c) + " times on node " +
                                           str(v) + " after convergence");
        return;
      }
    }
    // Log matching across the final logs: below the highest index where the
    // two logs agree on the term, they must agree on every entry.
    const RaftCore& a = *n.core;
    const RaftCore& b = *leader->core;
    const Index lo = std::max(a.first_index(), b.first_index());
    const Index hi = std::min(a.last_index(), b.last_index());
    bool matched = false;
    for (Index i = hi; i >= lo && i > 0; --i) {
      const Entry* x = a.entry_at(i);
      const Entry* y = b.entry_at(i);
      if (x->term == y->term) matched = true;
      if (matched && !(*x == *y)) {
        checker_.fail("log_matching", "nodes " + str(v) + " and " + str(leader->id) + " differ at index " + str(i) +
                                          " below a matching entry");
        return;
      }
    }
  }
  if (opts_.ledger) ledger_checks(*leader, conf);
  stats_.final_commit = leader->core->commit();
}

// Ledger mode: the next batch for client c, or false to wait.  Client 0
// first proposes the setup batch; nobody proposes pool ops before it is
// acknowledged (so every pool op is valid in any order).  A pool batch holds
// 1..4 fresh ops, sometimes plus an op already acknowledged (a replay).
bool Simulation::next_ledger_payload(int c, Client& cl) {
  const LedgerWorld& w = ledger_world();
  cl.ops.clear();
  cl.setup = false;
  if (!setup_acked_) {
    if (c != 0) return false;
    for (const PoolOp& op : w.setup) cl.ops.push_back(&op);
    cl.setup = true;
  } else {
    if (pool_next_ >= w.pool.size()) return false;
    for (uint64_t k = rng_.range(1, 4); k > 0 && pool_next_ < w.pool.size(); --k) cl.ops.push_back(&w.pool[pool_next_++]);
    if (!acked_ops_.empty() && rng_.chance(100)) cl.ops.push_back(acked_ops_[rng_.below(acked_ops_.size())]);
  }
  cl.id = cl.ops.front()->id;
  return true;
}

void Simulation::on_ledger_ack(Client& cl) {
  if (cl.setup) setup_acked_ = true;
  for (const PoolOp* op : cl.ops) {
    if (op->conflicting) {
      acked_conflicting_.push_back(op->id);
    } else if (acked_set_.insert(op->id).second) {
      acked_.push_back(op->id);
      acked_ops_.push_back(op);
    }
  }
}

// Every voter: the same journal size and Merkle root as the leader; its
// audit (Σ balances = supply, no op or (program, reference) twice, counts =
// journal); every acknowledged op journaled exactly once, and of the
// acknowledged twin payouts at most once.
void Simulation::ledger_checks(Node& leader, const raft::ConfState& conf) {
  const LedgerHead want = static_cast<const LedgerMachine&>(*leader.sm).ledger().head();
  for (NodeId v : conf.voters) {
    const auto& m = static_cast<const LedgerMachine&>(*node(v).sm);
    const LedgerHead h = m.ledger().head();
    if (h.size != want.size || h.root != want.root || h.supply.issued != want.supply.issued ||
        h.supply.redeemed != want.supply.redeemed) {
      checker_.fail("ledger_converged", "node " + str(v) + " has journal size " + str(h.size) + " vs leader " +
                                            str(leader.id) + "'s " + str(want.size) + " (or another root/supply)");
      return;
    }
    std::map<std::string, size_t> journal;
    const std::string bad = m.audit(&journal);
    if (!bad.empty()) {
      checker_.fail("ledger_audit", "node " + str(v) + ": " + bad);
      return;
    }
    for (const std::string& id : acked_) {
      auto it = journal.find(id);
      if (it == journal.end() || it->second != 1) {
        checker_.fail("acked_op", "acknowledged op " + id + " is not journaled exactly once on node " + str(v));
        return;
      }
    }
    for (const std::string& id : acked_conflicting_) {
      if (journal.count(id) > 1) {
        checker_.fail("acked_op", "twin payout " + id + " journaled twice on node " + str(v));
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------

void Simulation::handle(Event& ev) {
  switch (ev.kind) {
    case Ev::kTick: {
      Node& n = node(ev.node);
      if (n.up) {
        n.core->tick();
        after_step(n);
      }
      Event next;
      next.kind = Ev::kTick;
      next.node = ev.node;
      schedule(p_.tick_ms, std::move(next));
      break;
    }
    case Ev::kDeliver: deliver(ev); break;
    case Ev::kSync: {
      Node& n = node(ev.node);
      if (n.up && n.incarnation == ev.incarnation) sync(n);
      break;
    }
    case Ev::kClient: client_event(ev.client); break;
    case Ev::kReader: reader_event(); break;
    case Ev::kFault: fault_event(); break;
    case Ev::kCrash: {
      Node& n = node(ev.node);
      if (active_ && n.up && n.incarnation == ev.incarnation && may_crash()) crash(n);
      break;
    }
    case Ev::kIsolate:
      if (!active_) break;
      if (p_.nemesis == Nemesis::kRotate) {
        for (auto& row : blocked_) std::fill(row.begin(), row.end(), false);
      }
      isolate(ev.node);
      break;
    case Ev::kRestart: {
      Node& n = node(ev.node);
      if (!n.up && n.incarnation == ev.incarnation) restart(n);
      break;
    }
    case Ev::kFetched: {
      Node& n = node(ev.node);
      if (n.up && n.incarnation == ev.incarnation) snapshot_fetched(n, ev.from);
      break;
    }
    case Ev::kEndActive: end_active(); break;
    case Ev::kCheck: {
      const std::string gap = convergence_gap();
      if (gap.empty()) {
        converged_ = true;
        break;
      }
      if (now_ > static_cast<uint64_t>(p_.active_ms + p_.heal_max_ms)) {
        checker_.fail("liveness", "cluster did not converge " + str(p_.heal_max_ms) + " ms after healing: " + gap);
        break;
      }
      Event next;
      next.kind = Ev::kCheck;
      schedule(20, std::move(next));
      break;
    }
  }
}

SimResult Simulation::run() {
  p_ = choose_params(rng_);
  if (!opts_.compaction) p_.compact_every = 0;
  const size_t total = static_cast<size_t>(p_.nodes + p_.spares);
  nodes_.resize(total);
  blocked_.assign(total + 1, std::vector<bool>(total + 1, false));
  for (size_t i = 0; i < total; ++i) {
    nodes_[i].id = i + 1;
    boot(nodes_[i]);
    Event tick;
    tick.kind = Ev::kTick;
    tick.node = i + 1;
    schedule(rng_.range(0, p_.tick_ms - 1), std::move(tick));
  }
  clients_.resize(p_.clients);
  for (int c = 0; c < p_.clients; ++c) {
    Event ev;
    ev.kind = Ev::kClient;
    ev.client = c;
    schedule(rng_.range(50, 150), std::move(ev));
  }
  Event reader;
  reader.kind = Ev::kReader;
  schedule(200, std::move(reader));
  Event fault;
  fault.kind = Ev::kFault;
  schedule(rng_.range(100, 300), std::move(fault));
  Event end;
  end.kind = Ev::kEndActive;
  schedule(p_.active_ms, std::move(end));
  trace("params: " + p_.describe());

  while (!queue_.empty() && !converged_ && !checker_.failed()) {
    std::pop_heap(queue_.begin(), queue_.end(), Later());
    Event ev = std::move(queue_.back());
    queue_.pop_back();
    now_ = ev.time;
    handle(ev);
    ++stats_.events;
    for (Node& n : nodes_) {
      if (n.up && !checker_.failed()) checker_.observe(*n.core);
    }
    watch_new_leaders();
  }
  if (!checker_.failed()) final_checks();

  SimResult result;
  result.params = p_.describe();
  stats_.virtual_ms = now_;
  stats_.leaders = checker_.leaders_elected();
  result.stats = stats_;
  if (checker_.failed()) {
    result.ok = false;
    result.checker = checker_.violation()->checker;
    result.detail = checker_.violation()->detail;
  }
  return result;
}

}  // namespace

SimResult run_simulation(const SimOptions& options) {
  Simulation sim(options);
  return sim.run();
}

}  // namespace cl::sim
