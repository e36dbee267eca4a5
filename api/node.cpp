#include "api/node.h"

#include <charconv>
#include <future>
#include <filesystem>
#include <fstream>
#include <map>

#include <rocksdb/env.h>
#include <rocksdb/rate_limiter.h>
#include <rocksdb/sst_file_manager.h>

#include "api/log.h"
#include "common/hex.h"
#include "ledger/merkle.h"
#include "ledger/replay.h"
#include "api/http_client.h"
#include "api/process_metrics.h"
#include "wallet/jcs.h"

namespace cl::api {
namespace {

using Query = std::map<std::string, std::string, std::less<>>;

constexpr uint64_t kPageDefault = 100;
constexpr uint64_t kNdjsonPageMax = 10000;  // bounds one response to ~10 MB

uint64_t wall_clock_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

std::string title_of(std::string_view code) {
  std::string t(code);
  for (char& c : t) if (c == '_') c = ' ';
  if (!t.empty()) t[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(t[0])));
  return t;
}

Response problem(const Request& req, int status, std::string_view code, const std::string& detail) {
  Response r = problem_response(status, std::string(code), title_of(code), detail, req.version(), req.keep_alive());
  if (status == 429 || status == 503) r.set(http::field::retry_after, "1");
  return r;
}

Response problem_for(const Request& req, Code code, const std::string& detail) {
  return problem(req, code_http_status(code), code_name(code), detail);
}

Response json_text_response(const Request& req, int status, std::string body,
                            std::string_view content_type = "application/json") {
  Response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, std::string(content_type));
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response json_response(const Request& req, int status, const Json& j) { return json_text_response(req, status, j.dump()); }

Query parse_query(std::string_view q) {
  Query out;
  while (!q.empty()) {
    auto amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    auto eq = part.find('=');
    out.emplace(std::string(part.substr(0, eq)), eq == std::string_view::npos ? "" : std::string(part.substr(eq + 1)));
    if (amp == std::string_view::npos) break;
    q.remove_prefix(amp + 1);
  }
  return out;
}

// Reads an optional non-negative integer parameter; false if present but not one.
bool query_u64(const Query& q, std::string_view name, std::optional<uint64_t>* out) {
  auto it = q.find(name);
  if (it == q.end()) return true;
  const std::string& v = it->second;
  uint64_t x = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) return false;
  *out = x;
  return true;
}

bool is_json_content(const Request& req) {
  auto ct = req[http::field::content_type];
  std::string media(ct.data(), ct.size());
  media = media.substr(0, media.find(';'));
  while (!media.empty() && media.back() == ' ') media.pop_back();
  return boost::beast::iequals(boost::beast::string_view(media), "application/json");
}

Json receipt_json(const Receipt& r) {
  return {{"id", id_hex(r.id)}, {"result", "ok"},          {"index", r.index},
          {"time", r.time},     {"leaf_hash", to_hex(r.leaf_hash)}, {"replay", r.replay}};
}

// {"index","leaf_hash","op","time"} built from the entry's canonical bytes
// without re-parsing: bytes are {"index":N,"op":OP,"time":T}.
std::string entries_page(const std::vector<JournalEntry>& entries, uint64_t next) {
  std::string out = "{\"entries\":[";
  for (size_t i = 0; i < entries.size(); ++i) {
    if (i) out += ',';
    out += journal_line(entries[i].bytes, entries[i].leaf_hash);
  }
  out += "],\"next\":" + std::to_string(next) + "}";
  return out;
}

Json wallet_json(const WalletId& id, const WalletState& w) {
  Json j = {{"id", id_hex(id)},
            {"kind", std::string(wallet_kind_name(w.kind))},
            {"status", w.status == WalletStatus::kFrozen ? "frozen" : "active"},
            {"key", hex_encode(w.key)},
            {"balance", w.balance}};
  j["max_balance"] = w.max_balance ? Json(*w.max_balance) : Json(nullptr);
  return j;
}

Response storage_error(const Request& req, const Status& s) {
  log_event(LogLevel::kError, "storage_error", {{"error", s.to_string()}});
  return problem(req, 503, "unavailable", s.to_string());
}

}  // namespace

const std::vector<Route>& Node::routes() {
  static const std::vector<Route> kRoutes = {
      {"POST", "/v1/ops"},
      {"POST", "/v1/ops/batch"},
      {"GET", "/v1/ops/{id}"},
      {"GET", "/v1/wallets/{id}"},
      {"GET", "/v1/wallets/{id}/entries"},
      {"GET", "/v1/journal"},
      {"GET", "/v1/checkpoint"},
      {"GET", "/v1/checkpoints"},
      {"GET", "/v1/proof/inclusion"},
      {"GET", "/v1/proof/consistency"},
      {"GET", "/v1/supply"},
      {"GET", "/v1/cluster"},
      {"POST", "/v1/cluster/members"},
      {"DELETE", "/v1/cluster/members/{id}"},
      {"GET", "/healthz"},
      {"GET", "/readyz"},
      {"GET", "/metrics"},
  };
  return kRoutes;
}

Result<std::unique_ptr<Node>> Node::open(const NodeConfig& config) {
  auto genesis = Genesis::read_file(config.genesis);
  if (!genesis) return genesis.status();
  auto key = read_key_file(config.key_file);
  if (!key) return key.status();
  bool listed = false;
  for (const auto& n : genesis->nodes) {
    if (n.id != config.node_id) continue;
    listed = true;
    if (n.key != key->public_key)
      return Status::error("invalid", "node key " + config.key_file + " is not node " + std::to_string(config.node_id) +
                                          "'s key in genesis " + config.genesis);
  }
  if (!listed && !config.join)
    return Status::error("invalid", "node " + std::to_string(config.node_id) + " is not in genesis nodes");
  if (!listed)
    log_event(LogLevel::kWarn, "node_not_in_genesis",
              {{"node", std::to_string(config.node_id)},
               {"effect", "it replicates and serves, but auditors will not count its checkpoint signatures"}});
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  if (ec) return Status::error("io", "cannot create data dir " + config.data_dir + ": " + ec.message());
  LedgerOptions lo;
  // Replicated, the Raft log is synced before anything is acknowledged and
  // entries after the ledger's stored source index are re-applied on start,
  // so the Raft log is the ledger's write-ahead log (see raft_log_is_wal).
  lo.sync = !is_replicated(config);
  lo.raft_log_is_wal = !lo.sync;
  // The log is kept until the ledger's flushed state covers it: at most ten
  // compaction intervals when memtables fill slowly.
  lo.raft_flush_lag = std::max<uint64_t>(1, 10 * config.limits.raft_compact_entries);
  // One budget for the background writes of both stores (ledger and Raft
  // log).  Replicated only: there the synced Raft appends wait behind
  // flush and compaction bursts (measured: 3 replicas compacting at once
  // stalled a loaded cluster for 100-300 ms); a single node's throughput
  // over long ingests is left uncapped.
  if (!lo.sync && config.limits.background_write_mib_per_s > 0)
    lo.background_writes.reset(rocksdb::NewGenericRateLimiter(
        static_cast<int64_t>(config.limits.background_write_mib_per_s) << 20, 50'000 /* refill every 50 ms */));
  if (!lo.sync) {
    // Two RocksDB stores (ledger and Raft log) share the process's default
    // Env, whose pools RocksDB sizes per store (one flush thread, one
    // compaction thread), not per process.  With one flush thread a 64 MiB
    // Raft-log flush (seconds under background_write_mib_per_s) held the
    // ledger's flush back until its memtables were all full, and RocksDB
    // stopped the ledger's writes: every replica at once, for 3.6 s
    // (measured after a 100k-wallet set-up).  One thread per store each.
    rocksdb::Env::Default()->IncBackgroundThreadsIfNeeded(2, rocksdb::Env::Priority::HIGH);
    rocksdb::Env::Default()->IncBackgroundThreadsIfNeeded(2, rocksdb::Env::Priority::LOW);
  }
  // Obsolete files (a Raft store's 64 MiB write-ahead log after each flush,
  // compaction inputs of tens of MiB) are truncated 4 MiB at a time, at most
  // 32 MiB/s, by a background thread instead of unlinked whole: freeing a
  // large file at once held up the synced appends on the same disk (3-node
  // fare p99 58-113 ms in the load steps that deleted them, 7-33 ms with
  // this; same runs).  Trash may reach the size of the stores' tables
  // before deletes are immediate again, so it stays bounded.
  {
    rocksdb::Status s;
    lo.file_deletes.reset(rocksdb::NewSstFileManager(rocksdb::Env::Default(), nullptr, "", 32 << 20,
                                                     /*delete_existing_trash=*/true, &s,
                                                     /*max_trash_db_ratio=*/1.0, /*bytes_max_delete_chunk=*/4 << 20));
    if (!s.ok()) return Status::error("io", "file delete scheduler: " + s.ToString());
  }
  auto ledger_stalls = std::make_shared<StoreStallListener>("ledger");
  lo.listeners.push_back(ledger_stalls);
  auto ledger = Ledger::open(config.data_dir + "/ledger", *genesis, lo);
  if (!ledger) return ledger.status();
  std::unique_ptr<Node> node(new Node(config, std::move(*genesis), *key, std::move(*ledger)));
  node->ledger_stalls_ = std::move(ledger_stalls);
  return node;
}

Node::Node(NodeConfig config, Genesis genesis, KeyPair node_key, std::unique_ptr<Ledger> ledger)
    : config_(std::move(config)), genesis_(std::move(genesis)), node_key_(node_key), ledger_(std::move(ledger)) {}

Node::~Node() { stop(); }

Status Node::start() {
  started_ = std::chrono::steady_clock::now();
  if (replicated()) {
    state_machine_ = std::make_unique<LedgerStateMachine>(ledger_.get());
    raft::RaftNodeOptions ro;
    ro.id = config_.node_id;
    // The bootstrap configuration is the same on every server, joiners
    // included: the configured peers that genesis names.  A joiner is not in
    // it, so it never campaigns until the leader's log adds it.
    for (const auto& p : config_.peers) {
      bool in_genesis = false;
      for (const auto& n : genesis_.nodes) in_genesis = in_genesis || n.id == p.id;
      if (in_genesis && !(config_.join && p.id == config_.node_id)) ro.voters.push_back(p.id);
      ro.peers[p.id] = raft::PeerAddress{p.raft.host, p.raft.port};
    }
    load_members();
    for (const auto& p : peers())
      if (!ro.peers.contains(p.id)) ro.peers[p.id] = raft::PeerAddress{p.raft.host, p.raft.port};
    ro.on_conf_change = [this](const raft::ConfChange& cc) { return on_conf_change(cc); };
    ro.on_soft_state = [](const raft::SoftState& ss) {
      log_event(LogLevel::kInfo, "raft_role",
                {{"role", raft::to_string(ss.role)}, {"term", std::to_string(ss.term)},
                 {"leader", std::to_string(ss.leader)}});
    };
    ro.slow_ready_ms = config_.limits.raft_slow_ready_ms;
    ro.on_slow_ready = [](const raft::SlowReady& r) {
      auto ms = [](double v) {
        char b[32];
        std::snprintf(b, sizeof(b), "%.1f", v);
        return std::string(b);
      };
      log_event(LogLevel::kWarn, "raft_slow_ready",
                {{"total_ms", ms(r.total_ms)}, {"persist_ms", ms(r.persist_ms)}, {"apply_ms", ms(r.apply_ms)},
                 {"cpu_ms", ms(r.cpu_ms)}, {"thread", r.applier ? "apply" : "raft"},
                 {"entries", std::to_string(r.entries)}, {"committed", std::to_string(r.committed)}});
    };
    ro.dir = config_.data_dir + "/raft";
    ro.store_io.background_writes = ledger_->options().background_writes;
    ro.store_io.file_deletes = ledger_->options().file_deletes;
    raft_stalls_ = std::make_shared<StoreStallListener>("raft");
    ro.store_io.listeners.push_back(raft_stalls_);
    ro.compact_every = config_.limits.raft_compact_entries;
    ro.fetch_snapshot = [this](const raft::SnapshotRequest& req) -> Result<raft::SnapshotMeta> {
      try {
        return fetch_state(req);
      } catch (const std::exception& e) {  // e.g. a malformed header from the leader
        return Status::error("unavailable", std::string("catch-up failed: ") + e.what());
      }
    };
    auto raft = raft::RaftNode::open(ro, state_machine_.get());
    if (!raft) return raft.status();
    raft_ = std::move(*raft);
    Status rs = raft_->start();
    if (!rs) return rs;
    committer_ = std::make_unique<RaftCommitter>(raft_.get(), ledger_.get(), state_machine_.get());
  } else {
    committer_ = std::make_unique<LocalCommitter>(ledger_.get());
  }
  PipelineOptions po;
  po.verify_threads = config_.limits.verify_threads;
  po.batch_ops_max = config_.limits.batch_ops_max;
  po.queue_ops_max = config_.limits.queue_ops_max;
  po.batch_wait_us = config_.limits.batch_wait_us;
  po.batch_wait_when_idle = replicated();
  pipeline_ = std::make_unique<Pipeline>(committer_.get(), wall_clock_ms, &metrics_, po);
  ServerOptions so;
  so.listen = config_.api;
  so.io_threads = config_.limits.io_threads;
  so.body_bytes_max = config_.limits.body_bytes_max;
  so.connections_max = config_.limits.connections_max;
  so.request_timeout_ms = config_.limits.request_timeout_ms;
  so.idle_timeout_ms = config_.limits.idle_timeout_ms;
  server_ = std::make_unique<HttpServer>(so, [this](Request&& req, Respond respond) { handle(std::move(req), std::move(respond)); },
                                         &metrics_);
  CheckpointerOptions co;
  co.interval_ms = config_.limits.checkpoint_interval_ms;
  co.entries = config_.limits.checkpoint_entries;
  co.kept = config_.limits.checkpoints_kept;
  checkpointer_ = std::make_unique<Checkpointer>(genesis_, config_.node_id, node_key_, ledger_.get(),
                                                 [this] { return peers(); }, config_.data_dir + "/checkpoints.ndjson", co);
  checkpointer_->start();
  Status s = server_->start();
  if (!s) return s;
  ready_ = true;
  auto head = ledger_->head();
  log_event(LogLevel::kInfo, "node_started",
            {{"node", std::to_string(config_.node_id)}, {"api", config_.api.host + ":" + std::to_string(server_->port())},
             {"chain", genesis_.chain}, {"journal_size", std::to_string(head.size)}, {"root", to_hex(head.root)}});
  return Status::ok();
}

void Node::stop() {
  if (stopped_.exchange(true)) return;
  ready_ = false;
  if (server_) server_->stop_accepting();
  if (checkpointer_) checkpointer_->stop();
  if (pipeline_) {
    // Every admitted op is committed and answered.  If replication cannot
    // make progress (no quorum), stop Raft after a grace period: its waiting
    // ops are answered 503 and may be retried by id.
    auto drained = std::async(std::launch::async, [this] { pipeline_->stop(); });
    if (raft_ && drained.wait_for(std::chrono::seconds(5)) != std::future_status::ready) raft_->stop();
    drained.wait();
  }
  if (raft_) {
    hand_off_leadership();
    raft_->stop();
  }
  if (server_) server_->stop(/*grace_ms=*/2000);
  auto head = ledger_->head();
  log_event(LogLevel::kInfo, "node_stopped", {{"journal_size", std::to_string(head.size)}, {"root", to_hex(head.root)}});
}

// A leader that stops gracefully hands leadership to its most up-to-date
// follower first (thesis §3.10), so writes stall for one round trip instead
// of a whole election timeout.
void Node::hand_off_leadership() {
  auto st = raft_->status();
  if (st.role != raft::Role::kLeader) return;
  raft::NodeId best = raft::kNoNode;
  raft::Index best_match = 0;
  for (const auto& [id, match] : st.match) {
    if (id == config_.node_id || match < best_match) continue;
    best = id;
    best_match = match;
  }
  if (best == raft::kNoNode) return;
  std::promise<Status> started;
  raft_->transfer_leadership(best, [&started](Status s) { started.set_value(s); });
  if (!started.get_future().get().is_ok()) return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (raft_->status().role == raft::Role::kLeader && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  log_event(LogLevel::kInfo, "leadership_handed_off", {{"to", std::to_string(best)}});
}

namespace {
Json member_json(const PeerConfig& p) { return {{"id", p.id}, {"api", p.api.to_string()}, {"raft", p.raft.to_string()}}; }
std::optional<PeerConfig> member_from_json(const Json& j) {
  if (!j.is_object() || !j.contains("id") || !j["id"].is_number_unsigned() || !j.contains("api") ||
      !j["api"].is_string() || !j.contains("raft") || !j["raft"].is_string())
    return std::nullopt;
  auto api = parse_endpoint(j["api"].get<std::string>());
  auto raft = parse_endpoint(j["raft"].get<std::string>());
  if (!api || !raft || j["id"].get<uint64_t>() == 0) return std::nullopt;
  return PeerConfig{j["id"].get<uint64_t>(), *raft, *api};
}
}  // namespace

Result<raft::SnapshotMeta> Node::fetch_state(const raft::SnapshotRequest& req) {
  // The leader that asked first, then any other member: a retry after a
  // failed (possibly half-done) install resumes from whoever answers.  Every
  // member's journal is a prefix of the same committed journal; a source
  // behind what is needed or already replayed is refused (fetch_state_from).
  std::vector<PeerConfig> sources;
  for (const auto& p : peers())
    if (p.id == req.from) sources.insert(sources.begin(), p);
    else if (p.id != config_.node_id) sources.push_back(p);
  Status last = Status::error("unavailable", "no API address for node " + std::to_string(req.from));
  for (const auto& source : sources) {
    auto meta = fetch_state_from(source, req);
    if (meta) return meta;
    last = meta.status();
    log_event(LogLevel::kWarn, "catch_up_failed", {{"from", std::to_string(source.id)}, {"error", last.to_string()}});
  }
  return last;
}

Result<raft::SnapshotMeta> Node::fetch_state_from(const PeerConfig& leader, const raft::SnapshotRequest& req) {
  log_event(LogLevel::kInfo, "catch_up_started",
            {{"from", std::to_string(req.from)}, {"raft_index", std::to_string(req.meta.index)},
             {"journal_size", std::to_string(ledger_->head().size)}});
  // The replay below writes into the ledger as it goes: recorded first, so
  // that a crash in the middle resumes the install on restart instead of
  // applying the Raft log onto a half-replayed journal (RaftNode::open).
  if (Status rec = raft_->record_install(req.meta); !rec) return rec;
  HttpClient client(leader.api.host, leader.api.port, 60000);
  JournalReplayer replayer(ledger_.get(), /*verify_signatures=*/false);
  for (int page = 0; page < 1'000'000; ++page) {
    uint64_t from = replayer.entries();
    auto r = client.request("GET", "/v1/journal?from=" + std::to_string(from), "", "application/json",
                            {{"Accept", "application/x-ndjson"}});
    if (!r) return r.status();
    if (r->status != 200) return Status::error("unavailable", "leader journal answered " + std::to_string(r->status));
    std::string_view body = r->body;
    while (!body.empty()) {
      auto nl = body.find('\n');
      std::string_view line = body.substr(0, nl);
      body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
      auto doc = parse_json_strict(line);
      if (!doc || !doc->is_object() || !doc->contains("op") || !(*doc)["index"].is_number_unsigned() ||
          !(*doc)["time"].is_number_unsigned())
        return Status::error("corruption", "leader sent a malformed journal line");
      Rejection rej;
      auto env = decode_envelope_json((*doc)["op"], &rej);
      if (!env) return Status::error("corruption", "leader sent a malformed op: " + rej.detail);
      std::string bytes = entry_bytes((*doc)["index"].get<uint64_t>(), (*doc)["time"].get<uint64_t>(), env->jcs);
      if ((*doc)["leaf_hash"] != to_hex(merkle::leaf_hash(bytes)))
        return Status::error("corruption", "leader's entry does not match its leaf hash");
      Status s = replayer.add(bytes);
      if (!s) return s;
    }
    uint64_t size = std::stoull(r->header("x-journal-size").empty() ? "0" : r->header("x-journal-size"));
    if (replayer.entries() < size) continue;  // more pages
    if (size < replayer.entries())
      return Status::error("unavailable", "node " + std::to_string(leader.id) + "'s journal is behind this one");
    Status s = replayer.finish();
    if (!s) return s;
    if (r->header("x-source-index").empty()) return Status::error("unavailable", "leader's head not available yet");
    raft::SnapshotMeta meta;
    meta.index = std::stoull(r->header("x-source-index"));
    meta.term = std::stoull(r->header("x-source-term"));
    std::string voters = r->header("x-source-voters");
    for (size_t at = 0; at < voters.size();) {
      size_t comma = voters.find(',', at);
      meta.conf.voters.push_back(std::stoull(voters.substr(at, comma - at)));
      at = comma == std::string::npos ? voters.size() : comma + 1;
    }
    if (meta.index < req.meta.index)
      return Status::error("unavailable", "node " + std::to_string(leader.id) + " has applied only raft index " +
                                              std::to_string(meta.index) + " of " + std::to_string(req.meta.index));
    uint64_t last_time = std::stoull(r->header("x-journal-last-time"));
    // Recorded before the installed state can become durable: a crash in
    // between then restarts from it (RaftNode::open) instead of refusing.
    if (Status rec = raft_->record_install(meta); !rec) return rec;
    if (meta.index > ledger_->head().source_index) {
      Status a = ledger_->advance_to(std::max(last_time, ledger_->head().last_time), meta.index);
      if (!a) return a;
    }
    // The installed state must be durable before Raft records that it is
    // there (and drops the log before it).
    if (Status d = ledger_->sync(); !d) return d;
    state_machine_->installed(meta.index);
    // Members added before the compacted point: learn their addresses from
    // the leader (the entries that carried them are gone).
    if (auto c = client.request("GET", "/v1/cluster", "", "application/json"); c && c->status == 200) {
      auto doc = parse_json_strict(c->body);
      if (doc && doc->is_object() && doc->contains("peers") && (*doc)["peers"].is_array())
        for (const auto& j : (*doc)["peers"]) {
          auto peer = member_from_json(j);
          if (peer && peer->id != config_.node_id && learn_member(*peer))
            raft_->set_peer_address(peer->id, raft::PeerAddress{peer->raft.host, peer->raft.port});
        }
    }
    log_event(LogLevel::kInfo, "catch_up_done",
              {{"raft_index", std::to_string(meta.index)}, {"journal_size", std::to_string(ledger_->head().size)},
               {"root", to_hex(ledger_->head().root)}});
    return meta;
  }
  return Status::error("unavailable", "catch-up did not converge");
}

void Node::handle(Request&& req, Respond respond) {
  std::string_view target(req.target().data(), req.target().size());
  // Absolute-form targets (RFC 9112 §3.2.2): route on the path.
  if (target.starts_with("http://") || target.starts_with("https://")) {
    auto slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
  }
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query = qpos == std::string_view::npos ? std::string_view() : target.substr(qpos + 1);
  auto method = req.method();
  auto only = [&](http::verb v) {
    if (method == v || (v == http::verb::get && method == http::verb::head)) return true;
    Response r = problem(req, 405, "method_not_allowed", std::string(req.method_string().data(), req.method_string().size()) + " is not allowed on " + std::string(path));
    r.set(http::field::allow, v == http::verb::get ? "GET, HEAD" : v == http::verb::post ? "POST" : "DELETE");
    respond(std::move(r));
    return false;
  };
  constexpr std::string_view kWallets = "/v1/wallets/";
  constexpr std::string_view kOps = "/v1/ops/";
  if (path == "/v1/ops") {
    if (only(http::verb::post)) post_op(std::move(req), std::move(respond));
  } else if (path == "/v1/ops/batch") {
    if (only(http::verb::post)) post_batch(std::move(req), std::move(respond));
  } else if (path.starts_with(kOps) && path.find('/', kOps.size()) == std::string_view::npos) {
    if (only(http::verb::get)) respond(get_op(req, path.substr(kOps.size())));
  } else if (path.starts_with(kWallets)) {
    std::string_view rest = path.substr(kWallets.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) {
      if (!only(http::verb::get)) return;
      if (raft_ && query.find("stale=true") == std::string_view::npos)
        return get_wallet_linearizable(std::move(req), std::move(respond), std::string(rest));
      respond(get_wallet(req, rest));
    } else if (rest.substr(slash) == "/entries") {
      if (only(http::verb::get)) respond(get_wallet_entries(req, rest.substr(0, slash), query));
    } else {
      respond(problem(req, 404, "not_found", "no route " + std::string(path)));
    }
  } else if (path == "/v1/journal") {
    if (only(http::verb::get)) respond(get_journal(req, query));
  } else if (path == "/v1/checkpoint") {
    if (only(http::verb::get)) get_checkpoint(std::move(req), std::move(respond), query);
  } else if (path == "/v1/checkpoints") {
    if (only(http::verb::get)) respond(get_checkpoints(req, query));
  } else if (path == "/v1/proof/inclusion") {
    if (only(http::verb::get)) respond(get_inclusion(req, query));
  } else if (path == "/v1/proof/consistency") {
    if (only(http::verb::get)) respond(get_consistency(req, query));
  } else if (path == "/v1/supply") {
    if (only(http::verb::get)) respond(get_supply(req));
  } else if (path == "/v1/cluster") {
    if (only(http::verb::get)) respond(get_cluster(req));
  } else if (path == "/v1/cluster/members") {
    if (only(http::verb::post)) change_members(std::move(req), std::move(respond), "");
  } else if (path.starts_with("/v1/cluster/members/") && path.size() > 20) {
    if (only(http::verb::delete_)) change_members(std::move(req), std::move(respond), path.substr(20));
  } else if (path == "/healthz") {
    if (only(http::verb::get)) respond(json_response(req, 200, {{"status", "ok"}}));
  } else if (path == "/readyz") {
    if (!only(http::verb::get)) return;
    if (!ready_) return respond(problem(req, 503, "not_ready", "the node is starting or stopping"));
    // A replica is ready once it knows a leader to take (or forward) writes.
    if (raft_ && raft_->status().leader == raft::kNoNode)
      return respond(problem(req, 503, "not_ready", "no leader elected yet"));
    respond(json_response(req, 200, {{"status", "ready"}}));
  } else if (path == "/metrics") {
    if (only(http::verb::get)) respond(get_metrics(req));
  } else {
    respond(problem(req, 404, "not_found", "no route " + std::string(path)));
  }
}

bool Node::redirect_unless_leader(const Request& req, const Respond& respond) {
  if (!raft_) return false;
  auto st = raft_->status();
  if (st.role == raft::Role::kLeader) return false;
  for (const auto& p : peers()) {
    if (p.id != st.leader) continue;
    Response r = problem(req, 307, "not_leader", "node " + std::to_string(config_.node_id) +
                                                     " is a follower; the leader is node " + std::to_string(p.id));
    r.set(http::field::location, "http://" + p.api.to_string() + std::string(req.target().data(), req.target().size()));
    respond(std::move(r));
    return true;
  }
  respond(problem(req, 503, "no_leader", "no leader is known yet (election in progress); retry shortly"));
  return true;
}

void Node::post_op(Request&& req, Respond respond) {
  if (redirect_unless_leader(req, respond)) return;
  if (!is_json_content(req))
    return respond(problem(req, 415, "unsupported_media_type", "Content-Type must be application/json"));
  Rejection rejection;
  // Clients that send the envelope's canonical bytes (as `cityledger sign`
  // and the SDK do) skip the general JSON parse; anything else, valid or
  // not, takes the strict decoder, which decides and explains.
  auto env = decode_envelope_canonical(req.body());
  if (!env) env = decode_envelope(req.body(), &rejection);
  if (!env) return respond(problem_for(req, rejection.code, rejection.detail));
  if (env->body.chain != genesis_.chain)
    return respond(problem_for(req, Code::kWrongChain, "body.chain is \"" + env->body.chain + "\"; this node serves \"" + genesis_.chain + "\""));
  unsigned version = req.version();
  bool keep_alive = req.keep_alive();
  std::vector<Envelope> ops;
  ops.push_back(std::move(*env));
  bool admitted = pipeline_->submit(std::move(ops), [respond, version, keep_alive](std::vector<OpOutcome> outcomes, Status s) {
    Request shape{http::verb::post, "/", version};
    shape.keep_alive(keep_alive);
    if (!s) return respond(problem(shape, 503, "unavailable", "not committed: " + s.to_string() + "; retry with the same op id"));
    const OpOutcome& o = outcomes.at(0);
    if (o.code != Code::kOk) return respond(problem_for(shape, o.code, o.detail));
    respond(json_response(shape, 200, receipt_json(o.receipt)));
  });
  if (!admitted) {
    metrics_.count_overload();
    respond(problem(req, 429, "overloaded", "the write queue is full; retry later"));
  }
}

void Node::post_batch(Request&& req, Respond respond) {
  if (redirect_unless_leader(req, respond)) return;
  if (!is_json_content(req))
    return respond(problem(req, 415, "unsupported_media_type", "Content-Type must be application/json"));
  auto doc = parse_json_strict(req.body());
  if (!doc) return respond(problem(req, 400, "malformed", doc.status().message()));
  const Json* list = &*doc;
  if (doc->is_object()) {
    if (doc->size() != 1 || !doc->contains("ops"))
      return respond(problem(req, 400, "malformed", "batch body must be a JSON array of envelopes or {\"ops\": [...]}"));
    list = &(*doc)["ops"];
  }
  if (!list->is_array()) return respond(problem(req, 400, "malformed", "batch body must be a JSON array of envelopes"));
  if (list->size() > config_.limits.batch_ops_max)
    return respond(problem(req, 413, "too_large", "a batch holds at most " + std::to_string(config_.limits.batch_ops_max) + " ops"));
  auto results = std::make_shared<std::vector<Json>>(list->size());
  std::vector<Envelope> ops;
  std::vector<size_t> slots;
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& item = (*list)[i];
    Rejection rejection;
    auto env = decode_envelope_json(item, &rejection);
    if (env && env->body.chain != genesis_.chain) {
      rejection = {Code::kWrongChain, "body.chain is \"" + env->body.chain + "\"; this node serves \"" + genesis_.chain + "\""};
      env.reset();
    }
    if (!env) {
      Json id = nullptr;
      if (item.is_object() && item.contains("body") && item["body"].is_object() && item["body"].contains("id") &&
          item["body"]["id"].is_string() && id_from_hex(item["body"]["id"].get<std::string>()))
        id = item["body"]["id"];
      (*results)[i] = {{"id", id}, {"result", std::string(code_name(rejection.code))},
                       {"status", code_http_status(rejection.code)}, {"detail", rejection.detail}};
      continue;
    }
    ops.push_back(std::move(*env));
    slots.push_back(i);
  }
  unsigned version = req.version();
  bool keep_alive = req.keep_alive();
  auto finish = [respond, results, version, keep_alive]() {
    Request shape{http::verb::post, "/", version};
    shape.keep_alive(keep_alive);
    Json out = {{"results", Json::array()}};
    for (auto& r : *results) out["results"].push_back(std::move(r));
    respond(json_response(shape, 200, out));
  };
  if (ops.empty()) return finish();
  std::vector<OpId> ids;
  for (const auto& e : ops) ids.push_back(e.body.id);
  bool admitted = pipeline_->submit(
      std::move(ops), [respond, results, slots, ids, finish, version, keep_alive](std::vector<OpOutcome> outcomes, Status s) {
        if (!s) {
          Request shape{http::verb::post, "/", version};
          shape.keep_alive(keep_alive);
          return respond(problem(shape, 503, "unavailable", "not committed: " + s.to_string() + "; retry with the same op ids"));
        }
        for (size_t k = 0; k < slots.size(); ++k) {
          const OpOutcome& o = outcomes[k];
          if (o.code == Code::kOk) {
            (*results)[slots[k]] = receipt_json(o.receipt);
          } else {
            (*results)[slots[k]] = {{"id", id_hex(ids[k])}, {"result", std::string(code_name(o.code))},
                                    {"status", code_http_status(o.code)}, {"detail", o.detail}};
          }
        }
        finish();
      });
  if (!admitted) {
    metrics_.count_overload();
    respond(problem(req, 429, "overloaded", "the write queue is full; retry later"));
  }
}

Response Node::get_op(const Request& req, std::string_view id_text) {
  auto id = id_from_hex(id_text);
  if (!id) return problem(req, 400, "malformed", "op id must be 32 lowercase hex characters");
  auto r = ledger_->receipt(*id);
  if (!r) return storage_error(req, r.status());
  if (!r->has_value()) return problem(req, 404, "not_found", "no accepted op " + std::string(id_text));
  return json_response(req, 200, receipt_json(**r));
}

// DESIGN §6: wallet reads are linearizable on the leader (ReadIndex);
// followers redirect them, or serve them stale with ?stale=true.
void Node::get_wallet_linearizable(Request&& req, Respond respond, std::string id) {
  if (redirect_unless_leader(req, respond)) return;
  auto shared = std::make_shared<Request>(std::move(req));
  raft_->read_barrier([this, shared, respond, id](Status s) {
    if (!s) return respond(problem(*shared, 503, "unavailable", "read barrier failed: " + s.to_string()));
    respond(get_wallet(*shared, id));
  });
}

Response Node::get_wallet(const Request& req, std::string_view id_text) {
  auto id = id_from_hex(id_text);
  if (!id) return problem(req, 400, "malformed", "wallet id must be 32 lowercase hex characters");
  auto w = ledger_->wallet(*id);
  if (!w) return storage_error(req, w.status());
  if (!w->has_value()) return problem_for(req, Code::kUnknownWallet, "no wallet " + std::string(id_text));
  return json_response(req, 200, wallet_json(*id, **w));
}

Response Node::get_wallet_entries(const Request& req, std::string_view id_text, std::string_view query) {
  auto id = id_from_hex(id_text);
  if (!id) return problem(req, 400, "malformed", "wallet id must be 32 lowercase hex characters");
  Query q = parse_query(query);
  std::optional<uint64_t> after, limit;
  if (!query_u64(q, "after", &after) || !query_u64(q, "limit", &limit))
    return problem(req, 400, "malformed", "after and limit must be non-negative integers");
  auto w = ledger_->wallet(*id);
  if (!w) return storage_error(req, w.status());
  if (!w->has_value()) return problem_for(req, Code::kUnknownWallet, "no wallet " + std::string(id_text));
  // limit ≥ 1: an existing wallet has at least its open_wallet entry, so an
  // empty first page never has to name a "before index 0" cursor.
  auto entries = ledger_->wallet_entries(*id, after, std::clamp<uint64_t>(limit.value_or(kPageDefault), 1, kReadEntriesMax));
  if (!entries) return storage_error(req, entries.status());
  uint64_t next = entries->empty() ? after.value_or(0) : entries->back().index;
  return json_text_response(req, 200, entries_page(*entries, next));
}

Response Node::get_journal(const Request& req, std::string_view query) {
  Query q = parse_query(query);
  std::optional<uint64_t> from, limit;
  if (!query_u64(q, "from", &from) || !query_u64(q, "limit", &limit))
    return problem(req, 400, "malformed", "from and limit must be non-negative integers");
  auto accept = req[http::field::accept];
  bool ndjson = std::string_view(accept.data(), accept.size()).find("application/x-ndjson") != std::string_view::npos;
  uint64_t start = from.value_or(0);
  if (!ndjson) {
    auto entries = ledger_->journal(start, std::min(limit.value_or(kPageDefault), kReadEntriesMax));
    if (!entries) return storage_error(req, entries.status());
    return json_text_response(req, 200, entries_page(*entries, start + entries->size()));
  }
  // NDJSON: one entry per line, up to kNdjsonPageMax per response; the
  // X-Next header says where the next page starts.  The X-Journal-* and
  // X-Source-* headers describe one consistent head (size, ledger time, the
  // replicated-log index, term and voters there) and no entry beyond it is
  // served: a replica catching up installs exactly that state.
  uint64_t applied_before = state_machine_ ? state_machine_->applied_index() : 0;
  LedgerHead head = ledger_->head();
  uint64_t source = std::max<uint64_t>(applied_before, head.source_index);
  uint64_t want = std::min(limit.value_or(kNdjsonPageMax), kNdjsonPageMax);
  want = start >= head.size ? 0 : std::min(want, head.size - start);
  std::string body;
  uint64_t next = start;
  while (want > 0) {
    auto entries = ledger_->journal(next, std::min(want, kReadEntriesMax));
    if (!entries) return storage_error(req, entries.status());
    if (entries->empty()) break;
    for (const auto& e : *entries) {
      body += journal_line(e.bytes, e.leaf_hash);
      body += '\n';
    }
    next += entries->size();
    want -= entries->size();
  }
  Response res = json_text_response(req, 200, std::move(body), "application/x-ndjson");
  res.set("X-Next", std::to_string(next));
  res.set("X-Journal-Size", std::to_string(head.size));
  res.set("X-Journal-Last-Time", std::to_string(head.last_time));
  // Not while this node installs a state itself: its journal may then run
  // ahead of its source index (the replay writes as it goes).
  if (raft_ && source > 0 && !raft_->installing()) {
    if (auto tc = raft_->term_conf_at(source); tc) {
      std::string voters;
      for (auto v : tc->second.voters) voters += (voters.empty() ? "" : ",") + std::to_string(v);
      res.set("X-Source-Index", std::to_string(source));
      res.set("X-Source-Term", std::to_string(tc->first));
      res.set("X-Source-Voters", voters);
    }
  }
  return res;
}

// GET /v1/checkpoint: the latest checkpoint, with every node signature
// gathered for it; if the journal has grown since, the node first signs its
// current head and asks the other nodes to sign it too (answered once they
// have, or have said they are not there yet).  ?tree_size=N: this node's
// signature on the tree head at N (how nodes gather each other's).
void Node::get_checkpoint(Request&& req, Respond respond, std::string_view query) {
  Query q = parse_query(query);
  std::optional<uint64_t> tree_size;
  if (!query_u64(q, "tree_size", &tree_size))
    return respond(problem(req, 400, "malformed", "tree_size must be a non-negative integer"));
  auto signed_at = [this](const Request& r, uint64_t size) {
    auto cp = checkpointer_->sign_at(size);
    if (!cp) {
      if (cp.status().code() == "not_found") return problem(r, 404, "not_found", cp.status().message());
      return storage_error(r, cp.status());
    }
    return json_response(r, 200, checkpoint_to_json(*cp));
  };
  if (tree_size) return respond(signed_at(req, *tree_size));
  auto shared = std::make_shared<Request>(std::move(req));
  checkpointer_->when_current([this, shared, respond, signed_at](std::optional<Checkpoint> cp) {
    if (!cp) return respond(signed_at(*shared, ledger_->head().size));  // nothing stored yet
    respond(json_response(*shared, 200, checkpoint_to_json(*cp)));
  });
}

// GET /v1/checkpoints?from=&limit=: stored checkpoints, oldest first, with
// tree_size ≥ from; "next" is the tree_size to ask for next.
Response Node::get_checkpoints(const Request& req, std::string_view query) {
  Query q = parse_query(query);
  std::optional<uint64_t> from, limit;
  if (!query_u64(q, "from", &from) || !query_u64(q, "limit", &limit) || (limit && (*limit == 0 || *limit > 1000)))
    return problem(req, 400, "malformed", "from must be an integer ≥ 0 and limit an integer in 1..1000");
  auto list = checkpointer_->list(from.value_or(0), limit.value_or(100));
  Json out = Json::array();
  for (const auto& cp : list) out.push_back(checkpoint_to_json(cp));
  uint64_t next = list.empty() ? from.value_or(0) : list.back().tree_size + 1;
  return json_response(req, 200, {{"checkpoints", out}, {"next", next}});
}

Response Node::get_inclusion(const Request& req, std::string_view query) {
  Query q = parse_query(query);
  std::optional<uint64_t> index, tree_size;
  if (!query_u64(q, "index", &index) || !query_u64(q, "tree_size", &tree_size) || !index)
    return problem(req, 400, "malformed", "index (and optional tree_size) must be non-negative integers");
  uint64_t size = tree_size.value_or(ledger_->head().size);
  if (size > ledger_->head().size || *index >= size)
    return problem(req, 404, "not_found", "need index < tree_size ≤ journal size");
  auto path = ledger_->inclusion_proof(*index, size);
  auto root = ledger_->root_at(size);
  auto entry = ledger_->journal(*index, 1);
  if (!path) return storage_error(req, path.status());
  if (!root) return storage_error(req, root.status());
  if (!entry || entry->empty()) return storage_error(req, entry ? Status::error("io", "entry missing") : entry.status());
  Json p = Json::array();
  for (const auto& h : *path) p.push_back(to_hex(h));
  return json_response(req, 200, {{"index", *index}, {"tree_size", size}, {"leaf_hash", to_hex(entry->at(0).leaf_hash)},
                                  {"root", to_hex(*root)}, {"path", p}});
}

Response Node::get_consistency(const Request& req, std::string_view query) {
  Query q = parse_query(query);
  std::optional<uint64_t> first, second;
  if (!query_u64(q, "first", &first) || !query_u64(q, "second", &second) || !first || !second)
    return problem(req, 400, "malformed", "first and second must be non-negative integers");
  if (*first > *second || *second > ledger_->head().size)
    return problem(req, 404, "not_found", "need first ≤ second ≤ journal size");
  auto path = ledger_->consistency_proof(*first, *second);
  auto r1 = ledger_->root_at(*first);
  auto r2 = ledger_->root_at(*second);
  if (!path) return storage_error(req, path.status());
  if (!r1) return storage_error(req, r1.status());
  if (!r2) return storage_error(req, r2.status());
  Json p = Json::array();
  for (const auto& h : *path) p.push_back(to_hex(h));
  return json_response(req, 200, {{"first", *first}, {"second", *second}, {"first_root", to_hex(*r1)},
                                  {"second_root", to_hex(*r2)}, {"path", p}});
}

Response Node::get_supply(const Request& req) {
  auto s = ledger_->head().supply;
  return json_response(req, 200, {{"issued", s.issued}, {"redeemed", s.redeemed}, {"outstanding", s.outstanding()}});
}


void Node::load_members() {
  std::ifstream in(config_.data_dir + "/members.json");
  if (!in) return;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto doc = parse_json_strict(text);
  if (!doc || !doc->is_array()) {
    log_event(LogLevel::kWarn, "members_file_ignored", {{"file", config_.data_dir + "/members.json"}});
    return;
  }
  std::lock_guard<std::mutex> lock(members_mu_);
  for (const auto& j : *doc)
    if (auto p = member_from_json(j)) added_peers_.push_back(*p);
}

void Node::save_members_locked() {
  Json all = Json::array();
  for (const auto& p : added_peers_) all.push_back(member_json(p));
  std::string path = config_.data_dir + "/members.json", tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << all.dump() << "\n";
    out.flush();
    if (!out) {
      log_event(LogLevel::kError, "members_file_write_failed", {{"file", tmp}});
      return;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) log_event(LogLevel::kError, "members_file_write_failed", {{"file", path}, {"error", ec.message()}});
}

bool Node::learn_member(const PeerConfig& peer) {
  for (const auto& q : config_.peers)
    if (q.id == peer.id) return false;
  std::lock_guard<std::mutex> lock(members_mu_);
  for (auto& q : added_peers_) {
    if (q.id != peer.id) continue;
    if (q.api.to_string() == peer.api.to_string() && q.raft.to_string() == peer.raft.to_string()) return true;
    q = peer;
    save_members_locked();
    return true;
  }
  added_peers_.push_back(peer);
  save_members_locked();
  return true;
}

void Node::forget_member(uint64_t id) {
  std::lock_guard<std::mutex> lock(members_mu_);
  auto it = std::find_if(added_peers_.begin(), added_peers_.end(), [id](const PeerConfig& p) { return p.id == id; });
  if (it == added_peers_.end()) return;
  added_peers_.erase(it);
  save_members_locked();
}

std::optional<raft::PeerAddress> Node::on_conf_change(const raft::ConfChange& cc) {
  if (cc.type == raft::ConfChangeType::kRemoveNode) {
    forget_member(cc.node);
    return std::nullopt;
  }
  auto doc = parse_json_strict(cc.context);
  std::optional<PeerConfig> peer;
  if (doc) peer = member_from_json(*doc);
  if (!peer || peer->id != cc.node) return std::nullopt;  // added without addresses (e.g. by an older build)
  learn_member(*peer);
  return raft::PeerAddress{peer->raft.host, peer->raft.port};
}

std::vector<PeerConfig> Node::peers() {
  std::vector<PeerConfig> all = config_.peers;
  std::lock_guard<std::mutex> lock(members_mu_);
  for (const auto& p : added_peers_) {
    bool known = false;
    for (const auto& q : all) known = known || q.id == p.id;
    if (!known) all.push_back(p);
  }
  return all;
}

// POST /v1/cluster/members {"id","api","raft"} adds a voter; DELETE
// /v1/cluster/members/{id} removes one.  One change at a time (the thesis'
// single-server changes): another change still pending is 409.
void Node::change_members(Request&& req, Respond respond, std::string_view member) {
  if (!raft_) return respond(problem(req, 409, "not_replicated", "this node runs without replication"));
  if (redirect_unless_leader(req, respond)) return;
  PeerConfig peer;
  raft::ConfChangeType type = raft::ConfChangeType::kRemoveNode;
  if (member.empty()) {
    if (!is_json_content(req))
      return respond(problem(req, 415, "unsupported_media_type", "Content-Type must be application/json"));
    auto doc = parse_json_strict(req.body());
    if (!doc || !doc->is_object() || doc->size() != 3 || !doc->contains("id") || !(*doc)["id"].is_number_unsigned() ||
        (*doc)["id"].get<uint64_t>() == 0 || !doc->contains("api") || !(*doc)["api"].is_string() ||
        !doc->contains("raft") || !(*doc)["raft"].is_string())
      return respond(problem(req, 400, "malformed", "body must be {\"id\": int ≥ 1, \"api\": \"host:port\", \"raft\": \"host:port\"}"));
    auto api = parse_endpoint((*doc)["api"].get<std::string>());
    auto raft = parse_endpoint((*doc)["raft"].get<std::string>());
    if (!api || !raft) return respond(problem(req, 400, "malformed", "api and raft must be host:port"));
    peer = PeerConfig{(*doc)["id"].get<uint64_t>(), *raft, *api};
    type = raft::ConfChangeType::kAddNode;
  } else {
    uint64_t id = 0;
    auto [p, ec] = std::from_chars(member.data(), member.data() + member.size(), id);
    if (ec != std::errc() || p != member.data() + member.size() || id == 0)
      return respond(problem(req, 400, "malformed", "member id must be an integer ≥ 1"));
    peer.id = id;
  }
  auto shared = std::make_shared<Request>(std::move(req));
  std::string context = type == raft::ConfChangeType::kAddNode ? member_json(peer).dump() : std::string();
  raft_->change_membership(type, peer.id, raft::PeerAddress{peer.raft.host, peer.raft.port}, std::move(context),
                           [this, shared, respond, peer, type](Status s) {
    if (!s) {
      int status = s.code() == "conf_pending" ? 409 : s.code() == "invalid" ? 400 : 503;
      return respond(problem(*shared, status, s.code(), s.message()));
    }
    log_event(LogLevel::kInfo, "membership_changed",
              {{"change", type == raft::ConfChangeType::kAddNode ? "add" : "remove"}, {"node", std::to_string(peer.id)}});
    respond(json_response(*shared, 200, {{"id", peer.id}, {"result", "ok"},
                                         {"change", type == raft::ConfChangeType::kAddNode ? "add" : "remove"}}));
  });
}

Response Node::get_cluster(const Request& req) {
  auto head = ledger_->head();
  Json peer_list = Json::array();
  raft::RaftStatus st;
  if (raft_) st = raft_->status();
  for (const auto& p : this->peers()) {
    Json peer = {{"id", p.id}, {"api", p.api.to_string()}, {"raft", p.raft.to_string()}};
    auto m = st.match.find(p.id);
    if (m != st.match.end()) peer["match_index"] = m->second;
    peer_list.push_back(peer);
  }
  if (!raft_) {
    return json_response(req, 200, {{"node", config_.node_id}, {"role", "leader"}, {"term", 1},
                                    {"leader", config_.node_id}, {"commit_index", head.size},
                                    {"applied_index", head.size}, {"peers", peer_list}});
  }
  const char* role = st.role == raft::Role::kLeader ? "leader"
                     : (st.role == raft::Role::kCandidate || st.role == raft::Role::kPreCandidate) ? "candidate"
                                                                                                   : "follower";
  return json_response(req, 200, {{"node", config_.node_id}, {"role", role}, {"term", st.term},
                                  {"leader", st.leader == raft::kNoNode ? Json(nullptr) : Json(st.leader)},
                                  {"commit_index", st.commit}, {"applied_index", st.applied}, {"peers", peer_list}});
}

Response Node::get_metrics(const Request& req) {
  metrics_.set_journal_size(ledger_->head().size);
  double uptime = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  std::string text = metrics_.render(uptime);
  std::vector<const StoreStallListener*> stores{ledger_stalls_.get()};
  if (raft_stalls_) stores.push_back(raft_stalls_.get());
  StoreStallListener::render(stores, &text);
  render_process_metrics(&text);
  return json_text_response(req, 200, text, "text/plain; version=0.0.4");
}

}  // namespace cl::api
