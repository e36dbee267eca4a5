// Prometheus metrics (text exposition format 0.0.4).  Lock-free counters
// and histograms with fixed buckets; the set of series is fixed at start, so
// memory stays bounded whatever the traffic.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "wallet/codes.h"
#include "wallet/op.h"

namespace cl::api {

// A histogram over fixed upper bounds (plus +Inf).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Appends the _bucket/_sum/_count series of "name" (with "labels", which
  // may be empty, e.g. "op=\"fare\"").
  void render(const std::string& name, std::string* out) const;

 private:
  std::vector<double> bounds_;
  std::vector<std::atomic<uint64_t>> buckets_;  // one per bound, plus +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_micros_{0};  // sum × 1e6, integral for atomic adds
};

class Metrics {
 public:
  Metrics();

  // Ops answered, by op type and result code.
  void count_op(OpType type, Code code, uint64_t n = 1);
  // Requests answered, by HTTP status class.
  void count_request(int http_status);
  // Requests refused because a queue or connection limit was reached.
  void count_overload();
  // One committed batch: its size and the time from start of commit to durable.
  void observe_batch(size_t ops, double commit_ms);
  // Time from admission to answer of one op.
  void observe_op_latency(double ms);
  void set_queue_depth(uint64_t ops) { queue_depth_.store(ops); }
  void set_connections(uint64_t n) { connections_.store(n); }
  // Verify pool accounting: busy time and thread count, for utilisation.
  void add_verify_busy_ns(uint64_t ns) { verify_busy_ns_.fetch_add(ns); }
  void set_verify_threads(uint64_t n) { verify_threads_.store(n); }
  void count_verified(uint64_t n) { verified_.fetch_add(n); }

  // Extra gauges the node sets (journal size, ledger time, role...).
  void set_journal_size(uint64_t n) { journal_size_.store(n); }

  // The whole exposition, given the process uptime in seconds (for the
  // verify pool's utilisation ratio).
  std::string render(double uptime_s) const;

 private:
  static constexpr size_t kTypes = 9;
  static constexpr size_t kCodes = 15;
  std::array<std::atomic<uint64_t>, kTypes * kCodes> ops_{};
  std::array<std::atomic<uint64_t>, 6> requests_{};  // 1xx..5xx, other
  std::atomic<uint64_t> overload_{0};
  Histogram batch_size_;
  Histogram commit_ms_;
  Histogram op_latency_ms_;
  std::atomic<uint64_t> queue_depth_{0};
  std::atomic<uint64_t> connections_{0};
  std::atomic<uint64_t> verify_busy_ns_{0};
  std::atomic<uint64_t> verify_threads_{0};
  std::atomic<uint64_t> verified_{0};
  std::atomic<uint64_t> journal_size_{0};
};

}  // namespace cl::api
