// Load and crash tests against a real `cityledger node` process:
//
//   1. 64 clients race for the same wallets, payout references and op ids
//      (DESIGN §4 idempotency and rejections, §6 status codes);
//   2. kill -9 of the node under load, three times (§9: no acknowledged op
//      is lost, the journal stays dense and balances match the supply).
//
// Both tests hold the node's answers against the journal it serves, and the
// journal against a replay of its balance effects done here in the test.
// Ops are signed before the clients start, from a seeded PRNG; the seed is
// printed and CL_LOAD_SEED=<n> reproduces the op mix (not the interleaving).
#include <doctest/doctest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <latch>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/http_client.h"
#include "common/hex.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "tests/integration/findings.h"
#include "tests/integration/node_process.h"
#include "tests/unit/fixture.h"
#include "wallet/codes.h"
#include "wallet/jcs.h"

namespace cl::test {
namespace {

using SteadyClock = std::chrono::steady_clock;

double seconds_since(SteadyClock::time_point t0) {
  return std::chrono::duration<double>(SteadyClock::now() - t0).count();
}

uint64_t load_seed() {
  if (const char* s = std::getenv("CL_LOAD_SEED")) return std::strtoull(s, nullptr, 10);
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd();
}

uint64_t pick(std::mt19937_64& rng, uint64_t lo, uint64_t hi) {
  return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
}

// Runs f(0) … f(n − 1) on n threads and joins them.
template <typename F>
void run_threads(size_t n, F f) {
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (size_t i = 0; i < n; ++i) threads.emplace_back(f, i);
  for (auto& t : threads) t.join();
}


std::string clip(const std::string& s, size_t n = 300) { return s.size() <= n ? s : s.substr(0, n) + "…"; }

std::string tail_of(const std::string& s, size_t n = 2000) { return s.size() <= n ? s : "…" + s.substr(s.size() - n); }

// ---------- answers (DESIGN §6) ----------

struct ReceiptRec {
  std::string id;
  uint64_t index = 0;
  uint64_t time = 0;
  std::string leaf_hash;
  bool replay = false;
};

// One op's answer: a receipt; a §4 rejection code; no answer at all (the
// connection failed); or an anomaly, an answer §6 does not allow here.
struct Answer {
  enum class Kind { kReceipt, kRejected, kTransport, kAnomaly };
  Kind kind = Kind::kAnomaly;
  ReceiptRec receipt;  // kReceipt
  std::string code;    // kRejected
  std::string detail;  // kTransport, kAnomaly
};

bool is_rejection_code(const std::string& name) {
  auto c = code_from_name(name);
  return c && *c != Code::kOk;
}

bool is_hex32(const Json& j) { return j.is_string() && hex_decode_array<32>(j.get<std::string>()).has_value(); }

// Checks that "j" is exactly a receipt {id, result: "ok", index, time,
// leaf_hash, replay} for op "id"; returns what is wrong, or "".
std::string parse_receipt(const Json& j, const std::string& id, ReceiptRec* out) {
  if (!j.is_object() || j.size() != 6) return "receipt is not an object of 6 fields: " + clip(j.dump());
  if (!j.contains("id") || j["id"] != id) return "receipt for the wrong id: " + clip(j.dump());
  if (!j.contains("result") || j["result"] != "ok") return "receipt result is not ok: " + clip(j.dump());
  if (!j.contains("index") || !j["index"].is_number_unsigned()) return "receipt index: " + clip(j.dump());
  if (!j.contains("time") || !j["time"].is_number_unsigned()) return "receipt time: " + clip(j.dump());
  if (!j.contains("leaf_hash") || !is_hex32(j["leaf_hash"])) return "receipt leaf_hash: " + clip(j.dump());
  if (!j.contains("replay") || !j["replay"].is_boolean()) return "receipt replay: " + clip(j.dump());
  *out = ReceiptRec{id, j["index"].get<uint64_t>(), j["time"].get<uint64_t>(), j["leaf_hash"].get<std::string>(),
                    j["replay"].get<bool>()};
  return "";
}

// A non-200 answer must be a 4xx RFC 9457 problem whose code is a §4
// rejection code with the §6 status for it.
Answer answer_problem(const api::HttpResult& r) {
  Answer a;
  a.detail = "HTTP " + std::to_string(r.status) + " " + clip(r.body);
  if (r.status < 400 || r.status > 499) return a;
  if (r.header("content-type").rfind("application/problem+json", 0) != 0) {
    a.detail += " (content-type " + r.header("content-type") + ")";
    return a;
  }
  Json j = Json::parse(r.body, nullptr, false);
  for (const char* field : {"type", "title", "status", "detail", "code"})
    if (!j.is_object() || !j.contains(field)) return a;
  if (j["status"] != r.status || !j["code"].is_string()) return a;
  std::string code = j["code"].get<std::string>();
  if (!is_rejection_code(code) || code_http_status(*code_from_name(code)) != r.status) return a;
  a.kind = Answer::Kind::kRejected;
  a.code = code;
  a.detail.clear();
  return a;
}

Answer answer_single(const Result<api::HttpResult>& r, const std::string& id) {
  Answer a;
  if (!r) {
    a.kind = Answer::Kind::kTransport;
    a.detail = r.status().to_string();
    return a;
  }
  if (r->status != 200) return answer_problem(*r);
  std::string err = parse_receipt(Json::parse(r->body, nullptr, false), id, &a.receipt);
  if (err.empty()) a.kind = Answer::Kind::kReceipt;
  a.detail = err;
  return a;
}

std::vector<Answer> answer_batch(const Result<api::HttpResult>& r, const std::vector<std::string>& ids) {
  std::vector<Answer> out(ids.size());
  if (!r) {
    for (auto& a : out) a = Answer{Answer::Kind::kTransport, {}, "", r.status().to_string()};
    return out;
  }
  if (r->status != 200) {
    // Every op in this batch is valid JSON for this chain: the batch as a
    // whole has no reason to be refused.
    Answer whole = answer_problem(*r);
    for (auto& a : out) a = Answer{Answer::Kind::kAnomaly, {}, "", "batch refused: " + whole.code + " " + whole.detail};
    return out;
  }
  Json j = Json::parse(r->body, nullptr, false);
  if (!j.is_object() || !j.contains("results") || !j["results"].is_array() || j["results"].size() != ids.size()) {
    for (auto& a : out) a.detail = "batch reply is not {results: [one per op]}: " + clip(r->body);
    return out;
  }
  for (size_t k = 0; k < ids.size(); ++k) {
    const Json& slot = j["results"][k];
    Answer& a = out[k];
    if (slot.is_object() && slot.contains("result") && slot["result"] == "ok") {
      a.detail = parse_receipt(slot, ids[k], &a.receipt);
      if (a.detail.empty()) a.kind = Answer::Kind::kReceipt;
      continue;
    }
    a.detail = "batch slot " + std::to_string(k) + ": " + clip(slot.dump());
    if (!slot.is_object() || slot.size() != 4 || !slot.contains("id") || slot["id"] != ids[k] ||
        !slot.contains("detail") || !slot.contains("status") || !slot.contains("result") || !slot["result"].is_string())
      continue;
    std::string code = slot["result"].get<std::string>();
    if (!is_rejection_code(code) || slot["status"] != code_http_status(*code_from_name(code))) continue;
    a.kind = Answer::Kind::kRejected;
    a.code = code;
    a.detail.clear();
  }
  return out;
}

std::string batch_body(const std::vector<const std::string*>& envelopes) {
  std::string out = "[";
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (i) out += ',';
    out += *envelopes[i];
  }
  return out + "]";
}

// ---------- the journal and a model of its balance effects ----------

struct JournalView {
  std::vector<Json> ops;  // entry i's envelope
  std::vector<uint64_t> times;
  std::vector<std::string> leaf_hashes;
  std::map<std::string, uint64_t> index_of;  // op id → index
};

// Reads the whole journal by paging GET /v1/journal and checks as it goes
// that it is dense (entry i has index i), that each leaf_hash is
// SHA-256(0x00 ‖ JCS({index, op, time})) (§5), that time never decreases and
// that no op id appears twice.
JournalView read_journal(api::HttpClient& c, Findings* f) {
  JournalView v;
  while (true) {
    uint64_t from = v.ops.size();
    auto r = c.request("GET", "/v1/journal?from=" + std::to_string(from) + "&limit=10000");
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    REQUIRE_MESSAGE(r->status == 200, r->body);
    Json page = Json::parse(r->body, nullptr, false);
    REQUIRE(page.is_object());
    REQUIRE(page.contains("entries"));
    REQUIRE(page["entries"].is_array());
    const Json& entries = page["entries"];
    if (entries.empty()) {
      if (page["next"] != from) f->add("journal page at " + std::to_string(from) + " has next " + page["next"].dump());
      return v;
    }
    for (const Json& e : entries) {
      uint64_t i = v.ops.size();
      if (!e.is_object() || e.size() != 4 || !e.contains("index") || !e.contains("time") || !e.contains("leaf_hash") ||
          !e.contains("op") || e["index"] != i || !e["time"].is_number_unsigned() || !is_hex32(e["leaf_hash"]) ||
          !e["op"].is_object()) {
        f->add("journal entry " + std::to_string(i) + " is not dense or well formed: " + clip(e.dump()));
        return v;
      }
      uint64_t time = e["time"].get<uint64_t>();
      std::string leaf = e["leaf_hash"].get<std::string>();
      if (to_hex(merkle::leaf_hash(entry_bytes(i, time, jcs(e["op"])))) != leaf)
        f->add("journal entry " + std::to_string(i) + ": leaf_hash is not SHA-256(0x00 ‖ JCS(entry))");
      if (!v.times.empty() && time < v.times.back()) f->add("journal time goes back at entry " + std::to_string(i));
      std::string id = e.at("op").at("body").at("id").get<std::string>();
      if (!v.index_of.emplace(id, i).second)
        f->add("op " + id + " is journaled twice: at " + std::to_string(v.index_of[id]) + " and " + std::to_string(i));
      v.ops.push_back(e["op"]);
      v.times.push_back(time);
      v.leaf_hashes.push_back(std::move(leaf));
    }
    if (page["next"] != v.ops.size()) f->add("journal page from " + std::to_string(from) + " has a wrong next");
  }
}

struct Model {
  std::map<std::string, uint64_t> balances;  // wallet id → balance
  uint64_t issued = 0;
  uint64_t redeemed = 0;
};

// Replays the balance effects of the journal in order (§4 table), checking
// that every entry was valid when applied: wallets exist, and no balance
// goes below zero.
Model replay_journal(const JournalView& v, Findings* f) {
  Model m;
  for (size_t i = 0; i < v.ops.size(); ++i) {
    const Json& b = v.ops[i].at("body");
    std::string type = b.at("type").get<std::string>();
    std::string at = "journal entry " + std::to_string(i) + " (" + type + "): ";
    uint64_t amount = b.contains("amount") ? b.at("amount").get<uint64_t>() : 0;
    auto existing = [&](const char* field) -> uint64_t* {
      auto it = m.balances.find(b.at(field).get<std::string>());
      if (it == m.balances.end()) {
        f->add(at + field + " wallet does not exist");
        return nullptr;
      }
      return &it->second;
    };
    if (type == "open_wallet") {
      if (!m.balances.emplace(b.at("wallet").get<std::string>(), 0).second) f->add(at + "wallet opened twice");
    } else if (type == "issue") {
      if (uint64_t* to = existing("to")) *to += amount;
      m.issued += amount;
    } else if (type == "redeem") {
      uint64_t* from = existing("from");
      if (from && *from < amount) f->add(at + "redeems more than the balance");
      if (from && *from >= amount) *from -= amount;
      m.redeemed += amount;
    } else if (type == "transfer" || type == "fare" || type == "payout") {
      uint64_t* from = existing("from");
      uint64_t* to = existing("to");
      if (!from || !to) continue;
      if (*from < amount) {
        f->add(at + "spends " + std::to_string(amount) + " from a balance of " + std::to_string(*from));
        continue;
      }
      *from -= amount;
      *to += amount;
    }
  }
  return m;
}

// The node's balances and supply must equal the model's; Σ balances must
// equal the supply outstanding; no balance may be negative.
void check_node_state(api::HttpClient& c, const Model& m, Findings* f) {
  uint64_t sum = 0;
  for (const auto& [id, expected] : m.balances) {
    auto r = c.request("GET", "/v1/wallets/" + id);
    if (!r || r->status != 200) {
      f->add("GET /v1/wallets/" + id + " failed: " + (r ? r->body : r.status().to_string()));
      continue;
    }
    Json w = Json::parse(r->body, nullptr, false);
    if (!w.is_object() || !w.contains("balance") || !w["balance"].is_number_unsigned()) {
      f->add("wallet " + id + " has no non-negative integer balance: " + clip(r->body));
      continue;
    }
    uint64_t balance = w["balance"].get<uint64_t>();
    sum += balance;
    if (balance != expected)
      f->add("wallet " + id + ": node says " + std::to_string(balance) + ", journal replay says " + std::to_string(expected));
  }
  auto r = c.request("GET", "/v1/supply");
  REQUIRE(r.is_ok());
  REQUIRE(r->status == 200);
  Json s = Json::parse(r->body, nullptr, false);
  REQUIRE(s.is_object());
  if (s["issued"] != m.issued || s["redeemed"] != m.redeemed)
    f->add("supply " + r->body + " differs from the journal: issued " + std::to_string(m.issued) + ", redeemed " +
           std::to_string(m.redeemed));
  if (s["outstanding"] != sum) f->add("Σ balances " + std::to_string(sum) + " ≠ supply outstanding " + s["outstanding"].dump());
}

// Every receipt must name the journal entry of its op (index, time, leaf_hash).
void check_receipts_in_journal(const std::vector<ReceiptRec>& receipts, const JournalView& v, Findings* f) {
  for (const auto& r : receipts) {
    auto it = v.index_of.find(r.id);
    if (it == v.index_of.end()) {
      f->add("acknowledged op " + r.id + " (index " + std::to_string(r.index) + ") is not in the journal");
    } else if (it->second != r.index || v.leaf_hashes[r.index] != r.leaf_hash || v.times[r.index] != r.time) {
      f->add("acknowledged op " + r.id + " had index " + std::to_string(r.index) + "; the journal has it at " +
             std::to_string(it->second));
    }
  }
}

// GET /v1/ops/{id} must return each receipt again, with replay false.
void check_receipts_via_get(uint16_t port, const std::vector<ReceiptRec>& receipts, Findings* f) {
  constexpr size_t kThreads = 8;
  run_threads(kThreads, [&](size_t t) {
    api::HttpClient c("127.0.0.1", port, 30000);
    for (size_t i = t; i < receipts.size(); i += kThreads) {
      const ReceiptRec& want = receipts[i];
      auto r = c.request("GET", "/v1/ops/" + want.id);
      if (!r || r->status != 200) {
        f->add("GET /v1/ops/" + want.id + ": " + (r ? "HTTP " + std::to_string(r->status) : r.status().to_string()));
        continue;
      }
      ReceiptRec got;
      std::string err = parse_receipt(Json::parse(r->body, nullptr, false), want.id, &got);
      if (!err.empty()) {
        f->add("GET /v1/ops/" + want.id + ": " + err);
      } else if (got.index != want.index || got.leaf_hash != want.leaf_hash || got.time != want.time || got.replay) {
        f->add("GET /v1/ops/" + want.id + " returns " + r->body + "; the submit receipt said index " +
               std::to_string(want.index) + " leaf " + want.leaf_hash);
      }
    }
  });
}

// ---------- wallets ----------

struct TestWallet {
  WalletId id;
  KeyPair key;
  WalletKind kind = WalletKind::kPersonal;
};

std::vector<TestWallet> make_wallets(size_t personal, uint8_t seed_base, uint8_t id_tag, bool with_agency) {
  std::vector<TestWallet> out;
  for (size_t i = 0; i < personal; ++i)
    out.push_back({make_id(i, id_tag), seed_key(static_cast<uint8_t>(seed_base + i)), WalletKind::kPersonal});
  out.push_back({make_id(1000, id_tag), seed_key(static_cast<uint8_t>(seed_base + personal)), WalletKind::kTransit});
  if (with_agency)
    out.push_back({make_id(2000, id_tag), seed_key(static_cast<uint8_t>(seed_base + personal + 1)), WalletKind::kAgency});
  return out;
}

// Posts "ops" as one batch and requires every one to be accepted.
void post_all_ok(api::HttpClient& c, const std::vector<Envelope>& ops) {
  std::vector<const std::string*> bodies;
  std::vector<std::string> ids;
  for (const auto& e : ops) {
    bodies.push_back(&e.jcs);
    ids.push_back(id_hex(e.body.id));
  }
  auto answers = answer_batch(c.request("POST", "/v1/ops/batch", batch_body(bodies)), ids);
  for (const auto& a : answers) REQUIRE_MESSAGE(a.kind == Answer::Kind::kReceipt, a.code << " " << a.detail);
}

// Opens every wallet, then issues amounts[i] into wallets[i] (if nonzero).
void open_and_fund(api::HttpClient& c, const std::vector<TestWallet>& ws, const std::vector<uint64_t>& amounts) {
  OpFactory setup("msk-demo", 0x01);
  std::vector<Envelope> opens, issues;
  for (size_t i = 0; i < ws.size(); ++i) {
    opens.push_back(setup.open_wallet(ws[i].id, ws[i].key, ws[i].kind));
    if (amounts[i] > 0) issues.push_back(setup.issue(ws[i].id, amounts[i]));
  }
  // Two requests: the ops of one batch are independent, not ordered.
  post_all_ok(c, opens);
  post_all_ok(c, issues);
}

// ---------- planned load ----------

struct PlannedOp {
  std::string id;          // op id, hex
  std::string envelope;    // JCS of the signed envelope, as sent
  std::string payout_key;  // program "\n" reference, for payouts
  bool duplicate = false;  // sent by two clients
};

// One HTTP request: a single op (POST /v1/ops) or a batch.
struct PlannedRequest {
  bool batch = false;
  std::string body;
  std::vector<size_t> ops;  // indices into the op registry
};

// Splits one client's op sequence into requests: mostly single ops, and with
// probability batch_percent a batch of 2..batch_ops_max ops.
std::vector<PlannedRequest> plan_requests(const std::vector<size_t>& ops, const std::vector<PlannedOp>& registry,
                                          std::mt19937_64& rng, uint64_t batch_percent, uint64_t batch_ops_max) {
  std::vector<PlannedRequest> out;
  for (size_t i = 0; i < ops.size();) {
    size_t n = pick(rng, 0, 99) < batch_percent ? std::min<size_t>(pick(rng, 2, batch_ops_max), ops.size() - i) : 1;
    PlannedRequest req;
    req.batch = n > 1;
    std::vector<const std::string*> bodies;
    for (size_t k = 0; k < n; ++k) {
      req.ops.push_back(ops[i + k]);
      bodies.push_back(&registry[ops[i + k]].envelope);
    }
    req.body = req.batch ? batch_body(bodies) : *bodies[0];
    out.push_back(std::move(req));
    i += n;
  }
  return out;
}

// Sends one planned request and returns one answer per op.
std::vector<Answer> send(api::HttpClient& c, const PlannedRequest& req, const std::vector<PlannedOp>& registry) {
  if (!req.batch) return {answer_single(c.request("POST", "/v1/ops", req.body), registry[req.ops[0]].id)};
  std::vector<std::string> ids;
  for (size_t op : req.ops) ids.push_back(registry[op].id);
  return answer_batch(c.request("POST", "/v1/ops/batch", req.body), ids);
}

// Fares and transfers between the shared wallets; with an agency, payouts
// whose (program, reference) is drawn from a small shared pool.
PlannedOp random_op(OpFactory& f, std::mt19937_64& rng, const std::vector<TestWallet>& ws, size_t personal,
                    uint64_t reference_pool) {
  const TestWallet& transit = ws[personal];
  const TestWallet& rider = ws[pick(rng, 0, personal - 1)];
  size_t other = pick(rng, 0, personal - 2);
  const TestWallet& payee = ws[other >= static_cast<size_t>(&rider - ws.data()) ? other + 1 : other];
  uint64_t roll = pick(rng, 0, 99);
  Envelope e;
  PlannedOp p;
  if (roll < 45) {
    e = f.fare(rider.id, rider.key, transit.id, pick(rng, 100, 400), "турникет-" + std::to_string(pick(rng, 1, 8)));
  } else if (roll < 80 || (roll >= 86 && reference_pool == 0)) {
    e = f.transfer(rider.id, rider.key, payee.id, pick(rng, 200, 1500));
  } else if (roll < 86) {
    e = f.transfer(transit.id, transit.key, payee.id, pick(rng, 1000, 5000));  // the operator pays back out
  } else {
    const TestWallet& agency = ws[personal + 1];
    std::string program = pick(rng, 0, 1) ? "birth-benefit" : "пособие-на-ребёнка";
    std::string reference = "ref-" + std::to_string(pick(rng, 0, reference_pool - 1));
    e = f.payout(agency.id, agency.key, payee.id, pick(rng, 100, 1000), program, reference);
    p.payout_key = program + "\n" + reference;
  }
  p.id = id_hex(e.body.id);
  p.envelope = e.jcs;
  return p;
}

// A planned load: every op once in the registry; per client, its requests.
struct Load {
  std::vector<PlannedOp> registry;
  std::vector<std::vector<PlannedRequest>> plans;  // [client]
};

// Appends "ops" to the registry and returns their registry indices.
std::vector<size_t> register_ops(std::vector<PlannedOp> ops, std::vector<PlannedOp>* registry) {
  std::vector<size_t> out;
  for (auto& p : ops) {
    out.push_back(registry->size());
    registry->push_back(std::move(p));
  }
  return out;
}

// ---------- test 1: racing clients ----------

constexpr size_t kRaceClients = 64;
constexpr size_t kRaceOpsPerClient = 500;
constexpr size_t kRaceDuplicatePairs = 1280;  // 2,560 of the 32,000 slots
constexpr size_t kRacePersonal = 18;
constexpr uint64_t kRacePersonalFunds = 3000;
constexpr uint64_t kRaceReferencePool = 300;      // × 2 programs × ≤ 1,000 kopecks
constexpr uint64_t kRaceAgencyFunds = 1'000'000;  // > every reference paid once: payouts fail only on reuse

// 64 clients × 500 ops: fares and transfers overdrawing the shared wallets,
// payouts racing for (program, reference), and kRaceDuplicatePairs envelopes
// each sent by two clients at the same position of their sequences (so the
// two copies tend to arrive together).  Signed in parallel, one OpFactory
// (own id tag) per client.
Load plan_race(std::mt19937_64& rng, const std::vector<TestWallet>& ws) {
  Load load;
  std::vector<std::vector<int64_t>> slots(kRaceClients, std::vector<int64_t>(kRaceOpsPerClient, -1));
  OpFactory dup_factory("msk-demo", 0x02);
  for (size_t d = 0; d < kRaceDuplicatePairs; ++d) {
    size_t a = 0, b = 0, pos = 0;
    do {
      a = pick(rng, 0, kRaceClients - 1);
      b = pick(rng, 0, kRaceClients - 1);
      pos = pick(rng, 0, kRaceOpsPerClient - 1);
    } while (a == b || slots[a][pos] >= 0 || slots[b][pos] >= 0);
    slots[a][pos] = slots[b][pos] = static_cast<int64_t>(load.registry.size());
    load.registry.push_back(random_op(dup_factory, rng, ws, kRacePersonal, /*reference_pool=*/0));
    load.registry.back().duplicate = true;
  }
  std::vector<uint64_t> client_seeds;
  for (size_t t = 0; t < kRaceClients; ++t) client_seeds.push_back(rng());
  std::vector<std::vector<PlannedOp>> own(kRaceClients);
  run_threads(kRaceClients, [&](size_t t) {
    OpFactory f("msk-demo", static_cast<uint8_t>(0x10 + t));
    std::mt19937_64 r(client_seeds[t]);
    for (int64_t s : slots[t])
      if (s < 0) own[t].push_back(random_op(f, r, ws, kRacePersonal, kRaceReferencePool));
  });
  load.plans.resize(kRaceClients);
  for (size_t t = 0; t < kRaceClients; ++t) {
    std::vector<size_t> own_ids = register_ops(std::move(own[t]), &load.registry);
    std::vector<size_t> sequence;
    size_t next_own = 0;
    for (int64_t s : slots[t]) sequence.push_back(s >= 0 ? static_cast<size_t>(s) : own_ids[next_own++]);
    std::mt19937_64 r(client_seeds[t] ^ 0x5EED);
    load.plans[t] = plan_requests(sequence, load.registry, r, /*batch_percent=*/2, /*batch_ops_max=*/32);
  }
  return load;
}

// What came back, per op (registry index).
struct Tally {
  std::vector<std::vector<ReceiptRec>> receipts_of;
  std::vector<size_t> rejections_of;
  std::map<std::string, size_t> codes;  // rejection code → count
};

// All clients start together and send their whole plan; every answer that
// is neither a receipt nor a §4 rejection goes to "wire".
Tally run_race(uint16_t port, const Load& load, Findings* wire) {
  std::vector<std::vector<std::pair<size_t, Answer>>> answers(load.plans.size());
  std::latch go(static_cast<std::ptrdiff_t>(load.plans.size()));
  run_threads(load.plans.size(), [&](size_t t) {
    api::HttpClient c("127.0.0.1", port, 30000);
    go.arrive_and_wait();
    for (const auto& req : load.plans[t]) {
      auto got = send(c, req, load.registry);
      for (size_t k = 0; k < req.ops.size(); ++k) answers[t].emplace_back(req.ops[k], std::move(got[k]));
    }
  });
  Tally tally;
  tally.receipts_of.resize(load.registry.size());
  tally.rejections_of.resize(load.registry.size());
  for (const auto& per_client : answers) {
    for (const auto& [op, a] : per_client) {
      if (a.kind == Answer::Kind::kReceipt) {
        tally.receipts_of[op].push_back(a.receipt);
      } else if (a.kind == Answer::Kind::kRejected) {
        ++tally.codes[a.code];
        ++tally.rejections_of[op];
      } else {
        wire->add(std::string(a.kind == Answer::Kind::kTransport ? "no answer (connection failed)" : "not a §6 answer") +
                  " for op " + load.registry[op].id + ": " + a.detail);
      }
    }
  }
  return tally;
}

// Each op was answered once per copy sent; it is journaled iff some copy got
// a receipt; all its receipts are equal and exactly one is the original
// (replay false), any other a replay.  Returns the original receipts.
std::vector<ReceiptRec> check_answers_against_journal(const Load& load, const Tally& tally, const JournalView& journal,
                                                      Findings* f) {
  std::vector<ReceiptRec> originals;
  for (size_t op = 0; op < load.registry.size(); ++op) {
    const PlannedOp& p = load.registry[op];
    const auto& rs = tally.receipts_of[op];
    size_t copies = p.duplicate ? 2 : 1;
    if (rs.size() + tally.rejections_of[op] != copies)
      f->add("op " + p.id + " sent " + std::to_string(copies) + "× but answered " +
             std::to_string(rs.size() + tally.rejections_of[op]) + "×");
    bool journaled = journal.index_of.count(p.id) > 0;
    if (rs.empty()) {
      if (journaled) f->add("op " + p.id + " was only ever rejected, yet it is journaled");
      continue;
    }
    size_t originals_here = 0;
    for (const auto& r : rs) {
      originals_here += !r.replay;
      if (r.index != rs[0].index || r.leaf_hash != rs[0].leaf_hash || r.time != rs[0].time)
        f->add("op " + p.id + " got two different receipts: index " + std::to_string(rs[0].index) + " and " +
               std::to_string(r.index));
    }
    if (originals_here != 1)
      f->add("op " + p.id + " got " + std::to_string(originals_here) + " receipts with replay=false (want exactly 1)");
    originals.push_back(rs[0]);
  }
  check_receipts_in_journal(originals, journal, f);
  return originals;
}

// Every (program, reference) submitted is paid exactly once (the agency can
// afford each once, so only reuse can refuse one), and none twice.
void check_payouts_once(const std::vector<PlannedOp>& registry, const JournalView& journal, Findings* f) {
  std::map<std::string, size_t> paid;
  for (const auto& op : journal.ops) {
    const Json& b = op.at("body");
    if (b.at("type") == "payout") ++paid[b.at("program").get<std::string>() + "\n" + b.at("reference").get<std::string>()];
  }
  std::set<std::string> submitted;
  for (const auto& p : registry)
    if (!p.payout_key.empty()) submitted.insert(p.payout_key);
  for (const auto& [key, n] : paid)
    if (n != 1 || !submitted.count(key)) f->add("payout " + key + " journaled " + std::to_string(n) + " times");
  for (const auto& key : submitted)
    if (!paid.count(key)) f->add("payout " + key + " was submitted but never paid");
}

TEST_CASE("racing clients: conflicting spends fail cleanly, each payout reference and op id is journaled once, "
          "and the journal replays to the node's balances") {
  crypto_init();
  uint64_t seed = load_seed();
  MESSAGE("seed " << seed << " (CL_LOAD_SEED=" << seed << " reproduces the op mix)");
  std::mt19937_64 rng(seed);
  auto t_test = SteadyClock::now();
  NodeProcess node;
  node.start();
  api::HttpClient admin("127.0.0.1", node.port(), 30000);
  auto ws = make_wallets(kRacePersonal, 0x20, 0xA0, /*with_agency=*/true);
  std::vector<uint64_t> funds(ws.size(), kRacePersonalFunds);
  funds[kRacePersonal] = 0;  // the transit operator starts empty
  funds[kRacePersonal + 1] = kRaceAgencyFunds;
  open_and_fund(admin, ws, funds);
  const size_t setup_ops = 2 * ws.size() - 1;
  Load load = plan_race(rng, ws);
  MESSAGE("signed " << load.registry.size() << " distinct ops in " << seconds_since(t_test) << " s");

  Findings wire;
  auto t_load = SteadyClock::now();
  Tally tally = run_race(node.port(), load, &wire);
  double load_s = seconds_since(t_load);
  const size_t sent = kRaceClients * kRaceOpsPerClient;
  std::string code_list;
  for (const auto& [c, n] : tally.codes) code_list += " " + c + "=" + std::to_string(n);
  MESSAGE(kRaceClients << " clients: " << sent << " op submissions in " << load_s << " s ("
                       << static_cast<uint64_t>(sent / load_s) << " ops/s); rejections:" << code_list);
  REQUIRE_MESSAGE(wire.count() == 0, wire.summary() << "\nnode log:\n" << tail_of(read_file(node.log_path())));
  for (const auto& [c, n] : tally.codes)
    CHECK_MESSAGE((c == "insufficient_funds" || c == "reference_used"),
                  n << " ops rejected with " << c << ": these ops give no cause for it");
  CHECK_MESSAGE(tally.codes["insufficient_funds"] > 500, "the load was meant to overdraw the shared wallets often");
  CHECK_MESSAGE(tally.codes["reference_used"] > 500, "the load was meant to reuse payout references often");

  Findings f;
  JournalView journal = read_journal(admin, &f);
  std::vector<ReceiptRec> originals = check_answers_against_journal(load, tally, journal, &f);
  CHECK_MESSAGE(journal.ops.size() == setup_ops + originals.size(),
                "journal holds " << journal.ops.size() << " entries; setup " << setup_ops << " + accepted "
                                 << originals.size());
  check_payouts_once(load.registry, journal, &f);
  Model model = replay_journal(journal, &f);
  check_node_state(admin, model, &f);
  check_receipts_via_get(node.port(), originals, &f);
  CHECK_MESSAGE(f.count() == 0, f.summary());
  MESSAGE(originals.size() << " ops accepted; test took " << seconds_since(t_test) << " s");
}

// ---------- test 2: kill -9 under load ----------

constexpr size_t kCrashClients = 8;
constexpr size_t kCrashRounds = 3;
constexpr size_t kCrashOpsPerClientRound = 800;  // 8 × 800 × 3 + the final phase ≈ 19,400 ops
constexpr size_t kCrashFinalOpsPerClient = 25;
constexpr size_t kCrashPersonal = 16;
constexpr uint64_t kCrashPersonalFunds = 1'000'000;

// Fares and transfers for kCrashClients clients: one Load per phase (each
// kill round, then a final phase), all signed up front.
std::vector<Load> plan_crash(std::mt19937_64& rng, const std::vector<TestWallet>& ws) {
  constexpr size_t kPhases = kCrashRounds + 1;
  std::vector<uint64_t> client_seeds;
  for (size_t t = 0; t < kCrashClients; ++t) client_seeds.push_back(rng());
  std::vector<std::vector<std::vector<PlannedOp>>> own(kCrashClients, std::vector<std::vector<PlannedOp>>(kPhases));
  run_threads(kCrashClients, [&](size_t t) {
    OpFactory f("msk-demo", static_cast<uint8_t>(0x80 + t));
    std::mt19937_64 r(client_seeds[t]);
    for (size_t ph = 0; ph < kPhases; ++ph) {
      size_t n = ph < kCrashRounds ? kCrashOpsPerClientRound : kCrashFinalOpsPerClient;
      for (size_t i = 0; i < n; ++i) own[t][ph].push_back(random_op(f, r, ws, kCrashPersonal, 0));
    }
  });
  std::vector<Load> phases(kPhases);
  for (size_t ph = 0; ph < kPhases; ++ph) {
    for (size_t t = 0; t < kCrashClients; ++t) {
      std::vector<size_t> sequence = register_ops(std::move(own[t][ph]), &phases[ph].registry);
      std::mt19937_64 r(client_seeds[t] ^ (0x5EED + ph));
      phases[ph].plans.push_back(plan_requests(sequence, phases[ph].registry, r, /*batch_percent=*/10,
                                               /*batch_ops_max=*/16));
    }
  }
  return phases;
}

struct PhaseResult {
  std::vector<ReceiptRec> acked;        // receipts the clients got
  std::vector<size_t> in_doubt;         // ops whose request got no answer
  std::map<std::string, size_t> codes;  // rejection code → count
  size_t answered_ops = 0;
  size_t rejected() const {
    size_t n = 0;
    for (const auto& [c, k] : codes) n += k;
    return n;
  }
};

// Runs one phase: every client sends its plan until it ends or the
// connection fails (then the client stops: the node is gone).  "kill" (may
// be empty) runs on the calling thread meanwhile.  Answers that are neither
// receipts, §4 rejections nor connection failures go to "wire".
PhaseResult run_phase(uint16_t port, const Load& load, Findings* wire, std::atomic<size_t>* answered,
                      const std::function<void()>& kill) {
  std::vector<PhaseResult> per(load.plans.size());
  std::latch go(static_cast<std::ptrdiff_t>(load.plans.size() + 1));
  std::vector<std::thread> clients;
  for (size_t t = 0; t < load.plans.size(); ++t) {
    clients.emplace_back([&, t] {
      api::HttpClient c("127.0.0.1", port, 10000);
      go.arrive_and_wait();
      for (const auto& req : load.plans[t]) {
        auto got = send(c, req, load.registry);
        bool failed = false;
        for (size_t k = 0; k < req.ops.size(); ++k) {
          const Answer& a = got[k];
          const std::string& id = load.registry[req.ops[k]].id;
          if (a.kind == Answer::Kind::kReceipt) {
            per[t].acked.push_back(a.receipt);
            if (a.receipt.replay) wire->add("op " + id + ", sent once, got replay=true");
          } else if (a.kind == Answer::Kind::kRejected) {
            ++per[t].codes[a.code];
          } else if (a.kind == Answer::Kind::kTransport) {
            per[t].in_doubt.push_back(req.ops[k]);
            failed = true;
          } else {
            wire->add("not a §6 answer for op " + id + ": " + a.detail);
          }
        }
        if (failed) return;
        per[t].answered_ops += req.ops.size();
        answered->fetch_add(req.ops.size());
      }
    });
  }
  go.arrive_and_wait();
  if (kill) kill();
  for (auto& c : clients) c.join();
  PhaseResult out;
  for (auto& r : per) {
    out.acked.insert(out.acked.end(), r.acked.begin(), r.acked.end());
    out.in_doubt.insert(out.in_doubt.end(), r.in_doubt.begin(), r.in_doubt.end());
    for (const auto& [code, n] : r.codes) out.codes[code] += n;
    out.answered_ops += r.answered_ops;
  }
  return out;
}

// Everything the node must show after a (re)start: every receipt ever
// acknowledged, at its index (and GET /v1/ops agrees for the latest ones); a
// dense journal that extends the one seen before; balances that replay from
// it and sum to the supply.
JournalView verify_after_restart(NodeProcess& node, const std::vector<ReceiptRec>& acked,
                                 const std::vector<ReceiptRec>& acked_latest, const JournalView& before) {
  api::HttpClient c("127.0.0.1", node.port(), 30000);
  Findings f;
  JournalView journal = read_journal(c, &f);
  if (journal.ops.size() < before.ops.size())
    f.add("journal shrank from " + std::to_string(before.ops.size()) + " to " + std::to_string(journal.ops.size()));
  for (size_t i = 0; i < std::min(before.ops.size(), journal.ops.size()); ++i) {
    if (journal.leaf_hashes[i] != before.leaf_hashes[i]) {
      f.add("journal entry " + std::to_string(i) + " changed across the restart");
      break;
    }
  }
  check_receipts_in_journal(acked, journal, &f);
  check_receipts_via_get(node.port(), acked_latest, &f);
  Model model = replay_journal(journal, &f);
  check_node_state(c, model, &f);
  CHECK_MESSAGE(f.count() == 0, f.summary() << "\nnode log:\n" << tail_of(read_file(node.log_path())));
  return journal;
}

// Retries by id the ops that were in flight at the kill (what §6 advises a
// client to do): one that was journaled comes back as a replay of its entry;
// one that was not is applied now, or refused on its merits.  New receipts
// are appended to *acked.
void retry_in_doubt(uint16_t port, const Load& load, const std::vector<size_t>& in_doubt, const JournalView& journal,
                    std::vector<ReceiptRec>* acked) {
  std::vector<const std::string*> bodies;
  std::vector<std::string> ids;
  for (size_t op : in_doubt) {
    bodies.push_back(&load.registry[op].envelope);
    ids.push_back(load.registry[op].id);
  }
  api::HttpClient c("127.0.0.1", port, 30000);
  auto retried = answer_batch(c.request("POST", "/v1/ops/batch", batch_body(bodies)), ids);
  size_t were_journaled = 0;
  for (size_t k = 0; k < ids.size(); ++k) {
    auto it = journal.index_of.find(ids[k]);
    const Answer& a = retried[k];
    if (it != journal.index_of.end()) {
      ++were_journaled;
      CHECK_MESSAGE(a.kind == Answer::Kind::kReceipt, ids[k] << ": " << a.code << a.detail);
      CHECK_MESSAGE(a.receipt.replay, ids[k] << " is journaled; its retry must be a replay");
      CHECK_MESSAGE(a.receipt.index == it->second, ids[k] << " retried: index differs from the journal");
      CHECK(a.receipt.leaf_hash == journal.leaf_hashes[it->second]);
    } else {
      CHECK_MESSAGE((a.kind == Answer::Kind::kRejected || (a.kind == Answer::Kind::kReceipt && !a.receipt.replay)),
                    ids[k] << ": " << a.code << a.detail);
      if (a.kind == Answer::Kind::kReceipt) acked->push_back(a.receipt);
    }
  }
  MESSAGE("  of " << ids.size() << " ops in flight at the kill, " << were_journaled
                  << " had been journaled; all retried by id");
}

TEST_CASE("kill -9 under load loses no acknowledged op: after each restart the journal is dense, "
          "holds every receipt at its index, and balances sum to the supply") {
  crypto_init();
  uint64_t seed = load_seed();
  MESSAGE("seed " << seed << " (CL_LOAD_SEED=" << seed << " reproduces the op mix)");
  std::mt19937_64 rng(seed);
  auto t_test = SteadyClock::now();
  NodeProcess node;
  node.start();
  auto ws = make_wallets(kCrashPersonal, 0x60, 0xB0, /*with_agency=*/false);
  std::vector<uint64_t> funds(ws.size(), kCrashPersonalFunds);
  funds[kCrashPersonal] = 0;
  {
    api::HttpClient admin("127.0.0.1", node.port(), 30000);
    open_and_fund(admin, ws, funds);
  }
  std::vector<Load> phases = plan_crash(rng, ws);

  std::vector<ReceiptRec> acked;
  JournalView journal;
  size_t in_doubt_total = 0;
  for (size_t round = 0; round < kCrashRounds; ++round) {
    Findings wire;
    std::atomic<size_t> answered{0};
    const size_t round_ops = kCrashClients * kCrashOpsPerClientRound;
    auto t_round = SteadyClock::now();
    double kill_at_s = 0;
    // Kill after ~1 s, or earlier once 3/4 of the round's ops are answered, so
    // that requests are still in flight when the node dies.
    PhaseResult pr = run_phase(node.port(), phases[round], &wire, &answered, [&] {
      while (seconds_since(t_round) < 1.0 && answered.load() < round_ops * 3 / 4)
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      kill_at_s = seconds_since(t_round);
      node.kill_hard();
    });
    CHECK_MESSAGE(wire.count() == 0, wire.summary());
    for (const auto& [code, n] : pr.codes)
      CHECK_MESSAGE(code == "insufficient_funds", n << " ops rejected with " << code << ": these ops give no cause for it");
    in_doubt_total += pr.in_doubt.size();
    auto t_restart = SteadyClock::now();
    node.start();
    MESSAGE("round " << round + 1 << ": killed after " << kill_at_s << " s; " << pr.answered_ops << " ops answered ("
                     << static_cast<uint64_t>(pr.answered_ops / std::max(kill_at_s, 1e-3)) << " ops/s), "
                     << pr.acked.size() << " acknowledged, " << pr.rejected() << " rejected, " << pr.in_doubt.size()
                     << " in flight; ready again in " << seconds_since(t_restart) << " s");
    acked.insert(acked.end(), pr.acked.begin(), pr.acked.end());
    journal = verify_after_restart(node, acked, pr.acked, journal);
    if (!pr.in_doubt.empty()) retry_in_doubt(node.port(), phases[round], pr.in_doubt, journal, &acked);
  }
  CHECK_MESSAGE(in_doubt_total > 0, "no request was in flight at any kill: the test did not test what it says");

  // The node goes on working after the last restart.
  Findings wire;
  std::atomic<size_t> answered{0};
  PhaseResult last = run_phase(node.port(), phases[kCrashRounds], &wire, &answered, {});
  CHECK_MESSAGE(wire.count() == 0, wire.summary());
  CHECK(last.in_doubt.empty());
  CHECK(last.acked.size() + last.rejected() == kCrashClients * kCrashFinalOpsPerClient);
  CHECK(last.acked.size() > 0);
  acked.insert(acked.end(), last.acked.begin(), last.acked.end());
  journal = verify_after_restart(node, acked, last.acked, journal);
  MESSAGE(acked.size() << " ops acknowledged across " << kCrashRounds << " kills; journal holds "
                       << journal.ops.size() << " entries; test took " << seconds_since(t_test) << " s");

  int status = node.stop();
  CHECK_MESSAGE((WIFEXITED(status) && WEXITSTATUS(status) == 0),
                "node did not exit cleanly on SIGTERM: status " << status << "\n" << tail_of(read_file(node.log_path())));
}

}  // namespace
}  // namespace cl::test
