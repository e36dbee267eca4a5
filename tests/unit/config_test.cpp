// Node configuration parsing (DESIGN §11): every field checked, errors name it.
#include <doctest/doctest.h>

#include "api/config.h"

namespace {

std::string config_with(const std::string& extra, const std::string& peers = "") {
  std::string p = peers.empty() ? R"([{"id":1,"raft":"127.0.0.1:9081","api":"127.0.0.1:8081"},
                                      {"id":2,"raft":"127.0.0.1:9082","api":"127.0.0.1:8082"}])"
                                : peers;
  return R"({"node_id":1,"data_dir":"../data/node1","key_file":"demo/node1.key","genesis":"genesis.json",
             "api":"127.0.0.1:8081","raft":"127.0.0.1:9081","peers":)" +
         p + extra + "}";
}

std::string error_of(const std::string& json) {
  auto c = cl::api::parse_node_config(json, "/etc/cityledger");
  REQUIRE_FALSE(c.is_ok());
  return c.status().message();
}

}  // namespace

TEST_CASE("a DESIGN §11 config parses, with paths relative to the config's folder") {
  auto c = cl::api::parse_node_config(config_with(""), "/etc/cityledger");
  REQUIRE_MESSAGE(c.is_ok(), c.status().to_string());
  CHECK(c->node_id == 1);
  CHECK(c->data_dir == "/etc/data/node1");
  CHECK(c->key_file == "/etc/cityledger/demo/node1.key");
  CHECK(c->genesis == "/etc/cityledger/genesis.json");
  CHECK(c->api.host == "127.0.0.1");
  CHECK(c->api.port == 8081);
  CHECK(c->peers.size() == 2);
  CHECK(c->peers[1].raft.port == 9082);
  CHECK(c->limits.body_bytes_max == 8u << 20);  // defaults
  CHECK(c->limits.batch_ops_max == 8192);
}

TEST_CASE("limits are optional, range-checked and named in errors") {
  auto c = cl::api::parse_node_config(
      config_with(R"(,"limits":{"queue_ops_max":10,"batch_ops_max":10,"batch_wait_us":0})"), "/x");
  REQUIRE(c.is_ok());
  CHECK(c->limits.queue_ops_max == 10);
  // A queue smaller than one batch could never admit a full batch.
  CHECK(error_of(config_with(R"(,"limits":{"queue_ops_max":10})")).find("limits.queue_ops_max") != std::string::npos);
  CHECK(error_of(config_with(R"(,"limits":{"batch_ops_max":9000})")).find("limits.batch_ops_max") != std::string::npos);
  CHECK(error_of(config_with(R"(,"limits":{"queue_ops_max":-1})")).find("limits.queue_ops_max") != std::string::npos);
  CHECK(error_of(config_with(R"(,"limits":{"surprise":1})")).find("limits.surprise: unknown field") != std::string::npos);
}

TEST_CASE("the background write cap of a replicated node defaults to 16 MiB/s, may be lifted with 0, and is range-checked") {
  auto d = cl::api::parse_node_config(config_with(""), "/x");
  REQUIRE(d.is_ok());
  CHECK(d->limits.background_write_mib_per_s == 16);
  auto off = cl::api::parse_node_config(config_with(R"(,"limits":{"background_write_mib_per_s":0})"), "/x");
  REQUIRE(off.is_ok());
  CHECK(off->limits.background_write_mib_per_s == 0);
  CHECK(error_of(config_with(R"(,"limits":{"background_write_mib_per_s":2000000})"))
            .find("limits.background_write_mib_per_s") != std::string::npos);
  CHECK(error_of(config_with(R"(,"limits":{"background_write_mib_per_s":1.5})"))
            .find("limits.background_write_mib_per_s") != std::string::npos);
}

TEST_CASE("a bad config is refused with a message naming the field") {
  struct Row {
    std::string json;
    std::string expect;
  };
  const Row rows[] = {
      {"{", "invalid JSON"},
      {"[]", "must be a JSON object"},
      {config_with(R"(,"colour":"red")"), "colour: unknown field"},
      {R"({"data_dir":"d","key_file":"k","genesis":"g","api":"127.0.0.1:1","raft":"127.0.0.1:2","peers":[]})", "node_id"},
      {config_with("").replace(config_with("").find("\"node_id\":1"), 11, "\"node_id\":0"), "node_id"},
      {config_with("").replace(config_with("").find("\"api\":\"127.0.0.1:8081\""), 22, "\"api\":\"127.0.0.1\""), "api"},
      {config_with("").replace(config_with("").find("\"api\":\"127.0.0.1:8081\""), 22, "\"api\":\"127.0.0.1:99999\""), "api"},
      {config_with("", "[]"), "peers"},
      {config_with("", R"([{"id":2,"raft":"127.0.0.1:9082","api":"127.0.0.1:8082"}])"), "must include this node"},
      {config_with("", R"([{"id":1,"raft":"127.0.0.1:9081","api":"127.0.0.1:8081"},{"id":1,"raft":"127.0.0.1:9082","api":"127.0.0.1:8082"}])"),
       "peers[1].id: duplicate"},
      {config_with("", R"([{"id":1,"raft":"127.0.0.1:9081"}])"), "peers[0].api"},
      {config_with("", R"([{"id":1,"raft":"127.0.0.1:9081","api":"127.0.0.1:8081","x":1}])"), "peers[0].x: unknown field"},
      {config_with(R"(,"log_level":"chatty")"), "log_level"},
  };
  for (size_t i = 0; i < std::size(rows); ++i) {
    INFO("row ", i, ": ", rows[i].json);
    CHECK(error_of(rows[i].json).find(rows[i].expect) != std::string::npos);
  }
}

TEST_CASE("endpoints parse host:port and refuse anything else") {
  CHECK(cl::api::parse_endpoint("127.0.0.1:8081").is_ok());
  CHECK_FALSE(cl::api::parse_endpoint("127.0.0.1").is_ok());
  CHECK_FALSE(cl::api::parse_endpoint(":80").is_ok());
  CHECK_FALSE(cl::api::parse_endpoint("h:0").is_ok());
  CHECK_FALSE(cl::api::parse_endpoint("h:65536").is_ok());
  CHECK_FALSE(cl::api::parse_endpoint("h:8a").is_ok());
}
