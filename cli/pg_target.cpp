#include "cli/pg_target.h"

#include <libpq-fe.h>

#include <chrono>
#include <thread>

#include "common/check.h"
#include "common/hex.h"

namespace cl::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr Oid kByteaOid = 17, kInt8Oid = 20, kTextOid = 25;

// SQLSTATEs the workers tell apart.
constexpr std::string_view kDeadlock = "40P01", kSerialization = "40001", kDivisionByZero = "22012";

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string conn_error(PGconn* c) {
  std::string m = c ? PQerrorMessage(c) : "out of memory";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// Runs one SQL command outside pipeline mode; Status "io" with the server's
// message on failure.
Status exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  ExecStatusType st = PQresultStatus(r);
  std::string err = PQresultErrorMessage(r);
  PQclear(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) return Status::error("io", sql.substr(0, 60) + ": " + err);
  return Status::ok();
}

Result<std::string> query_one(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1 || PQnfields(r) < 1) {
    std::string err = PQresultErrorMessage(r);
    PQclear(r);
    return Status::error("io", sql + ": " + err);
  }
  std::string v = PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0);
  PQclear(r);
  return v;
}

Result<PGconn*> open_conn(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  if (!c || PQstatus(c) != CONNECTION_OK) {
    std::string err = conn_error(c);
    PQfinish(c);
    return Status::error("io", "connect to PostgreSQL (" + conninfo + "): " + err);
  }
  // The comparison is with a ledger that acknowledges only durable ops.
  if (Status s = exec(c, "SET synchronous_commit = on"); !s || !(s = exec(c, "SET client_min_messages = warning"))) {
    PQfinish(c);
    return s;
  }
  return c;
}

// Binary parameters of one statement: bytea as raw bytes, int8 big-endian,
// text as its UTF-8 bytes.
class Params {
 public:
  void bytes(const uint8_t* p, size_t n) { add(std::string(reinterpret_cast<const char*>(p), n)); }
  void id(const Id128& x) { bytes(x.data(), x.size()); }
  void text(const std::string& s) { add(s); }
  void int8(uint64_t v) {
    std::string b(8, '\0');
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (56 - 8 * i));
    add(std::move(b));
  }
  // Sends the prepared statement "name" with these parameters (pipeline mode).
  bool send(PGconn* c, const char* name) {
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (const auto& v : values_) {
      values.push_back(v.data());
      lengths.push_back(static_cast<int>(v.size()));
      formats.push_back(1);
    }
    return PQsendQueryPrepared(c, name, static_cast<int>(values.size()), values.data(), lengths.data(),
                               formats.data(), 0) == 1;
  }

 private:
  void add(std::string v) { values_.push_back(std::move(v)); }
  std::vector<std::string> values_;
};

bool send_plain(PGconn* c, const char* name) {
  return PQsendQueryPrepared(c, name, 0, nullptr, nullptr, nullptr, 0) == 1;
}

// One statement's answer inside a pipeline.
struct Answer {
  ExecStatusType status = PGRES_FATAL_ERROR;
  std::string sqlstate;
  uint64_t tuples = 0;            // rows affected (PQcmdTuples)
  std::vector<std::string> row;   // the first row's values, if any
  bool ok() const { return status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK; }
};

// Reads the answers of "n" pipelined statements and the sync that ends them.
// False if the connection broke (or libpq's stream made no sense).
bool read_answers(PGconn* c, size_t n, std::vector<Answer>* out) {
  out->assign(n, Answer{});
  for (size_t i = 0; i < n; ++i) {
    PGresult* r = PQgetResult(c);
    if (!r) return false;
    Answer& a = (*out)[i];
    a.status = PQresultStatus(r);
    if (const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE)) a.sqlstate = s;
    const char* t = PQcmdTuples(r);
    if (t && *t) a.tuples = std::strtoull(t, nullptr, 10);
    if (a.status == PGRES_TUPLES_OK && PQntuples(r) > 0)
      for (int f = 0; f < PQnfields(r); ++f) a.row.emplace_back(PQgetvalue(r, 0, f));
    PQclear(r);
    // Each statement's results end with a null.
    if (PGresult* extra = PQgetResult(c)) {
      PQclear(extra);
      return false;
    }
  }
  PGresult* sync = PQgetResult(c);
  bool ok = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  return ok;
}

const char* kStatements[][2] = {
    {"begin", "BEGIN"},
    {"commit", "COMMIT"},
    {"rollback", "ROLLBACK"},
    {"journal",
     "INSERT INTO journal (op_id, kind, src, dst, amount) VALUES ($1, $2, $3, $4, $5) "
     "ON CONFLICT (op_id) DO NOTHING"},
    {"debit", "UPDATE wallets SET balance = balance - $2 WHERE id = $1 AND balance >= $2"},
    // A credit to a wallet that does not exist must not commit: 1/0 fails
    // the statement (SQLSTATE 22012) and with it the transaction.
    {"credit",
     "WITH c AS (UPDATE wallets SET balance = balance + $2 WHERE id = $1 RETURNING 1) SELECT 1 / count(*) FROM c"},
    {"debit_checked",
     "WITH d AS (UPDATE wallets SET balance = balance - $2 WHERE id = $1 AND balance >= $2 RETURNING 1) "
     "SELECT 1 / count(*) FROM d"},
    // One payout: the reference is claimed first; the journal row and the
    // credit follow only if it was free.  The journal insert has no ON
    // CONFLICT: a reused op id with a fresh reference fails the batch rather
    // than leaving a claimed reference without its op.  The last column tells
    // a replay (the op is journaled) from a reused reference.
    {"payout",
     "WITH p AS (INSERT INTO payouts (program, reference) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1), "
     "j AS (INSERT INTO journal (op_id, kind, src, dst, amount) SELECT $3, 'payout', $4, $5, $6 FROM p RETURNING 1), "
     "c AS (UPDATE wallets SET balance = balance + $6 WHERE id = $5 AND EXISTS (SELECT 1 FROM j) RETURNING 1) "
     "SELECT (SELECT count(*) FROM p), (SELECT count(*) FROM c), EXISTS (SELECT 1 FROM journal WHERE op_id = $3)"},
};

std::vector<Oid> statement_types(const std::string& name) {
  if (name == "journal") return {kByteaOid, kTextOid, kByteaOid, kByteaOid, kInt8Oid};
  if (name == "debit" || name == "credit" || name == "debit_checked") return {kByteaOid, kInt8Oid};
  if (name == "payout") return {kTextOid, kTextOid, kByteaOid, kByteaOid, kByteaOid, kInt8Oid};
  return {};
}

}  // namespace

// One connection used by one thread at a time, in pipeline mode.
struct PgTarget::Worker {
  PGconn* conn = nullptr;
  bool broken = false;
  ~Worker() { PQfinish(conn); }

  Status prepare() {
    for (const auto& st : kStatements) {
      auto types = statement_types(st[0]);
      PGresult* r = PQprepare(conn, st[0], st[1], static_cast<int>(types.size()), types.data());
      bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      std::string err = PQresultErrorMessage(r);
      PQclear(r);
      if (!ok) return Status::error("io", std::string("prepare ") + st[0] + ": " + err);
    }
    if (PQenterPipelineMode(conn) != 1) return Status::error("io", "pipeline mode: " + conn_error(conn));
    return Status::ok();
  }

  // Sends a pipeline of statements queued by "queue" and a sync; reads n answers.
  template <typename Queue>
  bool round_trip(size_t n, std::vector<Answer>* answers, Queue queue) {
    if (!queue() || PQpipelineSync(conn) != 1 || !read_answers(conn, n, answers)) {
      broken = true;
      return false;
    }
    return true;
  }

  // Ends a transaction that will not commit.
  bool rollback() {
    std::vector<Answer> a;
    return round_trip(1, &a, [&] { return send_plain(conn, "rollback"); });
  }

  // Marks every op of "r" as an error; "answers" tells a deadlock apart.
  static void fail_all(const PgRequest& r, const std::vector<Answer>& answers, PgOutcome* out) {
    out->accepted = out->replays = out->rejected = 0;
    out->errors = static_cast<uint32_t>(r.ops.size());
    for (const auto& a : answers)
      if (a.sqlstate == kDeadlock || a.sqlstate == kSerialization) out->deadlock = true;
  }

  // A fare or a transfer: one transaction, two round trips (see the header).
  void single(const PgRequest& r, PgOutcome* out) {
    const PgOp& op = r.ops[0];
    const char* kind = r.kind == PgKind::kFare ? "fare" : "transfer";
    std::vector<Answer> a;
    bool sent = round_trip(3, &a, [&] {
      Params j, d;
      j.id(op.id);
      j.text(kind);
      j.id(op.from);
      j.id(op.to);
      j.int8(op.amount);
      d.id(op.from);
      d.int8(op.amount);
      return send_plain(conn, "begin") && j.send(conn, "journal") && d.send(conn, "debit");
    });
    if (!sent) return fail_all(r, a, out);
    out->answered = true;
    if (!a[0].ok() || !a[1].ok() || !a[2].ok()) {
      fail_all(r, a, out);
      rollback();
      return;
    }
    if (a[1].tuples == 0 || a[2].tuples == 0) {
      // The op id was used (a replay, answered as such) or the payer cannot pay.
      (a[1].tuples == 0 ? out->replays : out->rejected) = 1;
      rollback();
      return;
    }
    std::vector<Answer> b;
    sent = round_trip(2, &b, [&] {
      Params c;
      c.id(op.to);
      c.int8(op.amount);
      return c.send(conn, "credit") && send_plain(conn, "commit");
    });
    if (!sent) return fail_all(r, b, out);
    if (b[0].ok() && b[1].ok()) {
      out->accepted = 1;
      return;
    }
    if (b[0].sqlstate == kDivisionByZero) out->rejected = 1;  // unknown payee
    else fail_all(r, b, out);
    rollback();
  }

  // A batch of payouts: one transaction (see the header).
  void payouts(const PgRequest& r, PgOutcome* out) {
    // Credits in wallet order, so two batches never wait on each other in a cycle.
    std::vector<size_t> order(r.ops.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t x, size_t y) { return r.ops[x].to < r.ops[y].to; });
    std::vector<Answer> a;
    bool sent = round_trip(1 + r.ops.size(), &a, [&] {
      if (!send_plain(conn, "begin")) return false;
      for (size_t i : order) {
        const PgOp& op = r.ops[i];
        Params p;
        p.text(op.program);
        p.text(op.reference);
        p.id(op.id);
        p.id(op.from);
        p.id(op.to);
        p.int8(op.amount);
        if (!p.send(conn, "payout")) return false;
      }
      return true;
    });
    if (!sent) return fail_all(r, a, out);
    out->answered = true;
    // Sums to debit per paying agency (a batch normally has one).
    std::vector<std::pair<WalletId, uint64_t>> debits;
    uint32_t accepted = 0, replays = 0, rejected = 0;
    bool consistent = true;
    for (size_t k = 0; k < r.ops.size(); ++k) {
      const Answer& x = a[1 + k];
      if (!x.ok() || x.row.size() != 3) {
        consistent = false;
        continue;
      }
      bool fresh = x.row[0] == "1", credited = x.row[1] == "1", journaled = x.row[2] == "t";
      const PgOp& op = r.ops[order[k]];
      if (fresh && credited) {
        ++accepted;
        auto it = std::find_if(debits.begin(), debits.end(), [&](const auto& d) { return d.first == op.from; });
        if (it == debits.end()) debits.emplace_back(op.from, op.amount);
        else it->second += op.amount;
      } else if (!fresh) {
        ++(journaled ? replays : rejected);
      } else {
        consistent = false;  // a claimed reference without its credit (unknown payee)
      }
    }
    if (!a[0].ok() || !consistent) {
      fail_all(r, a, out);
      rollback();
      return;
    }
    std::vector<Answer> b;
    sent = round_trip(debits.size() + 1, &b, [&] {
      for (const auto& [from, sum] : debits) {
        Params d;
        d.id(from);
        d.int8(sum);
        if (!d.send(conn, "debit_checked")) return false;
      }
      return send_plain(conn, "commit");
    });
    if (!sent) return fail_all(r, b, out);
    bool committed = true;
    for (const auto& x : b) committed = committed && x.ok();
    if (committed) {
      out->accepted = accepted;
      out->replays = replays;
      out->rejected = rejected;
      return;
    }
    bool short_of_funds = false;
    for (const auto& x : b) short_of_funds = short_of_funds || x.sqlstate == kDivisionByZero;
    if (short_of_funds) {
      out->rejected = static_cast<uint32_t>(r.ops.size());  // the agency cannot pay this batch
    } else {
      fail_all(r, b, out);
    }
    rollback();
  }

  void execute(const PgRequest& r, PgOutcome* out) {
    if (r.kind == PgKind::kPayoutBatch) payouts(r, out);
    else single(r, out);
  }
};

PgTarget::~PgTarget() {
  workers_.clear();
  PQfinish(admin_);
}

Result<std::unique_ptr<PgTarget>> PgTarget::connect(const std::string& conninfo) {
  auto c = open_conn(conninfo);
  if (!c) return c.status();
  std::unique_ptr<PgTarget> t(new PgTarget());
  t->conninfo_ = conninfo;
  t->admin_ = *c;
  auto sc = query_one(t->admin_, "SHOW synchronous_commit");
  auto fs = query_one(t->admin_, "SHOW fsync");
  auto v = query_one(t->admin_, "SHOW server_version");
  if (!sc || !fs || !v) return (!sc ? sc : !fs ? fs : v).status();
  t->synchronous_commit_ = *sc;
  t->fsync_ = *fs;
  t->server_version_ = *v;
  return t;
}

Status PgTarget::create_schema(const std::vector<std::pair<WalletId, uint64_t>>& wallets) {
  workers_.clear();  // their prepared statements name the old tables
  for (const char* sql : {
           "DROP TABLE IF EXISTS journal, payouts, wallets",
           "CREATE TABLE wallets (id bytea PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))",
           "CREATE TABLE journal (seq bigserial PRIMARY KEY, op_id bytea UNIQUE NOT NULL, kind text NOT NULL, "
           "src bytea, dst bytea, amount bigint NOT NULL, created timestamptz NOT NULL DEFAULT now())",
           "CREATE TABLE payouts (program text, reference text, PRIMARY KEY (program, reference))",
       }) {
    if (Status s = exec(admin_, sql); !s) return s;
  }
  PGresult* r = PQexec(admin_, "COPY wallets (id, balance) FROM STDIN");
  bool copying = PQresultStatus(r) == PGRES_COPY_IN;
  PQclear(r);
  if (!copying) return Status::error("io", "COPY wallets: " + conn_error(admin_));
  std::string chunk;
  for (size_t i = 0; i < wallets.size(); ++i) {
    // Text COPY: the bytea hex form "\x..." with its backslash escaped.
    chunk += "\\\\x" + hex_encode(wallets[i].first) + "\t" + std::to_string(wallets[i].second) + "\n";
    if (chunk.size() > (1 << 20) || i + 1 == wallets.size()) {
      if (PQputCopyData(admin_, chunk.data(), static_cast<int>(chunk.size())) != 1)
        return Status::error("io", "COPY wallets: " + conn_error(admin_));
      chunk.clear();
    }
  }
  if (PQputCopyEnd(admin_, nullptr) != 1) return Status::error("io", "COPY wallets: " + conn_error(admin_));
  r = PQgetResult(admin_);
  bool copied = PQresultStatus(r) == PGRES_COMMAND_OK;
  std::string err = PQresultErrorMessage(r);
  PQclear(r);
  while ((r = PQgetResult(admin_))) PQclear(r);
  if (!copied) return Status::error("io", "COPY wallets: " + err);
  return exec(admin_, "VACUUM ANALYZE wallets");
}

Status PgTarget::open_workers(size_t n) {
  workers_.clear();
  for (size_t i = 0; i < n; ++i) {
    auto c = open_conn(conninfo_);
    if (!c) return c.status();
    auto w = std::make_unique<Worker>();
    w->conn = *c;
    if (Status s = w->prepare(); !s) return s;
    workers_.push_back(std::move(w));
  }
  return Status::ok();
}

PgPhaseTiming PgTarget::run(const std::vector<PgRequest>& requests, const PgPlan& plan,
                            std::vector<PgOutcome>* outcomes) {
  CL_CHECK(plan.queues.size() <= workers_.size());
  outcomes->assign(requests.size(), PgOutcome{});
  auto start = Clock::now() + std::chrono::milliseconds(20);
  std::vector<Clock::time_point> last(plan.queues.size(), start);
  std::vector<std::thread> threads;
  for (size_t w = 0; w < plan.queues.size(); ++w) {
    threads.emplace_back([&, w] {
      Worker& worker = *workers_[w];
      PgQueue& q = *plan.queues[w];
      std::this_thread::sleep_until(start);
      while (!worker.broken) {
        if (plan.send_until_s > 0 && Clock::now() >= start + to_duration(plan.send_until_s)) break;
        int64_t k = q.take();
        if (k < 0) break;
        const PgRequest& r = requests[static_cast<size_t>(k)];
        PgOutcome& out = (*outcomes)[static_cast<size_t>(k)];
        auto intended = Clock::now();
        if (plan.paced) {
          intended = start + to_duration(r.due_s);
          std::this_thread::sleep_until(intended);
        }
        out.taken = true;
        worker.execute(r, &out);
        auto now = Clock::now();
        out.latency_ms = std::chrono::duration<double, std::milli>(now - intended).count();
        last[w] = std::max(last[w], now);
      }
      if (worker.broken) q.failed = true;
    });
  }
  for (auto& t : threads) t.join();
  PgPhaseTiming timing;
  for (auto t : last) timing.last_answer_s = std::max(timing.last_answer_s, std::chrono::duration<double>(t - start).count());
  return timing;
}

Result<Json> PgTarget::summary() {
  auto sum = query_one(admin_, "SELECT sum(balance) FROM wallets");
  auto wallets = query_one(admin_, "SELECT count(*) FROM wallets");
  auto journal = query_one(admin_, "SELECT count(*) FROM journal");
  auto payouts = query_one(admin_, "SELECT count(*) FROM payouts");
  for (auto* r : {&sum, &wallets, &journal, &payouts})
    if (!*r) return r->status();
  auto num = [](const std::string& s) { return static_cast<uint64_t>(std::strtoull(s.c_str(), nullptr, 10)); };
  return Json{{"sum_balances", num(*sum)},
              {"wallets", num(*wallets)},
              {"journal_rows", num(*journal)},
              {"payout_rows", num(*payouts)}};
}

}  // namespace cl::cli
