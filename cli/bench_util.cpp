#include "cli/bench_util.h"

#include "common/check.h"

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

double quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

}  // namespace cl::cli
