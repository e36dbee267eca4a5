// The HTTP load machinery shared by the benchmarks that drive a running node
// (`bench run`, `bench rush`, `bench growth`): pre-built requests sent over
// keep-alive connections from one thread, either back-to-back (closed loop)
// or each at its scheduled time (open loop, latency measured from that time
// so a stalled server cannot hide queueing: no coordinated omission).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "api/http_client.h"
#include "common/status.h"
#include "wallet/jcs.h"

namespace cl::cli {

// The bytes of one POST request with a JSON body.
std::string post_request_bytes(const std::string& host, const std::string& target, const std::string& body);

struct LoadRequest {
  std::string bytes;  // a whole HTTP/1.1 request
  double due_s = 0;   // open loop: when it is due, in seconds after the phase start
  uint32_t tag = 0;   // the caller's (e.g. an index into its own bookkeeping)
};

// Requests that one connection, or several sharing it, take in order.
class LoadQueue {
 public:
  explicit LoadQueue(std::vector<LoadRequest> requests) : requests_(std::move(requests)) {}
  // The next request, or nullptr when none is left.
  const LoadRequest* pull() { return next_ < requests_.size() ? &requests_[next_++] : nullptr; }
  // Requests never taken (the phase stopped, or a connection failed).
  std::span<const LoadRequest> unsent() const {
    return std::span<const LoadRequest>(requests_).subspan(next_);
  }
  // Set when a connection taking from this queue failed.
  bool failed = false;

 private:
  std::vector<LoadRequest> requests_;
  size_t next_ = 0;
};

// Answer status passed to LoadDone when no HTTP status was received.
constexpr int kLoadIoError = 0;

// Called once per request taken: its HTTP status (or kLoadIoError), the
// response body, and the latency in ms (from the scheduled time when paced).
using LoadDone = std::function<void(const LoadRequest&, int status, const std::string& body, double latency_ms)>;

struct LoadPlan {
  // Connection i takes from queues[i]; several connections may share a queue.
  std::vector<std::shared_ptr<LoadQueue>> queues;
  // Open loop: each request waits until start + due_s.  Closed loop: sent as
  // soon as the connection's previous answer arrived.
  bool paced = false;
  // > 0: no request is started after start + send_until_s (the rest stay in
  // their queues' unsent()).
  double send_until_s = 0;
};

struct LoadTiming {
  double run_seconds = 0;   // the whole run, connecting included
  double last_answer_s = 0;  // from the phase start to the last answer
};

// Runs "plan" against "url" on the calling thread until every connection has
// finished its queue (or the send window closed and answers arrived).
// The phase starts 20 ms after the call, once connections are being opened.
Result<LoadTiming> run_http_load(const api::Url& url, const LoadPlan& plan, const LoadDone& done);

// The node a benchmark should drive: "url" itself, or the leader it names in
// GET /v1/cluster if it is a follower.  Also reads the chain id from
// GET /v1/checkpoint.  Messages go to stderr prefixed with "who".
struct BenchTarget {
  api::Url url;
  std::string base;  // "http://host:port"
  std::string chain;
};
Result<BenchTarget> find_bench_target(const std::string& node_url, const std::string& who);

// Posts signed envelopes (JCS) through POST /v1/ops/batch, "chunk" per
// request, over "connections" connections at once (so one batch verifies
// while another commits).  Fails on any rejected op (setup must succeed).
Status submit_batches(const api::Url& url, const std::vector<std::string>& envs, size_t chunk, size_t connections);

// Waits (up to 30 s) until every replica has applied what the leader has
// committed, so that one phase's backlog on the followers does not land in
// the next phase's figures.  Returns the wait in ms (0 for a single node).
double settle_replicas(const api::Url& leader);

}  // namespace cl::cli
