#include "tests/sim/ledger_machine.h"
#include "tests/sim/bytes.h"

#define DOCTEST_CONFIG_DISABLE  // only for the fixture's genesis, keys and op builders
#include "tests/unit/fixture.h"

#include <rocksdb/env.h>

#include <any>
#include <random>
#include <set>

#include "api/replicated.h"
#include "common/check.h"
#include "common/hex.h"
#include "ledger/replay.h"
#include "wallet/jcs.h"

namespace cl::sim {
namespace {

constexpr size_t kPersonal = 4;        // wallets 2..5
constexpr size_t kPoolOps = 3000;
constexpr uint64_t kFunding = 1'000'000'000'000ull;

PoolOp pool_op(Envelope env, bool conflicting = false) {
  PoolOp p;
  p.id = id_hex(env.body.id);
  p.env = std::move(env);
  p.conflicting = conflicting;
  return p;
}

LedgerWorld build_world() {
  LedgerWorld w;
  w.genesis = test::test_genesis();
  test::OpFactory f("msk-demo", 0x51);
  std::vector<KeyPair> keys;
  for (size_t i = 0; i < 2 + kPersonal; ++i) {
    w.wallets.push_back(test::make_id(i + 1, 0x5a));
    keys.push_back(test::seed_key(static_cast<uint8_t>(0x40 + i)));
  }
  // 0: agency, 1: transit, 2..: personal.
  w.setup.push_back(pool_op(f.open_wallet(w.wallets[0], keys[0], WalletKind::kAgency)));
  w.setup.push_back(pool_op(f.open_wallet(w.wallets[1], keys[1], WalletKind::kTransit)));
  for (size_t i = 2; i < w.wallets.size(); ++i) w.setup.push_back(pool_op(f.open_wallet(w.wallets[i], keys[i])));
  w.setup.push_back(pool_op(f.issue(w.wallets[0], kFunding)));
  for (size_t i = 2; i < w.wallets.size(); ++i) w.setup.push_back(pool_op(f.issue(w.wallets[i], kFunding)));

  std::mt19937_64 rng(0xc17e);
  auto personal = [&] { return 2 + static_cast<size_t>(rng() % kPersonal); };
  auto amount = [&] { return 1 + rng() % 100; };
  while (w.pool.size() < kPoolOps) {
    const size_t k = w.pool.size();
    const uint64_t kind = rng() % 10;
    if (kind < 4) {
      size_t a = personal(), b = personal();
      if (a == b) b = 2 + (b - 2 + 1) % kPersonal;
      w.pool.push_back(pool_op(f.transfer(w.wallets[a], keys[a], w.wallets[b], amount())));
    } else if (kind < 7) {
      const size_t a = personal();
      w.pool.push_back(pool_op(f.fare(w.wallets[a], keys[a], w.wallets[1], amount())));
    } else if (kind < 8) {
      const size_t a = personal();
      w.pool.push_back(pool_op(f.redeem(w.wallets[a], keys[a], amount())));
    } else {
      const size_t to = personal();
      const std::string program = "prog-" + std::to_string(rng() % 3);
      const std::string reference = "ref-" + std::to_string(k);
      const bool twin = rng() % 8 == 0;
      w.pool.push_back(pool_op(f.payout(w.wallets[0], keys[0], w.wallets[to], amount(), program, reference), twin));
      // A second payout, another op id, the same (program, reference).
      if (twin) w.pool.push_back(pool_op(f.payout(w.wallets[0], keys[0], w.wallets[personal()], amount(), program,
                                                  reference), true));
    }
  }
  return w;
}

std::string hex_of(const Hash& h) { return hex_encode(std::span<const uint8_t>(h.data(), h.size())); }

// Every journal entry's canonical bytes, in index order.
std::vector<std::string> journal_bytes(const Ledger& l) {
  std::vector<std::string> out;
  const uint64_t size = l.head().size;
  while (out.size() < size) {
    auto r = l.journal(out.size(), kReadEntriesMax);
    CL_CHECK_MSG(r.is_ok(), r.status().to_string().c_str());
    CL_CHECK(!r->empty());
    for (JournalEntry& e : *r) out.push_back(std::move(e.bytes));
  }
  return out;
}

std::optional<Envelope> entry_op(std::string_view bytes) {
  auto doc = parse_json_strict(bytes);
  if (!doc.is_ok() || !doc->is_object() || !doc->contains("op")) return std::nullopt;
  Rejection r;
  return decode_envelope_json((*doc)["op"], &r);
}

}  // namespace

const LedgerWorld& ledger_world() {
  static const LedgerWorld w = build_world();
  return w;
}

LedgerMachine::LedgerMachine() { open_fresh(); }
LedgerMachine::~LedgerMachine() {
  applier_.reset();
  ledger_.reset();  // before its Env
}

void LedgerMachine::open_fresh() {
  applier_.reset();
  ledger_.reset();
  env_.reset(rocksdb::NewMemEnv(rocksdb::Env::Default()));
  LedgerOptions o;
  o.sync = false;
  o.env = env_.get();
  auto l = Ledger::open("/sim-ledger", ledger_world().genesis, o);
  CL_CHECK_MSG(l.is_ok(), l.status().to_string().c_str());
  ledger_ = std::move(*l);
  applier_ = std::make_unique<api::LedgerStateMachine>(ledger_.get());
  applied_ = 0;
  counts_.clear();
}

void LedgerMachine::apply(const raft::Entry& e) {
  if (e.type == raft::EntryType::kNormal) {
    // The node's own apply path (decode, time forced above the last, Ledger::apply).
    std::any result = applier_->apply(e);
    const auto& outcomes = std::any_cast<const std::vector<OpOutcome>&>(result);
    auto batch = api::decode_batch(e.data);
    CL_CHECK(batch.has_value() && batch->ops.size() == outcomes.size());
    for (size_t i = 0; i < outcomes.size(); ++i) {
      if (outcomes[i].code == Code::kOk && !outcomes[i].receipt.replay) ++counts_[id_hex(batch->ops[i].body.id)];
    }
  } else {
    applier_->skip(e.index);
  }
  applied_ = e.index;
}

std::string LedgerMachine::digest() const {
  const LedgerHead h = ledger_->head();
  return std::to_string(h.size) + ":" + hex_of(h.root) + ":t" + std::to_string(h.last_time);
}

std::string LedgerMachine::save() const {
  std::string out;
  put_u64(&out, applied_);
  put_u64(&out, ledger_->head().last_time);
  const std::vector<std::string> entries = journal_bytes(*ledger_);
  put_u64(&out, entries.size());
  for (const std::string& b : entries) {
    put_u64(&out, b.size());
    out += b;
  }
  return out;
}

Status LedgerMachine::load(std::string_view in) {
  uint64_t applied = 0, last_time = 0, n = 0;
  if (!get_u64(&in, &applied) || !get_u64(&in, &last_time) || !get_u64(&in, &n)) {
    return Status::error("corruption", "ledger snapshot: short header");
  }
  open_fresh();
  JournalReplayer replayer(ledger_.get(), /*verify_signatures=*/false);
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len = 0;
    if (!get_u64(&in, &len) || len > in.size()) return Status::error("corruption", "ledger snapshot: bad entry");
    const Status s = replayer.add(in.substr(0, len));
    if (!s.is_ok()) return s;
    in.remove_prefix(len);
  }
  if (!in.empty()) return Status::error("corruption", "ledger snapshot: trailing bytes");
  Status s = replayer.finish();
  if (!s.is_ok()) return s;
  // Batches that journaled nothing still advanced last_time: restore it (and
  // the source index) with an empty batch, so later times match the replicas
  // that applied the log.
  if (last_time > ledger_->head().last_time) {
    auto r = ledger_->apply({}, last_time, applied);
    if (!r.is_ok()) return r.status();
  }
  if (ledger_->head().last_time != last_time) return Status::error("corruption", "ledger snapshot: last_time");
  applier_ = std::make_unique<api::LedgerStateMachine>(ledger_.get());
  applied_ = applied;
  for (const std::string& b : journal_bytes(*ledger_)) {
    auto env = entry_op(b);
    if (!env) return Status::error("corruption", "ledger snapshot: entry op");
    ++counts_[id_hex(env->body.id)];
  }
  return Status::ok();
}

size_t LedgerMachine::count(std::string_view payload_id) const {
  auto it = counts_.find(std::string(payload_id));
  return it == counts_.end() ? 0 : it->second;
}

std::string LedgerMachine::audit(std::map<std::string, size_t>* journal_ids) const {
  const LedgerHead h = ledger_->head();
  uint64_t sum = 0;
  for (const WalletId& w : ledger_world().wallets) {
    auto s = ledger_->wallet(w);
    if (!s.is_ok()) return "wallet read failed: " + s.status().to_string();
    if (s->has_value()) sum += (*s)->balance;
  }
  if (sum != h.supply.outstanding()) {
    return "balances sum to " + std::to_string(sum) + " but supply outstanding is " +
           std::to_string(h.supply.outstanding());
  }
  const Status full = ledger_->check(/*full=*/true);
  if (!full.is_ok()) return "Ledger::check(full): " + full.to_string();
  journal_ids->clear();
  std::set<std::pair<std::string, std::string>> references;
  for (const std::string& b : journal_bytes(*ledger_)) {
    auto env = entry_op(b);
    if (!env) return "journal entry does not decode";
    const std::string id = id_hex(env->body.id);
    if (++(*journal_ids)[id] > 1) return "op " + id + " journaled twice";
    if (env->body.type == OpType::kPayout &&
        !references.emplace(env->body.program, env->body.reference).second) {
      return "program " + env->body.program + " reference " + env->body.reference + " paid twice";
    }
  }
  if (*journal_ids != counts_) return "the applied op counts disagree with the journal";
  return "";
}

}  // namespace cl::sim
