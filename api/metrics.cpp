#include "api/metrics.h"

#include <cstdio>

namespace cl::api {
namespace {
std::string fmt_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_micros_.fetch_add(static_cast<uint64_t>(value * 1e6), std::memory_order_relaxed);
}

void Histogram::render(const std::string& name, std::string* out) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    std::string le = i < bounds_.size() ? fmt_double(bounds_[i]) : "+Inf";
    *out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + "\n";
  }
  *out += name + "_sum " + fmt_double(static_cast<double>(sum_micros_.load()) / 1e6) + "\n";
  *out += name + "_count " + std::to_string(count_.load()) + "\n";
}

Metrics::Metrics()
    : batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192}),
      commit_ms_({0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1000}),
      op_latency_ms_({0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 1000, 5000}) {}

void Metrics::count_op(OpType type, Code code, uint64_t n) {
  ops_[static_cast<size_t>(type) * kCodes + static_cast<size_t>(code)].fetch_add(n, std::memory_order_relaxed);
}

void Metrics::count_request(int http_status) {
  size_t i = (http_status >= 100 && http_status < 600) ? static_cast<size_t>(http_status / 100 - 1) : 5;
  requests_[i].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::count_overload() { overload_.fetch_add(1, std::memory_order_relaxed); }

void Metrics::observe_batch(size_t ops, double commit_ms) {
  batch_size_.observe(static_cast<double>(ops));
  commit_ms_.observe(commit_ms);
}

void Metrics::observe_op_latency(double ms) { op_latency_ms_.observe(ms); }

std::string Metrics::render(double uptime_s) const {
  std::string out;
  out += "# HELP cityledger_ops_total Ops answered, by op type and result.\n";
  out += "# TYPE cityledger_ops_total counter\n";
  for (size_t t = 0; t < kTypes; ++t) {
    for (size_t c = 0; c < kCodes; ++c) {
      uint64_t v = ops_[t * kCodes + c].load(std::memory_order_relaxed);
      if (v == 0) continue;
      out += "cityledger_ops_total{type=\"" + std::string(op_type_name(static_cast<OpType>(t))) + "\",result=\"" +
             std::string(code_name(static_cast<Code>(c))) + "\"} " + std::to_string(v) + "\n";
    }
  }
  out += "# HELP cityledger_http_requests_total HTTP responses, by status class.\n";
  out += "# TYPE cityledger_http_requests_total counter\n";
  const char* classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
  for (size_t i = 0; i < requests_.size(); ++i)
    out += std::string("cityledger_http_requests_total{class=\"") + classes[i] + "\"} " +
           std::to_string(requests_[i].load()) + "\n";
  out += "# HELP cityledger_overload_total Requests refused with 429/503 because a limit was reached.\n";
  out += "# TYPE cityledger_overload_total counter\n";
  out += "cityledger_overload_total " + std::to_string(overload_.load()) + "\n";
  out += "# HELP cityledger_batch_ops Ops per committed batch.\n# TYPE cityledger_batch_ops histogram\n";
  batch_size_.render("cityledger_batch_ops", &out);
  out += "# HELP cityledger_commit_ms Time to make one batch durable and applied, ms.\n";
  out += "# TYPE cityledger_commit_ms histogram\n";
  commit_ms_.render("cityledger_commit_ms", &out);
  out += "# HELP cityledger_op_latency_ms Time from admission to answer of one op, ms.\n";
  out += "# TYPE cityledger_op_latency_ms histogram\n";
  op_latency_ms_.render("cityledger_op_latency_ms", &out);
  out += "# HELP cityledger_queue_ops Ops admitted and not yet answered.\n# TYPE cityledger_queue_ops gauge\n";
  out += "cityledger_queue_ops " + std::to_string(queue_depth_.load()) + "\n";
  out += "# HELP cityledger_connections Open HTTP connections.\n# TYPE cityledger_connections gauge\n";
  out += "cityledger_connections " + std::to_string(connections_.load()) + "\n";
  out += "# HELP cityledger_verified_total Signatures verified by the verify pool.\n";
  out += "# TYPE cityledger_verified_total counter\n";
  out += "cityledger_verified_total " + std::to_string(verified_.load()) + "\n";
  out += "# HELP cityledger_verify_busy_seconds_total Time the verify pool spent verifying.\n";
  out += "# TYPE cityledger_verify_busy_seconds_total counter\n";
  double busy_s = static_cast<double>(verify_busy_ns_.load()) / 1e9;
  out += "cityledger_verify_busy_seconds_total " + fmt_double(busy_s) + "\n";
  out += "# HELP cityledger_verify_utilisation Verify pool busy time / (threads × uptime).\n";
  out += "# TYPE cityledger_verify_utilisation gauge\n";
  double denom = static_cast<double>(verify_threads_.load()) * uptime_s;
  out += "cityledger_verify_utilisation " + fmt_double(denom > 0 ? busy_s / denom : 0) + "\n";
  out += "# HELP cityledger_journal_entries Journal size.\n# TYPE cityledger_journal_entries gauge\n";
  out += "cityledger_journal_entries " + std::to_string(journal_size_.load()) + "\n";
  return out;
}

}  // namespace cl::api
