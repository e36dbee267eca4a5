// Replays a journal, entry by entry, into a fresh ledger and checks that
// every entry re-applies as recorded.  The crash tests use it to prove a
// recovered store equals a replay of its own journal; the auditor builds on it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "ledger/ledger.h"

namespace cl {

class JournalReplayer {
 public:
  // "target" must hold the journal's genesis and a prefix of the journal
  // (empty, or what an earlier replay left); add() takes the entries that
  // follow it.  It must outlive the replayer.  With verify_signatures, every op's signatures
  // are checked (an auditor's replay); without, they are trusted.
  JournalReplayer(Ledger* target, bool verify_signatures);

  // Feeds the next entry's canonical bytes.  Entries sharing a time form one
  // batch, applied when the time changes or at finish().  Returns Status
  // "corruption" naming the entry index and the reason at the first entry that
  // is out of sequence, not canonical, badly signed, or not accepted.
  Status add(std::string_view entry_bytes);

  // The same for an entry the caller already parsed, checked canonical and
  // (if it verifies) signature-checked: "env" is its decoded op and
  // "leaf_hash" the leaf hash of its canonical entry bytes, which the entry
  // the ledger journals for it must have.  The auditor decodes and verifies
  // in parallel and feeds the results here, in order.
  Status add_decoded(uint64_t index, uint64_t time, Envelope env, const Hash& leaf_hash);

  // Applies the last pending batch.  Call once after the last add().
  Status finish();

  uint64_t entries() const { return next_index_; }

 private:
  Status check_and_add(std::string_view entry_bytes);
  Status flush();

  Ledger* target_;
  bool verify_signatures_;
  uint64_t next_index_;
  uint64_t batch_time_ = 0;
  uint64_t batch_first_index_ = 0;
  std::vector<Envelope> batch_;
  std::vector<Hash> batch_leaves_;
};

// Replays all of "source"'s journal into "target" (see JournalReplayer).
Status replay_ledger(const Ledger& source, Ledger* target, bool verify_signatures);

}  // namespace cl
