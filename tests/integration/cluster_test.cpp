// Real-process tests of a 3-node cluster (DESIGN §7, §9, §10): leader
// election and redirects; SIGKILL of the leader and then of a follower under
// load, and successive leaders SIGKILLed/SIGTERMed under load, with no
// acknowledged op lost and byte-identical journals afterwards; catch-up of a
// node that was down; a frozen (SIGSTOP) leader or quorum; and a leader cut
// off by a network partition (test-owned TCP proxies on every Raft link).
//
// Ops are signed before any client starts; clients follow 307s and retry
// 503s and connection errors with the SAME envelope (the op id is the
// idempotency key, DESIGN §4), so every op ends up acknowledged exactly once.
// Failover times are printed (MESSAGE), never asserted (DESIGN §10).
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/http_client.h"
#include "common/hex.h"
#include "tests/integration/findings.h"
#include "tests/integration/cluster_process.h"
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"

namespace cl::test {
namespace {

using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

double ms_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
}

std::string clip(const std::string& s, size_t n = 300) { return s.size() <= n ? s : s.substr(0, n) + "…"; }


// ---------- wallets and ops ----------

KeyPair wallet_key(uint64_t n) {
  std::array<uint8_t, 32> seed{};
  seed.fill(0x5A);
  for (int i = 0; i < 8; ++i) seed[i] = static_cast<uint8_t>(n >> (8 * i));
  return key_pair_from_seed(seed);
}

// Riders 0..riders-1 (personal) and one transit operator, each rider funded.
struct Wallets {
  std::vector<WalletId> riders;
  std::vector<KeyPair> keys;
  WalletId transit{};
  KeyPair transit_key{};
  uint64_t funding = 0;
  std::vector<Envelope> opens, issues;
};

Wallets make_wallets(OpFactory& f, size_t riders, uint64_t funding) {
  Wallets w;
  w.funding = funding;
  for (size_t i = 0; i < riders; ++i) {
    w.riders.push_back(make_id(i + 1, 0xA1));
    w.keys.push_back(wallet_key(i + 1));
    w.opens.push_back(f.open_wallet(w.riders.back(), w.keys.back()));
    w.issues.push_back(f.issue(w.riders.back(), funding));
  }
  w.transit = make_id(1, 0xA2);
  w.transit_key = wallet_key(1'000'000);
  w.opens.push_back(f.open_wallet(w.transit, w.transit_key, WalletKind::kTransit));
  return w;
}

// A JSON array of envelopes, for POST /v1/ops/batch.
std::string batch_body(const std::vector<Envelope>& ops, size_t begin = 0, size_t end = SIZE_MAX) {
  end = std::min(end, ops.size());
  std::string out = "[";
  for (size_t i = begin; i < end; ++i) {
    if (i > begin) out += ',';
    out += ops[i].jcs;
  }
  return out + "]";
}

struct Receipt {
  uint64_t index = 0;
  std::string leaf_hash;
  bool replay = false;
};

// Parses a receipt for op "id"; "" on success, else what is wrong.
std::string parse_receipt(const std::string& body_or_dump, const Json& j, const std::string& id, Receipt* out) {
  if (!j.is_object() || j.value("result", "") != "ok" || j.value("id", "") != id || !j.contains("index") ||
      !j["index"].is_number_unsigned() || !j.contains("leaf_hash") || !j["leaf_hash"].is_string() ||
      !j.contains("replay") || !j["replay"].is_boolean())
    return "not a receipt for " + id + ": " + clip(body_or_dump);
  *out = Receipt{j["index"].get<uint64_t>(), j["leaf_hash"].get<std::string>(), j["replay"].get<bool>()};
  return "";
}

// Submits "ops" as batches of "per_batch" (following redirects) and requires
// every op to be accepted.  For setup and bulk commits.
void submit_batches(const Cluster& c, const std::vector<Envelope>& ops, size_t per_batch = 500) {
  for (size_t b = 0; b < ops.size(); b += per_batch) {
    std::string body = batch_body(ops, b, b + per_batch);
    std::optional<api::HttpResult> ok;
    std::string last;
    for (int attempt = 0; attempt < 50 && !ok; ++attempt) {
      auto r = api::post_following_redirects(c.leader_url(), "/v1/ops/batch", body);
      if (r && r->status == 200) {
        ok = *r;
      } else {
        last = r ? "HTTP " + std::to_string(r->status) + " " + clip(r->body) : r.status().to_string();
        std::this_thread::sleep_for(milliseconds(100));
      }
    }
    REQUIRE_MESSAGE(ok.has_value(), "batch at " << b << " was never accepted; last answer: " << last << "\n" << c.logs());
    Json j = Json::parse(ok->body, nullptr, false);
    REQUIRE_MESSAGE((j.is_object() && j.contains("results") && j["results"].is_array()), clip(ok->body));
    REQUIRE(j["results"].size() == std::min(per_batch, ops.size() - b));
    for (size_t i = 0; i < j["results"].size(); ++i)
      REQUIRE_MESSAGE(j["results"][i].value("result", "") == "ok", "op " << b + i << ": " << j["results"][i].dump());
  }
}

// ---------- a client that follows the leader ----------

// One per thread: keeps one kept-alive connection per node, follows 307s,
// and retries with the same envelope until it gets an answer that is not
// 307/429/503 or a connection error, or the deadline passes.
class ClusterClient {
 public:
  ClusterClient(const Cluster& c, uint64_t timeout_ms, uint64_t start_node)
      : cluster_(c), timeout_ms_(timeout_ms), node_(start_node) {}

  struct Outcome {
    bool answered = false;  // false: gave up at the deadline
    api::HttpResult result;
    int attempts = 0;
    std::string last_error;
  };

  Outcome post(const std::string& target, const std::string& body, SteadyClock::time_point deadline) {
    Outcome out;
    while (SteadyClock::now() < deadline) {
      ++out.attempts;
      auto r = client(node_).request("POST", target, body);
      if (!r) {
        out.last_error = "node " + std::to_string(node_) + ": " + r.status().to_string();
        drop(node_);
        next_node();
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      if (r->status == 307) {
        auto url = api::parse_url(r->header("location"));
        uint64_t to = url ? cluster_.id_of_port(url->port) : 0;
        if (!to) {
          out.answered = true;
          out.result = *r;
          return out;  // the caller flags it
        }
        node_ = to;
        ++redirects_;
        continue;
      }
      if (r->status == 503 || r->status == 429) {
        out.last_error = "node " + std::to_string(node_) + ": HTTP " + std::to_string(r->status) + " " + clip(r->body, 200);
        if (r->body.find("no_leader") != std::string::npos) next_node();
        std::this_thread::sleep_for(milliseconds(20));
        continue;
      }
      out.answered = true;
      out.result = std::move(*r);
      return out;
    }
    return out;
  }

  uint64_t redirects() const { return redirects_; }

 private:
  api::HttpClient& client(uint64_t id) {
    auto& c = clients_[id];
    if (!c) c = std::make_unique<api::HttpClient>("127.0.0.1", cluster_.api_port(id), timeout_ms_);
    return *c;
  }
  void drop(uint64_t id) { clients_.erase(id); }
  void next_node() { node_ = node_ % cluster_.size() + 1; }

  const Cluster& cluster_;
  uint64_t timeout_ms_;
  uint64_t node_;
  uint64_t redirects_ = 0;
  std::map<uint64_t, std::unique_ptr<api::HttpClient>> clients_;
};

// ---------- reading a node ----------

Json get_json(uint16_t port, const std::string& target, int* status = nullptr) {
  api::HttpClient c("127.0.0.1", port, 5000);
  auto r = c.request("GET", target);
  if (status) *status = r ? r->status : 0;
  if (!r || r->status != 200) return Json();
  return Json::parse(r->body, nullptr, false);
}

// The whole journal as NDJSON text (paged by X-Next).
std::string journal_text(uint16_t port, uint64_t expected_size) {
  api::HttpClient c("127.0.0.1", port, 30000);
  std::string all;
  uint64_t from = 0;
  while (true) {
    auto r = c.request("GET", "/v1/journal?from=" + std::to_string(from) + "&limit=10000", "", "application/json",
                       {{"Accept", "application/x-ndjson"}});
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    REQUIRE_MESSAGE(r->status == 200, clip(r->body));
    uint64_t next = std::stoull(r->header("x-next"));
    if (next == from) break;
    REQUIRE(next > from);
    all += r->body;
    from = next;
    if (from >= expected_size) break;
  }
  return all;
}

struct JournalIndex {
  std::map<std::string, std::pair<uint64_t, std::string>> by_id;  // op id → (index, leaf_hash)
  uint64_t size = 0;
  std::vector<std::string> problems;
};

JournalIndex index_journal(const std::string& ndjson) {
  JournalIndex out;
  size_t pos = 0;
  while (pos < ndjson.size()) {
    size_t nl = ndjson.find('\n', pos);
    if (nl == std::string::npos) nl = ndjson.size();
    Json e = Json::parse(ndjson.substr(pos, nl - pos), nullptr, false);
    pos = nl + 1;
    if (!e.is_object() || e.value("index", UINT64_MAX) != out.size) {
      out.problems.push_back("journal entry " + std::to_string(out.size) + " is not dense: " + clip(e.dump()));
      ++out.size;
      continue;
    }
    std::string id = e["op"]["body"].value("id", "");
    if (!out.by_id.emplace(id, std::make_pair(out.size, e.value("leaf_hash", ""))).second)
      out.problems.push_back("op " + id + " is journaled twice (second at " + std::to_string(out.size) + ")");
    ++out.size;
  }
  return out;
}

struct NodeState {
  uint64_t tree_size = 0;
  std::string root;
  uint64_t outstanding = 0;
  std::string journal;
};

// Checkpoint, supply and journal of node "id"; Σ balances (stale reads) must
// equal its outstanding supply, and the balances must equal "expected".
NodeState read_node_state(const Cluster& c, uint64_t id, const Wallets& w,
                          const std::map<WalletId, uint64_t>& expected, Findings* f) {
  NodeState s;
  std::string who = "node " + std::to_string(id) + ": ";
  Json cp = get_json(c.api_port(id), "/v1/checkpoint");
  Json supply = get_json(c.api_port(id), "/v1/supply");
  REQUIRE_MESSAGE(cp.is_object(), who << "no checkpoint");
  REQUIRE_MESSAGE(supply.is_object(), who << "no supply");
  s.tree_size = cp["tree_size"].get<uint64_t>();
  s.root = cp["root"].get<std::string>();
  s.outstanding = supply["outstanding"].get<uint64_t>();
  std::vector<WalletId> all = w.riders;
  all.push_back(w.transit);
  uint64_t sum = 0;
  for (const auto& wid : all) {
    int status = 0;
    Json j = get_json(c.api_port(id), "/v1/wallets/" + id_hex(wid) + "?stale=true", &status);
    if (!j.is_object()) {
      f->add(who + "stale read of wallet " + id_hex(wid) + " answered " + std::to_string(status));
      continue;
    }
    uint64_t b = j["balance"].get<uint64_t>();
    sum += b;
    auto e = expected.find(wid);
    if (e != expected.end() && e->second != b)
      f->add(who + "wallet " + id_hex(wid) + " balance " + std::to_string(b) + ", expected " + std::to_string(e->second));
  }
  if (sum != s.outstanding)
    f->add(who + "Σ balances " + std::to_string(sum) + " != outstanding supply " + std::to_string(s.outstanding));
  s.journal = journal_text(c.api_port(id), s.tree_size);
  return s;
}

// All live nodes: same tree size, root, supply and byte-identical journals.
// Returns node 1's (or the first live node's) state.
NodeState check_replicas_identical(const Cluster& c, const Wallets& w, const std::map<WalletId, uint64_t>& expected,
                                   Findings* f) {
  std::map<uint64_t, NodeState> states;
  for (uint64_t id : c.ids())
    if (c.live(id)) states[id] = read_node_state(c, id, w, expected, f);
  REQUIRE(!states.empty());
  const auto& [first_id, first] = *states.begin();
  for (const auto& [id, s] : states) {
    CHECK_MESSAGE(s.tree_size == first.tree_size, "node " << id << " tree_size " << s.tree_size << " vs node "
                                                         << first_id << " " << first.tree_size);
    CHECK_MESSAGE(s.root == first.root, "node " << id << " root " << s.root << " vs node " << first_id << " "
                                                << first.root);
    CHECK_MESSAGE(s.outstanding == first.outstanding, "node " << id << " outstanding differs");
    if (s.journal != first.journal) {
      size_t at = 0;
      while (at < std::min(s.journal.size(), first.journal.size()) && s.journal[at] == first.journal[at]) ++at;
      FAIL_CHECK("node " << id << "'s journal (" << s.journal.size() << " bytes) differs from node " << first_id << "'s ("
                         << first.journal.size() << " bytes) at byte " << at << ": …"
                         << clip(s.journal.substr(at > 100 ? at - 100 : 0), 300));
    }
  }
  return first;
}

uint64_t applied_index(const Cluster& c, uint64_t id) {
  auto v = c.view(id);
  return v ? v->applied_index : 0;
}

// Waits until node "id" has applied at least "index".
void wait_applied(const Cluster& c, uint64_t id, uint64_t index, milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  uint64_t seen = 0;
  while (SteadyClock::now() < deadline) {
    seen = applied_index(c, id);
    if (seen >= index) return;
    std::this_thread::sleep_for(milliseconds(20));
  }
  FAIL("node " << id << " applied only " << seen << " of " << index << " within " << timeout.count() << " ms\n"
               << c.logs());
}

// ---------- load: pre-signed ops from client threads ----------

// Fares and transfers among funded riders, never short of funds, so every
// op must end up accepted; "expected" gets the final balances.
std::vector<Envelope> make_load(OpFactory& f, const Wallets& w, size_t n, std::map<WalletId, uint64_t>* expected) {
  const size_t riders = w.riders.size();
  std::vector<Envelope> ops;
  for (const auto& r : w.riders) (*expected)[r] = w.funding;
  (*expected)[w.transit] = 0;
  ops.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    size_t from = (i * 7919) % riders;
    uint64_t amount = 1 + (i * 31) % 97;
    if (i % 3 == 0) {
      size_t to = (from + 1 + (i % (riders - 1))) % riders;
      ops.push_back(f.transfer(w.riders[from], w.keys[from], w.riders[to], amount));
      (*expected)[w.riders[to]] += amount;
    } else {
      ops.push_back(f.fare(w.riders[from], w.keys[from], w.transit, amount, "gate-" + std::to_string(i % 40)));
      (*expected)[w.transit] += amount;
    }
    (*expected)[w.riders[from]] -= amount;
  }
  return ops;
}

// "threads" clients submit ops[i] for i ≡ t (mod threads), each retried with
// the same envelope until a 200 (or the deadline), and record the receipts.
class LoadRun {
 public:
  LoadRun(const Cluster& c, const std::vector<Envelope>& ops, size_t threads, std::chrono::seconds budget)
      : c_(c), ops_(ops), acks_(ops.size()), t_start_(SteadyClock::now()) {
    auto deadline = t_start_ + budget;
    for (size_t t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t, threads, deadline] {
        ClusterClient client(c_, 3000, 1 + t % c_.size());
        for (size_t i = t; i < ops_.size(); i += threads) submit(client, i, deadline);
        redirects_ += client.redirects();
      });
    }
  }
  ~LoadRun() { join(); }

  void join() {
    for (auto& th : threads_)
      if (th.joinable()) th.join();
  }
  size_t acked() const { return acked_.load(); }
  const std::vector<std::optional<Receipt>>& acks() const { return acks_; }
  const Findings& findings() const { return findings_; }
  double elapsed_ms() const { return ms_since(t_start_); }
  uint64_t retries() const { return retries_.load(); }
  uint64_t redirects() const { return redirects_.load(); }

  // Waits (up to 40 s) until "n" ops are acknowledged or the load is over.
  void wait_acked(size_t n, const std::string& phase) const {
    auto deadline = SteadyClock::now() + std::chrono::seconds(40);
    while (acked_.load() < n && acked_.load() + given_up_.load() < ops_.size() && SteadyClock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(5));
    MESSAGE(phase << " at " << acked_.load() << " acknowledged ops, t=" << static_cast<int>(elapsed_ms()) << " ms");
  }

  // The longest time (ms) no op was acknowledged, since "since_ms" (the
  // load's clock) or the start: how long writes stalled around a fault.
  double longest_stall_ms(double since_ms = 0) const {
    std::lock_guard<std::mutex> lock(stall_mu_);
    double longest = 0, previous = since_ms;
    for (double t : ack_times_) {
      if (t < since_ms) continue;
      longest = std::max(longest, t - previous);
      previous = t;
    }
    return longest;
  }

 private:
  void submit(ClusterClient& client, size_t i, SteadyClock::time_point deadline) {
    std::string id = id_hex(ops_[i].body.id);
    auto out = client.post("/v1/ops", ops_[i].jcs, deadline);
    retries_ += out.attempts - 1;
    if (!out.answered) {
      ++given_up_;
      findings_.add("op " + std::to_string(i) + " never acknowledged before the deadline; last: " + out.last_error);
      return;
    }
    if (out.result.status != 200) {
      ++given_up_;
      findings_.add("op " + std::to_string(i) + " answered HTTP " + std::to_string(out.result.status) + " " +
                    clip(out.result.body) + " (location " + out.result.header("location") + ")");
      return;
    }
    Json j = Json::parse(out.result.body, nullptr, false);
    Receipt r;
    std::string err = parse_receipt(out.result.body, j, id, &r);
    if (!err.empty()) {
      ++given_up_;
      findings_.add("op " + std::to_string(i) + ": " + err);
      return;
    }
    acks_[i] = r;
    ++acked_;
    std::lock_guard<std::mutex> lock(stall_mu_);
    ack_times_.push_back(elapsed_ms());
  }

  const Cluster& c_;
  const std::vector<Envelope>& ops_;
  std::vector<std::optional<Receipt>> acks_;
  SteadyClock::time_point t_start_;
  std::vector<std::thread> threads_;
  Findings findings_;
  std::atomic<size_t> acked_{0}, given_up_{0};
  std::atomic<uint64_t> retries_{0}, redirects_{0};
  mutable std::mutex stall_mu_;
  std::vector<double> ack_times_;  // guarded by stall_mu_; non-decreasing
};

// After a load: every node up and converged; replicas identical with the
// model's balances and Σ balances = supply; every acknowledged op in every
// node's journal exactly once at its receipt's index and leaf hash; and a
// retry of an acknowledged op is a replay of its receipt.
void check_after_load(const Cluster& c, const Wallets& w, const std::map<WalletId, uint64_t>& expected,
                      const std::vector<Envelope>& ops, const LoadRun& load, uint64_t journal_size) {
  const auto& acks = load.acks();
  c.wait_for_leader();
  c.wait_converged(milliseconds(30000));

  Findings state_findings;
  NodeState s = check_replicas_identical(c, w, expected, &state_findings);
  CHECK_MESSAGE(state_findings.count() == 0, state_findings.summary());
  CHECK(s.tree_size == journal_size);

  JournalIndex ji = index_journal(s.journal);
  CHECK_MESSAGE(ji.problems.empty(), ji.problems.size() << " journal problems, first: "
                                                        << (ji.problems.empty() ? "" : ji.problems[0]));
  CHECK(ji.size == s.tree_size);
  Findings missing;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (!acks[i]) continue;
    std::string id = id_hex(ops[i].body.id);
    auto it = ji.by_id.find(id);
    if (it == ji.by_id.end())
      missing.add("acknowledged op " + id + " (index " + std::to_string(acks[i]->index) + ") is not in the journal");
    else if (it->second.first != acks[i]->index || it->second.second != acks[i]->leaf_hash)
      missing.add("acknowledged op " + id + " at index " + std::to_string(acks[i]->index) + " is journaled at " +
                  std::to_string(it->second.first));
  }
  CHECK_MESSAGE(missing.count() == 0, missing.summary());

  // Every node serves every receipt (GET /v1/ops/{id} is answered locally).
  Findings served;
  for (uint64_t id : c.ids()) {
    std::vector<std::thread> readers;
    constexpr size_t kReaders = 8;
    for (size_t t = 0; t < kReaders; ++t) {
      readers.emplace_back([&, t, id] {
        api::HttpClient hc("127.0.0.1", c.api_port(id), 5000);
        for (size_t i = t; i < ops.size(); i += kReaders) {
          if (!acks[i]) continue;
          auto r = hc.request("GET", "/v1/ops/" + id_hex(ops[i].body.id));
          if (!r || r->status != 200) {
            served.add("node " + std::to_string(id) + " has no receipt for acknowledged op " + std::to_string(i) + ": " +
                       (r ? std::to_string(r->status) : r.status().to_string()));
            continue;
          }
          Json j = Json::parse(r->body, nullptr, false);
          if (j.value("index", UINT64_MAX) != acks[i]->index || j.value("leaf_hash", "") != acks[i]->leaf_hash)
            served.add("node " + std::to_string(id) + " receipt for op " + std::to_string(i) + " " + clip(r->body) +
                       " differs from the acknowledged index " + std::to_string(acks[i]->index));
        }
      });
    }
    for (auto& th : readers) th.join();
  }
  CHECK_MESSAGE(served.count() == 0, served.summary());

  for (size_t i = 0; i < ops.size(); i += std::max<size_t>(1, ops.size() / 50)) {
    if (!acks[i]) continue;
    auto r = api::post_following_redirects(c.url(1 + i % c.size()), "/v1/ops", ops[i].jcs);
    REQUIRE(r.is_ok());
    REQUIRE_MESSAGE(r->status == 200, r->body);
    Receipt again;
    REQUIRE(parse_receipt(r->body, Json::parse(r->body), id_hex(ops[i].body.id), &again) == "");
    CHECK(again.replay);
    CHECK(again.index == acks[i]->index);
    CHECK(again.leaf_hash == acks[i]->leaf_hash);
  }
}

// Node "id"'s /v1/cluster as JSON text (for failure messages).
std::string leader_view_text(const Cluster& c, uint64_t id) {
  auto v = c.view(id);
  return v ? v->raw.dump() : std::string("(no answer)");
}

// ---------- tests ----------

TEST_CASE("a 3-node cluster elects one leader and followers redirect writes to it") {
  Cluster c(3);
  c.start_all();
  uint64_t leader = c.wait_for_leader(milliseconds(10000));
  std::vector<uint64_t> followers;
  for (uint64_t id : c.ids())
    if (id != leader) followers.push_back(id);
  REQUIRE(followers.size() == 2);

  // /v1/cluster: one leader, the same term everywhere, every peer listed.
  std::optional<uint64_t> term;
  for (uint64_t id : c.ids()) {
    auto v = c.view(id);
    REQUIRE(v.has_value());
    CHECK(v->node == id);
    CHECK(v->role == (id == leader ? "leader" : "follower"));
    CHECK(v->leader == leader);
    if (term) CHECK(v->term == *term);
    term = v->term;
    REQUIRE(v->raw["peers"].is_array());
    CHECK(v->raw["peers"].size() == 3);
    for (const auto& p : v->raw["peers"]) {
      uint64_t pid = p["id"].get<uint64_t>();
      CHECK(p["api"] == c.api_addr(pid));
      if (id == leader) CHECK_MESSAGE(p.contains("match_index"), "the leader's peers carry match_index: " << p.dump());
    }
    api::HttpClient hc("127.0.0.1", c.api_port(id), 2000);
    auto ready = hc.request("GET", "/readyz");
    REQUIRE(ready.is_ok());
    CHECK_MESSAGE(ready->status == 200, "node " << id << " /readyz: " << ready->body);
  }

  OpFactory f("msk-demo", 0xB1);
  KeyPair owner = wallet_key(7);
  WalletId w = make_id(7, 0xB2);
  Envelope open = f.open_wallet(w, owner);

  // A write to a follower: 307 to the leader's API, same target, not applied.
  for (uint64_t fid : followers) {
    api::HttpClient hc("127.0.0.1", c.api_port(fid), 5000);
    auto r = hc.request("POST", "/v1/ops", open.jcs);
    REQUIRE(r.is_ok());
    CHECK_MESSAGE(r->status == 307, "follower " << fid << " answered " << r->status << " " << r->body);
    CHECK(r->header("location") == c.url(leader) + "/v1/ops");
    auto b = hc.request("POST", "/v1/ops/batch", "[" + open.jcs + "]");
    REQUIRE(b.is_ok());
    CHECK(b->status == 307);
    CHECK(b->header("location") == c.url(leader) + "/v1/ops/batch");
  }
  int status = 0;
  get_json(c.api_port(leader), "/v1/ops/" + id_hex(open.body.id), &status);
  CHECK_MESSAGE(status == 404, "a redirected op must not have been applied");

  // Submitting through a follower, following the redirect, commits it.
  auto r = api::post_following_redirects(c.url(followers[0]), "/v1/ops", open.jcs);
  REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  Receipt receipt;
  REQUIRE(parse_receipt(r->body, Json::parse(r->body), id_hex(open.body.id), &receipt) == "");
  CHECK_FALSE(receipt.replay);
  auto issue = api::post_following_redirects(c.url(followers[1]), "/v1/ops", f.issue(w, 12345).jcs);
  REQUIRE(issue.is_ok());
  REQUIRE_MESSAGE(issue->status == 200, issue->body);

  // Reads: linearizable on the leader, 307 on followers unless ?stale=true.
  Json lw = get_json(c.api_port(leader), "/v1/wallets/" + id_hex(w), &status);
  REQUIRE_MESSAGE(status == 200, "leader wallet read: " << status);
  CHECK(lw["balance"] == 12345);
  for (uint64_t fid : followers) {
    api::HttpClient hc("127.0.0.1", c.api_port(fid), 5000);
    auto g = hc.request("GET", "/v1/wallets/" + id_hex(w));
    REQUIRE(g.is_ok());
    CHECK_MESSAGE(g->status == 307, "follower " << fid << " wallet read answered " << g->status);
    CHECK(g->header("location") == c.url(leader) + "/v1/wallets/" + id_hex(w));
    // A follower applies shortly after the leader answered: poll briefly.
    auto deadline = SteadyClock::now() + milliseconds(5000);
    int st = 0;
    Json sw;
    while (SteadyClock::now() < deadline) {
      sw = get_json(c.api_port(fid), "/v1/wallets/" + id_hex(w) + "?stale=true", &st);
      if (st == 200 && sw["balance"] == 12345) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    CHECK_MESSAGE(st == 200, "follower " << fid << " stale read answered " << st);
    CHECK(sw["balance"] == 12345);
    // The receipt is served locally by every node.
    Json got = get_json(c.api_port(fid), "/v1/ops/" + id_hex(open.body.id), &st);
    CHECK(st == 200);
    CHECK(got["index"] == receipt.index);
    CHECK(got["leaf_hash"] == receipt.leaf_hash);
  }
  c.wait_converged();
}

TEST_CASE("killing the leader and then a follower under load loses no acknowledged op and the replicas converge") {
  constexpr size_t kOps = 12000;
  Cluster c(3);
  c.start_all();
  c.wait_for_leader();
  OpFactory setup("msk-demo", 0xC1);
  Wallets w = make_wallets(setup, 50, 10'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);
  OpFactory f("msk-demo", 0xC2);
  std::map<WalletId, uint64_t> expected;
  std::vector<Envelope> ops = make_load(f, w, kOps, &expected);

  LoadRun load(c, ops, 8, std::chrono::seconds(70));

  // 1. SIGKILL the leader; time the election of the next one.
  load.wait_acked(kOps * 15 / 100, "killing the leader");
  uint64_t old_leader = c.wait_for_leader();
  auto t_kill = SteadyClock::now();
  double kill_at = load.elapsed_ms();
  c.kill_hard(old_leader);
  uint64_t new_leader = c.wait_for_leader(milliseconds(10000));
  double failover_ms = ms_since(t_kill);
  CHECK(new_leader != old_leader);
  MESSAGE("failover ms: " << failover_ms << " (leader " << old_leader << " SIGKILLed, node " << new_leader
                          << " elected)");

  // 2. Restart it; once it has caught up, SIGKILL a follower that was never killed.
  load.wait_acked(kOps * 30 / 100, "restarting the old leader");
  MESSAGE("longest write stall after the leader was killed: " << load.longest_stall_ms(kill_at) << " ms");
  c.start(old_leader);
  auto lv = c.view(new_leader);
  REQUIRE(lv.has_value());
  wait_applied(c, old_leader, lv->commit_index, milliseconds(20000));
  uint64_t leader_now = c.wait_for_leader();
  uint64_t follower = 0;
  for (uint64_t id : c.ids())
    if (id != leader_now && id != old_leader) follower = id;
  if (!follower)  // the old leader leads again: kill the other follower
    for (uint64_t id : c.ids())
      if (id != leader_now) follower = id;
  load.wait_acked(kOps * 45 / 100, "killing a follower");
  c.kill_hard(follower);
  MESSAGE("follower " << follower << " SIGKILLed (leader " << leader_now << ")");

  // 3. Restart it.
  load.wait_acked(kOps * 65 / 100, "restarting the follower");
  c.start(follower);

  load.join();
  MESSAGE("load: " << load.acked() << " of " << kOps << " acknowledged in " << load.elapsed_ms() << " ms, "
                   << load.retries() << " retries, " << load.redirects() << " redirects");
  CHECK_MESSAGE(load.findings().count() == 0, load.findings().summary() << "\n" << c.logs());
  CHECK(load.acked() == kOps);
  check_after_load(c, w, expected, ops, load, w.opens.size() + w.issues.size() + kOps);
}

TEST_CASE("successive leaders stopped under load (SIGKILL and SIGTERM, each restarted) lose no acknowledged op") {
  constexpr size_t kOps = 8000;
  constexpr int kRounds = 4;
  Cluster c(3);
  c.start_all();
  c.wait_for_leader();
  OpFactory setup("msk-demo", 0xF1);
  Wallets w = make_wallets(setup, 30, 10'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);
  OpFactory f("msk-demo", 0xF2);
  std::map<WalletId, uint64_t> expected;
  std::vector<Envelope> ops = make_load(f, w, kOps, &expected);

  LoadRun load(c, ops, 8, std::chrono::seconds(60));
  std::vector<double> failovers;
  for (int round = 0; round < kRounds; ++round) {
    load.wait_acked(kOps * (10 + 20 * round) / 100, "round " + std::to_string(round));
    uint64_t leader = c.wait_for_leader();
    bool graceful = round % 2 == 1;
    double stop_ms = 0;
    if (graceful) {
      auto ts = SteadyClock::now();
      int status = c.stop(leader);
      stop_ms = ms_since(ts);
      CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                    "leader " << leader << " SIGTERM exit status " << status << "\n" << c.logs());
    } else {
      c.kill_hard(leader);
    }
    auto t0 = SteadyClock::now();  // the leader is gone
    uint64_t next = c.wait_for_leader(milliseconds(10000));
    failovers.push_back(ms_since(t0));
    CHECK(next != leader);
    MESSAGE("round " << round << ": leader " << leader
                     << (graceful ? " SIGTERMed (exited after " + std::to_string(static_cast<int>(stop_ms)) + " ms)"
                                  : std::string(" SIGKILLed"))
                     << ", node " << next << " elected " << failovers.back() << " ms after it was gone");
    c.start(leader);
    auto v = c.view(next);
    REQUIRE(v.has_value());
    wait_applied(c, leader, v->commit_index, milliseconds(20000));
  }
  load.join();
  MESSAGE("load: " << load.acked() << " of " << kOps << " acknowledged in " << load.elapsed_ms() << " ms, "
                   << load.retries() << " retries");
  CHECK_MESSAGE(load.findings().count() == 0, load.findings().summary() << "\n" << c.logs());
  CHECK(load.acked() == kOps);
  check_after_load(c, w, expected, ops, load, w.opens.size() + w.issues.size() + kOps);
}

// A follower is stopped, kOps commit without it, and it restarts.  With
// "limits_json" compacting the Raft log, the entries it misses are gone
// from every log, so it must install the leader's state instead.  With
// "kill_in_install", it is SIGKILLed as soon as it logs that its install
// started (mostly in the middle of its replay), and restarted.
void catch_up_after_downtime(const std::string& limits_json, size_t ops_per_request, bool kill_in_install = false) {
  constexpr size_t kRiders = 20;
  // CL_CLUSTER_CATCHUP_OPS=100000 for the issue's full-size run (~1 min).
  const size_t kOps = std::getenv("CL_CLUSTER_CATCHUP_OPS") ? std::stoull(std::getenv("CL_CLUSTER_CATCHUP_OPS")) : 2000;
  Cluster c(3, limits_json);
  c.start_all();
  uint64_t leader = c.wait_for_leader();
  OpFactory setup("msk-demo", 0xD1);
  Wallets w = make_wallets(setup, kRiders, 1'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);
  c.wait_converged();

  uint64_t down = leader % 3 + 1;  // a follower
  int status = c.stop(down);
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0), "SIGTERM exit status " << status << "\n" << c.logs());
  uint64_t applied_before = 0;
  {
    auto v = c.view(leader);
    REQUIRE(v.has_value());
    applied_before = v->applied_index;
  }

  OpFactory load("msk-demo", 0xD2);
  std::vector<Envelope> ops;
  std::map<WalletId, uint64_t> expected;
  for (const auto& r : w.riders) expected[r] = 1'000'000;
  expected[w.transit] = 0;
  for (size_t i = 0; i < kOps; ++i) {
    size_t from = i % kRiders, to = (i * 7 + 3) % kRiders;
    if (to == from) to = (to + 1) % kRiders;
    uint64_t amount = 1 + i % 50;
    if (i % 2) {
      ops.push_back(load.transfer(w.riders[from], w.keys[from], w.riders[to], amount));
      expected[w.riders[to]] += amount;
    } else {
      ops.push_back(load.fare(w.riders[from], w.keys[from], w.transit, amount));
      expected[w.transit] += amount;
    }
    expected[w.riders[from]] -= amount;
  }
  auto t0 = SteadyClock::now();
  submit_batches(c, ops, ops_per_request);
  MESSAGE(kOps << " ops committed by 2 of 3 nodes in " << ms_since(t0) << " ms");
  uint64_t target = c.wait_converged();  // the two live nodes
  CHECK(target > applied_before);

  auto t1 = SteadyClock::now();
  c.start(down);
  if (kill_in_install) {
    bool started = false;
    for (int i = 0; i < 20000 && !started; ++i) {
      started = read_file(c.log_path(down)).find("event=catch_up_started") != std::string::npos;
      if (!started) std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
    REQUIRE_MESSAGE(started, "the restarted node never began an install\n" << c.logs());
    c.kill_hard(down);
    bool done = read_file(c.log_path(down)).find("event=catch_up_done") != std::string::npos;
    MESSAGE("killed node " << down << " during its install (" << std::string(done ? "after" : "before")
                            << " it finished)");
    c.start(down);
  }
  wait_applied(c, down, target, milliseconds(30000));
  MESSAGE("node " << down << " caught up " << target - applied_before << " raft entries in " << ms_since(t1) << " ms");
  c.wait_for_leader();
  c.wait_converged();
  Findings f;
  NodeState s = check_replicas_identical(c, w, expected, &f);
  CHECK_MESSAGE(f.count() == 0, f.summary());
  CHECK(s.tree_size == w.opens.size() + w.issues.size() + kOps);
  int st = 0;
  Json last = get_json(c.api_port(down), "/v1/ops/" + id_hex(ops.back().body.id), &st);
  CHECK_MESSAGE(st == 200, "the restarted node serves the last op's receipt");
  // Which path it took: replaying the leader's log, or installing its state.
  bool installed = read_file(c.log_path(down)).find("event=catch_up_done") != std::string::npos;
  CHECK_MESSAGE(installed == !limits_json.empty(), "catch-up by state install: " << installed << "\n" << c.logs());
}

TEST_CASE("a node that was down while ops committed catches up on restart") {
  catch_up_after_downtime("", 500);
}

TEST_CASE("a node that was down while the others compacted their Raft logs installs the leader's state and catches up") {
  catch_up_after_downtime(R"({"raft_compact_entries":10})", 10);
}

TEST_CASE("a node killed while it installs the leader's state restarts, finishes the install and catches up") {
  catch_up_after_downtime(R"({"raft_compact_entries":10})", 10, /*kill_in_install=*/true);
}

TEST_CASE("a minority partition cannot commit; the majority keeps going") {
  Cluster c(3);
  c.start_all();
  uint64_t leader = c.wait_for_leader();
  OpFactory f("msk-demo", 0xE1);
  Wallets w = make_wallets(f, 4, 1'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);

  // The leader frozen (SIGSTOP): the other two elect a leader and commit.
  c.pause(leader);
  auto t0 = SteadyClock::now();
  uint64_t majority_leader = c.wait_for_leader(milliseconds(10000));
  MESSAGE("failover ms (leader SIGSTOPped): " << ms_since(t0));
  CHECK(majority_leader != leader);
  Envelope during = f.transfer(w.riders[0], w.keys[0], w.riders[1], 10);
  auto r = api::post_following_redirects(c.url(majority_leader), "/v1/ops", during.jcs);
  REQUIRE(r.is_ok());
  CHECK_MESSAGE(r->status == 200, r->body);
  c.resume(leader);
  c.wait_for_leader();
  c.wait_converged();

  // Both followers frozen: the leader alone must not acknowledge a write or
  // serve a linearizable read.
  leader = c.wait_for_leader();
  std::vector<uint64_t> followers;
  for (uint64_t id : c.ids())
    if (id != leader) followers.push_back(id);
  for (uint64_t id : followers) c.pause(id);
  Envelope cut_off = f.transfer(w.riders[2], w.keys[2], w.riders[3], 20);
  {
    api::HttpClient hc("127.0.0.1", c.api_port(leader), 3000);
    auto t = SteadyClock::now();
    auto wr = hc.request("POST", "/v1/ops", cut_off.jcs);
    CHECK_MESSAGE((!wr.is_ok() || wr->status != 200), "a leader without a quorum acknowledged a write: "
                                                          << wr->body << " (after " << ms_since(t) << " ms)\n"
                                                          << "leader's view: " << leader_view_text(c, leader) << "\n"
                                                          << c.logs(60));
    MESSAGE("write to the cut-off leader: " << (wr ? "HTTP " + std::to_string(wr->status) : wr.status().to_string())
                                            << " after " << ms_since(t) << " ms");
    api::HttpClient rc("127.0.0.1", c.api_port(leader), 3000);
    auto rd = rc.request("GET", "/v1/wallets/" + id_hex(w.riders[2]));
    CHECK_MESSAGE((!rd.is_ok() || rd->status != 200), "a leader without a quorum served a linearizable read: " << rd->body);
    // It steps down (check-quorum) rather than keep claiming leadership.
    auto deadline = SteadyClock::now() + milliseconds(3000);
    std::string role;
    while (SteadyClock::now() < deadline) {
      auto v = c.view(leader);
      if (v) role = v->role;
      if (role != "leader") break;
      std::this_thread::sleep_for(milliseconds(20));
    }
    CHECK_MESSAGE(role != "leader", "the cut-off leader still claims leadership after 3 s");
  }
  for (uint64_t id : followers) c.resume(id);
  c.wait_for_leader();

  // Healed: the same envelope commits (exactly once, whether or not the
  // cut-off leader's entry survived).
  auto deadline = SteadyClock::now() + std::chrono::seconds(10);
  std::optional<api::HttpResult> ok;
  while (!ok && SteadyClock::now() < deadline) {
    auto again = api::post_following_redirects(c.leader_url(), "/v1/ops", cut_off.jcs);
    if (again && again->status == 200) ok = *again;
    else std::this_thread::sleep_for(milliseconds(50));
  }
  REQUIRE_MESSAGE(ok.has_value(), "the write never committed after healing\n" << c.logs());
  c.wait_converged();
  std::map<WalletId, uint64_t> expected = {{w.riders[0], 1'000'000 - 10}, {w.riders[1], 1'000'000 + 10},
                                           {w.riders[2], 1'000'000 - 20}, {w.riders[3], 1'000'000 + 20}};
  Findings fs;
  NodeState s = check_replicas_identical(c, w, expected, &fs);
  CHECK_MESSAGE(fs.count() == 0, fs.summary());
  CHECK(s.tree_size == w.opens.size() + w.issues.size() + 2);
  JournalIndex ji = index_journal(s.journal);
  CHECK(ji.problems.empty());
  CHECK(ji.by_id.count(id_hex(cut_off.body.id)) == 1);
}

TEST_CASE("a leader cut off by a network partition under load acknowledges nothing; the majority goes on; it rejoins") {
  constexpr size_t kOps = 6000;
  ClusterOptions options;
  options.proxied_raft = true;
  Cluster c(options);
  c.start_all();
  c.wait_for_leader();
  OpFactory setup("msk-demo", 0x91);
  Wallets w = make_wallets(setup, 30, 10'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);
  OpFactory f("msk-demo", 0x92);
  std::map<WalletId, uint64_t> expected;
  std::vector<Envelope> ops = make_load(f, w, kOps, &expected);
  // Sent only to the cut-off leader: it may append it, never commit it.
  OpFactory extra("msk-demo", 0x93);
  Envelope stranded = extra.transfer(w.riders[0], w.keys[0], w.riders[1], 5);

  LoadRun load(c, ops, 8, std::chrono::seconds(60));
  load.wait_acked(kOps * 20 / 100, "partitioning the leader away");
  uint64_t old_leader = c.wait_for_leader();
  std::vector<uint64_t> majority;
  for (uint64_t id : c.ids())
    if (id != old_leader) majority.push_back(id);
  auto t0 = SteadyClock::now();
  double cut_at = load.elapsed_ms();
  c.partition({old_leader});

  // The cut-off leader takes the write but must not acknowledge it.
  std::thread stranded_writer([&] {
    api::HttpClient hc("127.0.0.1", c.api_port(old_leader), 5000);
    auto r = hc.request("POST", "/v1/ops", stranded.jcs);
    CHECK_MESSAGE((!r.is_ok() || r->status != 200), "a leader cut off from its quorum acknowledged a write: "
                                                         << (r ? r->body : ""));
    MESSAGE("write to the cut-off leader: " << (r ? "HTTP " + std::to_string(r->status) : r.status().to_string())
                                            << " after " << ms_since(t0) << " ms");
  });
  uint64_t new_leader = c.wait_for_leader(milliseconds(10000), majority);
  MESSAGE("failover ms (leader partitioned): " << ms_since(t0) << " (node " << new_leader << " elected)");
  // The old leader steps down (check-quorum) instead of claiming leadership.
  {
    auto deadline = SteadyClock::now() + milliseconds(5000);
    std::string role = "leader";
    while (SteadyClock::now() < deadline && role == "leader") {
      auto v = c.view(old_leader);
      role = v ? v->role : "?";
      if (role == "leader") std::this_thread::sleep_for(milliseconds(20));
    }
    CHECK_MESSAGE(role != "leader", "the partitioned leader still says it leads after 5 s");
    MESSAGE("the partitioned leader stepped down after " << ms_since(t0) << " ms");
    api::HttpClient rc("127.0.0.1", c.api_port(old_leader), 3000);
    auto rd = rc.request("GET", "/v1/wallets/" + id_hex(w.riders[0]));
    CHECK_MESSAGE((!rd.is_ok() || rd->status != 200), "a partitioned node served a linearizable read: " << rd->body);
  }
  stranded_writer.join();
  load.wait_acked(load.acked() + kOps * 20 / 100, "healing the partition");
  MESSAGE("longest write stall after the partition: " << load.longest_stall_ms(cut_at) << " ms");
  c.heal();
  auto t_heal = SteadyClock::now();
  uint64_t after = c.wait_for_leader(milliseconds(10000));
  MESSAGE("after healing node " << after << " leads (" << ms_since(t_heal) << " ms)");
  // Pre-vote: the rejoining node's campaigns while cut off must not depose
  // the majority's leader.
  CHECK_MESSAGE(after == new_leader, "healing the partition deposed the majority's leader " << new_leader);

  load.join();
  MESSAGE("load: " << load.acked() << " of " << kOps << " acknowledged in " << load.elapsed_ms() << " ms, "
                   << load.retries() << " retries");
  CHECK_MESSAGE(load.findings().count() == 0, load.findings().summary() << "\n" << c.logs());
  CHECK(load.acked() == kOps);

  // The stranded op was never committed: it is in no journal, and it can
  // be submitted again, for the first time.
  c.wait_converged();
  for (uint64_t id : c.ids()) {
    int st = 0;
    get_json(c.api_port(id), "/v1/ops/" + id_hex(stranded.body.id), &st);
    CHECK_MESSAGE(st == 404, "node " << id << " has the op only the cut-off leader ever saw (HTTP " << st << ")");
  }
  check_after_load(c, w, expected, ops, load, w.opens.size() + w.issues.size() + kOps);
  auto r = api::post_following_redirects(c.leader_url(), "/v1/ops", stranded.jcs);
  REQUIRE(r.is_ok());
  CHECK_MESSAGE(r->status == 200, r->body);
  Receipt fresh;
  REQUIRE(parse_receipt(r->body, Json::parse(r->body), id_hex(stranded.body.id), &fresh) == "");
  CHECK_FALSE(fresh.replay);
}

// A membership change proposed to a leader that a partition has just cut
// off is appended to its log only.  The majority elects a leader whose
// entries replace it; once healed, the old leader learns that the entry at
// that index committed with another term, and must answer the change
// "lost" (503), never "ok": the member was not added anywhere.
TEST_CASE("a membership change proposed to a leader cut off by a partition is answered 'lost' once healed, and made nowhere") {
  ClusterOptions options;
  options.proxied_raft = true;
  options.limits_json = R"({"request_timeout_ms": 30000})";
  Cluster c(options);
  c.start_all();
  const uint64_t old_leader = c.wait_for_leader();
  OpFactory f("msk-demo", 0xA1);
  Wallets w = make_wallets(f, 4, 1'000'000);
  submit_batches(c, w.opens);  // an entry of the leader's term is committed: changes are allowed
  std::vector<uint64_t> majority;
  for (uint64_t id : c.ids())
    if (id != old_leader) majority.push_back(id);

  MESSAGE("cutting off leader " << old_leader);
  c.partition({old_leader});
  constexpr uint64_t kGhost = 9;
  std::optional<api::HttpResult> answer;
  std::string failure;
  std::thread change([&] {
    api::HttpClient hc("127.0.0.1", c.api_port(old_leader), 40000);
    const std::string member = Json{{"id", kGhost}, {"api", "127.0.0.1:9"}, {"raft", "127.0.0.1:9"}}.dump();
    auto r = hc.request("POST", "/v1/cluster/members", member);
    if (r) answer = *r;
    else failure = r.status().to_string();
  });
  struct JoinOnExit {  // also when a REQUIRE below fails
    std::thread& t;
    ~JoinOnExit() {
      if (t.joinable()) t.join();
    }
  } join_on_exit{change};
  // The majority elects a leader and commits its own entries at the index
  // the cut-off leader used.
  const uint64_t new_leader = c.wait_for_leader(milliseconds(10000), majority);
  MESSAGE("node " << new_leader << " leads the majority");
  for (const Envelope& e : w.issues) {
    auto r = api::post_following_redirects(c.url(new_leader), "/v1/ops", e.jcs);
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    REQUIRE_MESSAGE(r->status == 200, clip(r->body));
  }
  c.heal();
  MESSAGE("healed");
  change.join();
  REQUIRE_MESSAGE(answer.has_value(), "no answer to the membership change: " << failure);
  CHECK_MESSAGE(answer->status != 307, "the change reached the old leader only after it stepped down: "
                                           << clip(answer->body));
  CHECK_MESSAGE(answer->status == 503, "a change that was never made was answered " << answer->status << " "
                                                                                    << clip(answer->body) << "\n"
                                                                                    << c.logs(40));
  CHECK_MESSAGE(answer->body.find("\"lost\"") != std::string::npos, clip(answer->body));
  c.wait_converged();
  CHECK(c.wait_for_leader() == new_leader);
  for (uint64_t id : c.ids()) {
    int st = 0;
    Json cluster = get_json(c.api_port(id), "/v1/cluster", &st);
    REQUIRE(st == 200);
    for (const auto& p : cluster["peers"])
      CHECK_MESSAGE(p["id"].get<uint64_t>() != kGhost, "node " << id << " lists the member that was never added");
  }
}

// A 4th node joins a running 3-node cluster (config "join": true, added by
// POST /v1/cluster/members on the leader): it catches up, serves stale
// reads, every node's /v1/cluster lists it, and after the leader that added
// it is SIGKILLed it keeps replicating (with 4 voters, 3 survivors are the
// quorum, so nothing commits without it).  The Cluster is made for 4 nodes,
// then its files are rewritten: genesis and the configs of nodes 1-3 name
// only nodes 1-3; node 4's config lists all 4 and joins.
TEST_CASE("a 4th node added live catches up, serves reads, and keeps following after the leader that added it dies") {
  constexpr uint64_t kNew = 4;
  constexpr size_t kBefore = 3000, kAfterAdd = 1500, kAfterKill = 1500;
  Cluster c(4);
  const std::string cfg1 = c.config_path(1);
  write_text(cfg1.substr(0, cfg1.rfind('/')) + "/genesis.json", cluster_genesis_json(3));
  for (uint64_t id : c.ids()) {
    Json cfg = Json::parse(read_file(c.config_path(id)));
    if (id == kNew) {
      cfg["join"] = true;
    } else {
      Json peers = Json::array();
      for (const auto& p : cfg["peers"])
        if (p["id"].get<uint64_t>() != kNew) peers.push_back(p);
      cfg["peers"] = peers;
    }
    write_text(c.config_path(id), cfg.dump());
  }
  const std::string new_raft = Json::parse(read_file(c.config_path(kNew)))["raft"].get<std::string>();
  const std::vector<uint64_t> originals = {1, 2, 3};
  for (uint64_t id : originals) c.start(id);
  c.wait_for_leader(milliseconds(10000));

  OpFactory setup("msk-demo", 0x71);
  Wallets w = make_wallets(setup, 30, 10'000'000);
  submit_batches(c, w.opens);
  submit_batches(c, w.issues);
  OpFactory f("msk-demo", 0x72);
  std::map<WalletId, uint64_t> expected;
  const std::vector<Envelope> all_ops = make_load(f, w, kBefore + kAfterAdd + kAfterKill, &expected);
  const std::vector<Envelope> ops_a(all_ops.begin(), all_ops.begin() + kBefore);
  const std::vector<Envelope> ops_b(all_ops.begin() + kBefore, all_ops.begin() + kBefore + kAfterAdd);
  const std::vector<Envelope> ops_c(all_ops.begin() + kBefore + kAfterAdd, all_ops.end());
  auto run_load = [&](const std::vector<Envelope>& ops, const std::string& phase) {
    auto run = std::make_unique<LoadRun>(c, ops, 8, std::chrono::seconds(10));
    run->join();
    MESSAGE(phase << ": " << run->acked() << " of " << ops.size() << " acknowledged in " << run->elapsed_ms()
                  << " ms, " << run->retries() << " retries");
    CHECK_MESSAGE(run->findings().count() == 0, phase << ": " << run->findings().summary() << "\n" << c.logs());
    CHECK_MESSAGE(run->acked() == ops.size(), phase << ": only " << run->acked() << " of " << ops.size()
                                                    << " ops acknowledged");
    return run;
  };

  // 1. Ops on the 3 nodes; node 4 starts (it knows no leader: it is no
  // member yet) and is added on the leader; more ops.
  auto load_a = run_load(ops_a, "before the add");
  const uint64_t adder = c.wait_for_leader();
  c.start(kNew);
  const std::string member = Json{{"id", kNew}, {"api", c.api_addr(kNew)}, {"raft", new_raft}}.dump();
  for (uint64_t id : originals) {  // a follower redirects the change to the leader, changing nothing
    if (id == adder) continue;
    api::HttpClient hc("127.0.0.1", c.api_port(id), 5000);
    auto r = hc.request("POST", "/v1/cluster/members", member);
    REQUIRE_MESSAGE(r.is_ok(), "POST /v1/cluster/members on follower " << id << ": " << r.status().to_string());
    CHECK_MESSAGE(r->status == 307, "follower " << id << " answered " << r->status << " " << clip(r->body));
    CHECK(r->header("location") == c.url(adder) + "/v1/cluster/members");
    break;
  }
  {
    auto t0 = SteadyClock::now();
    api::HttpClient hc("127.0.0.1", c.api_port(adder), 10000);
    auto r = hc.request("POST", "/v1/cluster/members", member);
    REQUIRE_MESSAGE(r.is_ok(), "POST /v1/cluster/members on leader " << adder << ": " << r.status().to_string() << "\n"
                                                                     << c.logs());
    REQUIRE_MESSAGE(r->status == 200, "POST /v1/cluster/members " << member << " on leader " << adder << " answered "
                                                                  << r->status << " " << clip(r->body) << "\n"
                                                                  << c.logs());
    MESSAGE("node " << kNew << " added by leader " << adder << " in " << ms_since(t0) << " ms");
  }
  auto load_b = run_load(ops_b, "after the add");

  // 2. Node 4 catches up: same applied index, byte-identical journal, same
  // root; its stale reads equal the leader's linearizable reads.
  {
    auto lv = c.view(adder);
    REQUIRE_MESSAGE(lv.has_value(), "leader " << adder << " does not answer /v1/cluster");
    auto t0 = SteadyClock::now();
    wait_applied(c, kNew, lv->commit_index, milliseconds(10000));
    MESSAGE("node " << kNew << " caught up to index " << lv->commit_index << " in " << ms_since(t0) << " ms");
  }
  c.wait_converged(milliseconds(10000));
  {
    Findings fs;
    NodeState s = check_replicas_identical(c, w, {}, &fs);  // all 4 nodes
    CHECK_MESSAGE(fs.count() == 0, fs.summary());
    CHECK(s.tree_size == w.opens.size() + w.issues.size() + kBefore + kAfterAdd);
    std::vector<WalletId> read = {w.riders[0], w.riders[17], w.transit};
    for (const auto& wid : read) {
      int ls = 0, ns = 0;
      Json lw = get_json(c.api_port(adder), "/v1/wallets/" + id_hex(wid), &ls);
      Json nw = get_json(c.api_port(kNew), "/v1/wallets/" + id_hex(wid) + "?stale=true", &ns);
      REQUIRE_MESSAGE(ls == 200, "leader " << adder << " wallet read answered " << ls);
      REQUIRE_MESSAGE(ns == 200, "node " << kNew << " stale wallet read answered " << ns);
      CHECK_MESSAGE(nw["balance"] == lw["balance"], "wallet " << id_hex(wid) << ": node " << kNew << " balance "
                                                             << nw["balance"] << ", leader " << lw["balance"]);
    }
  }

  // 3. Every node's /v1/cluster lists nodes 1-4 with node 4's addresses,
  // followers included (they learn it from the log; poll briefly).
  {
    std::map<uint64_t, std::string> wrong;
    auto deadline = SteadyClock::now() + milliseconds(5000);
    do {
      wrong.clear();
      for (uint64_t id : c.ids()) {
        auto v = c.view(id);
        if (!v || !v->raw["peers"].is_array()) {
          wrong[id] = "no /v1/cluster answer";
          continue;
        }
        std::set<uint64_t> listed;
        bool new_ok = false;
        for (const auto& p : v->raw["peers"]) {
          uint64_t pid = p.value("id", uint64_t{0});
          listed.insert(pid);
          if (pid == kNew) new_ok = p.value("api", "") == c.api_addr(kNew) && p.value("raft", "") == new_raft;
        }
        if (listed != std::set<uint64_t>{1, 2, 3, 4} || !new_ok)
          wrong[id] = "(" + v->role + ") peers " + v->raw["peers"].dump();
      }
      if (wrong.empty()) break;
      std::this_thread::sleep_for(milliseconds(50));
    } while (SteadyClock::now() < deadline);
    for (const auto& [id, what] : wrong)
      CHECK_MESSAGE(what.empty(), "node " << id << "'s /v1/cluster does not list node " << kNew << " with api "
                                          << c.api_addr(kNew) << " and raft " << new_raft << ": " << what);
  }

  // 4. SIGKILL the leader that added node 4; the other 3 (node 4 among
  // them, a needed member of the quorum) elect a leader and commit more ops.
  {
    uint64_t now = c.wait_for_leader();
    if (now != adder) MESSAGE("leadership moved from " << adder << " to " << now << " before the kill");
  }
  c.kill_hard(adder);
  auto t_kill = SteadyClock::now();
  const uint64_t next = c.wait_for_leader(milliseconds(10000));
  CHECK(next != adder);
  MESSAGE("leader " << adder << " SIGKILLed; node " << next << " elected after " << ms_since(t_kill) << " ms");
  auto load_c = run_load(ops_c, "after the kill");
  c.wait_converged(milliseconds(10000));
  Findings fs;
  NodeState s = check_replicas_identical(c, w, expected, &fs);  // the 3 survivors
  CHECK_MESSAGE(fs.count() == 0, fs.summary());
  CHECK(s.tree_size == w.opens.size() + w.issues.size() + all_ops.size());
  for (uint64_t id : c.ids()) {
    if (!c.live(id)) continue;
    JournalIndex ji = index_journal(journal_text(c.api_port(id), s.tree_size));
    CHECK_MESSAGE(ji.problems.empty(), "node " << id << ": " << ji.problems.size() << " journal problems, first: "
                                               << (ji.problems.empty() ? "" : ji.problems[0]));
    Findings missing;
    for (const auto* run : {load_a.get(), load_b.get(), load_c.get()}) {
      const auto& ops = run == load_a.get() ? ops_a : run == load_b.get() ? ops_b : ops_c;
      for (size_t i = 0; i < ops.size(); ++i) {
        const auto& ack = run->acks()[i];
        if (!ack) continue;
        auto it = ji.by_id.find(id_hex(ops[i].body.id));
        if (it == ji.by_id.end())
          missing.add("acknowledged op " + id_hex(ops[i].body.id) + " (index " + std::to_string(ack->index) +
                      ") is not in the journal");
        else if (it->second.first != ack->index || it->second.second != ack->leaf_hash)
          missing.add("acknowledged op " + id_hex(ops[i].body.id) + " at index " + std::to_string(ack->index) +
                      " is journaled at " + std::to_string(it->second.first));
      }
    }
    CHECK_MESSAGE(missing.count() == 0, "node " << id << ": " << missing.summary());
  }
}

}  // namespace
}  // namespace cl::test
