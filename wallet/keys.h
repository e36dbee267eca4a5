// Ed25519 keys (libsodium), signing, verification and key files (DESIGN §11).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace cl {

using PublicKey = std::array<uint8_t, 32>;
using SecretKey = std::array<uint8_t, 64>;  // libsodium layout: seed ‖ public key
using SignatureBytes = std::array<uint8_t, 64>;

struct KeyPair {
  PublicKey public_key{};
  SecretKey secret_key{};
};

// Initialises libsodium once; safe to call from any thread, any number of times.
void crypto_init();

// A fresh key pair from the OS random source.
KeyPair generate_key_pair();

// The key pair whose 32-byte seed is "seed" (deterministic; for tests and demo keys).
KeyPair key_pair_from_seed(const std::array<uint8_t, 32>& seed);

// Ed25519 signature of "message" by "key".
SignatureBytes sign(const KeyPair& key, std::string_view message);

// True iff "sig" is a valid Ed25519 signature of "message" by "key".
// Rejects small-order and non-canonical keys/signatures (libsodium's checks).
bool verify(const PublicKey& key, std::string_view message, const SignatureBytes& sig);

// Parses a key file body {"public": hex64, "secret": hex128}; checks that the
// secret's seed derives the stated public key.
Result<KeyPair> parse_key_file(std::string_view json_text);

// The key file body for "key" (JSON with a trailing newline).
std::string key_file_text(const KeyPair& key);

// Reads a key file.  Refuses (Status "invalid") a file that is readable or
// writable by group or others, as ssh does: a leaked secret key spends money.
Result<KeyPair> read_key_file(const std::string& path);

// Writes a key file with mode 0600.  Refuses to overwrite an existing file.
Status write_key_file(const std::string& path, const KeyPair& key);

}  // namespace cl
