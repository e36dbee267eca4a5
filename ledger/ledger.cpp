#include "ledger/ledger.h"

#include <rocksdb/db.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <unordered_map>

#include "common/hex.h"
#include "ledger/merkle.h"

namespace cl {
namespace {

std::string id_bytes(const Id128& id) { return std::string(reinterpret_cast<const char*>(id.data()), id.size()); }

Status io_error(const rocksdb::Status& s, const std::string& what) {
  return Status::error("io", what + ": " + s.ToString());
}

OpOutcome reject(Code code, std::string detail) { return OpOutcome{code, std::move(detail), {}}; }

}  // namespace

std::string entry_bytes(uint64_t index, uint64_t time, std::string_view envelope_jcs) {
  std::string out;
  out.reserve(envelope_jcs.size() + 48);
  char buf[24];
  out.append("{\"index\":");
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), index).ptr);
  out.append(",\"op\":").append(envelope_jcs).append(",\"time\":");
  out.append(buf, std::to_chars(buf, buf + sizeof(buf), time).ptr);
  out.push_back('}');
  return out;
}

Hash entry_leaf_hash(uint64_t index, uint64_t time, std::string_view envelope_jcs) {
  char buf[24];
  Sha256 h;
  const uint8_t leaf_prefix = 0x00;  // RFC 9162 leaf: SHA-256(0x00 || entry bytes)
  h.update(&leaf_prefix, 1);
  h.update("{\"index\":");
  h.update(std::string_view(buf, std::to_chars(buf, buf + sizeof(buf), index).ptr - buf));
  h.update(",\"op\":");
  h.update(envelope_jcs);
  h.update(",\"time\":");
  h.update(std::string_view(buf, std::to_chars(buf, buf + sizeof(buf), time).ptr - buf));
  h.update("}");
  return h.finish();
}

std::string journal_line(std::string_view entry_bytes, const Hash& leaf_hash) {
  auto at = entry_bytes.find(",\"op\":");
  CL_CHECK_MSG(at != std::string_view::npos, "not an entry's bytes");
  std::string out;
  out.reserve(entry_bytes.size() + 80);
  out.append(entry_bytes.substr(0, at + 1)).append("\"leaf_hash\":\"").append(to_hex(leaf_hash)).append("\",");
  out.append(entry_bytes.substr(at + 1));
  return out;
}

std::optional<uint64_t> entry_time(std::string_view bytes) {
  constexpr std::string_view kKey = ",\"time\":";
  auto pos = bytes.rfind(kKey);
  if (pos == std::string_view::npos || bytes.empty() || bytes.back() != '}') return std::nullopt;
  const char* first = bytes.data() + pos + kKey.size();
  const char* last = bytes.data() + bytes.size() - 1;
  uint64_t t = 0;
  auto [p, ec] = std::from_chars(first, last, t);
  if (ec != std::errc() || p != last) return std::nullopt;
  return t;
}

namespace {
// An unsigned integer as JCS writes it ("0", or digits without a leading
// zero, within 64 bits) at the start of "text"; sets *used to its length.
bool canonical_u64(std::string_view text, uint64_t* out, size_t* used) {
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  *used = static_cast<size_t>(p - text.data());
  return ec == std::errc() && (*used == 1 || text[0] != '0');
}
}  // namespace

std::optional<CanonicalLine> decode_journal_line_canonical(std::string_view line) {
  // {"index":I,"leaf_hash":"H","op":ENVELOPE,"time":T}: the entry's bytes are
  // the line without ,"leaf_hash":"H".
  constexpr std::string_view kIndex = "{\"index\":", kLeaf = ",\"leaf_hash\":\"", kOp = "\",\"op\":",
                             kTime = ",\"time\":";
  CanonicalLine out;
  size_t used = 0;
  if (!line.starts_with(kIndex) || !canonical_u64(line.substr(kIndex.size()), &out.index, &used)) return std::nullopt;
  size_t leaf_at = kIndex.size() + used;  // where the entry's bytes resume at "op_at"
  std::string_view rest = line.substr(leaf_at);
  if (!rest.starts_with(kLeaf) || rest.size() < kLeaf.size() + 64 + kOp.size()) return std::nullopt;
  std::string_view claimed = rest.substr(kLeaf.size(), 64);
  rest.remove_prefix(kLeaf.size() + 64);
  if (!rest.starts_with(kOp)) return std::nullopt;
  size_t op_at = line.size() - rest.size() + 1;  // at ,"op":
  // The envelope ends where the last ,"time": begins (one inside a string
  // of the envelope comes before it).
  size_t env_at = op_at + kOp.size() - 1, time_at = line.rfind(kTime);
  if (time_at == std::string_view::npos || time_at < env_at || line.back() != '}') return std::nullopt;
  std::string_view time_text = line.substr(time_at + kTime.size(), line.size() - 1 - time_at - kTime.size());
  if (!canonical_u64(time_text, &out.time, &used) || used != time_text.size()) return std::nullopt;
  auto env = decode_envelope_canonical(line.substr(env_at, time_at - env_at));
  if (!env) return std::nullopt;
  Sha256 h;
  const uint8_t leaf_prefix = 0x00;  // RFC 9162 leaf: SHA-256(0x00 || entry bytes)
  h.update(&leaf_prefix, 1);
  h.update(line.substr(0, leaf_at));
  h.update(line.substr(op_at));
  out.leaf_hash = h.finish();
  // The one spelling of the hash: lowercase hex (as hex_decode requires).
  static constexpr char kDigits[] = "0123456789abcdef";
  char spelled[64];
  for (size_t i = 0; i < 32; ++i) {
    spelled[2 * i] = kDigits[out.leaf_hash[i] >> 4];
    spelled[2 * i + 1] = kDigits[out.leaf_hash[i] & 0x0F];
  }
  if (claimed != std::string_view(spelled, sizeof(spelled))) return std::nullopt;
  out.env = std::move(*env);
  return out;
}

// Reads Merkle nodes from RocksDB.  Leaves are not stored twice: a level-0
// node is the hash of the journal entry, read and hashed on demand (an
// audit_only store keeps the hash itself, in the entry's digest).
class Ledger::NodeReaderImpl : public merkle::NodeReader {
 public:
  explicit NodeReaderImpl(const Ledger* ledger) : l_(ledger) {}
  Result<Hash> node(uint32_t level, uint64_t index) const override {
    std::string value;
    if (level == 0 && l_->options_.audit_only) {
      auto d = l_->entry_digest(index);
      if (!d) return d.status();
      return d->leaf_hash;
    }
    if (level == 0) {
      auto s = l_->get(store::journal_key(index), &value);
      if (s.IsNotFound()) return Status::error("corruption", "journal entry " + std::to_string(index) + " missing");
      if (!s.ok()) return io_error(s, "read journal entry");
      return merkle::leaf_hash(value);
    }
    auto s = l_->get(store::tree_key(level, index), &value);
    if (s.IsNotFound())
      return Status::error("corruption", "missing Merkle node level " + std::to_string(level) + " index " +
                                             std::to_string(index));
    if (!s.ok()) return io_error(s, "read Merkle node");
    if (value.size() != 32) return Status::error("corruption", "Merkle node of wrong size");
    Hash h{};
    std::memcpy(h.data(), value.data(), 32);
    return h;
  }

 private:
  const Ledger* l_;
};

// One batch being applied: pending writes and the state they imply, so that
// later ops in the batch see earlier ones.  Nothing reaches the Ledger's
// in-memory state until the WriteBatch is durable.
class Ledger::Applier {
 public:
  Applier(Ledger* ledger, uint64_t time, uint64_t source_index)
      : l_(ledger), time_(time), meta_(ledger->meta_) {
    if (source_index != 0) meta_.source_index = source_index;
    auto f = merkle::Frontier::deserialize(meta_.frontier);
    CL_CHECK_MSG(f.is_ok(), "in-memory frontier failed to deserialize");
    frontier_ = std::move(*f);
  }

  Result<OpOutcome> apply_one(const Envelope& env);
  Status commit();
  std::unordered_map<WalletId, WalletState, Id128Hash>& dirty() { return dirty_; }
  const store::MetaState& meta() const { return meta_; }
  const merkle::Frontier& frontier() const { return frontier_; }

 private:
  struct PendingOp {
    store::OpRecord record;
    Hash leaf;
  };

  Result<std::optional<WalletState>> wallet(const WalletId& id);
  Result<std::optional<Receipt>> existing(const OpId& id, Hash* body_hash);
  Result<bool> reference_used(const OpBody& b);
  Result<OpOutcome> check_and_apply(const Envelope& env);
  Result<OpOutcome> apply_move(const Envelope& env);
  OpOutcome accept(const Envelope& env, std::initializer_list<const WalletId*> touched);
  static bool fits(const WalletState& w, uint64_t amount) {
    uint64_t limit = w.max_balance.value_or(kAmountMax);
    return w.balance <= limit && amount <= limit - w.balance;
  }

  Ledger* l_;
  uint64_t time_;
  store::MetaState meta_;
  merkle::Frontier frontier_;
  // Puts of this batch, inserted into the WriteBatch in key order at commit:
  // RocksDB's memtable skiplist inserts sorted keys several times faster
  // than random ones (it reuses the previous insert's position).
  std::vector<std::pair<std::string, std::string>> puts_;
  std::unordered_map<WalletId, WalletState, Id128Hash> dirty_;  // wallets changed by this batch
  std::unordered_map<OpId, PendingOp, Id128Hash> ops_;          // ops accepted in this batch
  std::set<std::string> references_;                           // reference keys taken in this batch
  std::vector<merkle::StoredNode> nodes_;
};

Result<std::optional<WalletState>> Ledger::Applier::wallet(const WalletId& id) {
  auto it = dirty_.find(id);
  if (it != dirty_.end()) return std::optional<WalletState>(it->second);
  return l_->wallet_for_apply(id);
}

Result<std::optional<Receipt>> Ledger::Applier::existing(const OpId& id, Hash* body_hash) {
  auto it = ops_.find(id);
  if (it != ops_.end()) {
    *body_hash = it->second.record.body_hash;
    return std::optional<Receipt>(Receipt{id, it->second.record.index, it->second.record.time, it->second.leaf, true});
  }
  std::string value;
  auto s = l_->get(store::op_key(id), &value);
  if (s.IsNotFound()) return std::optional<Receipt>();
  if (!s.ok()) return io_error(s, "read op record");
  auto rec = store::decode_op_record(value);
  if (!rec) return Status::error("corruption", "op record " + id_hex(id) + " is malformed");
  NodeReaderImpl reader(l_);
  auto leaf = reader.node(0, rec->index);
  if (!leaf) return leaf.status();
  *body_hash = rec->body_hash;
  return std::optional<Receipt>(Receipt{id, rec->index, rec->time, *leaf, true});
}

Result<bool> Ledger::Applier::reference_used(const OpBody& b) {
  std::string key = store::reference_key(b.program, b.reference);
  if (references_.count(key)) return true;
  std::string value;
  auto s = l_->get(key, &value);
  if (s.IsNotFound()) return false;
  if (!s.ok()) return io_error(s, "read payout reference");
  return true;
}

Result<OpOutcome> Ledger::Applier::apply_one(const Envelope& env) {
  const OpBody& b = env.body;
  if (b.chain != l_->genesis_.chain)
    return reject(Code::kWrongChain, "body.chain is \"" + b.chain + "\"; this ledger is \"" + l_->genesis_.chain + "\"");
  // Idempotency comes before expiry: a gate retrying an accepted fare after
  // its expiry must still get the original receipt.
  Hash original_body{};
  auto prior = existing(b.id, &original_body);
  if (!prior) return prior.status();
  if (prior->has_value()) {
    if (original_body != env.body_hash)
      return reject(Code::kIdConflict, "op " + id_hex(b.id) + " was accepted at index " +
                                           std::to_string((*prior)->index) + " with a different body");
    return OpOutcome{Code::kOk, "", **prior};
  }
  if (b.expires_at && time_ > *b.expires_at)
    return reject(Code::kExpired, "ledger time " + std::to_string(time_) + " is past expires_at " +
                                      std::to_string(*b.expires_at));
  return check_and_apply(env);
}

Result<OpOutcome> Ledger::Applier::check_and_apply(const Envelope& env) {
  const OpBody& b = env.body;
  const Genesis& g = l_->genesis_;
  switch (b.type) {
    case OpType::kOpenWallet: {
      bool by_registrar = false;
      for (const auto& s : env.signatures) by_registrar = by_registrar || g.is_registrar(s.key);
      if (!by_registrar) return reject(Code::kNotAuthorized, "open_wallet must be signed by a registrar");
      if (!env.signed_by(b.key)) return reject(Code::kNotAuthorized, "open_wallet must be signed by the new wallet's key");
      auto w = wallet(b.wallet);
      if (!w) return w.status();
      if (w->has_value()) return reject(Code::kWalletExists, "wallet " + id_hex(b.wallet) + " already exists");
      dirty_[b.wallet] = WalletState{b.kind, WalletStatus::kActive, b.key, 0, b.max_balance};
      return accept(env, {&b.wallet});
    }
    case OpType::kIssue: {
      if (!env.signed_by(g.issuer)) return reject(Code::kNotAuthorized, "issue must be signed by the issuer");
      auto w = wallet(b.to);
      if (!w) return w.status();
      if (!w->has_value()) return reject(Code::kUnknownWallet, "wallet " + id_hex(b.to) + " does not exist");
      WalletState to = **w;
      if (to.status == WalletStatus::kFrozen) return reject(Code::kWalletFrozen, "wallet " + id_hex(b.to) + " is frozen");
      if (b.amount > kAmountMax - meta_.issued + meta_.redeemed)
        return reject(Code::kInvalidAmount, "outstanding supply would exceed 2^53-1 kopecks");
      if (!fits(to, b.amount))
        return reject(Code::kBalanceLimitExceeded, "wallet " + id_hex(b.to) + " would exceed its balance limit");
      to.balance += b.amount;
      meta_.issued += b.amount;
      dirty_[b.to] = to;
      return accept(env, {&b.to});
    }
    case OpType::kRedeem: {
      auto w = wallet(b.from);
      if (!w) return w.status();
      if (!w->has_value()) return reject(Code::kUnknownWallet, "wallet " + id_hex(b.from) + " does not exist");
      WalletState from = **w;
      if (!env.signed_by(from.key)) return reject(Code::kNotAuthorized, "redeem must be signed by the wallet's key");
      if (from.status == WalletStatus::kFrozen) return reject(Code::kWalletFrozen, "wallet " + id_hex(b.from) + " is frozen");
      if (from.balance < b.amount)
        return reject(Code::kInsufficientFunds, "balance " + std::to_string(from.balance) + " < amount " + std::to_string(b.amount));
      from.balance -= b.amount;
      meta_.redeemed += b.amount;
      dirty_[b.from] = from;
      return accept(env, {&b.from});
    }
    case OpType::kTransfer:
    case OpType::kFare:
    case OpType::kPayout:
      return apply_move(env);
    case OpType::kFreeze:
    case OpType::kUnfreeze:
    case OpType::kRotateKey: {
      bool by_registrar = false;
      for (const auto& s : env.signatures) by_registrar = by_registrar || g.is_registrar(s.key);
      if (!by_registrar) return reject(Code::kNotAuthorized, std::string(op_type_name(b.type)) + " must be signed by a registrar");
      auto w = wallet(b.wallet);
      if (!w) return w.status();
      if (!w->has_value()) return reject(Code::kUnknownWallet, "wallet " + id_hex(b.wallet) + " does not exist");
      WalletState st = **w;
      if (b.type == OpType::kFreeze) st.status = WalletStatus::kFrozen;
      else if (b.type == OpType::kUnfreeze) st.status = WalletStatus::kActive;
      else st.key = b.key;
      dirty_[b.wallet] = st;
      return accept(env, {&b.wallet});
    }
  }
  return reject(Code::kMalformed, "unknown op type");
}

// transfer, fare and payout: move amount from one wallet to another.
Result<OpOutcome> Ledger::Applier::apply_move(const Envelope& env) {
  const OpBody& b = env.body;
  auto wf = wallet(b.from);
  if (!wf) return wf.status();
  if (!wf->has_value()) return reject(Code::kUnknownWallet, "wallet " + id_hex(b.from) + " does not exist");
  WalletState from = **wf;
  if (!env.signed_by(from.key))
    return reject(Code::kNotAuthorized, std::string(op_type_name(b.type)) + " must be signed by the paying wallet's key");
  if (b.from == b.to) return reject(Code::kSameWallet, "from and to are the same wallet");
  auto wt = wallet(b.to);
  if (!wt) return wt.status();
  if (!wt->has_value()) return reject(Code::kUnknownWallet, "wallet " + id_hex(b.to) + " does not exist");
  WalletState to = **wt;
  if (b.type == OpType::kFare && to.kind != WalletKind::kTransit)
    return reject(Code::kNotAuthorized, "a fare must be paid to a transit wallet");
  if (b.type == OpType::kPayout && from.kind != WalletKind::kAgency)
    return reject(Code::kNotAuthorized, "a payout must be paid from an agency wallet");
  if (from.status == WalletStatus::kFrozen) return reject(Code::kWalletFrozen, "wallet " + id_hex(b.from) + " is frozen");
  if (to.status == WalletStatus::kFrozen) return reject(Code::kWalletFrozen, "wallet " + id_hex(b.to) + " is frozen");
  if (b.type == OpType::kPayout) {
    auto used = reference_used(b);
    if (!used) return used.status();
    if (*used) return reject(Code::kReferenceUsed, "program \"" + b.program + "\" reference \"" + b.reference + "\" was already paid");
  }
  if (from.balance < b.amount)
    return reject(Code::kInsufficientFunds, "balance " + std::to_string(from.balance) + " < amount " + std::to_string(b.amount));
  if (!fits(to, b.amount))
    return reject(Code::kBalanceLimitExceeded, "wallet " + id_hex(b.to) + " would exceed its balance limit");
  from.balance -= b.amount;
  to.balance += b.amount;
  dirty_[b.from] = from;
  dirty_[b.to] = to;
  if (b.type == OpType::kPayout) {
    std::string key = store::reference_key(b.program, b.reference);
    references_.insert(key);
    puts_.emplace_back(key, id_bytes(b.id));
  }
  return accept(env, {&b.from, &b.to});
}

// Journals an op that passed every check.
OpOutcome Ledger::Applier::accept(const Envelope& env, std::initializer_list<const WalletId*> touched) {
  uint64_t index = meta_.size++;
  // audit_only stores only the hash of the entry: no need to build its bytes.
  std::string bytes = l_->options_.audit_only ? std::string() : entry_bytes(index, time_, env.jcs);
  Hash leaf = l_->options_.audit_only ? entry_leaf_hash(index, time_, env.jcs) : merkle::leaf_hash(bytes);
  nodes_.clear();
  frontier_.append(leaf, &nodes_);
  CL_CHECK(frontier_.size() == meta_.size);
  if (l_->options_.audit_only)
    puts_.emplace_back(store::entry_digest_key(index), store::encode_entry_digest({leaf, time_}));
  else
    puts_.emplace_back(store::journal_key(index), std::move(bytes));
  for (const auto& n : nodes_)
    if (n.level > 0) puts_.emplace_back(store::tree_key(n.level, n.index),
                       std::string(reinterpret_cast<const char*>(n.hash.data()), n.hash.size()));
  store::OpRecord rec{index, time_, env.body_hash};
  puts_.emplace_back(store::op_key(env.body.id), store::encode_op_record(rec));
  if (!l_->options_.audit_only)
    for (const WalletId* w : touched) puts_.emplace_back(store::wallet_entry_key(*w, index), std::string());
  ops_[env.body.id] = PendingOp{rec, leaf};
  return OpOutcome{Code::kOk, "", Receipt{env.body.id, index, time_, leaf, false}};
}

Status Ledger::Applier::commit() {
  for (const auto& [id, w] : dirty_) {
    CL_CHECK(w.balance <= w.max_balance.value_or(kAmountMax));
    // audit_only: written back later, from the cache (Ledger::write_back).
    if (!l_->options_.audit_only) puts_.emplace_back(store::wallet_key(id), store::encode_wallet(w));
  }
  CL_CHECK(meta_.redeemed <= meta_.issued);
  meta_.last_time = time_;
  meta_.frontier = frontier_.serialize();
  puts_.emplace_back(std::string(store::kMetaState), store::encode_meta(meta_));
  // Sorted through pointers: cheaper to move than pairs of strings.
  std::vector<const std::pair<std::string, std::string>*> sorted;
  sorted.reserve(puts_.size());
  for (const auto& p : puts_) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  rocksdb::WriteBatch batch;
  for (size_t i = 0; i < sorted.size(); ++i) {
    CL_CHECK_MSG(i == 0 || sorted[i - 1]->first != sorted[i]->first, "one key written twice in a batch");
    CL_CHECK(batch.Put(l_->family(sorted[i]->first), sorted[i]->first, sorted[i]->second).ok());
  }
  rocksdb::WriteOptions wo;
  wo.sync = l_->options_.sync;
  wo.disableWAL = l_->options_.disable_wal;
  auto s = l_->db_->Write(wo, &batch);
  if (!s.ok()) return io_error(s, "write batch");
  return Status::ok();
}

// --- Ledger ---

Ledger::Ledger(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> families, Genesis genesis,
               LedgerOptions options)
    : db_(std::move(db)), families_(std::move(families)), genesis_(std::move(genesis)), options_(options) {
  CL_CHECK(families_.size() == store::kFamilies);
  if (options_.raft_log_is_wal) options_.disable_wal = true;
}

Ledger::~Ledger() {
  if (!db_) return;
  for (auto* f : families_) db_->DestroyColumnFamilyHandle(f).PermitUncheckedError();
  db_->Close().PermitUncheckedError();
}

rocksdb::ColumnFamilyHandle* Ledger::family(std::string_view key) const {
  return families_[store::family_index(key)];
}

rocksdb::Status Ledger::get(std::string_view key, std::string* value) const {
  return db_->Get(rocksdb::ReadOptions(), family(key), key, value);
}

namespace {
// Whether the store in "dir" (with these column families) holds no key at
// all; read-only, so it changes nothing.
// Whether these families of an open store hold no key at all.
Result<bool> families_empty(rocksdb::DB* db, const std::vector<rocksdb::ColumnFamilyHandle*>& families) {
  for (auto* f : families) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), f));
    it->SeekToFirst();
    if (!it->status().ok()) return io_error(it->status(), "scan ledger store");
    if (it->Valid()) return false;
  }
  return true;
}

// Same, for the store in "dir" with these families, opened read-only.
Result<bool> store_is_empty(const std::string& dir, const std::vector<std::string>& families) {
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const auto& name : families) descriptors.push_back({name, rocksdb::ColumnFamilyOptions()});
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::OpenForReadOnly(rocksdb::DBOptions(), dir, descriptors, &handles, &raw);
  if (!s.ok()) return io_error(s, "inspect ledger store " + dir);
  std::unique_ptr<rocksdb::DB> db(raw);
  auto empty = families_empty(db.get(), handles);
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  db->Close().PermitUncheckedError();
  return empty;
}
}  // namespace

Result<std::unique_ptr<Ledger>> Ledger::open(const std::string& dir, const Genesis& genesis,
                                             const LedgerOptions& options) {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  o.paranoid_checks = true;
  o.max_background_jobs = 2;
  o.bytes_per_sync = 1 << 20;
  o.wal_bytes_per_sync = 1 << 20;
  // Without a WAL, state and journal must reach disk together: a flush of
  // one family without the other would leave a torn ledger after a crash.
  if (options.raft_log_is_wal) o.atomic_flush = true;
  if (options.env) o.env = options.env;
  o.rate_limiter = options.background_writes;
  o.listeners = options.listeners;
  o.sst_file_manager = options.file_deletes;
  rocksdb::BlockBasedTableOptions t;
  t.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  t.whole_key_filtering = true;
  auto table = std::shared_ptr<rocksdb::TableFactory>(rocksdb::NewBlockBasedTableFactory(t));
  // State: random keys (op ids, wallets).  Small memtables keep skiplist
  // inserts cheap (measured with `cityledger bench apply`: 8 MiB is ~20%
  // faster than 64 MiB); memtable blooms make "is this op id new?" cheap.
  rocksdb::ColumnFamilyOptions state;
  state.table_factory = table;
  state.compression = rocksdb::kNoCompression;
  state.write_buffer_size = 8 << 20;
  state.max_write_buffer_number = 4;
  state.memtable_whole_key_filtering = true;
  state.memtable_prefix_bloom_size_ratio = 0.05;
  // Journal and Merkle nodes: append-only, increasing keys; files never
  // overlap, so compaction moves them instead of rewriting them.
  rocksdb::ColumnFamilyOptions journal;
  journal.table_factory = table;
  journal.compression = rocksdb::kNoCompression;
  journal.write_buffer_size = 32 << 20;
  // Headroom while a flush waits (its thread busy, or rate-limited): with
  // two memtables RocksDB stops all writes as soon as a second one fills.
  journal.max_write_buffer_number = 4;
  if (options.memtable_mib > 0) {
    state.write_buffer_size = options.memtable_mib << 20;
    journal.write_buffer_size = options.memtable_mib << 20;
  }
  // Merkle nodes: ~42 bytes per op.  A small memtable, so that with a WAL
  // (a single node) this family does not hold old WAL files alive long
  // after the others flushed.
  rocksdb::ColumnFamilyOptions tree = journal;
  tree.write_buffer_size = 4 << 20;
  // A store of another layout is refused before anything is created in it
  // (opening would add the missing families, and an older build could then
  // no longer open its own store).  A store missing families but holding no
  // data is one whose creation was interrupted: it is completed as usual.
  if (std::vector<std::string> existing; rocksdb::DB::ListColumnFamilies(o, dir, &existing).ok()) {
    std::string missing;
    for (std::string_view want : {std::string_view(store::kJournalFamily), store::kTreeFamily})
      if (missing.empty() && std::find(existing.begin(), existing.end(), want) == existing.end()) missing = want;
    if (!missing.empty()) {
      auto empty = store_is_empty(dir, existing);
      if (!empty) return empty.status();
      if (!*empty)
        return Status::error("mismatch", "ledger store " + dir + " has no \"" + missing +
                                             "\" column family (an older layout); this build reads \"" +
                                             std::string(store::kStoreFormat) + "\" (move the old data dir away)");
    }
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors = {
      {rocksdb::kDefaultColumnFamilyName, state},
      {std::string(store::kJournalFamily), journal},
      {std::string(store::kTreeFamily), tree}};
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, dir, descriptors, &handles, &raw);
  if (!s.ok()) return io_error(s, "open ledger store " + dir);
  std::unique_ptr<Ledger> l(new Ledger(std::unique_ptr<rocksdb::DB>(raw), std::move(handles), genesis, options));

  std::string stored;
  s = l->get(store::kMetaGenesis, &stored);
  if (s.IsNotFound()) {
    // Initialise only a store that is truly empty: a populated store that
    // lost its genesis record is corrupt, and must not be overwritten.
    auto empty = families_empty(l->db_.get(), l->families_);
    if (!empty) return empty.status();
    if (!*empty)
      return Status::error("corruption", "ledger store " + dir + " has data but no genesis record; refusing to open");
    rocksdb::WriteBatch b;
    CL_CHECK(b.Put(l->family(store::kMetaGenesis), store::kMetaGenesis, genesis.jcs).ok());
    CL_CHECK(b.Put(l->family(store::kMetaFormat), store::kMetaFormat, store::kStoreFormat).ok());
    if (options.audit_only) CL_CHECK(b.Put(l->family(store::kMetaAuditOnly), store::kMetaAuditOnly, "").ok());
    store::MetaState m;
    m.frontier = merkle::Frontier().serialize();
    CL_CHECK(b.Put(l->family(store::kMetaState), store::kMetaState, store::encode_meta(m)).ok());
    rocksdb::WriteOptions wo;
    wo.sync = options.sync;
    s = l->db_->Write(wo, &b);
    if (!s.ok()) return io_error(s, "initialise ledger store");
  } else if (!s.ok()) {
    return io_error(s, "read genesis");
  } else if (std::string format; !l->get(store::kMetaFormat, &format).ok() || format != store::kStoreFormat) {
    return Status::error("mismatch", "ledger store " + dir + " has format \"" + (format.empty() ? "unknown" : format) +
                                         "\"; this build reads \"" + std::string(store::kStoreFormat) +
                                         "\" (move the old data dir away)");
  } else if (stored != genesis.jcs) {
    return Status::error("mismatch", "ledger store " + dir + " was created with a different genesis (chain \"" +
                                         genesis.chain + "\" given); refusing to open");
  } else if (std::string marker; l->get(store::kMetaAuditOnly, &marker).ok() != options.audit_only) {
    // An audit replay's store lacks the wallet entry index; and an
    // audit_only ledger must not leave a full store's index incomplete.
    return Status::error("mismatch", "ledger store " + dir + (options.audit_only ? " is not" : " is") +
                                         " an audit replay's (audit_only) store; refusing to open");
  }
  Status st = l->load_and_check();
  if (!st) return st;
  return l;
}

Status Ledger::load_and_check() {
  std::string value;
  auto s = get(store::kMetaState, &value);
  if (!s.ok()) return Status::error("corruption", "ledger meta record missing: " + s.ToString());
  auto m = store::decode_meta(value);
  if (!m) return Status::error("corruption", "ledger meta record is malformed");
  meta_ = *m;
  Status st = check(/*full=*/false);
  if (!st) return st;
  auto f = merkle::Frontier::deserialize(meta_.frontier);
  std::lock_guard<std::mutex> lock(head_mu_);
  head_ = LedgerHead{meta_.size, meta_.last_time, meta_.source_index, f->root(), Supply{meta_.issued, meta_.redeemed}};
  return Status::ok();
}

Status Ledger::check(bool full) const {
  std::string value;
  auto s = get(store::kMetaState, &value);
  if (!s.ok()) return Status::error("corruption", "ledger meta record missing");
  auto m = store::decode_meta(value);
  if (!m) return Status::error("corruption", "ledger meta record is malformed");
  auto f = merkle::Frontier::deserialize(m->frontier);
  if (!f || f->size() != m->size)
    return Status::error("corruption", "Merkle frontier does not match journal size " + std::to_string(m->size));
  if (m->redeemed > m->issued) return Status::error("corruption", "redeemed exceeds issued");

  // The journal is dense: entry size-1 exists and nothing lies beyond it.
  // (An audit_only store holds entry digests instead of entries.)
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), families_[1]));
  char entry_prefix = options_.audit_only ? store::kEntryDigest : store::kJournal;
  it->Seek(options_.audit_only ? store::entry_digest_key(m->size) : store::journal_key(m->size));
  if (it->Valid() && it->key().size() > 0 && it->key()[0] == entry_prefix)
    return Status::error("corruption", "journal holds entries beyond its recorded size " + std::to_string(m->size));
  if (!it->status().ok()) return io_error(it->status(), "scan journal");
  NodeReaderImpl reader(this);
  if (m->size > 0) {
    std::optional<uint64_t> t;
    if (options_.audit_only) {
      auto d = entry_digest(m->size - 1);
      if (!d) return d.status();
      t = d->time;
    } else {
      std::string last;
      s = get(store::journal_key(m->size - 1), &last);
      if (!s.ok()) return Status::error("corruption", "journal entry " + std::to_string(m->size - 1) + " missing");
      t = entry_time(last);
    }
    // A batch that accepted nothing still advances last_time, so the last
    // entry's time may be older than it, never newer.
    if (!t || *t > m->last_time)
      return Status::error("corruption", "last journal entry's time is missing or later than the recorded ledger time");
  }
  // The frontier rebuilt from stored nodes (and, for an odd size, the last
  // entry's own hash) must give the recorded root; for an even size the last
  // entry is covered by the stored level-1 node of the last pair.
  auto loaded = merkle::Frontier::load(reader, m->size);
  if (!loaded) return loaded.status();
  if (loaded->root() != f->root())
    return Status::error("corruption", "stored Merkle nodes or the last journal entry disagree with the recorded root");
  uint64_t pairs = full ? m->size / 2 : std::min<uint64_t>(m->size / 2, 1);
  for (uint64_t p = m->size / 2 - pairs; p < m->size / 2; ++p) {
    auto left = reader.node(0, 2 * p);
    auto right = reader.node(0, 2 * p + 1);
    auto stored = reader.node(1, p);
    if (!left) return left.status();
    if (!right) return right.status();
    if (!stored) return stored.status();
    if (merkle::node_hash(*left, *right) != *stored)
      return Status::error("corruption", "journal entries " + std::to_string(2 * p) + ".." + std::to_string(2 * p + 1) +
                                             " do not match their stored Merkle node");
  }
  if (full) {
    // Every stored interior node above level 1 equals the hash of its children.
    for (uint32_t level = 2; level < 64 && (uint64_t{1} << level) <= m->size; ++level) {
      for (uint64_t i = 0; i < (m->size >> level); ++i) {
        auto left = reader.node(level - 1, 2 * i);
        auto right = reader.node(level - 1, 2 * i + 1);
        auto stored = reader.node(level, i);
        if (!left) return left.status();
        if (!right) return right.status();
        if (!stored) return stored.status();
        if (merkle::node_hash(*left, *right) != *stored)
          return Status::error("corruption", "Merkle node level " + std::to_string(level) + " index " +
                                                 std::to_string(i) + " does not match its children");
      }
    }
  }
  if (full || options_.verify_supply_on_open) {
    uint64_t sum = 0;
    std::string prefix(1, store::kWallet);
    it.reset(db_->NewIterator(rocksdb::ReadOptions(), families_[0]));
    for (it->Seek(prefix); it->Valid() && it->key()[0] == store::kWallet; it->Next()) {
      auto w = store::decode_wallet(it->value().ToStringView());
      if (!w) return Status::error("corruption", "wallet record " + hex_encode(it->key().ToStringView().substr(1)) + " is malformed");
      if (w->balance > kAmountMax - sum) return Status::error("corruption", "sum of balances overflows");
      sum += w->balance;
    }
    if (!it->status().ok()) return io_error(it->status(), "scan wallets");
    if (sum != m->issued - m->redeemed)
      return Status::error("corruption", "sum of balances " + std::to_string(sum) + " != issued − redeemed " +
                                             std::to_string(m->issued - m->redeemed));
  }
  return Status::ok();
}

Result<std::optional<WalletState>> Ledger::wallet_for_apply(const WalletId& id) {
  auto it = wallet_cache_.find(id);
  if (it != wallet_cache_.end()) return std::optional<WalletState>(it->second.state);
  // Not cached, so the stored state is the latest (audit_only empties the
  // cache only after writing it back).
  auto w = wallet(id);
  if (w && w->has_value()) {
    // audit_only: apply() empties a full cache, writing it back first.
    if (wallet_cache_.size() >= options_.wallet_cache_max && !options_.audit_only) wallet_cache_.clear();
    wallet_cache_.emplace(id, CachedWallet{**w, /*unwritten=*/false});
  }
  return w;
}

Status Ledger::write_back() {
  if (unwritten_ == 0) return Status::ok();
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<CachedWallet*> written;
  puts.reserve(unwritten_);
  written.reserve(unwritten_);
  for (auto& [id, c] : wallet_cache_) {
    if (!c.unwritten) continue;
    puts.emplace_back(store::wallet_key(id), store::encode_wallet(c.state));
    written.push_back(&c);
  }
  CL_CHECK_MSG(written.size() == unwritten_, "a wallet not written back left the cache");
  std::sort(puts.begin(), puts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  // Several WriteBatches when there are many: an audit_only store is a
  // scratch copy, so a write-back needs no atomicity (a failed one is
  // repeated whole by the next).
  constexpr size_t kWriteBackBatchMax = 65536;
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  wo.disableWAL = options_.disable_wal;
  for (size_t from = 0; from < puts.size(); from += kWriteBackBatchMax) {
    rocksdb::WriteBatch batch;
    for (size_t i = from; i < std::min(puts.size(), from + kWriteBackBatchMax); ++i)
      CL_CHECK(batch.Put(family(puts[i].first), puts[i].first, puts[i].second).ok());
    auto s = db_->Write(wo, &batch);
    if (!s.ok()) return io_error(s, "write back wallet states");
  }
  for (CachedWallet* c : written) c->unwritten = false;
  unwritten_ = 0;
  return Status::ok();
}

Result<std::vector<OpOutcome>> Ledger::apply(std::span<const Envelope> ops, uint64_t time, uint64_t source_index) {
  if (source_index != 0 && source_index <= meta_.source_index)
    return Status::error("invalid", "source index " + std::to_string(source_index) + " must exceed " +
                                        std::to_string(meta_.source_index));
  if (time <= meta_.last_time || time < 1 || time > kTimeMax)
    return Status::error("invalid", "ledger time " + std::to_string(time) + " must exceed the last batch's " +
                                        std::to_string(meta_.last_time));
  if (ops.size() > kApplyBatchOpsMax)
    return Status::error("invalid", "batch of " + std::to_string(ops.size()) + " ops exceeds " +
                                        std::to_string(kApplyBatchOpsMax));
  Applier a(this, time, source_index);
  std::vector<OpOutcome> out;
  out.reserve(ops.size());
  for (const Envelope& env : ops) {
    auto r = a.apply_one(env);
    if (!r) return r.status();
    out.push_back(std::move(*r));
  }
  if (options_.audit_only && wallet_cache_.size() >= options_.wallet_cache_max) {
    // The states of the batches before this one: nothing of this batch yet.
    Status wb = write_back();
    if (!wb) return wb;
    wallet_cache_.clear();
  }
  Status s = a.commit();
  if (!s) return s;
  // Durable: now publish to memory.
  meta_ = a.meta();
  for (auto& [id, w] : a.dirty()) {
    if (wallet_cache_.size() >= options_.wallet_cache_max && !options_.audit_only) wallet_cache_.clear();
    CachedWallet& c = wallet_cache_[id];
    c.state = w;
    if (options_.audit_only && !c.unwritten) {
      c.unwritten = true;
      ++unwritten_;
    }
  }
  std::lock_guard<std::mutex> lock(head_mu_);
  head_ = LedgerHead{meta_.size, meta_.last_time, meta_.source_index, a.frontier().root(),
                     Supply{meta_.issued, meta_.redeemed}};
  return out;
}

Status Ledger::advance_to(uint64_t time, uint64_t source_index) {
  if (time < meta_.last_time || source_index <= meta_.source_index)
    return Status::error("invalid", "advance_to must not go back in time or source index");
  store::MetaState m = meta_;
  m.last_time = time;
  m.source_index = source_index;
  rocksdb::WriteBatch b;
  CL_CHECK(b.Put(family(store::kMetaState), store::kMetaState, store::encode_meta(m)).ok());
  rocksdb::WriteOptions wo;
  wo.sync = options_.sync;
  wo.disableWAL = options_.disable_wal;
  auto s = db_->Write(wo, &b);
  if (!s.ok()) return io_error(s, "write meta");
  meta_ = m;
  std::lock_guard<std::mutex> lock(head_mu_);
  head_.last_time = m.last_time;
  head_.source_index = m.source_index;
  return Status::ok();
}

Status Ledger::sync() {
  if (options_.raft_log_is_wal) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    fo.allow_write_stall = true;
    auto s = db_->Flush(fo, families_);
    if (!s.ok()) return io_error(s, "flush ledger");
    return Status::ok();
  }
  auto s = db_->SyncWAL();
  if (!s.ok()) return io_error(s, "sync write-ahead log");
  return Status::ok();
}

Result<uint64_t> Ledger::durable_source_index() {
  if (!options_.raft_log_is_wal) {
    Status s = sync();
    if (!s) return s;
    return meta_.source_index;
  }
  // kPersistedTier skips memtables written without a WAL: what a crash keeps.
  rocksdb::ReadOptions ro;
  ro.read_tier = rocksdb::kPersistedTier;
  std::string value;
  auto s = db_->Get(ro, family(store::kMetaState), store::kMetaState, &value);
  uint64_t durable = 0;
  if (s.ok()) {
    auto m = store::decode_meta(value);
    if (!m) return Status::error("corruption", "flushed ledger state is malformed");
    durable = m->source_index;
  } else if (!s.IsNotFound()) {
    return io_error(s, "read flushed ledger state");
  }
  if (meta_.source_index - durable > options_.raft_flush_lag && flush_requested_for_ <= durable) {
    // The memtables are switched inside Flush(): the flush covers every
    // batch applied so far.  Writes go on meanwhile.
    rocksdb::FlushOptions fo;
    fo.wait = false;
    fo.allow_write_stall = true;
    auto f = db_->Flush(fo, families_);
    if (!f.ok()) return io_error(f, "request a ledger flush");
    flush_requested_for_ = meta_.source_index;
  }
  return durable;
}

LedgerHead Ledger::head() const {
  std::lock_guard<std::mutex> lock(head_mu_);
  return head_;
}

Result<std::optional<WalletState>> Ledger::wallet(const WalletId& id) const {
  std::string value;
  auto s = get(store::wallet_key(id), &value);
  if (s.IsNotFound()) return std::optional<WalletState>();
  if (!s.ok()) return io_error(s, "read wallet");
  auto w = store::decode_wallet(value);
  if (!w) return Status::error("corruption", "wallet record " + id_hex(id) + " is malformed");
  return std::optional<WalletState>(*w);
}

Result<std::optional<Receipt>> Ledger::receipt(const OpId& id) const {
  std::string value;
  auto s = get(store::op_key(id), &value);
  if (s.IsNotFound()) return std::optional<Receipt>();
  if (!s.ok()) return io_error(s, "read op record");
  auto rec = store::decode_op_record(value);
  if (!rec) return Status::error("corruption", "op record " + id_hex(id) + " is malformed");
  NodeReaderImpl reader(this);
  auto leaf = reader.node(0, rec->index);
  if (!leaf) return leaf.status();
  return std::optional<Receipt>(Receipt{id, rec->index, rec->time, *leaf, false});
}

Result<store::EntryDigest> Ledger::entry_digest(uint64_t index) const {
  CL_CHECK(options_.audit_only);
  std::string value;
  auto s = get(store::entry_digest_key(index), &value);
  if (s.IsNotFound()) return Status::error("corruption", "journal entry " + std::to_string(index) + " missing");
  if (!s.ok()) return io_error(s, "read journal entry digest");
  auto d = store::decode_entry_digest(value);
  if (!d) return Status::error("corruption", "journal entry " + std::to_string(index) + " digest is malformed");
  return *d;
}

Result<uint64_t> Ledger::time_of(uint64_t index) const {
  if (index >= head().size)
    return Status::error("invalid", "entry " + std::to_string(index) + " is beyond the journal");
  if (options_.audit_only) {
    auto d = entry_digest(index);
    if (!d) return d.status();
    return d->time;
  }
  auto page = journal(index, 1);
  if (!page) return page.status();
  return page->at(0).time;
}

Result<std::vector<JournalEntry>> Ledger::journal(uint64_t from, uint64_t limit) const {
  if (options_.audit_only) return Status::error("invalid", "an audit_only ledger keeps no entry bytes");
  uint64_t size = head().size;
  limit = std::min(limit, kReadEntriesMax);
  std::vector<JournalEntry> out;
  if (from >= size) return out;
  uint64_t end = from + std::min(limit, size - from);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), families_[1]));
  uint64_t expect = from;
  for (it->Seek(store::journal_key(from)); expect < end; it->Next(), ++expect) {
    if (!it->Valid() || it->key() != store::journal_key(expect))
      return it->status().ok() ? Status::error("corruption", "journal entry " + std::to_string(expect) + " missing")
                               : io_error(it->status(), "scan journal");
    JournalEntry e;
    e.index = expect;
    e.bytes = it->value().ToString();
    auto t = entry_time(e.bytes);
    if (!t) return Status::error("corruption", "journal entry " + std::to_string(expect) + " has no time");
    e.time = *t;
    e.leaf_hash = merkle::leaf_hash(e.bytes);
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::vector<JournalEntry>> Ledger::wallet_entries(const WalletId& wallet, std::optional<uint64_t> after,
                                                         uint64_t limit) const {
  if (options_.audit_only) return Status::error("invalid", "an audit_only ledger keeps no wallet entry index");
  limit = std::min(limit, kReadEntriesMax);
  std::vector<JournalEntry> out;
  std::string prefix = std::string(1, store::kWalletEntry) + id_bytes(wallet);
  std::string start = after ? store::wallet_entry_key(wallet, *after + 1) : prefix;
  if (after && *after == UINT64_MAX) return out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  uint64_t size = head().size;
  for (it->Seek(start); it->Valid() && it->key().starts_with(prefix) && out.size() < limit; it->Next()) {
    uint64_t index = store::get_u64(it->key().data() + prefix.size());
    if (index >= size) break;  // written by a batch whose head is not yet published
    auto page = journal(index, 1);
    if (!page) return page.status();
    if (page->size() != 1) return Status::error("corruption", "wallet entry points past the journal");
    out.push_back(std::move((*page)[0]));
  }
  if (!it->status().ok()) return io_error(it->status(), "scan wallet entries");
  return out;
}

Result<Hash> Ledger::root_at(uint64_t tree_size) const {
  if (tree_size > head().size) return Status::error("invalid", "tree_size beyond the journal");
  NodeReaderImpl reader(this);
  return merkle::root_at(reader, tree_size);
}

Result<std::vector<Hash>> Ledger::inclusion_proof(uint64_t index, uint64_t tree_size) const {
  if (tree_size > head().size) return Status::error("invalid", "tree_size beyond the journal");
  NodeReaderImpl reader(this);
  return merkle::inclusion_proof(reader, index, tree_size);
}

Result<std::vector<Hash>> Ledger::consistency_proof(uint64_t first, uint64_t second) const {
  if (second > head().size) return Status::error("invalid", "second beyond the journal");
  NodeReaderImpl reader(this);
  return merkle::consistency_proof(reader, first, second);
}

}  // namespace cl
