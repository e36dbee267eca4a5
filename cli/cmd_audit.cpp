// `cityledger audit`, `cityledger export`, `cityledger verify-receipt`: what
// auditors and citizens run (DESIGN §5, §11).  They trust nothing a node
// says that they cannot re-verify against the genesis file.
#include <sodium.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <thread>

#include "api/http_client.h"
#include "cli/bench_util.h"
#include "cli/commands.h"
#include "common/hex.h"
#include "ledger/audit.h"
#include "ledger/merkle.h"

namespace cl::cli {
namespace {

using Clock = BenchClock;

Result<Json> get_json(const std::string& base, const std::string& target, uint64_t timeout_ms = 10000) {
  auto url = api::parse_url(base);
  if (!url) return url.status();
  api::HttpClient c(url->host, url->port, timeout_ms);
  auto r = c.request("GET", target);
  if (!r) return r.status();
  if (r->status != 200)
    return Status::error("unavailable", base + target + " answered " + std::to_string(r->status) + ": " + r->body.substr(0, 200));
  auto doc = parse_json_strict(r->body);
  if (!doc) return Status::error("invalid", base + target + " sent malformed JSON: " + doc.status().message());
  return *doc;
}

// Streams a node's journal (NDJSON pages) from index "from" until at least
// "until" entries (or, with until = 0, the size the node reported at the
// first page); calls line() for each line.  Returns the entries read.
Result<uint64_t> stream_journal(const std::string& base, uint64_t until, const std::function<Status(std::string)>& line) {
  auto url = api::parse_url(base);
  if (!url) return url.status();
  api::HttpClient c(url->host, url->port, 60000);
  uint64_t next = 0, target = until;
  while (true) {
    auto r = c.request("GET", "/v1/journal?from=" + std::to_string(next), "", "application/json",
                       {{"Accept", "application/x-ndjson"}});
    if (!r) return r.status();
    if (r->status != 200) return Status::error("unavailable", base + " journal answered " + std::to_string(r->status));
    uint64_t size = 0;
    try {
      size = std::stoull(r->header("x-journal-size"));
    } catch (const std::exception&) {
      return Status::error("invalid", base + " sent no X-Journal-Size header");
    }
    if (target == 0) target = size;
    std::string_view body = r->body;
    uint64_t got = 0;
    while (!body.empty()) {
      auto nl = body.find('\n');
      std::string_view l = body.substr(0, nl);
      body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
      if (l.empty()) continue;
      Status s = line(std::string(l));
      if (!s) return s;
      ++got;
    }
    next += got;
    if (next >= target) return next;
    if (got == 0) {
      if (size < target)
        return Status::error("corruption", base + " serves " + std::to_string(size) + " journal entries, fewer than the " +
                                               std::to_string(target) + " its checkpoints vouch for");
      return Status::error("unavailable", base + " sent an empty journal page");
    }
  }
}

// ---------------------------------------------------------------- audit

struct AuditCliOptions {
  std::vector<std::string> nodes;
  std::string journal;
  std::string genesis = "config/genesis.json";
  std::vector<std::string> checkpoint_files;
  std::string state;
  std::string scratch;
  unsigned threads = 0;
  bool json = false;
  bool quiet = false;
};

struct SourcedCheckpoint {
  Checkpoint cp;
  std::string source;
  bool from_node = false;  // served by a node (may still be gathering signatures), not a file
};

// Saved between runs (--state): the newest tree head this auditor verified.
struct AuditState {
  std::string chain;
  uint64_t tree_size = 0;
  Hash root{};
};

Result<std::optional<AuditState>> load_state(const std::string& path) {
  if (path.empty() || !std::filesystem::exists(path)) return std::optional<AuditState>();
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto doc = parse_json_strict(text);
  if (!doc || !doc->is_object() || !(*doc)["tree_size"].is_number_unsigned() || !(*doc)["root"].is_string() ||
      !(*doc)["chain"].is_string())
    return Status::error("invalid", "state file " + path + " is not {chain, tree_size, root}");
  auto root = hex_decode_array<32>((*doc)["root"].get<std::string>());
  if (!root) return Status::error("invalid", "state file " + path + ": bad root");
  return std::optional<AuditState>(AuditState{(*doc)["chain"].get<std::string>(), (*doc)["tree_size"].get<uint64_t>(), *root});
}

Status save_state(const std::string& path, const AuditState& s) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << Json{{"chain", s.chain}, {"tree_size", s.tree_size}, {"root", to_hex(s.root)}}.dump() << "\n";
    if (!out) return Status::error("io", "cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::error("io", "cannot write " + path + ": " + ec.message());
  return Status::ok();
}

void run_audit(const AuditCliOptions& o) {
  if (sodium_init() < 0) return set_exit_code(2);
  if (o.nodes.empty() == o.journal.empty()) {
    std::cerr << "error: give --node URL (one or more) or --journal FILE\n";
    return set_exit_code(2);
  }
  auto genesis = Genesis::read_file(o.genesis);
  if (!genesis) {
    std::cerr << "error: " << genesis.status().message() << "\n";
    return set_exit_code(2);
  }
  auto t0 = Clock::now();
  Json report = {{"chain", genesis->chain}};
  auto fail = [&](int code, const std::string& reason) {
    report["ok"] = false;
    report["error"] = reason;
    report["seconds"] = seconds_since(t0);
    if (o.json) std::cout << report.dump() << "\n";
    else std::cout << "AUDIT FAILED: " << reason << "\n";
    set_exit_code(code);
  };

  // 1. What the nodes (and archived files) claim: checkpoints.
  std::vector<SourcedCheckpoint> checkpoints;
  for (const auto& f : o.checkpoint_files) {
    std::ifstream in(f);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto doc = parse_json_strict(text);
    auto cp = doc ? checkpoint_from_json(*doc) : Result<Checkpoint>(doc.status());
    if (!cp) return fail(1, "checkpoint file " + f + ": " + cp.status().message());
    checkpoints.push_back({*cp, f, false});
  }
  std::map<std::string, Checkpoint> node_latest;
  for (const auto& n : o.nodes) {
    auto latest = get_json(n, "/v1/checkpoint");
    if (!latest) return fail(2, "node " + n + ": " + latest.status().message());
    auto cp = checkpoint_from_json(*latest);
    if (!cp) return fail(1, "node " + n + " serves a malformed checkpoint: " + cp.status().message());
    node_latest[n] = *cp;
    checkpoints.push_back({*cp, n + " (latest)", true});
    for (uint64_t from = 0;;) {
      auto page = get_json(n, "/v1/checkpoints?limit=1000&from=" + std::to_string(from));
      if (!page) return fail(2, "node " + n + ": " + page.status().message());
      if (!(*page)["checkpoints"].is_array() || (*page)["checkpoints"].empty()) break;
      for (const auto& j : (*page)["checkpoints"]) {
        auto c = checkpoint_from_json(j);
        if (!c) return fail(1, "node " + n + " serves a malformed checkpoint: " + c.status().message());
        checkpoints.push_back({*c, n, true});
      }
      from = (*page)["next"].get<uint64_t>();
    }
  }
  uint64_t needed = 0;
  for (const auto& c : checkpoints) needed = std::max(needed, c.cp.tree_size);

  // 2. Replay the journal from genesis.
  AuditOptions ao;
  ao.threads = o.threads;
  ao.scratch_dir = o.scratch;
  auto auditor = Auditor::open(*genesis, ao);
  if (!auditor) return fail(2, auditor.status().message());
  Auditor& a = **auditor;
  auto last_progress = Clock::now();
  auto feed = [&](std::string line) -> Status {
    Status s = a.add_line(std::move(line));
    if (!o.quiet && !o.json && seconds_since(last_progress) >= 1.0) {
      last_progress = Clock::now();
      std::cerr << "audit: " << a.lines() << " entries read, " << static_cast<uint64_t>(a.lines() / seconds_since(t0))
                << "/s\n";
    }
    return s;
  };
  std::string source;
  Status s = Status::ok();
  if (!o.journal.empty()) {
    source = o.journal;
    std::ifstream in(o.journal);
    if (!in) return fail(2, "cannot read " + o.journal);
    std::string line;
    while (s && std::getline(in, line)) s = feed(std::move(line));
  } else {
    source = o.nodes.front();
    auto n = stream_journal(o.nodes.front(), needed, feed);
    if (!n) s = n.status();
  }
  if (s) s = a.finish();
  double seconds = seconds_since(t0);
  report["journal_source"] = source;
  report["entries"] = a.entries();
  report["wallets"] = a.wallets();
  report["signatures_verified"] = a.signatures();
  if (!s) {
    report["first_bad"] = s.message();
    return fail(1, s.message());
  }
  auto head = a.ledger().head();
  report["root"] = to_hex(head.root);
  report["supply"] = {{"issued", head.supply.issued}, {"redeemed", head.supply.redeemed},
                      {"outstanding", head.supply.outstanding()}};

  // 3. Every checkpoint against the replay.
  // A node serves its newest checkpoint as soon as it signed it; peers that
  // have not applied that far countersign in a later round.  Such a
  // checkpoint is checked in full (root, time, every signature) but counts
  // as unconfirmed, not as a failure.  A --checkpoint file (an archived
  // cluster checkpoint) must carry a majority.
  size_t verified = 0, unconfirmed = 0;
  for (const auto& c : checkpoints) {
    bool confirmed = true;
    Status cs = a.check_checkpoint(c.cp, c.from_node ? &confirmed : nullptr);
    if (!cs) return fail(1, cs.message() + " (from " + c.source + ")");
    ++(confirmed ? verified : unconfirmed);
  }
  report["checkpoints_verified"] = verified;
  report["checkpoints_unconfirmed"] = unconfirmed;
  Json nodes = Json::array();
  for (const auto& [n, cp] : node_latest)
    nodes.push_back({{"node", n}, {"tree_size", cp.tree_size}, {"root", to_hex(cp.root)}, {"signatures", cp.signatures.size()}});
  report["nodes"] = nodes;

  // 4. Against what this auditor saw last time: the journal must extend it.
  auto state = load_state(o.state);
  if (!state) return fail(2, state.status().message());
  AuditState newest{genesis->chain, head.size, head.root};
  if (*state) {
    const AuditState& old = **state;
    if (old.chain != genesis->chain) return fail(2, "state file " + o.state + " is for chain " + old.chain);
    if (old.tree_size > head.size)
      return fail(1, "checkpoint tree_size " + std::to_string(old.tree_size) + " (saved in " + o.state +
                         "): the journal now has only " + std::to_string(head.size) + " entries: history was cut");
    auto root = a.ledger().root_at(old.tree_size);
    if (!root || *root != old.root)
      return fail(1, "checkpoint tree_size " + std::to_string(old.tree_size) + " (saved in " + o.state +
                         "): the journal is not consistent with it (root " + (root ? to_hex(*root) : "?") +
                         " instead of " + to_hex(old.root) + "): a forked or rewritten history");
    // And each node proves, RFC 9162 style, that its latest head extends it.
    for (const auto& [n, cp] : node_latest) {
      if (cp.tree_size < old.tree_size)
        return fail(1, "node " + n + " signs tree_size " + std::to_string(cp.tree_size) + ", behind the " +
                           std::to_string(old.tree_size) + " it signed before");
      auto proof = get_json(n, "/v1/proof/consistency?first=" + std::to_string(old.tree_size) +
                                   "&second=" + std::to_string(cp.tree_size));
      if (!proof) return fail(1, "node " + n + ": consistency proof: " + proof.status().message());
      std::vector<Hash> path;
      for (const auto& h : (*proof)["path"]) {
        auto v = h.is_string() ? hex_decode_array<32>(h.get<std::string>()) : std::nullopt;
        if (!v) return fail(1, "node " + n + " sent a malformed consistency proof");
        path.push_back(*v);
      }
      if (!merkle::verify_consistency(old.tree_size, cp.tree_size, old.root, cp.root, path))
        return fail(1, "node " + n + ": consistency proof from tree_size " + std::to_string(old.tree_size) +
                           " to its checkpoint " + std::to_string(cp.tree_size) + " does not verify: a forked history");
    }
    report["consistent_with_state"] = {{"tree_size", old.tree_size}, {"root", to_hex(old.root)}};
  }
  if (!o.state.empty()) {
    Status ss = save_state(o.state, newest);
    if (!ss) return fail(2, ss.message());
  }

  report["ok"] = true;
  report["seconds"] = seconds;
  report["entries_per_sec"] = seconds > 0 ? a.entries() / seconds : 0;
  if (o.json) {
    std::cout << report.dump() << "\n";
    return;
  }
  std::cout << "AUDIT OK: chain " << genesis->chain << ", journal from " << source << "\n"
            << "  entries            " << a.entries() << " (every signature verified: " << a.signatures() << ")\n"
            << "  wallets            " << a.wallets() << "\n"
            << "  supply             issued " << head.supply.issued << ", redeemed " << head.supply.redeemed
            << ", outstanding " << head.supply.outstanding() << " (= sum of balances)\n"
            << "  root               " << to_hex(head.root) << "\n"
            << "  checkpoints        " << verified << " verified (root, time, majority of node signatures)";
  if (unconfirmed > 0)
    std::cout << "; " << unconfirmed << " still gathering signatures (root, time and every signature verified)";
  std::cout << "\n";
  for (const auto& [n, cp] : node_latest)
    std::cout << "  node " << n << "  tree_size " << cp.tree_size << " root " << to_hex(cp.root) << " ("
              << cp.signatures.size() << " signatures)\n";
  if (*state) std::cout << "  consistent with    tree_size " << (*state)->tree_size << " saved in " << o.state << "\n";
  std::cout << "  time               " << seconds << " s, " << static_cast<uint64_t>(seconds > 0 ? a.entries() / seconds : 0)
            << " entries/s\n";
}

// ---------------------------------------------------------------- export

void run_export(const std::string& node, const std::string& out_path) {
  std::string tmp = out_path + ".tmp";
  std::ofstream out(tmp, std::ios::trunc);
  if (!out) {
    std::cerr << "error: cannot write " << tmp << "\n";
    return set_exit_code(2);
  }
  auto n = stream_journal(node, 0, [&](std::string line) {
    out << line << "\n";
    return out ? Status::ok() : Status::error("io", "write failed");
  });
  out.close();
  if (!n || !out) {
    std::cerr << "error: " << (n ? "write failed" : n.status().message()) << "\n";
    std::filesystem::remove(tmp);
    return set_exit_code(1);
  }
  std::filesystem::rename(tmp, out_path);
  std::cout << "exported " << *n << " journal entries from " << node << " to " << out_path << "\n";
}

// -------------------------------------------------------- verify-receipt

void run_verify_receipt(const std::string& node, const std::string& genesis_path, uint64_t wait_s) {
  if (sodium_init() < 0) return set_exit_code(2);
  auto genesis = Genesis::read_file(genesis_path);
  if (!genesis) {
    std::cerr << "error: " << genesis.status().message() << "\n";
    return set_exit_code(2);
  }
  std::string text((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  auto doc = parse_json_strict(text);
  auto bad = [](const std::string& why) {
    std::cout << "RECEIPT NOT VERIFIED: " << why << "\n";
    set_exit_code(1);
  };
  if (!doc || !doc->is_object() || !(*doc)["index"].is_number_unsigned() || !(*doc)["leaf_hash"].is_string())
    return bad("stdin is not a receipt {id, result, index, time, leaf_hash, replay}");
  uint64_t index = (*doc)["index"].get<uint64_t>();
  auto leaf = hex_decode_array<32>((*doc)["leaf_hash"].get<std::string>());
  if (!leaf) return bad("leaf_hash is not 64 hex characters");
  // A checkpoint that covers the entry, signed by a majority of genesis nodes.
  auto deadline = Clock::now() + std::chrono::seconds(wait_s);
  Checkpoint cp;
  while (true) {
    auto j = get_json(node, "/v1/checkpoint");
    if (!j) return bad(j.status().message());
    auto c = checkpoint_from_json(*j);
    if (!c) return bad("the node's checkpoint is malformed: " + c.status().message());
    cp = *c;
    if (cp.tree_size > index) break;
    if (Clock::now() >= deadline)
      return bad("no checkpoint covers entry " + std::to_string(index) + " yet (latest tree_size " +
                 std::to_string(cp.tree_size) + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  size_t signers = 0;
  Status s = check_checkpoint_signatures(cp, *genesis, &signers);
  if (!s) return bad(s.message());
  auto proof = get_json(node, "/v1/proof/inclusion?index=" + std::to_string(index) + "&tree_size=" +
                                  std::to_string(cp.tree_size));
  if (!proof) return bad(proof.status().message());
  std::vector<Hash> path;
  if (!(*proof)["path"].is_array()) return bad("malformed inclusion proof");
  for (const auto& h : (*proof)["path"]) {
    auto v = h.is_string() ? hex_decode_array<32>(h.get<std::string>()) : std::nullopt;
    if (!v) return bad("malformed inclusion proof");
    path.push_back(*v);
  }
  if (!merkle::verify_inclusion(*leaf, index, cp.tree_size, path, cp.root))
    return bad("the inclusion proof does not lead from the receipt's leaf_hash to the signed root");
  std::cout << "RECEIPT VERIFIED: entry " << index << " (leaf " << to_hex(*leaf) << ") is in the journal of chain "
            << cp.chain << ": inclusion proof to root " << to_hex(cp.root) << " at tree_size " << cp.tree_size
            << ", signed by " << signers << " of " << genesis->nodes.size() << " nodes\n";
}

}  // namespace

void register_audit_commands(CLI::App& app) {
  auto o = std::make_shared<AuditCliOptions>();
  auto* audit = app.add_subcommand("audit", "replay and verify the whole ledger from genesis; exit 0 only if all holds");
  audit->add_option("--node", o->nodes, "node URL to stream the journal and checkpoints from (repeatable; the "
                                        "journal comes from the first, checkpoints from all)");
  audit->add_option("--journal", o->journal, "an exported journal (NDJSON of GET /v1/journal) instead of nodes");
  audit->add_option("--genesis", o->genesis, "the genesis file (trust anchor: issuer, registrars, node keys)")
      ->capture_default_str();
  audit->add_option("--checkpoint", o->checkpoint_files, "a checkpoint JSON file to verify too (repeatable)");
  audit->add_option("--state", o->state, "remember the verified head here; next run must extend it");
  audit->add_option("--threads", o->threads, "signature-checking threads (default: one per core)");
  audit->add_option("--scratch", o->scratch, "empty directory for the replay ledger (default: a temporary one)");
  audit->add_flag("--json", o->json, "print one JSON object");
  audit->add_flag("--quiet", o->quiet, "no progress lines");
  audit->callback([o] { run_audit(*o); });

  auto node = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto* exp = app.add_subcommand("export", "write a node's journal as NDJSON (what auditors archive)");
  exp->add_option("--node", *node, "node URL")->required();
  exp->add_option("--out", *out, "output file")->required();
  exp->callback([node, out] { run_export(*node, *out); });

  auto rnode = std::make_shared<std::string>();
  auto rgenesis = std::make_shared<std::string>("config/genesis.json");
  auto wait = std::make_shared<uint64_t>(10);
  auto* vr = app.add_subcommand("verify-receipt",
                                "read a receipt on stdin; check it against a signed checkpoint with an inclusion proof");
  vr->add_option("--node", *rnode, "node URL")->required();
  vr->add_option("--genesis", *rgenesis, "the genesis file (node keys)")->capture_default_str();
  vr->add_option("--wait", *wait, "seconds to wait for a checkpoint that covers the receipt")->capture_default_str();
  vr->callback([rnode, rgenesis, wait] { run_verify_receipt(*rnode, *rgenesis, *wait); });
}

}  // namespace cl::cli
