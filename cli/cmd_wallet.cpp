// `cityledger wallet new --out FILE` and `cityledger sign --key FILE [--key FILE]`.
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/hex.h"
#include "wallet/keys.h"
#include "wallet/op.h"

namespace cl::cli {
namespace {
int g_exit_code = 0;

void run_wallet_new(const std::string& out) {
  KeyPair k = generate_key_pair();
  Status s = write_key_file(out, k);
  if (!s) {
    std::cerr << "error: " << s.message() << "\n";
    set_exit_code(1);
    return;
  }
  std::cout << "{\"public\":\"" << hex_encode(k.public_key) << "\",\"file\":" << Json(out).dump() << "}\n";
}

void run_sign(const std::vector<std::string>& key_files) {
  std::vector<KeyPair> keys;
  for (const auto& f : key_files) {
    auto k = read_key_file(f);
    if (!k) {
      std::cerr << "error: " << k.status().message() << "\n";
      set_exit_code(1);
      return;
    }
    keys.push_back(*k);
  }
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto doc = parse_json_strict(input);
  if (!doc) {
    std::cerr << "error: op body on stdin: " << doc.status().message() << "\n";
    set_exit_code(2);
    return;
  }
  Rejection rejection;
  auto body = decode_body(*doc, &rejection);
  if (!body) {
    std::cerr << "error: " << code_name(rejection.code) << ": " << rejection.detail << "\n";
    set_exit_code(2);
    return;
  }
  std::vector<const KeyPair*> signers;
  for (const auto& k : keys) signers.push_back(&k);
  Envelope env = sign_envelope(*body, signers);
  std::cout << env.jcs << "\n";
}
}  // namespace

int exit_code() { return g_exit_code; }
void set_exit_code(int code) { g_exit_code = code; }

void register_wallet_commands(CLI::App& app) {
  auto* wallet = app.add_subcommand("wallet", "wallet key management");
  wallet->require_subcommand(1);
  auto* wnew = wallet->add_subcommand("new", "create a new Ed25519 key file (mode 0600)");
  auto out = std::make_shared<std::string>();
  wnew->add_option("--out", *out, "key file to create (refuses to overwrite)")->required();
  wnew->callback([out] { run_wallet_new(*out); });

  auto* sign = app.add_subcommand("sign", "read an op body (JSON) on stdin, print the signed envelope");
  auto keys = std::make_shared<std::vector<std::string>>();
  sign->add_option("--key", *keys, "key file to sign with (repeat for multi-signature ops)")->required();
  sign->callback([keys] { run_sign(*keys); });
}

}  // namespace cl::cli
