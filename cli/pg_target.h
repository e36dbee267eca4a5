// The PostgreSQL side of `cityledger bench rush`: the same ledger semantics
// as cityledger's fare, transfer and payout ops, written the way a competent
// team would on PostgreSQL (one transaction per op, synchronous_commit=on,
// prepared statements, pipelined round trips), driven with the same
// schedules and the same latency accounting as the HTTP target.
//
// PostgreSQL verifies no signatures here: the ops carry none.
//
// Schema (dropped and created by create_schema):
//   wallets(id bytea primary key, balance bigint not null check (balance >= 0))
//   journal(seq bigserial primary key, op_id bytea unique not null, kind text,
//           src bytea, dst bytea, amount bigint, created timestamptz default now())
//   payouts(program text, reference text, primary key (program, reference))
//
// One op (fare, transfer) = one transaction in two round trips:
//   1. BEGIN; INSERT INTO journal ... ON CONFLICT (op_id) DO NOTHING;
//      UPDATE wallets SET balance = balance - $amt WHERE id = $src AND balance >= $amt
//   2. no journal row: ROLLBACK, answered as a replay (the op id was used);
//      no debited row: ROLLBACK, rejected (insufficient funds or unknown payer);
//      else: credit the payee (an error if it does not exist); COMMIT.
// A payout batch = one transaction: per payout, the (program, reference)
// uniqueness insert, the journal insert and the payee's credit in one
// statement, then one debit of the agency for the sum of the accepted ones
// and COMMIT.  A payout whose reference was used is rejected; the others in
// the batch still commit, as on cityledger's batch endpoint.
//
// Deadlocks and serialization failures are counted as errors, never retried.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "wallet/jcs.h"
#include "wallet/op.h"

struct pg_conn;  // libpq's PGconn

namespace cl::cli {

enum class PgKind : uint8_t { kFare, kTransfer, kPayoutBatch };

struct PgOp {
  Id128 id{};
  WalletId from{}, to{};
  uint64_t amount = 0;
  std::string program, reference;  // payouts
};

struct PgRequest {
  PgKind kind = PgKind::kFare;
  double due_s = 0;  // open loop: seconds after the phase start
  std::vector<PgOp> ops;
};

// What became of one request (all counts in ops).
struct PgOutcome {
  bool taken = false;     // a worker took it (false: the phase ended first)
  bool answered = false;  // a database answer arrived (latency_ms is valid)
  double latency_ms = 0;
  uint32_t accepted = 0, replays = 0, rejected = 0, errors = 0;
  bool deadlock = false;  // the error was a deadlock or serialization failure
};

// Requests workers take from, in order (indexes into the phase's requests).
// Several workers may share one queue (closed loop).
class PgQueue {
 public:
  explicit PgQueue(std::vector<uint32_t> order) : order_(std::move(order)) {}
  // The next request index, or -1 when none is left.  Thread-safe.
  int64_t take() {
    size_t i = next_.fetch_add(1);
    return i < order_.size() ? static_cast<int64_t>(order_[i]) : -1;
  }
  // Requests never taken (once the phase is over).
  std::span<const uint32_t> unsent() const {
    return std::span<const uint32_t>(order_).subspan(std::min(next_.load(), order_.size()));
  }
  // Set when a worker taking from this queue lost its connection.
  std::atomic<bool> failed{false};

 private:
  std::vector<uint32_t> order_;
  std::atomic<size_t> next_{0};
};

struct PgPlan {
  std::vector<std::shared_ptr<PgQueue>> queues;  // worker i takes from queues[i]
  bool paced = false;       // open loop: request waits until start + due_s
  double send_until_s = 0;  // > 0: nothing is started after start + send_until_s
};

struct PgPhaseTiming {
  double last_answer_s = 0;  // from the phase start to the last answer
};

class PgTarget {
 public:
  ~PgTarget();
  PgTarget(const PgTarget&) = delete;
  PgTarget& operator=(const PgTarget&) = delete;

  // Connects (one admin connection) and checks the server's settings.
  static Result<std::unique_ptr<PgTarget>> connect(const std::string& conninfo);

  // "synchronous_commit" and "fsync" as the server reports them.
  const std::string& synchronous_commit() const { return synchronous_commit_; }
  const std::string& fsync() const { return fsync_; }
  const std::string& server_version() const { return server_version_; }

  // Drops and creates the three tables, then loads the wallets (COPY).
  Status create_schema(const std::vector<std::pair<WalletId, uint64_t>>& wallets);

  // Opens "n" worker connections with their prepared statements (kept for
  // every later phase).
  Status open_workers(size_t n);
  size_t workers() const { return workers_.size(); }

  // Runs one phase: worker i takes requests from plan.queues[i] (one thread
  // per worker), outcomes[k] is filled for each request k taken.  The phase
  // starts 20 ms after the call.
  PgPhaseTiming run(const std::vector<PgRequest>& requests, const PgPlan& plan, std::vector<PgOutcome>* outcomes);

  // {"sum_balances", "wallets", "journal_rows", "payout_rows"}: a sanity
  // check after the run (money is only moved, so Σ balances never changes).
  Result<Json> summary();

 private:
  struct Worker;
  PgTarget() = default;

  std::string conninfo_;
  pg_conn* admin_ = nullptr;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::string synchronous_commit_, fsync_, server_version_;
};

}  // namespace cl::cli
