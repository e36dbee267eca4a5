// StoreStallListener: RocksDB write stalls of a store are counted, timed
// and exported (a real RocksDB made to stall: tiny memtables whose flushes
// a rate limiter slows to a crawl).
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <rocksdb/db.h>
#include <rocksdb/rate_limiter.h>

#include "api/store_stalls.h"
#include "tests/unit/fixture.h"

using namespace cl;
using cl::test::TempDir;
using cl::api::StoreStallListener;

namespace {

struct Store {
  std::unique_ptr<rocksdb::DB> db;
  std::shared_ptr<StoreStallListener> stalls = std::make_shared<StoreStallListener>("test");
  explicit Store(const std::string& dir) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.write_buffer_size = 64 << 10;
    o.max_write_buffer_number = 2;  // a second full memtable stops writes
    o.rate_limiter.reset(rocksdb::NewGenericRateLimiter(64 << 10));  // flushes write 64 KiB/s
    o.listeners.push_back(stalls);
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(o, dir, &raw).ok());
    db.reset(raw);
  }
  void write(size_t bytes) {
    rocksdb::WriteOptions wo;
    wo.disableWAL = true;
    const std::string value(4096, 'v');
    for (size_t i = 0; i * value.size() < bytes; ++i)
      REQUIRE(db->Put(wo, "k" + std::to_string(i) + "-" + std::to_string(bytes), value).ok());
  }
};

}  // namespace

TEST_CASE("a store whose flushes fall behind reports the stop, how long it lasted, and exports both") {
  TempDir dir;
  Store s(dir.path());
  s.write(16 << 10);  // fits one memtable: no stall
  CHECK(s.stalls->stalls(0) == 0);
  CHECK(s.stalls->stalls(1) == 0);

  s.write(320 << 10);  // five memtables, each flushed at 64 KiB/s: writes stop
  rocksdb::FlushOptions fo;
  fo.wait = true;
  REQUIRE(s.db->Flush(fo).ok());  // and the store is back to normal
  CHECK(s.stalls->stalls(1) >= 1);
  // Each stop lasts until a flush at 64 KiB/s completes: tens of ms at
  // least (~100 ms measured here; less on a loaded machine whose writer
  // reaches the stop late).
  CHECK(s.stalls->stalled_us(1) > 10'000);

  std::string text;
  StoreStallListener other("raft");
  StoreStallListener::render({s.stalls.get(), &other}, &text);
  CHECK(text.find("cityledger_store_write_stalls_total{store=\"test\",condition=\"stopped\"} " +
                  std::to_string(s.stalls->stalls(1)) + "\n") != std::string::npos);
  char stopped_s[32];
  std::snprintf(stopped_s, sizeof stopped_s, "%.3f", static_cast<double>(s.stalls->stalled_us(1)) / 1e6);
  CHECK(text.find("cityledger_store_write_stall_seconds_total{store=\"test\",condition=\"stopped\"} " +
                  std::string(stopped_s) + "\n") != std::string::npos);
  CHECK(text.find("cityledger_store_write_stalls_total{store=\"raft\",condition=\"stopped\"} 0\n") != std::string::npos);
  CHECK(text.find("cityledger_store_write_stall_seconds_total{store=\"raft\",condition=\"delayed\"} 0.000\n") !=
        std::string::npos);
  // Each metric's series are contiguous (Prometheus text format): every
  // stall count comes before the first stall time.
  CHECK(text.rfind("cityledger_store_write_stalls_total{") < text.find("cityledger_store_write_stall_seconds_total{"));
}
