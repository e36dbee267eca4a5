// The ledger state machine (DESIGN §4–§5, §8–§9): every op type's effect,
// every rejection code apply can return (and that a rejection changes
// nothing), idempotency, the journal and its reads, the Merkle tree and
// proofs, ledger time, persistence, corruption detection and replay.
#include <rocksdb/db.h>

#include <functional>
#include <map>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ledger/merkle.h"
#include "ledger/replay.h"
#include "ledger/store_format.h"
#include "tests/unit/fixture.h"

namespace cl::test {
namespace {

// ---------------------------------------------------------------- helpers --

std::string name(Code c) { return std::string(code_name(c)); }

LedgerOptions unsynced() {
  LedgerOptions o;
  o.sync = false;
  return o;
}

// Applies one batch at an explicit ledger time; fails the test on a Status error.
std::vector<OpOutcome> apply_at(Ledger& l, std::vector<Envelope> ops, uint64_t time) {
  auto r = l.apply(ops, time);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  return *r;
}

// The journal's canonical bytes, all of them.
std::vector<std::string> journal_bytes(const Ledger& l) {
  std::vector<std::string> out;
  auto page = l.journal(0, kReadEntriesMax);
  REQUIRE(page.is_ok());
  for (const auto& e : *page) out.push_back(e.bytes);
  return out;
}

std::string wallet_bytes(const Ledger& l, const WalletId& w) {
  auto s = l.wallet(w);
  REQUIRE(s.is_ok());
  return s->has_value() ? store::encode_wallet(**s) : std::string("<none>");
}

// RFC 9162 §2.1.1 MTH computed directly from leaf hashes, independent of
// the stored nodes.
Hash naive_mth(std::span<const Hash> leaves) {
  if (leaves.empty()) return merkle::empty_root();
  if (leaves.size() == 1) return leaves[0];
  size_t k = 1;
  while (k * 2 < leaves.size()) k *= 2;
  return merkle::node_hash(naive_mth(leaves.first(k)), naive_mth(leaves.subspan(k)));
}

// A ledger with a cast of wallets.  Wallets are not opened until open_all().
struct World {
  TempDir dir;
  std::unique_ptr<Ledger> l;
  OpFactory f;
  KeyPair alice_key = seed_key(0x11);
  KeyPair bob_key = seed_key(0x12);
  KeyPair shop_key = seed_key(0x13);
  KeyPair metro_key = seed_key(0x14);
  KeyPair agency_key = seed_key(0x15);
  KeyPair agency2_key = seed_key(0x16);
  KeyPair capped_key = seed_key(0x17);
  KeyPair stranger_key = seed_key(0x18);  // owns no wallet
  WalletId alice = make_id(1, 0xA0);
  WalletId bob = make_id(2, 0xA0);
  WalletId shop = make_id(3, 0xA0);
  WalletId metro = make_id(4, 0xA0);
  WalletId agency = make_id(5, 0xA0);
  WalletId agency2 = make_id(6, 0xA0);
  WalletId capped = make_id(7, 0xA0);   // personal, max_balance 1000
  WalletId missing = make_id(99, 0xA0);  // never opened
  static constexpr uint64_t kCap = 1000;

  World() : l(open_ledger(dir.sub("db"))) {}

  std::string path() const { return dir.sub("db"); }

  void open_all() {
    auto out = apply(*l, {f.open_wallet(alice, alice_key), f.open_wallet(bob, bob_key),
                          f.open_wallet(shop, shop_key, WalletKind::kMerchant),
                          f.open_wallet(metro, metro_key, WalletKind::kTransit),
                          f.open_wallet(agency, agency_key, WalletKind::kAgency),
                          f.open_wallet(agency2, agency2_key, WalletKind::kAgency),
                          f.open_wallet(capped, capped_key, WalletKind::kPersonal, kCap)});
    for (const auto& o : out) REQUIRE_MESSAGE(o.code == Code::kOk, o.detail);
  }

  // Opens every wallet and gives alice 10'000 and each agency 100'000.
  void fund() {
    open_all();
    for (auto& op : {f.issue(alice, 10'000), f.issue(agency, 100'000), f.issue(agency2, 100'000)})
      REQUIRE(apply_one(*l, op).code == Code::kOk);
  }

  std::vector<WalletId> all() const { return {alice, bob, shop, metro, agency, agency2, capped, missing}; }

  // Asserts the listed balances, the supply, and Σ balances = outstanding.
  void expect_books(uint64_t issued, uint64_t redeemed,
                    std::initializer_list<std::pair<WalletId, uint64_t>> balances) const {
    for (const auto& [w, amount] : balances) CHECK(balance(*l, w) == amount);
    LedgerHead h = l->head();
    CHECK(h.supply.issued == issued);
    CHECK(h.supply.redeemed == redeemed);
    CHECK(h.supply.outstanding() == issued - redeemed);
    CHECK(sum_balances(*l, all()) == h.supply.outstanding());
  }
};

// Everything a rejected op must leave untouched.
struct Snapshot {
  uint64_t size = 0;
  Hash root{};
  uint64_t issued = 0;
  uint64_t redeemed = 0;
  std::vector<std::string> wallets;
  std::vector<std::string> journal;
  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const World& w) {
  Snapshot s;
  LedgerHead h = w.l->head();
  s.size = h.size;
  s.root = h.root;
  s.issued = h.supply.issued;
  s.redeemed = h.supply.redeemed;
  for (const auto& id : w.all()) s.wallets.push_back(wallet_bytes(*w.l, id));
  s.journal = journal_bytes(*w.l);
  return s;
}

// Applies "op" alone and asserts it is rejected with "code", a detail, no
// receipt, and nothing changed.
void expect_rejected(World& w, const Envelope& op, Code code) {
  Snapshot before = snapshot(w);
  bool id_known = w.l->receipt(op.body.id)->has_value();
  OpOutcome out = apply_one(*w.l, op);
  CHECK_MESSAGE(name(out.code) == name(code), out.detail);
  CHECK_FALSE(out.detail.empty());
  CHECK(snapshot(w) == before);
  if (!id_known) CHECK_FALSE(w.l->receipt(op.body.id)->has_value());
}


// The store opened raw (both column families), keys routed to their family.
struct RawDb {
  rocksdb::DB* db = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> families;
  rocksdb::ColumnFamilyHandle* family(std::string_view key) const {
    return families[store::family_index(key)];
  }
};

void with_raw_db(const std::string& dir, const std::function<void(RawDb&)>& fn) {
  rocksdb::DBOptions o;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                     {std::string(store::kJournalFamily), {}},
                                                     {std::string(store::kTreeFamily), {}}};
  RawDb raw;
  auto s = rocksdb::DB::Open(o, dir, cfs, &raw.families, &raw.db);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  fn(raw);
  for (auto* f : raw.families) REQUIRE(raw.db->DestroyColumnFamilyHandle(f).ok());
  REQUIRE(raw.db->Close().ok());
  delete raw.db;
}

std::string raw_get(RawDb& db, std::string_view key) {
  std::string v;
  auto s = db.db->Get(rocksdb::ReadOptions(), db.family(key), key, &v);
  REQUIRE_MESSAGE(s.ok(), s.ToString());
  return v;
}

void raw_put(RawDb& db, std::string_view key, std::string_view value) {
  REQUIRE(db.db->Put(rocksdb::WriteOptions(), db.family(key), key, value).ok());
}

void raw_delete(RawDb& db, std::string_view key) {
  REQUIRE(db.db->Delete(rocksdb::WriteOptions(), db.family(key), key).ok());
}

// Opening "dir" must fail with "corruption" and a message containing "words".
void expect_open_corruption(const std::string& dir, const std::string& words) {
  auto l = Ledger::open(dir, test_genesis(), unsynced());
  REQUIRE_FALSE(l.is_ok());
  CHECK(l.status().code() == "corruption");
  CHECK_MESSAGE(l.status().message().find(words) != std::string::npos, l.status().message());
}

// Closes "w" after writing a store of 5 + extra entries: open alice and bob,
// issue 500 to alice, transfer 200 to bob, bob redeems 50, then "extra"
// issues of 1 to alice in one last batch (every batch accepts ops).
void populate(World& w, uint64_t extra = 0) {
  REQUIRE(apply(*w.l, {w.f.open_wallet(w.alice, w.alice_key), w.f.open_wallet(w.bob, w.bob_key)})[1].code ==
          Code::kOk);
  REQUIRE(apply(*w.l, {w.f.issue(w.alice, 500), w.f.transfer(w.alice, w.alice_key, w.bob, 200)})[1].code ==
          Code::kOk);
  REQUIRE(apply_one(*w.l, w.f.redeem(w.bob, w.bob_key, 50)).code == Code::kOk);
  std::vector<Envelope> ops;
  for (uint64_t i = 0; i < extra; ++i) ops.push_back(w.f.issue(w.alice, 1));
  if (!ops.empty())
    for (const auto& o : apply(*w.l, ops)) REQUIRE(o.code == Code::kOk);
  REQUIRE(w.l->head().size == 5 + extra);
  w.l.reset();
}

// Replaces the first "from" in journal entry "index" by "to".
void edit_entry(RawDb& db, uint64_t index, const std::string& from, const std::string& to) {
  std::string e = raw_get(db, store::journal_key(index));
  auto pos = e.find(from);
  REQUIRE(pos != std::string::npos);
  e.replace(pos, from.size(), to);
  raw_put(db, store::journal_key(index), e);
}

// =================================================== success: every op type --

TEST_CASE("open_wallet creates an empty active wallet of each kind, with an optional balance limit") {
  World w;
  struct Case {
    WalletId id;
    const KeyPair* key;
    WalletKind kind;
    std::optional<uint64_t> max;
  };
  const std::vector<Case> cases = {{w.alice, &w.alice_key, WalletKind::kPersonal, std::nullopt},
                                   {w.shop, &w.shop_key, WalletKind::kMerchant, std::nullopt},
                                   {w.metro, &w.metro_key, WalletKind::kTransit, std::nullopt},
                                   {w.agency, &w.agency_key, WalletKind::kAgency, std::nullopt},
                                   {w.capped, &w.capped_key, WalletKind::kPersonal, 1000}};
  uint64_t index = 0;
  for (const auto& c : cases) {
    OpOutcome out = apply_one(*w.l, w.f.open_wallet(c.id, *c.key, c.kind, c.max));
    REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
    CHECK(out.receipt.index == index++);
    CHECK_FALSE(out.receipt.replay);
    auto s = w.l->wallet(c.id);
    REQUIRE(s.is_ok());
    REQUIRE(s->has_value());
    CHECK((*s)->kind == c.kind);
    CHECK((*s)->status == WalletStatus::kActive);
    CHECK((*s)->key == c.key->public_key);
    CHECK((*s)->balance == 0);
    CHECK((*s)->max_balance == c.max);
    w.expect_books(0, 0, {{c.id, 0}});
  }
  CHECK(w.l->head().size == cases.size());
}

TEST_CASE("issue mints into a wallet and raises issued and outstanding supply") {
  World w;
  w.open_all();
  OpOutcome out = apply_one(*w.l, w.f.issue(w.alice, 1234));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(1234, 0, {{w.alice, 1234}, {w.bob, 0}});
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 6)).code == Code::kOk);
  w.expect_books(1240, 0, {{w.alice, 1240}});
}

TEST_CASE("redeem burns from a wallet and raises redeemed supply") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 1000)).code == Code::kOk);
  w.expect_books(1000, 0, {{w.alice, 1000}});
  OpOutcome out = apply_one(*w.l, w.f.redeem(w.alice, w.alice_key, 300));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(1000, 300, {{w.alice, 700}});
  REQUIRE(apply_one(*w.l, w.f.redeem(w.alice, w.alice_key, 700)).code == Code::kOk);
  w.expect_books(1000, 1000, {{w.alice, 0}});
}

TEST_CASE("transfer moves money between wallets and leaves supply unchanged") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 1000)).code == Code::kOk);
  w.expect_books(1000, 0, {{w.alice, 1000}, {w.bob, 0}});
  OpOutcome out = apply_one(*w.l, w.f.transfer(w.alice, w.alice_key, w.bob, 250));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(1000, 0, {{w.alice, 750}, {w.bob, 250}});
  // The whole balance can be moved.
  REQUIRE(apply_one(*w.l, w.f.transfer(w.alice, w.alice_key, w.shop, 750)).code == Code::kOk);
  w.expect_books(1000, 0, {{w.alice, 0}, {w.bob, 250}, {w.shop, 750}});
}

TEST_CASE("transfer with a memo is accepted and the memo is journaled") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 1000)).code == Code::kOk);
  OpBody b = w.f.body(OpType::kTransfer);
  b.from = w.alice;
  b.to = w.shop;
  b.amount = 399;
  b.memo = "за кофе";
  OpOutcome out = apply_one(*w.l, sign_envelope(b, {&w.alice_key}));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(1000, 0, {{w.alice, 601}, {w.shop, 399}});
  auto page = w.l->journal(out.receipt.index, 1);
  REQUIRE(page.is_ok());
  REQUIRE(page->size() == 1);
  CHECK((*page)[0].bytes.find("\"memo\":\"за кофе\"") != std::string::npos);
}

TEST_CASE("fare moves money from a rider to a transit wallet") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 100)).code == Code::kOk);
  w.expect_books(100, 0, {{w.alice, 100}, {w.metro, 0}});
  OpOutcome out = apply_one(*w.l, w.f.fare(w.alice, w.alice_key, w.metro, 62));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(100, 0, {{w.alice, 38}, {w.metro, 62}});
}

TEST_CASE("payout moves money from an agency to a citizen") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.agency, 50'000)).code == Code::kOk);
  w.expect_books(50'000, 0, {{w.agency, 50'000}, {w.bob, 0}});
  OpOutcome out = apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 20'000, "birth-benefit", "case-1"));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  w.expect_books(50'000, 0, {{w.agency, 30'000}, {w.bob, 20'000}});
}

TEST_CASE("freeze and unfreeze switch a wallet's status and keep its balance") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 500)).code == Code::kOk);
  OpOutcome out = apply_one(*w.l, w.f.freeze(w.alice));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  CHECK((*w.l->wallet(w.alice))->status == WalletStatus::kFrozen);
  w.expect_books(500, 0, {{w.alice, 500}});
  out = apply_one(*w.l, w.f.freeze(w.alice, /*frozen=*/false));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  CHECK((*w.l->wallet(w.alice))->status == WalletStatus::kActive);
  w.expect_books(500, 0, {{w.alice, 500}});
  // Unfrozen, it can spend again.
  CHECK(apply_one(*w.l, w.f.transfer(w.alice, w.alice_key, w.bob, 100)).code == Code::kOk);
  w.expect_books(500, 0, {{w.alice, 400}, {w.bob, 100}});
}

TEST_CASE("rotate_key replaces the key: the old key can no longer spend, the new key can") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 500)).code == Code::kOk);
  KeyPair new_key = seed_key(0x21);
  OpOutcome out = apply_one(*w.l, w.f.rotate_key(w.alice, new_key));
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  CHECK((*w.l->wallet(w.alice))->key == new_key.public_key);
  w.expect_books(500, 0, {{w.alice, 500}});

  expect_rejected(w, w.f.transfer(w.alice, w.alice_key, w.bob, 100), Code::kNotAuthorized);
  expect_rejected(w, w.f.redeem(w.alice, w.alice_key, 100), Code::kNotAuthorized);
  w.expect_books(500, 0, {{w.alice, 500}, {w.bob, 0}});

  CHECK(apply_one(*w.l, w.f.transfer(w.alice, new_key, w.bob, 100)).code == Code::kOk);
  w.expect_books(500, 0, {{w.alice, 400}, {w.bob, 100}});
  CHECK(apply_one(*w.l, w.f.redeem(w.alice, new_key, 100)).code == Code::kOk);
  w.expect_books(500, 100, {{w.alice, 300}});
}

// ========================================================== rejections ==

TEST_CASE("an op for another chain is rejected with wrong_chain") {
  World w;
  w.fund();
  OpFactory other("other-chain", 0x0C);
  expect_rejected(w, other.issue(w.alice, 10), Code::kWrongChain);
  expect_rejected(w, other.transfer(w.alice, w.alice_key, w.bob, 10), Code::kWrongChain);
  expect_rejected(w, other.open_wallet(make_id(50, 0xA0), seed_key(0x31)), Code::kWrongChain);
  // wrong_chain comes before idempotency: even an id this chain accepted.
  OpFactory same_ids("other-chain");  // same id tag and counter as w.f
  expect_rejected(w, same_ids.open_wallet(w.alice, w.alice_key), Code::kWrongChain);
  w.expect_books(200'000 + 10'000, 0, {{w.alice, 10'000}});
}

TEST_CASE("ops naming a wallet that does not exist are rejected with unknown_wallet") {
  World w;
  w.fund();
  KeyPair& stranger = w.stranger_key;
  SUBCASE("issue to") { expect_rejected(w, w.f.issue(w.missing, 10), Code::kUnknownWallet); }
  SUBCASE("redeem from") { expect_rejected(w, w.f.redeem(w.missing, stranger, 10), Code::kUnknownWallet); }
  SUBCASE("transfer from") {
    expect_rejected(w, w.f.transfer(w.missing, stranger, w.bob, 10), Code::kUnknownWallet);
  }
  SUBCASE("transfer to") {
    expect_rejected(w, w.f.transfer(w.alice, w.alice_key, w.missing, 10), Code::kUnknownWallet);
  }
  SUBCASE("fare from") { expect_rejected(w, w.f.fare(w.missing, stranger, w.metro, 10), Code::kUnknownWallet); }
  SUBCASE("fare to") { expect_rejected(w, w.f.fare(w.alice, w.alice_key, w.missing, 10), Code::kUnknownWallet); }
  SUBCASE("payout from") {
    expect_rejected(w, w.f.payout(w.missing, stranger, w.bob, 10, "p", "r"), Code::kUnknownWallet);
  }
  SUBCASE("payout to") {
    expect_rejected(w, w.f.payout(w.agency, w.agency_key, w.missing, 10, "p", "r"), Code::kUnknownWallet);
  }
  SUBCASE("freeze") { expect_rejected(w, w.f.freeze(w.missing), Code::kUnknownWallet); }
  SUBCASE("unfreeze") { expect_rejected(w, w.f.freeze(w.missing, false), Code::kUnknownWallet); }
  SUBCASE("rotate_key") { expect_rejected(w, w.f.rotate_key(w.missing, stranger), Code::kUnknownWallet); }
  w.expect_books(210'000, 0, {{w.alice, 10'000}, {w.bob, 0}});
}

TEST_CASE("opening a wallet id that exists is rejected with wallet_exists, also within one batch") {
  World w;
  w.fund();
  expect_rejected(w, w.f.open_wallet(w.alice, w.alice_key), Code::kWalletExists);
  expect_rejected(w, w.f.open_wallet(w.alice, seed_key(0x31), WalletKind::kAgency), Code::kWalletExists);
  CHECK((*w.l->wallet(w.alice))->kind == WalletKind::kPersonal);
  CHECK((*w.l->wallet(w.alice))->key == w.alice_key.public_key);

  WalletId fresh = make_id(60, 0xA0);
  auto out = apply(*w.l, {w.f.open_wallet(fresh, seed_key(0x32)), w.f.open_wallet(fresh, seed_key(0x33))});
  CHECK(out[0].code == Code::kOk);
  CHECK(name(out[1].code) == name(Code::kWalletExists));
  CHECK((*w.l->wallet(fresh))->key == seed_key(0x32).public_key);
  w.expect_books(210'000, 0, {{w.alice, 10'000}, {fresh, 0}});
}

TEST_CASE("a frozen wallet can neither send nor receive: wallet_frozen") {
  World w;
  w.fund();
  REQUIRE(apply_one(*w.l, w.f.issue(w.bob, 1000)).code == Code::kOk);
  REQUIRE(apply(*w.l, {w.f.freeze(w.alice), w.f.freeze(w.metro)})[1].code == Code::kOk);
  // Built before unfreezing: the same envelopes are accepted afterwards.
  Envelope send = w.f.transfer(w.alice, w.alice_key, w.bob, 10);
  Envelope receive = w.f.transfer(w.bob, w.bob_key, w.alice, 10);
  Envelope issue = w.f.issue(w.alice, 10);
  Envelope redeem = w.f.redeem(w.alice, w.alice_key, 10);
  Envelope fare_from = w.f.fare(w.alice, w.alice_key, w.metro, 10);
  Envelope fare_to = w.f.fare(w.bob, w.bob_key, w.metro, 10);
  Envelope payout_to = w.f.payout(w.agency, w.agency_key, w.alice, 10, "p", "frozen-1");
  for (const Envelope* op : {&send, &receive, &issue, &redeem, &fare_from, &fare_to, &payout_to}) {
    CAPTURE(op_type_name(op->body.type));
    expect_rejected(w, *op, Code::kWalletFrozen);
  }
  w.expect_books(211'000, 0, {{w.alice, 10'000}, {w.bob, 1000}, {w.metro, 0}});

  REQUIRE(apply(*w.l, {w.f.freeze(w.alice, false), w.f.freeze(w.metro, false)})[1].code == Code::kOk);
  auto out = apply(*w.l, {send, receive, issue, redeem, fare_from, fare_to, payout_to});
  for (const auto& o : out) CHECK_MESSAGE(o.code == Code::kOk, o.detail);
  // alice: 10'000 −10 +10 +10 −10 −10 +10; bob: 1000 +10 −10 −10; metro +20.
  w.expect_books(211'010, 10, {{w.alice, 10'000}, {w.bob, 990}, {w.metro, 20}});
}

TEST_CASE("spending more than the balance is insufficient_funds; the same op id is accepted after a top-up") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, 50)).code == Code::kOk);
  Envelope fare = w.f.fare(w.alice, w.alice_key, w.metro, 62);
  Envelope redeem = w.f.redeem(w.alice, w.alice_key, 51);
  Envelope transfer = w.f.transfer(w.alice, w.alice_key, w.bob, 51);
  Envelope payout = w.f.payout(w.agency, w.agency_key, w.bob, 1, "p", "r");
  for (const Envelope* op : {&fare, &redeem, &transfer, &payout}) {
    CAPTURE(op_type_name(op->body.type));
    expect_rejected(w, *op, Code::kInsufficientFunds);
  }
  w.expect_books(50, 0, {{w.alice, 50}, {w.metro, 0}});

  REQUIRE(apply(*w.l, {w.f.issue(w.alice, 100), w.f.issue(w.agency, 1)})[1].code == Code::kOk);
  w.expect_books(151, 0, {{w.alice, 150}, {w.agency, 1}});
  OpOutcome out = apply_one(*w.l, fare);
  REQUIRE_MESSAGE(out.code == Code::kOk, out.detail);
  CHECK_FALSE(out.receipt.replay);
  w.expect_books(151, 0, {{w.alice, 88}, {w.metro, 62}});
  CHECK(apply_one(*w.l, payout).code == Code::kOk);
  w.expect_books(151, 0, {{w.agency, 0}, {w.bob, 1}});
}

TEST_CASE("a rejected op frees its id and its payout reference for later ops of the same batch") {
  World w;
  w.fund();
  OpBody big = w.f.body(OpType::kPayout);
  big.from = w.agency;
  big.to = w.bob;
  big.amount = 1'000'000;  // more than the agency holds
  big.program = "birth";
  big.reference = "R-7";
  OpBody small = big;
  small.amount = 700;
  auto out = apply(*w.l, {sign_envelope(big, {&w.agency_key}), sign_envelope(small, {&w.agency_key})});
  CHECK(name(out[0].code) == name(Code::kInsufficientFunds));
  CHECK_MESSAGE(out[1].code == Code::kOk, out[1].detail);
  CHECK_FALSE(out[1].receipt.replay);
  auto r = w.l->receipt(big.id);
  REQUIRE(r->has_value());
  CHECK((*r)->index == out[1].receipt.index);
  w.expect_books(210'000, 0, {{w.agency, 99'300}, {w.bob, 700}});
}

TEST_CASE("a credit beyond the wallet's max_balance is balance_limit_exceeded; up to the limit is fine") {
  World w;
  w.fund();
  expect_rejected(w, w.f.issue(w.capped, World::kCap + 1), Code::kBalanceLimitExceeded);
  REQUIRE(apply_one(*w.l, w.f.issue(w.capped, World::kCap - 10)).code == Code::kOk);
  w.expect_books(210'990, 0, {{w.capped, 990}});
  expect_rejected(w, w.f.transfer(w.alice, w.alice_key, w.capped, 11), Code::kBalanceLimitExceeded);
  expect_rejected(w, w.f.issue(w.capped, 11), Code::kBalanceLimitExceeded);
  expect_rejected(w, w.f.payout(w.agency, w.agency_key, w.capped, 11, "p", "r"), Code::kBalanceLimitExceeded);
  REQUIRE(apply_one(*w.l, w.f.transfer(w.alice, w.alice_key, w.capped, 10)).code == Code::kOk);
  w.expect_books(210'990, 0, {{w.alice, 9'990}, {w.capped, World::kCap}});
  expect_rejected(w, w.f.issue(w.capped, 1), Code::kBalanceLimitExceeded);
  // Spending from a capped wallet is unaffected.
  REQUIRE(apply_one(*w.l, w.f.transfer(w.capped, w.capped_key, w.bob, 1)).code == Code::kOk);
  w.expect_books(210'990, 0, {{w.capped, World::kCap - 1}, {w.bob, 1}});
}

TEST_CASE("ops lacking the required signer are rejected with not_authorized") {
  World w;
  w.fund();
  WalletId fresh = make_id(70, 0xA0);
  KeyPair fresh_key = seed_key(0x41);

  SUBCASE("open_wallet without a registrar's signature") {
    OpBody b = w.f.body(OpType::kOpenWallet);
    b.wallet = fresh;
    b.key = fresh_key.public_key;
    expect_rejected(w, sign_envelope(b, {&fresh_key}), Code::kNotAuthorized);
    expect_rejected(w, sign_envelope(b, {&authorities().issuer, &fresh_key}), Code::kNotAuthorized);
  }
  SUBCASE("open_wallet without the owner key's signature") {
    OpBody b = w.f.body(OpType::kOpenWallet);
    b.wallet = fresh;
    b.key = fresh_key.public_key;
    expect_rejected(w, sign_envelope(b, {&authorities().registrar}), Code::kNotAuthorized);
    expect_rejected(w, sign_envelope(b, {&authorities().registrar, &w.stranger_key}), Code::kNotAuthorized);
  }
  SUBCASE("issue signed by someone other than the issuer") {
    OpBody b = w.f.body(OpType::kIssue);
    b.to = w.alice;
    b.amount = 10;
    expect_rejected(w, sign_envelope(b, {&authorities().registrar}), Code::kNotAuthorized);
    expect_rejected(w, sign_envelope(b, {&w.alice_key}), Code::kNotAuthorized);
  }
  SUBCASE("transfer signed by a different valid key") {
    expect_rejected(w, w.f.transfer(w.alice, w.bob_key, w.bob, 10), Code::kNotAuthorized);
    expect_rejected(w, w.f.transfer(w.alice, authorities().registrar, w.bob, 10), Code::kNotAuthorized);
  }
  SUBCASE("redeem signed by a different valid key") {
    expect_rejected(w, w.f.redeem(w.alice, authorities().issuer, 10), Code::kNotAuthorized);
  }
  SUBCASE("fare to a wallet that is not transit") {
    expect_rejected(w, w.f.fare(w.alice, w.alice_key, w.shop, 10), Code::kNotAuthorized);
    expect_rejected(w, w.f.fare(w.alice, w.alice_key, w.bob, 10), Code::kNotAuthorized);
  }
  SUBCASE("payout from a wallet that is not an agency") {
    expect_rejected(w, w.f.payout(w.alice, w.alice_key, w.bob, 10, "p", "r"), Code::kNotAuthorized);
  }
  SUBCASE("payout signed by another agency") {
    expect_rejected(w, w.f.payout(w.agency, w.agency2_key, w.bob, 10, "p", "r"), Code::kNotAuthorized);
  }
  SUBCASE("freeze, unfreeze and rotate_key signed by a non-registrar") {
    for (OpType t : {OpType::kFreeze, OpType::kUnfreeze, OpType::kRotateKey}) {
      OpBody b = w.f.body(t);
      b.wallet = w.alice;
      if (t == OpType::kRotateKey) b.key = w.stranger_key.public_key;
      else b.reason = "because";
      expect_rejected(w, sign_envelope(b, {&authorities().issuer}), Code::kNotAuthorized);
      expect_rejected(w, sign_envelope(b, {&w.alice_key}), Code::kNotAuthorized);
    }
  }
  SUBCASE("the second registrar may do what the first may") {
    OpBody b = w.f.body(OpType::kFreeze);
    b.wallet = w.alice;
    b.reason = "x";
    CHECK(apply_one(*w.l, sign_envelope(b, {&authorities().registrar2})).code == Code::kOk);
    CHECK((*w.l->wallet(w.alice))->status == WalletStatus::kFrozen);
  }
  CHECK_FALSE(w.l->wallet(fresh)->has_value());
  w.expect_books(210'000, 0, {{w.alice, 10'000}, {w.bob, 0}});
}

TEST_CASE("a payout (program, reference) pays once forever: reference_used") {
  World w;
  w.fund();
  REQUIRE(apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 100, "birth", "R-1")).code == Code::kOk);
  w.expect_books(210'000, 0, {{w.agency, 99'900}, {w.bob, 100}});

  SUBCASE("twice from the same agency") {
    expect_rejected(w, w.f.payout(w.agency, w.agency_key, w.bob, 100, "birth", "R-1"), Code::kReferenceUsed);
    expect_rejected(w, w.f.payout(w.agency, w.agency_key, w.alice, 7, "birth", "R-1"), Code::kReferenceUsed);
  }
  SUBCASE("from a different agency") {
    expect_rejected(w, w.f.payout(w.agency2, w.agency2_key, w.bob, 100, "birth", "R-1"), Code::kReferenceUsed);
  }
  SUBCASE("twice within one batch: the second is refused") {
    auto out = apply(*w.l, {w.f.payout(w.agency, w.agency_key, w.bob, 10, "birth", "R-2"),
                            w.f.payout(w.agency2, w.agency2_key, w.alice, 10, "birth", "R-2")});
    CHECK(out[0].code == Code::kOk);
    CHECK(name(out[1].code) == name(Code::kReferenceUsed));
    CHECK(w.l->head().size == 12);
    w.expect_books(210'000, 0, {{w.agency, 99'890}, {w.agency2, 100'000}, {w.bob, 110}, {w.alice, 10'000}});
  }
  SUBCASE("a different reference, or a different program with the same reference, is fine") {
    CHECK(apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 1, "birth", "R-9")).code == Code::kOk);
    CHECK(apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 1, "school", "R-1")).code == Code::kOk);
    // (program, reference) is a pair, not a concatenation.
    CHECK(apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 1, "ab", "c")).code == Code::kOk);
    CHECK(apply_one(*w.l, w.f.payout(w.agency, w.agency_key, w.bob, 1, "a", "bc")).code == Code::kOk);
    w.expect_books(210'000, 0, {{w.agency, 99'896}, {w.bob, 104}});
  }
}

TEST_CASE("an op past its expires_at is expired; expires_at equal to ledger time is accepted") {
  World w;
  w.fund();
  uint64_t t = w.l->head().last_time + 1000;
  OpBody late = w.f.body(OpType::kTransfer);
  late.from = w.alice;
  late.to = w.bob;
  late.amount = 10;
  late.expires_at = t - 1;
  Snapshot before = snapshot(w);
  auto out = apply_at(*w.l, {sign_envelope(late, {&w.alice_key})}, t);
  CHECK(name(out[0].code) == name(Code::kExpired));
  CHECK(snapshot(w) == before);
  CHECK_FALSE(w.l->receipt(late.id)->has_value());

  OpBody just = late;
  just.id = w.f.body(OpType::kTransfer).id;
  just.expires_at = t + 1000;
  out = apply_at(*w.l, {sign_envelope(just, {&w.alice_key})}, t + 1000);
  CHECK_MESSAGE(out[0].code == Code::kOk, out[0].detail);
  w.expect_books(210'000, 0, {{w.alice, 9'990}, {w.bob, 10}});
}

TEST_CASE("an op moving money from a wallet to itself is same_wallet") {
  World w;
  w.fund();
  expect_rejected(w, w.f.transfer(w.alice, w.alice_key, w.alice, 10), Code::kSameWallet);
  REQUIRE(apply_one(*w.l, w.f.issue(w.metro, 100)).code == Code::kOk);
  expect_rejected(w, w.f.fare(w.metro, w.metro_key, w.metro, 10), Code::kSameWallet);
  expect_rejected(w, w.f.payout(w.agency, w.agency_key, w.agency, 10, "p", "r"), Code::kSameWallet);
  w.expect_books(210'100, 0, {{w.alice, 10'000}, {w.metro, 100}, {w.agency, 100'000}});
}

TEST_CASE("an accepted op id reused with a different body is id_conflict, also within one batch") {
  World w;
  w.fund();
  OpBody b = w.f.body(OpType::kTransfer);
  b.from = w.alice;
  b.to = w.bob;
  b.amount = 10;
  OpOutcome first = apply_one(*w.l, sign_envelope(b, {&w.alice_key}));
  REQUIRE(first.code == Code::kOk);
  w.expect_books(210'000, 0, {{w.alice, 9'990}, {w.bob, 10}});

  OpBody other = b;
  other.amount = 11;
  expect_rejected(w, sign_envelope(other, {&w.alice_key}), Code::kIdConflict);
  OpBody other_type = w.f.body(OpType::kIssue);
  other_type.id = b.id;
  other_type.to = w.bob;
  other_type.amount = 5;
  expect_rejected(w, sign_envelope(other_type, {&authorities().issuer}), Code::kIdConflict);
  auto r = w.l->receipt(b.id);
  REQUIRE(r->has_value());
  CHECK((*r)->index == first.receipt.index);
  CHECK((*r)->leaf_hash == first.receipt.leaf_hash);

  OpBody c = w.f.body(OpType::kIssue);
  c.to = w.bob;
  c.amount = 5;
  OpBody c2 = c;
  c2.amount = 6;
  auto out = apply(*w.l, {sign_envelope(c, {&authorities().issuer}), sign_envelope(c2, {&authorities().issuer})});
  CHECK(out[0].code == Code::kOk);
  CHECK(name(out[1].code) == name(Code::kIdConflict));
  w.expect_books(210'005, 0, {{w.alice, 9'990}, {w.bob, 15}});
}

TEST_CASE("issue pushing outstanding supply above 2^53-1 is invalid_amount") {
  World w;
  w.open_all();
  REQUIRE(apply_one(*w.l, w.f.issue(w.alice, kAmountMax)).code == Code::kOk);
  w.expect_books(kAmountMax, 0, {{w.alice, kAmountMax}});
  expect_rejected(w, w.f.issue(w.bob, 1), Code::kInvalidAmount);
  REQUIRE(apply_one(*w.l, w.f.redeem(w.alice, w.alice_key, 5)).code == Code::kOk);
  w.expect_books(kAmountMax, 5, {{w.alice, kAmountMax - 5}});
  expect_rejected(w, w.f.issue(w.bob, 6), Code::kInvalidAmount);
  REQUIRE(apply_one(*w.l, w.f.issue(w.bob, 5)).code == Code::kOk);
  w.expect_books(kAmountMax + 5, 5, {{w.alice, kAmountMax - 5}, {w.bob, 5}});
  expect_rejected(w, w.f.issue(w.bob, 1), Code::kInvalidAmount);
}

TEST_CASE("every rejection code except malformed and bad_signature is reachable in apply") {
  World w;
  w.fund();
  REQUIRE(apply(*w.l, {w.f.payout(w.agency, w.agency_key, w.bob, 1, "p", "used"), w.f.freeze(w.shop)})[1].code ==
          Code::kOk);
  Envelope accepted = w.f.issue(w.bob, 1);
  REQUIRE(apply_one(*w.l, accepted).code == Code::kOk);
  OpBody conflict = accepted.body;
  conflict.amount = 2;
  OpBody late = w.f.body(OpType::kIssue);
  late.to = w.bob;
  late.amount = 1;
  late.expires_at = 1;
  std::vector<Envelope> ops = {
      OpFactory("other-chain", 0x0C).issue(w.bob, 1),                       // wrong_chain
      w.f.issue(w.missing, 1),                                              // unknown_wallet
      w.f.open_wallet(w.alice, w.alice_key),                                // wallet_exists
      w.f.transfer(w.alice, w.alice_key, w.shop, 1),                        // wallet_frozen
      w.f.transfer(w.bob, w.bob_key, w.alice, 1'000'000),                   // insufficient_funds
      w.f.issue(w.capped, World::kCap + 1),                                 // balance_limit_exceeded
      w.f.transfer(w.alice, w.bob_key, w.bob, 1),                           // not_authorized
      w.f.payout(w.agency, w.agency_key, w.alice, 1, "p", "used"),          // reference_used
      sign_envelope(late, {&authorities().issuer}),                         // expired
      w.f.issue(w.bob, kAmountMax),                                         // invalid_amount
      w.f.transfer(w.alice, w.alice_key, w.alice, 1),                       // same_wallet
      sign_envelope(conflict, {&authorities().issuer}),                     // id_conflict
  };
  Snapshot before = snapshot(w);
  auto out = apply(*w.l, ops);
  CHECK(snapshot(w) == before);
  std::set<std::string> seen;
  for (const auto& o : out) seen.insert(name(o.code));
  std::set<std::string> all;
  for (int c = static_cast<int>(Code::kOk); c <= static_cast<int>(Code::kIdConflict); ++c) all.insert(name(Code(c)));
  all.erase(name(Code::kOk));
  all.erase(name(Code::kMalformed));
  all.erase(name(Code::kBadSignature));
  CHECK(seen == all);
  CHECK(seen.size() == ops.size());
}

// ========================================================= idempotency ==

TEST_CASE("the same envelope applied again returns its original receipt as a replay and changes nothing") {
  World w;
  w.fund();
  Envelope op = w.f.transfer(w.alice, w.alice_key, w.bob, 100);
  OpOutcome first = apply_one(*w.l, op);
  REQUIRE(first.code == Code::kOk);
  CHECK_FALSE(first.receipt.replay);
  Snapshot before = snapshot(w);

  OpOutcome again = apply_one(*w.l, op);
  CHECK(again.code == Code::kOk);
  CHECK(again.receipt.replay);
  CHECK(again.receipt.id == op.body.id);
  CHECK(again.receipt.index == first.receipt.index);
  CHECK(again.receipt.time == first.receipt.time);
  CHECK(again.receipt.leaf_hash == first.receipt.leaf_hash);
  CHECK(snapshot(w) == before);
  w.expect_books(210'000, 0, {{w.alice, 9'900}, {w.bob, 100}});

  // The same body with a different set of signatures is still the same op.
  Envelope resigned = sign_envelope(op.body, {&w.alice_key, &w.bob_key});
  REQUIRE(resigned.jcs != op.jcs);
  OpOutcome third = apply_one(*w.l, resigned);
  CHECK(third.code == Code::kOk);
  CHECK(third.receipt.replay);
  CHECK(third.receipt.index == first.receipt.index);
  CHECK(snapshot(w) == before);
}

TEST_CASE("the same op id twice within one batch: the second is a replay of the first") {
  World w;
  w.fund();
  Envelope op = w.f.fare(w.alice, w.alice_key, w.metro, 62);
  uint64_t size = w.l->head().size;
  auto out = apply(*w.l, {op, op});
  REQUIRE(out[0].code == Code::kOk);
  CHECK_FALSE(out[0].receipt.replay);
  CHECK(out[1].code == Code::kOk);
  CHECK(out[1].receipt.replay);
  CHECK(out[1].receipt.index == out[0].receipt.index);
  CHECK(out[1].receipt.time == out[0].receipt.time);
  CHECK(out[1].receipt.leaf_hash == out[0].receipt.leaf_hash);
  CHECK(w.l->head().size == size + 1);
  w.expect_books(210'000, 0, {{w.alice, 9'938}, {w.metro, 62}});
}

TEST_CASE("an accepted op retried after its expires_at passed still gets its original receipt") {
  World w;
  w.fund();
  uint64_t t = w.l->head().last_time + 1000;
  OpBody b = w.f.body(OpType::kFare);
  b.from = w.alice;
  b.to = w.metro;
  b.amount = 62;
  b.gate = "Охотный ряд-3";
  b.tap_at = t - 10;
  b.expires_at = t;
  Envelope op = sign_envelope(b, {&w.alice_key});
  auto first = apply_at(*w.l, {op}, t);
  REQUIRE_MESSAGE(first[0].code == Code::kOk, first[0].detail);
  auto retry = apply_at(*w.l, {op}, t + 60'000);
  CHECK_MESSAGE(retry[0].code == Code::kOk, retry[0].detail);
  CHECK(retry[0].receipt.replay);
  CHECK(retry[0].receipt.index == first[0].receipt.index);
  CHECK(retry[0].receipt.time == t);
  CHECK(retry[0].receipt.leaf_hash == first[0].receipt.leaf_hash);
  w.expect_books(210'000, 0, {{w.alice, 9'938}, {w.metro, 62}});
}

// ============================================================= journal ==

TEST_CASE("the journal is dense from 0 and holds each accepted op's canonical entry bytes") {
  World w;
  std::vector<std::pair<Envelope, uint64_t>> accepted;  // envelope, batch time
  auto run = [&](std::vector<Envelope> ops, uint64_t time) {
    auto out = apply_at(*w.l, ops, time);
    for (size_t i = 0; i < ops.size(); ++i)
      if (out[i].code == Code::kOk && !out[i].receipt.replay) accepted.emplace_back(ops[i], time);
  };
  run({w.f.open_wallet(w.alice, w.alice_key), w.f.open_wallet(w.bob, w.bob_key)}, 1000);
  run({w.f.issue(w.alice, 100), w.f.issue(w.missing, 1), w.f.transfer(w.alice, w.alice_key, w.bob, 5)}, 2000);
  run({w.f.redeem(w.bob, w.bob_key, 1)}, 2500);
  run({w.f.transfer(w.bob, w.bob_key, w.alice, 1000)}, 3000);  // rejected
  run({w.f.transfer(w.bob, w.bob_key, w.alice, 1), w.f.freeze(w.bob)}, 4000);
  REQUIRE(accepted.size() == 7);
  REQUIRE(w.l->head().size == 7);

  auto all = w.l->journal(0, 100);
  REQUIRE(all.is_ok());
  REQUIRE(all->size() == 7);
  for (uint64_t i = 0; i < all->size(); ++i) {
    const JournalEntry& e = (*all)[i];
    CAPTURE(i);
    CHECK(e.index == i);
    CHECK(e.time == accepted[i].second);
    CHECK(e.bytes == entry_bytes(i, accepted[i].second, accepted[i].first.jcs));
    CHECK(e.leaf_hash == merkle::leaf_hash(e.bytes));
    CHECK(entry_time(e.bytes) == accepted[i].second);
    auto r = w.l->receipt(accepted[i].first.body.id);
    REQUIRE(r->has_value());
    CHECK((*r)->index == i);
    CHECK((*r)->time == e.time);
    CHECK((*r)->leaf_hash == e.leaf_hash);
    CHECK_FALSE((*r)->replay);
  }

  auto mid = w.l->journal(2, 3);
  REQUIRE(mid.is_ok());
  REQUIRE(mid->size() == 3);
  CHECK((*mid)[0].index == 2);
  CHECK((*mid)[2].bytes == (*all)[4].bytes);
  CHECK(w.l->journal(5, 100)->size() == 2);
  CHECK(w.l->journal(0, 0)->empty());
  CHECK(w.l->journal(7, 10)->empty());
  CHECK(w.l->journal(1000, 10)->empty());
  CHECK(w.l->journal(UINT64_MAX, UINT64_MAX)->empty());
  CHECK(w.l->journal(6, UINT64_MAX)->size() == 1);
}

TEST_CASE("wallet_entries lists only that wallet's entries, both sides of a move, oldest first, paged") {
  World w;
  w.open_all();  // entries 0..6, one per wallet
  apply(*w.l, {w.f.issue(w.alice, 100)});                          // 7: alice
  apply(*w.l, {w.f.transfer(w.alice, w.alice_key, w.bob, 10)});    // 8: alice, bob
  apply(*w.l, {w.f.issue(w.shop, 100)});                           // 9: shop
  apply(*w.l, {w.f.fare(w.bob, w.bob_key, w.metro, 5)});           // 10: bob, metro
  apply(*w.l, {w.f.transfer(w.bob, w.bob_key, w.alice, 999)});     // rejected
  apply(*w.l, {w.f.transfer(w.bob, w.bob_key, w.alice, 1)});       // 11: bob, alice
  apply(*w.l, {w.f.freeze(w.alice)});                              // 12: alice

  auto indices = [](const std::vector<JournalEntry>& es) {
    std::vector<uint64_t> out;
    for (const auto& e : es) out.push_back(e.index);
    return out;
  };
  auto alice = w.l->wallet_entries(w.alice, std::nullopt, 100);
  REQUIRE(alice.is_ok());
  CHECK(indices(*alice) == std::vector<uint64_t>{0, 7, 8, 11, 12});
  auto bob = w.l->wallet_entries(w.bob, std::nullopt, 100);
  CHECK(indices(*bob) == std::vector<uint64_t>{1, 8, 10, 11});
  CHECK(indices(*w.l->wallet_entries(w.metro, std::nullopt, 100)) == std::vector<uint64_t>{3, 10});
  CHECK(w.l->wallet_entries(w.missing, std::nullopt, 100)->empty());

  // The entries are the journal's own.
  auto full = w.l->journal(0, 100);
  for (const auto& e : *alice) {
    CHECK(e.bytes == (*full)[e.index].bytes);
    CHECK(e.time == (*full)[e.index].time);
    CHECK(e.leaf_hash == (*full)[e.index].leaf_hash);
  }

  // Paging with "after".
  auto p1 = w.l->wallet_entries(w.alice, std::nullopt, 2);
  CHECK(indices(*p1) == std::vector<uint64_t>{0, 7});
  auto p2 = w.l->wallet_entries(w.alice, p1->back().index, 2);
  CHECK(indices(*p2) == std::vector<uint64_t>{8, 11});
  auto p3 = w.l->wallet_entries(w.alice, p2->back().index, 2);
  CHECK(indices(*p3) == std::vector<uint64_t>{12});
  CHECK(w.l->wallet_entries(w.alice, 12, 2)->empty());
  CHECK(indices(*w.l->wallet_entries(w.alice, 9, 100)) == std::vector<uint64_t>{11, 12});
  CHECK(w.l->wallet_entries(w.alice, UINT64_MAX, 100)->empty());
  CHECK(w.l->wallet_entries(w.alice, std::nullopt, 0)->empty());
}

TEST_CASE("receipt(id) answers for accepted ops and is nullopt for rejected or unknown ids") {
  World w;
  w.open_all();
  Envelope ok = w.f.issue(w.alice, 10);
  Envelope bad = w.f.transfer(w.bob, w.bob_key, w.alice, 10);
  uint64_t t = w.l->head().last_time + 1000;
  auto out = apply_at(*w.l, {ok, bad}, t);
  REQUIRE(out[0].code == Code::kOk);
  REQUIRE(out[1].code == Code::kInsufficientFunds);
  auto r = w.l->receipt(ok.body.id);
  REQUIRE(r.is_ok());
  REQUIRE(r->has_value());
  CHECK((*r)->id == ok.body.id);
  CHECK((*r)->index == out[0].receipt.index);
  CHECK((*r)->time == t);
  CHECK((*r)->leaf_hash == out[0].receipt.leaf_hash);
  CHECK_FALSE((*r)->replay);
  CHECK_FALSE(w.l->receipt(bad.body.id)->has_value());
  CHECK_FALSE(w.l->receipt(make_id(12345, 0x77))->has_value());
}

// ============================================================== merkle ==

TEST_CASE("the head root, root_at, and inclusion and consistency proofs agree with the journal") {
  World w;
  CHECK(w.l->head().root == merkle::empty_root());
  w.fund();  // 10 entries
  apply(*w.l, {w.f.transfer(w.alice, w.alice_key, w.bob, 1), w.f.fare(w.alice, w.alice_key, w.metro, 2)});
  apply(*w.l, {w.f.redeem(w.bob, w.bob_key, 1)});  // 13 entries
  const uint64_t n = w.l->head().size;
  REQUIRE(n == 13);
  std::vector<Hash> leaves;
  auto journal = w.l->journal(0, n);
  REQUIRE(journal.is_ok());
  for (const auto& e : *journal) leaves.push_back(e.leaf_hash);
  CHECK(w.l->head().root == naive_mth(leaves));

  for (uint64_t k = 0; k <= n; ++k) {
    CAPTURE(k);
    auto r = w.l->root_at(k);
    REQUIRE(r.is_ok());
    CHECK(*r == naive_mth(std::span<const Hash>(leaves).first(k)));
  }
  CHECK_FALSE(w.l->root_at(n + 1).is_ok());

  for (uint64_t size = 1; size <= n; ++size) {
    Hash root = *w.l->root_at(size);
    for (uint64_t i = 0; i < size; ++i) {
      CAPTURE(size);
      CAPTURE(i);
      auto p = w.l->inclusion_proof(i, size);
      REQUIRE(p.is_ok());
      CHECK(merkle::verify_inclusion(leaves[i], i, size, *p, root));
      CHECK_FALSE(merkle::verify_inclusion(leaves[(i + 1) % n], i, size, *p, root));
    }
  }
  CHECK_FALSE(w.l->inclusion_proof(0, n + 1).is_ok());
  CHECK_FALSE(w.l->inclusion_proof(n, n).is_ok());

  for (uint64_t second = 0; second <= n; ++second) {
    for (uint64_t first = 0; first <= second; ++first) {
      CAPTURE(first);
      CAPTURE(second);
      auto p = w.l->consistency_proof(first, second);
      REQUIRE(p.is_ok());
      CHECK(merkle::verify_consistency(first, second, *w.l->root_at(first), *w.l->root_at(second), *p));
    }
  }
  CHECK_FALSE(w.l->consistency_proof(1, n + 1).is_ok());
  CHECK_FALSE(w.l->consistency_proof(3, 2).is_ok());
}

// ================================================================ time ==

TEST_CASE("apply refuses a non-increasing or zero time, or an oversized batch, as invalid and changes nothing") {
  World w;
  SUBCASE("time 0 on a fresh ledger") {
    auto r = w.l->apply(std::vector<Envelope>{w.f.open_wallet(w.alice, w.alice_key)}, 0);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "invalid");
    CHECK(w.l->head().size == 0);
    CHECK(w.l->head().last_time == 0);
    CHECK(w.l->head().root == merkle::empty_root());
  }
  SUBCASE("after a batch") {
    w.fund();
    Snapshot before = snapshot(w);
    uint64_t last = w.l->head().last_time;
    Envelope op = w.f.issue(w.alice, 1);
    std::vector<uint64_t> bad_times = {last, last - 1, 0, kTimeMax + 1};
    for (uint64_t t : bad_times) {
      CAPTURE(t);
      auto r = w.l->apply(std::vector<Envelope>{op}, t);
      REQUIRE_FALSE(r.is_ok());
      CHECK(r.status().code() == "invalid");
      CHECK(snapshot(w) == before);
      CHECK(w.l->head().last_time == last);
      CHECK_FALSE(w.l->receipt(op.body.id)->has_value());
    }
    std::vector<Envelope> too_many(kApplyBatchOpsMax + 1, op);
    auto r = w.l->apply(too_many, last + 1);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "invalid");
    CHECK(snapshot(w) == before);
    CHECK(w.l->head().last_time == last);
    CHECK_FALSE(w.l->receipt(op.body.id)->has_value());
    // The same op at a valid time is fine.
    CHECK(apply_at(*w.l, {op}, last + 1)[0].code == Code::kOk);
    CHECK(w.l->head().last_time == last + 1);
    w.expect_books(210'001, 0, {{w.alice, 10'001}});
  }
}

TEST_CASE("the entries of one batch share the batch's time") {
  World w;
  w.open_all();
  uint64_t t = w.l->head().last_time + 7;
  auto out = apply_at(*w.l, {w.f.issue(w.alice, 1), w.f.issue(w.bob, 2), w.f.issue(w.shop, 3)}, t);
  for (const auto& o : out) {
    REQUIRE(o.code == Code::kOk);
    CHECK(o.receipt.time == t);
  }
  CHECK(out[1].receipt.index == out[0].receipt.index + 1);
  CHECK(out[2].receipt.index == out[1].receipt.index + 1);
  auto entries = w.l->journal(out[0].receipt.index, 3);
  REQUIRE(entries.is_ok());
  REQUIRE(entries->size() == 3);
  for (const auto& e : *entries) CHECK(e.time == t);
  CHECK(w.l->head().last_time == t);
  w.expect_books(6, 0, {{w.alice, 1}, {w.bob, 2}, {w.shop, 3}});
}

TEST_CASE("a batch of exactly kApplyBatchOpsMax ops is applied, and journal reads cap at kReadEntriesMax") {
  World w;
  REQUIRE(apply_one(*w.l, w.f.open_wallet(w.alice, w.alice_key)).code == Code::kOk);
  std::vector<Envelope> ops;
  for (size_t i = 0; i < kApplyBatchOpsMax; ++i) ops.push_back(w.f.issue(w.alice, 1));
  auto out = apply(*w.l, ops);
  REQUIRE(out.size() == kApplyBatchOpsMax);
  for (const auto& o : out) REQUIRE(o.code == Code::kOk);
  ops.clear();
  const uint64_t more = kReadEntriesMax + 1 - 1 - kApplyBatchOpsMax;
  for (uint64_t i = 0; i < more; ++i) ops.push_back(w.f.issue(w.alice, 1));
  apply(*w.l, ops);
  REQUIRE(w.l->head().size == kReadEntriesMax + 1);
  w.expect_books(kReadEntriesMax, 0, {{w.alice, kReadEntriesMax}});
  auto page = w.l->journal(0, kReadEntriesMax + 5);
  REQUIRE(page.is_ok());
  CHECK(page->size() == kReadEntriesMax);
  CHECK(page->back().index == kReadEntriesMax - 1);
  CHECK(w.l->journal(kReadEntriesMax, 10)->size() == 1);
  CHECK(w.l->wallet_entries(w.alice, std::nullopt, UINT64_MAX)->size() == kReadEntriesMax);
}

// ========================================================= persistence ==

TEST_CASE("a reopened ledger keeps balances, supply, root, size, receipts, idempotency and references") {
  World w;
  w.fund();
  Envelope transfer = w.f.transfer(w.alice, w.alice_key, w.bob, 300);
  Envelope payout = w.f.payout(w.agency, w.agency_key, w.bob, 500, "birth", "R-1");
  auto out = apply(*w.l, {transfer, payout, w.f.freeze(w.shop), w.f.redeem(w.alice, w.alice_key, 100)});
  for (const auto& o : out) REQUIRE(o.code == Code::kOk);
  Snapshot before = snapshot(w);
  LedgerHead head = w.l->head();

  w.l.reset();
  w.l = open_ledger(w.path());
  CHECK(snapshot(w) == before);
  CHECK(w.l->head().last_time == head.last_time);
  CHECK(w.l->head().root == head.root);
  w.expect_books(210'000, 100, {{w.alice, 9'600}, {w.bob, 800}, {w.agency, 99'500}});
  CHECK((*w.l->wallet(w.shop))->status == WalletStatus::kFrozen);
  auto r = w.l->receipt(transfer.body.id);
  REQUIRE(r->has_value());
  CHECK((*r)->index == out[0].receipt.index);
  CHECK((*r)->leaf_hash == out[0].receipt.leaf_hash);

  OpOutcome again = apply_one(*w.l, transfer);
  CHECK(again.code == Code::kOk);
  CHECK(again.receipt.replay);
  CHECK(again.receipt.index == out[0].receipt.index);
  CHECK(again.receipt.time == out[0].receipt.time);
  CHECK(again.receipt.leaf_hash == out[0].receipt.leaf_hash);
  OpBody changed = transfer.body;
  changed.amount = 1;
  expect_rejected(w, sign_envelope(changed, {&w.alice_key}), Code::kIdConflict);
  expect_rejected(w, w.f.payout(w.agency2, w.agency2_key, w.bob, 500, "birth", "R-1"), Code::kReferenceUsed);
  expect_rejected(w, w.f.transfer(w.bob, w.bob_key, w.shop, 1), Code::kWalletFrozen);
  CHECK(snapshot(w) == before);
  // And it keeps accepting.
  CHECK(apply_one(*w.l, w.f.transfer(w.bob, w.bob_key, w.alice, 1)).code == Code::kOk);
  w.expect_books(210'000, 100, {{w.alice, 9'601}, {w.bob, 799}});
}

TEST_CASE("reopening with a different genesis fails with mismatch") {
  World w;
  w.fund();
  w.l.reset();
  auto other = Ledger::open(w.path(), test_genesis("other"), unsynced());
  REQUIRE_FALSE(other.is_ok());
  CHECK(other.status().code() == "mismatch");
  // The store is untouched by the refusal.
  w.l = open_ledger(w.path());
  w.expect_books(210'000, 0, {{w.alice, 10'000}});
}

// A batch that accepts nothing still advances last_time; the store must reopen.
TEST_CASE("a ledger whose last batch accepted no op reopens") {
  World w;
  w.fund();
  Snapshot before = snapshot(w);
  SUBCASE("all rejected") {
    CHECK(apply_one(*w.l, w.f.transfer(w.bob, w.bob_key, w.alice, 1)).code == Code::kInsufficientFunds);
  }
  SUBCASE("all replays") {
    Envelope op = w.f.issue(w.bob, 1);
    REQUIRE(apply_one(*w.l, op).code == Code::kOk);
    before = snapshot(w);
    CHECK(apply_one(*w.l, op).receipt.replay);
  }
  SUBCASE("empty batch") { apply(*w.l, {}); }
  Status live = w.l->check(/*full=*/true);
  CHECK_MESSAGE(live.is_ok(), live.to_string());
  w.l.reset();
  auto reopened = Ledger::open(w.path(), test_genesis(), unsynced());
  REQUIRE_MESSAGE(reopened.is_ok(), reopened.status().to_string());
  w.l = std::move(*reopened);
  CHECK(snapshot(w) == before);
}

// ========================================================== corruption ==

TEST_CASE("open detects a journal entry beyond the recorded size") {
  World w;
  populate(w);
  with_raw_db(w.path(), [](RawDb& db) {
    raw_put(db, store::journal_key(5), raw_get(db, store::journal_key(4)));
  });
  expect_open_corruption(w.path(), "beyond its recorded size");
}

TEST_CASE("open detects altered bytes in the last journal entry, for odd and even journal sizes") {
  World w;
  SUBCASE("5 entries: the last entry is a frontier leaf") {
    populate(w);
    with_raw_db(w.path(), [](RawDb& db) { edit_entry(db, 4, "\"amount\":50", "\"amount\":5"); });
  }
  SUBCASE("6 entries: the last entry is under a stored level-1 node") {
    populate(w, 1);
    with_raw_db(w.path(), [](RawDb& db) { edit_entry(db, 5, "\"amount\":1", "\"amount\":2"); });
  }
  expect_open_corruption(w.path(), "journal");
}

TEST_CASE("open detects a missing last journal entry") {
  World w;
  populate(w);
  with_raw_db(w.path(), [](RawDb& db) { raw_delete(db, store::journal_key(4)); });
  expect_open_corruption(w.path(), "journal entry 4 missing");
}

TEST_CASE("open detects a wallet balance that breaks Σ balances = issued − redeemed") {
  World w;
  populate(w);
  with_raw_db(w.path(), [&](RawDb& db) {
    auto st = store::decode_wallet(raw_get(db, store::wallet_key(w.bob)));
    REQUIRE(st.has_value());
    st->balance += 1;
    raw_put(db, store::wallet_key(w.bob), store::encode_wallet(*st));
  });
  expect_open_corruption(w.path(), "sum of balances");
}

TEST_CASE("open detects a deleted or truncated meta record") {
  World w;
  populate(w);
  std::string meta;
  SUBCASE("deleted") {
    with_raw_db(w.path(), [](RawDb& db) { raw_delete(db, store::kMetaState); });
    expect_open_corruption(w.path(), "meta record missing");
  }
  SUBCASE("truncated below its fixed fields") {
    with_raw_db(w.path(), [](RawDb& db) {
      raw_put(db, store::kMetaState, raw_get(db, store::kMetaState).substr(0, 20));
    });
    expect_open_corruption(w.path(), "meta record is malformed");
  }
  SUBCASE("truncated inside its frontier") {
    with_raw_db(w.path(), [](RawDb& db) {
      std::string m = raw_get(db, store::kMetaState);
      raw_put(db, store::kMetaState, m.substr(0, m.size() - 1));
    });
    expect_open_corruption(w.path(), "Merkle frontier");
  }
}

TEST_CASE("Merkle node keys only grow: every batch's nodes sort above all nodes of earlier batches") {
  // Compaction moves a flushed file down untouched only if its keys lie
  // above every older file's; nodes keyed by level first broke that.
  std::string last;  // greatest key written so far
  std::set<std::string> seen;
  uint64_t leaves = 0;
  uint32_t sizes[] = {1, 1, 2, 3, 5, 8, 13, 100, 1, 255, 256, 1000, 7, 4096, 1};
  for (uint32_t n : sizes) {
    std::vector<std::string> batch;
    for (uint32_t k = 0; k < n; ++k, ++leaves) {
      // Appending leaf "leaves" completes the nodes whose last leaf it is.
      for (uint32_t level = 1; level < 64 && ((leaves + 1) % (uint64_t{1} << level)) == 0; ++level)
        batch.push_back(store::tree_key(level, ((leaves + 1) >> level) - 1));
    }
    for (const auto& key : batch) {
      CHECK(key > last);
      CHECK(seen.insert(key).second);  // one key per node
    }
    for (const auto& key : batch) last = std::max(last, key);
  }
  uint64_t nodes = 0;  // complete subtrees of level >= 1 over "leaves" leaves
  for (uint32_t level = 1; level < 64; ++level) nodes += leaves >> level;
  CHECK(seen.size() == nodes);
  CHECK(store::family_index(store::tree_key(3, 7)) == 2);
  CHECK(store::family_index(store::journal_key(7)) == 1);
  CHECK(store::family_index(store::kMetaState) == 0);
  // The last node a tree of at most 2^64 - 1 leaves can hold has a key of
  // its own; one past it (and any level >= 64) maps to a key no node has.
  CHECK(store::tree_key(1, (uint64_t{1} << 63) - 2).size() == 10);
  CHECK(store::tree_key(1, (uint64_t{1} << 63) - 1).size() == 11);
  CHECK(store::tree_key(64, 0).size() == 11);
}

TEST_CASE("a store of the older two-family layout is refused, and left as it was") {
  TempDir d;
  std::string dir = d.sub("old");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.create_missing_column_families = true;
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {{rocksdb::kDefaultColumnFamilyName, {}},
                                                       {std::string(store::kJournalFamily), {}}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(o, dir, cfs, &handles, &db).ok());
    REQUIRE(db->Put(rocksdb::WriteOptions(), handles[0], store::kMetaFormat, "cityledger-store-2").ok());
    for (auto* h : handles) REQUIRE(db->DestroyColumnFamilyHandle(h).ok());
    REQUIRE(db->Close().ok());
    delete db;
  }
  auto l = Ledger::open(dir, test_genesis(), unsynced());
  REQUIRE_FALSE(l.is_ok());
  CHECK(l.status().code() == "mismatch");
  CHECK(l.status().message().find("move the old data dir away") != std::string::npos);
  std::vector<std::string> families;
  REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &families).ok());
  CHECK(families.size() == 2);  // no "tree" family was added
}

TEST_CASE("a store whose creation was cut short (families missing, no data) is completed on open") {
  TempDir d;
  std::string dir = d.sub("cut");
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    REQUIRE(rocksdb::DB::Open(o, dir, &db).ok());  // only the default family, as after a kill mid-creation
    REQUIRE(db->Close().ok());
    delete db;
  }
  auto l = Ledger::open(dir, test_genesis(), unsynced());
  REQUIRE_MESSAGE(l.is_ok(), l.status().to_string());
  CHECK((*l)->head().size == 0);
}

TEST_CASE("open detects a deleted or altered Merkle node of the current tree") {
  World w;
  populate(w);  // 5 leaves: frontier (2,0) and leaf 4; last pair's node (1,1)
  SUBCASE("the complete subtree node of the first four leaves, deleted") {
    with_raw_db(w.path(), [](RawDb& db) { raw_delete(db, store::tree_key(2, 0)); });
    expect_open_corruption(w.path(), "missing Merkle node level 2 index 0");
  }
  SUBCASE("the complete subtree node of the first four leaves, altered") {
    with_raw_db(w.path(), [](RawDb& db) {
      std::string n = raw_get(db, store::tree_key(2, 0));
      n[0] = static_cast<char>(n[0] ^ 1);
      raw_put(db, store::tree_key(2, 0), n);
    });
    expect_open_corruption(w.path(), "Merkle");
  }
  SUBCASE("the level-1 node over the last full pair, deleted") {
    with_raw_db(w.path(), [](RawDb& db) { raw_delete(db, store::tree_key(1, 1)); });
    expect_open_corruption(w.path(), "missing Merkle node level 1 index 1");
  }
}

TEST_CASE("check(full) detects a tampered middle journal entry that open's cheap check misses") {
  World w;
  populate(w, 4);  // 9 entries; open checks the frontier and the last pair (6, 7)
  with_raw_db(w.path(), [](RawDb& db) { edit_entry(db, 4, "\"amount\":50", "\"amount\":5"); });
  w.l = open_ledger(w.path());
  CHECK(w.l->check(/*full=*/false).is_ok());
  Status s = w.l->check(/*full=*/true);
  REQUIRE_FALSE(s.is_ok());
  CHECK(s.code() == "corruption");
  CHECK_MESSAGE(s.message().find("journal entries 4..5") != std::string::npos, s.message());
}

TEST_CASE("check(full) detects a missing middle journal entry that open's cheap check misses") {
  World w;
  populate(w, 4);
  with_raw_db(w.path(), [](RawDb& db) { raw_delete(db, store::journal_key(4)); });
  w.l = open_ledger(w.path());
  CHECK_FALSE(w.l->journal(0, 10).is_ok());
  Status s = w.l->check(/*full=*/true);
  REQUIRE_FALSE(s.is_ok());
  CHECK(s.code() == "corruption");
  CHECK_MESSAGE(s.message().find("journal entry 4 missing") != std::string::npos, s.message());
}

// An altered interior node off the frontier would serve proofs that do not
// verify against the ledger's own root: the full check must catch it.
TEST_CASE("check(full) detects an altered interior Merkle node off the frontier") {
  World w;
  populate(w, 4);  // 9 leaves: frontier (3,0) and leaf 8; (2,0) lies below (3,0)
  with_raw_db(w.path(), [](RawDb& db) {
    std::string n = raw_get(db, store::tree_key(2, 0));
    n[0] = static_cast<char>(n[0] ^ 1);
    raw_put(db, store::tree_key(2, 0), n);
  });
  w.l = open_ledger(w.path());
  auto journal = w.l->journal(0, 9);
  REQUIRE(journal.is_ok());
  auto proof = w.l->inclusion_proof(5, 9);
  REQUIRE(proof.is_ok());
  bool proof_ok = merkle::verify_inclusion((*journal)[5].leaf_hash, 5, 9, *proof, w.l->head().root);
  Status s = w.l->check(/*full=*/true);
  // A store that serves a bad proof must not pass its own full check.
  CHECK_MESSAGE((proof_ok || !s.is_ok()), s.to_string());
  CHECK(s.code() == "corruption");
}

// A populated store that lost its genesis record is corrupt, not new.
TEST_CASE("open refuses a populated store whose genesis record is missing, without writing to it") {
  World w;
  populate(w);
  std::string meta;
  with_raw_db(w.path(), [&](RawDb& db) {
    meta = raw_get(db, store::kMetaState);
    raw_delete(db, store::kMetaGenesis);
  });
  expect_open_corruption(w.path(), "");
  with_raw_db(w.path(), [&](RawDb& db) { CHECK(raw_get(db, store::kMetaState) == meta); });
}

TEST_CASE("open refuses a store of another layout version, naming both versions") {
  World w;
  populate(w);
  w.l.reset();
  for (std::string format : {std::string(), std::string("cityledger-store-1")}) {
    with_raw_db(w.path(), [&](RawDb& db) {
      if (format.empty()) raw_delete(db, store::kMetaFormat);
      else raw_put(db, store::kMetaFormat, format);
    });
    auto l = Ledger::open(w.path(), test_genesis(), LedgerOptions{});
    REQUIRE_FALSE(l.is_ok());
    CHECK(l.status().code() == "mismatch");
    CHECK(l.status().message().find(std::string(store::kStoreFormat)) != std::string::npos);
  }
}

// ============================================================== replay ==

TEST_CASE("replaying a ledger's journal into a fresh ledger yields identical state and journal") {
  World w;
  w.fund();
  apply(*w.l, {w.f.transfer(w.alice, w.alice_key, w.bob, 300), w.f.fare(w.alice, w.alice_key, w.metro, 62),
               w.f.transfer(w.bob, w.bob_key, w.alice, 999'999)});  // the last is rejected
  apply(*w.l, {w.f.payout(w.agency, w.agency_key, w.bob, 500, "birth", "R-1"), w.f.freeze(w.shop)});
  apply(*w.l, {w.f.rotate_key(w.bob, seed_key(0x51)), w.f.redeem(w.alice, w.alice_key, 100)});
  apply(*w.l, {w.f.transfer(w.bob, seed_key(0x51), w.capped, 100), w.f.freeze(w.shop, false)});

  TempDir target_dir;
  auto target = open_ledger(target_dir.sub("db"));
  Status s = replay_ledger(*w.l, target.get(), /*verify_signatures=*/true);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  LedgerHead a = w.l->head();
  LedgerHead b = target->head();
  CHECK(b.size == a.size);
  CHECK(b.root == a.root);
  CHECK(b.supply.issued == a.supply.issued);
  CHECK(b.supply.redeemed == a.supply.redeemed);
  CHECK(journal_bytes(*target) == journal_bytes(*w.l));
  for (const auto& id : w.all()) CHECK(wallet_bytes(*target, id) == wallet_bytes(*w.l, id));
  CHECK(target->check(/*full=*/true).is_ok());
}


TEST_CASE("the replicated-log index of the last batch is stored with it and must increase") {
  TempDir dir;
  OpFactory f;
  {
    auto l = open_ledger(dir.path());
    CHECK(l->head().source_index == 0);
    REQUIRE(l->apply({}, 10, /*source_index=*/5).is_ok());
    CHECK(l->head().source_index == 5);
    auto again = l->apply({}, 11, 5);
    REQUIRE_FALSE(again.is_ok());
    CHECK(again.status().code() == "invalid");
    std::vector<Envelope> ops = {f.open_wallet(make_id(1, 0x31), seed_key(0x31))};
    REQUIRE(l->apply(ops, 12, 9).is_ok());
  }
  auto reopened = open_ledger(dir.path());
  CHECK(reopened->head().source_index == 9);
  CHECK(reopened->head().size == 1);
}

TEST_CASE("an audit_only ledger stores wallet states at write_back, and digests instead of entries") {
  TempDir dir;
  OpFactory f;
  const WalletId alice = make_id(1, 0x11), bob = make_id(2, 0x12);
  const KeyPair alice_key = seed_key(0x21), bob_key = seed_key(0x22);
  LedgerOptions o;
  o.audit_only = true;
  auto l = open_ledger(dir.sub("l"), o);
  auto out = apply(*l, {f.open_wallet(alice, alice_key), f.open_wallet(bob, bob_key), f.issue(alice, 1000)});
  for (const auto& r : out) REQUIRE(r.code == Code::kOk);
  REQUIRE(apply_one(*l, f.transfer(alice, alice_key, bob, 300)).code == Code::kOk);
  // Decided as always (the cache), not yet in the store.
  CHECK_FALSE(l->wallet(alice)->has_value());
  CHECK(apply_one(*l, f.transfer(alice, alice_key, bob, 701)).code == Code::kInsufficientFunds);
  REQUIRE(l->write_back().to_string() == "ok");
  CHECK((*l->wallet(alice))->balance == 700);
  CHECK((*l->wallet(bob))->balance == 300);
  CHECK(l->check(/*full=*/true).to_string() == "ok");
  REQUIRE(apply_one(*l, f.issue(bob, 5)).code == Code::kOk);
  CHECK((*l->wallet(bob))->balance == 300);  // until the next write-back
  // Entries: their hashes and times are kept, their bytes are not.
  CHECK(*l->time_of(3) == 2000);
  CHECK(*l->time_of(4) == l->head().last_time);
  CHECK(l->journal(0, 1).status().code() == "invalid");
  CHECK(l->wallet_entries(alice, std::nullopt, 10).status().code() == "invalid");
  CHECK(l->head().size == 5);
  // Closed without a write-back, its wallets fall behind its supply, and opening it says so.
  l.reset();
  auto reopened = Ledger::open(dir.sub("l"), test_genesis(), o);
  REQUIRE_FALSE(reopened.is_ok());
  CHECK(reopened.status().code() == "corruption");
  CHECK_MESSAGE(reopened.status().message().find("sum of balances") != std::string::npos, reopened.status().message());
  // Written back, it reopens, as audit_only only.
  auto again = open_ledger(dir.sub("m"), o);
  apply(*again, {f.open_wallet(alice, alice_key), f.issue(alice, 10)});
  REQUIRE(again->write_back().to_string() == "ok");
  again.reset();
  CHECK(Ledger::open(dir.sub("m"), test_genesis(), LedgerOptions{.sync = false}).status().code() == "mismatch");
  auto written = Ledger::open(dir.sub("m"), test_genesis(), o);
  REQUIRE_MESSAGE(written.is_ok(), written.status().to_string());
  CHECK((*(*written)->wallet(alice))->balance == 10);
}

}  // namespace
}  // namespace cl::test
