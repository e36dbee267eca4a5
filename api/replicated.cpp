#include "api/replicated.h"

#include <cstring>
#include <future>

namespace cl::api {
namespace {
void put_u32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(std::string_view b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}
template <size_t N>
void put_bytes(std::string* out, const std::array<uint8_t, N>& a) {
  out->append(reinterpret_cast<const char*>(a.data()), N);
}
void put_text(std::string* out, std::string_view t) {
  put_u32(out, static_cast<uint32_t>(t.size()));
  out->append(t);
}

// Bounds-checked reader: any overrun sets ok = false and yields zeros.
struct Reader {
  std::string_view b;
  size_t at = 0;
  bool ok = true;
  bool need(size_t n) {
    if (!ok || b.size() - at < n) ok = false;
    return ok;
  }
  uint64_t u(int bytes) {
    if (!need(static_cast<size_t>(bytes))) return 0;
    uint64_t v = get_le(b, at, bytes);
    at += static_cast<size_t>(bytes);
    return v;
  }
  template <size_t N>
  void bytes(std::array<uint8_t, N>* a) {
    if (!need(N)) return;
    std::memcpy(a->data(), b.data() + at, N);
    at += N;
  }
  std::string_view view(size_t n) {
    if (!need(n)) return {};
    auto v = b.substr(at, n);
    at += n;
    return v;
  }
  std::string text(size_t max) {
    uint64_t n = u(4);
    if (n > max) ok = false;
    return std::string(view(ok ? n : 0));
  }
};

constexpr size_t kTextBytesMax = 4 * kTextCharsMax;
enum : uint8_t { kHasExpires = 1, kHasMaxBalance = 2, kHasMemo = 4 };

// The decoded fields of one envelope; its canonical bytes travel beside them.
void put_fields(std::string* out, const Envelope& e) {
  const OpBody& b = e.body;
  // body_jcs sits inside jcs, right after {"body": (see decode_envelope_json).
  constexpr std::string_view kHead = "{\"body\":";
  CL_CHECK_MSG(e.jcs.size() >= kHead.size() + e.body_jcs.size() && e.jcs.starts_with(kHead) &&
                   std::string_view(e.jcs).substr(kHead.size(), e.body_jcs.size()) == e.body_jcs,
               "envelope canonical bytes do not embed its body");
  out->push_back(static_cast<char>(b.type));
  out->push_back(static_cast<char>(b.kind));
  out->push_back(static_cast<char>((b.expires_at ? kHasExpires : 0) | (b.max_balance ? kHasMaxBalance : 0) |
                                   (b.memo ? kHasMemo : 0)));
  put_bytes(out, b.id);
  put_bytes(out, b.wallet);
  put_bytes(out, b.from);
  put_bytes(out, b.to);
  put_bytes(out, b.key);
  put_u64(out, b.expires_at.value_or(0));
  put_u64(out, b.max_balance.value_or(0));
  put_u64(out, b.amount);
  put_u64(out, b.tap_at);
  put_text(out, b.chain);
  put_text(out, b.gate);
  put_text(out, b.program);
  put_text(out, b.reference);
  put_text(out, b.memo.value_or(""));
  put_text(out, b.reason);
  out->push_back(static_cast<char>(e.signatures.size()));
  for (const auto& s : e.signatures) {
    put_bytes(out, s.key);
    put_bytes(out, s.sig);
  }
  put_u32(out, static_cast<uint32_t>(e.body_jcs.size()));
}

std::optional<Envelope> read_envelope(Reader* r) {
  Envelope e;
  e.jcs = std::string(r->view(r->u(4)));
  OpBody& b = e.body;
  uint64_t type = r->u(1), kind = r->u(1), flags = r->u(1);
  if (type > static_cast<uint64_t>(OpType::kRotateKey) || kind > static_cast<uint64_t>(WalletKind::kAgency) ||
      flags > 7)
    return std::nullopt;
  b.type = static_cast<OpType>(type);
  b.kind = static_cast<WalletKind>(kind);
  r->bytes(&b.id);
  r->bytes(&b.wallet);
  r->bytes(&b.from);
  r->bytes(&b.to);
  r->bytes(&b.key);
  uint64_t expires = r->u(8), max_balance = r->u(8);
  if (flags & kHasExpires) b.expires_at = expires;
  if (flags & kHasMaxBalance) b.max_balance = max_balance;
  b.amount = r->u(8);
  b.tap_at = r->u(8);
  b.chain = r->text(kChainCharsMax);
  b.gate = r->text(kTextBytesMax);
  b.program = r->text(kTextBytesMax);
  b.reference = r->text(kTextBytesMax);
  std::string memo = r->text(kTextBytesMax);
  if (flags & kHasMemo) b.memo = std::move(memo);
  b.reason = r->text(kTextBytesMax);
  uint64_t nsig = r->u(1);
  if (nsig == 0 || nsig > kSignaturesMax) return std::nullopt;
  e.signatures.resize(nsig);
  for (auto& s : e.signatures) {
    r->bytes(&s.key);
    r->bytes(&s.sig);
  }
  uint64_t body_len = r->u(4);
  constexpr size_t kHead = 8;  // {"body":
  if (!r->ok || e.jcs.size() < kHead + body_len) return std::nullopt;
  e.body_jcs = e.jcs.substr(kHead, body_len);
  e.body_hash = sha256(e.body_jcs);
  return e;
}
}  // namespace

size_t encoded_op_bytes(const Envelope& e) {
  const OpBody& b = e.body;
  // u32 len | jcs | type kind flags | 4 ids + key | 4 × u64 | 6 texts | u8 n | n × (key, sig) | u32 body len
  return 4 + e.jcs.size() + 3 + 4 * b.id.size() + b.key.size() + 4 * 8 +
         (4 + b.chain.size()) + (4 + b.gate.size()) + (4 + b.program.size()) + (4 + b.reference.size()) +
         (4 + (b.memo ? b.memo->size() : 0)) + (4 + b.reason.size()) + 1 +
         e.signatures.size() * (sizeof(e.signatures[0].key) + sizeof(e.signatures[0].sig)) + 4;
}

std::string encode_batch(uint64_t time, std::span<const Envelope> ops) {
  std::string out;
  size_t bytes = 12;
  for (const auto& e : ops) bytes += 4 + e.jcs.size() + 256;
  out.reserve(bytes);
  put_u64(&out, time);
  put_u32(&out, static_cast<uint32_t>(ops.size()));
  for (const auto& e : ops) {
    put_u32(&out, static_cast<uint32_t>(e.jcs.size()));
    out.append(e.jcs);
    put_fields(&out, e);
  }
  return out;
}

std::optional<DecodedBatch> decode_batch(std::string_view data) {
  Reader r{data};
  DecodedBatch b;
  b.time = r.u(8);
  uint64_t n = r.u(4);
  if (!r.ok || n > kApplyBatchOpsMax) return std::nullopt;
  b.ops.reserve(n);
  for (uint64_t i = 0; i < n; ++i) {
    auto e = read_envelope(&r);
    if (!e) return std::nullopt;
    b.ops.push_back(std::move(*e));
  }
  if (!r.ok || r.at != data.size()) return std::nullopt;
  return b;
}

LedgerStateMachine::LedgerStateMachine(Ledger* ledger) : ledger_(ledger), applied_(ledger->head().source_index) {}

namespace {
// True when "data" is exactly encode_batch(time, ops).
bool encodes(std::string_view data, uint64_t time, const std::vector<Envelope>& ops) {
  if (data.size() < 12 || get_le(data, 0, 8) != time || get_le(data, 8, 4) != ops.size()) return false;
  return data == encode_batch(time, ops);
}
}  // namespace

void LedgerStateMachine::remember(uint64_t time, std::vector<Envelope> ops) {
  std::lock_guard lock(remembered_mu_);
  remembered_.push_back(DecodedBatch{time, std::move(ops)});
  while (remembered_.size() > kRememberMax) remembered_.pop_front();
}

std::optional<std::vector<Envelope>> LedgerStateMachine::take_remembered(std::string_view data) {
  std::lock_guard lock(remembered_mu_);
  for (auto it = remembered_.begin(); it != remembered_.end(); ++it) {
    if (!encodes(data, it->time, it->ops)) continue;
    auto ops = std::move(it->ops);
    // Batches commit in proposal order: older ones left behind were lost.
    remembered_.erase(remembered_.begin(), it + 1);
    return ops;
  }
  return std::nullopt;
}

std::any LedgerStateMachine::apply(const raft::Entry& entry) {
  std::optional<DecodedBatch> batch;
  if (auto ops = take_remembered(entry.data)) {
    batch = DecodedBatch{get_le(entry.data, 0, 8), std::move(*ops)};
  } else {
    batch = decode_batch(entry.data);
  }
  // Only the leader's pipeline proposes, from envelopes it decoded itself: a
  // committed entry that does not decode means corruption or a bug, and
  // replicas must not diverge over it.
  CL_CHECK_MSG(batch.has_value(), "committed raft entry is not a well-formed batch");
  uint64_t time = std::max(batch->time, ledger_->head().last_time + 1);
  auto outcomes = ledger_->apply(batch->ops, time, entry.index);
  CL_CHECK_MSG(outcomes.is_ok(), outcomes.status().to_string().c_str());
  applied_.store(entry.index);
  return std::move(*outcomes);
}

void LedgerStateMachine::skip(raft::Index index) {
  if (index > applied_.load()) applied_.store(index);
}

Result<std::vector<OpOutcome>> RaftCommitter::commit(std::span<const Envelope> ops, uint64_t time) {
  last_proposed_time_.store(std::max(last_proposed_time_.load(), time));
  std::promise<std::pair<Status, std::any>> p;
  auto f = p.get_future();
  raft_->propose(encode_batch(time, ops), [&p](Status s, std::any result) { p.set_value({s, std::move(result)}); });
  auto [status, result] = f.get();
  if (!status) return status;
  return std::any_cast<std::vector<OpOutcome>>(std::move(result));
}

void RaftCommitter::commit_async(std::vector<Envelope> ops, uint64_t time, CommitDone done) {
  last_proposed_time_.store(std::max(last_proposed_time_.load(), time));
  std::string data = encode_batch(time, ops);
  if (machine_ != nullptr) machine_->remember(time, std::move(ops));
  raft_->propose(std::move(data), [done = std::move(done)](Status s, std::any result) {
    if (!s) return done(s);
    done(std::any_cast<std::vector<OpOutcome>>(std::move(result)));
  });
}

uint64_t RaftCommitter::last_time() const {
  return std::max(last_proposed_time_.load(), ledger_->head().last_time);
}

}  // namespace cl::api
