// The ledger: the deterministic state machine of DESIGN §4–§5 and §8 over RocksDB.
//
// apply() takes a batch of ops whose signatures were already verified, and a
// ledger time, and returns one outcome per op.  It reads no clock, draws no
// randomness and depends only on (stored state, batch, time): two ledgers fed
// the same batches hold byte-identical journals and the same Merkle root.
// Every batch lands in one atomic RocksDB WriteBatch (journal entries, Merkle
// nodes, state, meta): after a crash the store holds all of it or none of it.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/sha256.h"
#include "common/status.h"
#include "ledger/genesis.h"
#include "ledger/store_format.h"
#include "wallet/op.h"

namespace rocksdb {
class ColumnFamilyHandle;
class Status;
class DB;
class Env;
class RateLimiter;
class EventListener;
class SstFileManager;
}  // namespace rocksdb

namespace cl {

// Limits: ops in one applied batch (the REST batch endpoint's maximum).
constexpr size_t kApplyBatchOpsMax = 8192;
// Entries returned by one journal or wallet-entries read.
constexpr uint64_t kReadEntriesMax = 10000;

struct LedgerOptions {
  // fsync every applied batch (the WAL write is synced before apply returns).
  // Off only where another log already made the batch durable (Raft).
  bool sync = true;
  // No write-ahead log at all: a crash loses everything not yet flushed.
  // Only for scratch ledgers that are rebuilt from scratch anyway (an
  // auditor's replay).
  bool disable_wal = false;
  // A replica's ledger: the Raft log is its write-ahead log.  Batches are
  // written without RocksDB's WAL (column families flushed atomically), so a
  // crash loses what was not flushed yet, and the Raft log re-applies it:
  // the replica compacts its log only up to durable_source_index().
  // Measured: RocksDB's own WAL here was a second copy of every op whose
  // background writeback stalled the Raft log's fsyncs, tripling p99.
  bool raft_log_is_wal = false;
  // With raft_log_is_wal: memtables are flushed when full, as usual (a flush
  // per log compaction measured worse: periodic I/O bursts); only when the
  // flushed state lags the applied one by more source indices than this
  // does durable_source_index() ask for a flush, so a quiet replica's log
  // stays bounded too.
  uint64_t raft_flush_lag = 10000;
  // Memtable size for the state and journal (MiB; 0 = the defaults tuned
  // for a serving node).  A one-pass replay gains from fewer, larger flushes.
  size_t memtable_mib = 0;
  // Storage environment; nullptr = the OS file system.  Simulations pass an
  // in-memory env.
  rocksdb::Env* env = nullptr;
  // Caps the bytes/s that flushes and compactions write (nullptr: no cap).
  // May be shared with other stores of the process (one budget per node).
  std::shared_ptr<rocksdb::RateLimiter> background_writes;
  // Deletes obsolete files a few MiB at a time (nullptr: whole, at once).
  // May be shared with other stores of the process.
  std::shared_ptr<rocksdb::SstFileManager> file_deletes;
  // RocksDB event listeners of the store (e.g. write-stall reporting).
  std::vector<std::shared_ptr<rocksdb::EventListener>> listeners;
  // Wallet states cached in memory; beyond it the cache is emptied (reads fall
  // back to RocksDB's block cache).  ~100 bytes each.  (With audit_only the
  // cache may exceed it by the wallets of one batch.)
  size_t wallet_cache_max = 2'000'000;
  // Check Σ balances = issued − redeemed over every wallet when opening.
  bool verify_supply_on_open = true;
  // An auditor's scratch replay: apply() decides every op exactly as
  // always (and hashes every entry it journals), but the store keeps only
  // what a replay reads back:
  //  - of each entry, its leaf hash and time (store::EntryDigest), not its
  //    bytes: journal() is refused, roots, proofs and time_of() work;
  //  - no per-wallet entry index: wallet_entries() is refused;
  //  - wallet states are written back only when the wallet cache is emptied
  //    or at write_back(): until then wallet() and check() see the states of
  //    the last write-back, and the store is consistent only after it.
  // Merkle nodes, op records, payout references and the meta record are
  // written with every batch as always.  Such a store opens only with
  // audit_only, and a store without it never does.
  bool audit_only = false;
};

struct Receipt {
  OpId id{};
  uint64_t index = 0;
  uint64_t time = 0;
  Hash leaf_hash{};
  bool replay = false;
};

// The result of one op: kOk with a receipt, or a rejection code with detail.
struct OpOutcome {
  Code code = Code::kOk;
  std::string detail;
  Receipt receipt;  // meaningful only when code == kOk
};

struct JournalEntry {
  uint64_t index = 0;
  uint64_t time = 0;
  std::string bytes;  // JCS({"index","op","time"}): the hashed form
  Hash leaf_hash{};
};

struct Supply {
  uint64_t issued = 0;
  uint64_t redeemed = 0;
  uint64_t outstanding() const { return issued - redeemed; }
};

// A consistent snapshot of the ledger's head, updated after each batch.
struct LedgerHead {
  uint64_t size = 0;
  uint64_t last_time = 0;
  uint64_t source_index = 0;  // replicated-log index of the last applied batch
  Hash root{};
  Supply supply;
};

using WalletState = store::WalletState;
using WalletStatus = store::WalletStatus;

class Ledger {
 public:
  // Opens (creating if needed) the ledger in "dir" for "genesis".  Refuses
  // with Status "mismatch" if dir was created with a different genesis, and
  // with "corruption" (naming the check) if the stored state is inconsistent.
  static Result<std::unique_ptr<Ledger>> open(const std::string& dir, const Genesis& genesis,
                                              const LedgerOptions& options = {});
  ~Ledger();
  Ledger(const Ledger&) = delete;
  Ledger& operator=(const Ledger&) = delete;

  const LedgerOptions& options() const { return options_; }
  const Genesis& genesis() const { return genesis_; }

  // Applies "ops" in order at ledger time "time" and makes the result
  // durable (per options.sync) before returning.  Preconditions, returned as
  // Status "invalid" with nothing changed: time > head().last_time,
  // 1 ≤ time ≤ kTimeMax, ops.size() ≤ kApplyBatchOpsMax.  Storage failures
  // return Status "io" with nothing changed.  Not thread-safe: one applier.
  //
  // "source_index" is the replicated-log index the batch came from (0 when
  // standalone); it is stored atomically with the batch so that a restarted
  // replica knows exactly which log entries it has applied.  Non-zero values
  // must increase ("invalid" otherwise).
  Result<std::vector<OpOutcome>> apply(std::span<const Envelope> ops, uint64_t time, uint64_t source_index = 0);

  // Records that the replicated log reached "source_index" at ledger time
  // "time" without journaling anything (how a replica that installed a
  // leader's state adopts the leader's head exactly).  Preconditions, as
  // "invalid": time ≥ last_time, source_index > the stored one.
  Status advance_to(uint64_t time, uint64_t source_index);

  // Makes every applied batch durable (syncs the write-ahead log, or with
  // raft_log_is_wal flushes the memtables and waits); needed before the
  // replicated log drops entries this ledger has applied.
  Status sync();

  // The highest source index whose batch is durable: what survives a crash.
  // Without raft_log_is_wal: syncs the WAL, then the applied source index.
  // With it: the source index of the flushed state, and if that is more
  // than raft_flush_lag behind the applied one, asks for a flush in the
  // background (not waiting).
  // Applier thread only.  Storage failures return "io".
  Result<uint64_t> durable_source_index();

  // With options.audit_only, writes the wallet states changed since the last
  // write-back to the store (then wallet() and check() see them); otherwise
  // does nothing.  Applier thread only.  Storage failures return "io".
  Status write_back();

  // --- Reads: thread-safe, may run concurrently with apply(). ---

  LedgerHead head() const;
  Result<std::optional<WalletState>> wallet(const WalletId& id) const;
  // The receipt of the accepted op "id" (replay = false), or nullopt.
  Result<std::optional<Receipt>> receipt(const OpId& id) const;
  // Entries [from, from + limit) that exist; limit is capped at kReadEntriesMax.
  // Refused ("invalid") with options.audit_only.
  Result<std::vector<JournalEntry>> journal(uint64_t from, uint64_t limit) const;
  // The ledger time of entry "index" ("invalid" unless index < head().size).
  Result<uint64_t> time_of(uint64_t index) const;
  // The entries touching "wallet" with index > after (all if after is
  // nullopt), oldest first, at most limit (capped at kReadEntriesMax).
  // Refused ("invalid") with options.audit_only.
  Result<std::vector<JournalEntry>> wallet_entries(const WalletId& wallet, std::optional<uint64_t> after,
                                                   uint64_t limit) const;
  // RFC 9162 tree head and proofs over the journal (tree_size ≤ head().size).
  Result<Hash> root_at(uint64_t tree_size) const;
  Result<std::vector<Hash>> inclusion_proof(uint64_t index, uint64_t tree_size) const;
  Result<std::vector<Hash>> consistency_proof(uint64_t first, uint64_t second) const;

  // Re-runs the open-time consistency checks; "full" also re-hashes every
  // journal entry and every stored Merkle node against its children, and sums
  // every balance.  With options.audit_only, call write_back() first.
  Status check(bool full) const;

 private:
  class Applier;
  class NodeReaderImpl;
  Ledger(std::unique_ptr<rocksdb::DB> db, std::vector<rocksdb::ColumnFamilyHandle*> families, Genesis genesis,
         LedgerOptions options);
  Status load_and_check();
  // audit_only: the stored digest of entry "index".
  Result<store::EntryDigest> entry_digest(uint64_t index) const;
  Result<std::optional<WalletState>> wallet_for_apply(const WalletId& id);

  // Reads one key from the family it lives in (store::family_index).
  rocksdb::Status get(std::string_view key, std::string* value) const;
  rocksdb::ColumnFamilyHandle* family(std::string_view key) const;

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> families_;  // [default, journal, tree] (store::family_index); owned, destroyed before db_
  Genesis genesis_;
  LedgerOptions options_;
  store::MetaState meta_;  // owned by the applier thread
  struct CachedWallet {
    WalletState state;
    // audit_only: newer than the stored state (emptying the cache writes
    // such wallets back first).
    bool unwritten = false;
  };
  std::unordered_map<WalletId, CachedWallet, Id128Hash> wallet_cache_;  // applier only
  size_t unwritten_ = 0;  // wallets in wallet_cache_ with unwritten set; applier only
  mutable std::mutex head_mu_;
  LedgerHead head_;  // guarded by head_mu_
  uint64_t flush_requested_for_ = 0;  // raft_log_is_wal: source index a background flush covers; applier only
};

// Parses the time out of an entry's canonical bytes (…,"time":T}).
std::optional<uint64_t> entry_time(std::string_view entry_bytes);

// The canonical bytes of entry {index, time, op = envelope JCS}.
std::string entry_bytes(uint64_t index, uint64_t time, std::string_view envelope_jcs);

// merkle::leaf_hash(entry_bytes(index, time, envelope_jcs)), without building the bytes.
Hash entry_leaf_hash(uint64_t index, uint64_t time, std::string_view envelope_jcs);

// The journal line GET /v1/journal serves and `cityledger export` writes:
// the entry's bytes with its leaf hash spliced in where JCS puts it (keys
// index, leaf_hash, op, time).
std::string journal_line(std::string_view entry_bytes, const Hash& leaf_hash);

// A journal line as decode_journal_line_canonical() reads it.
struct CanonicalLine {
  uint64_t index = 0;
  uint64_t time = 0;
  Envelope env;
  Hash leaf_hash{};  // of the entry's bytes; the line's leaf_hash says the same
};

// The fast inverse of journal_line() for lines exactly as nodes write them:
// decodes "line" iff it is journal_line(entry_bytes(index, time, env.jcs),
// leaf hash of those bytes) for an envelope that decode_envelope_canonical()
// reads, and its leaf_hash field is right.  Returns nullopt for anything
// else, with no reason: the caller's strict path decides and explains.
std::optional<CanonicalLine> decode_journal_line_canonical(std::string_view line);

}  // namespace cl
