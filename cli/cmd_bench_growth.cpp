// `cityledger bench growth`: does a node slow down as its journal grows?
// It grows the journal by --entries payouts (bulk, on the batch endpoint) and,
// before the first and after every --step of them, measures fares: a short
// closed-loop peak, then --measure-seconds at the fixed rate --rate (open
// loop, latency from each fare's scheduled time, as in `bench rush`).
//
// Payouts are signed in chunks as the journal grows (on every core), so
// memory stays bounded whatever --entries is.
#include <sodium.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/http_load.h"
#include "common/hex.h"

namespace cl::cli {
namespace {

struct GrowthOptions {
  std::string node = "http://127.0.0.1:8081";
  std::string registrar_key = "config/demo/registrar.key";
  std::string issuer_key = "config/demo/issuer.key";
  uint64_t entries = 2'000'000;
  uint64_t step = 0;  // 0: entries / 10
  double rate = 0;    // 0: half the first step's peak
  double measure_seconds = 5;
  double peak_seconds = 2;
  uint64_t riders = 10'000;
  uint64_t operators = 10;
  uint64_t connections = 64;
  uint64_t grow_connections = 4;
  bool json = false;
};

constexpr uint64_t kFareAmount = 5'700, kPayoutAmount = 100;
// Payouts per growth request (the batch endpoint's maximum) and requests
// signed per chunk: 8 × 8,192 envelopes ≈ 30 MB at a time.
constexpr size_t kGrowBatch = 8192, kGrowChunkRequests = 8;

struct FarePhase {
  uint64_t accepted = 0, rejected = 0, overloaded = 0, errors = 0;
  double seconds = 0;
  std::vector<double> latency_ms;  // sorted
  double per_sec() const { return seconds > 0 ? static_cast<double>(accepted) / seconds : 0; }
  Json to_json() const {
    return {{"accepted", accepted},
            {"rejected", rejected},
            {"overloaded", overloaded},
            {"errors", errors},
            {"seconds", seconds},
            {"accepted_per_sec", per_sec()},
            {"latency_ms",
             {{"p50", quantile(latency_ms, 0.5)},
              {"p99", quantile(latency_ms, 0.99)},
              {"p999", quantile(latency_ms, 0.999)},
              {"max", latency_ms.empty() ? 0 : latency_ms.back()}}}};
  }
};

class Growth : public BenchCity {
 public:
  Growth(const GrowthOptions& o, BenchTarget node, KeyPair registrar, KeyPair issuer)
      : BenchCity(node.chain), o_(o), node_(std::move(node)), registrar_(registrar), issuer_(issuer) {}

  // Opens the riders, operators and the agency; funds riders for "fares"
  // fares in all and the agency for every payout.
  Status setup(uint64_t fares) {
    std::vector<OpBody> opens;
    std::vector<const KeyPair*> owners;
    auto open = [&](const WalletId& w, const KeyPair& k, WalletKind kind) {
      OpBody b = body(OpType::kOpenWallet);
      b.wallet = w;
      b.key = k.public_key;
      b.kind = kind;
      opens.push_back(std::move(b));
      owners.push_back(&k);
    };
    for (uint64_t n = 0; n < o_.operators; ++n) open(transit(n), key_of(n), WalletKind::kTransit);
    open(agency(), agency_key(), WalletKind::kAgency);
    for (uint64_t n = 0; n < o_.riders; ++n) open(rider(n), key_of(n), WalletKind::kPersonal);
    std::vector<std::string> envs(opens.size());
    parallel_for(opens.size(), [&](size_t i) { envs[i] = sign_envelope(opens[i], {&registrar_, owners[i]}).jcs; });
    if (Status s = submit_batches(node_.url, envs, 4096, 4); !s) return s;

    std::vector<OpBody> issues;
    uint64_t per_rider = kFareAmount * (20 + 4 * fares / std::max<uint64_t>(1, o_.riders));
    for (uint64_t n = 0; n < o_.riders; ++n) {
      OpBody b = body(OpType::kIssue);
      b.to = rider(n);
      b.amount = per_rider;
      issues.push_back(std::move(b));
    }
    OpBody a = body(OpType::kIssue);
    a.to = agency();
    a.amount = kPayoutAmount * (o_.entries + 1);
    issues.push_back(std::move(a));
    envs.assign(issues.size(), std::string());
    parallel_for(issues.size(), [&](size_t i) { envs[i] = sign_envelope(issues[i], {&issuer_}).jcs; });
    return submit_batches(node_.url, envs, 4096, 4);
  }

  // Appends "count" payouts, signing them a chunk at a time.
  Status grow(uint64_t count) {
    while (count > 0) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(count, kGrowBatch * kGrowChunkRequests));
      std::vector<OpBody> bodies(n);
      for (auto& b : bodies) {
        b = body(OpType::kPayout);
        b.from = agency();
        b.to = rider(rng_() % o_.riders);
        b.amount = kPayoutAmount;
        b.program = "growth";
        b.reference = run_ids().hex() + "-" + std::to_string(next_ref_++);
      }
      std::vector<std::string> envs(n);
      parallel_for(n, [&](size_t i) { envs[i] = sign_envelope(bodies[i], {&agency_key()}).jcs; });
      bodies = {};
      if (Status s = submit_batches(node_.url, envs, kGrowBatch, o_.grow_connections); !s) return s;
      count -= n;
    }
    return Status::ok();
  }

  // Fares signed now, sent later: closed loop (rate 0) or at "rate" per second.
  std::vector<LoadRequest> fares(uint64_t count, double rate) {
    std::vector<OpBody> bodies(count);
    std::vector<uint64_t> who(count);
    for (uint64_t i = 0; i < count; ++i) {
      OpBody& b = bodies[i];
      b = body(OpType::kFare);
      who[i] = rng_() % o_.riders;
      b.from = rider(who[i]);
      b.to = transit(rng_() % o_.operators);
      b.amount = kFareAmount;
      b.gate = "gate-" + std::to_string(rng_() % 5000);
      b.tap_at = 1'800'000'000'000;
    }
    std::string host = node_.url.host + ":" + std::to_string(node_.url.port);
    std::vector<LoadRequest> out(count);
    parallel_for(count, [&](size_t i) {
      out[i].bytes = post_request_bytes(host, "/v1/ops", sign_envelope(bodies[i], {&key_of(who[i])}).jcs);
      out[i].due_s = rate > 0 ? static_cast<double>(i) / rate : 0;
    });
    return out;
  }

  // Sends "reqs": open loop round-robin over the connections, or closed
  // loop for at most "seconds" from one shared queue.
  FarePhase run(std::vector<LoadRequest> reqs, bool open_loop, double seconds) {
    LoadPlan plan;
    plan.paced = open_loop;
    if (open_loop) {
      std::vector<std::vector<LoadRequest>> shares(o_.connections);
      for (size_t i = 0; i < reqs.size(); ++i) shares[i % shares.size()].push_back(std::move(reqs[i]));
      for (auto& s : shares) plan.queues.push_back(std::make_shared<LoadQueue>(std::move(s)));
      plan.send_until_s = 2 * seconds + 10;
    } else {
      auto shared = std::make_shared<LoadQueue>(std::move(reqs));
      plan.queues.assign(o_.connections, shared);
      plan.send_until_s = seconds;
    }
    FarePhase r;
    auto timing = run_http_load(node_.url, plan, [&](const LoadRequest&, int status, const std::string&, double ms) {
      if (status == kLoadIoError) {
        ++r.errors;
        return;
      }
      r.latency_ms.push_back(ms);
      if (status == 200) ++r.accepted;
      else if (status == 429 || status == 503) ++r.overloaded;
      else if (status >= 400 && status < 500) ++r.rejected;
      else ++r.errors;
    });
    if (open_loop) {
      for (size_t c = 0; c < plan.queues.size(); ++c)
        if (plan.queues[c]->failed) r.errors += plan.queues[c]->unsent().size();
    }
    if (timing) r.seconds = timing->last_answer_s;
    else r.errors += 1;
    std::sort(r.latency_ms.begin(), r.latency_ms.end());
    return r;
  }

  // The journal's size: the tree size of a checkpoint signed after the
  // last write (nodes sign one every checkpoint interval while it grows).
  uint64_t journal_size() {
    settle_replicas(node_.url);
    api::HttpClient c(node_.url.host, node_.url.port, 5000);
    uint64_t last = 0;
    for (int i = 0; i < 40; ++i) {
      auto r = c.request("GET", "/v1/checkpoint");
      if (r && r->status == 200) {
        auto doc = parse_json_strict(r->body);
        if (doc && (*doc)["tree_size"].is_number_unsigned()) {
          uint64_t size = (*doc)["tree_size"].get<uint64_t>();
          if (i > 0 && size == last) return size;
          last = size;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(600));
    }
    return last;
  }

 private:

  const GrowthOptions& o_;
  BenchTarget node_;
  KeyPair registrar_, issuer_;
  std::mt19937_64 rng_{11};
  uint64_t next_ref_ = 0;
};

void run_growth(GrowthOptions o) {
  crypto_init();
  if (o.step == 0) o.step = std::max<uint64_t>(1, o.entries / 10);
  auto registrar = read_key_file(o.registrar_key);
  auto issuer = read_key_file(o.issuer_key);
  if (!registrar || !issuer) {
    std::cerr << "error: " << (!registrar ? registrar.status() : issuer.status()).message() << "\n";
    return set_exit_code(2);
  }
  auto node = find_bench_target(o.node, "bench growth");
  if (!node) {
    std::cerr << "error: " << node.status().message() << "\n";
    return set_exit_code(1);
  }
  std::cerr << "bench growth: measuring the Ed25519 verify ceiling (all cores)...\n";
  double verify_all = measure_verify_all_cores(0.5);
  // A node verifies every fare once: it cannot accept more than the ceiling.
  uint64_t peak_pool = static_cast<uint64_t>(verify_all * o.peak_seconds * 1.2) + 1000;
  uint64_t steps = o.entries / o.step + 1 + (o.entries % o.step ? 1 : 0);
  double rate_bound = o.rate > 0 ? o.rate : verify_all;
  uint64_t paced_fares = static_cast<uint64_t>(rate_bound * o.measure_seconds) + 1;
  uint64_t fares_bound = steps * (peak_pool + paced_fares);

  Growth g(o, *node, *registrar, *issuer);
  std::cerr << "bench growth: opening and funding " << o.riders << " riders...\n";
  if (Status s = g.setup(fares_bound); !s) {
    std::cerr << "error: setup: " << s.to_string() << "\n";
    return set_exit_code(1);
  }

  Json rows = Json::array();
  double rate = o.rate;
  uint64_t grown = 0;
  bool failed = false;
  if (!o.json)
    std::printf("%12s %12s %10s | %10s %8s %8s %8s %8s %7s\n", "added", "journal", "peak f/s", "open f/s", "p50 ms",
                "p99 ms", "p999 ms", "max ms", "errors");
  while (true) {
    uint64_t size = g.journal_size();
    std::cerr << "bench growth: journal " << size << ": peak for " << o.peak_seconds << " s...\n";
    FarePhase peak = g.run(g.fares(peak_pool, 0), false, o.peak_seconds);
    settle_replicas(node->url);
    if (rate <= 0) rate = peak.per_sec() / 2;
    FarePhase paced;
    if (rate > 0) {
      auto reqs = g.fares(static_cast<uint64_t>(std::llround(rate * o.measure_seconds)), rate);
      std::cerr << "bench growth: journal " << size << ": open loop at " << static_cast<uint64_t>(rate) << " fares/s for "
                << o.measure_seconds << " s...\n";
      paced = g.run(std::move(reqs), true, o.measure_seconds);
    }
    failed = failed || peak.errors > 0 || paced.errors > 0;
    rows.push_back({{"added", grown}, {"journal_size", size}, {"rate", rate}, {"peak", peak.to_json()},
                    {"open_loop", paced.to_json()}});
    if (!o.json)
      std::printf("%12llu %12llu %10.0f | %10.0f %8.2f %8.2f %8.2f %8.1f %7llu\n", (unsigned long long)grown,
                  (unsigned long long)size, peak.per_sec(), paced.per_sec(), quantile(paced.latency_ms, 0.5),
                  quantile(paced.latency_ms, 0.99), quantile(paced.latency_ms, 0.999),
                  paced.latency_ms.empty() ? 0.0 : paced.latency_ms.back(),
                  (unsigned long long)(peak.errors + paced.errors));
    std::fflush(stdout);
    if (grown >= o.entries) break;
    uint64_t add = std::min(o.step, o.entries - grown);
    std::cerr << "bench growth: appending " << add << " payouts...\n";
    auto t0 = BenchClock::now();
    if (Status s = g.grow(add); !s) {
      std::cerr << "error: growing the journal: " << s.to_string() << "\n";
      return set_exit_code(1);
    }
    std::cerr << "bench growth: " << add << " payouts in " << seconds_since(t0) << " s ("
              << static_cast<uint64_t>(static_cast<double>(add) / seconds_since(t0)) << "/s, signing included)\n";
    grown += add;
  }
  if (o.json) {
    std::cout << Json{{"benchmark", "growth"},       {"node", node->base},
                      {"entries", o.entries},        {"step", o.step},
                      {"rate", rate},                {"measure_seconds", o.measure_seconds},
                      {"peak_seconds", o.peak_seconds}, {"connections", o.connections},
                      {"verify_per_sec_all_cores", verify_all}, {"steps", rows}}
                     .dump()
              << "\n";
  }
  if (failed) set_exit_code(1);
}

}  // namespace

void register_growth_bench(CLI::App& bench) {
  auto o = std::make_shared<GrowthOptions>();
  auto* g = bench.add_subcommand("growth", "fare throughput and latency as the journal grows (bulk payouts between steps)");
  g->add_option("--node", o->node, "node URL (a follower points to its leader)")->capture_default_str();
  g->add_option("--registrar-key", o->registrar_key, "registrar key file (opens wallets)")->capture_default_str();
  g->add_option("--issuer-key", o->issuer_key, "issuer key file (funds wallets)")->capture_default_str();
  g->add_option("--entries", o->entries, "journal entries to add (payouts)")->capture_default_str();
  g->add_option("--step", o->step, "measure after every this many entries (default: entries / 10)");
  g->add_option("--rate", o->rate, "open-loop fares/s (default: half the first peak)");
  g->add_option("--measure-seconds", o->measure_seconds, "open-loop seconds per step")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  g->add_option("--peak-seconds", o->peak_seconds, "closed-loop peak seconds per step")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  g->add_option("--riders", o->riders, "rider wallets")->capture_default_str()->check(CLI::Range(1, 10'000'000));
  g->add_option("--operators", o->operators, "transit operator wallets (hot)")->capture_default_str()->check(CLI::Range(1, 1000));
  g->add_option("--connections", o->connections, "gate connections")->capture_default_str()->check(CLI::Range(1, 4096));
  g->add_option("--grow-connections", o->grow_connections, "connections appending payouts")
      ->capture_default_str()->check(CLI::Range(1, 64));
  g->add_flag("--json", o->json, "print one JSON object (progress on stderr)");
  g->callback([o] { run_growth(*o); });
}

}  // namespace cl::cli
