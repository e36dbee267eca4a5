// ledger_crash_child <dir> <seed> [raft-wal]: the victim of tests/crash/crash_test.cpp.
//
// With "raft-wal" the ledger is a replica's (LedgerOptions::raft_log_is_wal:
// no WAL of its own, sync off), each batch carries the next source index,
// and a batch is acknowledged only once durable_source_index() covers it,
// as a replica's Raft log may then drop it.
//
// Opens the ledger in <dir> (LedgerOptions::sync = true) for the test genesis
// and applies random batches of 1..kBatchOpsMax fares, transfers and issues,
// valid and invalid, over kWallets wallets, forever, until it is killed.  On
// an empty ledger it first opens and funds the wallets; on a ledger that
// already has entries it continues from the stored wallet states.  Each
// batch runs at ledger time head().last_time + 1.
//
// After each apply() returns (the batch is durable) it writes one line
// "ack <size> <root hex>\n" to stdout, which the test reads through a pipe:
// every acknowledged batch must survive the kill.  It writes no files of its
// own.  Exits non-zero, with the reason on stderr, on any unexpected error.
#define DOCTEST_CONFIG_DISABLE  // only for the fixture's genesis and keys
#include "tests/unit/fixture.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <vector>

#include "common/hex.h"
#include "ledger/ledger.h"

namespace cl::crash {
namespace {

constexpr size_t kWallets = 300;
constexpr size_t kTransitWallets = 10;  // wallets [0, kTransitWallets) are transit operators
constexpr size_t kBatchOpsMax = 200;
constexpr size_t kRecentOpsMax = 256;  // ops remembered for exact replays

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ledger_crash_child: %s\n", what.c_str());
  std::exit(3);
}

void write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("cannot write the acknowledgement");
    done += static_cast<size_t>(n);
  }
}

struct Wallet {
  WalletId id{};
  KeyPair key;
  WalletKind kind = WalletKind::kPersonal;
  std::optional<uint64_t> max_balance;
  bool exists = false;
  uint64_t balance = 0;  // as last applied (the child's own bookkeeping)
};

class Child {
 public:
  Child(Ledger* ledger, uint64_t seed) : l_(ledger) {
    // Mix the journal size into the seed so that a resumed run draws new op ids.
    rng_.seed(seed ^ (ledger->head().size * 0x9e3779b97f4a7c15ull));
    for (size_t i = 0; i < kWallets; ++i) {
      Wallet w;
      w.id = test::make_id(i + 1, 0xc4);
      std::array<uint8_t, 32> key_seed{};
      key_seed[0] = 0xc4;
      key_seed[30] = static_cast<uint8_t>(i >> 8);
      key_seed[31] = static_cast<uint8_t>(i);
      w.key = key_pair_from_seed(key_seed);
      w.kind = i < kTransitWallets ? WalletKind::kTransit : WalletKind::kPersonal;
      if (i % 10 == 5) w.max_balance = 200'000;
      auto stored = l_->wallet(w.id);
      if (!stored) die("read wallet: " + stored.status().to_string());
      if (stored->has_value()) {
        w.exists = true;
        w.balance = (*stored)->balance;
      }
      wallets_.push_back(std::move(w));
    }
  }

  // Opens and funds every wallet the store does not hold yet (all of them on
  // a fresh ledger: one atomic batch, so either all exist or none).
  void open_missing() {
    std::vector<Envelope> ops;
    for (const Wallet& w : wallets_) {
      if (w.exists) continue;
      OpBody b = body(OpType::kOpenWallet);
      b.wallet = w.id;
      b.key = w.key.public_key;
      b.kind = w.kind;
      b.max_balance = w.max_balance;
      ops.push_back(sign_envelope(b, {&test::authorities().registrar, &w.key}));
      OpBody i = body(OpType::kIssue);
      i.to = w.id;
      i.amount = 100'000;
      ops.push_back(sign_envelope(i, {&test::authorities().issuer}));
    }
    if (!ops.empty()) apply(ops);
  }

  void run_forever() {
    for (;;) {
      std::vector<Envelope> ops;
      // One batch in eight journals nothing (only a replay of the last op
      // or nothing at all): a crash right after it must still reopen.
      if (below(8) == 0) {
        if (!last_ops_.empty()) ops.push_back(last_ops_.back());
        apply(ops);
        continue;
      }
      size_t n = 1 + below(kBatchOpsMax);
      while (ops.size() < n) ops.push_back(next_op());
      apply(ops);
    }
  }

 private:
  uint64_t below(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  OpBody body(OpType type) {
    OpBody b;
    b.chain = l_->genesis().chain;
    b.id[0] = 0xc5;
    for (size_t k = 1; k < b.id.size(); ++k) b.id[k] = static_cast<uint8_t>(rng_());
    b.type = type;
    return b;
  }

  size_t pick() { return below(kWallets); }
  size_t pick_rider() { return kTransitWallets + below(kWallets - kTransitWallets); }
  size_t pick_unlimited() {
    for (;;) {
      size_t i = pick();
      if (!wallets_[i].max_balance) return i;
    }
  }

  // Mostly affordable; sometimes more than the balance (insufficient_funds).
  uint64_t amount_for(size_t from) {
    uint64_t balance = wallets_[from].balance;
    if (balance == 0 || below(100) < 10) return balance + 1 + below(1000);
    return 1 + below(balance / 4 + 1);
  }

  Envelope issue(size_t to, uint64_t amount) {
    OpBody b = body(OpType::kIssue);
    b.to = wallets_[to].id;
    b.amount = amount;
    return remember(sign_envelope(b, {&test::authorities().issuer}));
  }

  Envelope next_op() {
    uint64_t r = below(100);
    if (r < 5 && !recent_.empty()) return recent_[below(recent_.size())];  // exact replay
    if (r < 15) return issue(pick(), 1 + below(150'000));                  // may exceed a limit
    bool fare = r < 65;
    OpBody b = body(fare ? OpType::kFare : OpType::kTransfer);
    size_t from = pick_rider();
    size_t to = fare ? below(kTransitWallets) : pick();  // a transfer may go to itself
    b.from = wallets_[from].id;
    b.to = wallets_[to].id;
    b.amount = fare ? 1 + below(6'000) : amount_for(from);
    if (fare) {
      b.gate = "gate-" + std::to_string(below(64));
      b.tap_at = l_->head().last_time;
    }
    const KeyPair* key = &wallets_[from].key;
    if (below(100) < 4) key = &wallets_[(from + 1) % kWallets].key;  // not_authorized
    if (below(100) < 2) b.to = test::make_id(kWallets + 1 + below(10), 0xc4);  // unknown_wallet
    return remember(sign_envelope(b, {key}));
  }

  Envelope remember(Envelope env) {
    if (recent_.size() == kRecentOpsMax) recent_.pop_front();
    recent_.push_back(env);
    return env;
  }

  Wallet* find(const WalletId& id) {
    for (auto& w : wallets_)
      if (w.id == id) return &w;
    return nullptr;
  }

  // Applies one batch at head().last_time + 1, updates the bookkeeping from
  // the outcomes and acknowledges the durable batch on stdout.
  void apply(const std::vector<Envelope>& ops) {
    uint64_t source = raft_wal_ ? l_->head().source_index + 1 : 0;
    auto out = l_->apply(ops, l_->head().last_time + 1, source);
    if (!out) die("apply: " + out.status().to_string());
    for (size_t k = 0; k < ops.size(); ++k) {
      const OpOutcome& o = (*out)[k];
      if (o.code != Code::kOk || o.receipt.replay) continue;
      const OpBody& b = ops[k].body;
      switch (b.type) {
        case OpType::kOpenWallet: find(b.wallet)->exists = true; break;
        case OpType::kIssue: find(b.to)->balance += b.amount; break;
        default:
          find(b.from)->balance -= b.amount;
          find(b.to)->balance += b.amount;
          break;
      }
    }
    if (!ops.empty()) last_ops_ = ops;
    LedgerHead h = l_->head();
    if (!raft_wal_) {
      write_all(STDOUT_FILENO, "ack " + std::to_string(h.size) + " " + hex_encode(h.root) + "\n");
      return;
    }
    pending_.push_back({h.source_index, "ack " + std::to_string(h.size) + " " + hex_encode(h.root) + "\n"});
    auto durable = l_->durable_source_index();
    if (!durable) die("durable_source_index: " + durable.status().to_string());
    while (!pending_.empty() && pending_.front().first <= *durable) {
      write_all(STDOUT_FILENO, pending_.front().second);
      pending_.pop_front();
    }
  }

 public:
  bool raft_wal_ = false;

 private:
  std::deque<std::pair<uint64_t, std::string>> pending_;  // raft-wal: (source index, ack line) not yet durable

  Ledger* l_;
  std::vector<Envelope> last_ops_;  // the last non-empty batch, replayed to make no-entry batches
  std::mt19937_64 rng_;
  std::vector<Wallet> wallets_;
  std::deque<Envelope> recent_;
};

}  // namespace
}  // namespace cl::crash

int main(int argc, char** argv) {
  const bool raft_wal = argc == 4 && std::string(argv[3]) == "raft-wal";
  if (argc != 3 && !raft_wal) {
    std::fprintf(stderr, "usage: ledger_crash_child <dir> <seed> [raft-wal]\n");
    return 2;
  }
  auto genesis = cl::Genesis::parse(cl::test::test_genesis_json());
  if (!genesis) cl::crash::die("genesis: " + genesis.status().to_string());
  cl::LedgerOptions options;
  options.sync = !raft_wal;
  options.raft_log_is_wal = raft_wal;
  options.raft_flush_lag = 5;  // flush often: a run lasts only 20-300 ms
  auto ledger = cl::Ledger::open(argv[1], *genesis, options);
  if (!ledger) cl::crash::die("open: " + ledger.status().to_string());
  cl::crash::Child child(ledger->get(), std::strtoull(argv[2], nullptr, 0));
  child.raft_wal_ = raft_wal;
  child.open_missing();
  child.run_forever();
}
