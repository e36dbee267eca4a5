// Node configuration (DESIGN §11): a JSON file; relative paths are relative
// to the file's folder.  Every limit is named here with its default.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace cl::api {

struct Endpoint {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const { return host + ":" + std::to_string(port); }
};

// Parses "host:port" (IPv4 literal or name, port 1..65535).
Result<Endpoint> parse_endpoint(const std::string& text);

struct PeerConfig {
  uint64_t id = 0;
  Endpoint raft;
  Endpoint api;
};

struct Limits {
  uint64_t body_bytes_max = 8 << 20;       // request body; larger → 413
  uint64_t batch_ops_max = 8192;           // ops in one POST /v1/ops/batch and one applied batch
  uint64_t connections_max = 4096;         // open HTTP connections; beyond → accepted then closed with 503
  uint64_t queue_ops_max = 65536;          // ops waiting for verify or commit; beyond → 429
  uint64_t request_timeout_ms = 10000;     // read a request / wait for commit
  uint64_t idle_timeout_ms = 60000;        // keep-alive connection with no request
  uint64_t batch_wait_us = 1000;           // how long the batcher waits to fill a batch while others are in flight
  uint64_t verify_threads = 0;             // 0 = one per core
  uint64_t io_threads = 0;                 // 0 = one per core
  // Replicated nodes only: bytes/s (MiB) that RocksDB flushes and compactions
  // of the node's stores may write, together (0: no cap).  Spreads their
  // bursts out so they do not stall the Raft log's synced appends.
  uint64_t background_write_mib_per_s = 16;
  uint64_t raft_slow_ready_ms = 50;       // log raft_slow_ready when one Raft step takes this long (0: never)
  uint64_t raft_compact_entries = 1000;    // compact the Raft log every N applied entries (0: never)
  uint64_t checkpoint_interval_ms = 1000;  // sign a checkpoint this often if the journal grew
  uint64_t checkpoint_entries = 10000;     // ... or as soon as this many entries were appended
  uint64_t checkpoints_kept = 100000;      // newest checkpoints kept (memory and file); older ones are dropped
};

struct NodeConfig {
  uint64_t node_id = 0;
  std::string data_dir;   // absolute after load
  std::string key_file;   // absolute after load
  std::string genesis;    // absolute after load
  Endpoint api;
  Endpoint raft;
  std::vector<PeerConfig> peers;
  Limits limits;
  std::string log_level = "info";  // debug, info, warn, error
  // true: this node joins a running cluster (it is added with
  // POST /v1/cluster/members on the leader) instead of bootstrapping one
  // from "peers"; it learns the configuration from the leader's log.
  bool join = false;
};

// Parses config JSON; "base_dir" resolves relative paths.  Status "invalid"
// with a message naming the field on any problem; unknown fields are refused.
Result<NodeConfig> parse_node_config(const std::string& json_text, const std::string& base_dir);

// Reads and parses a config file.
Result<NodeConfig> load_node_config(const std::string& path);

}  // namespace cl::api
