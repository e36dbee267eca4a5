// Crash safety of the ledger store (DESIGN §9): a child process applies
// random batches with sync on and is killed with SIGKILL at a random moment;
// the store it leaves must open, pass its full check, hold every batch the
// child acknowledged, and equal a signature-verified replay of its own journal.
//
// Some runs start on a fresh directory, others resume the previous run's
// (killed) directory, so recovery of recovered stores is exercised too.
// The seed is printed; CL_SEED=<seed> reproduces a run's choices (the kill
// moments are real time, so not the exact kill points), and
// CL_CRASH_ITERATIONS=<n> changes the number of kills (default kIterationsDefault).
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ledger/replay.h"
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"

#ifndef CL_CRASH_CHILD
#error "CL_CRASH_CHILD must name the ledger_crash_child executable"
#endif

namespace cl::test {
namespace {

constexpr uint64_t kSeedDefault = 0xc7a5'4b0d'9e11;
constexpr uint64_t kIterationsDefault = 24;
constexpr uint64_t kKillAfterMsMin = 20;
constexpr uint64_t kKillAfterMsMax = 300;
constexpr uint64_t kSlowMachineStretchMax = 16;
// A directory is resumed at most this many times in a row, which bounds
// the journal each replay re-verifies.
constexpr int kRunsPerDirMax = 4;

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

// What one child run reported and how it ended.
struct ChildRun {
  int wait_status = 0;
  uint64_t acked_size = 0;  // journal size after the last acknowledged batch
  Hash acked_root{};
  uint64_t acks = 0;
};

// Reads whatever the pipe holds now (or until EOF, when "to_eof").
void drain(int fd, std::string* out, bool to_eof) {
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      if (!to_eof) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return;  // EOF, or (not to_eof) nothing more for now
  }
}

// Spawns the child on "dir", lets it run for "run_ms", kills it with
// SIGKILL and collects its acknowledgements.
ChildRun run_and_kill(const std::string& dir, uint64_t child_seed, uint64_t run_ms, bool raft_wal) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string seed_arg = std::to_string(child_seed);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const char* argv[] = {CL_CRASH_CHILD, dir.c_str(), seed_arg.c_str(), raft_wal ? "raft-wal" : nullptr, nullptr};
    ::execv(CL_CRASH_CHILD, const_cast<char* const*>(argv));
    ::_exit(127);
  }
  ::close(fds[1]);
  // Drain the pipe while waiting, so the child never blocks on a full pipe.
  std::string acks;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(run_ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0 && (p.revents & POLLIN)) drain(fds[0], &acks, /*to_eof=*/false);
    else if (r > 0) break;  // POLLHUP: the child is gone already
  }
  ::kill(pid, SIGKILL);
  ChildRun run;
  while (::waitpid(pid, &run.wait_status, 0) < 0 && errno == EINTR) {
  }
  drain(fds[0], &acks, /*to_eof=*/true);
  ::close(fds[0]);
  std::istringstream lines(acks);
  std::string word, root_hex;
  uint64_t size = 0;
  // Only complete lines count: the kill may cut the last one short.
  std::string line;
  while (std::getline(lines, line)) {
    if (lines.eof()) break;  // no trailing newline: a torn write
    std::istringstream in(line);
    REQUIRE_MESSAGE((in >> word >> size >> root_hex && word == "ack"), "bad acknowledgement line: ", line);
    REQUIRE(hex_decode(root_hex, run.acked_root));
    REQUIRE(size >= run.acked_size);
    run.acked_size = size;
    ++run.acks;
  }
  return run;
}

// Every wallet id an op of the journal names.
std::set<WalletId> wallets_in_journal(const Ledger& l) {
  std::set<WalletId> ids;
  uint64_t size = l.head().size;
  for (uint64_t from = 0; from < size; from += kReadEntriesMax) {
    auto page = l.journal(from, kReadEntriesMax);
    REQUIRE_MESSAGE(page.is_ok(), page.status().to_string());
    for (const auto& e : *page) {
      auto doc = parse_json_strict(e.bytes);
      REQUIRE_MESSAGE(doc.is_ok(), doc.status().to_string());
      const Json& body = (*doc)["op"]["body"];
      for (const char* field : {"wallet", "from", "to"})
        if (body.contains(field)) ids.insert(*id_from_hex(body[field].get<std::string>()));
    }
  }
  return ids;
}

bool same_state(const WalletState& a, const WalletState& b) {
  return a.kind == b.kind && a.status == b.status && a.key == b.key && a.balance == b.balance &&
         a.max_balance == b.max_balance;
}

// The recovered store in "dir" opens, passes every check, holds every
// acknowledged batch, and equals a replay of its own journal.
void check_recovered(const std::string& dir, const ChildRun& run, bool raft_wal) {
  LedgerOptions options;
  options.sync = false;
  options.raft_log_is_wal = raft_wal;
  options.verify_supply_on_open = true;
  auto opened = Ledger::open(dir, test_genesis(), options);
  REQUIRE_MESSAGE(opened.is_ok(), "the killed child's store does not open: ", opened.status().to_string());
  std::unique_ptr<Ledger> l = std::move(*opened);
  CHECK(l->check(/*full=*/true).to_string() == "ok");
  LedgerHead head = l->head();

  // Every acknowledged batch survived, unchanged.
  REQUIRE(head.size >= run.acked_size);
  if (run.acked_size > 0) {
    auto root = l->root_at(run.acked_size);
    REQUIRE(root.is_ok());
    CHECK_MESSAGE(*root == run.acked_root, "the root at the acknowledged size changed");
  }

  // Σ balances over every wallet the journal names = issued − redeemed.
  std::set<WalletId> ids = wallets_in_journal(*l);
  std::vector<WalletId> id_list(ids.begin(), ids.end());
  CHECK(sum_balances(*l, id_list) == head.supply.outstanding());

  // A signature-verified replay of the journal reaches the same state.
  TempDir replay_dir;
  auto target = open_ledger(replay_dir.sub("replay"));
  Status s = replay_ledger(*l, target.get(), /*verify_signatures=*/true);
  REQUIRE_MESSAGE(s.is_ok(), s.to_string());
  LedgerHead th = target->head();
  CHECK(th.size == head.size);
  CHECK(th.root == head.root);
  // A replay sees entries only: batches that journaled nothing advanced the
  // original's last_time but leave no trace, so the replay's may be older.
  CHECK(th.last_time <= head.last_time);
  if (head.size > 0) CHECK(th.last_time == l->journal(head.size - 1, 1)->at(0).time);
  CHECK(th.supply.issued == head.supply.issued);
  CHECK(th.supply.redeemed == head.supply.redeemed);
  size_t differing = 0;
  for (const auto& id : id_list) {
    auto a = l->wallet(id);
    auto b = target->wallet(id);
    REQUIRE(a.is_ok());
    REQUIRE(b.is_ok());
    bool same = a->has_value() && b->has_value() && same_state(**a, **b);
    if (!same && ++differing <= 3) FAIL_CHECK("wallet ", id_hex(id), " differs from its replay");
  }
  CHECK(differing == 0);
}

void kill_loop(bool raft_wal) {
  const uint64_t seed = env_u64("CL_SEED", kSeedDefault);
  const uint64_t iterations = env_u64("CL_CRASH_ITERATIONS", kIterationsDefault);
  MESSAGE("seed ", seed, " (CL_SEED to reproduce), ", iterations, " kills");
  INFO("seed ", seed);
  std::mt19937_64 rng(seed);
  auto below = [&](uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng); };

  TempDir root;
  std::string dir;
  int runs_in_dir = 0, fresh_dirs = 0;
  uint64_t acks_total = 0, entries_max = 0, kills_before_first_ack = 0;
  // Kill windows are stretched (up to kSlowMachineStretchMax times) while no
  // run has acknowledged anything yet: on a loaded machine, or under the
  // sanitizers, a child may need longer than the window to open its store,
  // and a loop of kills that all land before the first acknowledgement
  // would check nothing that was acknowledged.
  uint64_t stretch = 1;
  for (uint64_t i = 0; i < iterations; ++i) {
    if (dir.empty() || runs_in_dir == kRunsPerDirMax || below(3) == 0) {
      dir = root.sub("store-" + std::to_string(i));
      runs_in_dir = 0;
      ++fresh_dirs;
    }
    ++runs_in_dir;
    uint64_t child_seed = rng();
    uint64_t run_ms = stretch * (kKillAfterMsMin + below(kKillAfterMsMax - kKillAfterMsMin + 1));
    INFO("kill ", i, ": ", dir, " (run ", runs_in_dir, " there), child seed ", child_seed, ", killed after ", run_ms,
         " ms");
    ChildRun run = run_and_kill(dir, child_seed, run_ms, raft_wal);
    bool killed = WIFSIGNALED(run.wait_status) && WTERMSIG(run.wait_status) == SIGKILL;
    REQUIRE_MESSAGE(killed, "the child ended before the kill (wait status ", run.wait_status, "; see its stderr)");
    check_recovered(dir, run, raft_wal);
    acks_total += run.acks;
    kills_before_first_ack += run.acks == 0;
    entries_max = std::max(entries_max, run.acked_size);
    if (acks_total == 0) stretch = std::min(stretch * 2, kSlowMachineStretchMax);
  }
  MESSAGE(iterations, " kills (", kills_before_first_ack, " before the run's first acknowledgement; windows stretched ",
          stretch, "x), ", fresh_dirs,
          " fresh stores, ", acks_total, " acknowledged batches, largest acknowledged journal ", entries_max,
          " entries");
  CHECK(acks_total > 0);
}

TEST_CASE("a ledger killed with SIGKILL at random moments reopens consistent and equal to a replay of its journal") {
  kill_loop(/*raft_wal=*/false);
}

TEST_CASE("a replica's ledger (the Raft log is its WAL) killed at random moments keeps every batch durable_source_index covered") {
  // No WAL: the kill loses every batch not flushed yet (the Raft log would
  // re-apply them); what durable_source_index() reported must survive, and
  // the store must be consistent and equal to a replay of its journal.
  kill_loop(/*raft_wal=*/true);
}

}  // namespace
}  // namespace cl::test
