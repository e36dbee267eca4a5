#include "api/config.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "wallet/jcs.h"

namespace cl::api {
namespace {

Status invalid(const std::string& field, const std::string& what) {
  return Status::error("invalid", "config: " + field + ": " + what);
}

std::string resolve(const std::string& base, const std::string& p) {
  std::filesystem::path path(p);
  if (path.is_relative()) path = std::filesystem::path(base) / path;
  return path.lexically_normal().string();
}

Status check_known(const Json& obj, const std::set<std::string>& known, const std::string& where) {
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (!known.count(it.key())) return invalid(where + it.key(), "unknown field");
  return Status::ok();
}

Status read_string(const Json& j, const std::string& name, const std::string& where, std::string* out) {
  if (!j.contains(name)) return invalid(where + name, "required field is missing");
  if (!j[name].is_string() || j[name].get<std::string>().empty()) return invalid(where + name, "must be a non-empty string");
  *out = j[name].get<std::string>();
  return Status::ok();
}

Status read_endpoint(const Json& j, const std::string& name, const std::string& where, Endpoint* out) {
  std::string text;
  Status s = read_string(j, name, where, &text);
  if (!s) return s;
  auto e = parse_endpoint(text);
  if (!e) return invalid(where + name, e.status().message());
  *out = *e;
  return Status::ok();
}

Status read_limits(const Json& j, Limits* l) {
  if (!j.is_object()) return invalid("limits", "must be an object");
  struct Field { const char* name; uint64_t* value; uint64_t min; uint64_t max; };
  const Field fields[] = {
      {"body_bytes_max", &l->body_bytes_max, 1024, uint64_t{1} << 30},
      {"batch_ops_max", &l->batch_ops_max, 1, 8192},
      {"connections_max", &l->connections_max, 1, 1'000'000},
      {"queue_ops_max", &l->queue_ops_max, 1, 10'000'000},
      {"request_timeout_ms", &l->request_timeout_ms, 1, 3'600'000},
      {"idle_timeout_ms", &l->idle_timeout_ms, 1, 3'600'000},
      {"batch_wait_us", &l->batch_wait_us, 0, 1'000'000},
      {"verify_threads", &l->verify_threads, 0, 1024},
      {"io_threads", &l->io_threads, 0, 1024},
      {"raft_compact_entries", &l->raft_compact_entries, 0, uint64_t{1} << 40},
      {"raft_slow_ready_ms", &l->raft_slow_ready_ms, 0, 3'600'000},
      {"background_write_mib_per_s", &l->background_write_mib_per_s, 0, 1'000'000},
      {"checkpoint_interval_ms", &l->checkpoint_interval_ms, 10, 86'400'000},
      {"checkpoint_entries", &l->checkpoint_entries, 1, uint64_t{1} << 40},
      {"checkpoints_kept", &l->checkpoints_kept, 1, 100'000'000},
  };
  std::set<std::string> known;
  for (const auto& f : fields) known.insert(f.name);
  Status s = check_known(j, known, "limits.");
  if (!s) return s;
  for (const auto& f : fields) {
    if (!j.contains(f.name)) continue;
    const Json& v = j[f.name];
    if (!v.is_number_unsigned() || v.get<uint64_t>() < f.min || v.get<uint64_t>() > f.max)
      return invalid(std::string("limits.") + f.name,
                     "must be an integer between " + std::to_string(f.min) + " and " + std::to_string(f.max));
    *f.value = v.get<uint64_t>();
  }
  return Status::ok();
}

}  // namespace

Result<Endpoint> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return Status::error("invalid", "must be host:port, got \"" + text + "\"");
  Endpoint e;
  e.host = text.substr(0, colon);
  std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return Status::error("invalid", "port must be 1..65535, got \"" + port + "\"");
  unsigned long p = std::stoul(port);
  if (p < 1 || p > 65535) return Status::error("invalid", "port must be 1..65535, got \"" + port + "\"");
  e.port = static_cast<uint16_t>(p);
  return e;
}

Result<NodeConfig> parse_node_config(const std::string& json_text, const std::string& base_dir) {
  auto doc = parse_json_strict(json_text);
  if (!doc) return Status::error("invalid", "config: " + doc.status().message());
  const Json& j = *doc;
  if (!j.is_object()) return Status::error("invalid", "config: must be a JSON object");
  Status s = check_known(j, {"node_id", "data_dir", "key_file", "genesis", "api", "raft", "peers", "limits", "log_level", "join"}, "");
  if (!s) return s;
  NodeConfig c;
  if (!j.contains("node_id")) return invalid("node_id", "required field is missing");
  if (!j["node_id"].is_number_unsigned() || j["node_id"].get<uint64_t>() == 0)
    return invalid("node_id", "must be an integer ≥ 1");
  c.node_id = j["node_id"].get<uint64_t>();
  if (!(s = read_string(j, "data_dir", "", &c.data_dir))) return s;
  if (!(s = read_string(j, "key_file", "", &c.key_file))) return s;
  if (!(s = read_string(j, "genesis", "", &c.genesis))) return s;
  c.data_dir = resolve(base_dir, c.data_dir);
  c.key_file = resolve(base_dir, c.key_file);
  c.genesis = resolve(base_dir, c.genesis);
  if (!(s = read_endpoint(j, "api", "", &c.api))) return s;
  if (!(s = read_endpoint(j, "raft", "", &c.raft))) return s;
  if (!j.contains("peers")) return invalid("peers", "required field is missing");
  if (!j["peers"].is_array() || j["peers"].empty()) return invalid("peers", "must be a non-empty array");
  std::set<uint64_t> ids;
  bool self = false;
  for (size_t i = 0; i < j["peers"].size(); ++i) {
    const Json& p = j["peers"][i];
    std::string where = "peers[" + std::to_string(i) + "].";
    if (!p.is_object()) return invalid(where.substr(0, where.size() - 1), "must be an object {id, raft, api}");
    if (!(s = check_known(p, {"id", "raft", "api"}, where))) return s;
    PeerConfig peer;
    if (!p.contains("id") || !p["id"].is_number_unsigned() || p["id"].get<uint64_t>() == 0)
      return invalid(where + "id", "must be an integer ≥ 1");
    peer.id = p["id"].get<uint64_t>();
    if (!ids.insert(peer.id).second) return invalid(where + "id", "duplicate peer id");
    if (!(s = read_endpoint(p, "raft", where, &peer.raft))) return s;
    if (!(s = read_endpoint(p, "api", where, &peer.api))) return s;
    self = self || peer.id == c.node_id;
    c.peers.push_back(peer);
  }
  if (!self) return invalid("peers", "must include this node (node_id " + std::to_string(c.node_id) + ")");
  if (j.contains("limits") && !(s = read_limits(j["limits"], &c.limits))) return s;
  if (c.limits.queue_ops_max < c.limits.batch_ops_max)
    return invalid("limits.queue_ops_max", "must be at least limits.batch_ops_max (" +
                                               std::to_string(c.limits.batch_ops_max) + "), or a full batch could never be admitted");
  if (j.contains("join")) {
    if (!j["join"].is_boolean()) return invalid("join", "must be true or false");
    c.join = j["join"].get<bool>();
  }
  if (j.contains("log_level")) {
    static const std::set<std::string> kLevels = {"debug", "info", "warn", "error"};
    if (!j["log_level"].is_string() || !kLevels.count(j["log_level"].get<std::string>()))
      return invalid("log_level", "must be one of debug, info, warn, error");
    c.log_level = j["log_level"].get<std::string>();
  }
  return c;
}

Result<NodeConfig> load_node_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error("invalid", "cannot read config file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto base = std::filesystem::absolute(path).parent_path().string();
  auto c = parse_node_config(ss.str(), base);
  if (!c) return Status::error("invalid", path + ": " + c.status().message());
  return c;
}

}  // namespace cl::api
