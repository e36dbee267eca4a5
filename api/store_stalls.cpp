#include "api/store_stalls.h"

#include <cstdio>

#include "api/log.h"

namespace cl::api {
namespace {

const char* condition_name(rocksdb::WriteStallCondition c) {
  switch (c) {
    case rocksdb::WriteStallCondition::kNormal: return "normal";
    case rocksdb::WriteStallCondition::kDelayed: return "delayed";
    case rocksdb::WriteStallCondition::kStopped: return "stopped";
  }
  return "unknown";
}

// Index into the counters: delayed 0, stopped 1, normal -1.
int slot(rocksdb::WriteStallCondition c) {
  if (c == rocksdb::WriteStallCondition::kDelayed) return 0;
  if (c == rocksdb::WriteStallCondition::kStopped) return 1;
  return -1;
}

}  // namespace

// RocksDB may deliver two changes of one family out of order (seen: a
// "stopped -> normal" before its "normal -> stopped"); the time stalled is
// measured between the notifications as this listener receives them.
void StoreStallListener::OnStallConditionsChanged(const rocksdb::WriteStallInfo& info) {
  const auto now = Clock::now();
  const auto cur = info.condition.cur;
  int64_t stalled_us = -1;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Since& s = families_[info.cf_name];
    if (int was = slot(s.condition); was >= 0) {
      stalled_us = std::chrono::duration_cast<std::chrono::microseconds>(now - s.at).count();
      stalled_us_[was].fetch_add(static_cast<uint64_t>(stalled_us));
    }
    if (int is = slot(cur); is >= 0) stalls_[is].fetch_add(1);
    s = Since{cur, now};
  }
  // The end is a warning too: it carries how long the stall lasted.
  const LogLevel level = LogLevel::kWarn;
  if (stalled_us < 0) {
    log_event(level, "store_write_stall",
              {{"store", store_}, {"family", info.cf_name}, {"condition", condition_name(cur)},
               {"previous", condition_name(info.condition.prev)}});
    return;
  }
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.1f", static_cast<double>(stalled_us) / 1000.0);
  log_event(level, "store_write_stall",
            {{"store", store_}, {"family", info.cf_name}, {"condition", condition_name(cur)},
             {"previous", condition_name(info.condition.prev)}, {"ms", ms}});
}

void StoreStallListener::render(const std::vector<const StoreStallListener*>& stores, std::string* out) {
  const char* names[] = {"delayed", "stopped"};
  *out += "# HELP cityledger_store_write_stalls_total Times RocksDB slowed (delayed) or stopped a store's writes "
          "because its flushes or compactions fell behind.\n";
  *out += "# TYPE cityledger_store_write_stalls_total counter\n";
  for (const auto* st : stores)
    for (int c = 0; c < 2; ++c)
      *out += "cityledger_store_write_stalls_total{store=\"" + st->store_ + "\",condition=\"" + names[c] + "\"} " +
              std::to_string(st->stalls(c)) + "\n";
  *out += "# HELP cityledger_store_write_stall_seconds_total Time a store's writes spent delayed or stopped "
          "(counted when the stall ends).\n";
  *out += "# TYPE cityledger_store_write_stall_seconds_total counter\n";
  for (const auto* st : stores)
    for (int c = 0; c < 2; ++c) {
      char v[32];
      std::snprintf(v, sizeof v, "%.3f", static_cast<double>(st->stalled_us(c)) / 1e6);
      *out += "cityledger_store_write_stall_seconds_total{store=\"" + st->store_ + "\",condition=\"" + names[c] +
              "\"} " + v + "\n";
    }
}

}  // namespace cl::api
