// The ledger as a Raft state machine, and the pipeline's committer that
// goes through Raft.  A Raft entry carries one batch: the leader's ledger
// time and the ops' canonical envelopes.  Every replica applies committed
// batches through the same Ledger::apply; the proposer gets the outcomes.
#pragma once

#include <atomic>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "api/pipeline.h"
#include "consensus/raft_node.h"
#include "ledger/ledger.h"

namespace cl::api {

// Batch entry data, little-endian:
//   u64 time | u32 n | n × (u32 len | envelope JCS | decoded fields)
// The decoded fields (type, ids, amounts, texts, signers, the length of the
// body inside the JCS) spare every replica a JSON parse per op: the leader
// decoded and verified each envelope from its JCS once, and replicas apply
// exactly what the leader applies (Raft trusts its leader; auditors re-derive
// everything from the journal's JCS alone).
std::string encode_batch(uint64_t time, std::span<const Envelope> ops);
// encode_batch's size is kBatchHeaderBytes + Σ encoded_op_bytes(op), exactly.
constexpr size_t kBatchHeaderBytes = 12;
size_t encoded_op_bytes(const Envelope& e);
struct DecodedBatch {
  uint64_t time = 0;
  std::vector<Envelope> ops;
};
// Total over hostile input: nullopt on anything but a well-formed batch of
// well-formed envelopes.
std::optional<DecodedBatch> decode_batch(std::string_view data);

class LedgerStateMachine : public raft::StateMachine {
 public:
  explicit LedgerStateMachine(Ledger* ledger);
  // Applies one committed batch.  Ledger time is forced strictly above the
  // previous batch's (a new leader's clock may lag the old one's); this is
  // deterministic, so every replica writes the same journal.
  std::any apply(const raft::Entry& entry) override;
  void skip(raft::Index index) override;
  raft::Index applied_index() const override { return applied_.load(); }
  Status sync() override { return ledger_->sync(); }
  Result<raft::Index> durable_index() override {
    auto d = ledger_->durable_source_index();
    if (!d) return d.status();
    return raft::Index{*d};
  }
  // After installing a leader's state up to raft index "index".
  void installed(raft::Index index) {
    if (index > applied_.load()) applied_.store(index);
  }

  // The proposer's own decoded envelopes for a batch it is proposing: when
  // that batch comes back committed, apply uses them instead of decoding the
  // entry again, after checking byte for byte that the entry holds exactly
  // these envelopes.  Bounded: the oldest are dropped past kRememberMax.
  void remember(uint64_t time, std::vector<Envelope> ops);
  static constexpr size_t kRememberMax = 64;
  size_t remembered() {
    std::lock_guard lock(remembered_mu_);
    return remembered_.size();
  }

 private:
  std::optional<std::vector<Envelope>> take_remembered(std::string_view data);

  Ledger* ledger_;
  std::atomic<raft::Index> applied_;
  std::mutex remembered_mu_;
  std::deque<DecodedBatch> remembered_;
};

class RaftCommitter : public BatchCommitter {
 public:
  RaftCommitter(raft::RaftNode* raft, Ledger* ledger, LedgerStateMachine* machine = nullptr)
      : raft_(raft), ledger_(ledger), machine_(machine) {}
  // Proposes the batch and waits until it is committed and applied here.
  // Errors: "not_leader", "lost", "stopped", "overloaded".
  Result<std::vector<OpOutcome>> commit(std::span<const Envelope> ops, uint64_t time) override;
  // Proposes and returns; done runs on the Raft node's applier thread once applied (on its Raft thread if it failed).
  void commit_async(std::vector<Envelope> ops, uint64_t time, CommitDone done) override;
  uint64_t last_time() const override;
  // A batch is one Raft entry: at most the core's max_entry_bytes.
  size_t op_bytes(const Envelope& e) const override { return encoded_op_bytes(e); }
  size_t batch_bytes_max() const override { return raft::Config().max_entry_bytes - kBatchHeaderBytes; }

 private:
  raft::RaftNode* raft_;
  Ledger* ledger_;
  LedgerStateMachine* machine_;
  std::atomic<uint64_t> last_proposed_time_{0};
};

}  // namespace cl::api
