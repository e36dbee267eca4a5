// The auditor's replay (DESIGN §5): re-derives everything from genesis with
// its own fresh ledger apply and trusts nothing it cannot re-verify.
//
// Feed the journal's NDJSON lines ({"index","time","op"[,"leaf_hash"]}, as
// GET /v1/journal and `cityledger export` write them) in order.  Lines are
// decoded and every signature verified in parallel on all cores, a chunk at a
// time (a line exactly as nodes export it by decode_journal_line_canonical,
// any other by the strict JSON parser, which decides and explains), while the
// previous chunk is applied in order to a scratch ledger (audit_only: the
// same apply, storing only what the replay reads back):
// every op must be accepted at its position (authority, balances, limits,
// payout references never paid twice, ids never reused), and its replayed
// entry must hash to the leaf the line claims.  Then checkpoints are checked
// against the replayed tree: root and time at their size, and a majority of
// genesis node signatures.
//
// Errors are Status "corruption" naming the first bad entry ("entry N: …")
// or checkpoint ("checkpoint tree_size N: …").
#pragma once

#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ledger/checkpoint.h"
#include "ledger/genesis.h"
#include "ledger/ledger.h"
#include "ledger/replay.h"

namespace cl {

struct AuditOptions {
  unsigned threads = 0;        // signature-checking threads; 0 = one per core
  std::string scratch_dir;     // where the scratch ledger lives; "" = a fresh directory under $TMPDIR
  size_t chunk_entries = 8192; // lines decoded and verified per parallel step
};

class Auditor {
 public:
  static Result<std::unique_ptr<Auditor>> open(const Genesis& genesis, AuditOptions options);
  ~Auditor();

  // The next journal line.  Returns the first error found so far (lines are
  // checked in chunks: an error may surface a few thousand lines later than
  // the bad line, and always names the bad line's index).
  Status add_line(std::string line);
  // Checks what is still buffered.  Call once after the last line.
  Status finish();

  // After finish(): the checkpoint holds for the replayed journal (its root
  // and time at its size) and every signature on it is a valid signature of
  // a genesis node, at most one per node.  With "confirmed" null, a majority
  // of the genesis nodes must have signed it.  Otherwise a checkpoint that
  // passes everything but has too few signatures is not an error:
  // *confirmed says whether a majority signed (a node publishes its head
  // before its peers have applied that far and countersigned; what it signed
  // alone is still checked against the replay, and a false root fails).
  Status check_checkpoint(const Checkpoint& cp, bool* confirmed = nullptr) const;

  uint64_t entries() const { return ledger_->head().size; }
  uint64_t lines() const { return lines_; }
  uint64_t wallets() const { return wallets_; }
  uint64_t signatures() const { return signatures_; }
  const Ledger& ledger() const { return *ledger_; }

 private:
  struct Decoded {
    uint64_t index = 0;
    uint64_t time = 0;
    Envelope env;
    Hash leaf_hash{};   // of the entry's canonical bytes
    std::string error;  // empty: the line is well-formed, canonical and validly signed
  };
  // Lines decoded and verified in parallel while the chunk before is applied.
  struct Chunk {
    uint64_t first = 0;  // journal index of lines[0]
    std::vector<std::string> lines;
    std::vector<Decoded> decoded;
    std::vector<std::future<void>> workers;
  };
  Auditor(const Genesis& genesis, AuditOptions options);
  static void decode_line(const std::string& line, uint64_t position, Decoded* d);
  // Starts decoding and verifying the buffered lines (asynchronously).
  void launch();
  // Waits for the oldest launched chunk and applies it, in order.
  Status drain();

  Genesis genesis_;
  AuditOptions options_;
  std::string scratch_;
  bool own_scratch_ = false;
  std::unique_ptr<Ledger> ledger_;
  std::unique_ptr<JournalReplayer> replayer_;
  std::vector<std::string> pending_;  // lines not yet launched
  uint64_t pending_first_ = 0;        // journal index of pending_[0]
  std::deque<std::unique_ptr<Chunk>> inflight_;
  uint64_t lines_ = 0;
  uint64_t wallets_ = 0;
  uint64_t signatures_ = 0;
  Status failed_ = Status::ok();
};

}  // namespace cl
