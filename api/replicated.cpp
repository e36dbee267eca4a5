#include "api/replicated.h"

#include <future>

namespace cl::api {
namespace {
void put_u32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_le(std::string_view b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}
}  // namespace

std::string encode_batch(uint64_t time, std::span<const Envelope> ops) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((time >> (8 * i)) & 0xff));
  put_u32(&out, static_cast<uint32_t>(ops.size()));
  for (const auto& e : ops) {
    put_u32(&out, static_cast<uint32_t>(e.jcs.size()));
    out.append(e.jcs);
  }
  return out;
}

std::optional<DecodedBatch> decode_batch(std::string_view data) {
  if (data.size() < 12) return std::nullopt;
  DecodedBatch b;
  b.time = get_le(data, 0, 8);
  uint64_t n = get_le(data, 8, 4);
  if (n > kApplyBatchOpsMax) return std::nullopt;
  size_t at = 12;
  for (uint64_t i = 0; i < n; ++i) {
    if (data.size() - at < 4) return std::nullopt;
    uint64_t len = get_le(data, at, 4);
    at += 4;
    if (data.size() - at < len) return std::nullopt;
    Rejection r;
    auto env = decode_envelope(data.substr(at, len), &r);
    if (!env) return std::nullopt;
    b.ops.push_back(std::move(*env));
    at += len;
  }
  if (at != data.size()) return std::nullopt;
  return b;
}

LedgerStateMachine::LedgerStateMachine(Ledger* ledger) : ledger_(ledger), applied_(ledger->head().source_index) {}

namespace {
// True when "data" is exactly encode_batch(time, ops).
bool encodes(std::string_view data, uint64_t time, const std::vector<Envelope>& ops) {
  if (data.size() < 12 || get_le(data, 0, 8) != time || get_le(data, 8, 4) != ops.size()) return false;
  size_t at = 12;
  for (const auto& e : ops) {
    if (data.size() - at < 4 || get_le(data, at, 4) != e.jcs.size()) return false;
    at += 4;
    if (data.size() - at < e.jcs.size() || data.substr(at, e.jcs.size()) != e.jcs) return false;
    at += e.jcs.size();
  }
  return at == data.size();
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
