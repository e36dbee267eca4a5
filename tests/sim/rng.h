// The simulator's deterministic random source (splitmix64).  Everything the
// scheduler decides comes from one of these, seeded from the run's seed, so a
// seed reproduces a run exactly.
#pragma once

#include <cstdint>

namespace cl::sim {

class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n); 0 if n == 0.
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) { return lo + below(hi - lo + 1); }
  // True with probability permille / 1000.
  bool chance(uint64_t permille) { return below(1000) < permille; }

 private:
  uint64_t state_;
};

// Derives an independent seed from a seed and a few labels.
inline uint64_t mix_seed(uint64_t seed, uint64_t a, uint64_t b = 0) {
  Rng r(seed ^ (a * 0xD1B54A32D192ED03ull) ^ (b * 0x8CB92BA72F3D8DD7ull));
  return r.next();
}

}  // namespace cl::sim
