// consensus/raft_storage: the durable Raft log in RocksDB.
#include <doctest/doctest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <random>

#include "consensus/raft_storage.h"

using namespace cl;
using namespace cl::raft;

namespace {

struct Dir {
  std::string path;
  Dir() {
    std::random_device rd;
    path = (std::filesystem::temp_directory_path() / ("cl-raft-storage-" + std::to_string(rd()))).string();
  }
  ~Dir() { std::filesystem::remove_all(path); }
};

Entry entry(Index i, Term t, std::string data) { return Entry{t, i, EntryType::kNormal, std::move(data)}; }

Ready ready_with(std::vector<Entry> entries, std::optional<HardState> hs) {
  Ready rd;
  rd.entries = std::move(entries);
  rd.hard_state = hs;
  return rd;
}

std::vector<Entry> load_entries(const std::string& dir) {
  auto st = RaftStorage::open(dir);
  REQUIRE(st.is_ok());
  auto r = (*st)->load();
  REQUIRE(r.is_ok());
  return r->entries;
}

}  // namespace

TEST_CASE("raft storage keeps entries and hard state across reopen; a new leader's entries replace a conflicting suffix") {
  Dir d;
  {
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, HardState{1, 1, 0})).is_ok());
    // Appends past the end (no truncation), then a commit-only write.
    REQUIRE((*st)->save(ready_with({entry(4, 1, "d"), entry(5, 1, "e")}, std::nullopt)).is_ok());
    REQUIRE((*st)->save(ready_with({}, HardState{1, 1, 3})).is_ok());
  }
  {
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    auto r = (*st)->load();
    REQUIRE(r.is_ok());
    CHECK(r->hard_state == HardState{1, 1, 3});
    REQUIRE(r->entries.size() == 5);
    CHECK(r->entries[4] == entry(5, 1, "e"));
    // Term 2's leader overwrites 4..5 with one entry at 4: entry 5 must go.
    REQUIRE((*st)->save(ready_with({entry(4, 2, "D")}, HardState{2, 2, 3})).is_ok());
  }
  auto entries = load_entries(d.path);
  REQUIRE(entries.size() == 4);
  CHECK(entries[2] == entry(3, 1, "c"));
  CHECK(entries[3] == entry(4, 2, "D"));
  {
    // Appending again after the truncation, across a reopen.
    auto st = RaftStorage::open(d.path);
    REQUIRE(st.is_ok());
    REQUIRE((*st)->save(ready_with({entry(5, 2, "E"), entry(6, 2, "F")}, std::nullopt)).is_ok());
  }
  entries = load_entries(d.path);
  REQUIRE(entries.size() == 6);
  CHECK(entries[5] == entry(6, 2, "F"));
}

TEST_CASE("raft storage compaction drops the prefix and keeps the rest") {
  Dir d;
  auto st = RaftStorage::open(d.path);
  REQUIRE(st.is_ok());
  REQUIRE((*st)->save(ready_with({entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c")}, HardState{1, 1, 3})).is_ok());
  REQUIRE((*st)->compact(SnapshotMeta{2, 1, ConfState{{1}}}).is_ok());
  REQUIRE((*st)->save(ready_with({entry(4, 1, "d")}, std::nullopt)).is_ok());
  auto r = (*st)->load();
  REQUIRE(r.is_ok());
  CHECK(r->snapshot.index == 2);
  REQUIRE(r->entries.size() == 2);
  CHECK(r->entries[0] == entry(3, 1, "c"));
  CHECK(r->entries[1] == entry(4, 1, "d"));
}

TEST_CASE("raft storage refuses a store without its format record or with another format") {
  Dir d;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(o, d.path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    REQUIRE(db->Put(rocksdb::WriteOptions(), "h", "something older").ok());
  }
  auto st = RaftStorage::open(d.path);
  REQUIRE_FALSE(st.is_ok());
  CHECK(st.status().code() == "corruption");
  CHECK(st.status().message().find("no format record") != std::string::npos);

  Dir e;
  { REQUIRE(RaftStorage::open(e.path).is_ok()); }  // a fresh store gets the format record
  {
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::Options(), e.path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::string v;
    REQUIRE(db->Get(rocksdb::ReadOptions(), "v", &v).ok());
    CHECK(v == "cityledger-raft-2");
    REQUIRE(db->Put(rocksdb::WriteOptions(), "v", "cityledger-raft-9").ok());
  }
  auto again = RaftStorage::open(e.path);
  REQUIRE_FALSE(again.is_ok());
  CHECK(again.status().message().find("cityledger-raft-9") != std::string::npos);
}
