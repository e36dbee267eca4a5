// Genesis (DESIGN §11): the chain id and the authorities every node agrees on.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "wallet/keys.h"

namespace cl {

struct GenesisNode {
  uint64_t id = 0;
  PublicKey key{};
};

struct Genesis {
  std::string chain;
  PublicKey issuer{};
  std::vector<PublicKey> registrars;
  std::vector<GenesisNode> nodes;
  std::string jcs;  // canonical bytes: what a data dir remembers and compares

  bool is_registrar(const PublicKey& key) const;

  // Parses and validates genesis JSON: chain (as an op's body.chain), issuer
  // and registrars (≥1, distinct) as public keys, nodes with distinct ids ≥ 1
  // and keys.  Unknown fields are refused.  Status "invalid" names the field.
  static Result<Genesis> parse(std::string_view json_text);

  // Reads and parses a genesis file.
  static Result<Genesis> read_file(const std::string& path);
};

}  // namespace cl
