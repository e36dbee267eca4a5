#include "common/sha256.h"

#include <openssl/sha.h>

#include <cstring>

#include "common/check.h"
#include "common/hex.h"

// The low-level SHA256_* API is deprecated in OpenSSL 3 in favour of EVP,
// but EVP allocates a context per hash; the journal hashes every entry and
// the Merkle tree every node, so the allocation-free API is worth keeping.
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

namespace cl {

static_assert(sizeof(SHA256_CTX) <= 128, "Sha256::ctx_ too small");

Sha256::Sha256() { CL_CHECK(SHA256_Init(reinterpret_cast<SHA256_CTX*>(ctx_)) == 1); }
Sha256::~Sha256() { std::memset(ctx_, 0, sizeof(ctx_)); }

void Sha256::update(std::string_view data) {
  update(reinterpret_cast<const uint8_t*>(data.data()), data.size());
}

void Sha256::update(const uint8_t* data, size_t size) {
  CL_CHECK(SHA256_Update(reinterpret_cast<SHA256_CTX*>(ctx_), data, size) == 1);
}

Hash Sha256::finish() {
  Hash h{};
  CL_CHECK(SHA256_Final(h.data(), reinterpret_cast<SHA256_CTX*>(ctx_)) == 1);
  return h;
}

Hash sha256(std::string_view data) {
  Sha256 s;
  s.update(data);
  return s.finish();
}

Hash sha256_prefixed(uint8_t prefix, std::string_view data) {
  Sha256 s;
  s.update(&prefix, 1);
  s.update(data);
  return s.finish();
}

std::string to_hex(const Hash& h) { return hex_encode(h); }

}  // namespace cl
