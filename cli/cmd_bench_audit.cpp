// `cityledger bench audit`: how fast `cityledger audit` replays a journal,
// against the Ed25519 verify ceiling of this machine (all cores).  It writes
// a signed journal of --entries entries (riders opened and funded, then
// fares in batches of 1,000) as the NDJSON an export gives, plus its genesis
// and a checkpoint signed by 2 of 3 nodes, then audits it in process.
#include <sodium.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "cli/bench_util.h"
#include "cli/commands.h"
#include "common/check.h"
#include "common/hex.h"
#include "ledger/audit.h"
#include "ledger/merkle.h"

namespace cl::cli {
namespace {

// CPU seconds (user + system) this process has used, on all its threads.
double process_cpu_seconds() {
  rusage u{};
  CL_CHECK(getrusage(RUSAGE_SELF, &u) == 0);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) * 1e-6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

struct AuditBenchOptions {
  uint64_t entries = 1'000'000;
  uint64_t riders = 10'000;
  std::string dir;
  bool json = false;
};

void run_audit_bench(const AuditBenchOptions& o) {
  CL_CHECK(sodium_init() >= 0);
  std::string dir = o.dir;
  bool temp = dir.empty();
  if (temp) dir = (std::filesystem::temp_directory_path() / ("cityledger-bench-audit-" + std::to_string(::getpid()))).string();
  std::filesystem::create_directories(dir);

  // 1. A journal of o.entries entries, written through a real ledger.
  BenchWorld world(3, 1000);
  auto genesis = Genesis::parse(world.genesis_json);
  CL_CHECK(genesis.is_ok());
  {
    std::ofstream g(dir + "/genesis.json");
    g << world.genesis_json << "\n";
  }
  std::cerr << "bench audit: writing a " << o.entries << "-entry journal to " << dir << "/journal.ndjson...\n";
  LedgerOptions lo;
  lo.sync = false;
  std::filesystem::remove_all(dir + "/source");
  auto source = Ledger::open(dir + "/source", *genesis, lo);
  CL_CHECK_MSG(source.is_ok(), source.status().to_string().c_str());
  Ledger& src = **source;
  uint64_t time = 1'800'000'000'000;
  auto apply = [&](const std::vector<Envelope>& ops) {
    for (size_t i = 0; i < ops.size(); i += 1000) {
      size_t n = std::min<size_t>(1000, ops.size() - i);
      auto r = src.apply(std::span<const Envelope>(ops.data() + i, n), ++time);
      CL_CHECK_MSG(r.is_ok(), r.status().to_string().c_str());
      for (const auto& out : *r) CL_CHECK_MSG(out.code == Code::kOk, out.detail.c_str());
    }
  };
  uint64_t riders = std::min<uint64_t>(o.riders, std::max<uint64_t>(1, o.entries / 4));
  apply(world.setup(riders));
  std::mt19937_64 rng(42);
  while (src.head().size < o.entries) {
    uint64_t n = std::min<uint64_t>(100'000, o.entries - src.head().size);
    apply(world.fares(n, riders, time, rng));
  }
  {
    std::ofstream out(dir + "/journal.ndjson", std::ios::trunc);
    for (uint64_t from = 0; from < src.head().size; from += kReadEntriesMax) {
      auto page = src.journal(from, kReadEntriesMax);
      CL_CHECK(page.is_ok());
      for (const auto& e : *page) out << journal_line(e.bytes, e.leaf_hash) << "\n";
    }
    CL_CHECK(static_cast<bool>(out));
  }
  Checkpoint cp;
  cp.chain = genesis->chain;
  cp.tree_size = src.head().size;
  cp.root = src.head().root;
  cp.time = src.head().last_time;
  cp.signatures = {sign_checkpoint(cp, 1, world.nodes[0]), sign_checkpoint(cp, 2, world.nodes[1])};
  {
    std::ofstream c(dir + "/checkpoint.json");
    c << checkpoint_to_json(cp).dump() << "\n";
  }
  source->reset();
  std::filesystem::remove_all(dir + "/source");

  // 2. The audit, timed from the first line read to the checkpoint verified.
  std::cerr << "bench audit: auditing...\n";
  auto t0 = BenchClock::now();
  double cpu0 = process_cpu_seconds();
  auto auditor = Auditor::open(*genesis, AuditOptions{});
  CL_CHECK_MSG(auditor.is_ok(), auditor.status().to_string().c_str());
  std::ifstream in(dir + "/journal.ndjson");
  std::string line;
  Status s = Status::ok();
  while (s && std::getline(in, line)) s = (*auditor)->add_line(std::move(line));
  if (s) s = (*auditor)->finish();
  if (s) s = (*auditor)->check_checkpoint(cp);
  double seconds = seconds_since(t0);
  double cpu_seconds = process_cpu_seconds() - cpu0;
  CL_CHECK_MSG(s.is_ok(), s.to_string().c_str());
  uint64_t entries = (*auditor)->entries(), sigs = (*auditor)->signatures();
  auditor->reset();

  std::cerr << "bench audit: measuring Ed25519 verify rate...\n";
  double verify_1 = measure_verify_per_sec(2.0);
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  double ceiling = verify_1 * cores;
  double measured_all = measure_verify_all_cores(2.0);
  double sig_rate = sigs / seconds;
  // The audit's CPU time, and the part of it the signatures need at the
  // one-core verify rate.  On a shared machine the wall-clock ratio suffers
  // from other processes; this one shows what the audit itself spends: it is
  // the ratio an otherwise idle machine gives when the audit keeps every core busy.
  double verify_cpu = sigs / verify_1;
  double cpu_share = verify_cpu / cpu_seconds;
  double other_cpu_us = (cpu_seconds - verify_cpu) / static_cast<double>(entries) * 1e6;
  if (temp) std::filesystem::remove_all(dir);
  if (o.json) {
    std::cout << Json{{"benchmark", "audit"}, {"entries", entries}, {"signatures", sigs}, {"seconds", seconds},
                      {"entries_per_sec", entries / seconds}, {"signatures_per_sec", sig_rate},
                      {"verify_per_sec_per_core", verify_1}, {"cores", cores}, {"verify_ceiling_per_sec", ceiling},
                      {"signatures_over_ceiling", sig_rate / ceiling},
                      {"verify_all_cores_measured_per_sec", measured_all},
                      {"signatures_over_measured_all_cores", sig_rate / measured_all}, {"cpu_seconds", cpu_seconds},
                      {"cpu_us_per_entry_besides_verify", other_cpu_us}, {"verify_share_of_cpu", cpu_share}}
                     .dump()
              << "\n";
    return;
  }
  std::printf("audit benchmark: %llu entries (%llu signatures), journal and checkpoint verified\n",
              (unsigned long long)entries, (unsigned long long)sigs);
  std::printf("  time                     %.2f s\n", seconds);
  std::printf("  entries/s                %.0f\n", entries / seconds);
  std::printf("  signatures/s             %.0f\n", sig_rate);
  std::printf("  Ed25519 verify/s, 1 core %.0f; ceiling (%u cores) %.0f/s\n", verify_1, cores, ceiling);
  std::printf("  audit / verify ceiling   %.0f%%\n", 100.0 * sig_rate / ceiling);
  std::printf("  Ed25519 verify/s, all %u cores at once (measured) %.0f/s; audit / that %.0f%%\n", cores, measured_all,
              100.0 * sig_rate / measured_all);
  std::printf("  CPU time                 %.2f s: %.1f us/entry besides verifying; verify share %.0f%%\n", cpu_seconds,
              other_cpu_us, 100.0 * cpu_share);
  if (!temp)
    std::printf("  files                    %s/{journal.ndjson,genesis.json,checkpoint.json}\n", dir.c_str());
}

}  // namespace

void register_audit_bench(CLI::App& bench) {
  auto o = std::make_shared<AuditBenchOptions>();
  auto* cmd = bench.add_subcommand("audit", "audit replay speed vs the Ed25519 verify ceiling (all cores)");
  cmd->add_option("--entries", o->entries, "journal entries")->capture_default_str()->check(
      CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  cmd->add_option("--riders", o->riders, "rider wallets")->capture_default_str();
  cmd->add_option("--dir", o->dir, "keep journal.ndjson, genesis.json, checkpoint.json here (default: temporary)");
  cmd->add_flag("--json", o->json, "print one JSON object");
  cmd->callback([o] { run_audit_bench(*o); });
}

}  // namespace cl::cli
