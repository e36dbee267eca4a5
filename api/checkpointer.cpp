#include "api/checkpointer.h"

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include "api/http_client.h"
#include "api/log.h"
#include "common/hex.h"

namespace cl::api {
namespace {
uint64_t now_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}
}  // namespace

Checkpointer::Checkpointer(const Genesis& genesis, uint64_t node_id, KeyPair key, const Ledger* ledger, PeersFn peers,
                           std::string file, CheckpointerOptions options)
    : genesis_(genesis), node_id_(node_id), key_(key), ledger_(ledger), peers_(std::move(peers)),
      file_(std::move(file)), options_(options) {
  load();
}

Checkpointer::~Checkpointer() { stop(); }

void Checkpointer::start() {
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cl-checkpoint");
    run();
  });
}

void Checkpointer::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Checkpointer::run() {
  // Rounds often enough to notice checkpoint_entries quickly and to gather
  // peers' signatures soon after they catch up; cheap when nothing changed.
  const auto tick = std::chrono::milliseconds(std::clamp<uint64_t>(options_.interval_ms / 4, 20, 250));
  while (true) {
    std::vector<Done> waiting;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, tick, [this] { return stopping_ || !waiting_.empty(); });
      if (stopping_) break;
      waiting.swap(waiting_);
    }
    if (waiting.empty()) {
      round();
      continue;
    }
    adopt_ahead();
    make_checkpoint(/*now=*/true);
    gather();
    auto cp = latest();
    for (auto& d : waiting) d(cp);
  }
  std::vector<Done> waiting;
  {
    std::lock_guard lock(mu_);
    waiting.swap(waiting_);
  }
  for (auto& d : waiting) d(latest());
}

void Checkpointer::when_current(Done done) {
  auto cp = latest();
  if (cp && cp->tree_size >= ledger_->head().size) return done(cp);
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && thread_.joinable()) {
      waiting_.push_back(std::move(done));
      cv_.notify_all();
      return;
    }
  }
  done(cp);
}

void Checkpointer::round() {
  adopt_ahead();
  make_checkpoint();
  gather();
}

Result<Checkpoint> Checkpointer::sign_at(uint64_t tree_size) const {
  auto head = ledger_->head();
  if (tree_size > head.size) return Status::error("not_found", "tree_size is beyond this node's journal");
  Checkpoint cp;
  cp.chain = genesis_.chain;
  cp.tree_size = tree_size;
  if (tree_size == head.size) {
    cp.root = head.root;
  } else {
    auto root = ledger_->root_at(tree_size);
    if (!root) return root.status();
    cp.root = *root;
  }
  if (tree_size > 0) {
    auto last = ledger_->journal(tree_size - 1, 1);
    if (!last) return last.status();
    if (last->empty()) return Status::error("io", "journal entry missing");
    cp.time = last->at(0).time;
  }
  if (auto stored = at(tree_size); stored && stored->same_head(cp)) return *stored;
  cp.signatures.push_back(sign_checkpoint(cp, node_id_, key_));
  return cp;
}

void Checkpointer::make_checkpoint(bool now) {
  auto head = ledger_->head();
  uint64_t last_size = 0;
  {
    std::lock_guard lock(mu_);
    if (!checkpoints_.empty()) last_size = checkpoints_.rbegin()->first;
  }
  if (head.size <= last_size) return;
  if (!now && head.size - last_size < options_.entries && now_ms() - last_made_ms_ < options_.interval_ms) return;
  auto cp = sign_at(head.size);
  if (!cp) {
    log_event(LogLevel::kWarn, "checkpoint_failed", {{"error", cp.status().to_string()}});
    return;
  }
  last_made_ms_ = now_ms();
  std::lock_guard lock(mu_);
  checkpoints_[cp->tree_size] = *cp;
  while (checkpoints_.size() > options_.kept) checkpoints_.erase(checkpoints_.begin());
  store_locked(*cp);
}

void Checkpointer::gather() {
  // The newest checkpoints still short of a majority, newest first: a peer
  // that lagged while one was the latest can still countersign it later.
  std::vector<Checkpoint> short_of_majority;
  {
    std::lock_guard lock(mu_);
    size_t looked = 0;
    for (auto it = checkpoints_.rbegin(); it != checkpoints_.rend() && looked < kGatherBack; ++it, ++looked)
      if (it->second.signatures.size() * 2 <= genesis_.nodes.size() || looked == 0) short_of_majority.push_back(it->second);
  }
  for (const auto& cp : short_of_majority) gather_for(cp);
}

void Checkpointer::gather_for(const Checkpoint& cp) {
  std::vector<const GenesisNode*> missing;
  for (const auto& n : genesis_.nodes) {
    bool have = false;
    for (const auto& s : cp.signatures) have = have || s.node == n.id;
    if (!have) missing.push_back(&n);
  }
  if (missing.empty()) return;
  auto peers = peers_();
  std::vector<CheckpointSignature> gained;
  for (const GenesisNode* n : missing) {
    const PeerConfig* peer = nullptr;
    for (const auto& p : peers)
      if (p.id == n->id) peer = &p;
    if (peer == nullptr || peer->id == node_id_) continue;
    HttpClient client(peer->api.host, peer->api.port, options_.peer_timeout_ms);
    auto r = client.request("GET", "/v1/checkpoint?tree_size=" + std::to_string(cp.tree_size));
    if (!r || r->status != 200) continue;  // down, or not there yet: next round
    auto doc = parse_json_strict(r->body);
    if (!doc) continue;
    auto theirs = checkpoint_from_json(*doc);
    if (!theirs) continue;
    if (!theirs->same_head(cp)) {
      // Same size, different root: a fork.  Never merge; say so loudly.
      log_event(LogLevel::kError, "checkpoint_mismatch",
                {{"peer", std::to_string(n->id)}, {"tree_size", std::to_string(cp.tree_size)},
                 {"ours", to_hex(cp.root)}, {"theirs", to_hex(theirs->root)}});
      continue;
    }
    for (const auto& s : theirs->signatures)
      if (s.node == n->id && s.key == n->key && signature_valid(cp, s)) gained.push_back(s);
  }
  if (gained.empty()) return;
  std::lock_guard lock(mu_);
  auto it = checkpoints_.find(cp.tree_size);
  if (it == checkpoints_.end()) return;
  for (const auto& s : gained) {
    bool have = false;
    for (const auto& t : it->second.signatures) have = have || t.node == s.node;
    if (!have) it->second.signatures.push_back(s);
  }
  std::sort(it->second.signatures.begin(), it->second.signatures.end(),
            [](const CheckpointSignature& a, const CheckpointSignature& b) { return a.node < b.node; });
  store_locked(it->second);
}

std::optional<Checkpoint> Checkpointer::latest() const {
  std::lock_guard lock(mu_);
  if (checkpoints_.empty()) return std::nullopt;
  return checkpoints_.rbegin()->second;
}

std::optional<Checkpoint> Checkpointer::at(uint64_t tree_size) const {
  std::lock_guard lock(mu_);
  auto it = checkpoints_.find(tree_size);
  if (it == checkpoints_.end()) return std::nullopt;
  return it->second;
}

std::vector<Checkpoint> Checkpointer::list(uint64_t from, size_t limit) const {
  std::lock_guard lock(mu_);
  std::vector<Checkpoint> out;
  for (auto it = checkpoints_.lower_bound(from); it != checkpoints_.end() && out.size() < limit; ++it)
    out.push_back(it->second);
  return out;
}

void Checkpointer::store_locked(const Checkpoint& cp) {
  std::ofstream out(file_, std::ios::app);
  out << checkpoint_to_json(cp).dump() << "\n";
  if (!out) log_event(LogLevel::kError, "checkpoint_write_failed", {{"file", file_}});
  ++file_lines_;
  if (file_lines_ > 2 * options_.kept + 16) rewrite_locked();
}

void Checkpointer::rewrite_locked() {
  const std::string tmp = file_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  bool ok = fd >= 0;
  std::string text;
  for (const auto& [size, cp] : checkpoints_) text += checkpoint_to_json(cp).dump() + "\n";
  for (const auto& [size, cp] : ahead_) text += checkpoint_to_json(cp).dump() + "\n";
  for (size_t done = 0; ok && done < text.size();) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) done += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  // The old file stays whole until the new one is durable and renamed over it.
  ok = ok && ::rename(tmp.c_str(), file_.c_str()) == 0;
  if (!ok) {
    log_event(LogLevel::kError, "checkpoint_rewrite_failed", {{"file", file_}, {"error", std::strerror(errno)}});
    ::unlink(tmp.c_str());
    return;
  }
  file_lines_ = checkpoints_.size() + ahead_.size();
}

void Checkpointer::adopt_ahead() {
  std::lock_guard lock(mu_);
  if (ahead_.empty()) return;
  auto head = ledger_->head();
  size_t dropped = 0;
  while (!ahead_.empty() && ahead_.begin()->first <= head.size) {
    Checkpoint cp = std::move(ahead_.begin()->second);
    ahead_.erase(ahead_.begin());
    auto root = cp.tree_size == head.size ? Result<Hash>(head.root) : ledger_->root_at(cp.tree_size);
    if (!root || *root != cp.root) {
      ++dropped;  // this journal does not back it (the store was replaced)
      continue;
    }
    auto [it, fresh] = checkpoints_.emplace(cp.tree_size, cp);
    // Re-made at the same size since the restart: keep the better-signed one.
    if (!fresh && cp.signatures.size() > it->second.signatures.size()) it->second = std::move(cp);
  }
  while (checkpoints_.size() > options_.kept) checkpoints_.erase(checkpoints_.begin());
  if (dropped > 0)
    log_event(LogLevel::kWarn, "checkpoint_lines_skipped", {{"file", file_}, {"count", std::to_string(dropped)}});
}

void Checkpointer::load() {
  std::ifstream in(file_);
  std::string line;
  size_t bad = 0;
  auto head = ledger_->head();
  while (std::getline(in, line)) {
    ++file_lines_;
    auto doc = parse_json_strict(line);
    auto cp = doc ? checkpoint_from_json(*doc) : Result<Checkpoint>(doc.status());
    // Keep only what this journal still backs (a torn last line, or a store
    // replaced since, must not resurface as a signed claim).
    if (cp && cp->chain == genesis_.chain && cp->tree_size > head.size) {
      ahead_[cp->tree_size] = *cp;  // checked once the journal reaches it (adopt_ahead)
      continue;
    }
    bool backed = cp && cp->chain == genesis_.chain && cp->tree_size <= head.size;
    if (backed) {
      auto root = cp->tree_size == head.size ? Result<Hash>(head.root) : ledger_->root_at(cp->tree_size);
      backed = root && *root == cp->root;
    }
    if (!backed) {
      ++bad;
      continue;
    }
    checkpoints_[cp->tree_size] = *cp;
  }
  while (checkpoints_.size() > options_.kept) checkpoints_.erase(checkpoints_.begin());
  if (bad > 0) log_event(LogLevel::kWarn, "checkpoint_lines_skipped", {{"file", file_}, {"count", std::to_string(bad)}});
}

}  // namespace cl::api
