// Shared test fixture: temporary directories, deterministic keys, a demo
// genesis and builders for signed ops.  Every ledger test starts from here.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/hex.h"
#include "ledger/genesis.h"
#include "ledger/ledger.h"
#include "wallet/keys.h"
#include "wallet/op.h"

namespace cl::test {

// A fresh directory under $TMPDIR, removed when destroyed.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    auto base = std::filesystem::temp_directory_path() /
                ("cl-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(base);
    std::filesystem::create_directories(base);
    path_ = base.string();
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The key pair whose seed is 32 bytes of "b".
inline KeyPair seed_key(uint8_t b) {
  std::array<uint8_t, 32> seed{};
  seed.fill(b);
  return key_pair_from_seed(seed);
}

// A 128-bit id from a counter (distinct for distinct n) and a tag byte.
inline Id128 make_id(uint64_t n, uint8_t tag = 0) {
  Id128 id{};
  id[0] = tag;
  for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<uint8_t>(n >> (8 * i));
  return id;
}

// Keys of the test chain: registrar 0x01, issuer 0x03, node key 0x04 (as in
// the design vectors), plus a second registrar 0x05.
struct Authorities {
  KeyPair registrar = seed_key(0x01);
  KeyPair registrar2 = seed_key(0x05);
  KeyPair issuer = seed_key(0x03);
  KeyPair node = seed_key(0x04);
};

inline const Authorities& authorities() {
  static const Authorities a;
  return a;
}

inline std::string test_genesis_json(const std::string& chain = "msk-demo") {
  const auto& a = authorities();
  return "{\"chain\":\"" + chain + "\",\"issuer\":\"" + hex_encode(a.issuer.public_key) + "\",\"registrars\":[\"" +
         hex_encode(a.registrar.public_key) + "\",\"" + hex_encode(a.registrar2.public_key) +
         "\"],\"nodes\":[{\"id\":1,\"key\":\"" + hex_encode(a.node.public_key) + "\"}]}";
}

inline Genesis test_genesis(const std::string& chain = "msk-demo") {
  auto g = Genesis::parse(test_genesis_json(chain));
  REQUIRE_MESSAGE(g.is_ok(), g.status().to_string());
  return *g;
}

// Builds signed ops against the test chain with unique op ids.
class OpFactory {
 public:
  explicit OpFactory(std::string chain = "msk-demo", uint8_t id_tag = 0xEE) : chain_(std::move(chain)), tag_(id_tag) {}

  OpBody body(OpType type) {
    OpBody b;
    b.chain = chain_;
    b.id = make_id(next_++, tag_);
    b.type = type;
    return b;
  }

  Envelope open_wallet(const WalletId& w, const KeyPair& owner, WalletKind kind = WalletKind::kPersonal,
                       std::optional<uint64_t> max_balance = std::nullopt) {
    OpBody b = body(OpType::kOpenWallet);
    b.wallet = w;
    b.key = owner.public_key;
    b.kind = kind;
    b.max_balance = max_balance;
    return sign_envelope(b, {&authorities().registrar, &owner});
  }
  Envelope issue(const WalletId& to, uint64_t amount) {
    OpBody b = body(OpType::kIssue);
    b.to = to;
    b.amount = amount;
    return sign_envelope(b, {&authorities().issuer});
  }
  Envelope redeem(const WalletId& from, const KeyPair& owner, uint64_t amount) {
    OpBody b = body(OpType::kRedeem);
    b.from = from;
    b.amount = amount;
    return sign_envelope(b, {&owner});
  }
  Envelope transfer(const WalletId& from, const KeyPair& owner, const WalletId& to, uint64_t amount) {
    OpBody b = body(OpType::kTransfer);
    b.from = from;
    b.to = to;
    b.amount = amount;
    return sign_envelope(b, {&owner});
  }
  Envelope fare(const WalletId& from, const KeyPair& owner, const WalletId& to, uint64_t amount,
                const std::string& gate = "gate-1") {
    OpBody b = body(OpType::kFare);
    b.from = from;
    b.to = to;
    b.amount = amount;
    b.gate = gate;
    b.tap_at = 1'700'000'000'000;
    return sign_envelope(b, {&owner});
  }
  Envelope payout(const WalletId& from, const KeyPair& agency, const WalletId& to, uint64_t amount,
                  const std::string& program, const std::string& reference) {
    OpBody b = body(OpType::kPayout);
    b.from = from;
    b.to = to;
    b.amount = amount;
    b.program = program;
    b.reference = reference;
    return sign_envelope(b, {&agency});
  }
  Envelope freeze(const WalletId& w, bool frozen = true) {
    OpBody b = body(frozen ? OpType::kFreeze : OpType::kUnfreeze);
    b.wallet = w;
    b.reason = "court order";
    return sign_envelope(b, {&authorities().registrar});
  }
  Envelope rotate_key(const WalletId& w, const KeyPair& new_key) {
    OpBody b = body(OpType::kRotateKey);
    b.wallet = w;
    b.key = new_key.public_key;
    return sign_envelope(b, {&authorities().registrar});
  }

 private:
  std::string chain_;
  uint8_t tag_;
  uint64_t next_ = 1;
};

// Opens a ledger in "dir" for the test genesis; fails the test on error.
inline std::unique_ptr<Ledger> open_ledger(const std::string& dir, LedgerOptions options = {}) {
  options.sync = false;  // tests that need fsync set it themselves
  auto l = Ledger::open(dir, test_genesis(), options);
  REQUIRE_MESSAGE(l.is_ok(), l.status().to_string());
  return std::move(*l);
}

// Applies one batch and returns its outcomes; fails the test on a Status error.
inline std::vector<OpOutcome> apply(Ledger& l, std::vector<Envelope> ops) {
  uint64_t time = l.head().last_time + 1000;
  auto r = l.apply(ops, time);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  return *r;
}

// Applies one op and returns its outcome.
inline OpOutcome apply_one(Ledger& l, Envelope op) { return apply(l, {std::move(op)}).at(0); }

// Σ balances of the given wallets.
inline uint64_t sum_balances(const Ledger& l, const std::vector<WalletId>& wallets) {
  uint64_t sum = 0;
  for (const auto& w : wallets) {
    auto s = l.wallet(w);
    REQUIRE(s.is_ok());
    if (s->has_value()) sum += (*s)->balance;
  }
  return sum;
}

inline uint64_t balance(const Ledger& l, const WalletId& w) {
  auto s = l.wallet(w);
  REQUIRE(s.is_ok());
  REQUIRE(s->has_value());
  return (*s)->balance;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

#ifdef CL_VECTORS_DIR
// The design's known-answer vectors (tests/vectors/design-vectors.json).
inline Json design_vectors() {
  std::ifstream in(CL_VECTORS_DIR "/design-vectors.json");
  REQUIRE(in.good());
  return Json::parse(in);
}
#endif

// The key pair whose libsodium secret key is "secret_hex" (seed ‖ public).
inline KeyPair key_from_secret_hex(const std::string& secret_hex) {
  auto secret = hex_decode_array<64>(secret_hex);
  REQUIRE(secret.has_value());
  std::array<uint8_t, 32> seed{};
  std::copy_n(secret->begin(), 32, seed.begin());
  KeyPair k = key_pair_from_seed(seed);
  REQUIRE(k.secret_key == *secret);
  return k;
}

}  // namespace cl::test
