// SHA-256 (OpenSSL) and the 32-byte Hash type used by the journal and Merkle tree.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cl {

using Hash = std::array<uint8_t, 32>;

// SHA-256 of the concatenation of "prefix" (may be empty) and "data".
Hash sha256(std::string_view data);
Hash sha256_prefixed(uint8_t prefix, std::string_view data);

// Incremental SHA-256 for hashing several pieces without concatenating them.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view data);
  void update(const uint8_t* data, size_t size);
  Hash finish();

 private:
  alignas(16) unsigned char ctx_[128];  // SHA256_CTX; sized and checked in sha256.cpp
};

std::string to_hex(const Hash& h);

}  // namespace cl
