#include "ledger/genesis.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "common/hex.h"
#include "wallet/jcs.h"

namespace cl {
namespace {

Status invalid(const std::string& what) { return Status::error("invalid", "genesis: " + what); }

bool read_key(const Json& v, PublicKey* out) { return v.is_string() && hex_decode(v.get<std::string>(), *out); }

}  // namespace

bool Genesis::is_registrar(const PublicKey& key) const {
  return std::find(registrars.begin(), registrars.end(), key) != registrars.end();
}

Result<Genesis> Genesis::parse(std::string_view json_text) {
  auto doc = parse_json_strict(json_text);
  if (!doc) return invalid(doc.status().message());
  const Json& j = *doc;
  if (!j.is_object()) return invalid("must be a JSON object");
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const std::set<std::string> kKnown = {"chain", "issuer", "registrars", "nodes"};
    if (!kKnown.count(it.key())) return invalid(it.key() + ": unknown field");
  }
  Genesis g;
  if (!j.contains("chain") || !j["chain"].is_string() || j["chain"].get<std::string>().empty() ||
      j["chain"].get<std::string>().size() > 64)
    return invalid("chain: must be a string of 1 to 64 characters");
  g.chain = j["chain"].get<std::string>();
  for (char c : g.chain) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    if (!ok) return invalid("chain: must use only [A-Za-z0-9._-]");
  }
  if (!j.contains("issuer") || !read_key(j["issuer"], &g.issuer))
    return invalid("issuer: must be a public key (64 lowercase hex chars)");
  if (!j.contains("registrars") || !j["registrars"].is_array() || j["registrars"].empty())
    return invalid("registrars: must be a non-empty array of public keys");
  for (size_t i = 0; i < j["registrars"].size(); ++i) {
    PublicKey k{};
    if (!read_key(j["registrars"][i], &k))
      return invalid("registrars[" + std::to_string(i) + "]: must be a public key (64 lowercase hex chars)");
    if (g.is_registrar(k)) return invalid("registrars[" + std::to_string(i) + "]: duplicate key");
    g.registrars.push_back(k);
  }
  if (!j.contains("nodes") || !j["nodes"].is_array() || j["nodes"].empty())
    return invalid("nodes: must be a non-empty array of {id, key}");
  std::set<uint64_t> ids;
  for (size_t i = 0; i < j["nodes"].size(); ++i) {
    const Json& n = j["nodes"][i];
    std::string where = "nodes[" + std::to_string(i) + "]";
    if (!n.is_object() || n.size() != 2 || !n.contains("id") || !n.contains("key"))
      return invalid(where + ": must be {id, key}");
    GenesisNode node;
    if (!n["id"].is_number_unsigned() || n["id"].get<uint64_t>() == 0)
      return invalid(where + ".id: must be an integer ≥ 1");
    node.id = n["id"].get<uint64_t>();
    if (!ids.insert(node.id).second) return invalid(where + ".id: duplicate node id");
    if (!read_key(n["key"], &node.key)) return invalid(where + ".key: must be a public key");
    g.nodes.push_back(node);
  }
  g.jcs = cl::jcs(j);
  return g;
}

Result<Genesis> Genesis::read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("invalid", "cannot read genesis file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto g = parse(ss.str());
  if (!g) return Status::error("invalid", path + ": " + g.status().message());
  return g;
}

}  // namespace cl
