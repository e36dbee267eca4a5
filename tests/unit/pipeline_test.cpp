// The write pipeline: verify pool → batcher → committer, with bounded queues.
#include <doctest/doctest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>

#include "api/metrics.h"
#include "api/pipeline.h"
#include "api/replicated.h"
#include "tests/unit/fixture.h"

using namespace cl;
using namespace cl::test;

namespace {

// A committer that blocks until released, to fill queues deterministically.
class GatedCommitter : public api::BatchCommitter {
 public:
  explicit GatedCommitter(Ledger* l) : inner_(l) {}
  Result<std::vector<OpOutcome>> commit(std::span<const Envelope> ops, uint64_t time) override {
    gate_.wait();
    batches_.push_back(ops.size());
    return inner_.commit(ops, time);
  }
  uint64_t last_time() const override { return inner_.last_time(); }
  void open() { release_.set_value(); }
  std::vector<size_t> batches_;

 private:
  api::LocalCommitter inner_;
  std::promise<void> release_;
  std::shared_future<void> gate_ = release_.get_future().share();
};

struct Submitted {
  std::promise<std::pair<std::vector<OpOutcome>, Status>> p;
  std::future<std::pair<std::vector<OpOutcome>, Status>> f = p.get_future();
  api::Pipeline::Done done() {
    return [this](std::vector<OpOutcome> o, Status s) { p.set_value({std::move(o), s}); };
  }
};

uint64_t fixed_clock() { return 1'800'000'000'000; }

}  // namespace

TEST_CASE("pipeline commits verified ops and reports bad signatures without committing them") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  KeyPair alice = seed_key(0x21);
  WalletId w = make_id(1, 0x11);
  api::LocalCommitter committer(l.get());
  api::Metrics metrics;
  api::Pipeline p(&committer, fixed_clock, &metrics, api::PipelineOptions{});
  Envelope bad = f.issue(w, 5);
  bad.signatures[0].sig[0] ^= 1;
  Submitted s;
  REQUIRE(p.submit({f.open_wallet(w, alice), f.issue(w, 100), bad}, s.done()));
  auto [outcomes, status] = s.f.get();
  REQUIRE(status.is_ok());
  REQUIRE(outcomes.size() == 3);
  CHECK(outcomes[0].code == Code::kOk);
  CHECK(outcomes[1].code == Code::kOk);
  CHECK(outcomes[2].code == Code::kBadSignature);
  CHECK(l->head().size == 2);
  CHECK(balance(*l, w) == 100);
  CHECK(metrics.render(1).find("cityledger_ops_total{type=\"issue\",result=\"bad_signature\"} 1") != std::string::npos);
}

TEST_CASE("pipeline ledger time is the clock, forced strictly above the last batch") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  api::LocalCommitter committer(l.get());
  api::Pipeline p(&committer, [] { return uint64_t{5}; }, nullptr, api::PipelineOptions{});
  for (int i = 0; i < 3; ++i) {
    Submitted s;
    REQUIRE(p.submit({f.open_wallet(make_id(i, 0x11), seed_key(0x30 + i))}, s.done()));
    auto [o, st] = s.f.get();
    REQUIRE(o.at(0).code == Code::kOk);
    CHECK(o.at(0).receipt.time == static_cast<uint64_t>(5 + i));
  }
}

TEST_CASE("pipeline refuses ops beyond queue_ops_max and admits again once answered") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  GatedCommitter committer(l.get());
  api::PipelineOptions o;
  o.queue_ops_max = 3;
  api::Pipeline p(&committer, fixed_clock, nullptr, o);
  Submitted a, b;
  REQUIRE(p.submit({f.open_wallet(make_id(1, 0x11), seed_key(0x31)), f.open_wallet(make_id(2, 0x11), seed_key(0x32))},
                   a.done()));
  CHECK_FALSE(p.submit({f.issue(make_id(1, 0x11), 1), f.issue(make_id(2, 0x11), 1)}, [](auto, auto) { FAIL("called"); }));
  REQUIRE(p.submit({f.issue(make_id(1, 0x11), 1)}, b.done()));  // exactly at the limit
  CHECK(p.queued_ops() == 3);
  committer.open();
  CHECK(a.f.get().second.is_ok());
  CHECK(b.f.get().second.is_ok());
  CHECK(p.queued_ops() == 0);
  Submitted c;
  CHECK(p.submit({f.issue(make_id(2, 0x11), 1)}, c.done()));
  CHECK(c.f.get().first.at(0).code == Code::kOk);
}

// A committer that keeps each batch in flight until the test completes it
// (as Raft does until the batch is committed and applied).
class HeldCommitter : public api::BatchCommitter {
 public:
  explicit HeldCommitter(Ledger* l) : inner_(l) {}
  Result<std::vector<OpOutcome>> commit(std::span<const Envelope> ops, uint64_t time) override {
    return inner_.commit(ops, time);
  }
  void commit_async(std::vector<Envelope> ops, uint64_t time, CommitDone done) override {
    {
      std::lock_guard lock(mu_);
      sizes_.push_back(ops.size());
      if (!released_) {
        held_.push_back({std::move(ops), time, std::move(done)});
        return;
      }
    }
    done(inner_.commit(ops, time));
  }
  // Completes what is held and everything proposed from now on: lets the
  // pipeline's destructor finish after a failed REQUIRE.
  void release_all() {
    std::vector<Held> held;
    {
      std::lock_guard lock(mu_);
      released_ = true;
      held.swap(held_);
    }
    for (auto& h : held) h.done(inner_.commit(h.ops, h.time));
  }
  uint64_t last_time() const override { return inner_.last_time(); }
  std::vector<size_t> sizes() {
    std::lock_guard lock(mu_);
    return sizes_;
  }
  void complete_oldest() {
    Held h;
    {
      std::lock_guard lock(mu_);
      REQUIRE(!held_.empty());
      h = std::move(held_.front());
      held_.erase(held_.begin());
    }
    h.done(inner_.commit(h.ops, h.time));
  }

 private:
  struct Held {
    std::vector<Envelope> ops;
    uint64_t time = 0;
    CommitDone done;
  };
  api::LocalCommitter inner_;
  std::mutex mu_;
  std::vector<size_t> sizes_;
  std::vector<Held> held_;
  bool released_ = false;
};

// Declared after the pipeline: on the way out (also after a failed
// REQUIRE) releases the committer before the pipeline waits for its batches.
struct ReleaseOnExit {
  HeldCommitter& c;
  ~ReleaseOnExit() { c.release_all(); }
};

TEST_CASE("pipeline group commit: a lone op goes at once; ops arriving while a batch is in flight wait and go together") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  HeldCommitter committer(l.get());
  api::PipelineOptions o;
  o.batch_wait_us = 5'000'000;  // far longer than this test waits for anything
  api::Pipeline p(&committer, fixed_clock, nullptr, o);
  auto wait_for_batches = [&](size_t n) {
    for (int i = 0; i < 2000 && committer.sizes().size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return committer.sizes().size();
  };
  Submitted a, b, c;
  REQUIRE(p.submit({f.open_wallet(make_id(1, 0x11), seed_key(0x31))}, a.done()));
  // Nothing was in flight: proposed without waiting batch_wait_us.
  REQUIRE(wait_for_batches(1) == 1);
  REQUIRE(p.submit({f.open_wallet(make_id(2, 0x11), seed_key(0x32))}, b.done()));
  REQUIRE(p.submit({f.open_wallet(make_id(3, 0x11), seed_key(0x33))}, c.done()));
  // The first batch is still in flight: the next one waits to fill.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(committer.sizes().size() == 1);
  committer.complete_oldest();
  CHECK(a.f.get().first.at(0).code == Code::kOk);
  // The committer went idle: both waiting ops are proposed as one batch.
  REQUIRE(wait_for_batches(2) == 2);
  CHECK(committer.sizes() == std::vector<size_t>{1, 2});
  committer.complete_oldest();
  CHECK(b.f.get().first.at(0).code == Code::kOk);
  CHECK(c.f.get().first.at(0).code == Code::kOk);
}

TEST_CASE("pipeline with batch_wait_when_idle (replicated nodes): lone ops at low load go at once; under load a lone op waits batch_wait_us") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  HeldCommitter committer(l.get());
  api::PipelineOptions o;
  o.batch_wait_us = 2'000'000;
  o.batch_wait_when_idle = true;
  o.idle_wait_min_batch_ops = 4;
  api::Pipeline p(&committer, fixed_clock, nullptr, o);
  ReleaseOnExit release{committer};
  // Batches proposed within "ms" (at once: well under batch_wait_us).
  auto wait_for_batches = [&](size_t n, int ms = 10'000) {
    for (int i = 0; i < ms && committer.sizes().size() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return committer.sizes().size();
  };
  const int at_once = 1'000;
  uint8_t next = 1;
  auto lone_op = [&] {
    uint8_t n = next++;
    return std::vector<Envelope>{f.open_wallet(make_id(n, 0x11), seed_key(uint8_t(0x40 + n)))};
  };
  // Low load: a lone op on an idle committer is proposed without waiting.
  for (int i = 0; i < 3; ++i) {
    Submitted a;
    REQUIRE(p.submit(lone_op(), a.done()));
    REQUIRE(wait_for_batches(i + 1, at_once) == size_t(i + 1));
    committer.complete_oldest();
    CHECK(a.f.get().first.at(0).code == Code::kOk);
  }
  // Load: batches of 8 ops lift the recent batch size above 4 ...
  for (int i = 0; i < 3; ++i) {
    std::vector<Envelope> ops;
    for (int k = 0; k < 8; ++k) ops.push_back(lone_op()[0]);
    Submitted a;
    REQUIRE(p.submit(std::move(ops), a.done()));
    REQUIRE(wait_for_batches(4 + i, at_once) == size_t(4 + i));
    committer.complete_oldest();
    CHECK(a.f.get().first.size() == 8);
  }
  // ... and a lone op on the idle committer now waits for companions.
  Submitted w;
  REQUIRE(p.submit(lone_op(), w.done()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(committer.sizes().size() == 6);  // still waiting
  REQUIRE(wait_for_batches(7) == 7);
  CHECK(committer.sizes().back() == 1);
  committer.complete_oldest();
  CHECK(w.f.get().first.at(0).code == Code::kOk);
  // That lone batch pulled the recent size back under 4 (4.9 -> 3.9):
  // lone ops go at once again.
  for (int i = 0; i < 3; ++i) {
    Submitted a;
    size_t before = committer.sizes().size();
    REQUIRE(p.submit(lone_op(), a.done()));
    REQUIRE(wait_for_batches(before + 1, at_once) == before + 1);
    committer.complete_oldest();
    CHECK(a.f.get().first.at(0).code == Code::kOk);
  }
}

TEST_CASE("pipeline stop answers every admitted op before returning") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  api::LocalCommitter committer(l.get());
  api::Pipeline p(&committer, fixed_clock, nullptr, api::PipelineOptions{});
  std::vector<std::unique_ptr<Submitted>> subs;
  for (int i = 0; i < 200; ++i) {
    subs.push_back(std::make_unique<Submitted>());
    REQUIRE(p.submit({f.open_wallet(make_id(i, 0x12), seed_key(0x40))}, subs.back()->done()));
  }
  p.stop();
  for (auto& s : subs) {
    REQUIRE(s->f.wait_for(std::chrono::seconds(0)) == std::future_status::ready);
    CHECK(s->f.get().first.at(0).code == Code::kOk);
  }
  CHECK(l->head().size == 200);
  CHECK_FALSE(p.submit({f.open_wallet(make_id(999, 0x12), seed_key(0x40))}, [](auto, auto) {}));
}

TEST_CASE("pipeline stop while other threads submit: every admitted op is answered before stop returns") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  api::LocalCommitter committer(l.get());
  api::Pipeline p(&committer, fixed_clock, nullptr, api::PipelineOptions{});
  // Pre-signed: the submitting threads do nothing but submit.
  constexpr int kThreads = 4, kPerThread = 300;
  std::vector<std::vector<Envelope>> ops(kThreads);
  for (int t = 0; t < kThreads; ++t)
    for (int i = 0; i < kPerThread; ++i) ops[t].push_back(f.open_wallet(make_id(t * 1000 + i, 0x14), seed_key(0x41)));
  std::atomic<int> admitted{0}, answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::vector<Envelope> req{ops[t][i]};
        if (p.submit(req, [&](std::vector<OpOutcome>, Status) { answered.fetch_add(1); })) admitted.fetch_add(1);
      }
    });
  while (admitted.load() < 50) std::this_thread::yield();
  p.stop();
  int answered_at_stop = answered.load();
  for (auto& t : threads) t.join();
  // Every submit that returned true (some may return after stop() began)
  // was answered before stop() returned, and committed.
  CHECK(answered_at_stop == admitted.load());
  CHECK(answered.load() == admitted.load());
  CHECK(l->head().size == static_cast<uint64_t>(admitted.load()));
  CHECK(admitted.load() < kThreads * kPerThread + 1);
}

TEST_CASE("pipeline answers 'not committed' for every op when the committer fails") {
  class Failing : public api::BatchCommitter {
   public:
    Result<std::vector<OpOutcome>> commit(std::span<const Envelope>, uint64_t) override {
      return Status::error("io", "disk on fire");
    }
    uint64_t last_time() const override { return 0; }
  } committer;
  OpFactory f;
  api::Pipeline p(&committer, fixed_clock, nullptr, api::PipelineOptions{});
  Submitted s;
  REQUIRE(p.submit({f.open_wallet(make_id(1, 0x11), seed_key(0x31))}, s.done()));
  auto [o, st] = s.f.get();
  CHECK_FALSE(st.is_ok());
  CHECK(st.code() == "io");
}

TEST_CASE("replicated apply reuses the proposer's decoded envelopes only for the exact same entry bytes") {
  TempDir dir_a, dir_b;
  auto a = open_ledger(dir_a.path());
  auto b = open_ledger(dir_b.path());
  OpFactory f;
  WalletId w1 = make_id(1, 0x11), w2 = make_id(2, 0x11);
  std::vector<Envelope> first = {f.open_wallet(w1, seed_key(0x31)), f.issue(w1, 70)};
  std::vector<Envelope> other = {f.open_wallet(w2, seed_key(0x32)), f.issue(w2, 5)};
  api::LedgerStateMachine leader(a.get()), follower(b.get());

  // The leader remembers "other" too: an entry holding "first" must not pick it.
  leader.remember(1000, other);
  leader.remember(1000, first);
  raft::Entry e{.term = 1, .index = 1, .type = raft::EntryType::kNormal, .data = api::encode_batch(1000, first)};
  auto from_cache = std::any_cast<std::vector<OpOutcome>>(leader.apply(e));
  auto decoded = std::any_cast<std::vector<OpOutcome>>(follower.apply(e));
  CHECK(leader.remembered() == 0);  // used, and the older unmatched batch dropped
  REQUIRE(from_cache.size() == 2);
  REQUIRE(decoded.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(from_cache[i].code == decoded[i].code);
    CHECK(from_cache[i].receipt.leaf_hash == decoded[i].receipt.leaf_hash);
  }
  CHECK(a->head().root == b->head().root);
  CHECK(balance(*a, w1) == 70);
  CHECK_FALSE(a->wallet(w2)->has_value());

  // Nothing remembered matches: the entry is decoded.
  leader.remember(2000, first);
  raft::Entry e2{.term = 1, .index = 2, .type = raft::EntryType::kNormal, .data = api::encode_batch(2000, other)};
  leader.apply(e2);
  follower.apply(e2);
  CHECK(balance(*a, w2) == 5);
  CHECK(a->head().root == b->head().root);
  CHECK(leader.remembered() == 1);

  // Bounded: never more than kRememberMax batches kept.
  for (int i = 0; i < 200; ++i) leader.remember(3000 + i, first);
  CHECK(leader.remembered() == api::LedgerStateMachine::kRememberMax);
}

TEST_CASE("replicated batch encoding round-trips every op type and refuses damaged bytes") {
  OpFactory f;
  KeyPair alice = seed_key(0x21), agency = seed_key(0x22);
  WalletId a = make_id(1, 0x11), b = make_id(2, 0x11);
  std::vector<Envelope> ops = {f.open_wallet(a, alice, WalletKind::kTransit, 5000), f.issue(a, 10),
                               f.redeem(a, alice, 1), f.transfer(a, alice, b, 2), f.fare(a, alice, b, 3, "gate-7 ✓"),
                               f.payout(a, agency, b, 4, "birth", "ref-1"), f.freeze(a), f.freeze(a, false),
                               f.rotate_key(a, agency)};
  OpBody memo_body = ops[3].body;
  memo_body.memo = "rent";
  memo_body.expires_at = 1'900'000'000'000;
  ops.push_back(sign_envelope(memo_body, {&alice}));
  std::string data = api::encode_batch(42, ops);
  // The pipeline sizes batches with encoded_op_bytes: it must be exact.
  size_t expected = api::kBatchHeaderBytes;
  for (const auto& op : ops) expected += api::encoded_op_bytes(op);
  CHECK(data.size() == expected);
  CHECK(api::encoded_op_bytes(ops[0]) == api::encode_batch(42, std::span(ops).first(1)).size() - api::kBatchHeaderBytes);
  auto decoded = api::decode_batch(data);
  REQUIRE(decoded.has_value());
  CHECK(decoded->time == 42);
  REQUIRE(decoded->ops.size() == ops.size());
  for (size_t i = 0; i < ops.size(); ++i) {
    // What a replica gets equals what decoding the canonical JSON gives.
    Rejection r;
    auto from_json = decode_envelope(ops[i].jcs, &r);
    REQUIRE(from_json.has_value());
    const Envelope& got = decoded->ops[i];
    CHECK(jcs(body_to_json(got.body)) == jcs(body_to_json(from_json->body)));
    CHECK(got.body.kind == from_json->body.kind);
    CHECK(got.jcs == from_json->jcs);
    CHECK(got.body_jcs == from_json->body_jcs);
    CHECK(got.body_hash == from_json->body_hash);
    REQUIRE(got.signatures.size() == from_json->signatures.size());
    for (size_t s = 0; s < got.signatures.size(); ++s) {
      CHECK(got.signatures[s].key == from_json->signatures[s].key);
      CHECK(got.signatures[s].sig == from_json->signatures[s].sig);
    }
  }
  // Every truncation, and trailing bytes, are refused rather than misread.
  for (size_t len = 0; len < data.size(); len += 7) CHECK_FALSE(api::decode_batch(data.substr(0, len)).has_value());
  CHECK_FALSE(api::decode_batch(data + "x").has_value());
  // An op count beyond the apply limit is refused before reading further.
  std::string huge = data;
  huge[8] = huge[9] = huge[10] = huge[11] = '\xff';
  CHECK_FALSE(api::decode_batch(huge).has_value());
}

// --- Checkpointer ------------------------------------------------------------

#include <fstream>

#include "api/checkpointer.h"

TEST_CASE("checkpoints signed beyond a restarted replica's journal are kept, then served once it re-applies that far") {
  // A replica's ledger reopens at its last flush; the Raft log re-applies the
  // rest.  Checkpoints it had signed meanwhile must not be thrown away.
  TempDir dir;
  OpFactory f;
  std::vector<std::vector<Envelope>> batches;
  for (int i = 0; i < 10; ++i) batches.push_back({f.open_wallet(make_id(i, 0x15), seed_key(0x42))});
  auto apply_range = [&](Ledger& l, int from, int to) {
    for (int i = from; i < to; ++i) REQUIRE(l.apply(batches[i], 1000 + i).is_ok());
  };
  KeyPair node_key = seed_key(0x43);
  // The full journal (10 entries) and a checkpoint of it, as written before the crash.
  auto full = open_ledger(dir.sub("full"));
  apply_range(*full, 0, 10);
  std::string file = dir.sub("checkpoints.ndjson");
  {
    api::Checkpointer signer(test_genesis(), 1, node_key, full.get(), [] { return std::vector<api::PeerConfig>{}; },
                             dir.sub("unused.ndjson"), api::CheckpointerOptions{});
    auto at10 = signer.sign_at(10);
    REQUIRE(at10.is_ok());
    auto at4 = signer.sign_at(4);
    REQUIRE(at4.is_ok());
    Checkpoint wrong = *at10;
    wrong.tree_size = 9;  // a root this journal does not have at 9
    std::ofstream out(file);
    out << checkpoint_to_json(*at4).dump() << "\n"
        << checkpoint_to_json(wrong).dump() << "\n"
        << checkpoint_to_json(*at10).dump() << "\n";
  }
  // The restarted replica: only 6 of the 10 entries survived.
  auto replica = open_ledger(dir.sub("replica"));
  apply_range(*replica, 0, 6);
  api::CheckpointerOptions o;
  o.interval_ms = 60'000;  // no checkpoints of its own during the test
  o.entries = 1'000'000;
  api::Checkpointer cps(test_genesis(), 1, node_key, replica.get(), [] { return std::vector<api::PeerConfig>{}; }, file, o);
  CHECK(cps.at(4).has_value());
  CHECK_FALSE(cps.at(10).has_value());  // not served while the journal is shorter
  cps.start();
  apply_range(*replica, 6, 10);  // the Raft log re-applies the rest
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!cps.at(10) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  cps.stop();
  REQUIRE(cps.at(10).has_value());
  CHECK(cps.at(10)->root == full->head().root);
  CHECK_FALSE(cps.at(9).has_value());  // its root does not match: dropped
  CHECK(cps.at(4).has_value());
}

TEST_CASE("pipeline cuts batches to the committer's size bound (a Raft entry's), and one op always makes a batch") {
  TempDir dir;
  auto l = open_ledger(dir.path());
  OpFactory f;
  // Sized like the Raft committer's bound, scaled down: 3.5 ops per batch.
  class Bounded : public GatedCommitter {
   public:
    Bounded(Ledger* l, size_t max) : GatedCommitter(l), max_(max) {}
    size_t op_bytes(const Envelope& e) const override { return e.jcs.size(); }
    size_t batch_bytes_max() const override { return max_; }
    size_t max_;
  };
  const size_t op = f.open_wallet(make_id(999, 0x11), seed_key(0x40)).jcs.size();
  Bounded committer(l.get(), op * 7 / 2);
  api::PipelineOptions o;
  o.batch_wait_us = 0;
  api::Pipeline p(&committer, fixed_clock, nullptr, o);
  std::vector<Envelope> ops;
  for (uint64_t i = 0; i < 10; ++i) ops.push_back(f.open_wallet(make_id(i + 1, 0x11), seed_key(0x41 + i)));
  for (const auto& e : ops) REQUIRE(e.jcs.size() == op);
  Submitted a;
  // The first batch blocks the committer; the rest queue up behind it.
  REQUIRE(p.submit(ops, a.done()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  committer.open();
  auto [outcomes, status] = a.f.get();
  REQUIRE(status.is_ok());
  for (const auto& out : outcomes) CHECK(out.code == Code::kOk);
  size_t total = 0, largest = 0;
  for (size_t n : committer.batches_) {
    total += n;
    largest = std::max(largest, n);
  }
  CHECK(total == 10);
  CHECK(largest == 3);  // never 4: that would be 4 × op > 3.5 × op

  // An op larger than the whole bound still goes, alone.
  TempDir dir2;
  auto l2 = open_ledger(dir2.path());
  Bounded tiny(l2.get(), op / 2);
  api::Pipeline p2(&tiny, fixed_clock, nullptr, o);
  Submitted b;
  tiny.open();
  REQUIRE(p2.submit({f.open_wallet(make_id(1, 0x12), seed_key(0x61)), f.open_wallet(make_id(2, 0x12), seed_key(0x62))},
                    b.done()));
  auto [outcomes2, status2] = b.f.get();
  REQUIRE(status2.is_ok());
  CHECK(outcomes2.at(0).code == Code::kOk);
  CHECK(outcomes2.at(1).code == Code::kOk);
  CHECK(tiny.batches_ == std::vector<size_t>{1, 1});
}

TEST_CASE("the Raft committer bounds a batch by the core's max_entry_bytes, as encode_batch sizes it") {
  api::RaftCommitter c(nullptr, nullptr);
  CHECK(c.batch_bytes_max() + api::kBatchHeaderBytes == raft::Config().max_entry_bytes);
  OpFactory f;
  Envelope e = f.open_wallet(make_id(1, 0x11), seed_key(0x31));
  CHECK(c.op_bytes(e) == api::encoded_op_bytes(e));
  // 8,192 open_wallet ops (two signatures each) -- the most a batch may
  // hold -- do not fit one entry: the pipeline must cut such a batch.
  CHECK(8192 * c.op_bytes(e) > c.batch_bytes_max());
}
