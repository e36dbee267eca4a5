// consensus/raft_storage: the durable Raft log in RocksDB.
#include <doctest/doctest.h>
#include <rocksdb/db.h>
#include <rocksdb/sst_file_manager.h>

#include <filesystem>
#include <random>

#include "consensus/raft_storage.h"

using namespace cl;
using namespace cl::raft;

namespace {

struct Dir {
  std::string path;
  Dir() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() / ("cl-raft-storage-" + std::to_string(rd()))).string();
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

Entry entry(Index i, Term t, std::string data) { return Entry{t, i, EntryType::kNormal, std::move(data)}; }

Ready ready_with(std::vector<Entry> entries, std::optional<HardState> hs) {
  Ready rd;
  rd.entries = std::move(entries);
  rd.hard_state = hs;
  return rd;
}

std::vector<Entry> load_entries(const std::string& dir) {
  auto st = RaftStorage::open(dir);
  REQUIRE(st.is_ok());
  auto r = (*st)->load();
  REQUIRE(r.is_ok());
  return r->entries;
}

}  // namespace

TEST_CASE("raft storage keeps entries and hard state across reopen; a new leader's entries replace a conflicting suffix") {
  Dir d;
  {
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, HardState{1, 1, 0})).is_ok());
    // Appends past the end (no truncation), then a commit-only write.
    REQUIRE((*st)->save(ready_with({entry(4, 1, "d"), entry(5, 1, "e")}, std::nullopt)).is_ok());
    REQUIRE((*st)->save(ready_with({}, HardState{1, 1, 3})).is_ok());
  }
  {
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    auto r = (*st)->load();
    REQUIRE(r.is_ok());
    CHECK(r->hard_state == HardState{1, 1, 3});
    REQUIRE(r->entries.size() == 5);
    CHECK(r->entries[4] == entry(5, 1, "e"));
    // Term 2's leader overwrites 4..5 with one entry at 4: entry 5 must go.
    REQUIRE((*st)->save(ready_with({entry(4, 2, "D")}, HardState{2, 2, 3})).is_ok());
  }
  auto entries = load_entries(d.path);
  REQUIRE(entries.size() == 4);
  CHECK(entries[2] == entry(3, 1, "c"));
  CHECK(entries[3] == entry(4, 2, "D"));
  {
    // Appending again after the truncation, across a reopen.
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(5, 2, "E"), entry(6, 2, "F")}, std::nullopt)).is_ok());
  }
  entries = load_entries(d.path);
  REQUIRE(entries.size() == 6);
  CHECK(entries[5] == entry(6, 2, "F"));
}

TEST_CASE("raft storage given a file delete scheduler hands it its obsolete files instead of unlinking them whole") {
  Dir d;
  // 1 KiB/s in 1 KiB chunks, and trash never "too large": whatever the
  // store deletes stays in the scheduler's trash for the whole test.
  rocksdb::Status made;
  std::shared_ptr<rocksdb::SstFileManager> deletes(rocksdb::NewSstFileManager(
      rocksdb::Env::Default(), nullptr, "", 1 << 10, true, &made, 1e9, 1 << 10));
  REQUIRE(made.ok());
  const std::string big(256 << 10, 'x');
  {
    auto st = RaftStorage::open(d.path, nullptr, StoreIo{nullptr, deletes, {}});
    REQUIRE(st.is_ok());
    for (Index i = 1; i <= 8; ++i) REQUIRE((*st)->save(ready_with({entry(i, 1, big)}, HardState{1, 1, 0})).is_ok());
  }
  // Reopening replays the 2 MiB write-ahead log into a table; the old log
  // is then obsolete and goes to the scheduler.
  auto st = RaftStorage::open(d.path, nullptr, StoreIo{nullptr, deletes, {}});
  REQUIRE(st.is_ok());
  auto r = (*st)->load();
  REQUIRE(r.is_ok());
  CHECK(r->entries.size() == 8);
  CHECK(deletes->GetTotalSize() > 0);                  // it tracks the store's table
  CHECK(deletes->GetTotalTrashSize() >= (2u << 20));   // and holds the old log, not yet deleted
  bool trash_file = false;
  for (const auto& f : std::filesystem::directory_iterator(d.path))
    trash_file = trash_file || f.path().extension() == ".trash";
  CHECK(trash_file);
}

TEST_CASE("raft storage compaction drops the prefix and keeps the rest") {
  Dir d;
  auto st = RaftStorage::open(d.path);
  REQUIRE(st.is_ok());
  REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, HardState{1, 1, 3})).is_ok());
  REQUIRE((*st)->compact(SnapshotMeta{2, 1, ConfState{{1}}}).is_ok());
  REQUIRE((*st)->save(ready_with({entry(4, 1, "d")}, std::nullopt)).is_ok());
  auto r = (*st)->load();
  REQUIRE(r.is_ok());
  CHECK(r->snapshot.index == 2);
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0] == entry(3, 1, "c"));
  CHECK(r->entries[1] == entry(4, 1, "d"));
}

TEST_CASE("raft storage refuses a store without its format record or with another format") {
  Dir d;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(o, d.path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    REQUIRE(db->Put(rocksdb::WriteOptions(), "h", "something older").ok());
  }
  auto st = RaftStorage::open(d.path);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.status().code() == "corruption");
  CHECK(st.status().message().find("no format record") != std::string::npos);

  Dir e;
  { REQUIRE(RaftStorage::open(e.path).is_ok()); }  // a fresh store gets the format record
  {
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::Options(), e.path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), "v", &v).ok());
    CHECK(v == "cityledger-raft-2");
    REQUIRE(db->Put(rocksdb::WriteOptions(), "v", "cityledger-raft-9").ok());
  }
  auto again = RaftStorage::open(e.path);
  REQUIRE_FALSE(again.is_ok());
  CHECK(again.status().message().find("cityledger-raft-9") != std::string::npos);
}

// --- RaftNode: the loop that drives the core, storage and transport ---------

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "consensus/raft_node.h"

namespace {

// Applies entries slowly, as a state machine stuck on a slow disk would.
class SlowMachine : public StateMachine {
 public:
  explicit SlowMachine(std::chrono::milliseconds delay) : delay_(delay) {}
  std::any apply(const Entry& e) override {
    std::this_thread::sleep_for(delay_);
    applied_.store(e.index);
    return e.data;
  }
  void skip(Index index) override { applied_.store(index); }
  Index applied_index() const override { return applied_.load(); }

 private:
  std::chrono::milliseconds delay_;
  std::atomic<Index> applied_{0};
};

// Blocks in apply() of the entry whose data is "hold" until release():
// shows what the node does while its state machine is busy.
class GatedMachine : public StateMachine {
 public:
  std::any apply(const Entry& e) override {
    if (e.data == "hold") {
      std::unique_lock lock(mu_);
      holding_ = e.index;
      cv_.notify_all();
      cv_.wait(lock, [this] { return released_; });
    }
    applied_.store(e.index);
    return e.data;
  }
  void skip(Index index) override { applied_.store(index); }
  Index applied_index() const override { return applied_.load(); }
  // The index of the held entry, once apply() has reached it.
  Index wait_holding() {
    std::unique_lock lock(mu_);
    bool reached = cv_.wait_for(lock, std::chrono::seconds(10), [this] { return holding_ != 0; });
    REQUIRE(reached);
    return holding_;
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Releases the machine on scope exit: declared after the node, so that a
  // failed REQUIRE does not leave the node's stop() waiting on apply().
  struct ReleaseOnExit {
    GatedMachine& m;
    ~ReleaseOnExit() { m.release(); }
  };

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Index holding_ = 0;
  bool released_ = false;
  std::atomic<Index> applied_{0};
};

struct SlowReport {
  std::mutex mu;
  std::vector<SlowReady> seen;
};

RaftNodeOptions single_options(const std::string& dir) {
  RaftNodeOptions o;
  o.id = 1;
  o.voters = {1};
  o.peers = {{1, PeerAddress{"127.0.0.1", 0}}};
  o.dir = dir;
  o.tick_ms = 10;
  o.seed = 7;
  return o;
}

// A single-voter node on loopback that reports Raft steps slower than slow_ms.
std::unique_ptr<RaftNode> start_single(const std::string& dir, StateMachine* sm, uint64_t slow_ms, SlowReport* rep) {
  RaftNodeOptions o;
  o.id = 1;
  o.voters = {1};
  o.peers = {{1, PeerAddress{"127.0.0.1", 0}}};
  o.dir = dir;
  o.tick_ms = 10;
  o.seed = 7;
  o.slow_ready_ms = slow_ms;
  o.on_slow_ready = [rep](const SlowReady& r) {
    std::lock_guard lock(rep->mu);
    rep->seen.push_back(r);
  };
  auto node = RaftNode::open(std::move(o), sm);
  REQUIRE_MESSAGE(node.is_ok(), node.status().to_string());
  REQUIRE((*node)->start().is_ok());
  return std::move(*node);
}

// Proposes "data" until it is applied (the node may still be electing itself).
void propose_until_applied(RaftNode* node, const std::string& data) {
  for (int attempt = 0; attempt < 500; ++attempt) {
    std::promise<Status> p;
    auto f = p.get_future();
    node->propose(data, [&p](Status s, std::any) { p.set_value(s); });
    REQUIRE(f.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    if (f.get().is_ok()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FAIL("the single-voter node never committed");
}

// A started single-voter node over a GatedMachine, with one entry applied.
// Members go in reverse: the gate opens before the node stops.
struct GatedNode {
  Dir dir;
  GatedMachine sm;
  SlowReport rep;
  std::unique_ptr<RaftNode> node = start_single(dir.path, &sm, 0, &rep);
  GatedMachine::ReleaseOnExit release{sm};
  GatedNode() { propose_until_applied(node.get(), "first"); }
};

// Proposes "hold" (held in apply()) and then "next"; returns the held
// entry's index once the node reports "next" committed (or after 10 s).
Index hold_and_commit_next(RaftNode* node, GatedMachine& sm, std::promise<Status>* held, std::promise<Status>* next) {
  node->propose("hold", [held](Status s, std::any) { held->set_value(s); });
  const Index hold_index = sm.wait_holding();
  node->propose("next", [next](Status s, std::any) { next->set_value(s); });
  for (int i = 0; i < 1000 && node->status().commit <= hold_index; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return hold_index;
}

}  // namespace

TEST_CASE("a Raft step slower than slow_ready_ms is reported with where its time went (apply vs persist)") {
  Dir dir;
  SlowMachine sm(std::chrono::milliseconds(60));
  SlowReport rep;
  auto node = start_single(dir.path, &sm, 30, &rep);
  propose_until_applied(node.get(), "slow entry");
  node->stop();
  std::lock_guard lock(rep.mu);
  // The Ready that applied the entry (others may be slow too, on a busy disk).
  const SlowReady* applied = nullptr;
  for (const auto& r : rep.seen)
    if (r.committed >= 1 && r.apply_ms >= 60) applied = &r;
  REQUIRE(applied != nullptr);
  const SlowReady& r = *applied;
  CHECK(r.apply_ms >= 60);
  CHECK(r.applier);  // the Raft thread only hands entries over
  CHECK(r.total_ms >= r.apply_ms);
  CHECK(r.total_ms >= r.persist_ms);
}

TEST_CASE("fast Raft steps, or slow_ready_ms = 0, report nothing") {
  SUBCASE("fast steps under the threshold") {
    Dir dir;
    SlowMachine sm(std::chrono::milliseconds(0));
    SlowReport rep;
    auto node = start_single(dir.path, &sm, 5000, &rep);
    propose_until_applied(node.get(), "fast entry");
    node->stop();
    std::lock_guard lock(rep.mu);
    CHECK(rep.seen.empty());
  }
  SUBCASE("reporting off") {
    Dir dir;
    SlowMachine sm(std::chrono::milliseconds(40));
    SlowReport rep;
    auto node = start_single(dir.path, &sm, 0, &rep);
    propose_until_applied(node.get(), "slow entry");
    node->stop();
    std::lock_guard lock(rep.mu);
    CHECK(rep.seen.empty());
  }
}

TEST_CASE("while the state machine applies an entry, later entries are still persisted and committed") {
  GatedNode g;
  auto& node = g.node;
  auto& sm = g.sm;
  std::promise<Status> held, next;
  const Index hold_index = hold_and_commit_next(node.get(), sm, &held, &next);
  // The Raft loop does not wait for apply(): "next" commits meanwhile.
  CHECK(node->status().commit > hold_index);
  // ...but nobody hears of it before it is applied, in log order.
  auto next_done = next.get_future();
  CHECK(next_done.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  CHECK(sm.applied_index() < hold_index);
  sm.release();
  REQUIRE(next_done.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(next_done.get().is_ok());
  CHECK(held.get_future().get().is_ok());
  CHECK(sm.applied_index() == hold_index + 1);
  node->stop();
}

TEST_CASE("a linearizable read waits until everything committed before it is applied") {
  GatedNode g;
  auto& node = g.node;
  auto& sm = g.sm;
  node->propose("hold", [](Status, std::any) {});
  const Index hold_index = sm.wait_holding();
  std::promise<Status> read;
  node->read_barrier([&read](Status s) { read.set_value(s); });
  auto read_done = read.get_future();
  CHECK(read_done.wait_for(std::chrono::milliseconds(200)) == std::future_status::timeout);
  sm.release();
  REQUIRE(read_done.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  CHECK(read_done.get().is_ok());
  CHECK(sm.applied_index() >= hold_index);
  node->stop();
}

TEST_CASE("stopping a node applies what was committed and answers its proposers") {
  GatedNode g;
  auto& node = g.node;
  auto& sm = g.sm;
  std::promise<Status> held, next;
  const Index hold_index = hold_and_commit_next(node.get(), sm, &held, &next);
  REQUIRE(node->status().commit > hold_index);
  std::thread releaser([&sm] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    sm.release();
  });
  node->stop();  // returns once the applier has finished what it was handed
  releaser.join();
  CHECK(held.get_future().get().is_ok());
  CHECK(next.get_future().get().is_ok());
  CHECK(sm.applied_index() == hold_index + 1);
}

TEST_CASE("a state machine ahead of the Raft log starts only from a recorded install of exactly its index") {
  // The log holds entries 1..3; the state machine has applied up to 50, as a
  // follower does that installed its leader's state (catch-up) and was killed
  // before a Ready recorded that install as its snapshot.
  Dir dir;
  {
    auto st = RaftStorage::open(dir.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 2, "c")}, HardState{2, 1, 3})).is_ok());
  }
  SlowMachine sm(std::chrono::milliseconds(0));
  sm.skip(50);
  SUBCASE("nothing recorded: refused, the store unchanged") {
    auto node = RaftNode::open(single_options(dir.path), &sm);
    REQUIRE_FALSE(node.is_ok());
    CHECK(node.status().code() == "corruption");
    CHECK(load_entries(dir.path).size() == 3);
  }
  SUBCASE("an install to another index recorded: refused") {
    {
      auto st = RaftStorage::open(dir.path);
      REQUIRE(st.is_ok());
      REQUIRE((*st)->record_install(SnapshotMeta{40, 2, ConfState{{1}}}).is_ok());
    }
    auto node = RaftNode::open(single_options(dir.path), &sm);
    REQUIRE_FALSE(node.is_ok());
    CHECK(node.status().code() == "corruption");
  }
  SUBCASE("the install to its index recorded: starts from it as the snapshot, and goes on committing") {
    {
      auto st = RaftStorage::open(dir.path);
      REQUIRE(st.is_ok());
      REQUIRE((*st)->record_install(SnapshotMeta{50, 2, ConfState{{1}}}).is_ok());
    }
    {
      auto node = RaftNode::open(single_options(dir.path), &sm);
      REQUIRE_MESSAGE(node.is_ok(), node.status().to_string());
      REQUIRE((*node)->start().is_ok());
      propose_until_applied(node->get(), "after the install");
      CHECK(sm.applied_index() > 50);
      (*node)->stop();
    }
    auto st = RaftStorage::open(dir.path);
    REQUIRE(st.is_ok());
    auto r = (*st)->load();
    REQUIRE(r.is_ok());
    CHECK(r->snapshot.index == 50);
    CHECK(r->snapshot.term == 2);
    REQUIRE_FALSE(r->entries.empty());
    CHECK(r->entries.front().index == 51);
    auto install = (*st)->recorded_install();
    REQUIRE(install.is_ok());
    CHECK_FALSE(install->has_value());  // cleared once recorded as the snapshot
  }
}

TEST_CASE("a node killed in the middle of a state install resumes it before applying anything of its log") {
  // The log holds committed entries 1..3 and the state machine has applied
  // none of them, but an install to 50 was recorded: the state machine may
  // hold part of the leader's journal, and applying 1..3 onto it would
  // diverge.  Node 2 never answers, so node 1 stays a follower, as a node
  // catching up does (its log lacks committed entries: it cannot win).
  Dir dir;
  {
    auto st = RaftStorage::open(dir.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, HardState{1, 0, 3})).is_ok());
    REQUIRE((*st)->record_install(SnapshotMeta{50, 1, ConfState{{1, 2}}}).is_ok());
  }
  SlowMachine sm(std::chrono::milliseconds(0));
  std::mutex mu;
  std::vector<Index> fetched;
  RaftNodeOptions o = single_options(dir.path);
  o.voters = {1, 2};
  o.peers[2] = PeerAddress{"127.0.0.1", 1};  // nobody listens there
  SUBCASE("without a way to fetch state it does not start") {
    auto node = RaftNode::open(o, &sm);
    REQUIRE_FALSE(node.is_ok());
  }
  // Starts the node with a fetcher that fails "failures" times, then
  // installs 50; checks nothing of the log was applied before the install.
  auto resume_with = [&](size_t failures) {
    std::atomic<RaftNode*> self{nullptr};
    o.fetch_snapshot = [&](const SnapshotRequest& req) -> Result<SnapshotMeta> {
      std::lock_guard lock(mu);
      fetched.push_back(req.meta.index);
      CHECK(sm.applied_index() == 0);  // nothing of the log applied before the install
      if (self.load() != nullptr) CHECK(self.load()->installing());  // not offered as a source meanwhile
      if (fetched.size() <= failures) return Status::error("unavailable", "no source answers");
      sm.skip(50);  // the install
      return SnapshotMeta{50, 1, ConfState{{1, 2}}};
    };
    auto node = RaftNode::open(o, &sm);
    REQUIRE_MESSAGE(node.is_ok(), node.status().to_string());
    CHECK((*node)->installing());
    self.store(node->get());
    REQUIRE((*node)->start().is_ok());
    for (int i = 0; i < 1000 && ((*node)->status().applied < 50 || (*node)->installing()); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    CHECK((*node)->status().applied == 50);
    CHECK_FALSE((*node)->installing());
    (*node)->stop();
    std::lock_guard lock(mu);
    CHECK(fetched == std::vector<Index>(failures + 1, 50));
  };
  SUBCASE("it fetches the recorded install first, and never applies 1..3") { resume_with(0); }
  SUBCASE("a failed fetch is retried, and nothing of the log is applied in between") { resume_with(2); }
}

TEST_CASE("a recorded install is never lowered; saving a snapshot clears it") {
  Dir dir;
  auto st = RaftStorage::open(dir.path);
  REQUIRE(st.is_ok());
  REQUIRE((*st)->record_install(SnapshotMeta{50, 2, ConfState{{1}}}).is_ok());
  REQUIRE((*st)->record_install(SnapshotMeta{40, 2, ConfState{{1}}}).is_ok());  // a retry asking for less
  auto r = (*st)->recorded_install();
  REQUIRE(r.is_ok());
  REQUIRE(r->has_value());
  CHECK((*r)->index == 50);
  REQUIRE((*st)->record_install(SnapshotMeta{60, 3, ConfState{{1}}}).is_ok());
  CHECK((*(*st)->recorded_install())->index == 60);
  Ready rd;
  rd.snapshot = SnapshotMeta{60, 3, ConfState{{1}}};
  REQUIRE((*st)->save(rd).is_ok());
  CHECK_FALSE((*st)->recorded_install()->has_value());
}

TEST_CASE("finishing a recorded install at start-up keeps the log after it only if the log holds the installed entry") {
  // Entries 1..60 in term 1, committed to 55; the state machine installed
  // (and made durable) a leader's state at 50.
  Dir dir;
  std::vector<Entry> log;
  for (Index i = 1; i <= 60; ++i) log.push_back(entry(i, 1, "e" + std::to_string(i)));
  {
    auto st = RaftStorage::open(dir.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with(log, HardState{1, 0, 55})).is_ok());
  }
  SlowMachine sm(std::chrono::milliseconds(0));
  sm.skip(50);
  auto restart_with = [&](SnapshotMeta m) {
    {
      auto st = RaftStorage::open(dir.path);
      REQUIRE(st.is_ok());
      REQUIRE((*st)->record_install(m).is_ok());
    }
    for (int twice = 0; twice < 2; ++twice) {  // the second start finds everything recorded
      auto node = RaftNode::open(single_options(dir.path), &sm);
      REQUIRE_MESSAGE(node.is_ok(), node.status().to_string());
    }
    auto st = RaftStorage::open(dir.path);
    REQUIRE(st.is_ok());
    auto r = (*st)->load();
    REQUIRE(r.is_ok());
    CHECK(r->snapshot.index == 50);
    CHECK_FALSE((*st)->recorded_install()->has_value());
    return *r;
  };
  SUBCASE("same term at 50: entries 51..60 stay") {
    auto r = restart_with(SnapshotMeta{50, 1, ConfState{{1}}});
    REQUIRE(r.entries.size() == 10);
    CHECK(r.entries.front().index == 51);
  }
  SUBCASE("another term at 50 (this log's entry was never the leader's): the log is dropped, the term persisted") {
    auto r = restart_with(SnapshotMeta{50, 3, ConfState{{1}}});
    CHECK(r.entries.empty());
    CHECK(r.snapshot.term == 3);
    CHECK(r.hard_state.term == 3);
    CHECK(r.hard_state.commit <= 50);
  }
}

TEST_CASE("requests to a stopped node are answered 'stopped' at once, never left waiting") {
  Dir dir;
  SlowMachine sm(std::chrono::milliseconds(0));
  SlowReport rep;
  auto node = start_single(dir.path, &sm, 0, &rep);
  propose_until_applied(node.get(), "first");
  node->stop();
  std::promise<Status> proposed, read, transferred;
  node->propose("late", [&proposed](Status s, std::any) { proposed.set_value(s); });
  node->read_barrier([&read](Status s) { read.set_value(s); });
  node->transfer_leadership(2, [&transferred](Status s) { transferred.set_value(s); });
  for (auto* p : {&proposed, &read, &transferred}) {
    auto f = p->get_future();
    REQUIRE(f.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
    CHECK(f.get().code() == "stopped");
  }
  auto tc = node->term_conf_at(1);
  REQUIRE_FALSE(tc.is_ok());
  CHECK(tc.status().code() == "stopped");
}
