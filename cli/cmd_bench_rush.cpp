// `cityledger bench rush`: a city's rush hour, the same load shape against
// cityledger (HTTP) or PostgreSQL (libpq), so the two can be compared.
//
// The load: riders pay fares to a few hot transit operators (90% of ops,
// single-op requests), send each other transfers (9%, single-op), and an
// agency pays benefits (1%, batch requests of --payout-batch payouts, each
// with a unique (program, reference)).  Riders are funded at setup so that
// no fare overdraws.
//
// Phases: a closed-loop peak (every connection sends back-to-back for
// --peak-seconds), then an open-loop sweep at fixed arrival rates (given, or
// 10%..110% of the peak).  Open loop: op k of a step is due at start + k/rate;
// single-op requests go round-robin to the --connections gate connections and
// payout batches to the --agency-connections agency connections (so a batch
// never delays the gates queued behind it on one connection); each
// connection sends its requests in order on keep-alive, and latency is
// measured from the scheduled time, so queueing in the client or the server
// shows (no coordinated omission).  A batch request's latency counts once.
//
// Each phase also measures where the CPU went (CpuMeter): every node's CPU
// time and its split by thread (from each node's /metrics, counted until the
// replicas have applied the phase), the load generator's own, PostgreSQL's
// server processes when they run here, and how busy the cores were; per
// accepted op, and the ops/s the cores could take at that cost.
//
// Everything a phase sends is built (and for cityledger signed, on every
// core) before the phase's clock starts.  PostgreSQL verifies no signatures:
// the output says so ("verifies_signatures": false).
#include <sodium.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>
#include <utility>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/cpu_meter.h"
#include "cli/http_load.h"
#include "cli/pg_target.h"
#include "common/hex.h"

namespace cl::cli {
namespace {

struct RushOptions {
  std::string target = "cityledger";
  std::string node = "http://127.0.0.1:8081";
  std::string registrar_key = "config/demo/registrar.key";
  std::string issuer_key = "config/demo/issuer.key";
  std::string pg = "host=127.0.0.1 port=5432 dbname=cityledger user=postgres";
  uint64_t wallets = 100'000;
  uint64_t operators = 10;
  uint64_t connections = 64;
  uint64_t agency_connections = 2;
  uint64_t payout_batch = 100;
  double duration = 5;
  std::vector<double> rates;  // empty: --percents of the measured peak
  std::vector<double> percents = {10, 25, 50, 75, 90, 100, 110};
  // Rates swept after the automatic ones, e.g. another system's sweep, so
  // that two systems can be compared at equal offered loads.
  std::vector<double> also_rates;
  double peak_seconds = 5;
  uint64_t peak_ops = 0;  // ops prepared for the peak phase; 0 = estimate
  uint64_t max_ops = 5'000'000;
  uint64_t seed = 1;
  bool json = false;
  bool smoke = false;
  std::string trace;  // CSV of every answered request, appended per phase
};

// Amounts in kopecks.
constexpr uint64_t kFareAmount = 5'700, kTransferAmount = 10'000, kPayoutAmount = 100'000;
// Peak-phase pool for PostgreSQL when --peak-ops is not given: ops per
// second of --peak-seconds (far above what one machine commits durably).
constexpr double kPgPeakPoolPerSec = 60'000;

enum Cls : uint8_t { kFare = 0, kTransfer = 1, kPayoutBatch = 2 };
constexpr const char* kClassNames[] = {"fare", "transfer", "payout_batch"};

struct RushRequest {
  Cls cls = kFare;
  double due_s = 0;
  std::vector<OpBody> ops;
};

// What became of one request (counts in ops).
struct Outcome {
  bool taken = false, answered = false, failed_unsent = false;
  double latency_ms = 0;
  double answered_unix_ms = 0;  // wall clock, to line answers up with the nodes' logs (--trace)
  uint32_t accepted = 0, replays = 0, rejected = 0, overloaded = 0, errors = 0;
  bool deadlock = false;
};

struct ClassStats {
  uint64_t requests = 0, ops = 0, accepted = 0, replays = 0, rejected = 0, overloaded = 0, errors = 0, unsent = 0;
  uint64_t deadlocks = 0;
  std::vector<double> latency_ms;  // sorted once the phase is over

  double p(double q) const { return quantile(latency_ms, q); }
  double max() const { return latency_ms.empty() ? 0 : latency_ms.back(); }
  Json to_json() const {
    return {{"requests", requests}, {"ops", ops},         {"accepted", accepted}, {"replays", replays},
            {"rejected", rejected}, {"overloaded", overloaded}, {"errors", errors}, {"unsent", unsent},
            {"latency_ms", {{"p50", p(0.5)}, {"p99", p(0.99)}, {"p999", p(0.999)}, {"max", max()}}}};
  }
};

struct PhaseResult {
  std::string name;
  bool open_loop = false;
  double offered_rate = 0;  // ops/s (open loop)
  double seconds = 0;       // phase start to last answer
  double prepare_seconds = 0;  // building and signing, before the clock
  bool pool_exhausted = false;  // closed loop ran out of prepared ops early
  ClassStats cls[3];
  Json cpu;  // CpuMeter::report of the phase (null if not measured)

  uint64_t sum(uint64_t ClassStats::*field) const { return cls[0].*field + cls[1].*field + cls[2].*field; }
  double accepted_per_sec() const { return seconds > 0 ? static_cast<double>(sum(&ClassStats::accepted)) / seconds : 0; }
  Json to_json() const {
    Json classes = Json::object();
    for (int c = 0; c < 3; ++c) classes[kClassNames[c]] = cls[c].to_json();
    return {{"phase", name},
            {"mode", open_loop ? "open_loop" : "closed_loop"},
            {"offered_rate", offered_rate},
            {"seconds", seconds},
            {"prepare_seconds", prepare_seconds},
            {"ops", sum(&ClassStats::ops)},
            {"accepted_ops", sum(&ClassStats::accepted)},
            {"accepted_per_sec", accepted_per_sec()},
            {"rejected", sum(&ClassStats::rejected)},
            {"overloaded", sum(&ClassStats::overloaded)},
            {"errors", sum(&ClassStats::errors)},
            {"unsent", sum(&ClassStats::unsent)},
            {"deadlocks", sum(&ClassStats::deadlocks)},
            {"pool_exhausted", pool_exhausted},
            {"classes", classes},
            {"cpu", cpu}};
  }
};

// Which connection takes which request.  Open loop: single-op requests
// round-robin over the gate connections, batches over the agency
// connections.  Closed loop: one queue all connections pull from in order,
// so the mix holds whatever each request costs.
struct Routing {
  std::vector<std::vector<uint32_t>> queues;  // request indexes per queue
  std::vector<size_t> queue_of_conn;
};

Routing route(const std::vector<RushRequest>& reqs, bool open_loop, size_t gates, size_t agencies) {
  Routing r;
  size_t conns = gates + agencies;
  if (!open_loop) {
    r.queues.resize(1);
    for (uint32_t k = 0; k < reqs.size(); ++k) r.queues[0].push_back(k);
    r.queue_of_conn.assign(conns, 0);
    return r;
  }
  r.queues.resize(conns);
  size_t next_gate = 0, next_agency = 0;
  for (uint32_t k = 0; k < reqs.size(); ++k) {
    if (reqs[k].cls == kPayoutBatch) r.queues[gates + next_agency++ % agencies].push_back(k);
    else r.queues[next_gate++ % gates].push_back(k);
  }
  for (size_t c = 0; c < conns; ++c) r.queue_of_conn.push_back(c);
  return r;
}

// The wallets of the rush and the ops they send.  Ids carry a random run tag
// so that runs against one ledger never collide.
class City : public BenchCity {
 public:
  City(const RushOptions& o, std::string chain) : BenchCity(std::move(chain)), o_(o) {}

  // Balances at setup, enough that no rider runs dry over "ops_bound" ops:
  // random picks give some riders several times the mean.
  uint64_t rider_funding(uint64_t ops_bound) const {
    uint64_t mean = ops_bound / std::max<uint64_t>(1, o_.wallets);
    return std::max(kFareAmount, kTransferAmount) * (20 + 4 * mean);
  }
  uint64_t agency_funding(uint64_t ops_bound) const { return kPayoutAmount * (ops_bound / 50 + 2 * o_.payout_batch); }

  // "ops" ops in the rush mix, due at k / rate (rate 0: all due at once).
  // Within every 100 ops: 1 payout, 9 transfers, 90 fares; payouts leave in
  // batches of --payout-batch, due with their last op (the rest at the end).
  std::vector<RushRequest> requests(uint64_t ops, double rate, std::mt19937_64& rng) {
    std::vector<RushRequest> out;
    RushRequest batch{kPayoutBatch, 0, {}};
    for (uint64_t k = 0; k < ops; ++k) {
      double due = rate > 0 ? static_cast<double>(k) / rate : 0;
      uint64_t slot = k % 100;
      if (slot == 99) {
        OpBody b = body(OpType::kPayout);
        b.from = agency();
        b.to = rider(rng() % o_.wallets);
        b.amount = kPayoutAmount;
        b.program = "rush-benefit";
        b.reference = run_ids().hex() + "-" + std::to_string(next_ref_++);
        batch.ops.push_back(std::move(b));
        batch.due_s = due;
        if (batch.ops.size() == o_.payout_batch) out.push_back(std::exchange(batch, RushRequest{kPayoutBatch, 0, {}}));
        continue;
      }
      uint64_t from = rng() % o_.wallets;
      if (slot % 11 == 5) {  // 9 of every 100: slots 5, 16, ..., 93
        OpBody b = body(OpType::kTransfer);
        b.from = rider(from);
        uint64_t to = rng() % o_.wallets;
        if (to == from) to = (to + 1) % o_.wallets;
        b.to = rider(to);
        b.amount = kTransferAmount;
        out.push_back(RushRequest{kTransfer, due, {std::move(b)}});
        if (o_.wallets == 1) out.back().ops[0].to = transit(0);  // no second rider to pay
      } else {
        OpBody b = body(OpType::kFare);
        b.from = rider(from);
        b.to = transit(rng() % o_.operators);
        b.amount = kFareAmount;
        b.gate = "gate-" + std::to_string(rng() % 5000);
        b.tap_at = 1'800'000'000'000;
        out.push_back(RushRequest{kFare, due, {std::move(b)}});
      }
    }
    if (!batch.ops.empty()) out.push_back(std::move(batch));
    return out;
  }

  // The key an op of the rush is signed with.
  const KeyPair& signer(const OpBody& b) const {
    if (b.type == OpType::kPayout) return agency_key();
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n = (n << 8) | b.from[8 + i];
    return key_of(n);
  }

 private:
  const RushOptions& o_;
  uint64_t next_ref_ = 0;
};

// One system under test.
class Target {
 public:
  virtual ~Target() = default;
  // Opens and funds the city's wallets for at most "ops_bound" ops.
  virtual Status setup(City& city, uint64_t ops_bound) = 0;
  // Runs one phase: outcome[k] for each request k (requests are consumed).
  virtual Result<double> run(std::vector<RushRequest> reqs, const Routing& routing, bool open_loop,
                             double send_until_s, double* prepare_seconds, std::vector<Outcome>* outcomes) = 0;
  // Lets the system settle between phases.
  virtual void pause() { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }
  // Target-specific fields of the report; "accepted_ops" were accepted in all.
  virtual Json describe(uint64_t accepted_ops) = 0;
  // Measures where the CPU goes in each phase run() runs from now on.
  void set_cpu_meter(CpuMeter* meter) { cpu_ = meter; }

 protected:
  CpuMeter* cpu_ = nullptr;
};

// --- cityledger over HTTP ------------------------------------------------

class LedgerTarget : public Target {
 public:
  LedgerTarget(const RushOptions& o, BenchTarget node, KeyPair registrar, KeyPair issuer)
      : o_(o), node_(std::move(node)), registrar_(registrar), issuer_(issuer) {}

  Status setup(City& city, uint64_t ops_bound) override {
    std::vector<OpBody> opens;
    std::vector<const KeyPair*> owners;
    auto open = [&](const WalletId& w, const KeyPair& k, WalletKind kind) {
      OpBody b = city.body(OpType::kOpenWallet);
      b.wallet = w;
      b.key = k.public_key;
      b.kind = kind;
      opens.push_back(std::move(b));
      owners.push_back(&k);
    };
    for (uint64_t n = 0; n < o_.operators; ++n) open(city.transit(n), city.key_of(n), WalletKind::kTransit);
    open(city.agency(), city.agency_key(), WalletKind::kAgency);
    for (uint64_t n = 0; n < o_.wallets; ++n) open(city.rider(n), city.key_of(n), WalletKind::kPersonal);
    std::vector<std::string> envs(opens.size());
    parallel_for(opens.size(), [&](size_t i) { envs[i] = sign_envelope(opens[i], {&registrar_, owners[i]}).jcs; });
    if (Status s = submit(envs); !s) return s;

    std::vector<OpBody> issues;
    uint64_t per_rider = city.rider_funding(ops_bound);
    for (uint64_t n = 0; n < o_.wallets; ++n) {
      OpBody b = city.body(OpType::kIssue);
      b.to = city.rider(n);
      b.amount = per_rider;
      issues.push_back(std::move(b));
    }
    OpBody a = city.body(OpType::kIssue);
    a.to = city.agency();
    a.amount = city.agency_funding(ops_bound);
    issues.push_back(std::move(a));
    envs.assign(issues.size(), std::string());
    parallel_for(issues.size(), [&](size_t i) { envs[i] = sign_envelope(issues[i], {&issuer_}).jcs; });
    return submit(envs);
  }

  Result<double> run(std::vector<RushRequest> reqs, const Routing& routing, bool open_loop, double send_until_s,
                     double* prepare_seconds, std::vector<Outcome>* outcomes) override {
    auto t0 = BenchClock::now();
    // Sign every op on every core, then wrap each request in its HTTP bytes.
    std::vector<const OpBody*> flat;
    for (const auto& r : reqs)
      for (const auto& b : r.ops) flat.push_back(&b);
    std::vector<std::string> signed_ops(flat.size());
    parallel_for(flat.size(), [&](size_t i) { signed_ops[i] = sign_envelope(*flat[i], {&city_signer(*flat[i])}).jcs; });
    std::string host = node_.url.host + ":" + std::to_string(node_.url.port);
    std::vector<uint32_t> ops_of(reqs.size());
    std::vector<LoadRequest> built(reqs.size());
    size_t next = 0;
    for (size_t k = 0; k < reqs.size(); ++k) {
      ops_of[k] = static_cast<uint32_t>(reqs[k].ops.size());
      if (reqs[k].cls == kPayoutBatch) {
        std::string body = "[";
        for (size_t i = 0; i < reqs[k].ops.size(); ++i) body += (i ? "," : "") + signed_ops[next++];
        built[k] = LoadRequest{post_request_bytes(host, "/v1/ops/batch", body + "]"), reqs[k].due_s,
                               static_cast<uint32_t>(k)};
      } else {
        built[k] = LoadRequest{post_request_bytes(host, "/v1/ops", signed_ops[next++]), reqs[k].due_s,
                               static_cast<uint32_t>(k)};
      }
    }
    signed_ops = {};
    reqs = {};
    LoadPlan plan;
    plan.paced = open_loop;
    plan.send_until_s = send_until_s;
    std::vector<std::shared_ptr<LoadQueue>> queues;
    for (const auto& order : routing.queues) {
      std::vector<LoadRequest> q;
      q.reserve(order.size());
      for (uint32_t k : order) q.push_back(std::move(built[k]));
      queues.push_back(std::make_shared<LoadQueue>(std::move(q)));
    }
    built = {};
    for (size_t qi : routing.queue_of_conn) plan.queues.push_back(queues[qi]);
    *prepare_seconds = seconds_since(t0);

    outcomes->assign(ops_of.size(), Outcome{});
    if (cpu_) cpu_->start();
    auto timing = run_http_load(node_.url, plan, [&](const LoadRequest& r, int status, const std::string& body,
                                                     double ms) { record(r.tag, ops_of[r.tag], status, body, ms, outcomes); });
    if (cpu_) {
      // Followers may still be applying the phase's last entries: their
      // CPU for this phase's ops is counted once they are done.
      cpu_->load_ended();
      settle_replicas(node_.url);
      cpu_->finish();
    }
    if (!timing) return timing.status();
    for (const auto& q : queues)
      for (const auto& r : q->unsent()) (*outcomes)[r.tag].failed_unsent = q->failed;
    return timing->last_answer_s;
  }

  void pause() override {
    settle_replicas(node_.url);
    Target::pause();
  }

  Json describe(uint64_t) override {
    return {{"target", "cityledger"}, {"verifies_signatures", true}, {"node", node_.base}, {"chain", node_.chain}};
  }

  void set_city(const City* city) { city_ = city; }

 private:
  const KeyPair& city_signer(const OpBody& b) const { return city_->signer(b); }

  static void record(uint32_t k, uint32_t ops, int status, const std::string& body, double ms,
                     std::vector<Outcome>* outcomes) {
    Outcome& o = (*outcomes)[k];
    o.taken = true;
    if (status == kLoadIoError) {
      o.errors = ops;
      return;
    }
    o.answered = true;
    o.latency_ms = ms;
    o.answered_unix_ms =
        std::chrono::duration<double, std::milli>(std::chrono::system_clock::now().time_since_epoch()).count();
    if (status == 200 && ops == 1 && body.find("\"replay\":true") == std::string::npos) {
      o.accepted = 1;
    } else if (status == 200 && ops == 1) {
      o.replays = 1;
    } else if (status == 200) {
      // A batch is answered 200 with one result per op, in order.
      auto doc = parse_json_strict(body);
      if (!doc || !(*doc)["results"].is_array() || (*doc)["results"].size() != ops) {
        o.errors = ops;
        return;
      }
      for (const auto& x : (*doc)["results"]) {
        if (x.value("result", std::string()) != "ok") ++o.rejected;
        else if (x.value("replay", false)) ++o.replays;
        else ++o.accepted;
      }
    } else if (status == 429 || status == 503) {
      o.overloaded = ops;
    } else if (status >= 400 && status < 500) {
      o.rejected = ops;
    } else {
      o.errors = ops;
    }
  }

  Status submit(const std::vector<std::string>& envs) { return submit_batches(node_.url, envs, 4096, 4); }

  const RushOptions& o_;
  BenchTarget node_;
  KeyPair registrar_, issuer_;
  const City* city_ = nullptr;
};

// --- PostgreSQL over libpq -----------------------------------------------

std::string mask_password(std::string conninfo) {
  auto p = conninfo.find("password=");
  if (p == std::string::npos) return conninfo;
  auto end = conninfo.find(' ', p);
  return conninfo.replace(p + 9, end == std::string::npos ? std::string::npos : end - p - 9, "***");
}

class PostgresTarget : public Target {
 public:
  PostgresTarget(const RushOptions& o, std::unique_ptr<PgTarget> pg) : o_(o), pg_(std::move(pg)) {}

  Status setup(City& city, uint64_t ops_bound) override {
    std::vector<std::pair<WalletId, uint64_t>> wallets;
    for (uint64_t n = 0; n < o_.operators; ++n) wallets.emplace_back(city.transit(n), 0);
    wallets.emplace_back(city.agency(), city.agency_funding(ops_bound));
    uint64_t per_rider = city.rider_funding(ops_bound);
    for (uint64_t n = 0; n < o_.wallets; ++n) wallets.emplace_back(city.rider(n), per_rider);
    if (Status s = pg_->create_schema(wallets); !s) return s;
    auto before = pg_->summary();
    if (!before) return before.status();
    before_ = *before;
    return pg_->open_workers(o_.connections + o_.agency_connections);
  }

  Result<double> run(std::vector<RushRequest> reqs, const Routing& routing, bool open_loop, double send_until_s,
                     double* prepare_seconds, std::vector<Outcome>* outcomes) override {
    auto t0 = BenchClock::now();
    std::vector<PgRequest> built(reqs.size());
    for (size_t k = 0; k < reqs.size(); ++k) {
      PgRequest& p = built[k];
      p.kind = reqs[k].cls == kFare ? PgKind::kFare : reqs[k].cls == kTransfer ? PgKind::kTransfer : PgKind::kPayoutBatch;
      p.due_s = reqs[k].due_s;
      for (auto& b : reqs[k].ops)
        p.ops.push_back(PgOp{b.id, b.from, b.to, b.amount, std::move(b.program), std::move(b.reference)});
    }
    reqs = {};
    std::vector<std::shared_ptr<PgQueue>> queues;
    for (const auto& order : routing.queues) queues.push_back(std::make_shared<PgQueue>(order));
    PgPlan plan;
    plan.paced = open_loop;
    plan.send_until_s = send_until_s;
    for (size_t qi : routing.queue_of_conn) plan.queues.push_back(queues[qi]);
    *prepare_seconds = seconds_since(t0);

    std::vector<PgOutcome> pg_out;
    if (cpu_) cpu_->start();
    PgPhaseTiming timing = pg_->run(built, plan, &pg_out);
    if (cpu_) {
      cpu_->load_ended();
      cpu_->finish();
    }
    outcomes->assign(built.size(), Outcome{});
    for (size_t k = 0; k < built.size(); ++k) {
      const PgOutcome& p = pg_out[k];
      Outcome& o = (*outcomes)[k];
      o.taken = p.taken;
      o.answered = p.answered;
      o.latency_ms = p.latency_ms;
      o.accepted = p.accepted;
      o.replays = p.replays;
      o.rejected = p.rejected;
      o.errors = p.errors;
      o.deadlock = p.deadlock;
    }
    for (const auto& q : queues)
      for (uint32_t k : q->unsent()) (*outcomes)[k].failed_unsent = q->failed.load();
    return timing.last_answer_s;
  }

  Json describe(uint64_t accepted_ops) override {
    Json j{{"target", "postgres"},
           {"verifies_signatures", false},
           {"pg", mask_password(o_.pg)},
           {"server_version", pg_->server_version()},
           {"synchronous_commit", pg_->synchronous_commit()},
           {"fsync", pg_->fsync()},
           {"deadlocks", "counted as errors, not retried"},
           {"before", before_}};
    auto after = pg_->summary();
    if (after) {
      j["after"] = *after;
      j["balances_conserved"] = (*after)["sum_balances"] == before_["sum_balances"];
      j["journal_matches_accepted"] = (*after)["journal_rows"] == accepted_ops;
    }
    return j;
  }

 private:
  const RushOptions& o_;
  std::unique_ptr<PgTarget> pg_;
  Json before_;
};

// --- phases and the report -----------------------------------------------

PhaseResult tally(const std::string& name, const std::vector<uint32_t>& ops_of, const std::vector<Cls>& cls_of,
                  const std::vector<Outcome>& outcomes, bool open_loop) {
  PhaseResult r;
  r.name = name;
  r.open_loop = open_loop;
  for (size_t k = 0; k < outcomes.size(); ++k) {
    const Outcome& o = outcomes[k];
    ClassStats& s = r.cls[cls_of[k]];
    if (!o.taken) {
      // Open loop: never sent because the step ran out of time or its
      // connection failed.  Closed loop: prepared ops the peak did not need.
      if (open_loop) (o.failed_unsent ? s.errors : s.unsent) += ops_of[k];
      continue;
    }
    ++s.requests;
    s.ops += ops_of[k];
    s.accepted += o.accepted;
    s.replays += o.replays;
    s.rejected += o.rejected;
    s.overloaded += o.overloaded;
    s.errors += o.errors;
    s.deadlocks += o.deadlock;
    if (o.answered) s.latency_ms.push_back(o.latency_ms);
  }
  for (auto& s : r.cls) std::sort(s.latency_ms.begin(), s.latency_ms.end());
  return r;
}

PhaseResult run_phase(Target& target, City& city, const RushOptions& o, const std::string& name, uint64_t ops,
                      double rate, std::mt19937_64& rng, const CpuMeter* cpu) {
  bool open_loop = rate > 0;
  auto t0 = BenchClock::now();
  std::vector<RushRequest> reqs = city.requests(ops, rate, rng);
  std::vector<uint32_t> ops_of;
  std::vector<Cls> cls_of;
  for (const auto& r : reqs) {
    ops_of.push_back(static_cast<uint32_t>(r.ops.size()));
    cls_of.push_back(r.cls);
  }
  Routing routing = route(reqs, open_loop, o.connections, o.agency_connections);
  double build_s = seconds_since(t0);
  // Open loop: a step that falls far behind its schedule stops sending
  // (the rest is reported as unsent) rather than running on for minutes.
  double send_until = open_loop ? 2 * o.duration + 10 : o.peak_seconds;
  double prepare_s = 0;
  std::vector<Outcome> outcomes;
  auto seconds = target.run(std::move(reqs), routing, open_loop, send_until, &prepare_s, &outcomes);
  PhaseResult r;
  if (!seconds) {
    std::cerr << "bench rush: " << name << ": " << seconds.status().to_string() << "\n";
    r.name = name;
    r.cls[kFare].errors = ops;
    return r;
  }
  r = tally(name, ops_of, cls_of, outcomes, open_loop);
  if (cpu) r.cpu = cpu->report(r.sum(&ClassStats::accepted));
  if (!o.trace.empty()) {
    // One line per answered request: when it was answered (Unix ms), its
    // latency from its scheduled time, its class and op count.
    if (std::FILE* f = std::fopen(o.trace.c_str(), "a"); f == nullptr) {
      std::cerr << "bench rush: cannot append to --trace file " << o.trace << "; phase " << name << " not traced\n";
    } else {
      for (size_t k = 0; k < outcomes.size(); ++k)
        if (outcomes[k].answered)
          std::fprintf(f, "%s,%.3f,%.3f,%s,%u\n", name.c_str(), outcomes[k].answered_unix_ms, outcomes[k].latency_ms,
                       kClassNames[cls_of[k]], ops_of[k]);
      std::fclose(f);
    }
  }
  r.seconds = *seconds;
  r.offered_rate = rate;
  r.prepare_seconds = build_s + prepare_s;
  if (!open_loop) {
    size_t taken = 0;
    for (const auto& x : outcomes) taken += x.taken;
    r.pool_exhausted = taken == outcomes.size() && r.seconds < 0.9 * o.peak_seconds;
  }
  return r;
}

void print_phase(const PhaseResult& r) {
  auto lat = [](const ClassStats& s) {
    char buf[96];
    if (s.latency_ms.empty()) return std::string(30, ' ') + "-";
    std::snprintf(buf, sizeof buf, "%7.2f %7.2f %7.2f %7.1f", s.p(0.5), s.p(0.99), s.p(0.999), s.max());
    return std::string(buf);
  };
  std::printf("  %-12s %9s %10.0f | %s | %s | %s | %8llu %10llu %6llu %6llu\n", r.name.c_str(),
              r.open_loop ? std::to_string(static_cast<long long>(r.offered_rate)).c_str() : "closed",
              r.accepted_per_sec(), lat(r.cls[kFare]).c_str(), lat(r.cls[kTransfer]).c_str(),
              lat(r.cls[kPayoutBatch]).c_str(), (unsigned long long)r.sum(&ClassStats::rejected),
              (unsigned long long)r.sum(&ClassStats::overloaded), (unsigned long long)r.sum(&ClassStats::errors),
              (unsigned long long)r.sum(&ClassStats::unsent));
}

// Where the CPU went in the phase, per accepted op.
void print_cpu(const PhaseResult& r) {
  const Json& c = r.cpu;
  if (!c.is_object()) return;
  std::printf("  CPU per accepted op in phase %s (us):", r.name.c_str());
  if (c.contains("nodes")) {
    for (const auto& n : c["nodes"]) {
      std::printf(" node %s (%s) ", n["api"].get<std::string>().c_str(), n["role"].get<std::string>().c_str());
      if (!n["us_per_op"].is_number()) {
        std::printf("n/a;");
        continue;
      }
      std::printf("%.1f [", n["us_per_op"].get<double>());
      std::vector<std::pair<double, std::string>> threads;
      for (auto& [name, us] : n["threads_us_per_op"].items()) threads.emplace_back(us.get<double>(), name);
      std::sort(threads.rbegin(), threads.rend());
      for (size_t i = 0; i < threads.size() && i < 5; ++i)
        std::printf("%s%s %.1f", i ? ", " : "", threads[i].second.c_str(), threads[i].first);
      std::printf("];");
    }
  }
  if (c.contains("postgres_us_per_op")) std::printf(" postgres %.1f;", c["postgres_us_per_op"].get<double>());
  std::printf(" load generator %.1f; in all %.1f", c["generator_us_per_op"].get<double>(),
              c["total_us_per_op"].get<double>());
  if (c.contains("cpu_bound_ops_per_sec"))
    std::printf(" -> at most %.0f ops/s on %u cores", c["cpu_bound_ops_per_sec"].get<double>(), c["cores"].get<unsigned>());
  if (c.contains("machine_busy")) std::printf("; cores %.0f%% busy", 100 * c["machine_busy"].get<double>());
  std::printf("\n");
}

// True if every rate (or percent) is a positive finite number.
bool rates_valid(const std::vector<double>& rates) {
  for (double r : rates)
    if (!(r > 0) || !std::isfinite(r)) return false;
  return true;
}

void run_rush(RushOptions o) {
  crypto_init();
  if (o.smoke) {
    o.wallets = std::min<uint64_t>(o.wallets, 2000);
    o.duration = std::min(o.duration, 1.0);
    o.peak_seconds = std::min(o.peak_seconds, 1.0);
  }
  if (!rates_valid(o.rates) || !rates_valid(o.percents) || !rates_valid(o.also_rates)) {
    std::cerr << "error: --rates, --percents and --also-rates must be positive numbers\n";
    return set_exit_code(2);
  }
  if (!o.trace.empty()) {
    if (o.target != "cityledger") {
      std::cerr << "error: --trace records answer times of the cityledger target only\n";
      return set_exit_code(2);
    }
    std::FILE* f = std::fopen(o.trace.c_str(), "a");  // refuse a bad path before any work
    if (f == nullptr) {
      std::cerr << "error: cannot open --trace file " << o.trace << "\n";
      return set_exit_code(2);
    }
    std::fclose(f);
  }
  o.operators = std::max<uint64_t>(1, o.operators);
  o.agency_connections = std::max<uint64_t>(1, o.agency_connections);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());

  // The system under test and how many ops its peak phase may need.
  std::unique_ptr<Target> target;
  std::unique_ptr<CpuMeter> cpu;
  LedgerTarget* ledger = nullptr;
  std::string chain = "bench";
  double verify_all = 0;
  uint64_t peak_pool = o.peak_ops;
  if (o.target == "cityledger") {
    auto registrar = read_key_file(o.registrar_key);
    auto issuer = read_key_file(o.issuer_key);
    if (!registrar || !issuer) {
      std::cerr << "error: " << (!registrar ? registrar.status() : issuer.status()).message() << "\n";
      return set_exit_code(2);
    }
    auto node = find_bench_target(o.node, "bench rush");
    if (!node) {
      std::cerr << "error: " << node.status().message() << "\n";
      return set_exit_code(1);
    }
    chain = node->chain;
    std::cerr << "bench rush: measuring the Ed25519 verify ceiling (all cores)...\n";
    verify_all = measure_verify_all_cores(0.5);
    // The node verifies every op once, on the same cores: it cannot accept
    // more than the verify ceiling per second (the margin covers a ceiling
    // measured low on a busy machine).
    if (peak_pool == 0) peak_pool = static_cast<uint64_t>(verify_all * o.peak_seconds * 1.5) + 1000;
    cpu = std::make_unique<CpuMeter>(node->url, false);
    auto t = std::make_unique<LedgerTarget>(o, *node, *registrar, *issuer);
    ledger = t.get();
    target = std::move(t);
  } else if (o.target == "postgres") {
    auto pg = PgTarget::connect(o.pg);
    if (!pg) {
      std::cerr << "error: " << pg.status().message() << "\n";
      return set_exit_code(1);
    }
    if (peak_pool == 0) peak_pool = static_cast<uint64_t>(kPgPeakPoolPerSec * o.peak_seconds) + 1000;
    // PostgreSQL's processes are counted when it runs on this machine.
    cpu = std::make_unique<CpuMeter>(std::nullopt, processes_cpu_seconds("postgres") > 0);
    target = std::make_unique<PostgresTarget>(o, std::move(*pg));
  } else {
    std::cerr << "error: --target must be cityledger or postgres\n";
    return set_exit_code(2);
  }
  if (o.peak_seconds <= 0) peak_pool = 0;
  peak_pool = std::min(peak_pool, o.max_ops);

  // Refuse a sweep that would not fit the cap before preparing anything.
  uint64_t sweep_bound = o.max_ops;
  uint64_t also_ops = 0;
  for (double r : o.also_rates) also_ops += static_cast<uint64_t>(std::llround(r * o.duration));
  if (!o.rates.empty()) {
    sweep_bound = also_ops;
    for (double r : o.rates) sweep_bound += static_cast<uint64_t>(std::llround(r * o.duration));
    if (sweep_bound > o.max_ops) {
      std::cerr << "error: the sweep would send " << sweep_bound << " ops, more than --max-ops " << o.max_ops
                << "; lower --rates or --duration\n";
      return set_exit_code(2);
    }
  } else if (o.peak_seconds <= 0) {
    std::cerr << "error: without --rates the sweep is derived from the peak phase: --peak-seconds must be > 0\n";
    return set_exit_code(2);
  }

  City city(o, chain);
  if (ledger) ledger->set_city(&city);
  std::cerr << "bench rush: setting up " << o.wallets << " riders, " << o.operators << " operators, 1 agency on "
            << o.target << "...\n";
  auto t_setup = BenchClock::now();
  if (Status s = target->setup(city, peak_pool + sweep_bound); !s) {
    std::cerr << "error: setup: " << s.to_string() << "\n";
    return set_exit_code(1);
  }
  double setup_s = seconds_since(t_setup);
  target->pause();
  target->set_cpu_meter(cpu.get());

  std::mt19937_64 rng(o.seed);
  PhaseResult peak;
  if (peak_pool > 0) {
    std::cerr << "bench rush: peak: closed loop for " << o.peak_seconds << " s on "
              << o.connections + o.agency_connections << " connections (" << peak_pool << " ops prepared)\n";
    peak = run_phase(*target, city, o, "peak", peak_pool, 0, rng, cpu.get());
    if (peak.pool_exhausted)
      std::cerr << "bench rush: warning: the peak phase used every prepared op in " << peak.seconds
                << " s; raise --peak-ops\n";
    std::cerr << "bench rush: peak " << static_cast<uint64_t>(peak.accepted_per_sec()) << " accepted ops/s\n";
    target->pause();
  }

  std::vector<double> rates = o.rates;
  std::vector<std::string> names;
  for (double r : rates) names.push_back("rate " + std::to_string(std::llround(r)));
  if (rates.empty()) {
    double base = peak.accepted_per_sec();
    if (base <= 0) {
      std::cerr << "error: the peak phase accepted nothing (" << peak.sum(&ClassStats::errors) << " errors, "
                << peak.sum(&ClassStats::rejected) << " rejected); no sweep\n";
      return set_exit_code(1);
    }
    uint64_t total = also_ops;
    for (double pct : o.percents) {
      rates.push_back(base * pct / 100);
      names.push_back("sweep " + std::to_string(std::llround(pct)) + "%");
      total += static_cast<uint64_t>(std::llround(rates.back() * o.duration));
    }
    if (total > o.max_ops) {
      std::cerr << "error: the sweep would send " << total << " ops, more than --max-ops " << o.max_ops
                << "; lower --duration\n";
      return set_exit_code(2);
    }
  }
  for (double r : o.also_rates) {
    rates.push_back(r);
    names.push_back("rate " + std::to_string(std::llround(r)));
  }
  std::vector<PhaseResult> steps;
  for (size_t i = 0; i < rates.size(); ++i) {
    double rate = rates[i];
    uint64_t ops = std::max<uint64_t>(1, static_cast<uint64_t>(std::llround(rate * o.duration)));
    std::cerr << "bench rush: open loop at " << static_cast<uint64_t>(rate) << " ops/s for " << o.duration << " s ("
              << ops << " ops)\n";
    steps.push_back(run_phase(*target, city, o, names[i], ops, rate, rng, cpu.get()));
    const PhaseResult& s = steps.back();
    std::cerr << "bench rush:   accepted " << static_cast<uint64_t>(s.accepted_per_sec()) << " ops/s, fare p99 "
              << s.cls[kFare].p(0.99) << " ms\n";
    target->pause();
  }

  bool failed = peak.sum(&ClassStats::errors) > 0;
  uint64_t accepted = peak.sum(&ClassStats::accepted);
  for (const auto& s : steps) {
    failed = failed || s.sum(&ClassStats::errors) > 0;
    accepted += s.sum(&ClassStats::accepted);
  }
  Json report = target->describe(accepted);
  if (o.json) {
    Json j{{"benchmark", "rush"},
           {"wallets", o.wallets},
           {"operators", o.operators},
           {"connections", o.connections},
           {"agency_connections", o.agency_connections},
           {"payout_batch", o.payout_batch},
           {"duration_s", o.duration},
           {"peak_seconds", o.peak_seconds},
           {"seed", o.seed},
           {"mix", {{"fare", 0.90}, {"transfer", 0.09}, {"payout", 0.01}}},
           {"cores", cores},
           {"setup_seconds", setup_s},
           {"peak", peak_pool > 0 ? peak.to_json() : Json()},
           {"steps", Json::array()}};
    if (verify_all > 0) j["verify_per_sec_all_cores"] = verify_all;
    for (auto& [k, v] : report.items()) j[k] = v;
    for (const auto& s : steps) j["steps"].push_back(s.to_json());
    std::cout << j.dump() << "\n";
  } else {
    bool sigs = report["verifies_signatures"].get<bool>();
    std::printf("cityledger bench rush against %s (%s)%s\n", o.target.c_str(),
                o.target == "cityledger" ? report["node"].get<std::string>().c_str()
                                         : report["pg"].get<std::string>().c_str(),
                sigs ? "" : " -- no signatures verified");
    std::printf("  %llu riders, %llu hot operators, %llu gate + %llu agency connections; mix 90%% fares, 9%% "
                "transfers, 1%% payouts (batches of %llu); setup %.1f s\n",
                (unsigned long long)o.wallets, (unsigned long long)o.operators, (unsigned long long)o.connections,
                (unsigned long long)o.agency_connections, (unsigned long long)o.payout_batch, setup_s);
    if (o.target == "postgres")
      std::printf("  PostgreSQL %s, synchronous_commit=%s, fsync=%s; deadlocks counted as errors\n",
                  report["server_version"].get<std::string>().c_str(),
                  report["synchronous_commit"].get<std::string>().c_str(), report["fsync"].get<std::string>().c_str());
    std::printf("  %-12s %9s %10s | %-31s | %-31s | %-31s | rejected overloaded errors unsent\n", "phase", "offered/s",
                "accepted/s", "fare ms: p50 p99 p999 max", "transfer ms: p50 p99 p999 max",
                "batch ms: p50 p99 p999 max");
    if (peak_pool > 0) print_phase(peak);
    for (const auto& s : steps) print_phase(s);
    if (peak_pool > 0) print_cpu(peak);
    if (report.contains("balances_conserved"))
      std::printf("  postgres: sum of balances %s; journal rows %s the accepted ops\n",
                  report["balances_conserved"].get<bool>() ? "conserved" : "CHANGED",
                  report["journal_matches_accepted"].get<bool>() ? "match" : "DO NOT MATCH");
  }
  if (failed) set_exit_code(1);
}

}  // namespace

void register_rush_bench(CLI::App& bench) {
  auto o = std::make_shared<RushOptions>();
  auto* rush = bench.add_subcommand(
      "rush", "a city rush hour (fares, transfers, bulk payouts) against cityledger or PostgreSQL: peak, then a rate sweep");
  rush->add_option("--target", o->target, "cityledger or postgres")->capture_default_str()->check(
      CLI::IsMember({"cityledger", "postgres"}));
  rush->add_option("--node", o->node, "cityledger node URL (a follower points to its leader)")->capture_default_str();
  rush->add_option("--registrar-key", o->registrar_key, "registrar key file (opens wallets)")->capture_default_str();
  rush->add_option("--issuer-key", o->issuer_key, "issuer key file (funds wallets)")->capture_default_str();
  rush->add_option("--pg", o->pg, "PostgreSQL libpq conninfo")->capture_default_str();
  rush->add_option("--wallets", o->wallets, "rider wallets")->capture_default_str()->check(CLI::Range(1, 10'000'000));
  rush->add_option("--operators", o->operators, "hot transit-operator wallets every fare pays")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  rush->add_option("--connections", o->connections, "gate connections (fares, transfers)")
      ->capture_default_str()->check(CLI::Range(1, 4096));
  rush->add_option("--agency-connections", o->agency_connections, "agency connections (payout batches)")
      ->capture_default_str()->check(CLI::Range(1, 64));
  rush->add_option("--payout-batch", o->payout_batch, "payouts per batch request")
      ->capture_default_str()->check(CLI::Range(1, 8192));
  rush->add_option("--duration", o->duration, "seconds per open-loop rate step")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  rush->add_option("--rates", o->rates, "open-loop rates, ops/s (default: --percents of the measured peak)")
      ->delimiter(',');
  rush->add_option("--percents", o->percents, "the automatic sweep, in % of the measured peak")
      ->delimiter(',')->capture_default_str();
  rush->add_option("--also-rates", o->also_rates,
                   "open-loop rates swept after the others (e.g. another system's, to compare at equal load)")
      ->delimiter(',');
  rush->add_option("--peak-seconds", o->peak_seconds, "closed-loop peak phase length (0: none)")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  rush->add_option("--peak-ops", o->peak_ops, "ops prepared for the peak phase (default: from the verify ceiling)");
  rush->add_option("--max-ops", o->max_ops, "refuse a sweep of more ops than this")->capture_default_str();
  rush->add_option("--seed", o->seed, "workload seed")->capture_default_str();
  rush->add_flag("--smoke", o->smoke, "a quick run: at most 2,000 riders, 1 s steps, 1 s peak");
  rush->add_flag("--json", o->json, "print one JSON object (progress on stderr)");
  rush->add_option("--trace", o->trace,
                   "append one CSV line per answered request (phase, answered at Unix ms, latency ms, class, ops)");
  rush->callback([o] { run_rush(*o); });
}

}  // namespace cl::cli
