// Property tests of the ledger (DESIGN §4, §5, §8).
//
// A seeded generator produces thousands of signed ops over ~60 wallets of
// every kind, valid and invalid, in random batches.  A small reference model
// (plain std::map state, written here from DESIGN §4) predicts every outcome;
// the tests check the ledger against it op by op, check the ledger's
// invariants after every batch, and check that replicas, restarts and an
// auditor's replay all end in byte-identical journals.
//
// The seed is printed.  Reproduce a failure with CL_SEED=<seed>; change the
// amount of work with CL_PROPERTY_OPS=<ops> (default kOpsDefault).
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ledger/audit.h"
#include "ledger/checkpoint.h"
#include "ledger/merkle.h"
#include "ledger/replay.h"
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"

namespace cl::test {
namespace {

constexpr uint64_t kSeedDefault = 0x5eed'c17e'd6e2;
constexpr uint64_t kOpsDefault = 8000;
constexpr size_t kBatchOpsMax = 300;
constexpr uint64_t kTimeStart = 1'700'000'000'000;
// Wallet ids: [0, kWalletsOpened) are opened by the first batch,
// [kWalletsOpened, kWalletsKnown) may be opened later by the random mix and
// [kWalletsKnown, kWalletIds) are never opened (unknown_wallet).
constexpr size_t kWalletsOpened = 50;
constexpr size_t kWalletsKnown = 60;
constexpr size_t kWalletIds = 63;
// Owner keys: one per wallet, plus spares that rotate_key hands out.
constexpr size_t kOwnerKeys = kWalletIds + 8;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

uint64_t property_seed() { return env_u64("CL_SEED", kSeedDefault); }

bool same_state(const WalletState& a, const WalletState& b) {
  return a.kind == b.kind && a.status == b.status && a.key == b.key && a.balance == b.balance &&
         a.max_balance == b.max_balance;
}

std::string describe(const std::optional<WalletState>& w) {
  if (!w) return "absent";
  return std::string(wallet_kind_name(w->kind)) + (w->status == WalletStatus::kFrozen ? " frozen" : " active") +
         " key " + hex_encode(w->key).substr(0, 8) + " balance " + std::to_string(w->balance) + " max " +
         (w->max_balance ? std::to_string(*w->max_balance) : "none");
}

bool same_receipt(const Receipt& a, const Receipt& b) {
  return a.id == b.id && a.index == b.index && a.time == b.time && a.leaf_hash == b.leaf_hash &&
         a.replay == b.replay;
}

std::string describe(const Receipt& r) {
  return "{index " + std::to_string(r.index) + ", time " + std::to_string(r.time) + ", leaf " +
         hex_encode(r.leaf_hash).substr(0, 16) + ", replay " + (r.replay ? "true" : "false") + "}";
}

// What the model expects of one op.
struct Expected {
  Code code = Code::kOk;
  Receipt receipt;  // when code == kOk
};

// The reference model: DESIGN §4 over plain maps.  Where several rejections
// apply to one op, §4 does not say which wins; the model follows the
// ledger's documented order (chain, idempotency before expiry, then the
// type's checks in the order ledger.cpp makes them).
class Model {
 public:
  explicit Model(Genesis genesis) : genesis_(std::move(genesis)) {}

  // Predicts the outcome of "env" applied at "time" and advances the state.
  Expected apply(const Envelope& env, uint64_t time) {
    const OpBody& b = env.body;
    if (b.chain != genesis_.chain) return {Code::kWrongChain, {}};
    if (auto it = accepted_.find(b.id); it != accepted_.end()) {
      if (it->second.body_hash != env.body_hash) return {Code::kIdConflict, {}};
      Receipt r = it->second.receipt;
      r.replay = true;
      return {Code::kOk, r};
    }
    if (b.expires_at && time > *b.expires_at) return {Code::kExpired, {}};
    Code c = check_and_apply(env);
    if (c != Code::kOk) return {c, {}};
    uint64_t index = size_++;
    Receipt r{b.id, index, time, merkle::leaf_hash(entry_bytes(index, time, env.jcs)), false};
    accepted_[b.id] = Accepted{env.body_hash, r};
    return {Code::kOk, r};
  }

  const std::map<WalletId, WalletState>& wallets() const { return wallets_; }
  const WalletState* wallet(const WalletId& id) const {
    auto it = wallets_.find(id);
    return it == wallets_.end() ? nullptr : &it->second;
  }
  Supply supply() const { return Supply{issued_, redeemed_}; }
  uint64_t size() const { return size_; }

 private:
  struct Accepted {
    Hash body_hash{};
    Receipt receipt;
  };

  bool by_registrar(const Envelope& env) const {
    for (const auto& s : env.signatures)
      if (genesis_.is_registrar(s.key)) return true;
    return false;
  }

  static bool fits(const WalletState& w, uint64_t amount) {
    return w.balance + amount <= w.max_balance.value_or(kAmountMax);
  }

  Code check_and_apply(const Envelope& env) {
    const OpBody& b = env.body;
    switch (b.type) {
      case OpType::kOpenWallet:
        if (!by_registrar(env) || !env.signed_by(b.key)) return Code::kNotAuthorized;
        if (wallets_.count(b.wallet)) return Code::kWalletExists;
        wallets_[b.wallet] = WalletState{b.kind, WalletStatus::kActive, b.key, 0, b.max_balance};
        return Code::kOk;
      case OpType::kIssue: {
        if (!env.signed_by(genesis_.issuer)) return Code::kNotAuthorized;
        auto it = wallets_.find(b.to);
        if (it == wallets_.end()) return Code::kUnknownWallet;
        if (it->second.status == WalletStatus::kFrozen) return Code::kWalletFrozen;
        if (issued_ - redeemed_ + b.amount > kAmountMax) return Code::kInvalidAmount;
        if (!fits(it->second, b.amount)) return Code::kBalanceLimitExceeded;
        it->second.balance += b.amount;
        issued_ += b.amount;
        return Code::kOk;
      }
      case OpType::kRedeem: {
        auto it = wallets_.find(b.from);
        if (it == wallets_.end()) return Code::kUnknownWallet;
        if (!env.signed_by(it->second.key)) return Code::kNotAuthorized;
        if (it->second.status == WalletStatus::kFrozen) return Code::kWalletFrozen;
        if (it->second.balance < b.amount) return Code::kInsufficientFunds;
        it->second.balance -= b.amount;
        redeemed_ += b.amount;
        return Code::kOk;
      }
      case OpType::kTransfer:
      case OpType::kFare:
      case OpType::kPayout:
        return move(env);
      case OpType::kFreeze:
      case OpType::kUnfreeze:
      case OpType::kRotateKey: {
        if (!by_registrar(env)) return Code::kNotAuthorized;
        auto it = wallets_.find(b.wallet);
        if (it == wallets_.end()) return Code::kUnknownWallet;
        if (b.type == OpType::kFreeze) it->second.status = WalletStatus::kFrozen;
        else if (b.type == OpType::kUnfreeze) it->second.status = WalletStatus::kActive;
        else it->second.key = b.key;
        return Code::kOk;
      }
    }
    return Code::kMalformed;
  }

  Code move(const Envelope& env) {
    const OpBody& b = env.body;
    auto from = wallets_.find(b.from);
    if (from == wallets_.end()) return Code::kUnknownWallet;
    if (!env.signed_by(from->second.key)) return Code::kNotAuthorized;
    if (b.from == b.to) return Code::kSameWallet;
    auto to = wallets_.find(b.to);
    if (to == wallets_.end()) return Code::kUnknownWallet;
    if (b.type == OpType::kFare && to->second.kind != WalletKind::kTransit) return Code::kNotAuthorized;
    if (b.type == OpType::kPayout && from->second.kind != WalletKind::kAgency) return Code::kNotAuthorized;
    if (from->second.status == WalletStatus::kFrozen || to->second.status == WalletStatus::kFrozen)
      return Code::kWalletFrozen;
    if (b.type == OpType::kPayout && references_.count({b.program, b.reference})) return Code::kReferenceUsed;
    if (from->second.balance < b.amount) return Code::kInsufficientFunds;
    if (!fits(to->second, b.amount)) return Code::kBalanceLimitExceeded;
    from->second.balance -= b.amount;
    to->second.balance += b.amount;
    if (b.type == OpType::kPayout) references_.insert({b.program, b.reference});
    return Code::kOk;
  }

  Genesis genesis_;
  std::map<WalletId, WalletState> wallets_;
  std::map<OpId, Accepted> accepted_;
  std::set<std::pair<std::string, std::string>> references_;
  uint64_t issued_ = 0;
  uint64_t redeemed_ = 0;
  uint64_t size_ = 0;
};

// One applied batch with everything the model expects of it.
struct Step {
  uint64_t time = 0;
  std::vector<Envelope> ops;
  std::vector<Expected> expected;                 // one per op
  std::map<WalletId, WalletState> wallets_after;  // every wallet that exists afterwards
  Supply supply_after;
  uint64_t size_after = 0;

  bool journals_something() const {
    for (const auto& e : expected)
      if (e.code == Code::kOk && !e.receipt.replay) return true;
    return false;
  }
};

struct Trace {
  uint64_t seed = 0;
  std::vector<Step> steps;
  std::vector<WalletId> wallet_ids;  // every wallet id any op names
  size_t ops = 0;
};

// Every key that signs in the trace, findable by its public key.
class Keys {
 public:
  Keys() {
    owners_.reserve(kOwnerKeys);
    for (size_t i = 0; i < kOwnerKeys; ++i) {
      std::array<uint8_t, 32> seed{};
      seed[0] = 0x7a;
      seed[30] = static_cast<uint8_t>(i >> 8);
      seed[31] = static_cast<uint8_t>(i);
      owners_.push_back(key_pair_from_seed(seed));
    }
    for (const auto& k : owners_) by_public_[k.public_key] = &k;
    const Authorities& a = authorities();
    for (const KeyPair* k : {&a.registrar, &a.registrar2, &a.issuer, &a.node}) by_public_[k->public_key] = k;
  }
  const KeyPair& owner(size_t i) const { return owners_.at(i); }
  const KeyPair& of(const PublicKey& key) const {
    auto it = by_public_.find(key);
    CL_CHECK_MSG(it != by_public_.end(), "a key the trace does not know");
    return *it->second;
  }

 private:
  std::vector<KeyPair> owners_;
  std::map<PublicKey, const KeyPair*> by_public_;
};

// Generates the random op mix.  Reads the model to make most ops plausible
// (amounts near balances, the wallet's current key) so that every rejection
// code and the accepted path are all well exercised.
class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {
    for (size_t i = 0; i < kWalletIds; ++i) ids_.push_back(make_id(i + 1, 0x3c));
  }

  const std::vector<WalletId>& wallet_ids() const { return ids_; }

  // The first batch: opens wallets [0, kWalletsOpened) and funds them.
  std::vector<Envelope> opening_batch() {
    std::vector<Envelope> ops;
    for (size_t i = 0; i < kWalletsOpened; ++i) {
      OpBody b = body(OpType::kOpenWallet);
      b.wallet = ids_[i];
      b.key = keys_.owner(i).public_key;
      b.kind = i < 6 ? WalletKind::kAgency : i < 12 ? WalletKind::kTransit : i < 20 ? WalletKind::kMerchant
                                                                             : WalletKind::kPersonal;
      if (i >= 20 && i < 30) b.max_balance = 100'000 + 20'000 * (i - 20);
      ops.push_back(sign(b, {&authorities().registrar, &keys_.owner(i)}));
    }
    for (size_t i = 0; i < kWalletsOpened; ++i) {
      OpBody b = body(OpType::kIssue);
      b.to = ids_[i];
      b.amount = i < 6 ? 5'000'000 : 50'000;
      ops.push_back(sign(b, {&authorities().issuer}));
    }
    return ops;
  }

  size_t batch_size() { return 1 + below(kBatchOpsMax); }
  uint64_t time_step() { return 1 + below(5000); }

  // One op of the random mix, to be applied at "time" after the model's state.
  Envelope next(const Model& m, uint64_t time) {
    uint64_t r = below(1000);
    if (r < 200) return transfer(m, time);
    if (r < 380) return fare(m, time);
    if (r < 480) return payout(m, time);
    if (r < 580) return issue(m, time);
    if (r < 630) return redeem(m, time);
    if (r < 645) return registrar_op(m, OpType::kFreeze);
    if (r < 675) return registrar_op(m, OpType::kUnfreeze);
    if (r < 690) return registrar_op(m, OpType::kRotateKey);
    if (r < 710) return open_wallet(m);
    if (r < 790) return duplicate(m);
    if (r < 830) return same_id_other_body(m);
    if (r < 860) return expired(m, time);
    if (r < 920) return wrong_key(m, time);
    if (r < 960) return zero_balance_spend(m);
    if (r < 975) return wrong_chain(m);
    if (r < 980) return huge_issue(m);
    return transfer(m, time);
  }

 private:
  uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }
  bool chance(uint64_t percent) { return below(100) < percent; }

  OpBody body(OpType type) {
    OpBody b;
    b.chain = "msk-demo";
    b.id = make_id(next_op_++, 0xa5);
    b.type = type;
    return b;
  }

  Envelope sign(const OpBody& b, const std::vector<const KeyPair*>& signers) {
    Envelope env = sign_envelope(b, signers);
    history_.push_back(env);
    return env;
  }

  // Optionally bounds the op's life: mostly unbounded, sometimes expiring
  // later than "time" or exactly at it (both still valid).
  void maybe_expiry(OpBody* b, uint64_t time) {
    uint64_t r = below(100);
    if (r < 5) b->expires_at = time;
    else if (r < 15) b->expires_at = time + below(100'000);
  }

  WalletId any_wallet() { return ids_[below(ids_.size())]; }

  // A wallet of "kind" that exists, or any id when there is none.
  WalletId wallet_of(const Model& m, WalletKind kind) {
    std::vector<WalletId> fit;
    for (const auto& [id, w] : m.wallets())
      if (w.kind == kind) fit.push_back(id);
    return fit.empty() ? any_wallet() : fit[below(fit.size())];
  }

  // The key the wallet currently signs with (a random one if it does not exist).
  const KeyPair* key_of(const Model& m, const WalletId& id) {
    const WalletState* w = m.wallet(id);
    return w ? &keys_.of(w->key) : &keys_.owner(below(kOwnerKeys));
  }

  uint64_t balance_of(const Model& m, const WalletId& id) {
    const WalletState* w = m.wallet(id);
    return w ? w->balance : 0;
  }

  // Mostly affordable, sometimes the whole balance, sometimes too much.
  uint64_t spend_amount(uint64_t balance) {
    uint64_t r = below(100);
    if (balance == 0 || r < 12) return balance + 1 + below(1000);
    if (r < 20) return balance;
    return 1 + below(balance / 3 + 1);
  }

  Envelope transfer(const Model& m, uint64_t time) {
    OpBody b = body(OpType::kTransfer);
    b.from = chance(70) ? wallet_of(m, WalletKind::kPersonal) : any_wallet();
    b.to = chance(3) ? b.from : any_wallet();
    b.amount = spend_amount(balance_of(m, b.from));
    if (const WalletState* to = m.wallet(b.to); to && to->max_balance && to->balance < *to->max_balance && chance(20))
      b.amount = *to->max_balance - to->balance + below(2);  // exactly to the limit, or one past it
    if (chance(30)) b.memo = chance(50) ? "за обед" : "rent";
    maybe_expiry(&b, time);
    return sign(b, {key_of(m, b.from)});
  }

  Envelope fare(const Model& m, uint64_t time) {
    OpBody b = body(OpType::kFare);
    b.from = wallet_of(m, WalletKind::kPersonal);
    b.to = chance(92) ? wallet_of(m, WalletKind::kTransit) : any_wallet();
    b.amount = chance(90) ? 1 + below(6'000) : spend_amount(balance_of(m, b.from));
    b.gate = chance(50) ? "gate-" + std::to_string(below(40)) : "турникет-" + std::to_string(below(40));
    b.tap_at = time - below(5'000);
    maybe_expiry(&b, time);
    return sign(b, {key_of(m, b.from)});
  }

  Envelope payout(const Model& m, uint64_t time) {
    OpBody b = body(OpType::kPayout);
    b.from = chance(92) ? wallet_of(m, WalletKind::kAgency) : any_wallet();
    b.to = chance(85) ? wallet_of(m, WalletKind::kPersonal) : any_wallet();
    b.amount = chance(90) ? 1 + below(200'000) : spend_amount(balance_of(m, b.from));
    static const char* const kPrograms[] = {"birth-benefit", "детское-пособие", "unemployment"};
    b.program = kPrograms[below(3)];
    // A small reference space: many payouts reuse a (program, reference).
    b.reference = "ref-" + std::to_string(below(300));
    maybe_expiry(&b, time);
    return sign(b, {key_of(m, b.from)});
  }

  Envelope issue(const Model& m, uint64_t time) {
    OpBody b = body(OpType::kIssue);
    b.to = chance(25) ? wallet_of(m, WalletKind::kAgency) : any_wallet();
    const WalletState* w = m.wallet(b.to);
    b.amount = 1 + below(w && w->kind == WalletKind::kAgency ? 3'000'000 : 150'000);
    if (w && w->max_balance && w->balance < *w->max_balance && chance(30))
      b.amount = *w->max_balance - w->balance + below(2);  // exactly to the limit, or one past it
    maybe_expiry(&b, time);
    return sign(b, {&authorities().issuer});
  }

  Envelope redeem(const Model& m, uint64_t time) {
    OpBody b = body(OpType::kRedeem);
    b.from = any_wallet();
    b.amount = spend_amount(balance_of(m, b.from));
    maybe_expiry(&b, time);
    return sign(b, {key_of(m, b.from)});
  }

  // freeze, unfreeze or rotate_key, signed by one of the two registrars.
  Envelope registrar_op(const Model& m, OpType type) {
    OpBody b = body(type);
    b.wallet = any_wallet();
    if (type == OpType::kUnfreeze) {
      std::vector<WalletId> frozen;
      for (const auto& [id, w] : m.wallets())
        if (w.status == WalletStatus::kFrozen) frozen.push_back(id);
      if (!frozen.empty() && chance(80)) b.wallet = frozen[below(frozen.size())];
    }
    if (type == OpType::kRotateKey) b.key = keys_.owner(below(kOwnerKeys)).public_key;
    else b.reason = chance(50) ? "court order" : "решение суда";
    const Authorities& a = authorities();
    return sign(b, {chance(50) ? &a.registrar : &a.registrar2});
  }

  Envelope open_wallet(const Model&) {
    OpBody b = body(OpType::kOpenWallet);
    size_t i = kWalletsOpened + below(kWalletsKnown - kWalletsOpened + 5);  // some already exist
    if (i >= kWalletsKnown) i = below(kWalletsOpened);
    b.wallet = ids_[i];
    const KeyPair& owner = keys_.owner(i);
    b.key = owner.public_key;
    b.kind = static_cast<WalletKind>(below(4));
    if (chance(30)) b.max_balance = 1 + below(400'000);
    uint64_t r = below(100);
    if (r < 10) return sign(b, {&owner});                          // no registrar
    if (r < 20) return sign(b, {&authorities().registrar});        // no owner
    return sign(b, {&authorities().registrar2, &owner});
  }

  // An exact replay of any earlier op (accepted or not, even of this batch).
  Envelope duplicate(const Model& m) {
    if (history_.empty()) return huge_issue(m);
    return history_[below(history_.size())];
  }

  // An earlier op's id with a changed body, signed as the original was.
  Envelope same_id_other_body(const Model& m) {
    if (history_.empty()) return huge_issue(m);
    const Envelope& old = history_[below(history_.size())];
    OpBody b = old.body;
    switch (b.type) {
      case OpType::kOpenWallet: b.max_balance = b.max_balance ? std::nullopt : std::optional<uint64_t>(777'777); break;
      case OpType::kFreeze:
      case OpType::kUnfreeze: b.reason += " (amended)"; break;
      case OpType::kRotateKey: b.key = keys_.owner(below(kOwnerKeys)).public_key; break;
      default: b.amount = b.amount == kAmountMax ? 1 : b.amount + 1; break;
    }
    std::vector<const KeyPair*> signers;
    for (const auto& s : old.signatures) signers.push_back(&keys_.of(s.key));
    return sign(b, signers);
  }

  // A new, otherwise plausible op whose expires_at is already past.
  Envelope expired(const Model& m, uint64_t time) {
    OpBody b = body(chance(50) ? OpType::kTransfer : OpType::kIssue);
    b.to = any_wallet();
    b.amount = 1 + below(1000);
    b.expires_at = time - 1 - below(10'000);
    if (b.type == OpType::kIssue) return sign(b, {&authorities().issuer});
    b.from = wallet_of(m, WalletKind::kPersonal);
    return sign(b, {key_of(m, b.from)});
  }

  // Correctly signed, but by a key without the authority the op needs.
  Envelope wrong_key(const Model& m, uint64_t time) {
    const Authorities& a = authorities();
    switch (below(4)) {
      case 0: {  // a spend signed by some other owner key
        OpBody b = body(chance(50) ? OpType::kTransfer : OpType::kRedeem);
        b.from = any_wallet();
        b.to = any_wallet();
        b.amount = 1 + below(1000);
        const KeyPair* k = &keys_.owner(below(kOwnerKeys));
        if (const WalletState* w = m.wallet(b.from); w && k->public_key == w->key) k = &a.issuer;
        return sign(b, {k});
      }
      case 1: {  // an issue signed by a registrar
        OpBody b = body(OpType::kIssue);
        b.to = any_wallet();
        b.amount = 1 + below(1000);
        return sign(b, {&a.registrar});
      }
      case 2: {  // a freeze signed by the wallet's owner, or by the issuer
        OpBody b = body(OpType::kFreeze);
        b.wallet = any_wallet();
        b.reason = "self-freeze";
        return sign(b, {chance(50) ? key_of(m, b.wallet) : &a.issuer});
      }
      default: {  // a payout signed by the receiving wallet's key
        OpBody b = body(OpType::kPayout);
        b.from = wallet_of(m, WalletKind::kAgency);
        b.to = wallet_of(m, WalletKind::kPersonal);
        b.amount = 1 + below(1000);
        b.program = "birth-benefit";
        b.reference = "stolen-" + std::to_string(below(1'000'000));
        maybe_expiry(&b, time);
        const KeyPair* k = key_of(m, b.to);
        if (const WalletState* w = m.wallet(b.from); w && k->public_key == w->key) k = &a.node;
        return sign(b, {k});
      }
    }
  }

  // A spend from a wallet whose balance is zero (insufficient_funds).
  Envelope zero_balance_spend(const Model& m) {
    std::vector<WalletId> empty;
    for (const auto& [id, w] : m.wallets())
      if (w.balance == 0) empty.push_back(id);
    OpBody b = body(chance(50) ? OpType::kTransfer : OpType::kFare);
    b.from = empty.empty() ? any_wallet() : empty[below(empty.size())];
    b.to = b.type == OpType::kFare ? wallet_of(m, WalletKind::kTransit) : any_wallet();
    b.amount = 1 + below(100);
    if (b.type == OpType::kFare) {
      b.gate = "gate-0";
      b.tap_at = kTimeStart;
    }
    return sign(b, {key_of(m, b.from)});
  }

  Envelope wrong_chain(const Model& m) {
    OpBody b = body(OpType::kTransfer);
    b.chain = "spb-demo";
    b.from = wallet_of(m, WalletKind::kPersonal);
    b.to = any_wallet();
    b.amount = 1;
    return sign(b, {key_of(m, b.from)});
  }

  // An issue that would take the outstanding supply past 2^53 − 1: by one
  // kopeck, or by far.
  Envelope huge_issue(const Model& m) {
    OpBody b = body(OpType::kIssue);
    b.to = ids_[below(kWalletsOpened)];
    uint64_t outstanding = m.supply().outstanding();
    b.amount = outstanding > 0 && chance(50) ? kAmountMax - outstanding + 1 : kAmountMax - below(10);
    return sign(b, {&authorities().issuer});
  }

  std::mt19937_64 rng_;
  Keys keys_;
  std::vector<WalletId> ids_;
  std::vector<Envelope> history_;  // every op generated so far
  uint64_t next_op_ = 1;
};

// Generates the property trace for "seed" with at least "ops_min" ops.
Trace generate_trace(uint64_t seed, uint64_t ops_min) {
  Trace t;
  t.seed = seed;
  Generator gen(seed);
  Model model(test_genesis());
  t.wallet_ids = gen.wallet_ids();
  uint64_t time = kTimeStart;
  auto finish_step = [&](Step& s) {
    s.wallets_after = model.wallets();
    s.supply_after = model.supply();
    s.size_after = model.size();
    t.ops += s.ops.size();
    t.steps.push_back(std::move(s));
  };
  {
    Step s;
    s.time = time;
    s.ops = gen.opening_batch();
    for (const auto& env : s.ops) s.expected.push_back(model.apply(env, s.time));
    finish_step(s);
  }
  while (t.ops < ops_min || !t.steps.back().journals_something()) {
    Step s;
    time += gen.time_step();
    s.time = time;
    size_t n = gen.batch_size();
    for (size_t i = 0; i < n; ++i) {
      s.ops.push_back(gen.next(model, s.time));
      s.expected.push_back(model.apply(s.ops.back(), s.time));
    }
    finish_step(s);
  }
  return t;
}

// The trace every test here shares, generated once per process.
const Trace& property_trace() {
  static const Trace trace = generate_trace(property_seed(), env_u64("CL_PROPERTY_OPS", kOpsDefault));
  return trace;
}

std::vector<OpOutcome> apply_step(Ledger& l, const Step& s) {
  auto r = l.apply(s.ops, s.time);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  REQUIRE(r->size() == s.ops.size());
  return std::move(*r);
}

// Journal entries [from, to), read page by page.
std::vector<JournalEntry> read_journal(const Ledger& l, uint64_t from, uint64_t to) {
  std::vector<JournalEntry> out;
  while (from < to) {
    auto page = l.journal(from, to - from);
    REQUIRE_MESSAGE(page.is_ok(), page.status().to_string());
    REQUIRE(!page->empty());
    from += page->size();
    for (auto& e : *page) out.push_back(std::move(e));
  }
  REQUIRE(from == to);
  return out;
}

// Every wallet state the trace's ids name (absent ones as nullopt).
std::vector<std::optional<WalletState>> wallet_states(const Ledger& l, const std::vector<WalletId>& ids) {
  std::vector<std::optional<WalletState>> out;
  for (const auto& id : ids) {
    auto w = l.wallet(id);
    REQUIRE_MESSAGE(w.is_ok(), w.status().to_string());
    out.push_back(*w);
  }
  return out;
}

// Compares one batch's outcomes with the model's predictions; returns the
// number of mismatches and reports the first few.
size_t compare_outcomes(const Step& s, const std::vector<OpOutcome>& got) {
  size_t mismatches = 0;
  for (size_t i = 0; i < s.ops.size(); ++i) {
    const Expected& want = s.expected[i];
    const OpOutcome& o = got[i];
    bool same = o.code == want.code && (o.code != Code::kOk || same_receipt(o.receipt, want.receipt));
    if (same) continue;
    if (++mismatches <= 5) {
      INFO("op ", i, " of the batch at time ", s.time, ": ", s.ops[i].jcs);
      INFO("ledger: ", code_name(o.code), " ", o.detail, o.code == Code::kOk ? " " + describe(o.receipt) : "");
      INFO("model: ", code_name(want.code), want.code == Code::kOk ? " " + describe(want.receipt) : "");
      FAIL_CHECK("the ledger's outcome differs from the model's");
    }
  }
  return mismatches;
}

// The ids of the journal so far, and the payout references it holds.
struct JournalIndex {
  std::set<OpId> ids;
  std::set<std::pair<std::string, std::string>> references;
  uint64_t size = 0;
};

// Reads the entries the last batch appended and checks them: exactly the
// ops the model accepted (not replays), in order, each id and each payout
// reference appearing once in the whole journal.
void check_new_entries(const Ledger& l, const Step& s, JournalIndex* index) {
  std::vector<std::string> want;
  for (size_t i = 0; i < s.ops.size(); ++i)
    if (s.expected[i].code == Code::kOk && !s.expected[i].receipt.replay)
      want.push_back(entry_bytes(s.expected[i].receipt.index, s.time, s.ops[i].jcs));
  REQUIRE(l.head().size == index->size + want.size());
  auto entries = read_journal(l, index->size, l.head().size);
  for (size_t k = 0; k < entries.size(); ++k) {
    const JournalEntry& e = entries[k];
    INFO("journal entry ", e.index);
    CHECK(e.bytes == want[k]);
    CHECK(e.time == s.time);
    auto doc = parse_json_strict(e.bytes);
    REQUIRE_MESSAGE(doc.is_ok(), doc.status().to_string());
    const Json& body = (*doc)["op"]["body"];
    auto id = id_from_hex(body["id"].get<std::string>());
    REQUIRE(id.has_value());
    CHECK_MESSAGE(index->ids.insert(*id).second, "op id ", id_hex(*id), " is journaled twice");
    if (body["type"] == "payout") {
      auto ref = std::make_pair(body["program"].get<std::string>(), body["reference"].get<std::string>());
      CHECK_MESSAGE(index->references.insert(ref).second, "payout (", ref.first, ", ", ref.second, ") is journaled twice");
    }
  }
  index->size += entries.size();
}

// Σ balances = outstanding supply, no balance above its limit, and every
// wallet exactly as the model has it.
void check_wallets(const Ledger& l, const Trace& t, const Step& s) {
  LedgerHead head = l.head();
  CHECK(head.supply.issued == s.supply_after.issued);
  CHECK(head.supply.redeemed == s.supply_after.redeemed);
  CHECK(sum_balances(l, t.wallet_ids) == head.supply.outstanding());
  auto states = wallet_states(l, t.wallet_ids);
  for (size_t i = 0; i < t.wallet_ids.size(); ++i) {
    const auto& got = states[i];
    if (got) CHECK(got->balance <= got->max_balance.value_or(kAmountMax));
    auto it = s.wallets_after.find(t.wallet_ids[i]);
    std::optional<WalletState> want;
    if (it != s.wallets_after.end()) want = it->second;
    bool same = got.has_value() == want.has_value() && (!got || same_state(*got, *want));
    CHECK_MESSAGE(same, "wallet ", id_hex(t.wallet_ids[i]), ": ledger ", describe(got), ", model ", describe(want));
  }
}

std::unique_ptr<Ledger> apply_trace(const std::string& dir, const Trace& t) {
  auto l = open_ledger(dir);
  for (const Step& s : t.steps) apply_step(*l, s);
  return l;
}

TEST_CASE("a random mix of valid and invalid ops matches the reference model and keeps every invariant") {
  const Trace& t = property_trace();
  MESSAGE("seed ", t.seed, " (CL_SEED to reproduce): ", t.ops, " ops in ", t.steps.size(), " batches");
  INFO("seed ", t.seed);
  std::map<Code, size_t> codes;
  size_t replays = 0;
  for (const Step& s : t.steps)
    for (const Expected& e : s.expected) {
      ++codes[e.code];
      replays += e.code == Code::kOk && e.receipt.replay;
    }
  std::string mix;
  for (const auto& [code, n] : codes) mix += std::string(code_name(code)) + " " + std::to_string(n) + ", ";
  MESSAGE("expected outcomes: ", mix, "of which replays ", replays);
  // The mix must actually exercise what it claims to.
  for (Code c : {Code::kOk, Code::kUnknownWallet, Code::kWalletExists, Code::kWalletFrozen, Code::kInsufficientFunds,
                 Code::kBalanceLimitExceeded, Code::kNotAuthorized, Code::kReferenceUsed, Code::kExpired,
                 Code::kInvalidAmount, Code::kSameWallet, Code::kIdConflict, Code::kWrongChain})
    CHECK_MESSAGE(codes[c] > 0, "the trace never produced ", code_name(c));
  CHECK(replays > 0);
  CHECK(t.ops >= 5000);

  TempDir dir;
  auto l = open_ledger(dir.sub("ledger"));
  JournalIndex index;
  for (size_t k = 0; k < t.steps.size(); ++k) {
    const Step& s = t.steps[k];
    INFO("batch ", k, " at time ", s.time, " with ", s.ops.size(), " ops");
    auto out = apply_step(*l, s);
    REQUIRE(compare_outcomes(s, out) == 0);
    check_new_entries(*l, s, &index);
    check_wallets(*l, t, s);
    REQUIRE(l->head().size == s.size_after);
  }
  // The whole journal, read again from the start, still holds each accepted
  // id exactly once, and the store passes its full consistency check.
  std::set<OpId> accepted;
  for (const Step& s : t.steps)
    for (const Expected& e : s.expected)
      if (e.code == Code::kOk && !e.receipt.replay) accepted.insert(e.receipt.id);
  auto entries = read_journal(*l, 0, l->head().size);
  std::multiset<OpId> journaled;
  for (const auto& e : entries) {
    auto doc = parse_json_strict(e.bytes);
    REQUIRE(doc.is_ok());
    journaled.insert(*id_from_hex((*doc)["op"]["body"]["id"].get<std::string>()));
  }
  CHECK(journaled.size() == accepted.size());
  CHECK(std::set<OpId>(journaled.begin(), journaled.end()) == accepted);
  CHECK(l->check(/*full=*/true).to_string() == "ok");
}

TEST_CASE("replicas fed the same batches, one restarted midway, hold byte-identical journals, roots, outcomes and wallets") {
  const Trace& t = property_trace();
  INFO("seed ", t.seed);
  TempDir dir;
  auto a = open_ledger(dir.sub("a"));
  // Replica b keeps almost no wallets cached: the cache must not show in results.
  LedgerOptions tiny_cache;
  tiny_cache.wallet_cache_max = 2;
  auto b = open_ledger(dir.sub("b"), tiny_cache);
  auto c = open_ledger(dir.sub("c"));
  // Ledger c is closed and reopened in the middle of the sequence.
  size_t reopen_after = t.steps.size() / 2;
  for (size_t k = 0; k < t.steps.size(); ++k) {
    INFO("batch ", k);
    auto out_a = apply_step(*a, t.steps[k]);
    auto out_b = apply_step(*b, t.steps[k]);
    auto out_c = apply_step(*c, t.steps[k]);
    for (size_t i = 0; i < out_a.size(); ++i) {
      for (const auto* other : {&out_b[i], &out_c[i]}) {
        bool same = out_a[i].code == other->code && out_a[i].detail == other->detail &&
                    same_receipt(out_a[i].receipt, other->receipt);
        if (!same) {
          INFO("op ", i, ": ", code_name(out_a[i].code), " ", out_a[i].detail, " vs ", code_name(other->code), " ",
               other->detail);
          REQUIRE_MESSAGE(same, "replicas disagree on an outcome");
        }
      }
    }
    if (k == reopen_after) {
      c.reset();
      c = open_ledger(dir.sub("c"));
      REQUIRE(c->head().root == a->head().root);
    }
  }
  LedgerHead ha = a->head(), hb = b->head(), hc = c->head();
  CHECK(ha.size == hb.size);
  CHECK(ha.size == hc.size);
  CHECK(ha.root == hb.root);
  CHECK(ha.root == hc.root);
  CHECK(ha.last_time == hc.last_time);
  CHECK(ha.supply.issued == hc.supply.issued);
  CHECK(ha.supply.redeemed == hc.supply.redeemed);
  auto ja = read_journal(*a, 0, ha.size);
  auto jb = read_journal(*b, 0, hb.size);
  auto jc = read_journal(*c, 0, hc.size);
  REQUIRE(ja.size() == jb.size());
  REQUIRE(ja.size() == jc.size());
  size_t differing = 0;
  for (size_t i = 0; i < ja.size(); ++i)
    differing += ja[i].bytes != jb[i].bytes || ja[i].bytes != jc[i].bytes;
  CHECK(differing == 0);
  auto wa = wallet_states(*a, t.wallet_ids);
  auto wb = wallet_states(*b, t.wallet_ids);
  auto wc = wallet_states(*c, t.wallet_ids);
  for (size_t i = 0; i < wa.size(); ++i) {
    INFO("wallet ", id_hex(t.wallet_ids[i]), ": ", describe(wa[i]), " / ", describe(wb[i]), " / ", describe(wc[i]));
    CHECK(wa[i].has_value() == wb[i].has_value());
    CHECK(wa[i].has_value() == wc[i].has_value());
    if (wa[i] && wb[i]) CHECK(same_state(*wa[i], *wb[i]));
    if (wa[i] && wc[i]) CHECK(same_state(*wa[i], *wc[i]));
  }
}

TEST_CASE("an auditor's replay of the property ledger, signatures verified, reaches the same root and state") {
  const Trace& t = property_trace();
  INFO("seed ", t.seed);
  TempDir dir;
  auto source = apply_trace(dir.sub("source"), t);
  auto target = open_ledger(dir.sub("target"));
  Status s = replay_ledger(*source, target.get(), /*verify_signatures=*/true);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  LedgerHead hs = source->head(), ht = target->head();
  CHECK(ht.size == hs.size);
  CHECK(ht.root == hs.root);
  CHECK(ht.last_time == hs.last_time);  // the trace's last batch journaled something
  CHECK(ht.supply.issued == hs.supply.issued);
  CHECK(ht.supply.redeemed == hs.supply.redeemed);
  auto ws = wallet_states(*source, t.wallet_ids);
  auto wt = wallet_states(*target, t.wallet_ids);
  for (size_t i = 0; i < ws.size(); ++i) {
    INFO("wallet ", id_hex(t.wallet_ids[i]), ": ", describe(ws[i]), " / ", describe(wt[i]));
    CHECK(ws[i].has_value() == wt[i].has_value());
    if (ws[i] && wt[i]) CHECK(same_state(*ws[i], *wt[i]));
  }
  CHECK(target->check(/*full=*/true).to_string() == "ok");
}

TEST_CASE("an audit_only ledger decides every op as the model does and, written back, holds every wallet") {
  const Trace& t = property_trace();
  INFO("seed ", t.seed);
  TempDir dir;
  auto full = apply_trace(dir.sub("full"), t);
  LedgerOptions o;
  o.audit_only = true;
  SUBCASE("a wallet cache of 2: written back at almost every batch") { o.wallet_cache_max = 2; }
  SUBCASE("the default wallet cache: written back once, at the end") {}
  INFO("wallet_cache_max ", o.wallet_cache_max);
  auto l = open_ledger(dir.sub("audit"), o);
  size_t mismatches = 0;
  for (size_t k = 0; k < t.steps.size(); ++k) {
    INFO("batch ", k);
    const Step& s = t.steps[k];
    mismatches += compare_outcomes(s, apply_step(*l, s));
    REQUIRE(mismatches == 0);
    REQUIRE(l->head().size == s.size_after);
    if (k % 16 == 0 || k + 1 == t.steps.size()) {
      REQUIRE(l->write_back().to_string() == "ok");
      check_wallets(*l, t, s);
      REQUIRE(l->check(/*full=*/false).to_string() == "ok");
    }
  }
  LedgerHead hf = full->head(), ha = l->head();
  CHECK(ha.size == hf.size);
  CHECK(ha.root == hf.root);
  CHECK(ha.last_time == hf.last_time);
  CHECK(l->check(/*full=*/true).to_string() == "ok");
  // What an auditor reads back: roots, proofs, entry times, receipts.
  auto journal = read_journal(*full, 0, hf.size);
  for (uint64_t size = 0; size <= hf.size; size += 1 + size / 3) {
    INFO("tree_size ", size);
    CHECK(*l->root_at(size) == *full->root_at(size));
    if (size > 0) {
      CHECK(*l->time_of(size - 1) == journal[size - 1].time);
      CHECK(*l->inclusion_proof(size / 2, size) == *full->inclusion_proof(size / 2, size));
      CHECK(*l->consistency_proof(size / 2, size) == *full->consistency_proof(size / 2, size));
    }
  }
  CHECK(l->time_of(hf.size).status().code() == "invalid");
  for (size_t i = 0; i < journal.size(); i += 97) {
    auto doc = parse_json_strict(journal[i].bytes);
    REQUIRE(doc.is_ok());
    OpId id = *id_from_hex((*doc)["op"]["body"]["id"].get<std::string>());
    auto rf = full->receipt(id), ra = l->receipt(id);
    REQUIRE(rf.is_ok());
    REQUIRE(ra.is_ok());
    REQUIRE(ra->has_value());
    CHECK(same_receipt(**ra, **rf));
  }
  // It keeps no entry bytes and no wallet index, and says so.
  CHECK(l->journal(0, 1).status().code() == "invalid");
  CHECK(l->wallet_entries(t.wallet_ids[0], std::nullopt, 10).status().code() == "invalid");
  // Written back, it reopens as audit_only only.
  l.reset();
  CHECK(Ledger::open(dir.sub("audit"), test_genesis(), LedgerOptions{.sync = false}).status().code() == "mismatch");
  auto reopened = Ledger::open(dir.sub("audit"), test_genesis(), o);
  REQUIRE_MESSAGE(reopened.is_ok(), reopened.status().to_string());
  CHECK((*reopened)->head().root == hf.root);
  reopened->reset();
  CHECK(Ledger::open(dir.sub("full2"), test_genesis(), o).is_ok());
  full.reset();
  CHECK(Ledger::open(dir.sub("full"), test_genesis(), o).status().code() == "mismatch");
}

// The journal as `cityledger export` writes it, one line per entry.
std::vector<std::string> exported_lines(const Ledger& l) {
  std::vector<std::string> lines;
  for (const auto& e : read_journal(l, 0, l.head().size)) lines.push_back(journal_line(e.bytes, e.leaf_hash));
  return lines;
}

// Audits "lines" with small chunks (so that many overlap) and returns the
// status of finish(), or of the first failing add_line().
Status audit(const std::vector<std::string>& lines, std::unique_ptr<Auditor>* out = nullptr) {
  AuditOptions o;
  o.threads = 3;
  o.chunk_entries = 97;
  auto a = Auditor::open(test_genesis(), o);
  REQUIRE_MESSAGE(a.is_ok(), a.status().to_string());
  Status s = Status::ok();
  for (const auto& line : lines) {
    s = (*a)->add_line(line);
    if (!s) break;
  }
  if (s) s = (*a)->finish();
  if (out) *out = std::move(*a);
  return s;
}

TEST_CASE("the auditor replays the property ledger's export to its root and supply, and checks checkpoints against it") {
  const Trace& t = property_trace();
  INFO("seed ", t.seed);
  TempDir dir;
  auto source = apply_trace(dir.sub("source"), t);
  std::vector<std::string> lines = exported_lines(*source);
  SUBCASE("as exported") {}
  SUBCASE("some lines in other valid spellings (the strict path)") {
    for (size_t i = 0; i < lines.size(); i += 5) {
      Json doc = Json::parse(lines[i]);
      if (i % 3 == 0) doc.erase("leaf_hash");  // optional
      lines[i] = i % 2 == 0 ? doc.dump(1) : doc.dump();
      if (i % 10 == 5) lines[i] += "\r";
    }
  }
  std::unique_ptr<Auditor> a;
  Status s = audit(lines, &a);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  LedgerHead hs = source->head(), ha = a->ledger().head();
  CHECK(a->entries() == hs.size);
  CHECK(ha.root == hs.root);
  CHECK(ha.supply.issued == hs.supply.issued);
  CHECK(ha.supply.redeemed == hs.supply.redeemed);
  auto journal = read_journal(*source, 0, hs.size);
  for (uint64_t size : {uint64_t{0}, uint64_t{1}, hs.size / 3, hs.size - 1, hs.size}) {
    INFO("tree_size ", size);
    Checkpoint cp{test_genesis().chain, size, *source->root_at(size), size ? journal[size - 1].time : 0, {}};
    cp.signatures = {sign_checkpoint(cp, 1, authorities().node)};
    CHECK(a->check_checkpoint(cp).to_string() == "ok");
    bool confirmed = false;
    CHECK(a->check_checkpoint(cp, &confirmed).to_string() == "ok");
    CHECK(confirmed);  // one node in this genesis: its signature is a majority
    // Unsigned is never merely "unconfirmed".
    Checkpoint unsigned_cp = cp;
    unsigned_cp.signatures.clear();
    CHECK(!a->check_checkpoint(unsigned_cp).is_ok());
    CHECK(!a->check_checkpoint(unsigned_cp, &confirmed).is_ok());
    Checkpoint wrong_time = cp;
    wrong_time.time += 1;
    wrong_time.signatures = {sign_checkpoint(wrong_time, 1, authorities().node)};
    CHECK(a->check_checkpoint(wrong_time).message().find("checkpoint tree_size " + std::to_string(size) + ": time") == 0);
    if (size == 0) continue;
    Checkpoint wrong_root = cp;
    wrong_root.root = *source->root_at(size - 1);
    wrong_root.signatures = {sign_checkpoint(wrong_root, 1, authorities().node)};
    CHECK(a->check_checkpoint(wrong_root).message().find("differs from the replayed journal's root") != std::string::npos);
  }
}

TEST_CASE("the auditor names the first bad line with the reason the strict path gives") {
  const Trace& t = property_trace();
  TempDir dir;
  auto source = apply_trace(dir.sub("source"), t);
  const std::vector<std::string> good = exported_lines(*source);
  REQUIRE(good.size() > 1000);
  const size_t k = good.size() / 2 + 3;
  // Re-exports "line" with the leaf hash its (altered) content has.
  auto rehash = [](const std::string& line) {
    Json doc = Json::parse(line);
    doc.erase("leaf_hash");
    std::string bytes = jcs(doc);
    return journal_line(bytes, merkle::leaf_hash(bytes));
  };
  auto with = [&](std::string line) {
    std::vector<std::string> lines = good;
    lines[k] = std::move(line);
    return lines;
  };
  Json doc = Json::parse(good[k]);
  std::string sig = doc["op"]["signatures"][0]["sig"].get<std::string>();
  std::string forged = good[k];
  forged.replace(forged.find(sig), 1, sig[0] == '0' ? "1" : "0");
  Json extra = doc;
  extra["note"] = "x";
  Json moved = doc;
  moved["index"] = k + 1;
  std::string key = "\"index\":" + std::to_string(k);
  struct Case {
    std::string name;
    std::vector<std::string> lines;
    std::string reason;
  };
  std::vector<Case> cases = {
      {"a signature altered", with(forged), "leaf_hash does not match the entry's content"},
      {"a signature altered, the leaf hash recomputed", with(rehash(forged)),
       "a signature does not verify (forged or altered op)"},
      {"not JSON", with(good[k].substr(0, good[k].size() - 1)), "not valid JSON: "},
      {"an extra field", with(extra.dump()), "has a field other than index, time, op, leaf_hash: \"note\""},
      {"an index off by one", with(moved.dump()), "index field " + std::to_string(k + 1) + " is not its position"},
      {"a duplicate key", with(std::string(good[k]).replace(0, key.size(), key + "," + key)), "not valid JSON: "},
      {"a line removed", [&] {
         std::vector<std::string> lines = good;
         lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(k));
         return lines;
       }(), "index field " + std::to_string(k + 1) + " is not its position"},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    Status s = audit(c.lines);
    CHECK(s.code() == "corruption");
    CHECK_MESSAGE(s.message().find("entry " + std::to_string(k) + ": " + c.reason) == 0, s.message());
  }
}

// A batch that journals nothing still advances last_time; the store must reopen.
TEST_CASE("a ledger whose last batch journaled nothing passes its checks and reopens") {
  TempDir dir;
  OpFactory f;
  const WalletId w = make_id(1, 0x11);
  const KeyPair owner = seed_key(0x21);
  const Envelope open = f.open_wallet(w, owner);
  std::vector<Envelope> last_batch;
  SUBCASE("every op rejected") { last_batch = {f.redeem(w, owner, 5)}; }
  SUBCASE("every op a replay") { last_batch = {open}; }
  SUBCASE("no ops") {}
  {
    auto l = open_ledger(dir.sub("l"));
    REQUIRE(apply_one(*l, open).code == Code::kOk);
    auto out = apply(*l, last_batch);
    for (const auto& o : out) CHECK((o.code != Code::kOk || o.receipt.replay));
    CHECK(l->check(/*full=*/false).to_string() == "ok");
  }
  auto reopened = Ledger::open(dir.sub("l"), test_genesis(), LedgerOptions{.sync = false});
  CHECK_MESSAGE(reopened.is_ok(), reopened.status().to_string());
}

}  // namespace
}  // namespace cl::test
