// `cityledger bench apply`: ledger apply throughput and this machine's Ed25519
// verify rate, measured in one run (a program that prints figures, never a test).
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <random>
#include <thread>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "common/hex.h"
#include "ledger/ledger.h"

namespace cl::cli {
namespace {

using Clock = BenchClock;

struct ApplyBenchOptions {
  uint64_t wallets = 100'000;
  uint64_t batches = 100;
  uint64_t batch_size = 1000;
  uint64_t keys = 1000;  // distinct owner keys shared by the wallets
  std::string dir;
  bool sync = true;
  bool json = false;
};

// Applies "ops" in chunks of kApplyBatchOpsMax; aborts on any rejection.
void apply_all(Ledger& ledger, const std::vector<Envelope>& ops, uint64_t* time) {
  for (size_t i = 0; i < ops.size(); i += kApplyBatchOpsMax) {
    size_t n = std::min(kApplyBatchOpsMax, ops.size() - i);
    auto r = ledger.apply(std::span<const Envelope>(ops.data() + i, n), ++*time);
    CL_CHECK_MSG(r.is_ok(), r.status().to_string().c_str());
    for (const auto& o : *r) CL_CHECK_MSG(o.code == Code::kOk, o.detail.c_str());
  }
}

void run_apply_bench(const ApplyBenchOptions& o) {
  crypto_init();
  std::string dir = o.dir;
  bool temp = dir.empty();
  if (temp) dir = (std::filesystem::temp_directory_path() / ("cityledger-bench-" + std::to_string(::getpid()))).string();
  std::filesystem::remove_all(dir);

  std::cerr << "bench apply: preparing " << o.wallets << " wallets and " << o.batches * o.batch_size
            << " signed fares...\n";
  BenchWorld world(1, o.keys);
  auto genesis = Genesis::parse(world.genesis_json);
  CL_CHECK(genesis.is_ok());
  LedgerOptions lo;
  lo.sync = o.sync;
  auto opened = Ledger::open(dir, *genesis, lo);
  CL_CHECK_MSG(opened.is_ok(), opened.status().to_string().c_str());
  Ledger& ledger = **opened;
  uint64_t time = 1'800'000'000'000;
  apply_all(ledger, world.setup(o.wallets), &time);
  // The timed workload: fares from random riders to the operators.
  std::mt19937_64 rng(42);
  std::vector<Envelope> fare_envs = world.fares(o.batches * o.batch_size, o.wallets, time, rng);

  std::cerr << "bench apply: timing " << o.batches << " batches\n";
  std::vector<double> batch_ms;
  uint64_t accepted = 0;
  auto t0 = Clock::now();
  for (uint64_t b = 0; b < o.batches; ++b) {
    auto tb = Clock::now();
    auto r = ledger.apply(std::span<const Envelope>(fare_envs.data() + b * o.batch_size, o.batch_size), ++time);
    batch_ms.push_back(seconds_since(tb) * 1000);
    CL_CHECK_MSG(r.is_ok(), r.status().to_string().c_str());
    for (const auto& out : *r) accepted += out.code == Code::kOk;
  }
  double total_s = seconds_since(t0);
  std::sort(batch_ms.begin(), batch_ms.end());
  double p50 = batch_ms[batch_ms.size() / 2];
  double p99 = batch_ms[std::min(batch_ms.size() - 1, batch_ms.size() * 99 / 100)];
  double median_ops = o.batch_size / (p50 / 1000);
  double mean_ops = static_cast<double>(o.batches * o.batch_size) / total_s;

  std::cerr << "bench apply: measuring Ed25519 verify rate...\n";
  double verify_1 = measure_verify_per_sec(2.0);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  auto head = ledger.head();
  opened->reset();
  if (temp) std::filesystem::remove_all(dir);

  if (o.json) {
    std::cout << Json{{"benchmark", "apply"},     {"wallets", o.wallets},
                      {"batch_size", o.batch_size}, {"batches", o.batches},
                      {"sync", o.sync},             {"accepted", accepted},
                      {"apply_ops_per_sec_median", median_ops}, {"apply_ops_per_sec_mean", mean_ops},
                      {"batch_ms_p50", p50},        {"batch_ms_p99", p99},
                      {"verify_per_sec_per_core", verify_1}, {"cores", cores},
                      {"verify_ceiling_per_sec", verify_1 * cores},
                      {"apply_over_verify_one_core", median_ops / verify_1},
                      {"journal_size", head.size}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("apply benchmark: %llu batches x %llu fares over %llu wallets (sync=%s), single thread\n",
              (unsigned long long)o.batches, (unsigned long long)o.batch_size, (unsigned long long)o.wallets,
              o.sync ? "on" : "off");
  std::printf("  accepted                 %llu / %llu\n", (unsigned long long)accepted,
              (unsigned long long)(o.batches * o.batch_size));
  std::printf("  apply ops/s (median)     %.0f\n", median_ops);
  std::printf("  apply ops/s (mean)       %.0f\n", mean_ops);
  std::printf("  batch latency ms         p50 %.2f  p99 %.2f\n", p50, p99);
  std::printf("  Ed25519 verify/s, 1 core %.0f\n", verify_1);
  std::printf("  verify ceiling (%u cores) %.0f/s\n", cores, verify_1 * cores);
  std::printf("  apply / verify (1 core)  %.1fx\n", median_ops / verify_1);
}

}  // namespace

void register_bench_commands(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "benchmarks: programs that print figures");
  bench->require_subcommand(1);
  auto o = std::make_shared<ApplyBenchOptions>();
  auto* apply = bench->add_subcommand("apply", "ledger apply throughput vs Ed25519 verify rate");
  apply->add_option("--wallets", o->wallets, "rider wallets")->capture_default_str();
  apply->add_option("--batches", o->batches, "timed batches")->capture_default_str();
  apply->add_option("--batch-size", o->batch_size, "fares per batch")->capture_default_str()->check(
      CLI::Range(uint64_t{1}, uint64_t{kApplyBatchOpsMax}));
  apply->add_option("--dir", o->dir, "ledger directory (default: a temporary one, removed after)");
  apply->add_flag("--no-sync", [o](int64_t) { o->sync = false; }, "do not fsync each batch");
  apply->add_flag("--json", o->json, "print one JSON object");
  apply->callback([o] { run_apply_bench(*o); });
  register_http_bench(*bench);
  register_audit_bench(*bench);
  register_rush_bench(*bench);
  register_ceilings_bench(*bench);
  register_growth_bench(*bench);
}

}  // namespace cl::cli
