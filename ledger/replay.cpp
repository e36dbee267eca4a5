#include "ledger/replay.h"

#include "ledger/merkle.h"

namespace cl {
namespace {
Status bad_entry(uint64_t index, const std::string& why) {
  return Status::error("corruption", "entry " + std::to_string(index) + ": " + why);
}
}  // namespace

JournalReplayer::JournalReplayer(Ledger* target, bool verify_signatures)
    : target_(target), verify_signatures_(verify_signatures), next_index_(target->head().size) {}

Status JournalReplayer::add(std::string_view bytes) {
  Status s = check_and_add(bytes);
  if (s || batch_.empty()) return s;
  // Entries before this one that share its time are still queued: a bad one
  // among them comes first.
  Status earlier = flush();
  return earlier ? s : earlier;
}

Status JournalReplayer::check_and_add(std::string_view bytes) {
  uint64_t index = next_index_;
  auto doc = parse_json_strict(bytes);
  if (!doc) return bad_entry(index, doc.status().message());
  const Json& j = *doc;
  if (!j.is_object() || j.size() != 3 || !j.contains("index") || !j.contains("op") || !j.contains("time"))
    return bad_entry(index, "must be exactly {index, op, time}");
  if (!j["index"].is_number_unsigned() || j["index"].get<uint64_t>() != index)
    return bad_entry(index, "index field does not match its position in the journal");
  if (!j["time"].is_number_unsigned()) return bad_entry(index, "time must be an integer");
  uint64_t time = j["time"].get<uint64_t>();
  Rejection rejection;
  auto env = decode_envelope_json(j["op"], &rejection);
  if (!env) return bad_entry(index, "op is " + std::string(code_name(rejection.code)) + ": " + rejection.detail);
  if (entry_bytes(index, time, env->jcs) != bytes) return bad_entry(index, "bytes are not canonical JCS");
  if (verify_signatures_ && verify_envelope(*env) != Code::kOk) return bad_entry(index, "bad signature");
  return add_decoded(index, time, std::move(*env), merkle::leaf_hash(bytes));
}

Status JournalReplayer::add_decoded(uint64_t index, uint64_t time, Envelope env, const Hash& leaf_hash) {
  if (index != next_index_) return bad_entry(index, "index field does not match its position in the journal");
  if (!batch_.empty() && time != batch_time_) {
    Status s = flush();
    if (!s) return s;
  }
  if (batch_.empty()) {
    batch_time_ = time;
    batch_first_index_ = index;
  }
  if (batch_.size() == kApplyBatchOpsMax) return bad_entry(index, "more entries share one ledger time than a batch holds");
  batch_.push_back(std::move(env));
  batch_leaves_.push_back(leaf_hash);
  ++next_index_;
  return Status::ok();
}

Status JournalReplayer::flush() {
  if (batch_.empty()) return Status::ok();
  // Applied (or refused) once, whatever the outcome: never retried.
  struct Clear {
    JournalReplayer* r;
    ~Clear() {
      r->batch_.clear();
      r->batch_leaves_.clear();
    }
  } clear{this};
  if (batch_time_ <= target_->head().last_time)
    return bad_entry(batch_first_index_, "ledger time does not increase");
  auto outcomes = target_->apply(batch_, batch_time_);
  if (!outcomes) return bad_entry(batch_first_index_, "apply failed: " + outcomes.status().to_string());
  for (size_t i = 0; i < outcomes->size(); ++i) {
    const OpOutcome& o = (*outcomes)[i];
    uint64_t index = batch_first_index_ + i;
    if (o.code != Code::kOk) return bad_entry(index, "op rejected on replay: " + std::string(code_name(o.code)) + ": " + o.detail);
    if (o.receipt.replay) return bad_entry(index, "op id appears twice in the journal");
    if (o.receipt.index != index || o.receipt.leaf_hash != batch_leaves_[i])
      return bad_entry(index, "replayed entry differs from the journal");
  }
  return Status::ok();
}

Status JournalReplayer::finish() { return flush(); }

Status replay_ledger(const Ledger& source, Ledger* target, bool verify_signatures) {
  JournalReplayer r(target, verify_signatures);
  uint64_t size = source.head().size;
  for (uint64_t from = 0; from < size; from += kReadEntriesMax) {
    auto page = source.journal(from, kReadEntriesMax);
    if (!page) return page.status();
    for (const auto& e : *page) {
      Status s = r.add(e.bytes);
      if (!s) return s;
    }
  }
  return r.finish();
}

}  // namespace cl
