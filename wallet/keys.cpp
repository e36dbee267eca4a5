#include "wallet/keys.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/hex.h"
#include "wallet/jcs.h"

namespace cl {

void crypto_init() { CL_CHECK_MSG(sodium_init() >= 0, "libsodium failed to initialise"); }

KeyPair generate_key_pair() {
  crypto_init();
  KeyPair k;
  CL_CHECK(crypto_sign_keypair(k.public_key.data(), k.secret_key.data()) == 0);
  return k;
}

KeyPair key_pair_from_seed(const std::array<uint8_t, 32>& seed) {
  crypto_init();
  KeyPair k;
  CL_CHECK(crypto_sign_seed_keypair(k.public_key.data(), k.secret_key.data(), seed.data()) == 0);
  return k;
}

SignatureBytes sign(const KeyPair& key, std::string_view message) {
  SignatureBytes sig{};
  CL_CHECK(crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size(), key.secret_key.data()) == 0);
  return sig;
}

bool verify(const PublicKey& key, std::string_view message, const SignatureBytes& sig) {
  return crypto_sign_verify_detached(sig.data(), reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), key.data()) == 0;
}

Result<KeyPair> parse_key_file(std::string_view json_text) {
  auto doc = parse_json_strict(json_text);
  if (!doc) return Status::error("invalid", "key file: " + doc.status().message());
  const Json& j = *doc;
  if (!j.is_object() || j.size() != 2 || !j.contains("public") || !j.contains("secret") ||
      !j["public"].is_string() || !j["secret"].is_string()) {
    return Status::error("invalid", "key file: expected {\"public\": hex64, \"secret\": hex128}");
  }
  KeyPair k;
  if (!hex_decode(j["public"].get<std::string>(), k.public_key))
    return Status::error("invalid", "key file: \"public\" must be 64 lowercase hex chars");
  if (!hex_decode(j["secret"].get<std::string>(), k.secret_key))
    return Status::error("invalid", "key file: \"secret\" must be 128 lowercase hex chars");
  std::array<uint8_t, 32> seed{};
  std::memcpy(seed.data(), k.secret_key.data(), 32);
  KeyPair derived = key_pair_from_seed(seed);
  sodium_memzero(seed.data(), seed.size());
  if (derived.public_key != k.public_key || derived.secret_key != k.secret_key)
    return Status::error("invalid", "key file: secret key does not match public key");
  return k;
}

std::string key_file_text(const KeyPair& key) {
  return "{\"public\":\"" + hex_encode(key.public_key) + "\",\"secret\":\"" + hex_encode(key.secret_key) +
         "\"}\n";
}

Result<KeyPair> read_key_file(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return Status::error("invalid", "key file " + path + ": " + std::strerror(errno));
  if ((st.st_mode & 077) != 0) {
    return Status::error("invalid", "key file " + path +
                                        " is accessible by group or others; run: chmod 600 " + path);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("invalid", "key file " + path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  auto k = parse_key_file(ss.str());
  if (!k) return Status::error("invalid", path + ": " + k.status().message());
  return k;
}

Status write_key_file(const std::string& path, const KeyPair& key) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::error("io", "cannot create key file " + path + ": " + std::strerror(errno));
  std::string text = key_file_text(key);
  ssize_t n = ::write(fd, text.data(), text.size());
  bool ok = n == static_cast<ssize_t>(text.size()) && ::fchmod(fd, 0600) == 0 && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  sodium_memzero(text.data(), text.size());
  if (!ok) return Status::error("io", "cannot write key file " + path + ": " + std::strerror(saved));
  return Status::ok();
}

}  // namespace cl
