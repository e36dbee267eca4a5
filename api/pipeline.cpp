#include "api/pipeline.h"

#include <algorithm>
#include <pthread.h>

#include <chrono>

#include "api/metrics.h"

namespace cl::api {
namespace {
using SteadyClock = std::chrono::steady_clock;
constexpr size_t kVerifyChunkOps = 64;  // ops per verify task: spreads big batches over the pool
}  // namespace

struct Pipeline::Request {
  std::vector<Envelope> ops;
  std::vector<OpOutcome> outcomes;
  std::atomic<size_t> remaining{0};
  Done done;
  SteadyClock::time_point admitted;
  std::mutex error_mu;
  Status error;  // set if some slot could not be committed
};

Pipeline::Pipeline(BatchCommitter* committer, ClockMs clock_ms, Metrics* metrics, PipelineOptions options)
    : committer_(committer), clock_ms_(std::move(clock_ms)), metrics_(metrics), options_(options) {
  CL_CHECK(options_.batch_ops_max >= 1 && options_.batch_ops_max <= kApplyBatchOpsMax);
  size_t threads = options_.verify_threads ? options_.verify_threads : std::max(1u, std::thread::hardware_concurrency());
  if (metrics_) metrics_->set_verify_threads(threads);
  for (size_t i = 0; i < threads; ++i)
    verify_threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "cl-verify");
      verify_loop();
    });
  commit_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cl-commit");
    commit_loop();
  });
}

Pipeline::~Pipeline() { stop(); }

bool Pipeline::submit(std::vector<Envelope> ops, Done done) {
  size_t n = ops.size();
  if (n == 0) {
    done({}, Status::ok());
    return true;
  }
  size_t before = queued_ops_.fetch_add(n);
  if (before + n > options_.queue_ops_max) {
    queued_ops_.fetch_sub(n);
    return false;
  }
  auto r = std::make_shared<Request>();
  r->ops = std::move(ops);
  r->outcomes.resize(n);
  r->remaining.store(n);
  r->done = std::move(done);
  r->admitted = SteadyClock::now();
  {
    std::lock_guard<std::mutex> lock(verify_mu_);
    if (stopping_) {
      queued_ops_.fetch_sub(n);
      return false;
    }
    for (size_t b = 0; b < n; b += kVerifyChunkOps) verify_queue_.push_back({r, {b, std::min(n, b + kVerifyChunkOps)}});
  }
  if (metrics_) metrics_->set_queue_depth(queued_ops_.load());
  verify_cv_.notify_one();
  return true;
}

void Pipeline::finish_slot(const std::shared_ptr<Request>& r, size_t slot, OpOutcome outcome) {
  if (metrics_) metrics_->count_op(r->ops[slot].body.type, outcome.code);
  r->outcomes[slot] = std::move(outcome);
  if (r->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    queued_ops_.fetch_sub(r->ops.size());
    if (metrics_) {
      double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - r->admitted).count();
      metrics_->observe_op_latency(ms);
      metrics_->set_queue_depth(queued_ops_.load());
    }
    Status error;
    {
      std::lock_guard<std::mutex> lock(r->error_mu);
      error = r->error;
    }
    r->done(std::move(r->outcomes), error);
  }
}

void Pipeline::verify_loop() {
  while (true) {
    std::shared_ptr<Request> r;
    size_t begin = 0, end = 0;
    {
      std::unique_lock<std::mutex> lock(verify_mu_);
      verify_cv_.wait(lock, [this] { return stopping_ || !verify_queue_.empty(); });
      if (verify_queue_.empty()) return;  // stopping and drained
      r = std::move(verify_queue_.front().first);
      std::tie(begin, end) = verify_queue_.front().second;
      verify_queue_.pop_front();
    }
    auto t0 = SteadyClock::now();
    std::vector<Item> good;
    good.reserve(end - begin);
    for (size_t i = begin; i < end; ++i) {
      if (verify_envelope(r->ops[i]) == Code::kOk) {
        good.push_back(Item{r, i});
      } else {
        finish_slot(r, i, OpOutcome{Code::kBadSignature, "a signature does not verify for its key", {}});
      }
    }
    if (metrics_) {
      metrics_->add_verify_busy_ns(
          std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() - t0).count());
      metrics_->count_verified(end - begin);
    }
    if (!good.empty()) {
      {
        std::lock_guard<std::mutex> lock(batch_mu_);
        for (auto& item : good) batch_queue_.push_back(std::move(item));
      }
      batch_cv_.notify_one();
    }
  }
}

void Pipeline::commit_loop() {
  while (true) {
    auto items = std::make_shared<std::vector<Item>>();
    {
      std::unique_lock<std::mutex> lock(batch_mu_);
      batch_cv_.wait(lock, [this] {
        return (verify_done_ || !batch_queue_.empty()) && in_flight_ < options_.batches_in_flight_max;
      });
      if (batch_queue_.empty()) {
        // Verify threads are done and everything queued was handed over:
        // wait for the batches still in flight, then stop.
        batch_cv_.wait(lock, [this] { return in_flight_ == 0; });
        return;
      }
      // Group commit: while earlier batches are still in flight, wait (up
      // to batch_wait_us) for this one to fill; an idle committer takes
      // what is queued at once, so a lone op pays no wait at low load
      // (unless batch_wait_when_idle and recent batches were large).
      const bool wait_when_idle =
          options_.batch_wait_when_idle && recent_batch_ops_ >= options_.idle_wait_min_batch_ops;
      if (options_.batch_wait_us > 0 && batch_queue_.size() < options_.batch_ops_max && !verify_done_ &&
          (in_flight_ > 0 || wait_when_idle)) {
        batch_cv_.wait_for(lock, std::chrono::microseconds(options_.batch_wait_us), [this, wait_when_idle] {
          return batch_queue_.size() >= options_.batch_ops_max || (!wait_when_idle && in_flight_ == 0) || verify_done_;
        });
      }
      size_t n = std::min(batch_queue_.size(), options_.batch_ops_max);
      // Within the committer's size bound too (a 8,192-op batch of two
      // 4,096-op requests of open_wallet ops made a Raft entry of ~9 MiB,
      // above its 8 MiB bound: every op of both was answered 503).
      const size_t bytes_max = committer_->batch_bytes_max();
      if (bytes_max != SIZE_MAX) {
        size_t bytes = 0, fit = 0;
        for (; fit < n; ++fit) {
          const Item& item = batch_queue_[fit];
          bytes += committer_->op_bytes(item.request->ops[item.slot]);
          if (bytes > bytes_max && fit > 0) break;
        }
        n = fit;
      }
      recent_batch_ops_ += (static_cast<double>(n) - recent_batch_ops_) / 4;
      for (size_t i = 0; i < n; ++i) {
        items->push_back(std::move(batch_queue_.front()));
        batch_queue_.pop_front();
      }
      ++in_flight_;
    }
    std::vector<Envelope> batch;
    batch.reserve(items->size());
    for (const auto& item : *items) batch.push_back(item.request->ops[item.slot]);
    // Ledger time: the leader's clock, forced strictly increasing (DESIGN §3).
    uint64_t time = std::max(clock_ms_(), committer_->last_time() + 1);
    auto t0 = SteadyClock::now();
    size_t size = batch.size();
    committer_->commit_async(std::move(batch), time, [this, items, t0, size](Result<std::vector<OpOutcome>> outcomes) {
      double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
      if (metrics_) metrics_->observe_batch(size, ms);
      finish_batch(*items, outcomes);
      {
        std::lock_guard<std::mutex> lock(batch_mu_);
        --in_flight_;
      }
      batch_cv_.notify_all();
    });
  }
}

void Pipeline::finish_batch(const std::vector<Item>& items, Result<std::vector<OpOutcome>>& outcomes) {
  for (size_t i = 0; i < items.size(); ++i) {
    if (outcomes.is_ok()) {
      finish_slot(items[i].request, items[i].slot, std::move((*outcomes)[i]));
    } else {
      // Nothing was committed: the request fails as a whole and may be
      // retried with the same op ids.
      {
        std::lock_guard<std::mutex> lock(items[i].request->error_mu);
        items[i].request->error = outcomes.status();
      }
      finish_slot(items[i].request, items[i].slot,
                  OpOutcome{Code::kMalformed, "not committed: " + outcomes.status().to_string(), {}});
    }
  }
}

void Pipeline::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard<std::mutex> lock(verify_mu_);
    stopping_ = true;
  }
  verify_cv_.notify_all();
  for (auto& t : verify_threads_) t.join();
  {
    std::lock_guard<std::mutex> lock(batch_mu_);
    verify_done_ = true;
  }
  batch_cv_.notify_all();
  commit_thread_.join();
}

}  // namespace cl::api
