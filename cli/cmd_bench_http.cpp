// `cityledger bench run`: a load generator that drives a running node over
// HTTP keep-alive like a city's gates and agencies do, and prints accepted
// ops/s and latency quantiles next to this machine's Ed25519 verify ceiling.
//
// Wallets are prepared and every op is signed before any timing starts.
// Phases: (1) fares on the single-op endpoint from N connections, closed loop
// (peak throughput); (2) fares at a fixed arrival rate of half that peak,
// open loop, latency measured from each op's scheduled time so a stalled
// server cannot hide queueing (no coordinated omission); (3) bulk payouts on
// the batch endpoint.
#include <sodium.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <random>
#include <thread>

#include "api/http_client.h"
#include "cli/bench_util.h"
#include "cli/commands.h"
#include "cli/http_load.h"
#include "common/hex.h"
#include "wallet/jcs.h"

namespace cl::cli {
namespace {

struct HttpBenchOptions {
  std::string node = "http://127.0.0.1:8081";
  std::string registrar_key = "config/demo/registrar.key";
  std::string issuer_key = "config/demo/issuer.key";
  uint64_t riders = 10000;
  uint64_t operators = 4;  // hot transit-operator wallets every fare pays into
  uint64_t connections = 64;
  uint64_t fares = 50000;
  uint64_t open_loop_fares = 20000;
  double rate = 0;  // fixed arrival rate for phase 2; 0 = half the measured peak
  uint64_t payouts = 20000;
  uint64_t payout_batch = 1000;
  bool json = false;
};

struct PhaseResult {
  std::string name;
  uint64_t sent = 0, accepted = 0, rejected = 0, overloaded = 0, errors = 0;
  double seconds = 0;
  double offered_rate = 0;
  std::vector<double> latency_ms;  // sorted
  double ops_per_sec() const { return seconds > 0 ? static_cast<double>(accepted) / seconds : 0; }
  Json to_json() const {
    return {{"phase", name},           {"sent", sent},
            {"accepted", accepted},    {"rejected", rejected},
            {"overloaded", overloaded}, {"errors", errors},
            {"seconds", seconds},      {"offered_rate", offered_rate},
            {"accepted_per_sec", ops_per_sec()},
            {"latency_ms", {{"p50", quantile(latency_ms, 0.50)}, {"p99", quantile(latency_ms, 0.99)},
                            {"p999", quantile(latency_ms, 0.999)},
                            {"max", latency_ms.empty() ? 0 : latency_ms.back()}}}};
  }
};

// Sends "requests" over "conns" connections; interval_s > 0 paces each
// connection open-loop (one request every interval_s).
PhaseResult run_phase(const std::string& name, const api::Url& url, std::vector<std::string> requests, size_t conns,
                      double interval_s) {
  PhaseResult result;
  result.name = name;
  conns = std::max<size_t>(1, std::min(conns, requests.size()));
  std::vector<std::vector<LoadRequest>> shares(conns);
  for (size_t i = 0; i < requests.size(); ++i) {
    size_t c = i % conns;
    // Stagger open-loop connections evenly across one interval.
    double offset = interval_s * static_cast<double>(c) / static_cast<double>(conns);
    double due = offset + interval_s * static_cast<double>(shares[c].size());
    shares[c].push_back(LoadRequest{std::move(requests[i]), due, 0});
  }
  LoadPlan plan;
  plan.paced = interval_s > 0;
  for (auto& s : shares) plan.queues.push_back(std::make_shared<LoadQueue>(std::move(s)));
  auto timing = run_http_load(url, plan, [&](const LoadRequest&, int status, const std::string&, double ms) {
    if (status == kLoadIoError) {
      ++result.errors;
      return;
    }
    result.latency_ms.push_back(ms);
    ++result.sent;
    if (status == 200) ++result.accepted;
    else if (status == 429 || status == 503) ++result.overloaded;
    else if (status >= 400 && status < 500) ++result.rejected;
    else ++result.errors;
  });
  for (const auto& q : plan.queues)
    if (q->failed) result.errors += q->unsent().size();
  if (!timing) {
    result.errors += requests.size();
    return result;
  }
  result.seconds = timing->run_seconds;
  std::sort(result.latency_ms.begin(), result.latency_ms.end());
  return result;
}

class Setup : public BenchCity {
 public:
  Setup(const HttpBenchOptions& o, KeyPair registrar, KeyPair issuer, std::string chain)
      : BenchCity(std::move(chain)), o_(o), registrar_(registrar), issuer_(issuer) {}

  // Signs bodies on every core; signer(i) lists the keys for body i.
  template <typename Signers>
  std::vector<std::string> sign_all(const std::vector<OpBody>& bodies, Signers signers) {
    std::vector<std::string> out(bodies.size());
    parallel_for(bodies.size(), [&](size_t i) { out[i] = sign_envelope(bodies[i], signers(i)).jcs; });
    return out;
  }

  // Posts envelopes through the batch endpoint; fails loudly on any rejection.
  Status submit_all(const std::vector<std::string>& envs) {
    auto url = api::parse_url(o_.node);
    api::HttpClient client(url->host, url->port, 120000);
    for (size_t i = 0; i < envs.size(); i += 4096) {
      std::string body = "[";
      for (size_t k = i; k < std::min(envs.size(), i + 4096); ++k) body += (k > i ? "," : "") + envs[k];
      body += "]";
      auto r = client.request("POST", "/v1/ops/batch", body);
      if (!r) return r.status();
      if (r->status != 200) return Status::error("setup", "batch answered " + std::to_string(r->status) + ": " + r->body);
      auto doc = parse_json_strict(r->body);
      if (!doc) return Status::error("setup", "bad batch reply");
      for (const auto& x : (*doc)["results"])
        if (x["result"] != "ok") return Status::error("setup", "setup op rejected: " + x.dump());
    }
    return Status::ok();
  }

  Status prepare_wallets() {
    std::vector<OpBody> opens;
    std::vector<const KeyPair*> owner;
    auto open = [&](const WalletId& w, const KeyPair& k, WalletKind kind) {
      OpBody b = body(OpType::kOpenWallet);
      b.wallet = w;
      b.key = k.public_key;
      b.kind = kind;
      opens.push_back(b);
      owner.push_back(&k);
    };
    for (uint64_t n = 0; n < o_.operators; ++n) open(transit(n), key_of(n), WalletKind::kTransit);
    open(agency(), agency_key(), WalletKind::kAgency);
    for (uint64_t n = 0; n < o_.riders; ++n) open(rider(n), key_of(n), WalletKind::kPersonal);
    Status s = submit_all(sign_all(opens, [&](size_t i) { return std::vector<const KeyPair*>{&registrar_, owner[i]}; }));
    if (!s) return s;
    std::vector<OpBody> issues;
    // Enough that no rider runs dry: random picks give some riders several
    // times the mean number of fares.
    uint64_t per_rider = 5700 * (20 + 4 * (o_.fares + o_.open_loop_fares) / std::max<uint64_t>(1, o_.riders));
    for (uint64_t n = 0; n < o_.riders; ++n) {
      OpBody b = body(OpType::kIssue);
      b.to = rider(n);
      b.amount = per_rider;
      issues.push_back(b);
    }
    OpBody a = body(OpType::kIssue);
    a.to = agency();
    a.amount = 1'000'000 * (o_.payouts + 1);
    issues.push_back(a);
    return submit_all(sign_all(issues, [&](size_t) { return std::vector<const KeyPair*>{&issuer_}; }));
  }

  std::vector<std::string> fares(uint64_t count, std::mt19937_64& rng) {
    std::vector<OpBody> bodies(count);
    std::vector<uint64_t> who(count);
    for (uint64_t i = 0; i < count; ++i) {
      OpBody& b = bodies[i];
      b = body(OpType::kFare);
      who[i] = rng() % o_.riders;
      b.from = rider(who[i]);
      b.to = transit(rng() % o_.operators);
      b.amount = 5700;
      b.gate = "gate-" + std::to_string(rng() % 5000);
      b.tap_at = 1'800'000'000'000;
    }
    return sign_all(bodies, [&](size_t i) { return std::vector<const KeyPair*>{&key_of(who[i])}; });
  }

  std::vector<std::string> payout_batches(uint64_t count, uint64_t per_batch, std::mt19937_64& rng) {
    std::vector<OpBody> bodies(count);
    for (uint64_t i = 0; i < count; ++i) {
      OpBody& b = bodies[i];
      b = body(OpType::kPayout);
      b.from = agency();
      b.to = rider(rng() % o_.riders);
      b.amount = 1'000'000;
      b.program = "birth-benefit";
      b.reference = "bench-" + run_ids().hex() + "-" + std::to_string(i);
    }
    auto envs = sign_all(bodies, [&](size_t) { return std::vector<const KeyPair*>{&agency_key()}; });
    std::vector<std::string> batches;
    for (size_t i = 0; i < envs.size(); i += per_batch) {
      std::string body = "[";
      for (size_t k = i; k < std::min(envs.size(), i + per_batch); ++k) body += (k > i ? "," : "") + envs[k];
      batches.push_back(body + "]");
    }
    return batches;
  }

 private:
  const HttpBenchOptions& o_;
  KeyPair registrar_, issuer_;
};

void print_phase(const PhaseResult& r, const char* unit) {
  std::printf("  %-22s %8.0f %s/s accepted (%llu ok, %llu rejected, %llu overloaded, %llu errors) in %.2f s\n",
              r.name.c_str(), r.ops_per_sec(), unit, (unsigned long long)r.accepted, (unsigned long long)r.rejected,
              (unsigned long long)r.overloaded, (unsigned long long)r.errors, r.seconds);
  std::printf("  %-22s latency ms p50 %.2f  p99 %.2f  p999 %.2f  max %.2f%s\n", "", quantile(r.latency_ms, 0.5),
              quantile(r.latency_ms, 0.99), quantile(r.latency_ms, 0.999),
              r.latency_ms.empty() ? 0.0 : r.latency_ms.back(),
              r.offered_rate > 0 ? (" at offered " + std::to_string(static_cast<int>(r.offered_rate)) + "/s").c_str() : "");
}

void run_http_bench(HttpBenchOptions o) {
  crypto_init();
  auto url = api::parse_url(o.node);
  auto registrar = read_key_file(o.registrar_key);
  auto issuer = read_key_file(o.issuer_key);
  if (!url || !registrar || !issuer) {
    std::cerr << "error: " << (!url ? url.status() : !registrar ? registrar.status() : issuer.status()).message() << "\n";
    return set_exit_code(2);
  }
  api::HttpClient probe(url->host, url->port, 5000);
  auto cp = probe.request("GET", "/v1/checkpoint");
  if (!cp || cp->status != 200) {
    std::cerr << "error: node " << o.node << " is not answering /v1/checkpoint\n";
    return set_exit_code(1);
  }
  std::string chain = (*parse_json_strict(cp->body))["chain"].get<std::string>();
  // Against a cluster, drive the leader (followers answer writes with 307).
  if (auto cl = probe.request("GET", "/v1/cluster"); cl && cl->status == 200) {
    auto doc = parse_json_strict(cl->body);
    if (doc && (*doc)["role"] != "leader" && (*doc)["leader"].is_number()) {
      for (const auto& p : (*doc)["peers"]) {
        if (p["id"] != (*doc)["leader"]) continue;
        auto leader = api::parse_url("http://" + p["api"].get<std::string>());
        if (leader) {
          std::cerr << "bench: node " << o.node << " is a follower; driving the leader at " << p["api"].get<std::string>() << "\n";
          url = leader;
          o.node = "http://" + p["api"].get<std::string>();
        }
      }
    }
  }

  std::cerr << "bench: measuring Ed25519 verify rate on this machine...\n";
  double verify_1 = measure_verify_per_sec(1.0);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double ceiling = verify_1 * cores;

  Setup setup(o, *registrar, *issuer, chain);
  std::cerr << "bench: opening and funding " << o.riders << " riders, " << o.operators << " operators, 1 agency...\n";
  Status s = setup.prepare_wallets();
  if (!s) {
    std::cerr << "error: setup: " << s.to_string() << "\n";
    return set_exit_code(1);
  }
  std::mt19937_64 rng(7);
  std::cerr << "bench: signing " << o.fares + o.open_loop_fares << " fares and " << o.payouts << " payouts...\n";
  auto host = url->host + ":" + std::to_string(url->port);
  std::vector<std::string> peak_reqs, paced_reqs, payout_reqs;
  for (auto& e : setup.fares(o.fares, rng)) peak_reqs.push_back(post_request_bytes(host, "/v1/ops", e));
  for (auto& e : setup.fares(o.open_loop_fares, rng)) paced_reqs.push_back(post_request_bytes(host, "/v1/ops", e));
  for (auto& b : setup.payout_batches(o.payouts, o.payout_batch, rng))
    payout_reqs.push_back(post_request_bytes(host, "/v1/ops/batch", b));

  std::cerr << "bench: phase 1: " << o.fares << " fares, closed loop, " << o.connections << " connections\n";
  PhaseResult peak = run_phase("fares (peak)", *url, std::move(peak_reqs), o.connections, 0);
  double settle_ms = settle_replicas(*url);
  std::cerr << "bench: replicas caught up " << static_cast<int>(settle_ms) << " ms after the peak phase\n";
  double rate = o.rate > 0 ? o.rate : peak.ops_per_sec() / 2;
  PhaseResult paced;
  if (o.open_loop_fares > 0 && rate > 0) {
    std::cerr << "bench: phase 2: " << o.open_loop_fares << " fares, open loop at " << static_cast<int>(rate) << "/s\n";
    paced = run_phase("fares (open loop)", *url, std::move(paced_reqs), o.connections,
                      static_cast<double>(o.connections) / rate);
    paced.offered_rate = rate;
  }
  settle_replicas(*url);
  std::cerr << "bench: phase 3: " << o.payouts << " payouts in batches of " << o.payout_batch << "\n";
  PhaseResult payouts = run_phase("payouts (batch)", *url, std::move(payout_reqs), 4, 0);
  // A batch reply is 200 even when some slots are rejected: count ops, not requests.
  payouts.accepted = payouts.accepted * o.payout_batch;

  if (o.json) {
    std::cout << Json{{"benchmark", "http"},
                      {"node", o.node},
                      {"connections", o.connections},
                      {"verify_per_sec_per_core", verify_1},
                      {"cores", cores},
                      {"verify_ceiling_per_sec", ceiling},
                      {"fares_over_ceiling", peak.ops_per_sec() / ceiling},
                      {"replicas_caught_up_ms", settle_ms},
                      {"phases", {peak.to_json(), paced.to_json(), payouts.to_json()}}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("cityledger bench against %s (%llu connections)\n", o.node.c_str(), (unsigned long long)o.connections);
  print_phase(peak, "fares");
  std::printf("  %-22s %8.0f ms after the peak phase\n", "replicas caught up", settle_ms);
  if (paced.sent) print_phase(paced, "fares");
  std::printf("  %-22s %8.0f payouts/s (%llu batch requests of %llu)\n", "payouts (batch)", payouts.ops_per_sec(),
              (unsigned long long)payouts.sent, (unsigned long long)o.payout_batch);
  std::printf("  Ed25519 verify/s, 1 core %.0f; ceiling (%u cores) %.0f/s\n", verify_1, cores, ceiling);
  std::printf("  peak fares / verify ceiling: %.0f%%\n", 100.0 * peak.ops_per_sec() / ceiling);
}

}  // namespace

void register_http_bench(CLI::App& bench) {
  auto o = std::make_shared<HttpBenchOptions>();
  auto* run = bench.add_subcommand("run", "HTTP load against a running node: fares (peak, then open loop at half) and bulk payouts");
  run->add_option("--node", o->node, "node URL")->capture_default_str();
  run->add_option("--registrar-key", o->registrar_key, "registrar key file (opens bench wallets)")->capture_default_str();
  run->add_option("--issuer-key", o->issuer_key, "issuer key file (funds bench wallets)")->capture_default_str();
  run->add_option("--riders", o->riders, "rider wallets")->capture_default_str()->check(CLI::Range(1, 10'000'000));
  run->add_option("--operators", o->operators, "transit operator wallets (hot)")->capture_default_str()->check(CLI::Range(1, 1000));
  run->add_option("--connections", o->connections, "concurrent gates (connections)")->capture_default_str()->check(CLI::Range(1, 10000));
  run->add_option("--fares", o->fares, "fares in the closed-loop peak phase")->capture_default_str();
  run->add_option("--open-loop-fares", o->open_loop_fares, "fares in the open-loop phase (0 skips it)")->capture_default_str();
  run->add_option("--rate", o->rate, "open-loop arrival rate, ops/s (default: half the measured peak)");
  run->add_option("--payouts", o->payouts, "payouts in the batch phase")->capture_default_str();
  run->add_option("--payout-batch", o->payout_batch, "payouts per batch request")->capture_default_str()->check(CLI::Range(1, 8192));
  run->add_flag("--json", o->json, "print one JSON object");
  run->callback([o] { run_http_bench(*o); });
}

}  // namespace cl::cli
