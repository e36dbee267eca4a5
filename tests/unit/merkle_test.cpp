// RFC 9162 §2.1 Merkle trees: reference vectors, an independent naive MTH,
// PATH and PROOF, exhaustive proofs for every tree size 1..200 (every index,
// every pair of sizes), tampering, and frontier persistence.
#include <doctest/doctest.h>

#include <bit>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/sha256.h"
#include "ledger/merkle.h"

namespace {

using cl::Hash;
namespace merkle = cl::merkle;

// Every tree size 1..kSizeMax is checked exhaustively: all indices, all
// 1 <= m <= n pairs.  200 is not a power of two, so the largest trees have
// several incomplete right edges.
constexpr uint64_t kSizeMax = 200;

nlohmann::json merkle_vectors() {
  std::ifstream in(CL_VECTORS_DIR "/design-vectors.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in).at("merkle");
}

Hash hash_from_hex(const std::string& hex) {
  auto h = cl::hex_decode_array<32>(hex);
  REQUIRE(h.has_value());
  return *h;
}

std::vector<Hash> hashes_from_json(const nlohmann::json& list) {
  std::vector<Hash> out;
  for (const auto& hex : list) out.push_back(hash_from_hex(hex.get<std::string>()));
  return out;
}

// MTH straight from RFC 9162 §2.1.1, by recursion over the leaf list.
Hash naive_mth(std::span<const Hash> leaves) {
  if (leaves.empty()) return cl::sha256("");
  if (leaves.size() == 1) return leaves[0];
  size_t k = 1;
  while (k * 2 < leaves.size()) k *= 2;
  return merkle::node_hash(naive_mth(leaves.first(k)), naive_mth(leaves.subspan(k)));
}

// MTH(D[begin:begin+len]) from the naive recursion, memoised over the fixed
// leaf list so that the reference PATH and PROOF below stay cheap.
class NaiveTree {
 public:
  explicit NaiveTree(std::span<const Hash> leaves) : leaves_(leaves) {}

  Hash mth(uint64_t begin, uint64_t len) const {
    auto key = std::make_pair(begin, len);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    Hash h = naive_mth(leaves_.subspan(begin, len));
    cache_.emplace(key, h);
    return h;
  }

  // RFC 9162 §2.1.3.1 PATH(m, D[begin:begin+n]).
  std::vector<Hash> path(uint64_t m, uint64_t begin, uint64_t n) const {
    if (n == 1) return {};
    const uint64_t k = largest_power_below(n);
    std::vector<Hash> out;
    if (m < k) {
      out = path(m, begin, k);
      out.push_back(mth(begin + k, n - k));
    } else {
      out = path(m - k, begin + k, n - k);
      out.push_back(mth(begin, k));
    }
    return out;
  }

  // RFC 9162 §2.1.4.1 PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true).
  std::vector<Hash> proof(uint64_t m, uint64_t n) const { return subproof(m, 0, n, true); }

 private:
  static uint64_t largest_power_below(uint64_t n) {
    uint64_t k = 1;
    while (k * 2 < n) k *= 2;
    return k;
  }

  std::vector<Hash> subproof(uint64_t m, uint64_t begin, uint64_t n, bool whole) const {
    if (m == n) {
      if (whole) return {};
      return {mth(begin, n)};
    }
    const uint64_t k = largest_power_below(n);
    std::vector<Hash> out;
    if (m <= k) {
      out = subproof(m, begin, k, whole);
      out.push_back(mth(begin + k, n - k));
    } else {
      out = subproof(m - k, begin + k, n - k, false);
      out.push_back(mth(begin, k));
    }
    return out;
  }

  std::span<const Hash> leaves_;
  mutable std::map<std::pair<uint64_t, uint64_t>, Hash> cache_;
};

// In-memory node store fed by Frontier::append; counts reads.
class MemoryNodeReader : public merkle::NodeReader {
 public:
  void store(const std::vector<merkle::StoredNode>& nodes) {
    for (const auto& n : nodes) nodes_[{n.level, n.index}] = n.hash;
  }
  cl::Result<Hash> node(uint32_t level, uint64_t index) const override {
    ++reads_;
    auto it = nodes_.find({level, index});
    if (it == nodes_.end()) return cl::Status::error("not_found", "no such node");
    return it->second;
  }
  size_t node_count() const { return nodes_.size(); }
  uint64_t reads() const { return reads_; }
  void reset_reads() { reads_ = 0; }

 private:
  std::map<std::pair<uint32_t, uint64_t>, Hash> nodes_;
  mutable uint64_t reads_ = 0;
};

// A tree of kSizeMax synthetic leaves with every prefix's root recorded.
struct Fixture {
  std::vector<Hash> leaves;
  std::vector<Hash> roots;  // roots[n] = root of the first n leaves
  std::vector<merkle::Frontier> frontiers;
  MemoryNodeReader reader;
  std::unique_ptr<NaiveTree> naive;

  Fixture() {
    merkle::Frontier f;
    roots.push_back(f.root());
    frontiers.push_back(f);
    for (uint64_t i = 0; i < kSizeMax; ++i) {
      leaves.push_back(merkle::leaf_hash("leaf " + std::to_string(i)));
      std::vector<merkle::StoredNode> completed;
      f.append(leaves.back(), &completed);
      reader.store(completed);
      roots.push_back(f.root());
      frontiers.push_back(f);
    }
    naive = std::make_unique<NaiveTree>(leaves);
  }
};

// Shared across test cases; only the read counter ever changes.
Fixture& fixture() {
  static Fixture fixture_instance;
  return fixture_instance;
}

// Reads allowed for one proof: one per level plus one range decomposition.
uint64_t read_budget(uint64_t tree_size) { return 2 * static_cast<uint64_t>(std::bit_width(tree_size)) + 1; }

Hash flip_bit(Hash h, size_t bit) {
  h[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  return h;
}

}  // namespace

TEST_CASE("leaf, node and empty hashes follow RFC 9162 domain separation") {
  CHECK(merkle::empty_root() == cl::sha256(""));
  CHECK(merkle::leaf_hash("abc") == cl::sha256(std::string("\x00" "abc", 4)));
  Hash l = merkle::leaf_hash("l");
  Hash r = merkle::leaf_hash("r");
  std::string joined = "\x01";
  joined.append(reinterpret_cast<const char*>(l.data()), 32);
  joined.append(reinterpret_cast<const char*>(r.data()), 32);
  CHECK(merkle::node_hash(l, r) == cl::sha256(joined));
}

TEST_CASE("leaf hashes and roots for sizes 0..8 equal the RFC 6962 reference vectors") {
  const auto v = merkle_vectors();
  const auto data = v.at("leaf_data_hex");
  const auto expected_leaves = hashes_from_json(v.at("leaf_hashes"));
  const auto expected_roots = hashes_from_json(v.at("roots_by_size"));
  REQUIRE(expected_roots.size() == data.size() + 1);
  merkle::Frontier f;
  CHECK(f.root() == expected_roots[0]);
  for (size_t i = 0; i < data.size(); ++i) {
    auto bytes = cl::hex_decode_bytes(data[i].get<std::string>());
    REQUIRE(bytes.has_value());
    Hash leaf = merkle::leaf_hash(*bytes);
    CHECK(leaf == expected_leaves[i]);
    f.append(leaf, nullptr);
    CHECK(f.root() == expected_roots[i + 1]);
  }
}

TEST_CASE("vector inclusion and consistency paths are produced exactly and verify") {
  const auto v = merkle_vectors();
  const auto leaves = hashes_from_json(v.at("leaf_hashes"));
  const auto roots = hashes_from_json(v.at("roots_by_size"));
  MemoryNodeReader reader;
  merkle::Frontier f;
  for (const Hash& leaf : leaves) {
    std::vector<merkle::StoredNode> completed;
    f.append(leaf, &completed);
    reader.store(completed);
  }
  for (const auto& c : v.at("inclusion")) {
    const uint64_t index = c.at("index");
    const uint64_t size = c.at("tree_size");
    const auto expected = hashes_from_json(c.at("path"));
    auto path = merkle::inclusion_proof(reader, index, size);
    REQUIRE(path.is_ok());
    CHECK(*path == expected);
    CHECK(merkle::verify_inclusion(leaves[index], index, size, expected, roots[size]));
  }
  for (const auto& c : v.at("consistency")) {
    const uint64_t first = c.at("first");
    const uint64_t second = c.at("second");
    const auto expected = hashes_from_json(c.at("path"));
    auto path = merkle::consistency_proof(reader, first, second);
    REQUIRE(path.is_ok());
    CHECK(*path == expected);
    CHECK(merkle::verify_consistency(first, second, roots[first], roots[second], expected));
  }
}

TEST_CASE("frontier root equals the naive recursive MTH for every size 0..200") {
  Fixture& fx = fixture();
  for (uint64_t n = 0; n <= kSizeMax; ++n) {
    CAPTURE(n);
    CHECK(fx.roots[n] == naive_mth(std::span(fx.leaves).first(n)));
    CHECK(fx.frontiers[n].size() == n);
  }
}

TEST_CASE("append reports each complete subtree node exactly once, with its correct hash") {
  Fixture& fx = fixture();
  // Level l holds floor(n / 2^l) complete nodes: 2n - popcount(n) in all
  // (200 + 100 + 50 + 25 + 12 + 6 + 3 + 1 = 397 for 200 leaves).
  CHECK(fx.reader.node_count() == 2 * kSizeMax - static_cast<uint64_t>(std::popcount(kSizeMax)));
  for (uint32_t level = 0; level < static_cast<uint32_t>(std::bit_width(kSizeMax)); ++level) {
    const uint64_t width = uint64_t{1} << level;
    CHECK_FALSE(fx.reader.node(level, kSizeMax / width).is_ok());  // the incomplete node, if any, is absent
    for (uint64_t index = 0; index < kSizeMax / width; ++index) {
      auto node = fx.reader.node(level, index);
      REQUIRE(node.is_ok());
      CHECK(*node == naive_mth(std::span(fx.leaves).subspan(index * width, width)));
    }
  }
}

TEST_CASE("root_at and subtree_root match the frontier and the naive MTH") {
  Fixture& fx = fixture();
  for (uint64_t n = 0; n <= kSizeMax; ++n) {
    auto root = merkle::root_at(fx.reader, n);
    REQUIRE(root.is_ok());
    CHECK(*root == fx.roots[n]);
  }
  auto right_part = merkle::subtree_root(fx.reader, 32, 45);
  REQUIRE(right_part.is_ok());
  CHECK(*right_part == naive_mth(std::span(fx.leaves).subspan(32, 13)));
  auto right_of_200 = merkle::subtree_root(fx.reader, 128, 200);
  REQUIRE(right_of_200.is_ok());
  CHECK(*right_of_200 == naive_mth(std::span(fx.leaves).subspan(128, 72)));
  CHECK(merkle::subtree_root(fx.reader, 3, 5).status().code() == "invalid");
  CHECK(merkle::subtree_root(fx.reader, 5, 4).status().code() == "invalid");
  CHECK(merkle::root_at(fx.reader, kSizeMax + 1).status().code() == "not_found");
}

TEST_CASE("every inclusion proof for sizes 1..200 equals RFC 9162 PATH and verifies within O(log n) reads") {
  Fixture& fx = fixture();
  for (uint64_t n = 1; n <= kSizeMax; ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      CAPTURE(n);
      CAPTURE(i);
      fx.reader.reset_reads();
      auto path = merkle::inclusion_proof(fx.reader, i, n);
      REQUIRE(path.is_ok());
      CHECK(fx.reader.reads() <= read_budget(n));
      CHECK(*path == fx.naive->path(i, 0, n));
      CHECK(merkle::verify_inclusion(fx.leaves[i], i, n, *path, fx.roots[n]));
    }
  }
}

TEST_CASE("every consistency proof for 1 <= m <= n <= 200 equals RFC 9162 PROOF and verifies within O(log n) reads") {
  Fixture& fx = fixture();
  for (uint64_t n = 1; n <= kSizeMax; ++n) {
    for (uint64_t m = 1; m <= n; ++m) {
      CAPTURE(n);
      CAPTURE(m);
      fx.reader.reset_reads();
      auto path = merkle::consistency_proof(fx.reader, m, n);
      REQUIRE(path.is_ok());
      CHECK(fx.reader.reads() <= read_budget(n));
      CHECK(*path == fx.naive->proof(m, n));
      CHECK(merkle::verify_consistency(m, n, fx.roots[m], fx.roots[n], *path));
    }
  }
}

TEST_CASE("tampered inclusion proofs fail for every size 1..200 and index: flipped bit, dropped or extra element, wrong index or size") {
  Fixture& fx = fixture();
  for (uint64_t n = 1; n <= kSizeMax; ++n) {
    for (uint64_t i = 0; i < n; ++i) {
      CAPTURE(n);
      CAPTURE(i);
      const Hash& leaf = fx.leaves[i];
      const Hash& root = fx.roots[n];
      const std::vector<Hash> path = *merkle::inclusion_proof(fx.reader, i, n);
      for (size_t k = 0; k < path.size(); ++k) {
        auto bad = path;
        bad[k] = flip_bit(bad[k], (k * 37) % 256);
        CHECK_FALSE(merkle::verify_inclusion(leaf, i, n, bad, root));
      }
      if (!path.empty()) {
        auto dropped = path;
        dropped.pop_back();
        CHECK_FALSE(merkle::verify_inclusion(leaf, i, n, dropped, root));
      }
      auto extra = path;
      extra.push_back(fx.leaves[0]);
      CHECK_FALSE(merkle::verify_inclusion(leaf, i, n, extra, root));
      CHECK_FALSE(merkle::verify_inclusion(flip_bit(leaf, 0), i, n, path, root));
      CHECK_FALSE(merkle::verify_inclusion(leaf, n, n, path, root));
      if (n > 1) CHECK_FALSE(merkle::verify_inclusion(leaf, (i + 1) % n, n, path, root));
      // The root, not the proof, binds the tree size: a proof can only pass
      // for another size whose tree puts leaf i at the same depth and side
      // pattern.  Where the honest path length differs, it must fail.
      for (uint64_t other : {n - 1, n + 1, 2 * n}) {
        if (other <= i || other > kSizeMax) continue;
        if (merkle::inclusion_proof(fx.reader, i, other)->size() == path.size()) continue;
        CHECK_FALSE(merkle::verify_inclusion(leaf, i, other, path, root));
      }
    }
  }
}

TEST_CASE("tampered consistency proofs fail for every 1 <= m < n <= 200: flipped bit, dropped or extra element, wrong roots") {
  Fixture& fx = fixture();
  for (uint64_t n = 2; n <= kSizeMax; ++n) {
    for (uint64_t m = 1; m < n; ++m) {
      CAPTURE(n);
      CAPTURE(m);
      const Hash& r1 = fx.roots[m];
      const Hash& r2 = fx.roots[n];
      const std::vector<Hash> path = *merkle::consistency_proof(fx.reader, m, n);
      for (size_t k = 0; k < path.size(); ++k) {
        auto bad = path;
        bad[k] = flip_bit(bad[k], (k * 53) % 256);
        CHECK_FALSE(merkle::verify_consistency(m, n, r1, r2, bad));
      }
      auto dropped = path;
      dropped.pop_back();
      CHECK_FALSE(merkle::verify_consistency(m, n, r1, r2, dropped));
      auto extra = path;
      extra.push_back(fx.leaves[0]);
      CHECK_FALSE(merkle::verify_consistency(m, n, r1, r2, extra));
      CHECK_FALSE(merkle::verify_consistency(m, n, fx.roots[m - 1], r2, path));
      CHECK_FALSE(merkle::verify_consistency(m, n, r1, fx.roots[n - 1], path));
      CHECK_FALSE(merkle::verify_consistency(n, m, r2, r1, path));
    }
  }
}

TEST_CASE("degenerate consistency: empty path only for equal sizes or an empty first tree") {
  Fixture& fx = fixture();
  CHECK(merkle::consistency_proof(fx.reader, 0, 10)->empty());
  CHECK(merkle::consistency_proof(fx.reader, 7, 7)->empty());
  CHECK(merkle::verify_consistency(0, 10, merkle::empty_root(), fx.roots[10], {}));
  CHECK_FALSE(merkle::verify_consistency(0, 10, fx.roots[3], fx.roots[10], {}));
  CHECK(merkle::verify_consistency(7, 7, fx.roots[7], fx.roots[7], {}));
  CHECK_FALSE(merkle::verify_consistency(7, 7, fx.roots[7], fx.roots[8], {}));
  CHECK_FALSE(merkle::verify_consistency(7, 7, fx.roots[7], fx.roots[7], {fx.roots[7]}));
  CHECK_FALSE(merkle::verify_consistency(3, 7, fx.roots[3], fx.roots[7], {}));
}

TEST_CASE("verifiers reject hostile inputs without crashing") {
  Fixture& fx = fixture();
  const std::vector<Hash> long_path(200, fx.leaves[1]);
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  CHECK_FALSE(merkle::verify_inclusion(fx.leaves[0], 0, max, long_path, fx.roots[64]));
  CHECK_FALSE(merkle::verify_inclusion(fx.leaves[0], max - 1, max, long_path, fx.roots[64]));
  CHECK_FALSE(merkle::verify_inclusion(fx.leaves[0], 0, 0, {}, merkle::empty_root()));
  CHECK_FALSE(merkle::verify_inclusion(fx.leaves[0], max, max, {}, fx.leaves[0]));
  CHECK_FALSE(merkle::verify_consistency(1, max, fx.roots[1], fx.roots[64], long_path));
  CHECK_FALSE(merkle::verify_consistency(max - 1, max, fx.roots[1], fx.roots[64], long_path));
  CHECK_FALSE(merkle::verify_consistency(max, max - 1, fx.roots[1], fx.roots[64], long_path));
}

TEST_CASE("frontier serialization round-trips and rejects wrong lengths") {
  Fixture& fx = fixture();
  for (uint64_t n = 0; n <= kSizeMax; ++n) {
    CAPTURE(n);
    const std::string bytes = fx.frontiers[n].serialize();
    CHECK(bytes.size() == 8 + 32 * static_cast<size_t>(std::popcount(n)));
    auto back = merkle::Frontier::deserialize(bytes);
    REQUIRE(back.is_ok());
    CHECK(*back == fx.frontiers[n]);
    CHECK(back->root() == fx.roots[n]);
    CHECK(merkle::Frontier::deserialize(bytes.substr(0, bytes.size() - 1)).status().code() == "invalid");
    CHECK(merkle::Frontier::deserialize(bytes + '\0').status().code() == "invalid");
  }
  CHECK_FALSE(merkle::Frontier::deserialize("").is_ok());
  CHECK_FALSE(merkle::Frontier::deserialize(std::string(7, '\0')).is_ok());
  CHECK(merkle::Frontier::deserialize(std::string(8, '\0'))->size() == 0);
  // size = 2^64 - 1 claims 64 hashes but carries none.
  CHECK_FALSE(merkle::Frontier::deserialize(std::string(8, '\xff')).is_ok());
}

TEST_CASE("a deserialized frontier keeps appending to the same roots") {
  Fixture& fx = fixture();
  auto f = merkle::Frontier::deserialize(fx.frontiers[13].serialize());
  REQUIRE(f.is_ok());
  for (uint64_t i = 13; i < kSizeMax; ++i) f->append(fx.leaves[i], nullptr);
  CHECK(*f == fx.frontiers[kSizeMax]);
}

TEST_CASE("load rebuilds the frontier from stored nodes with popcount(size) reads") {
  Fixture& fx = fixture();
  for (uint64_t n = 0; n <= kSizeMax; ++n) {
    CAPTURE(n);
    fx.reader.reset_reads();
    auto f = merkle::Frontier::load(fx.reader, n);
    REQUIRE(f.is_ok());
    CHECK(fx.reader.reads() == static_cast<uint64_t>(std::popcount(n)));
    CHECK(*f == fx.frontiers[n]);
  }
  CHECK(merkle::Frontier::load(MemoryNodeReader{}, 5).status().code() == "not_found");
}

TEST_CASE("out-of-range proof requests return invalid") {
  Fixture& fx = fixture();
  CHECK(merkle::inclusion_proof(fx.reader, 0, 0).status().code() == "invalid");
  CHECK(merkle::inclusion_proof(fx.reader, 5, 5).status().code() == "invalid");
  CHECK(merkle::inclusion_proof(fx.reader, 9, 5).status().code() == "invalid");
  CHECK(merkle::consistency_proof(fx.reader, 6, 5).status().code() == "invalid");
  // Past the stored tree the reader's own error comes back.
  CHECK(merkle::inclusion_proof(fx.reader, 0, kSizeMax + 1).status().code() == "not_found");
}
