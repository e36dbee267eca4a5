// Black-box tests of the auditor's tools (DESIGN §5, §11): `cityledger
// export`, `cityledger audit` and `cityledger verify-receipt`, run as real
// processes against real `cityledger node` processes on loopback.
//
// A clean journal audits OK and reports the root the node signed; every kind
// of tampering an auditor must catch — one byte changed, an entry removed,
// two swapped, a forged op inserted and the rest re-hashed, a validly signed
// but unauthorized issue, a checkpoint signed by an unknown key or with a
// wrong root, a forked history against the state saved by an earlier audit —
// makes the audit exit 1 and name the entry index or checkpoint size.
// verify-receipt accepts a receipt under a signed checkpoint and refuses an
// altered one; `audit --node` over a 3-node cluster (also while it is under
// load, and with --state across runs) passes and reports each node's root.
//
// Each TEST_CASE starts its own node(s) (fresh data dirs, free ports).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/http_client.h"
#include "common/hex.h"
#include "ledger/checkpoint.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "tests/integration/cluster_process.h"
#include "tests/integration/node_process.h"
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"
#include "wallet/keys.h"
#include "wallet/op.h"

namespace cl::test {
namespace {

using api::HttpClient;
using api::HttpResult;
using SteadyClock = std::chrono::steady_clock;

// Checkpoints every 100 ms, so tests need not wait a second for one.
const std::string kFastCheckpoints = "{\"checkpoint_interval_ms\":100}";

Json parse(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << text.substr(0, 300));
  return j;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---------------------------------------------------------------------------
// Running the `cityledger` binary

struct CliResult {
  int code = -1;  // exit code (-1: killed by a signal)
  std::string out, err;
  std::string all() const { return out + err; }
};

// Runs `cityledger args...` with stdin from "stdin_path" (or /dev/null);
// fails the test if it has not exited within "timeout".
CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_path = "",
                  std::chrono::seconds timeout = std::chrono::seconds(25)) {
  TempDir io;
  const std::string out_path = io.sub("stdout"), err_path = io.sub("stderr");
  const std::string in_path = stdin_path.empty() ? "/dev/null" : stdin_path;
  std::vector<std::string> argv_s = {CL_CITYLEDGER_BIN};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int in = ::open(in_path.c_str(), O_RDONLY);
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  auto deadline = SteadyClock::now() + timeout;
  int status = 0;
  while (true) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (SteadyClock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      std::string cmd;
      for (const auto& a : args) cmd += " " + a;
      FAIL("cityledger" << cmd << " did not exit within " << timeout.count() << " s; stdout:\n"
                        << read_file(out_path) << "\nstderr:\n" << read_file(err_path));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CliResult res;
  res.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  res.out = read_file(out_path);
  res.err = read_file(err_path);
  return res;
}

// ---------------------------------------------------------------------------
// HTTP

Json get_json(uint16_t port, const std::string& target) {
  HttpClient c("127.0.0.1", port, 5000);
  auto r = c.request("GET", target);
  REQUIRE_MESSAGE(r.is_ok(), "GET " << target << ": " << r.status().to_string());
  INFO("GET " << target << " -> " << r->status << " " << r->body.substr(0, 300));
  REQUIRE(r->status == 200);
  return parse(r->body);
}

// POSTs "ops" as batches of at most 100 to /v1/ops/batch; requires every op accepted.
void submit_all(uint16_t port, const std::vector<Envelope>& ops) {
  HttpClient c("127.0.0.1", port, 10000);
  for (size_t b = 0; b < ops.size(); b += 100) {
    size_t e = std::min(ops.size(), b + 100);
    std::string body = "[";
    for (size_t i = b; i < e; ++i) body += (i > b ? "," : "") + ops[i].jcs;
    body += "]";
    auto r = c.request("POST", "/v1/ops/batch", body);
    REQUIRE_MESSAGE(r.is_ok(), r.status().to_string());
    REQUIRE_MESSAGE(r->status == 200, r->body.substr(0, 500));
    Json j = parse(r->body);
    REQUIRE(j["results"].size() == e - b);
    for (size_t i = b; i < e; ++i)
      REQUIRE_MESSAGE(j["results"][i - b]["result"] == "ok", "op " << i << ": " << j["results"][i - b].dump());
  }
}

// Waits (up to "timeout") until GET /v1/checkpoint on "port" has tree_size
// "size" and at least "signatures" signatures; returns it.
Json wait_checkpoint(uint16_t port, uint64_t size, size_t signatures = 1,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = SteadyClock::now() + timeout;
  Json cp;
  while (SteadyClock::now() < deadline) {
    cp = get_json(port, "/v1/checkpoint");
    if (cp["tree_size"] == size && cp["signatures"].size() >= signatures) return cp;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("no checkpoint of tree_size " << size << " with " << signatures << " signature(s) on port " << port
                                     << " within " << timeout.count() << " ms; last: " << cp.dump());
  return cp;
}

// ---------------------------------------------------------------------------
// A small city economy: a few hundred ops of every kind.

struct Economy {
  static constexpr size_t kRiders = 16;
  std::vector<KeyPair> rider_keys;
  std::vector<WalletId> riders;
  KeyPair metro_key = seed_key(0x61), agency_key = seed_key(0x62), shop_key = seed_key(0x63);
  WalletId metro = make_id(1, 0xB1), agency = make_id(2, 0xB1), shop = make_id(3, 0xB1);
  OpFactory f{"msk-demo", 0xE1};
  // The key that signed each transfer (by op id hex), for re-signing a variant.
  std::map<std::string, KeyPair> signer_of;
  std::map<std::string, std::pair<WalletId, WalletId>> parties_of;

  Economy() {
    for (size_t i = 0; i < kRiders; ++i) {
      rider_keys.push_back(seed_key(static_cast<uint8_t>(0x70 + i)));
      riders.push_back(make_id(100 + i, 0xB1));
    }
  }

  Envelope transfer(size_t from, const WalletId& to, uint64_t amount) {
    Envelope e = f.transfer(riders[from], rider_keys[from], to, amount);
    signer_of[id_hex(e.body.id)] = rider_keys[from];
    parties_of[id_hex(e.body.id)] = {riders[from], to};
    return e;
  }

  // Opens every wallet, funds them, then fares, transfers, payouts, redeems,
  // a freeze/unfreeze and a key rotation.  Submits everything; returns the
  // number of journal entries.
  uint64_t run(uint16_t port) {
    std::vector<Envelope> setup;
    for (size_t i = 0; i < kRiders; ++i) setup.push_back(f.open_wallet(riders[i], rider_keys[i]));
    setup.push_back(f.open_wallet(metro, metro_key, WalletKind::kTransit));
    setup.push_back(f.open_wallet(agency, agency_key, WalletKind::kAgency));
    setup.push_back(f.open_wallet(shop, shop_key, WalletKind::kMerchant));
    submit_all(port, setup);
    std::vector<Envelope> funding;
    for (size_t i = 0; i < kRiders; ++i) funding.push_back(f.issue(riders[i], 100'000));
    funding.push_back(f.issue(agency, 10'000'000));
    submit_all(port, funding);
    std::vector<Envelope> day;
    for (size_t r = 0; r < 80; ++r) {
      size_t i = r % kRiders;
      day.push_back(f.fare(riders[i], rider_keys[i], metro, 45, "gate-" + std::to_string(r % 8)));
      day.push_back(transfer(i, riders[(i + 3) % kRiders], 100 + r));
      day.push_back(f.payout(agency, agency_key, riders[i], 500, "child-benefit", "ref-" + std::to_string(r)));
      if (r % 10 == 0) {
        day.push_back(transfer(i, shop, 250));
        day.push_back(f.redeem(riders[i], rider_keys[i], 10));
      }
    }
    day.push_back(f.freeze(shop));
    day.push_back(f.freeze(shop, false));
    submit_all(port, day);
    // Rider 0 loses a phone: new key, then pays with it.
    KeyPair new_key = seed_key(0x9F);
    submit_all(port, {f.rotate_key(riders[0], new_key)});
    rider_keys[0] = new_key;
    submit_all(port, {transfer(0, riders[1], 77), f.fare(riders[0], new_key, metro, 45)});
    return setup.size() + funding.size() + day.size() + 3;
  }
};

// ---------------------------------------------------------------------------
// Journal files (NDJSON lines {"index","leaf_hash","op","time"})

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  std::string text = read_file(path), line;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    if (eol > pos) out.push_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return out;
}

std::string write_lines(const TempDir& dir, const std::string& name, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  std::string path = dir.sub(name);
  write_text(path, text);
  return path;
}

// A journal line for entry {index, time, op} with its correct leaf hash:
// SHA-256(0x00 ‖ JCS({index, op, time})).
std::string hashed_line(uint64_t index, uint64_t time, const Json& op) {
  std::string op_jcs = jcs(op);
  Hash leaf = merkle::leaf_hash(entry_bytes(index, time, op_jcs));
  Json line = {{"index", index}, {"leaf_hash", to_hex(leaf)}, {"op", op}, {"time", time}};
  return jcs(line);
}

// Re-numbers lines [from, end) to their positions and recomputes their
// leaf hashes: what a compromised node would do to hide an edit.
void rehash_from(std::vector<std::string>& lines, size_t from) {
  for (size_t i = from; i < lines.size(); ++i) {
    Json j = parse(lines[i]);
    lines[i] = hashed_line(i, j["time"].get<uint64_t>(), j["op"]);
  }
}

std::string op_type(const std::string& line) { return parse(line)["op"]["body"]["type"].get<std::string>(); }

// The first line at or after "from" whose op is of type "type".
size_t find_type(const std::vector<std::string>& lines, size_t from, const std::string& type) {
  for (size_t i = from; i < lines.size(); ++i)
    if (op_type(lines[i]) == type) return i;
  FAIL("no " << type << " at or after line " << from);
  return 0;
}

// A node with the economy's journal on it, exported and checkpointed.
struct AuditedNode {
  NodeProcess node{kFastCheckpoints};
  TempDir dir;
  Economy economy;
  uint64_t size = 0;
  std::string genesis, journal;
  Json checkpoint;  // GET /v1/checkpoint at tree_size == size

  AuditedNode() {
    node.start();
    genesis = node.dir().sub("genesis.json");
    size = economy.run(node.port());
    REQUIRE(size > 250);
    checkpoint = wait_checkpoint(node.port(), size);
    journal = dir.sub("journal.ndjson");
    CliResult r = run_cli({"export", "--node", node.url(), "--out", journal});
    INFO("export: " << r.all());
    REQUIRE(r.code == 0);
    CHECK(contains(r.out, "exported " + std::to_string(size) + " journal entries"));
    REQUIRE(read_lines(journal).size() == size);
  }

  CliResult audit(const std::string& journal_path, std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"audit", "--journal", journal_path, "--genesis", genesis, "--quiet"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_cli(args);
  }
  CliResult audit_lines(const std::string& name, const std::vector<std::string>& lines,
                        std::vector<std::string> extra = {}) const {
    return audit(write_lines(dir, name, lines), std::move(extra));
  }
};

// Requires exit 1 with "AUDIT FAILED: " and every one of "needles" in the output.
void require_failed(const CliResult& r, const std::vector<std::string>& needles) {
  INFO("exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 1);
  CHECK(contains(r.out, "AUDIT FAILED: "));
  for (const auto& n : needles) CHECK_MESSAGE(contains(r.all(), n), "output does not mention \"" << n << "\"");
}

// ===========================================================================

TEST_CASE("audit: a clean exported journal audits OK and --json reports the root and size the node signed") {
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  std::set<std::string> types;
  for (size_t i = 0; i < lines.size(); ++i) {
    Json j = parse(lines[i]);
    INFO("line " << i << ": " << lines[i].substr(0, 200));
    CHECK(j.size() == 4);
    CHECK(j["index"] == i);
    CHECK(j.contains("leaf_hash"));
    CHECK(j.contains("op"));
    CHECK(j.contains("time"));
    types.insert(j["op"]["body"]["type"].get<std::string>());
  }
  CHECK(types == std::set<std::string>{"open_wallet", "issue", "redeem", "transfer", "fare", "payout", "freeze",
                                       "unfreeze", "rotate_key"});

  CliResult text = a.audit(a.journal);
  INFO("text audit: " << text.all());
  CHECK(text.code == 0);
  CHECK(contains(text.out, "AUDIT OK"));
  CHECK(contains(text.out, a.checkpoint["root"].get<std::string>()));

  std::string cp_file = a.dir.sub("checkpoint.json");
  write_text(cp_file, a.checkpoint.dump());
  CliResult r = a.audit(a.journal, {"--json", "--checkpoint", cp_file});
  INFO("json audit: " << r.all());
  REQUIRE(r.code == 0);
  Json rep = parse(r.out);
  CHECK(rep["ok"] == true);
  CHECK(rep["entries"] == a.size);
  CHECK(rep["entries"] == a.checkpoint["tree_size"]);
  CHECK(rep["root"] == a.checkpoint["root"]);
  CHECK(rep["checkpoints_verified"] == 1);
  CHECK(rep["chain"] == "msk-demo");
  CHECK(rep["wallets"] == Economy::kRiders + 3);
  // Supply agrees with the node's own.
  Json supply = get_json(a.node.port(), "/v1/supply");
  CHECK(rep["supply"] == supply);
}

TEST_CASE("audit: one byte changed in one entry (an amount digit, a signature hex char) fails naming that entry") {
  AuditedNode a;
  const std::vector<std::string> clean = read_lines(a.journal);

  SUBCASE("an amount digit") {
    size_t k = find_type(clean, clean.size() / 2, "transfer");
    std::vector<std::string> lines = clean;
    size_t at = lines[k].find("\"amount\":");
    REQUIRE(at != std::string::npos);
    char& digit = lines[k][at + 9];
    REQUIRE(digit >= '1');
    REQUIRE(digit <= '9');
    digit = digit == '1' ? '2' : '1';
    require_failed(a.audit_lines("amount.ndjson", lines), {"entry " + std::to_string(k) + ":"});
  }
  SUBCASE("a signature hex char") {
    size_t k = find_type(clean, clean.size() / 3, "fare");
    std::vector<std::string> lines = clean;
    size_t at = lines[k].find("\"sig\":\"");
    REQUIRE(at != std::string::npos);
    char& c = lines[k][at + 7 + 10];
    c = c == '0' ? '1' : '0';
    require_failed(a.audit_lines("sig.ndjson", lines), {"entry " + std::to_string(k) + ":"});
  }
  SUBCASE("a time digit") {
    size_t k = clean.size() - 5;
    std::vector<std::string> lines = clean;
    size_t at = lines[k].rfind("\"time\":");
    REQUIRE(at != std::string::npos);
    char& c = lines[k][at + 7 + 5];
    c = c == '0' ? '1' : '0';
    require_failed(a.audit_lines("time.ndjson", lines), {"entry " + std::to_string(k) + ":"});
  }
}

TEST_CASE("audit: an entry removed fails naming its index") {
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  const size_t k = lines.size() / 2 + 3;
  lines.erase(lines.begin() + static_cast<long>(k));
  require_failed(a.audit_lines("removed.ndjson", lines), {"entry " + std::to_string(k) + ":"});

  SUBCASE("the first entry removed") {
    std::vector<std::string> l2 = read_lines(a.journal);
    l2.erase(l2.begin());
    require_failed(a.audit_lines("removed0.ndjson", l2), {"entry 0:"});
  }
}

TEST_CASE("audit: two entries swapped fail naming the first swapped index") {
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  const size_t k = lines.size() / 2 + 1;
  std::swap(lines[k], lines[k + 1]);
  require_failed(a.audit_lines("swapped.ndjson", lines), {"entry " + std::to_string(k) + ":"});

  SUBCASE("swapped and re-numbered, re-hashed: an op applied before its wallet exists") {
    // Swap an issue before the open_wallet of its wallet: the indexes and
    // hashes are self-consistent, but the replay refuses it.
    std::vector<std::string> l2 = read_lines(a.journal);
    size_t issue = find_type(l2, 0, "issue");
    REQUIRE(issue > 0);
    std::string to = parse(l2[issue])["op"]["body"]["to"];
    size_t open = 0;
    for (; open < issue; ++open)
      if (op_type(l2[open]) == "open_wallet" && parse(l2[open])["op"]["body"]["wallet"] == to) break;
    REQUIRE(open < issue);
    std::swap(l2[open], l2[issue]);
    rehash_from(l2, 0);
    require_failed(a.audit_lines("swapped2.ndjson", l2), {"entry " + std::to_string(open) + ":", "unknown_wallet"});
  }
}

TEST_CASE("audit: a forged op inserted by a compromised node, with every later line re-numbered and re-hashed, fails naming it and its signature") {
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  const size_t k = lines.size() / 2;
  // A transfer out of rider 5 "signed" by rider 5, with one signature hex char altered.
  Envelope env = a.economy.f.transfer(a.economy.riders[5], seed_key(0x75), a.economy.shop, 50'000);
  Json op = parse(env.jcs);
  std::string sig = op["signatures"][0]["sig"];
  sig[20] = sig[20] == 'a' ? 'b' : 'a';
  op["signatures"][0]["sig"] = sig;
  uint64_t time = parse(lines[k])["time"].get<uint64_t>();
  lines.insert(lines.begin() + static_cast<long>(k), hashed_line(k, time, op));
  rehash_from(lines, k + 1);
  require_failed(a.audit_lines("forged.ndjson", lines), {"entry " + std::to_string(k) + ":", "signature"});

  SUBCASE("--json says ok false and names the entry in error") {
    CliResult r = a.audit_lines("forged2.ndjson", lines, {"--json"});
    INFO("exit " << r.code << " " << r.all());
    CHECK(r.code == 1);
    Json rep = parse(r.out);
    CHECK(rep["ok"] == false);
    REQUIRE(rep["error"].is_string());
    CHECK(contains(rep["error"].get<std::string>(), "entry " + std::to_string(k) + ":"));
    CHECK(contains(rep["error"].get<std::string>(), "signature"));
  }
}

TEST_CASE("audit: a balance-inflating issue validly signed by a non-issuer key fails naming that entry (not authorized)") {
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  const uint64_t n = lines.size();
  KeyPair rogue = seed_key(0xD6);
  OpBody b = a.economy.f.body(OpType::kIssue);
  b.to = a.economy.riders[3];
  b.amount = 5'000'000;
  Envelope env = sign_envelope(b, {&rogue});
  REQUIRE(verify_envelope(env) == Code::kOk);  // the signature itself is valid
  uint64_t time = parse(lines.back())["time"].get<uint64_t>() + 1;
  lines.push_back(hashed_line(n, time, parse(env.jcs)));
  require_failed(a.audit_lines("inflated.ndjson", lines), {"entry " + std::to_string(n) + ":", "not_authorized"});

  SUBCASE("signed by a registrar (a genesis key, but not the issuer)") {
    Envelope env2 = sign_envelope(b, {&authorities().registrar});
    std::vector<std::string> l2 = read_lines(a.journal);
    l2.push_back(hashed_line(n, time, parse(env2.jcs)));
    require_failed(a.audit_lines("inflated2.ndjson", l2), {"entry " + std::to_string(n) + ":", "not_authorized"});
  }
  SUBCASE("an overdraft validly signed by the wallet's owner") {
    Envelope over = a.economy.f.transfer(a.economy.riders[4], a.economy.rider_keys[4], a.economy.shop, 90'000'000);
    std::vector<std::string> l2 = read_lines(a.journal);
    l2.push_back(hashed_line(n, time, parse(over.jcs)));
    require_failed(a.audit_lines("overdraft.ndjson", l2), {"entry " + std::to_string(n) + ":", "insufficient_funds"});
  }
  SUBCASE("a payout reference paid twice (a new op id, validly signed by the agency)") {
    Envelope twice =
        a.economy.f.payout(a.economy.agency, a.economy.agency_key, a.economy.riders[9], 500, "child-benefit", "ref-9");
    std::vector<std::string> l2 = read_lines(a.journal);
    l2.push_back(hashed_line(n, time, parse(twice.jcs)));
    require_failed(a.audit_lines("twice.ndjson", l2), {"entry " + std::to_string(n) + ":", "reference_used"});
  }
  SUBCASE("an accepted op journaled a second time") {
    std::vector<std::string> l2 = read_lines(a.journal);
    size_t k = find_type(l2, l2.size() / 2, "fare");
    l2.push_back(hashed_line(n, time, parse(l2[k])["op"]));
    require_failed(a.audit_lines("dup.ndjson", l2), {"entry " + std::to_string(n) + ":"});
  }
}

TEST_CASE("audit: a journal longer than one parallel chunk (8,192 lines) audits OK; a bad byte past the first chunk is named") {
  NodeProcess node(kFastCheckpoints);
  node.start();
  TempDir dir;
  Economy e;
  uint64_t size = e.run(node.port());
  std::vector<Envelope> more;
  for (size_t i = 0; i < 9000; ++i) more.push_back(e.transfer(i % Economy::kRiders, e.riders[(i + 5) % Economy::kRiders], 1));
  submit_all(node.port(), more);
  size += more.size();
  Json cp = wait_checkpoint(node.port(), size);
  const std::string genesis = node.dir().sub("genesis.json"), journal = dir.sub("journal.ndjson");
  REQUIRE(run_cli({"export", "--node", node.url(), "--out", journal}).code == 0);
  std::vector<std::string> lines = read_lines(journal);
  REQUIRE(lines.size() == size);

  CliResult ok = run_cli({"audit", "--journal", journal, "--genesis", genesis, "--json"});
  INFO("clean: " << ok.all());
  REQUIRE(ok.code == 0);
  CHECK(parse(ok.out)["entries"] == size);
  CHECK(parse(ok.out)["root"] == cp["root"]);

  for (size_t k : {size_t{8191}, size_t{8192}, size_t{9000}, size - 1}) {
    std::vector<std::string> bad = lines;
    size_t at = bad[k].find("\"amount\":");
    REQUIRE(at != std::string::npos);
    bad[k][at + 9] = bad[k][at + 9] == '1' ? '2' : '1';
    std::string f = write_lines(dir, "bad-" + std::to_string(k) + ".ndjson", bad);
    require_failed(run_cli({"audit", "--journal", f, "--genesis", genesis, "--quiet"}), {"entry " + std::to_string(k) + ":"});
  }
}

TEST_CASE("a node keeps only the newest limits.checkpoints_kept checkpoints; its checkpoint file stays bounded across restarts") {
  constexpr size_t kKept = 3;
  NodeProcess node("{\"checkpoint_interval_ms\":10,\"checkpoints_kept\":" + std::to_string(kKept) + "}");
  node.start();
  Economy e;
  uint64_t size = e.run(node.port());
  // Many small appends, each waited for, so that the node signs many checkpoints.
  const std::string file = node.dir().sub("data/checkpoints.ndjson");
  uint64_t made = 0, last_size = 0;
  for (size_t i = 0; i < 60; ++i) {
    submit_all(node.port(), {e.transfer(i % Economy::kRiders, e.riders[(i + 1) % Economy::kRiders], 1)});
    ++size;
    Json cp = wait_checkpoint(node.port(), size);
    if (cp["tree_size"].get<uint64_t>() != last_size) ++made;
    last_size = cp["tree_size"].get<uint64_t>();
    CHECK(read_lines(file).size() <= 2 * kKept + 16 + 2);  // +2: a line may gain signatures before a rewrite
  }
  REQUIRE(made >= 2 * kKept + 16);  // enough checkpoints to force at least one rewrite
  Json list = get_json(node.port(), "/v1/checkpoints?from=0&limit=1000");
  INFO(list.dump().substr(0, 500));
  const Json& cps = list.is_array() ? list : list["checkpoints"];
  REQUIRE(cps.size() == kKept);
  CHECK(cps.back()["tree_size"] == size);  // the newest are the ones kept
  // After a restart the node serves the same newest checkpoints from its file.
  node.stop();
  node.start();
  Json again = get_json(node.port(), "/v1/checkpoints?from=0&limit=1000");
  const Json& cps2 = again.is_array() ? again : again["checkpoints"];
  CHECK(cps2 == cps);
  CHECK(read_lines(file).size() <= 2 * kKept + 16 + 2);
}

TEST_CASE("audit: with two bad entries sharing one ledger time, the first one is named") {
  // Ops of one batch share a ledger time, and the replay applies such a
  // group at once: the audit must still name the first bad entry, not the
  // first one that fails a per-line check.
  AuditedNode a;
  std::vector<std::string> lines = read_lines(a.journal);
  // The middle of the biggest group of entries sharing a time.
  std::map<uint64_t, std::vector<size_t>> by_time;
  for (size_t i = 0; i < lines.size(); ++i) by_time[parse(lines[i])["time"].get<uint64_t>()].push_back(i);
  std::vector<size_t> group;
  for (const auto& [t, g] : by_time)
    if (g.size() > group.size()) group = g;
  REQUIRE(group.size() >= 4);
  const size_t j = group[group.size() / 2];
  const uint64_t time = parse(lines[j])["time"].get<uint64_t>();
  // Entry j: an issue validly signed by a non-issuer key (fails on apply).
  KeyPair rogue = seed_key(0xD6);
  OpBody b = a.economy.f.body(OpType::kIssue);
  b.to = a.economy.riders[3];
  b.amount = 5'000'000;
  lines[j] = hashed_line(j, time, parse(sign_envelope(b, {&rogue}).jcs));
  // Entry j + 1: a forged signature (fails a per-line check).
  Json op = parse(lines[j + 1])["op"];
  std::string sig = op["signatures"][0]["sig"];
  sig[20] = sig[20] == 'a' ? 'b' : 'a';
  op["signatures"][0]["sig"] = sig;
  lines[j + 1] = hashed_line(j + 1, time, op);
  require_failed(a.audit_lines("two-bad.ndjson", lines), {"entry " + std::to_string(j) + ":", "not_authorized"});
}

TEST_CASE("audit: a checkpoint signed by an unknown key, or with a wrong root, fails naming its tree_size") {
  AuditedNode a;
  const std::string size_s = std::to_string(a.size);
  auto cp = checkpoint_from_json(a.checkpoint);
  REQUIRE_MESSAGE(cp.is_ok(), cp.status().to_string());
  REQUIRE(cp->signatures.size() == 1);
  KeyPair stranger = seed_key(0xC7);

  // The genuine one passes.
  std::string good = a.dir.sub("good.json");
  write_text(good, a.checkpoint.dump());
  CHECK(a.audit(a.journal, {"--checkpoint", good}).code == 0);

  SUBCASE("node 1's signature replaced by one from a key not in genesis") {
    Checkpoint forged = *cp;
    forged.signatures = {sign_checkpoint(forged, 1, stranger)};
    REQUIRE(signature_valid(forged, forged.signatures[0]));
    std::string f = a.dir.sub("replaced.json");
    write_text(f, checkpoint_to_json(forged).dump());
    require_failed(a.audit(a.journal, {"--checkpoint", f}), {"checkpoint tree_size " + size_s, "unknown key"});
  }
  SUBCASE("a signature from a key not in genesis added next to node 1's") {
    Checkpoint forged = *cp;
    forged.signatures.push_back(sign_checkpoint(forged, 2, stranger));
    std::string f = a.dir.sub("added.json");
    write_text(f, checkpoint_to_json(forged).dump());
    require_failed(a.audit(a.journal, {"--checkpoint", f}), {"checkpoint tree_size " + size_s, "unknown key"});
  }
  SUBCASE("a wrong root (re-signed by the genuine node key, so only the root is wrong)") {
    Checkpoint forged = *cp;
    forged.root[0] ^= 0x01;
    forged.signatures = {sign_checkpoint(forged, 1, authorities().node)};
    std::string f = a.dir.sub("root.json");
    write_text(f, checkpoint_to_json(forged).dump());
    require_failed(a.audit(a.journal, {"--checkpoint", f}), {"checkpoint tree_size " + size_s, "root"});
  }
  SUBCASE("a wrong root with the original signature") {
    Json j = a.checkpoint;
    std::string root = j["root"];
    root[0] = root[0] == '0' ? '1' : '0';
    j["root"] = root;
    std::string f = a.dir.sub("root2.json");
    write_text(f, j.dump());
    require_failed(a.audit(a.journal, {"--checkpoint", f}), {"checkpoint tree_size " + size_s});
  }
  SUBCASE("a genuine checkpoint against a journal cut short") {
    std::vector<std::string> lines = read_lines(a.journal);
    lines.resize(lines.size() - 10);
    require_failed(a.audit_lines("cut.ndjson", lines, {"--checkpoint", good}), {"checkpoint tree_size " + size_s});
  }
}

TEST_CASE("audit --state: a forked history that is valid on its own passes alone but fails against the saved state") {
  AuditedNode a;
  const std::string state = a.dir.sub("state.json");
  CliResult first = a.audit(a.journal, {"--state", state});
  INFO("first audit: " << first.all());
  REQUIRE(first.code == 0);
  REQUIRE(std::filesystem::exists(state));
  Json saved = parse(read_file(state));
  CHECK(saved["tree_size"] == a.size);
  CHECK(saved["root"] == a.checkpoint["root"]);
  // Auditing the same journal again against its own state passes.
  CHECK(a.audit(a.journal, {"--state", state}).code == 0);

  // The fork: entry k, a transfer, replaced by a different amount from the
  // same wallet, properly signed by that wallet's key; the rest re-hashed.
  std::vector<std::string> lines = read_lines(a.journal);
  const size_t k = find_type(lines, lines.size() / 2, "transfer");
  REQUIRE(k < lines.size() - 1);
  Json old = parse(lines[k]);
  std::string old_id = old["op"]["body"]["id"];
  REQUIRE(a.economy.signer_of.count(old_id) == 1);
  auto [from, to] = a.economy.parties_of.at(old_id);
  OpFactory other("msk-demo", 0xF0);
  Envelope variant = other.transfer(from, a.economy.signer_of.at(old_id), to, old["op"]["body"]["amount"].get<uint64_t>() + 1);
  lines[k] = hashed_line(k, old["time"].get<uint64_t>(), parse(variant.jcs));
  rehash_from(lines, k + 1);
  std::string fork = write_lines(a.dir, "fork.ndjson", lines);

  CliResult alone = a.audit(fork, {"--json"});
  INFO("fork alone: " << alone.all());
  REQUIRE(alone.code == 0);
  Json rep = parse(alone.out);
  CHECK(rep["ok"] == true);
  CHECK(rep["entries"] == a.size);
  CHECK(rep["root"] != a.checkpoint["root"]);

  CliResult against = a.audit(fork, {"--state", state});
  require_failed(against, {"tree_size " + std::to_string(a.size), "not consistent", "fork"});
  // The failed audit left the state as it was.
  CHECK(parse(read_file(state)) == saved);

  SUBCASE("the fork also fails against the node's genuine checkpoint") {
    std::string good = a.dir.sub("good.json");
    write_text(good, a.checkpoint.dump());
    require_failed(a.audit(fork, {"--checkpoint", good}), {"checkpoint tree_size " + std::to_string(a.size)});
  }
  SUBCASE("a history cut below the saved state fails against it") {
    std::vector<std::string> cut = read_lines(a.journal);
    cut.resize(cut.size() - 3);
    require_failed(a.audit_lines("cut.ndjson", cut, {"--state", state}),
                   {"tree_size " + std::to_string(a.size), "cut"});
  }
}

TEST_CASE("verify-receipt: a receipt covered by a signed checkpoint verifies; one with an altered leaf_hash does not") {
  NodeProcess node(kFastCheckpoints);
  node.start();
  TempDir dir;
  Economy e;
  uint64_t size = e.run(node.port());
  std::string genesis = node.dir().sub("genesis.json");

  HttpClient c("127.0.0.1", node.port());
  Envelope op = e.f.fare(e.riders[7], e.rider_keys[7], e.metro, 45, "gate-receipt");
  auto r = c.request("POST", "/v1/ops", op.jcs);
  REQUIRE(r.is_ok());
  REQUIRE_MESSAGE(r->status == 200, r->body);
  Json receipt = parse(r->body);
  REQUIRE(receipt["index"] == size);
  wait_checkpoint(node.port(), size + 1);

  std::string good = dir.sub("receipt.json");
  write_text(good, receipt.dump());
  CliResult ok = run_cli({"verify-receipt", "--node", node.url(), "--genesis", genesis}, good);
  INFO("verify-receipt: " << ok.all());
  CHECK(ok.code == 0);
  CHECK(contains(ok.out, "RECEIPT VERIFIED"));
  CHECK(contains(ok.out, "entry " + std::to_string(size)));

  SUBCASE("an early receipt (entry 0) verifies against the latest checkpoint too") {
    Json r0 = get_json(node.port(), "/v1/ops/" + id_hex(make_id(1, 0xE1)));
    REQUIRE(r0["index"] == 0);
    std::string f = dir.sub("r0.json");
    write_text(f, r0.dump());
    CliResult res = run_cli({"verify-receipt", "--node", node.url(), "--genesis", genesis}, f);
    INFO(res.all());
    CHECK(res.code == 0);
    CHECK(contains(res.out, "RECEIPT VERIFIED"));
  }
  SUBCASE("an altered leaf_hash") {
    Json bad = receipt;
    std::string h = bad["leaf_hash"];
    h[5] = h[5] == '0' ? '1' : '0';
    bad["leaf_hash"] = h;
    std::string f = dir.sub("bad.json");
    write_text(f, bad.dump());
    CliResult res = run_cli({"verify-receipt", "--node", node.url(), "--genesis", genesis}, f);
    INFO(res.all());
    CHECK(res.code == 1);
    CHECK_FALSE(contains(res.out, "RECEIPT VERIFIED"));
  }
  SUBCASE("the right leaf_hash under another index") {
    Json bad = receipt;
    bad["index"] = size - 1;
    std::string f = dir.sub("moved.json");
    write_text(f, bad.dump());
    CliResult res = run_cli({"verify-receipt", "--node", node.url(), "--genesis", genesis}, f);
    INFO(res.all());
    CHECK(res.code == 1);
    CHECK_FALSE(contains(res.out, "RECEIPT VERIFIED"));
  }
  SUBCASE("a genesis that does not list the node's key") {
    std::string other = dir.sub("other-genesis.json");
    const auto& au = authorities();
    write_text(other, "{\"chain\":\"msk-demo\",\"issuer\":\"" + hex_encode(au.issuer.public_key) +
                          "\",\"registrars\":[\"" + hex_encode(au.registrar.public_key) +
                          "\"],\"nodes\":[{\"id\":1,\"key\":\"" + hex_encode(seed_key(0xC7).public_key) + "\"}]}");
    CliResult res = run_cli({"verify-receipt", "--node", node.url(), "--genesis", other}, good);
    INFO(res.all());
    CHECK(res.code == 1);
    CHECK_FALSE(contains(res.out, "RECEIPT VERIFIED"));
  }
}

TEST_CASE("audit --node n1 --node n2 --node n3 on a 3-node cluster after load: OK, and every node signed the root it replays to") {
  Cluster cluster(3, kFastCheckpoints);
  cluster.start_all();
  uint64_t leader = cluster.wait_for_leader();
  const std::string genesis = std::filesystem::path(cluster.config_path(1)).parent_path().string() + "/genesis.json";

  Economy e;
  uint64_t size = e.run(cluster.api_port(leader));
  cluster.wait_converged();
  std::map<uint64_t, Json> served;
  for (uint64_t id : cluster.ids()) served[id] = wait_checkpoint(cluster.api_port(id), size, 2);

  std::vector<std::string> args = {"audit", "--genesis", genesis, "--json"};
  for (uint64_t id : cluster.ids()) {
    args.push_back("--node");
    args.push_back(cluster.url(id));
  }
  CliResult r = run_cli(args);
  INFO("audit: exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err << "\n" << cluster.logs(10));
  REQUIRE(r.code == 0);
  Json rep = parse(r.out);
  CHECK(rep["ok"] == true);
  CHECK(rep["entries"] == size);
  CHECK(rep["checkpoints_verified"].get<uint64_t>() >= 3);
  REQUIRE(rep["nodes"].is_array());
  REQUIRE(rep["nodes"].size() == 3);
  for (uint64_t id : cluster.ids()) {
    INFO("node " << id << " serves " << served[id].dump());
    CHECK(served[id]["root"] == rep["root"]);
    bool listed = false;
    for (const auto& n : rep["nodes"]) {
      if (n["node"] != cluster.url(id)) continue;
      listed = true;
      CHECK(n["tree_size"] == size);
      CHECK(n["root"] == served[id]["root"]);
      CHECK(n["root"] == rep["root"]);
      CHECK(n["signatures"].get<uint64_t>() >= 2);
    }
    CHECK(listed);
  }

  SUBCASE("--state: a later audit after more load proves every node's checkpoint extends the saved head") {
    TempDir dir;
    const std::string state = dir.sub("state.json");
    std::vector<std::string> sargs = args;
    sargs.push_back("--state");
    sargs.push_back(state);
    CliResult first = run_cli(sargs);
    INFO("first: " << first.all());
    REQUIRE(first.code == 0);
    CHECK(parse(read_file(state))["tree_size"] == size);

    std::vector<Envelope> more;
    for (size_t i = 0; i < 40; ++i) more.push_back(e.transfer(i % Economy::kRiders == 0 ? 1 : i % Economy::kRiders,
                                                               e.metro, 3 + i));
    submit_all(cluster.api_port(cluster.wait_for_leader()), more);
    cluster.wait_converged();
    for (uint64_t id : cluster.ids()) wait_checkpoint(cluster.api_port(id), size + more.size(), 2);
    CliResult second = run_cli(sargs);
    INFO("second: " << second.all());
    REQUIRE(second.code == 0);
    Json rep2 = parse(second.out);
    CHECK(rep2["ok"] == true);
    CHECK(rep2["entries"] == size + more.size());
    CHECK(rep2["consistent_with_state"]["tree_size"] == size);
    CHECK(parse(read_file(state))["tree_size"] == size + more.size());

    // Once more with nothing new: the saved head is every node's latest.
    CliResult third = run_cli(sargs);
    INFO("third: " << third.all());
    CHECK(third.code == 0);
  }
  SUBCASE("an export from a follower audits to the same root") {
    uint64_t follower = leader == 1 ? 2 : 1;
    TempDir dir;
    std::string journal = dir.sub("follower.ndjson");
    CliResult ex = run_cli({"export", "--node", cluster.url(follower), "--out", journal});
    INFO(ex.all());
    REQUIRE(ex.code == 0);
    std::string cp_file = dir.sub("cp.json");
    write_text(cp_file, served[leader].dump());
    CliResult au = run_cli({"audit", "--journal", journal, "--genesis", genesis, "--json", "--checkpoint", cp_file});
    INFO(au.all());
    REQUIRE(au.code == 0);
    CHECK(parse(au.out)["root"] == rep["root"]);
    CHECK(parse(au.out)["checkpoints_verified"] == 1);
    CHECK(parse(au.out)["checkpoints_unconfirmed"] == 0);

    // An archived checkpoint file must carry a majority: one of three
    // signatures (valid, and over the right root) is not enough.
    Json one = served[leader];
    REQUIRE(one["signatures"].size() >= 2);
    one["signatures"] = Json::array({one["signatures"][0]});
    write_text(cp_file, one.dump());
    require_failed(run_cli({"audit", "--journal", journal, "--genesis", genesis, "--checkpoint", cp_file}),
                   {"checkpoint tree_size " + one["tree_size"].dump(), "majority"});
  }
}

TEST_CASE("audit --node on a 3-node cluster during and after sustained batch load (default checkpoint interval) passes") {
  Cluster cluster(3);
  cluster.start_all();
  uint64_t leader = cluster.wait_for_leader();
  const std::string genesis = std::filesystem::path(cluster.config_path(1)).parent_path().string() + "/genesis.json";
  Economy e;
  uint64_t size = e.run(cluster.api_port(leader));
  // Two clients, batches of 500 transfers, for about 6 s.
  std::vector<std::vector<Envelope>> work(2);
  for (size_t t = 0; t < 2; ++t)
    for (size_t i = 0; i < 30'000; ++i)
      work[t].push_back(e.transfer((i + t * 7) % Economy::kRiders, e.riders[(i + 1 + t) % Economy::kRiders], 1));
  std::atomic<bool> failed{false};
  std::string failure;  // written by the client that sets "failed" first
  auto deadline = SteadyClock::now() + std::chrono::seconds(6);
  std::vector<std::thread> clients;
  struct Joiner {
    std::vector<std::thread>& threads;
    ~Joiner() {
      for (auto& t : threads)
        if (t.joinable()) t.join();
    }
  } joiner{clients};
  for (size_t t = 0; t < 2; ++t)
    clients.emplace_back([&, t] {
      HttpClient c("127.0.0.1", cluster.api_port(leader), 20000);
      for (size_t b = 0; b < work[t].size() && SteadyClock::now() < deadline; b += 500) {
        std::string body = "[";
        for (size_t i = b; i < b + 500; ++i) body += (i > b ? "," : "") + work[t][i].jcs;
        body += "]";
        // 429/503 (overload) are retried with the same ops: ids make it safe.
        auto give_up = SteadyClock::now() + std::chrono::seconds(10);
        while (true) {
          auto r = c.request("POST", "/v1/ops/batch", body);
          if (r && r->status == 200) break;
          if (r && (r->status == 429 || r->status == 503) && SteadyClock::now() < give_up) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
          }
          if (!failed.exchange(true)) failure = r ? std::to_string(r->status) + " " + r->body.substr(0, 300) : r.status().to_string();
          return;
        }
      }
    });
  std::vector<std::string> args = {"audit", "--genesis", genesis, "--json"};
  for (uint64_t id : cluster.ids()) {
    args.push_back("--node");
    args.push_back(cluster.url(id));
  }
  // Audits while the load runs: an honest cluster under load must pass.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::vector<CliResult> live;
  while (SteadyClock::now() + std::chrono::milliseconds(500) < deadline) live.push_back(run_cli(args));
  for (auto& t : clients) t.join();
  REQUIRE_MESSAGE(!failed.load(), "a load client failed: " << failure);
  cluster.wait_converged();
  {
    HttpClient c("127.0.0.1", cluster.api_port(leader), 5000);
    auto r = c.request("GET", "/v1/journal?from=0&limit=1", "", "application/json", {{"Accept", "application/x-ndjson"}});
    REQUIRE(r.is_ok());
    REQUIRE(r->status == 200);
    uint64_t now = std::stoull(r->header("x-journal-size"));
    CHECK(now > size + 1000);
    size = now;
  }
  CHECK(!live.empty());
  for (const auto& r : live) {
    INFO("live audit: exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.code == 0);
  }
  for (uint64_t id : cluster.ids()) wait_checkpoint(cluster.api_port(id), size, 2);
  // Every stored checkpoint of every node gathered a majority (the audit
  // requires it of each one it is shown).
  for (uint64_t id : cluster.ids()) {
    Json page = get_json(cluster.api_port(id), "/v1/checkpoints?limit=1000");
    CHECK(!page["checkpoints"].empty());
    for (const auto& c : page["checkpoints"])
      CHECK_MESSAGE(c["signatures"].size() >= 2, "node " << id << " stores " << c.dump());
  }
  CliResult r = run_cli(args);
  INFO("audit: exit " << r.code << "\nstdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.code == 0);
}

}  // namespace
}  // namespace cl::test
