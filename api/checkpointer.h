// The node's checkpoints (DESIGN §5, §6 GET /v1/checkpoint).
//
// Every checkpoint_interval_ms (if the journal grew) or as soon as
// checkpoint_entries entries were appended since the last one, the node
// signs its current tree head with its node key.  It then asks every peer to
// sign that same tree head (GET /v1/checkpoint?tree_size=N on the peer, which
// signs any size it holds) and adds each signature that verifies against the
// peer's genesis key, retrying on later rounds until all nodes signed or a
// newer checkpoint replaces it.  Checkpoints are appended to
// <data_dir>/checkpoints.ndjson (a line again whenever one gains
// signatures; the last line per tree size wins) and reloaded on start.
// Only the newest `kept` are kept: once the file holds more than twice as
// many lines, it is rewritten (temporary file, fsync, rename) with just
// those, so it stays bounded however long the node runs.  Dropping old ones
// loses no evidence: a newer majority-signed root commits to every earlier
// entry, and consistency proofs come from the tree, not from checkpoints.
//
// This is the API layer's own thread, with its own clock: checkpoint sizes
// differ between nodes, and signatures are gathered for each node's sizes.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/config.h"
#include "ledger/checkpoint.h"
#include "ledger/ledger.h"

namespace cl::api {

struct CheckpointerOptions {
  uint64_t interval_ms = 1000;
  uint64_t entries = 10000;
  size_t kept = 100000;  // newest checkpoints kept in memory and in the file
  uint64_t peer_timeout_ms = 1000;
};

class Checkpointer {
 public:
  using PeersFn = std::function<std::vector<PeerConfig>()>;
  Checkpointer(const Genesis& genesis, uint64_t node_id, KeyPair key, const Ledger* ledger, PeersFn peers,
               std::string file, CheckpointerOptions options);
  ~Checkpointer();

  void start();
  void stop();

  // The newest checkpoint (nullopt before the first one).
  std::optional<Checkpoint> latest() const;
  // The stored checkpoint of exactly this size, or nullopt.
  std::optional<Checkpoint> at(uint64_t tree_size) const;
  // Stored checkpoints with tree_size ≥ from, oldest first, at most limit.
  std::vector<Checkpoint> list(uint64_t from, size_t limit) const;
  // This node's signed tree head at "tree_size" (≤ journal size), with the
  // signatures gathered for it if it is a stored checkpoint.
  Result<Checkpoint> sign_at(uint64_t tree_size) const;

  // One round now (tests; the thread calls it on its own cadence).
  void round();

  // Calls done(latest) from the checkpointer thread once a checkpoint covers
  // the journal as it is now: at once if the latest one already does;
  // otherwise after signing the current head and asking the peers for their
  // signatures on it (a peer that has not applied that far yet signs in a
  // later round).  Concurrent callers share one round.
  using Done = std::function<void(std::optional<Checkpoint>)>;
  void when_current(Done done);

 private:
  void run();
  void make_checkpoint(bool now = false);
  void gather();
  void gather_for(const Checkpoint& cp);  // asks the peers missing from cp's signatures
  static constexpr size_t kGatherBack = 8;  // checkpoints, newest first, still gathering signatures
  void store_locked(const Checkpoint& cp);  // appends a line; caller holds mu_
  void rewrite_locked();                    // the file := the kept checkpoints; caller holds mu_
  void load();
  void adopt_ahead();  // moves loaded checkpoints the journal now reaches into checkpoints_

  Genesis genesis_;
  uint64_t node_id_;
  KeyPair key_;
  const Ledger* ledger_;
  PeersFn peers_;
  std::string file_;
  CheckpointerOptions options_;

  mutable std::mutex mu_;
  std::map<uint64_t, Checkpoint> checkpoints_;  // by tree size; guarded by mu_
  // Loaded from the file but beyond the journal's head at start: a replica's
  // ledger reopens at its last flush and the Raft log re-applies the rest,
  // so they are checked (root) and served once the journal reaches them.
  std::map<uint64_t, Checkpoint> ahead_;  // guarded by mu_
  size_t file_lines_ = 0;                        // lines in file_; guarded by mu_
  std::condition_variable cv_;
  bool stopping_ = false;
  std::vector<Done> waiting_;  // guarded by mu_
  std::thread thread_;
  uint64_t last_made_ms_ = 0;
};

}  // namespace cl::api
