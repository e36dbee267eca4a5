// Helpers shared by the benchmark commands.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "wallet/keys.h"
#include "wallet/op.h"

namespace cl::cli {

using BenchClock = std::chrono::steady_clock;

inline double seconds_since(BenchClock::time_point t0) {
  return std::chrono::duration<double>(BenchClock::now() - t0).count();
}

// Runs fn(i) for i in [0, n) on every core.
template <typename Fn>
void parallel_for(size_t n, Fn fn) {
  size_t threads = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (size_t i = t; i < n; i += threads) fn(i);
    });
  }
  for (auto& th : pool) th.join();
}

// Single-core Ed25519 verifications per second, measured over ~"seconds".
double measure_verify_per_sec(double seconds);
// Verifications per second with every core verifying at once (the machine's
// real ceiling: on shared or SMT cores it is below cores × one core's rate).
double measure_verify_all_cores(double seconds);

// A 128-bit id from a counter and a tag byte.
Id128 numbered_id(uint64_t n, uint8_t tag);

// A deterministic key pair numbered n (bench wallets share a pool of keys).
KeyPair seeded_key(uint64_t n);

// Ids unique to one run of a benchmark against a long-lived ledger (wallets
// and op ids must never collide with an earlier run's): the tag byte, 6
// random bytes of this run, and the counter n.
class RunIds {
 public:
  RunIds();
  Id128 id(uint8_t tag, uint64_t n) const;
  // The run's random bytes in hex (e.g. to make payout references unique).
  std::string hex() const;

 private:
  std::array<uint8_t, 6> run_{};
};

// The wallets and op ids of one HTTP benchmark run against a live chain:
// ids unique to the run (RunIds), riders, transit operators and one agency,
// a pool of 256 deterministic keys the wallets share, and fresh op bodies.
class BenchCity {
 public:
  explicit BenchCity(std::string chain);
  Id128 id(uint8_t tag, uint64_t n) const { return run_.id(tag, n); }
  WalletId rider(uint64_t n) const { return id(0x0A, n); }
  WalletId transit(uint64_t n) const { return id(0x0B, n); }
  WalletId agency() const { return id(0x0C, 0); }
  const KeyPair& key_of(uint64_t wallet_n) const { return keys_[wallet_n % keys_.size()]; }
  const KeyPair& agency_key() const { return keys_[7]; }
  const std::string& chain() const { return chain_; }
  const RunIds& run_ids() const { return run_; }
  // An op body of type "t" on this chain with a fresh id.
  OpBody body(OpType t);

 private:
  std::string chain_;
  RunIds run_;
  std::vector<KeyPair> keys_;
  uint64_t next_op_ = 0;
};

// q-quantile (0..1) of sorted values; 0 if empty.
double quantile(const std::vector<double>& sorted, double q);

// A deterministic bench chain: authorities, node keys, a pool of wallet keys,
// and the signed ops of a small city (transit operators, funded riders, fares).
struct BenchWorld {
  static constexpr uint64_t kOperators = 10;
  KeyPair issuer, registrar;
  std::vector<KeyPair> nodes;  // node i+1's key
  std::vector<KeyPair> keys;   // shared by the wallets
  std::string genesis_json;
  uint64_t next_op = 0;

  BenchWorld(size_t node_count, size_t key_count);
  // Open kOperators transit operators and "riders" riders, fund each rider.
  std::vector<Envelope> setup(uint64_t riders);
  // "n" signed fares from random riders to random operators.
  std::vector<Envelope> fares(uint64_t n, uint64_t riders, uint64_t tap_at, std::mt19937_64& rng);
};

}  // namespace cl::cli
