// RFC 9162 §2.1 Merkle trees: hashing, an incremental frontier, proofs from
// stored nodes, and storage-free proof verification.
//
// Storage model: the "complete subtree node" at (level L, index i) is the
// Merkle Tree Hash (MTH) of leaves [i * 2^L, (i + 1) * 2^L).  Level 0 holds
// the leaf hashes.  Nodes never change once their subtree is full, so an
// append-only ledger stores each exactly once (Frontier::append reports them)
// and every root and proof is computed from O(log n) of them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/sha256.h"
#include "common/status.h"

namespace cl::merkle {

// Largest tree level: a tree of at most 2^64 - 1 leaves has levels 0..63.
inline constexpr uint32_t kLevelMax = 63;

// Returns SHA-256(0x00 || data), the RFC 9162 hash of one leaf.
Hash leaf_hash(std::string_view data);

// Returns SHA-256(0x01 || left || right), the RFC 9162 hash of an inner node.
Hash node_hash(const Hash& left, const Hash& right);

// Returns SHA-256(""), the RFC 9162 root of the empty tree.
Hash empty_root();

// A complete subtree node, as reported by Frontier::append for storage.
struct StoredNode {
  uint32_t level;
  uint64_t index;
  Hash hash;
};

// Read access to stored complete subtree nodes.  Each call is one storage read.
class NodeReader {
 public:
  virtual ~NodeReader() = default;
  // Returns the hash of the complete subtree node at (level, index), or a
  // non-ok Status ("not_found", "io", ...) if it cannot be read.
  virtual Result<Hash> node(uint32_t level, uint64_t index) const = 0;
};

// The incremental tree: the roots of the complete subtrees in the binary
// decomposition of the current size, largest (leftmost) first.  Uses
// O(log n) memory and O(log n) hashing per append.
class Frontier {
 public:
  // Returns the number of leaves appended so far.
  uint64_t size() const { return size_; }

  // Returns the MTH of all leaves; empty_root() when size() is 0.
  Hash root() const;

  // Appends the leaf hash "leaf" (already leaf_hash()-ed).  If "completed"
  // is not null, appends to it every complete subtree node that became known:
  // the leaf itself at level 0, then each merged node, lowest level first.
  // Aborts if the tree already holds 2^64 - 1 leaves.
  void append(const Hash& leaf, std::vector<StoredNode>* completed);

  // Returns the compact binary form: size as 8 bytes big-endian, then the
  // popcount(size) subtree roots, largest first.
  std::string serialize() const;

  // Parses serialize()'s output.  Returns "invalid" unless "bytes" is exactly
  // 8 + 32 * popcount(size) bytes long.
  static Result<Frontier> deserialize(std::string_view bytes);

  // Rebuilds the frontier of a tree of "size" leaves from stored nodes, with
  // popcount(size) reads.  Returns the reader's error if a node is missing.
  static Result<Frontier> load(const NodeReader& reader, uint64_t size);

  bool operator==(const Frontier&) const = default;

 private:
  uint64_t size_ = 0;
  std::vector<Hash> roots_;  // one per set bit of size_, highest bit first
};

// Returns the MTH of leaves [begin, end) from O(log n) stored nodes.
// Requires begin <= end and begin to be a multiple of the largest power of
// two <= (end - begin) — true of every range RFC 9162 roots and proofs use;
// returns "invalid" otherwise.  Returns empty_root() when begin == end.
Result<Hash> subtree_root(const NodeReader& reader, uint64_t begin, uint64_t end);

// Returns the root of the tree of the first "tree_size" leaves
// (empty_root() for 0, without reading).
Result<Hash> root_at(const NodeReader& reader, uint64_t tree_size);

// Returns the RFC 9162 §2.1.3.1 inclusion path of leaf "index" in the tree of
// "tree_size" leaves, sibling of the leaf first.  Returns "invalid" unless
// index < tree_size.  O(log n) reads.
Result<std::vector<Hash>> inclusion_proof(const NodeReader& reader, uint64_t index,
                                          uint64_t tree_size);

// Returns the RFC 9162 §2.1.4.1 consistency path from the tree of "first"
// leaves to the tree of "second" leaves.  Empty when first is 0 or
// first == second; "invalid" when first > second.  O(log n) reads.
Result<std::vector<Hash>> consistency_proof(const NodeReader& reader, uint64_t first,
                                            uint64_t second);

// Returns true iff "path" proves that leaf hash "leaf" is at "index" in the
// tree of "tree_size" leaves whose root is "root" (RFC 9162 §2.1.3.2).
// Returns false, never crashes, on any malformed input.
bool verify_inclusion(const Hash& leaf, uint64_t index, uint64_t tree_size,
                      const std::vector<Hash>& path, const Hash& root);

// Returns true iff "path" proves that the tree of "first" leaves with root
// "first_root" is a prefix of the tree of "second" leaves with root
// "second_root" (RFC 9162 §2.1.4.2).  When first == second the path must be
// empty and the roots equal; when first == 0 the path must be empty and
// first_root must be empty_root().  Returns false on any malformed input.
bool verify_consistency(uint64_t first, uint64_t second, const Hash& first_root,
                        const Hash& second_root, const std::vector<Hash>& path);

}  // namespace cl::merkle
