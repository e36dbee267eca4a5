// Specification tests of the pure Raft core (consensus/raft_core.h) and its
// codec.  Each test drives a few RaftCores through a tiny in-memory network
// (Net below) whose delivery the test controls message by message, so the
// scenarios of the thesis can be built exactly.
#include <doctest/doctest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "consensus/codec.h"
#include "consensus/crc32c.h"
#include "consensus/raft_core.h"

namespace {

using namespace cl::raft;
using cl::Result;

std::unique_ptr<RaftCore> open_core(const Config& c, const RestoredState& r) {
  Result<std::unique_ptr<RaftCore>> core = RaftCore::open(c, r);
  REQUIRE(core.is_ok());
  return std::move(*core);
}

// One server: its core, its "disk" (what advance() has been told is durable)
// and what it applied.
struct Peer {
  Config cfg;
  std::unique_ptr<RaftCore> core;
  bool up = true;
  HardState disk_hard_state;
  SnapshotMeta disk_snapshot;
  std::vector<Entry> disk_log;
  std::vector<Entry> applied;  // committed entries after the last installed snapshot
  std::vector<ReadState> reads;
  std::optional<SnapshotRequest> snapshot_request;
};

// A cluster on an in-memory network.  round(): every server's Ready is
// persisted and its messages queued, then every queued message is delivered
// unless cut or dropped.  Undelivered messages are lost.
class Net {
 public:
  // Servers 1..voters are the genesis configuration; voters+1..voters+spares
  // run with the same genesis but are not members until added.
  explicit Net(size_t voters, std::function<void(Config&)> tweak = nullptr, size_t spares = 0) {
    for (NodeId id = 1; id <= voters + spares; ++id) {
      Peer& p = peers_[id];
      p.cfg.id = id;
      for (NodeId v = 1; v <= voters; ++v) p.cfg.voters.push_back(v);
      p.cfg.seed = id * 7919;
      if (tweak) tweak(p.cfg);
      p.core = open_core(p.cfg, RestoredState{});
    }
  }

  RaftCore& core(NodeId id) { return *peers_.at(id).core; }
  Peer& peer(NodeId id) { return peers_.at(id); }

  // Cuts every link between different groups; servers in no group are isolated.
  void partition(const std::vector<std::vector<NodeId>>& groups) {
    std::map<NodeId, size_t> group_of;
    for (size_t g = 0; g < groups.size(); ++g) {
      for (NodeId id : groups[g]) group_of[id] = g + 1;
    }
    cut_.clear();
    for (auto& [a, pa] : peers_) {
      for (auto& [b, pb] : peers_) {
        if (a != b && (group_of[a] == 0 || group_of[a] != group_of[b])) cut_.insert({a, b});
      }
    }
  }
  void isolate(NodeId id) {
    for (auto& [other, p] : peers_) {
      if (other != id) {
        cut_.insert({id, other});
        cut_.insert({other, id});
      }
    }
  }
  void heal() {
    cut_.clear();
    drop = nullptr;
  }

  // Return true to lose a message; `observe` sees every delivered one.
  std::function<bool(const Message&)> drop;
  std::function<void(const Message&)> observe;

  bool round() {
    bool moved = false;
    for (auto& [id, p] : peers_) moved |= process_ready(p);
    std::vector<Message> batch;
    batch.swap(queue_);
    for (const Message& m : batch) {
      if (cut_.count({m.from, m.to}) || (drop && drop(m))) continue;
      Peer& to = peers_.at(m.to);
      if (!to.up) continue;
      if (observe) observe(m);
      REQUIRE(to.core->step(m).is_ok());
      moved = true;
    }
    return moved;
  }

  void stabilize() {
    for (int i = 0; i < 500 && round(); ++i) {
    }
  }

  // Ticks `id` alone, letting the network settle after every tick, until it
  // wins an election (its randomized timeout is below 2 * election_tick; a
  // first campaign may only teach it a higher term).
  void elect(NodeId id) {
    for (int i = 0; i < 10 * peer(id).cfg.election_tick && core(id).role() != Role::kLeader; ++i) {
      core(id).tick();
      stabilize();
    }
    REQUIRE(core(id).role() == Role::kLeader);
  }

  // One heartbeat round from `leader`, then settle.
  void heartbeat(NodeId leader) {
    for (int i = 0; i < peer(leader).cfg.heartbeat_tick; ++i) core(leader).tick();
    stabilize();
  }

  Index propose(NodeId leader, const std::string& data) {
    Result<Index> r = core(leader).propose(data);
    REQUIRE(r.is_ok());
    return *r;
  }

  void crash(NodeId id) {
    Peer& p = peers_.at(id);
    p.up = false;
    p.core.reset();
  }

  // Restarts `id` from its disk (everything not yet advanced is lost).
  void restart(NodeId id) {
    Peer& p = peers_.at(id);
    RestoredState r;
    r.hard_state = p.disk_hard_state;
    r.snapshot = p.disk_snapshot;
    r.entries = p.disk_log;
    r.applied = p.disk_snapshot.index;
    p.core = open_core(p.cfg, r);
    p.applied.clear();
    p.up = true;
  }

  std::vector<Entry> log_of(NodeId id) {
    std::vector<Entry> out;
    RaftCore& c = core(id);
    for (Index i = c.first_index(); i <= c.last_index(); ++i) out.push_back(*c.entry_at(i));
    return out;
  }

  std::vector<std::string> applied_data(NodeId id) {
    std::vector<std::string> out;
    for (const Entry& e : peer(id).applied) {
      if (e.type == EntryType::kNormal) out.push_back(e.data);
    }
    return out;
  }

 private:
  bool process_ready(Peer& p) {
    bool any = false;
    while (p.up && p.core->has_ready()) {
      any = true;
      Ready rd = p.core->ready();
      if (rd.snapshot) {  // replaces the durable log
        p.disk_log.clear();
        p.disk_snapshot = *rd.snapshot;
      }
      if (!rd.entries.empty()) {
        const Index first = rd.entries.front().index;
        while (!p.disk_log.empty() && p.disk_log.back().index >= first) p.disk_log.pop_back();
        p.disk_log.insert(p.disk_log.end(), rd.entries.begin(), rd.entries.end());
      }
      if (rd.hard_state) p.disk_hard_state = *rd.hard_state;
      for (const Message& m : rd.messages) queue_.push_back(m);  // sent only after the disk write
      for (const Entry& e : rd.committed_entries) p.applied.push_back(e);
      for (const ReadState& rs : rd.read_states) p.reads.push_back(rs);
      if (rd.snapshot_request) p.snapshot_request = rd.snapshot_request;
      p.core->advance(rd);
    }
    return any;
  }

  std::map<NodeId, Peer> peers_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::vector<Message> queue_;
};

void no_pre_vote_no_lease(Config& c) {
  c.pre_vote = false;
  c.check_quorum = false;
}

size_t count_leaders(Net& net, std::initializer_list<NodeId> ids) {
  size_t n = 0;
  for (NodeId id : ids) n += net.core(id).role() == Role::kLeader ? 1 : 0;
  return n;
}

}  // namespace

// ---------------------------------------------------------------------------
// Elections

TEST_CASE("a single-node cluster elects itself and commits its no-op and proposals") {
  Net net(1);
  net.elect(1);
  CHECK(net.core(1).term() == 1);
  CHECK(net.core(1).commit() == 1);  // the no-op
  CHECK(net.core(1).entry_at(1)->type == EntryType::kNoop);
  net.propose(1, "a");
  net.stabilize();
  CHECK(net.core(1).commit() == 2);
  CHECK(net.applied_data(1) == std::vector<std::string>{"a"});
}

TEST_CASE("three servers elect exactly one leader, which every server then follows") {
  Net net(3);
  net.elect(2);
  CHECK(count_leaders(net, {1, 2, 3}) == 1);
  net.heartbeat(2);  // followers learn the commit index from the next message
  for (NodeId id : {1, 2, 3}) {
    CHECK(net.core(id).leader() == 2);
    CHECK(net.core(id).term() == 1);
    CHECK(net.core(id).commit() == 1);
  }
}

TEST_CASE("a vote is persisted in the same Ready that carries the reply, and survives a restart") {
  Net net(3, no_pre_vote_no_lease);
  net.partition({{1, 2}, {3}});  // 3 never hears of term 1
  net.elect(1);
  CHECK(net.peer(2).disk_hard_state.term == 1);
  CHECK(net.peer(2).disk_hard_state.vote == 1);

  net.crash(2);
  net.restart(2);
  CHECK(net.core(2).term() == 1);
  CHECK(net.core(2).vote() == 1);

  // 3 now campaigns in term 1 as well; 2 must not vote twice in term 1.
  net.partition({{2, 3}, {1}});
  RaftCore& c3 = net.core(3);
  for (int i = 0; i < 20 && c3.role() == Role::kFollower; ++i) c3.tick();
  REQUIRE(c3.role() == Role::kCandidate);
  REQUIRE(c3.term() == 1);
  net.stabilize();
  CHECK(c3.role() != Role::kLeader);
  CHECK(count_leaders(net, {2, 3}) == 0);
}

TEST_CASE("pre-vote: a partitioned server does not raise its term and does not disrupt the leader on return") {
  Net net(3);
  net.elect(1);
  const Term term = net.core(1).term();
  net.isolate(3);
  for (int i = 0; i < 100; ++i) net.core(3).tick();
  net.stabilize();
  CHECK(net.core(3).term() == term);  // pre-votes failed; no term inflation
  net.heal();
  net.heartbeat(1);
  CHECK(net.core(1).role() == Role::kLeader);
  CHECK(net.core(1).term() == term);
  CHECK(net.core(3).leader() == 1);
}

TEST_CASE("without pre-vote the same partitioned server inflates its term and deposes the leader") {
  Net net(3, [](Config& c) { c.pre_vote = false; });
  net.elect(1);
  const Term term = net.core(1).term();
  net.isolate(3);
  for (int i = 0; i < 100; ++i) net.core(3).tick();
  net.stabilize();
  CHECK(net.core(3).term() > term);
  net.heal();
  net.heartbeat(1);  // 3 answers the stale leader with its higher term
  CHECK(net.core(1).role() != Role::kLeader);
}

TEST_CASE("check-quorum: a leader cut off from its quorum steps down after an election timeout") {
  Net net(3);
  net.elect(1);
  net.isolate(1);
  for (int i = 0; i < 2 * 10 && net.core(1).role() == Role::kLeader; ++i) {
    net.core(1).tick();
    net.stabilize();
  }
  CHECK(net.core(1).role() == Role::kFollower);
  CHECK(net.core(1).leader() == kNoNode);
  CHECK(net.core(1).propose("x").status().code() == "not_leader");
}

TEST_CASE("a server that heard from a leader recently ignores vote requests (leader lease, §4.2.3)") {
  Net net(3);
  net.elect(1);
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 3;
  vote.to = 2;
  vote.term = net.core(2).term() + 5;
  vote.index = 100;
  vote.log_term = 100;
  REQUIRE(net.core(2).step(vote).is_ok());
  CHECK(net.core(2).term() == net.core(1).term());
  CHECK(net.core(2).vote() == 1);
}

// ---------------------------------------------------------------------------
// Replication

TEST_CASE("proposals replicate, commit on a majority and are applied in order on every server") {
  Net net(3);
  net.elect(1);
  for (const char* d : {"a", "b", "c"}) net.propose(1, d);
  net.stabilize();
  net.heartbeat(1);  // followers learn the final commit index
  for (NodeId id : {1, 2, 3}) {
    CHECK(net.core(id).commit() == 4);
    CHECK(net.applied_data(id) == std::vector<std::string>{"a", "b", "c"});
  }
}

TEST_CASE("a follower refuses proposals and names the leader") {
  Net net(3);
  net.elect(1);
  Result<Index> r = net.core(2).propose("x");
  CHECK(r.status().code() == "not_leader");
  CHECK(r.status().message() == "leader is 1");
}

TEST_CASE("an entry is committed only once a majority has it durable; a minority is not enough") {
  Net net(5);
  net.elect(1);
  net.partition({{1, 2}, {3, 4, 5}});
  const Index i = net.propose(1, "x");
  net.stabilize();
  CHECK(net.core(1).commit() < i);
  net.partition({{1, 2, 3}, {4, 5}});
  net.heartbeat(1);
  CHECK(net.core(1).commit() == i);
}

TEST_CASE("committed entries are handed to the application only after they are durable") {
  Net net(1);
  net.elect(1);
  net.propose(1, "x");
  Ready rd = net.core(1).ready();
  REQUIRE(rd.entries.size() == 1);
  CHECK(rd.committed_entries.empty());  // not yet durable, so not committed either
  net.core(1).advance(rd);
  REQUIRE(net.core(1).has_ready());
  Ready rd2 = net.core(1).ready();
  REQUIRE(rd2.committed_entries.size() == 1);
  CHECK(rd2.committed_entries[0].data == "x");
  CHECK(rd2.hard_state->commit == 2);
  net.core(1).advance(rd2);
}

TEST_CASE("pipelining: a follower in replicate state gets several appends before acknowledging") {
  Net net(3, [](Config& c) {
    c.max_entries_per_msg = 1;
    c.max_inflight_msgs = 3;
  });
  net.elect(1);
  net.heartbeat(1);
  std::vector<Message> appends;
  net.observe = [&](const Message& m) {
    if (m.type == MessageType::kAppend && m.to == 2 && !m.entries.empty()) appends.push_back(m);
  };
  for (int i = 0; i < 6; ++i) net.propose(1, "p" + std::to_string(i));
  net.round();  // one round: no acknowledgement has come back yet
  CHECK(appends.size() == 3);  // max_inflight_msgs, one entry each
  net.stabilize();
  net.heartbeat(1);
  CHECK(net.core(2).commit() == 7);
}

TEST_CASE("a follower's conflicting suffix is truncated and replaced by the leader's entries") {
  Net net(3, no_pre_vote_no_lease);
  net.elect(1);
  net.isolate(1);
  for (int i = 0; i < 3; ++i) net.propose(1, "stale" + std::to_string(i));  // term 1, only on 1
  net.stabilize();
  net.elect(2);  // term 2 with 3
  net.propose(2, "fresh");
  net.stabilize();
  net.heal();
  net.heartbeat(2);
  net.heartbeat(2);
  CHECK(net.log_of(1) == net.log_of(2));
  CHECK(net.core(1).leader() == 2);
  for (Index i = 1; i <= net.core(1).last_index(); ++i) {
    CHECK(net.core(1).entry_at(i)->data.rfind("stale", 0) != 0);
  }
  CHECK(net.applied_data(1) == std::vector<std::string>{"fresh"});
}

TEST_CASE("fast backtracking repairs a long conflicting log in a couple of round trips") {
  Net net(3, no_pre_vote_no_lease);
  net.elect(1);
  net.isolate(1);
  for (int i = 0; i < 50; ++i) net.propose(1, "old");  // indexes 2..51, term 1
  net.stabilize();
  net.elect(2);
  for (int i = 0; i < 60; ++i) net.propose(2, "new");
  net.stabilize();
  // A leader elected now starts probing server 1 from the end of a long log.
  REQUIRE(net.core(2).transfer_leadership(3).is_ok());
  net.stabilize();
  REQUIRE(net.core(3).role() == Role::kLeader);
  int rejections = 0;
  net.heal();
  net.observe = [&](const Message& m) {
    if (m.type == MessageType::kAppendResp && m.reject && m.from == 1) ++rejections;
  };
  net.heartbeat(3);
  net.heartbeat(3);
  CHECK(net.log_of(1) == net.log_of(3));
  CHECK(rejections >= 1);  // the conflict was found by refusal...
  CHECK(rejections <= 2);  // ...in at most two round trips; one entry at a time would take ~50
}

// Thesis Fig. 3.7 (the paper's "Figure 8"), with 5 servers.  S1 leads term 1
// and stores X at index 2 on S1, S2, then crashes.  S5 wins term 2 (S3, S4,
// S5); its no-op (index 2, term 2) stays on S5, which crashes.  S1 restarts,
// wins term 3 and copies X to S3, S4, but its term-3 no-op reaches only S2:
// X (term 1) is on a majority.  S1 crashes; S5 restarts and can still win
// term 4 with S3 and S4 (its last term 2 > their 1), overwriting X.  So X
// must not count as committed in term 3.
namespace {

struct Figure8 {
  explicit Figure8(TestFault fault)
      : net(5, [fault](Config& c) {
          no_pre_vote_no_lease(c);
          c.max_entries_per_msg = 1;
          c.test_fault = fault;
        }) {}

  void run_until_x_on_majority() {
    net.elect(1);  // term 1, no-op at index 1 everywhere
    net.partition({{1, 2}, {3, 4, 5}});
    x_index = net.propose(1, "X");
    net.stabilize();
    REQUIRE(x_index == 2);

    net.crash(1);
    net.heal();
    net.partition({{3, 4, 5}, {2}});
    net.drop = [](const Message& m) { return m.from == 5 && m.type == MessageType::kAppend; };
    net.elect(5);  // term 2; its no-op stays on S5
    REQUIRE(net.core(5).term() == 2);
    REQUIRE(net.core(5).term_at(2) == Term{2});
    net.crash(5);

    net.restart(1);
    net.heal();
    net.partition({{1, 2, 3, 4}});
    net.drop = [this](const Message& m) {  // once S3, S4 hold X, S1's term-3 no-op does not reach them
      return m.from == 1 && (m.to == 3 || m.to == 4) && m.type == MessageType::kAppend && !m.entries.empty() &&
             m.entries.front().term == 3 && net.core(m.to).last_index() >= 2;
    };
    net.elect(1);  // term 3
    REQUIRE(net.core(1).term() == 3);
    for (NodeId id : {1, 2, 3, 4}) REQUIRE(net.core(id).term_at(2) == Term{1});  // X on a majority
    REQUIRE(net.core(3).last_index() == 2);
  }

  // S1 crashes; S5 restarts, wins term 4 with S3, S4 and overwrites index 2.
  void s5_takes_over() {
    net.crash(1);
    net.restart(5);
    net.heal();
    net.partition({{2, 3, 4, 5}});
    net.elect(5);
    net.heartbeat(5);
  }

  Net net;
  Index x_index = 0;
};

}  // namespace

TEST_CASE("Figure 8: a leader does not commit an entry of an earlier term by counting replicas") {
  Figure8 f(TestFault::kNone);
  f.run_until_x_on_majority();
  CHECK(f.net.core(1).commit() == 1);  // X is on 4 of 5 servers, yet not committed
  f.s5_takes_over();
  CHECK(f.net.core(5).term() == 4);
  CHECK(f.net.core(3).term_at(2) == Term{2});  // X overwritten: legal, it was never committed
  CHECK(f.net.core(3).commit() >= 2);
}

TEST_CASE("Figure 8, broken on purpose: counting replicas of an old entry commits X, which is then lost") {
  Figure8 f(TestFault::kCommitPreviousTerm);
  f.run_until_x_on_majority();
  REQUIRE(f.net.core(1).commit() == 2);  // the faulty leader declares X committed
  CHECK(f.net.core(1).entry_at(2)->data == "X");
  f.s5_takes_over();
  CHECK(f.net.core(5).role() == Role::kLeader);
  CHECK(f.net.core(5).term_at(2) == Term{2});  // the new leader lacks a "committed" entry
  CHECK(f.net.core(3).entry_at(2)->data != "X");
}

TEST_CASE("once an entry of its own term commits, the earlier entries commit with it") {
  Figure8 f(TestFault::kNone);
  f.run_until_x_on_majority();
  f.net.drop = nullptr;
  f.net.heartbeat(1);  // the term-3 no-op now reaches S3, S4
  CHECK(f.net.core(1).commit() == 3);
  CHECK(f.net.core(1).entry_at(2)->data == "X");
}

// ---------------------------------------------------------------------------
// Reads, transfer, snapshots, membership

TEST_CASE("read_index waits for the term's no-op to commit, then for a heartbeat quorum") {
  Net net(3);
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendResp; };
  net.elect(1);
  CHECK(net.core(1).commit() == 0);
  CHECK(net.core(1).read_index(7).code() == "not_ready");
  net.drop = nullptr;
  net.heartbeat(1);
  REQUIRE(net.core(1).commit() == 1);

  REQUIRE(net.core(1).read_index(7).is_ok());
  CHECK(net.core(1).read_index(7).code() == "invalid");  // same context twice
  CHECK(net.peer(1).reads.empty());                        // not before the heartbeat round
  net.stabilize();
  REQUIRE(net.peer(1).reads.size() == 1);
  CHECK(net.peer(1).reads[0].ctx == 7);
  CHECK(net.peer(1).reads[0].index == 1);
  CHECK(net.core(2).read_index(8).code() == "not_leader");
}

TEST_CASE("a leader that cannot reach a quorum never confirms a read") {
  Net net(3);
  net.elect(1);
  net.isolate(1);
  REQUIRE(net.core(1).read_index(9).is_ok());
  for (int i = 0; i < 5; ++i) net.heartbeat(1);
  CHECK(net.peer(1).reads.empty());
}

TEST_CASE("leader transfer: the target is brought up to date, then wins the next term") {
  Net net(3);
  net.elect(1);
  net.isolate(3);
  net.propose(1, "a");
  net.stabilize();
  net.heal();
  const Term term = net.core(1).term();
  REQUIRE(net.core(1).transfer_leadership(3).is_ok());
  CHECK(net.core(1).propose("b").status().code() == "transferring");
  net.stabilize();
  CHECK(net.core(3).role() == Role::kLeader);
  CHECK(net.core(3).term() == term + 1);
  CHECK(net.core(1).role() == Role::kFollower);
  CHECK(net.core(3).entry_at(2)->data == "a");
  CHECK(net.core(1).transfer_leadership(2).code() == "not_leader");
}

TEST_CASE("a follower behind the leader's compacted log installs the application's snapshot and catches up") {
  Net net(3);
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 10; ++i) net.propose(1, "e" + std::to_string(i));
  net.stabilize();
  RaftCore& leader = net.core(1);
  REQUIRE(leader.applied() == 11);
  SnapshotMeta meta{leader.applied(), *leader.term_at(leader.applied()), leader.conf_at(leader.applied())};
  REQUIRE(leader.compact(meta).is_ok());
  CHECK(leader.first_index() == 12);
  CHECK(leader.compact(meta).code() == "invalid");

  net.heal();
  net.heartbeat(1);
  Peer& p3 = net.peer(3);
  REQUIRE(p3.snapshot_request.has_value());
  CHECK(p3.snapshot_request->meta == meta);
  CHECK(p3.snapshot_request->from == 1);

  // The application fetches the state from server 1 and installs it.
  REQUIRE(net.core(3).report_snapshot_done(meta).is_ok());
  CHECK(net.core(3).report_snapshot_done(meta).code() == "invalid");  // not newer than applied
  net.stabilize();
  CHECK(p3.disk_snapshot == meta);
  CHECK(net.core(3).first_index() == 12);
  CHECK(net.core(3).applied() == 11);

  net.propose(1, "after");
  net.stabilize();
  net.heartbeat(1);
  CHECK(net.core(3).commit() == 12);
  CHECK(net.applied_data(3) == std::vector<std::string>{"after"});
}

TEST_CASE("a fetched snapshot newer than requested, from a later term, moves the follower to that term") {
  Net net(3);
  net.elect(1);
  net.isolate(3);
  for (int i = 0; i < 3; ++i) net.propose(1, "a" + std::to_string(i));
  net.stabilize();
  RaftCore& first = net.core(1);
  REQUIRE(first.compact(SnapshotMeta{first.applied(), *first.term_at(first.applied()),
                                     first.conf_at(first.applied())})
              .is_ok());
  net.heal();
  net.heartbeat(1);
  REQUIRE(net.peer(3).snapshot_request.has_value());
  REQUIRE(net.core(3).term() == 1);

  // While server 3 fetches, leadership moves on and the new leader compacts.
  net.isolate(3);
  REQUIRE(net.core(1).transfer_leadership(2).is_ok());
  net.stabilize();
  REQUIRE(net.core(2).role() == Role::kLeader);
  net.propose(2, "b");
  net.stabilize();
  RaftCore& second = net.core(2);
  const SnapshotMeta newer{second.applied(), *second.term_at(second.applied()), second.conf_at(second.applied())};
  REQUIRE(second.compact(newer).is_ok());
  REQUIRE(newer.term == 2);

  REQUIRE(net.core(3).report_snapshot_done(newer).is_ok());  // what the fetch returned
  CHECK(net.core(3).term() == 2);
  net.stabilize();
  net.crash(3);
  net.restart(3);  // its disk must be consistent: no log term above its term
  CHECK(net.core(3).term() == 2);
  CHECK(net.core(3).first_index() == newer.index + 1);
  net.heal();
  net.heartbeat(2);
  CHECK(net.core(3).leader() == 2);
}

TEST_CASE("a server restarts from its snapshot and log and re-applies only what follows the snapshot") {
  Net net(3);
  net.elect(1);
  for (int i = 0; i < 4; ++i) net.propose(1, "e" + std::to_string(i));
  net.stabilize();
  RaftCore& leader = net.core(1);
  SnapshotMeta meta{3, *leader.term_at(3), leader.conf_at(3)};
  REQUIRE(leader.compact(meta).is_ok());
  net.peer(1).disk_snapshot = meta;  // the application persists it with its state
  auto& log = net.peer(1).disk_log;
  log.erase(log.begin(), log.begin() + 3);
  net.crash(1);
  net.restart(1);
  net.stabilize();
  CHECK(net.core(1).first_index() == 4);
  CHECK(net.applied_data(1) == std::vector<std::string>{"e2", "e3"});
}

TEST_CASE("membership: add and remove one server at a time; a second change waits for the first") {
  Net net(3, nullptr, /*spares=*/1);
  net.elect(1);
  net.propose(1, "before");
  net.stabilize();

  Result<Index> add = net.core(1).propose_conf_change(ConfChangeType::kAddNode, 4);
  REQUIRE(add.is_ok());
  CHECK(net.core(1).conf().voters == std::vector<NodeId>{1, 2, 3, 4});  // in force once appended
  CHECK(net.core(1).propose_conf_change(ConfChangeType::kRemoveNode, 2).status().code() == "conf_pending");
  net.stabilize();
  net.heartbeat(1);
  for (NodeId id : {1, 2, 3, 4}) CHECK(net.core(id).conf().voters == std::vector<NodeId>{1, 2, 3, 4});
  CHECK(net.log_of(4) == net.log_of(1));

  REQUIRE(net.core(1).propose_conf_change(ConfChangeType::kRemoveNode, 2).is_ok());
  net.stabilize();
  net.heartbeat(1);
  CHECK(net.core(4).conf().voters == std::vector<NodeId>{1, 3, 4});
  net.isolate(2);  // no longer needed for a quorum
  const Index i = net.propose(1, "after");
  net.stabilize();
  CHECK(net.core(1).commit() == i);

  CHECK(net.core(1).propose_conf_change(ConfChangeType::kAddNode, 3).status().code() == "invalid");
  CHECK(net.core(1).propose_conf_change(ConfChangeType::kRemoveNode, 2).status().code() == "invalid");
}

TEST_CASE("a new leader may not change membership before an entry of its term commits") {
  Net net(3);
  net.drop = [](const Message& m) { return m.type == MessageType::kAppendResp; };
  net.elect(1);
  CHECK(net.core(1).propose_conf_change(ConfChangeType::kRemoveNode, 3).status().code() == "conf_pending");
}

TEST_CASE("a leader that removes itself steps down once the change commits and hands over") {
  Net net(3);
  net.elect(1);
  REQUIRE(net.core(1).propose_conf_change(ConfChangeType::kRemoveNode, 1).is_ok());
  net.stabilize();
  CHECK(net.core(1).role() == Role::kFollower);
  CHECK(count_leaders(net, {2, 3}) == 1);
  const NodeId leader = net.core(2).role() == Role::kLeader ? 2 : 3;
  CHECK(net.core(leader).conf().voters == std::vector<NodeId>{2, 3});
  for (int i = 0; i < 100; ++i) net.core(1).tick();  // a non-member never campaigns
  CHECK(net.core(1).role() == Role::kFollower);
}

// ---------------------------------------------------------------------------
// Construction

TEST_CASE("open refuses a bad configuration and an inconsistent restored state") {
  Config c;
  c.id = 1;
  c.voters = {1, 2, 3};
  CHECK(RaftCore::open(c, RestoredState{}).is_ok());
  Config bad = c;
  bad.id = 0;
  CHECK(RaftCore::open(bad, RestoredState{}).status().code() == "invalid");
  bad = c;
  bad.election_tick = 1;
  CHECK(RaftCore::open(bad, RestoredState{}).status().code() == "invalid");
  bad = c;
  bad.voters = {1, 1};
  CHECK(RaftCore::open(bad, RestoredState{}).status().code() == "invalid");

  RestoredState gap;
  gap.hard_state.term = 1;
  gap.entries = {Entry{1, 1, EntryType::kNoop, ""}, Entry{1, 3, EntryType::kNormal, "x"}};
  CHECK(RaftCore::open(c, gap).status().code() == "corruption");

  RestoredState commit_beyond;
  commit_beyond.hard_state = HardState{1, 1, 5};
  commit_beyond.entries = {Entry{1, 1, EntryType::kNoop, ""}};
  CHECK(RaftCore::open(c, commit_beyond).status().code() == "corruption");

  RestoredState future_term;
  future_term.hard_state = HardState{1, 0, 0};
  future_term.entries = {Entry{2, 1, EntryType::kNoop, ""}};
  CHECK(RaftCore::open(c, future_term).status().code() == "corruption");
}

TEST_CASE("step refuses messages addressed elsewhere or with non-contiguous entries") {
  Net net(3);
  net.elect(1);
  Message m;
  m.type = MessageType::kAppend;
  m.from = 1;
  m.to = 3;
  m.term = net.core(1).term();
  CHECK(net.core(2).step(m).code() == "invalid");
  m.to = 2;
  m.index = 1;
  m.log_term = 1;
  m.entries = {Entry{1, 2, EntryType::kNormal, "a"}, Entry{1, 4, EntryType::kNormal, "b"}};
  CHECK(net.core(2).step(m).code() == "invalid");
  CHECK(net.core(2).last_index() == 1);
}

// ---------------------------------------------------------------------------
// Codec

namespace {

Message sample_message() {
  Message m;
  m.type = MessageType::kAppend;
  m.from = 3;
  m.to = 5;
  m.term = 0x0102030405060708ull;
  m.log_term = 7;
  m.index = 41;
  m.commit = 40;
  m.reject = true;
  m.reject_hint = 39;
  m.context = 0xdeadbeef;
  m.transfer = true;
  m.entries = {Entry{7, 42, EntryType::kNormal, std::string("pay\0load", 8)}, Entry{7, 43, EntryType::kNoop, ""},
               Entry{7, 44, EntryType::kConfChange, "cc"}};
  m.snapshot = SnapshotMeta{30, 6, ConfState{{1, 2, 9}}};
  return m;
}

// splitmix64, for reproducible "random" inputs.
uint64_t next_random(uint64_t* s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

void put_u32(std::string* s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[at + i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}

}  // namespace

TEST_CASE("crc32c matches the Castagnoli check value and composes incrementally") {
  CHECK(crc32c("123456789") == 0xE3069283u);
  CHECK(crc32c("") == 0u);
  CHECK(crc32c("6789", crc32c("12345")) == crc32c("123456789"));
}

TEST_CASE("crc32c: the hardware path equals the table path on every length and alignment") {
  std::string data;
  for (int i = 0; i < 200; ++i) data.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  for (size_t start = 0; start < 9; ++start)
    for (size_t len = 0; start + len <= 80; ++len) {
      auto piece = std::string_view(data).substr(start, len);
      CHECK(crc32c(piece) == crc32c_portable(piece));
      CHECK(crc32c(piece, 0x12345678u) == crc32c_portable(piece, 0x12345678u));
    }
  CHECK(crc32c_portable("123456789") == 0xE3069283u);
}

TEST_CASE("every message type round-trips through the frame codec") {
  for (uint8_t t = 0; t <= kMaxMessageType; ++t) {
    Message m = sample_message();
    m.type = static_cast<MessageType>(t);
    Result<Message> back = decode_message(encode_message(m));
    REQUIRE(back.is_ok());
    CHECK(*back == m);
  }
  Message empty;
  CHECK(*decode_message(encode_message(empty)) == empty);
}

TEST_CASE("a damaged frame is refused: every truncation, every flipped bit, trailing bytes") {
  const std::string frame = encode_message(sample_message());
  for (size_t n = 0; n < frame.size(); ++n) CHECK_FALSE(decode_message(frame.substr(0, n)).is_ok());
  for (size_t i = 0; i < frame.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = frame;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      CHECK_FALSE(decode_message(bad).is_ok());
    }
  }
  CHECK_FALSE(decode_message(frame + "x").is_ok());
  std::string huge = frame;
  put_u32(&huge, 0, 0xFFFFFFFFu);
  CHECK_FALSE(decode_message(huge).is_ok());
}

TEST_CASE("hostile bytes never crash the decoder: random frames and mutated bodies with valid checksums") {
  uint64_t seed = 12345;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(next_random(&seed) % 300, '\0');
    for (char& c : junk) c = static_cast<char>(next_random(&seed));
    (void)decode_message(junk);
    (void)decode_entry(junk);
    (void)decode_conf_change(junk);
  }
  // Past the checksum: mutate the body, then make length and CRC consistent
  // again, so the structural checks are what is tested.  Whatever decodes
  // must re-encode to the same bytes (the encoding is canonical).
  const std::string frame = encode_message(sample_message());
  const size_t body_len = frame.size() - 8;
  int decoded = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body = frame.substr(4, body_len);
    const int edits = 1 + static_cast<int>(next_random(&seed) % 4);
    for (int e = 0; e < edits; ++e) {
      const uint64_t r = next_random(&seed);
      const size_t at = r % body.size();
      switch ((r >> 32) % 3) {
        case 0: body[at] = static_cast<char>(r >> 40); break;
        case 1: body.erase(at, 1 + (r >> 40) % 8); break;
        case 2: body.insert(at, std::string(1 + (r >> 40) % 8, static_cast<char>(r >> 48))); break;
      }
      if (body.empty()) body = "x";
    }
    std::string mutated(4, '\0');
    put_u32(&mutated, 0, static_cast<uint32_t>(body.size()));
    mutated += body;
    mutated += std::string(4, '\0');
    put_u32(&mutated, mutated.size() - 4, crc32c(body));
    Result<Message> m = decode_message(mutated);
    if (m.is_ok()) {
      ++decoded;
      CHECK(encode_message(*m) == mutated);
    }
  }
  CHECK(decoded > 0);  // some mutations are still well-formed messages
}

TEST_CASE("stored entries carry their own checksum") {
  Entry e{3, 17, EntryType::kNormal, "batch of ops"};
  const std::string record = encode_entry(e);
  CHECK(*decode_entry(record) == e);
  std::string bad = record;
  bad[20] = static_cast<char>(bad[20] ^ 1);
  CHECK(decode_entry(bad).status().code() == "corruption");
  CHECK(decode_entry(record.substr(0, record.size() - 1)).status().code() == "corruption");
}

TEST_CASE("membership changes encode the resulting configuration and refuse malformed voter lists") {
  ConfChange cc{ConfChangeType::kRemoveNode, 2, ConfState{{1, 3, 4}}};
  CHECK(*decode_conf_change(encode_conf_change(cc)) == cc);
  // Voters 1, 3 with their low bytes swapped on the wire: 3, 1.
  std::string bytes = encode_conf_change(ConfChange{ConfChangeType::kAddNode, 4, ConfState{{1, 3}}});
  std::swap(bytes[14], bytes[22]);
  CHECK_FALSE(decode_conf_change(bytes).is_ok());
}

TEST_CASE("membership changes carry an opaque context to every replica, bounded in size") {
  ConfChange plain{ConfChangeType::kAddNode, 4, ConfState{{1, 2, 3, 4}}};
  ConfChange with = plain;
  with.context = R"({"api":"127.0.0.1:8084","id":4,"raft":"127.0.0.1:9084"})";
  CHECK(*decode_conf_change(encode_conf_change(with)) == with);
  // A change without context encodes exactly as before contexts existed.
  CHECK(decode_conf_change(encode_conf_change(plain))->context.empty());
  std::string bytes = encode_conf_change(with);
  CHECK_FALSE(decode_conf_change(bytes.substr(0, bytes.size() - 1)).is_ok());
  CHECK_FALSE(decode_conf_change(bytes + "x").is_ok());
  ConfChange huge = plain;
  huge.context.assign(kConfContextMax + 1, 'x');
  CHECK_FALSE(decode_conf_change(encode_conf_change(huge)).is_ok());

  // The leader refuses an oversized context; a normal one reaches every log.
  Net net(3, nullptr, /*spares=*/1);
  net.elect(1);
  net.propose(1, "before");
  net.stabilize();
  CHECK(net.core(1).propose_conf_change(ConfChangeType::kAddNode, 4, std::string(kConfContextMax + 1, 'x')).status().code() ==
        "invalid");
  REQUIRE(net.core(1).propose_conf_change(ConfChangeType::kAddNode, 4, with.context).is_ok());
  net.stabilize();
  net.heartbeat(1);
  for (NodeId id : {2, 3, 4}) {
    CHECK(net.log_of(id) == net.log_of(1));
    auto last = net.log_of(id).back();
    REQUIRE(last.type == EntryType::kConfChange);
    CHECK(decode_conf_change(last.data)->context == with.context);
  }
}

TEST_CASE("while applying is paused, Readies carry no committed entries; resuming delivers them in order") {
  Net net(3);
  net.elect(1);
  net.core(2).set_apply_paused(true);
  net.propose(1, "a");
  net.propose(1, "b");
  net.stabilize();
  // The cluster commits with server 2 persisting and acknowledging as usual.
  CHECK(net.core(1).commit() == 3);
  CHECK(net.core(2).commit() == 3);
  CHECK(net.core(2).entry_at(3)->data == "b");
  CHECK(net.applied_data(2).empty());
  CHECK(net.applied_data(1) == std::vector<std::string>{"a", "b"});
  CHECK_FALSE(net.core(2).has_ready());  // nothing else to do: no spinning on paused applies
  net.core(2).set_apply_paused(false);
  CHECK(net.core(2).has_ready());
  net.stabilize();
  CHECK(net.applied_data(2) == std::vector<std::string>{"a", "b"});
}
