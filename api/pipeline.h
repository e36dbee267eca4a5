// The write path of a node: verify on a worker pool, then group ops into
// batches that one committer thread makes durable and applies.
//
//   submit() ──▶ verify pool (every core) ──▶ batch queue ──▶ committer thread
//                    │ bad signature                         │ one durable batch
//                    ▼                                       ▼
//                 done(outcomes)  ◀──────────────  done(outcomes) per request
//
// Every queue is bounded: submit() refuses (the caller answers 429) when the
// ops admitted but not yet answered would exceed queue_ops_max.  Callbacks
// run on a pool or committer thread: they must only hand the result off.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/status.h"
#include "ledger/ledger.h"
#include "wallet/op.h"

namespace cl::api {

class Metrics;

// Where batches go.  Locally: the ledger's apply.  Replicated: Raft, then apply.
class BatchCommitter {
 public:
  virtual ~BatchCommitter() = default;
  // Makes "ops" durable at ledger time "time" and returns one outcome per op.
  // Blocks until done.  A non-ok Status means nothing was committed.
  virtual Result<std::vector<OpOutcome>> commit(std::span<const Envelope> ops, uint64_t time) = 0;
  // As commit(), but may return before the batch is done and call "done"
  // later from another thread, so that several batches are in flight
  // (replication pipelining).  The default commits synchronously.
  using CommitDone = std::function<void(Result<std::vector<OpOutcome>>)>;
  virtual void commit_async(std::vector<Envelope> ops, uint64_t time, CommitDone done) {
    done(commit(ops, time));
  }
  // The ledger time of the last committed batch.
  virtual uint64_t last_time() const = 0;
  // What one op adds to a batch's size, and the size a batch may reach
  // (a Raft entry is bounded); the pipeline cuts batches to fit.  A single
  // op always makes a batch.  Default: no bound.
  virtual size_t op_bytes(const Envelope&) const { return 0; }
  virtual size_t batch_bytes_max() const { return SIZE_MAX; }
};

// Commits by applying directly to a local ledger (single node).
class LocalCommitter : public BatchCommitter {
 public:
  explicit LocalCommitter(Ledger* ledger) : ledger_(ledger) {}
  Result<std::vector<OpOutcome>> commit(std::span<const Envelope> ops, uint64_t time) override {
    return ledger_->apply(ops, time);
  }
  uint64_t last_time() const override { return ledger_->head().last_time; }

 private:
  Ledger* ledger_;
};

struct PipelineOptions {
  size_t verify_threads = 0;        // 0 = one per core
  size_t batch_ops_max = kApplyBatchOpsMax;
  size_t queue_ops_max = 65536;
  uint64_t batch_wait_us = 0;       // wait to fill a batch while others are in flight (0: commit what is queued)
  // Wait batch_wait_us even when no batch is in flight, while recent
  // batches carried at least idle_wait_min_batch_ops ops on average (an
  // EWMA of batch sizes).  Replicated nodes do: there a batch in flight
  // spans a network round trip, and committing every lone op at once made
  // ~30% more Raft entries at half of peak (more CPU per op on 2 shared
  // cores) for no clear p99 gain there.  At low load, where batches are
  // lone ops anyway, waiting only added batch_wait_us to every op: 3-node
  // fare p50 2.0 ms at 737 ops/s, 0.7 ms with this threshold at 2 (same
  // p50/p99 and node CPU as always waiting from 1,843 ops/s up; at 4,
  // mid rates made ~20% more Raft entries and ~5% more CPU).
  bool batch_wait_when_idle = false;
  double idle_wait_min_batch_ops = 2;
  size_t batches_in_flight_max = 4; // batches handed to the committer and not yet done
};

class Pipeline {
 public:
  // Called once per submit: one outcome per op, in order, and Status ok;
  // or a non-ok Status if some op could not be committed (storage or
  // replication unavailable: answer 503; the ops may be retried by id).
  using Done = std::function<void(std::vector<OpOutcome>, Status)>;
  using ClockMs = std::function<uint64_t()>;

  // "committer", "clock_ms" (wall clock in ms, the leader's time source) and
  // "metrics" (may be null) must outlive the pipeline.
  Pipeline(BatchCommitter* committer, ClockMs clock_ms, Metrics* metrics, PipelineOptions options);
  ~Pipeline();  // finishes every admitted op, then stops the threads

  // Admits "ops" (each already decoded and chain-checked) and later calls
  // done (see Done).  Returns false, without calling
  // done, if admitting them would exceed queue_ops_max or the pipeline is
  // stopping.
  bool submit(std::vector<Envelope> ops, Done done);

  // Stops admitting, finishes what was admitted, joins the threads.
  void stop();

  size_t queued_ops() const { return queued_ops_.load(); }

 private:
  struct Request;
  struct Item {
    std::shared_ptr<Request> request;
    size_t slot;
  };
  void verify_loop();
  void commit_loop();
  void finish_batch(const std::vector<Item>& items, Result<std::vector<OpOutcome>>& outcomes);
  void finish_slot(const std::shared_ptr<Request>& r, size_t slot, OpOutcome outcome);

  BatchCommitter* committer_;
  ClockMs clock_ms_;
  Metrics* metrics_;
  PipelineOptions options_;
  std::atomic<size_t> queued_ops_{0};

  std::mutex verify_mu_;
  std::condition_variable verify_cv_;
  std::deque<std::pair<std::shared_ptr<Request>, std::pair<size_t, size_t>>> verify_queue_;  // (request, [begin,end))

  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  std::deque<Item> batch_queue_;

  size_t in_flight_ = 0;   // batches with the committer; guarded by batch_mu_
  double recent_batch_ops_ = 0;  // EWMA of batch sizes; commit thread only
  bool stopping_ = false;  // guarded by verify_mu_ (and batch_mu_ for the committer)
  bool verify_done_ = false;
  std::vector<std::thread> verify_threads_;
  std::thread commit_thread_;
  std::atomic<bool> stopped_{false};
};

}  // namespace cl::api
