#include "ledger/checkpoint.h"

#include <set>

#include "common/hex.h"

namespace cl {
namespace {
Json head_json(const Checkpoint& cp) {
  return {{"chain", cp.chain}, {"tree_size", cp.tree_size}, {"root", to_hex(cp.root)}, {"time", cp.time}};
}
Status invalid(const std::string& what) { return Status::error("invalid", "checkpoint " + what); }

template <size_t N>
bool hex_field(const Json& j, const char* name, std::array<uint8_t, N>* out) {
  if (!j.contains(name) || !j[name].is_string()) return false;
  auto v = hex_decode_array<N>(j[name].get<std::string>());
  if (!v) return false;
  *out = *v;
  return true;
}
}  // namespace

std::string checkpoint_message(const Checkpoint& cp) { return std::string(kCheckpointPrefix) + jcs(head_json(cp)); }

CheckpointSignature sign_checkpoint(const Checkpoint& cp, uint64_t node, const KeyPair& key) {
  return {node, key.public_key, sign(key, checkpoint_message(cp))};
}

bool signature_valid(const Checkpoint& cp, const CheckpointSignature& s) {
  return verify(s.key, checkpoint_message(cp), s.sig);
}

Json checkpoint_to_json(const Checkpoint& cp) {
  Json j = head_json(cp);
  Json sigs = Json::array();
  for (const auto& s : cp.signatures)
    sigs.push_back({{"node", s.node}, {"key", hex_encode(s.key)}, {"sig", hex_encode(s.sig)}});
  j["signatures"] = sigs;
  return j;
}

Result<Checkpoint> checkpoint_from_json(const Json& j) {
  if (!j.is_object()) return invalid("must be an object");
  for (const auto& [k, v] : j.items())
    if (k != "chain" && k != "tree_size" && k != "root" && k != "time" && k != "signatures")
      return invalid("has an unknown field \"" + k + "\"");
  Checkpoint cp;
  if (!j.contains("chain") || !j["chain"].is_string()) return invalid("chain must be a string");
  cp.chain = j["chain"].get<std::string>();
  if (!j.contains("tree_size") || !j["tree_size"].is_number_unsigned()) return invalid("tree_size must be an integer ≥ 0");
  cp.tree_size = j["tree_size"].get<uint64_t>();
  if (!hex_field(j, "root", &cp.root)) return invalid("root must be 64 hex characters");
  if (!j.contains("time") || !j["time"].is_number_unsigned()) return invalid("time must be an integer ≥ 0");
  cp.time = j["time"].get<uint64_t>();
  if (!j.contains("signatures") || !j["signatures"].is_array()) return invalid("signatures must be an array");
  for (size_t i = 0; i < j["signatures"].size(); ++i) {
    const Json& s = j["signatures"][i];
    std::string at = "signatures[" + std::to_string(i) + "]";
    if (!s.is_object() || s.size() != 3 || !s.contains("node") || !s["node"].is_number_unsigned())
      return invalid(at + " must be {node, key, sig}");
    CheckpointSignature sig;
    sig.node = s["node"].get<uint64_t>();
    if (!hex_field(s, "key", &sig.key)) return invalid(at + ".key must be 64 hex characters");
    if (!hex_field(s, "sig", &sig.sig)) return invalid(at + ".sig must be 128 hex characters");
    cp.signatures.push_back(sig);
  }
  return cp;
}

Status check_checkpoint_signatures(const Checkpoint& cp, const Genesis& genesis, size_t* signers) {
  if (signers) *signers = 0;
  if (cp.chain != genesis.chain) return invalid("is for chain \"" + cp.chain + "\", not \"" + genesis.chain + "\"");
  std::set<uint64_t> seen;
  for (const auto& s : cp.signatures) {
    const GenesisNode* node = nullptr;
    for (const auto& n : genesis.nodes)
      if (n.id == s.node) node = &n;
    if (node == nullptr || node->key != s.key)
      return invalid("signed by an unknown key " + hex_encode(s.key) + " (as node " + std::to_string(s.node) +
                     "; not that node's genesis key)");
    if (!seen.insert(s.node).second) return invalid("signed twice by node " + std::to_string(s.node));
    if (!signature_valid(cp, s)) return invalid("signature of node " + std::to_string(s.node) + " does not verify");
  }
  if (signers) *signers = seen.size();
  if (seen.size() * 2 <= genesis.nodes.size())
    return invalid("has " + std::to_string(seen.size()) + " of " + std::to_string(genesis.nodes.size()) +
                   " node signatures; a majority is needed");
  return Status::ok();
}

}  // namespace cl
