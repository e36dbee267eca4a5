// Durable Raft state in RocksDB: hard state, snapshot metadata and the log.
// Each Ready is stored with ONE synced WriteBatch (RaftCore's contract:
// persist before sending).  Every stored entry carries its own CRC-32C
// (codec.h) and is verified when read back; a bad record stops start-up.
//
// Keys:  "v" → format ("cityledger-raft-2")   "h" → hard state   "s" → snapshot meta
//        "e" index(8, big-endian) → entry record
//        "i" → snapshot meta of a state install in progress (record_install)
#pragma once

#include <memory>
#include <optional>
#include <utility>
#include <string>

#include "common/status.h"
#include "consensus/raft_core.h"

namespace rocksdb {
class DB;
class Env;
class RateLimiter;
class EventListener;
class SstFileManager;
}  // namespace rocksdb

namespace cl::raft {

// How a store's background work reaches the disk.  Every part is optional
// and may be shared with the node's other stores.
struct StoreIo {
  // Caps the bytes/s that flushes and compactions write.
  std::shared_ptr<rocksdb::RateLimiter> background_writes;
  // Deletes obsolete files (old write-ahead logs, compacted tables) a few
  // MiB at a time instead of unlinking them whole (see Node::open).
  std::shared_ptr<rocksdb::SstFileManager> file_deletes;
  std::vector<std::shared_ptr<rocksdb::EventListener>> listeners;
};

class RaftStorage {
 public:
  // Opens (creating if needed) the store in "dir".  "env" null: the OS.
  static Result<std::unique_ptr<RaftStorage>> open(const std::string& dir, rocksdb::Env* env = nullptr,
                                                   StoreIo store_io = {});
  ~RaftStorage();

  // What the core needs to restart: hard state, snapshot meta and the entries
  // after it (checked contiguous, checksums verified).  "applied" is left 0;
  // the caller sets it from its state machine.  "corruption" on a bad record.
  Result<RestoredState> load() const;

  // Persists rd.snapshot (dropping the whole log), rd.entries (replacing any
  // stored entries at or after the first) and rd.hard_state in one synced
  // write.  Nothing to store: returns at once.  A write that only moves the
  // commit index is not synced: commit is recomputed from a quorum, and a
  // state machine never applies beyond it (so its applied index, which is
  // stored with its state, bounds it from below on restart).
  Status save(const Ready& rd);

  // Records, synced, the metadata of a state install (catch-up from the
  // leader's state) BEFORE the state machine makes that state durable: if
  // the process dies before a Ready records the install as the snapshot
  // (which clears this), start-up finds the state machine ahead of the log
  // and this record says how it got there (RaftNode::open).  A record of a
  // lower index than the one already there changes nothing.  Thread-safe
  // with the Raft thread's writes (one install runs at a time).
  Status record_install(const SnapshotMeta& meta);
  // The install recorded last and not yet recorded as the snapshot.
  Result<std::optional<SnapshotMeta>> recorded_install() const;

  // Drops stored entries with index ≤ upto (after the application snapshotted
  // there) and records "meta" as the snapshot.  Not synced: losing it only
  // keeps a longer log.
  Status compact(const SnapshotMeta& meta);

 private:
  explicit RaftStorage(std::unique_ptr<rocksdb::DB> db);
  std::unique_ptr<rocksdb::DB> db_;
  // Highest entry index stored (0: none).  Appends past it need no range
  // delete: a range tombstone per write would pile up in the memtable and
  // slow every later read, write and flush.
  Index last_stored_ = 0;
  // Term and vote last written (synced); the first save always syncs.
  std::optional<std::pair<Term, NodeId>> term_vote_;
};

// Encodings of the small records (little-endian fields, trailing CRC-32C).
std::string encode_hard_state(const HardState& hs);
Result<HardState> decode_hard_state(std::string_view bytes);
std::string encode_snapshot_meta(const SnapshotMeta& meta);
Result<SnapshotMeta> decode_snapshot_meta(std::string_view bytes);

}  // namespace cl::raft
