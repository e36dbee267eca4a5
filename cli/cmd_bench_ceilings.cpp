// `cityledger bench ceilings`: the physical ceilings of this machine in this
// run, which every other figure should be read against: Ed25519 verify/s with
// every core verifying at once (what a node can admit at most), and synced
// RocksDB writes (what group commit can make durable): batches of 1,000 puts
// with WriteOptions.sync, and single synced puts (the fsync floor).
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "wallet/jcs.h"

namespace cl::cli {
namespace {

struct CeilingsOptions {
  double seconds = 3;
  std::string dir;
  bool json = false;
};

constexpr size_t kBatchPuts = 1000;
constexpr size_t kValueBytes = 200;

struct SyncedWrites {
  uint64_t batches = 0;
  double seconds = 0;
  std::vector<double> batch_ms;  // sorted
  double per_sec() const { return seconds > 0 ? static_cast<double>(batches) / seconds : 0; }
};

// Writes batches of "puts" puts with sync=true for ~"seconds" seconds.
Result<SyncedWrites> synced_writes(rocksdb::DB* db, size_t puts, double seconds, std::mt19937_64& rng) {
  SyncedWrites w;
  rocksdb::WriteOptions wo;
  wo.sync = true;
  std::string value(kValueBytes, '\0');
  auto t0 = BenchClock::now();
  while (seconds_since(t0) < seconds) {
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < puts; ++i) {
      // Random-ish keys and values (incompressible, like hashes and signatures).
      uint64_t k[2] = {rng(), rng()};
      for (size_t b = 0; b < value.size(); b += 8) {
        uint64_t x = rng();
        std::memcpy(value.data() + b, &x, std::min<size_t>(8, value.size() - b));
      }
      batch.Put(rocksdb::Slice(reinterpret_cast<const char*>(k), sizeof k), value);
    }
    auto tb = BenchClock::now();
    rocksdb::Status s = db->Write(wo, &batch);
    if (!s.ok()) return Status::error("io", "RocksDB write: " + s.ToString());
    w.batch_ms.push_back(seconds_since(tb) * 1000);
    ++w.batches;
  }
  w.seconds = seconds_since(t0);
  std::sort(w.batch_ms.begin(), w.batch_ms.end());
  return w;
}

void run_ceilings(const CeilingsOptions& o) {
  crypto_init();
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::cerr << "bench ceilings: Ed25519 verify, every core at once (" << o.seconds << " s)...\n";
  double verify_all = measure_verify_all_cores(o.seconds);
  std::cerr << "bench ceilings: Ed25519 verify, one core alone (" << o.seconds << " s)...\n";
  double verify_one = measure_verify_per_sec(o.seconds);

  // A fresh database in a directory of its own, removed afterwards.
  std::filesystem::path base = o.dir.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(o.dir);
  std::string dir = (base / ("cityledger-ceilings-" + std::to_string(::getpid()))).string();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  rocksdb::Options ro;
  ro.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status st = rocksdb::DB::Open(ro, dir, &raw);
  if (!st.ok()) {
    std::cerr << "error: open RocksDB in " << dir << ": " << st.ToString() << "\n";
    return set_exit_code(1);
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  std::mt19937_64 rng(99);
  std::cerr << "bench ceilings: synced RocksDB batches of " << kBatchPuts << " puts (" << o.seconds << " s) in "
            << dir << "...\n";
  auto batches = synced_writes(db.get(), kBatchPuts, o.seconds, rng);
  std::cerr << "bench ceilings: single synced puts (" << std::min(o.seconds, 2.0) << " s)...\n";
  auto singles = batches ? synced_writes(db.get(), 1, std::min(o.seconds, 2.0), rng) : batches;
  db.reset();
  std::filesystem::remove_all(dir, ec);
  if (!batches || !singles) {
    std::cerr << "error: " << (!batches ? batches : singles).status().to_string() << "\n";
    return set_exit_code(1);
  }
  double ops = batches->per_sec() * kBatchPuts;
  double p50 = quantile(batches->batch_ms, 0.5), p99 = quantile(batches->batch_ms, 0.99);
  double single_p50 = quantile(singles->batch_ms, 0.5);

  if (o.json) {
    std::cout << Json{{"benchmark", "ceilings"},
                      {"cores", cores},
                      {"seconds", o.seconds},
                      {"verify_per_sec_all_cores", verify_all},
                      {"verify_per_sec_per_core", verify_all / cores},
                      {"verify_per_sec_one_core_alone", verify_one},
                      {"rocksdb_dir", base.string()},
                      {"rocksdb_batch_puts", kBatchPuts},
                      {"rocksdb_value_bytes", kValueBytes},
                      {"rocksdb_synced_batches_per_sec", batches->per_sec()},
                      {"rocksdb_synced_ops_per_sec", ops},
                      {"rocksdb_batch_ms_p50", p50},
                      {"rocksdb_batch_ms_p99", p99},
                      {"rocksdb_synced_single_puts_per_sec", singles->per_sec()},
                      {"rocksdb_single_put_ms_p50", single_p50}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("ceilings of this machine (%u cores), %.1f s per measurement\n", cores, o.seconds);
  std::printf("  Ed25519 verify/s, all cores at once   %10.0f  (%.0f per core)\n", verify_all, verify_all / cores);
  std::printf("  Ed25519 verify/s, one core alone      %10.0f\n", verify_one);
  std::printf("  RocksDB synced batches of %zu puts   %10.1f /s  = %.0f puts/s; batch ms p50 %.2f p99 %.2f\n",
              kBatchPuts, batches->per_sec(), ops, p50, p99);
  std::printf("  RocksDB single synced puts            %10.0f /s  (ms p50 %.3f: the fsync floor)\n",
              singles->per_sec(), single_p50);
}

}  // namespace

void register_ceilings_bench(CLI::App& bench) {
  auto o = std::make_shared<CeilingsOptions>();
  auto* c = bench.add_subcommand("ceilings", "this machine's ceilings: Ed25519 verify/s (all cores), synced RocksDB writes");
  c->add_option("--seconds", o->seconds, "seconds per measurement")->capture_default_str()->check(CLI::Range(0.1, 600.0));
  c->add_option("--dir", o->dir, "where the scratch RocksDB is created (default: the temp dir); removed after");
  c->add_flag("--json", o->json, "print one JSON object");
  c->callback([o] { run_ceilings(*o); });
}

}  // namespace cl::cli
