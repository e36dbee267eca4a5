// RFC 9162 §2.1 Merkle trees.  See merkle.h for the storage model.
#include "ledger/merkle.h"

#include <algorithm>
#include <bit>
#include <limits>

namespace cl::merkle {
namespace {

constexpr uint8_t kLeafPrefix = 0x00;
constexpr uint8_t kNodePrefix = 0x01;
constexpr size_t kSizeBytes = 8;

std::string_view as_view(const Hash& h) {
  return {reinterpret_cast<const char*>(h.data()), h.size()};
}

// MTH of consecutive complete subtrees (largest first), per RFC 9162 §2.1.1:
// each non-power-of-two range is its largest complete left subtree joined
// with the MTH of the rest, so the hashes fold from the right.
Hash fold_from_right(const std::vector<Hash>& roots) {
  if (roots.empty()) return empty_root();
  Hash acc = roots.back();
  for (size_t i = roots.size() - 1; i-- > 0;) acc = node_hash(roots[i], acc);
  return acc;
}

// Reads the complete subtree roots of the binary decomposition of the range
// [begin, begin + size), largest first.  One read per set bit of "size".
// Caller guarantees begin is a multiple of bit_floor(size).
Result<std::vector<Hash>> read_decomposition(const NodeReader& reader, uint64_t begin,
                                             uint64_t size) {
  std::vector<Hash> roots;
  roots.reserve(static_cast<size_t>(std::popcount(size)));
  uint64_t pos = begin;
  for (int level = std::bit_width(size) - 1; level >= 0; --level) {
    const uint64_t width = uint64_t{1} << level;
    if ((size & width) == 0) continue;
    Result<Hash> node = reader.node(static_cast<uint32_t>(level), pos >> level);
    if (!node) return node.status();
    roots.push_back(*node);
    pos += width;
  }
  return roots;
}

// Largest power of two strictly less than "size"; RFC 9162's split point k.
// Requires size >= 2.
uint64_t split_point(uint64_t size) {
  CL_CHECK(size >= 2);
  return std::bit_floor(size - 1);
}

// Shifts both counters right until fn's lowest bit is set or fn is 0
// (RFC 9162 §2.1.3.2 step 4.b.ii and §2.1.4.2 step 6.b.3).
void shift_until_odd_or_zero(uint64_t& fn, uint64_t& sn) {
  while ((fn & 1) == 0 && fn != 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

}  // namespace

Hash leaf_hash(std::string_view data) { return sha256_prefixed(kLeafPrefix, data); }

Hash node_hash(const Hash& left, const Hash& right) {
  Sha256 s;
  s.update(&kNodePrefix, 1);
  s.update(left.data(), left.size());
  s.update(right.data(), right.size());
  return s.finish();
}

Hash empty_root() { return sha256(""); }

// ---- Frontier -------------------------------------------------------------

Hash Frontier::root() const { return fold_from_right(roots_); }

void Frontier::append(const Hash& leaf, std::vector<StoredNode>* completed) {
  CL_CHECK_MSG(size_ != std::numeric_limits<uint64_t>::max(), "Merkle tree is full");
  Hash hash = leaf;
  uint32_t level = 0;
  uint64_t index = size_;
  if (completed) completed->push_back({level, index, hash});
  // Each set low bit of the old size is a same-sized subtree to merge with;
  // the loop stops below level 64 because size_ has a clear bit there.
  while ((size_ >> level) & 1) {
    CL_CHECK(!roots_.empty());
    hash = node_hash(roots_.back(), hash);
    roots_.pop_back();
    ++level;
    index >>= 1;
    if (completed) completed->push_back({level, index, hash});
  }
  roots_.push_back(hash);
  ++size_;
  CL_CHECK(roots_.size() == static_cast<size_t>(std::popcount(size_)));
}

std::string Frontier::serialize() const {
  std::string out;
  out.reserve(kSizeBytes + roots_.size() * sizeof(Hash));
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>(size_ >> shift));
  for (const Hash& h : roots_) out.append(as_view(h));
  return out;
}

Result<Frontier> Frontier::deserialize(std::string_view bytes) {
  if (bytes.size() < kSizeBytes) return Status::error("invalid", "frontier shorter than its size field");
  uint64_t size = 0;
  for (size_t i = 0; i < kSizeBytes; ++i) size = (size << 8) | static_cast<uint8_t>(bytes[i]);
  const size_t count = static_cast<size_t>(std::popcount(size));
  if (bytes.size() != kSizeBytes + count * sizeof(Hash)) {
    return Status::error("invalid", "frontier length does not match popcount(size) hashes");
  }
  Frontier f;
  f.size_ = size;
  f.roots_.resize(count);
  for (size_t i = 0; i < count; ++i) {
    std::copy_n(bytes.data() + kSizeBytes + i * sizeof(Hash), sizeof(Hash),
                reinterpret_cast<char*>(f.roots_[i].data()));
  }
  return f;
}

Result<Frontier> Frontier::load(const NodeReader& reader, uint64_t size) {
  Result<std::vector<Hash>> roots = read_decomposition(reader, 0, size);
  if (!roots) return roots.status();
  Frontier f;
  f.size_ = size;
  f.roots_ = std::move(*roots);
  return f;
}

// ---- Roots and proofs from storage ----------------------------------------

Result<Hash> subtree_root(const NodeReader& reader, uint64_t begin, uint64_t end) {
  if (begin > end) return Status::error("invalid", "subtree range begins after it ends");
  const uint64_t size = end - begin;
  if (size == 0) return empty_root();
  if (begin % std::bit_floor(size) != 0) {
    return Status::error("invalid", "subtree range is not aligned as RFC 9162 ranges are");
  }
  Result<std::vector<Hash>> roots = read_decomposition(reader, begin, size);
  if (!roots) return roots.status();
  return fold_from_right(*roots);
}

Result<Hash> root_at(const NodeReader& reader, uint64_t tree_size) {
  return subtree_root(reader, 0, tree_size);
}

// PATH(m, D[n]) of RFC 9162 §2.1.3.1, unrolled: walk from the root down to
// the leaf collecting the sibling at each split, then reverse so the leaf's
// sibling comes first.  Once the walk enters a left half that half is a
// complete subtree, so every later sibling is one read; only the first right
// sibling taken may cost popcount reads.
Result<std::vector<Hash>> inclusion_proof(const NodeReader& reader, uint64_t index,
                                          uint64_t tree_size) {
  if (index >= tree_size) return Status::error("invalid", "leaf index is not below the tree size");
  std::vector<Hash> path;
  uint64_t begin = 0;
  uint64_t end = tree_size;
  while (end - begin > 1) {
    const uint64_t mid = begin + split_point(end - begin);
    const bool go_left = index < mid;
    Result<Hash> sibling = go_left ? subtree_root(reader, mid, end) : subtree_root(reader, begin, mid);
    if (!sibling) return sibling.status();
    path.push_back(*sibling);
    (go_left ? end : begin) = mid;
  }
  std::reverse(path.begin(), path.end());
  return path;
}

// PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, unrolled
// like inclusion_proof.  "first" stays an absolute leaf count; the flag
// records whether the walk is still on the old tree's own root (no right
// turn yet), in which case that root is known to the verifier and omitted.
Result<std::vector<Hash>> consistency_proof(const NodeReader& reader, uint64_t first,
                                            uint64_t second) {
  if (first > second) return Status::error("invalid", "first tree size exceeds second");
  if (first == 0 || first == second) return std::vector<Hash>{};
  std::vector<Hash> siblings;
  std::vector<Hash> path;
  uint64_t begin = 0;
  uint64_t end = second;
  bool whole_old_tree = true;
  while (first != end) {
    const uint64_t mid = begin + split_point(end - begin);
    const bool go_left = first <= mid;
    Result<Hash> sibling = go_left ? subtree_root(reader, mid, end) : subtree_root(reader, begin, mid);
    if (!sibling) return sibling.status();
    siblings.push_back(*sibling);
    (go_left ? end : begin) = mid;
    if (!go_left) whole_old_tree = false;
  }
  if (!whole_old_tree) {
    Result<Hash> old_subtree = subtree_root(reader, begin, end);
    if (!old_subtree) return old_subtree.status();
    path.push_back(*old_subtree);
  }
  path.insert(path.end(), siblings.rbegin(), siblings.rend());
  return path;
}

// ---- Verification ---------------------------------------------------------

// RFC 9162 §2.1.3.2.  Every iteration shifts sn right at least once, so a
// path longer than 64 entries fails at the "sn is 0" check.
bool verify_inclusion(const Hash& leaf, uint64_t index, uint64_t tree_size,
                      const std::vector<Hash>& path, const Hash& root) {
  if (index >= tree_size) return false;
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Hash r = leaf;
  for (const Hash& p : path) {
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      r = node_hash(p, r);
      shift_until_odd_or_zero(fn, sn);
    } else {
      r = node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root;
}

// RFC 9162 §2.1.4.2, with the trivial cases (first == 0, first == second)
// that the RFC's algorithm leaves to the caller handled explicitly.
bool verify_consistency(uint64_t first, uint64_t second, const Hash& first_root,
                        const Hash& second_root, const std::vector<Hash>& path) {
  if (first > second) return false;
  if (first == second) return path.empty() && first_root == second_root;
  if (first == 0) return path.empty() && first_root == empty_root();
  if (path.empty()) return false;
  // Step 2: when first is a power of two the old root is itself a node of the
  // new tree and the proof omits it; the verifier supplies it.
  const bool prepend = std::has_single_bit(first);
  const size_t count = path.size() + (prepend ? 1 : 0);
  auto element = [&](size_t i) -> const Hash& {
    return prepend ? (i == 0 ? first_root : path[i - 1]) : path[i];
  };
  uint64_t fn = first - 1;
  uint64_t sn = second - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = element(0);
  Hash sr = element(0);
  for (size_t i = 1; i < count; ++i) {
    const Hash& c = element(i);
    if (sn == 0) return false;
    if ((fn & 1) != 0 || fn == sn) {
      fr = node_hash(c, fr);
      sr = node_hash(c, sr);
      shift_until_odd_or_zero(fn, sn);
    } else {
      sr = node_hash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == first_root && sr == second_root && sn == 0;
}

}  // namespace cl::merkle
