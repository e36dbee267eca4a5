// Write stalls of a RocksDB store, made visible.  RocksDB slows ("delayed")
// or stops a store's writes when its flushes or compactions fall behind
// (too many memtables waiting for a flush, too many level-0 files, too many
// bytes pending compaction).  A stopped ledger store stops applies, and with
// them every answer; before this listener the only trace was RocksDB's own
// LOG file.  Each change of a column family's condition logs
//   event=store_write_stall store=ledger family=journal condition=stopped previous=normal
// (warn; also on the way back to normal, with ms= the time spent stalled),
// and the totals are exported in /metrics.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <rocksdb/listener.h>

namespace cl::api {

class StoreStallListener : public rocksdb::EventListener {
 public:
  explicit StoreStallListener(std::string store) : store_(std::move(store)) {}

  void OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) override;

  const std::string& store() const { return store_; }
  // Times a family of this store entered the condition (0 delayed, 1 stopped).
  uint64_t stalls(int condition) const { return stalls_[condition].load(); }
  // Time spent in it, counted when the family leaves it, in microseconds.
  uint64_t stalled_us(int condition) const { return stalled_us_[condition].load(); }

  // Appends the series of these stores to a Prometheus exposition.
  static void render(const std::vector<const StoreStallListener*>& stores, std::string* out);

 private:
  using Clock = std::chrono::steady_clock;
  struct Since {
    rocksdb::WriteStallCondition condition = rocksdb::WriteStallCondition::kNormal;
    Clock::time_point at;
  };
  const std::string store_;
  std::mutex mu_;
  std::map<std::string, Since> families_;  // guarded by mu_
  std::array<std::atomic<uint64_t>, 2> stalls_{};
  std::array<std::atomic<uint64_t>, 2> stalled_us_{};
};

}  // namespace cl::api
