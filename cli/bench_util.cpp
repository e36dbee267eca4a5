#include "cli/bench_util.h"

#include "common/check.h"
#include "common/hex.h"

namespace cl::cli {

double measure_verify_per_sec(double seconds) {
  KeyPair k = generate_key_pair();
  std::string msg(200, 'x');
  SignatureBytes sig = sign(k, msg);
  uint64_t n = 0;
  auto t0 = BenchClock::now();
  while (true) {
    for (int i = 0; i < 256; ++i) CL_CHECK(verify(k.public_key, msg, sig));
    n += 256;
    if (seconds_since(t0) >= seconds) break;
  }
  return static_cast<double>(n) / seconds_since(t0);
}

double measure_verify_all_cores(double seconds) {
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  std::vector<double> rates(cores);
  std::vector<std::thread> pool;
  for (unsigned c = 0; c < cores; ++c) pool.emplace_back([&, c] { rates[c] = measure_verify_per_sec(seconds); });
  for (auto& t : pool) t.join();
  double total = 0;
  for (double r : rates) total += r;
  return total;
}

Id128 numbered_id(uint64_t n, uint8_t tag) {
  Id128 id{};
  id[0] = tag;
  for (int i = 0; i < 8; ++i) id[15 - i] = static_cast<uint8_t>(n >> (8 * i));
  return id;
}

KeyPair seeded_key(uint64_t n) {
  std::array<uint8_t, 32> seed{};
  for (int i = 0; i < 8; ++i) seed[i] = static_cast<uint8_t>(n >> (8 * i));
  seed[31] = 0xBE;
  return key_pair_from_seed(seed);
}

RunIds::RunIds() {
  std::random_device rd;
  for (auto& b : run_) b = static_cast<uint8_t>(rd());
}

BenchCity::BenchCity(std::string chain) : chain_(std::move(chain)) {
  keys_.resize(256);
  parallel_for(keys_.size(), [&](size_t i) { keys_[i] = seeded_key(i); });
}

OpBody BenchCity::body(OpType t) {
  OpBody b;
  b.chain = chain_;
  b.id = id(0x01, next_op_++);
  b.type = t;
  return b;
}

Id128 RunIds::id(uint8_t tag, uint64_t n) const {
  Id128 x = numbered_id(n, tag);
  for (size_t i = 0; i < run_.size(); ++i) x[1 + i] = run_[i];
  return x;
}

std::string RunIds::hex() const { return hex_encode(std::span<const uint8_t>(run_.data(), run_.size())); }

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

BenchWorld::BenchWorld(size_t node_count, size_t key_count)
    : issuer(seeded_key(1'000'000'001)), registrar(seeded_key(1'000'000'002)) {
  for (size_t i = 0; i < node_count; ++i) nodes.push_back(seeded_key(1'000'000'003 + i));
  keys.resize(key_count);
  parallel_for(keys.size(), [&](size_t i) { keys[i] = seeded_key(i); });
  genesis_json = "{\"chain\":\"bench\",\"issuer\":\"" + hex_encode(issuer.public_key) + "\",\"registrars\":[\"" +
                 hex_encode(registrar.public_key) + "\"],\"nodes\":[";
  for (size_t i = 0; i < nodes.size(); ++i)
    genesis_json += std::string(i ? "," : "") + "{\"id\":" + std::to_string(i + 1) + ",\"key\":\"" +
                    hex_encode(nodes[i].public_key) + "\"}";
  genesis_json += "]}";
}

std::vector<Envelope> BenchWorld::setup(uint64_t riders) {
  auto body = [&](OpType t) {
    OpBody b;
    b.chain = "bench";
    b.id = numbered_id(next_op++, 0x0B);
    b.type = t;
    return b;
  };
  std::vector<OpBody> bodies;
  for (uint64_t w = 0; w < riders + kOperators; ++w) {
    OpBody b = body(OpType::kOpenWallet);
    b.wallet = numbered_id(w, 0x0A);
    b.key = keys[w % keys.size()].public_key;
    b.kind = w < kOperators ? WalletKind::kTransit : WalletKind::kPersonal;
    bodies.push_back(b);
  }
  for (uint64_t w = kOperators; w < riders + kOperators; ++w) {
    OpBody b = body(OpType::kIssue);
    b.to = numbered_id(w, 0x0A);
    b.amount = 1'000'000'000;
    bodies.push_back(b);
  }
  std::vector<Envelope> envs(bodies.size());
  parallel_for(bodies.size(), [&](size_t i) {
    const OpBody& b = bodies[i];
    envs[i] = b.type == OpType::kOpenWallet ? sign_envelope(b, {&registrar, &keys[i % keys.size()]})
                                             : sign_envelope(b, {&issuer});
  });
  return envs;
}

std::vector<Envelope> BenchWorld::fares(uint64_t n, uint64_t riders, uint64_t tap_at, std::mt19937_64& rng) {
  std::vector<OpBody> bodies(n);
  for (auto& b : bodies) {
    b.chain = "bench";
    b.id = numbered_id(next_op++, 0x0B);
    b.type = OpType::kFare;
    b.from = numbered_id(kOperators + rng() % riders, 0x0A);
    b.to = numbered_id(rng() % kOperators, 0x0A);
    b.amount = 5700;
    b.gate = "Охотный Ряд, турникет 7";
    b.tap_at = tap_at;
  }
  std::vector<Envelope> envs(n);
  parallel_for(n, [&](size_t i) {
    uint64_t w = 0;
    for (int k = 0; k < 8; ++k) w = (w << 8) | bodies[i].from[8 + k];
    envs[i] = sign_envelope(bodies[i], {&keys[w % keys.size()]});
  });
  return envs;
}

}  // namespace cl::cli
