#include "consensus/raft_storage.h"

#include <limits>

#include <rocksdb/db.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/sst_file_manager.h>
#include <rocksdb/write_batch.h>

#include "consensus/codec.h"
#include "consensus/crc32c.h"

namespace cl::raft {
namespace {

constexpr std::string_view kHardStateKey = "h";
// The store's format: written into an empty store, required of a used one.
// 2: batch entries carry decoded fields; conf changes may carry a context.
constexpr std::string_view kFormatKey = "v";
constexpr std::string_view kFormat = "cityledger-raft-2";
constexpr std::string_view kSnapshotKey = "s";
// A state install the state machine is making durable (record_install).
constexpr std::string_view kInstallKey = "i";
constexpr char kEntryPrefix = 'e';

std::string entry_key(Index i) {
  std::string k(1, kEntryPrefix);
  for (int s = 56; s >= 0; s -= 8) k.push_back(static_cast<char>((i >> s) & 0xff));
  return k;
}

void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(std::string_view b, size_t at) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
  return v;
}
void seal(std::string* out) {
  uint32_t c = crc32c(*out);
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((c >> (8 * i)) & 0xff));
}
bool sealed_ok(std::string_view b) {
  if (b.size() < 4) return false;
  uint32_t c = 0;
  for (int i = 3; i >= 0; --i) c = (c << 8) | static_cast<uint8_t>(b[b.size() - 4 + i]);
  return crc32c(b.substr(0, b.size() - 4)) == c;
}

Status io(const rocksdb::Status& s, const std::string& what) { return Status::error("io", what + ": " + s.ToString()); }

}  // namespace

std::string encode_hard_state(const HardState& hs) {
  std::string out;
  put_u64(&out, hs.term);
  put_u64(&out, hs.vote);
  put_u64(&out, hs.commit);
  seal(&out);
  return out;
}

Result<HardState> decode_hard_state(std::string_view b) {
  if (b.size() != 28 || !sealed_ok(b)) return Status::error("corruption", "raft hard state record is damaged");
  return HardState{get_u64(b, 0), get_u64(b, 8), get_u64(b, 16)};
}

std::string encode_snapshot_meta(const SnapshotMeta& m) {
  std::string out;
  put_u64(&out, m.index);
  put_u64(&out, m.term);
  put_u64(&out, m.conf.voters.size());
  for (NodeId v : m.conf.voters) put_u64(&out, v);
  seal(&out);
  return out;
}

Result<SnapshotMeta> decode_snapshot_meta(std::string_view b) {
  if (b.size() < 28 || !sealed_ok(b)) return Status::error("corruption", "raft snapshot record is damaged");
  SnapshotMeta m;
  m.index = get_u64(b, 0);
  m.term = get_u64(b, 8);
  uint64_t n = get_u64(b, 16);
  if (n > kMaxVoters || b.size() != 28 + 8 * n) return Status::error("corruption", "raft snapshot record is damaged");
  for (uint64_t i = 0; i < n; ++i) m.conf.voters.push_back(get_u64(b, 24 + 8 * i));
  return m;
}

RaftStorage::RaftStorage(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

RaftStorage::~RaftStorage() {
  if (db_) db_->Close().PermitUncheckedError();
}

Result<std::unique_ptr<RaftStorage>> RaftStorage::open(const std::string& dir, rocksdb::Env* env, StoreIo store_io) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.paranoid_checks = true;
  // Entries are deleted (range tombstones) once the ledger's flushed state
  // covers them, so a large memtable lets most of them die before a flush
  // ever writes them: with 16 MiB each flush wrote them out and compactions
  // rewrote 60-70 MB at a time under load, stalling the synced appends.
  o.write_buffer_size = 64 << 20;
  // A full memtable waits for its (rate-limited) flush; a third one keeps
  // appends going meanwhile.
  o.max_write_buffer_number = 3;
  o.bytes_per_sync = 1 << 20;
  // Entries live until the next compaction (limits.raft_compact_entries):
  // compressing them on flush costs CPU for nothing.
  o.compression = rocksdb::kNoCompression;
  if (env) o.env = env;
  o.rate_limiter = std::move(store_io.background_writes);
  o.sst_file_manager = std::move(store_io.file_deletes);
  o.listeners = std::move(store_io.listeners);
  rocksdb::DB* raw = nullptr;
  auto s = rocksdb::DB::Open(o, dir, &raw);
  if (!s.ok()) return io(s, "open raft store " + dir);
  std::unique_ptr<RaftStorage> st(new RaftStorage(std::unique_ptr<rocksdb::DB>(raw)));
  {
    std::string format;
    auto fs = st->db_->Get(rocksdb::ReadOptions(), kFormatKey, &format);
    if (fs.IsNotFound()) {
      std::unique_ptr<rocksdb::Iterator> any(st->db_->NewIterator(rocksdb::ReadOptions()));
      any->SeekToFirst();
      if (any->Valid())
        return Status::error("corruption", "raft store " + dir + " has no format record (written by an older version?); "
                                           "remove the node's data directory and let it catch up from the leader");
      rocksdb::WriteOptions wo;
      wo.sync = true;
      fs = st->db_->Put(wo, kFormatKey, kFormat);
      if (!fs.ok()) return io(fs, "write raft store format");
    } else if (!fs.ok()) {
      return io(fs, "read raft store format");
    } else if (format != kFormat) {
      return Status::error("corruption", "raft store " + dir + " has format \"" + format + "\", this build reads \"" +
                                             std::string(kFormat) + "\"");
    }
  }
  std::unique_ptr<rocksdb::Iterator> it(st->db_->NewIterator(rocksdb::ReadOptions()));
  it->SeekForPrev(entry_key(std::numeric_limits<Index>::max()));
  if (it->Valid() && it->key().size() == 9 && it->key()[0] == kEntryPrefix) {
    Index last = 0;
    for (size_t i = 1; i < 9; ++i) last = (last << 8) | static_cast<uint8_t>(it->key()[i]);
    st->last_stored_ = last;
  }
  if (!it->status().ok()) return io(it->status(), "scan raft log " + dir);
  return st;
}

Result<RestoredState> RaftStorage::load() const {
  RestoredState r;
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), kHardStateKey, &v);
  if (s.ok()) {
    auto hs = decode_hard_state(v);
    if (!hs) return hs.status();
    r.hard_state = *hs;
  } else if (!s.IsNotFound()) {
    return io(s, "read raft hard state");
  }
  s = db_->Get(rocksdb::ReadOptions(), kSnapshotKey, &v);
  if (s.ok()) {
    auto m = decode_snapshot_meta(v);
    if (!m) return m.status();
    r.snapshot = *m;
  } else if (!s.IsNotFound()) {
    return io(s, "read raft snapshot meta");
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  Index expect = r.snapshot.index + 1;
  for (it->Seek(entry_key(expect)); it->Valid() && it->key()[0] == kEntryPrefix; it->Next()) {
    auto e = decode_entry(it->value().ToStringView());
    if (!e) return Status::error("corruption", "raft log entry at key index " + std::to_string(expect) + ": " +
                                                   e.status().message());
    if (e->index != expect)
      return Status::error("corruption", "raft log has a gap or misplaced entry: expected index " +
                                             std::to_string(expect) + ", found " + std::to_string(e->index));
    r.entries.push_back(std::move(*e));
    ++expect;
  }
  if (!it->status().ok()) return io(it->status(), "scan raft log");
  if (r.hard_state.commit > r.snapshot.index + r.entries.size())
    return Status::error("corruption", "raft commit index " + std::to_string(r.hard_state.commit) +
                                           " is beyond the stored log");
  return r;
}

Status RaftStorage::save(const Ready& rd) {
  if (!rd.snapshot && rd.entries.empty() && !rd.hard_state) return Status::ok();
  rocksdb::WriteBatch b;
  const std::string end_key(1, kEntryPrefix + 1);
  Index last = last_stored_;
  if (rd.snapshot) {
    if (last > 0) CL_CHECK(b.DeleteRange(entry_key(0), end_key).ok());
    CL_CHECK(b.Put(kSnapshotKey, encode_snapshot_meta(*rd.snapshot)).ok());
    CL_CHECK(b.Delete(kInstallKey).ok());  // the install, if any, is now recorded as the snapshot
    last = 0;
  }
  if (!rd.entries.empty()) {
    // A new leader's entries replace any conflicting suffix we stored.
    if (rd.entries.front().index <= last) CL_CHECK(b.DeleteRange(entry_key(rd.entries.front().index), end_key).ok());
    for (const auto& e : rd.entries) CL_CHECK(b.Put(entry_key(e.index), encode_entry(e)).ok());
    last = rd.entries.back().index;
  }
  bool must_sync = rd.snapshot || !rd.entries.empty();
  if (rd.hard_state) {
    CL_CHECK(b.Put(kHardStateKey, encode_hard_state(*rd.hard_state)).ok());
    must_sync = must_sync || term_vote_ != std::make_pair(rd.hard_state->term, rd.hard_state->vote);
  }
  rocksdb::WriteOptions wo;
  wo.sync = must_sync;
  auto s = db_->Write(wo, &b);
  if (!s.ok()) return io(s, "persist raft state");
  last_stored_ = last;
  if (rd.hard_state) term_vote_ = std::make_pair(rd.hard_state->term, rd.hard_state->vote);
  return Status::ok();
}

Status RaftStorage::record_install(const SnapshotMeta& meta) {
  // Never lowered: a retry that starts over (recording the index it was
  // asked for) must not hide that an earlier attempt got further.
  auto recorded = recorded_install();
  if (!recorded) return recorded.status();
  if (*recorded && (*recorded)->index >= meta.index) return Status::ok();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  auto s = db_->Put(wo, kInstallKey, encode_snapshot_meta(meta));
  if (!s.ok()) return io(s, "record a state install");
  return Status::ok();
}

Result<std::optional<SnapshotMeta>> RaftStorage::recorded_install() const {
  std::string v;
  auto s = db_->Get(rocksdb::ReadOptions(), kInstallKey, &v);
  if (s.IsNotFound()) return std::optional<SnapshotMeta>();
  if (!s.ok()) return io(s, "read the recorded state install");
  auto m = decode_snapshot_meta(v);
  if (!m) return m.status();
  return std::optional<SnapshotMeta>(*m);
}

Status RaftStorage::compact(const SnapshotMeta& meta) {
  rocksdb::WriteBatch b;
  CL_CHECK(b.DeleteRange(entry_key(0), entry_key(meta.index + 1)).ok());
  CL_CHECK(b.Put(kSnapshotKey, encode_snapshot_meta(meta)).ok());
  auto s = db_->Write(rocksdb::WriteOptions(), &b);
  if (!s.ok()) return io(s, "compact raft log");
  return Status::ok();
}

}  // namespace cl::raft
