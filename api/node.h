// A cityledger node: the ledger, the write pipeline and the REST API of
// DESIGN §6, wired together.  (Replication slots in as the pipeline's
// BatchCommitter; this single-node build commits locally.)
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "api/checkpointer.h"
#include "api/config.h"
#include "api/http_server.h"
#include "api/metrics.h"
#include "api/pipeline.h"
#include "api/replicated.h"
#include "api/store_stalls.h"
#include "consensus/raft_node.h"
#include "ledger/genesis.h"
#include "ledger/ledger.h"
#include "wallet/keys.h"

namespace cl::api {

// One route the node serves: method and OpenAPI-style path template.
struct Route {
  const char* method;
  const char* path;
};

class Node {
 public:
  // Every route handle() serves (kept in step with it; api/openapi.yaml
  // describes exactly these, which a test checks).
  static const std::vector<Route>& routes();

  // Loads genesis and the node key, opens (or creates) the ledger in
  // data_dir.  Refuses with a clear Status on a bad genesis, a node key that
  // is not this node's key in genesis, a data dir created with another
  // genesis, or a store that fails its consistency checks.
  static Result<std::unique_ptr<Node>> open(const NodeConfig& config);
  ~Node();

  // Starts the pipeline and the HTTP server.
  Status start();
  // Graceful stop: refuse new work, finish every admitted op and answer it,
  // then close.  Idempotent.
  void stop();

  uint16_t api_port() const { return server_ ? server_->port() : 0; }

  // Routes one request (exposed for in-process tests).
  void handle(Request&& req, Respond respond);

 private:
  Node(NodeConfig config, Genesis genesis, KeyPair node_key, std::unique_ptr<Ledger> ledger);

  void post_op(Request&& req, Respond respond);
  void post_batch(Request&& req, Respond respond);
  Response get_op(const Request& req, std::string_view id);
  Response get_wallet(const Request& req, std::string_view id);
  Response get_wallet_entries(const Request& req, std::string_view id, std::string_view query);
  Response get_journal(const Request& req, std::string_view query);
  void get_checkpoint(Request&& req, Respond respond, std::string_view query);
  Response get_checkpoints(const Request& req, std::string_view query);
  Response get_inclusion(const Request& req, std::string_view query);
  Response get_consistency(const Request& req, std::string_view query);
  Response get_supply(const Request& req);
  Response get_cluster(const Request& req);
  Response get_metrics(const Request& req);

  NodeConfig config_;
  Genesis genesis_;
  KeyPair node_key_;
  std::unique_ptr<Ledger> ledger_;
  Metrics metrics_;
  std::shared_ptr<StoreStallListener> ledger_stalls_;  // write stalls of the ledger store
  std::shared_ptr<StoreStallListener> raft_stalls_;    // and of the Raft store (replicated)
  bool replicated() const { return is_replicated(config_); }
  static bool is_replicated(const NodeConfig& c) { return c.peers.size() > 1 || c.join; }
  void change_members(Request&& req, Respond respond, std::string_view member);
  void hand_off_leadership();
  // Installs the leader's state (journal entries and head) after the leader
  // compacted what this replica needs (raft::SnapshotFetcher).
  Result<raft::SnapshotMeta> fetch_state(const raft::SnapshotRequest& req);
  Result<raft::SnapshotMeta> fetch_state_from(const PeerConfig& source, const raft::SnapshotRequest& req);
  // Peers added at run time: every replica learns them from the committed
  // configuration change (its context carries the addresses) or, after a
  // state install, from the leader's /v1/cluster; kept in
  // <data_dir>/members.json across restarts.
  std::mutex members_mu_;
  std::vector<PeerConfig> added_peers_;  // guarded by members_mu_
  std::vector<PeerConfig> peers();
  void load_members();
  // Records (or forgets) a member added at run time; returns false when the
  // member is a configured peer (nothing to record).
  bool learn_member(const PeerConfig& peer);
  void forget_member(uint64_t id);
  void save_members_locked();
  std::optional<raft::PeerAddress> on_conf_change(const raft::ConfChange& cc);
  // Writes and linearizable reads on a follower: 307 to the leader, or 503
  // while no leader is known.  Returns true if it answered.
  bool redirect_unless_leader(const Request& req, const Respond& respond);
  void get_wallet_linearizable(Request&& req, Respond respond, std::string id);

  std::unique_ptr<LedgerStateMachine> state_machine_;
  std::unique_ptr<raft::RaftNode> raft_;
  std::unique_ptr<BatchCommitter> committer_;
  std::unique_ptr<Pipeline> pipeline_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<Checkpointer> checkpointer_;
  std::chrono::steady_clock::time_point started_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace cl::api
