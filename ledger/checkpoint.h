// Signed checkpoints (DESIGN §5): a tree head {chain, tree_size, root, time}
// that nodes sign with their genesis node keys.  Every replica computes the
// same root for the same journal prefix, so a majority of node signatures on
// one checkpoint is cross-attestation an auditor or a citizen can check.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "common/status.h"
#include "ledger/genesis.h"
#include "wallet/jcs.h"
#include "wallet/keys.h"

namespace cl {

// The prefix of every checkpoint signature's message (followed by the JCS of
// {chain, tree_size, root, time}).
constexpr std::string_view kCheckpointPrefix = "cityledger/checkpoint/v1\n";

struct CheckpointSignature {
  uint64_t node = 0;
  PublicKey key{};
  SignatureBytes sig{};
};

struct Checkpoint {
  std::string chain;
  uint64_t tree_size = 0;
  Hash root{};
  uint64_t time = 0;  // ledger time of entry tree_size − 1 (0 for the empty tree)
  std::vector<CheckpointSignature> signatures;

  // Same tree head (signatures aside).
  bool same_head(const Checkpoint& o) const {
    return chain == o.chain && tree_size == o.tree_size && root == o.root && time == o.time;
  }
};

// kCheckpointPrefix ‖ JCS({chain, tree_size, root, time}).
std::string checkpoint_message(const Checkpoint& cp);
CheckpointSignature sign_checkpoint(const Checkpoint& cp, uint64_t node, const KeyPair& key);
// The Ed25519 check of one signature (not whether the key belongs to the node).
bool signature_valid(const Checkpoint& cp, const CheckpointSignature& s);

// The §6 JSON shape: {chain, tree_size, root, time, signatures: [{node, key, sig}]}.
Json checkpoint_to_json(const Checkpoint& cp);
// Strict: every field present with its type, hex of the right length,
// nothing unknown.  Status "invalid" naming the field.
Result<Checkpoint> checkpoint_from_json(const Json& j);

// What an auditor requires of a published checkpoint: its chain is the
// genesis chain; every signature is valid, by a genesis node with that
// node's genesis key, one per node; and more than half of the genesis nodes
// signed.  Status "invalid" naming the first problem.  *signers gets the
// number of valid genesis-node signatures when every signature checked out
// (success, or too few signers); it is 0 when a signature is refused (an
// unknown key, a duplicate, a bad signature) because counting stops there.
Status check_checkpoint_signatures(const Checkpoint& cp, const Genesis& genesis, size_t* signers = nullptr);

}  // namespace cl
