#include "ledger/audit.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "ledger/merkle.h"

namespace cl {
namespace {
Status bad_entry(uint64_t index, const std::string& why) {
  return Status::error("corruption", "entry " + std::to_string(index) + ": " + why);
}
}  // namespace

// Everything about one line that needs no ledger state: JSON shape, position,
// canonical bytes, the claimed leaf hash, every signature.
void Auditor::decode_line(const std::string& line, uint64_t position, Decoded* d) {
  d->index = position;
  // Fast path: a line exactly as nodes export it (canonical, leaf hash
  // right).  Anything else takes the strict path, which decides and explains.
  if (auto fast = decode_journal_line_canonical(line); fast && fast->index == position) {
    d->time = fast->time;
    d->leaf_hash = fast->leaf_hash;
    if (verify_envelope(fast->env) != Code::kOk) {
      d->error = "a signature does not verify (forged or altered op)";
      return;
    }
    d->env = std::move(fast->env);
    return;
  }
  auto doc = parse_json_strict(line);
  if (!doc) {
    d->error = "not valid JSON: " + doc.status().message();
    return;
  }
  const Json& j = *doc;
  if (!j.is_object() || !j.contains("index") || !j.contains("time") || !j.contains("op")) {
    d->error = "must be {index, time, op[, leaf_hash]}";
    return;
  }
  for (const auto& [k, v] : j.items())
    if (k != "index" && k != "time" && k != "op" && k != "leaf_hash") {
      d->error = "has a field other than index, time, op, leaf_hash: \"" + k + "\"";
      return;
    }
  if (!j["index"].is_number_unsigned() || j["index"].get<uint64_t>() != position) {
    d->error = "index field " + j["index"].dump() + " is not its position " + std::to_string(position) +
               " (an entry removed, inserted or moved?)";
    return;
  }
  if (!j["time"].is_number_unsigned()) {
    d->error = "time must be an integer";
    return;
  }
  d->time = j["time"].get<uint64_t>();
  Rejection r;
  auto env = decode_envelope_json(j["op"], &r);
  if (!env) {
    d->error = "op is " + std::string(code_name(r.code)) + ": " + r.detail;
    return;
  }
  d->leaf_hash = merkle::leaf_hash(entry_bytes(position, d->time, env->jcs));
  if (j.contains("leaf_hash") &&
      (!j["leaf_hash"].is_string() || j["leaf_hash"].get<std::string>() != to_hex(d->leaf_hash))) {
    d->error = "leaf_hash does not match the entry's content";
    return;
  }
  if (verify_envelope(*env) != Code::kOk) {
    d->error = "a signature does not verify (forged or altered op)";
    return;
  }
  d->env = std::move(*env);
}

Auditor::Auditor(const Genesis& genesis, AuditOptions options) : genesis_(genesis), options_(std::move(options)) {
  if (options_.threads == 0) options_.threads = std::max(1u, std::thread::hardware_concurrency());
  if (options_.chunk_entries == 0) options_.chunk_entries = 8192;
}

Auditor::~Auditor() {
  for (auto& c : inflight_)
    for (auto& w : c->workers) w.wait();
  replayer_.reset();
  ledger_.reset();
  if (own_scratch_) {
    std::error_code ec;
    std::filesystem::remove_all(scratch_, ec);
  }
}

Result<std::unique_ptr<Auditor>> Auditor::open(const Genesis& genesis, AuditOptions options) {
  std::unique_ptr<Auditor> a(new Auditor(genesis, std::move(options)));
  if (a->options_.scratch_dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/cityledger-audit-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) return Status::error("io", "cannot create a scratch directory under " + templ);
    a->scratch_ = templ;
    a->own_scratch_ = true;
  } else {
    a->scratch_ = a->options_.scratch_dir;
    std::error_code ec;
    if (std::filesystem::exists(a->scratch_, ec) && !std::filesystem::is_empty(a->scratch_, ec))
      return Status::error("invalid", "scratch directory " + a->scratch_ + " is not empty");
  }
  LedgerOptions lo;
  lo.sync = false;  // scratch: nothing here needs to survive a crash
  lo.disable_wal = true;
  lo.memtable_mib = 64;
  lo.audit_only = true;  // the same apply, storing only what a replay reads back
  auto ledger = Ledger::open(a->scratch_ + "/ledger", genesis, lo);
  if (!ledger) return ledger.status();
  a->ledger_ = std::move(*ledger);
  a->replayer_ = std::make_unique<JournalReplayer>(a->ledger_.get(), /*verify_signatures=*/false);
  return a;
}

Status Auditor::add_line(std::string line) {
  if (!failed_) return failed_;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::ok();  // blank lines (e.g. a trailing newline) carry nothing
  pending_.push_back(std::move(line));
  ++lines_;
  if (pending_.size() >= options_.chunk_entries) {
    launch();
    // Apply the older chunk while the workers check the new one.
    if (inflight_.size() > 1) failed_ = drain();
  }
  return failed_;
}

void Auditor::launch() {
  if (pending_.empty()) return;
  auto chunk = std::make_unique<Chunk>();
  chunk->first = pending_first_;
  chunk->lines = std::move(pending_);
  pending_.clear();
  pending_first_ += chunk->lines.size();
  chunk->decoded.resize(chunk->lines.size());
  size_t n = chunk->lines.size();
  size_t per = (n + options_.threads - 1) / options_.threads;
  for (size_t start = 0; start < n; start += per) {
    size_t end = std::min(n, start + per);
    Chunk* c = chunk.get();
    c->workers.push_back(std::async(std::launch::async, [c, start, end] {
      for (size_t i = start; i < end; ++i) decode_line(c->lines[i], c->first + i, &c->decoded[i]);
    }));
  }
  inflight_.push_back(std::move(chunk));
}

Status Auditor::drain() {
  if (inflight_.empty()) return Status::ok();
  std::unique_ptr<Chunk> chunk = std::move(inflight_.front());
  inflight_.pop_front();
  for (auto& w : chunk->workers) w.wait();
  for (auto& d : chunk->decoded) {
    if (!d.error.empty()) {
      // Entries before it that share its time are still queued as one
      // batch: apply them first, so that the first bad entry is the one named.
      Status earlier = replayer_->finish();
      if (!earlier) return earlier;
      return bad_entry(d.index, d.error);
    }
    signatures_ += d.env.signatures.size();
    if (d.env.body.type == OpType::kOpenWallet) ++wallets_;
    Status s = replayer_->add_decoded(d.index, d.time, std::move(d.env), d.leaf_hash);
    if (!s) return s;
  }
  return Status::ok();
}

Status Auditor::finish() {
  if (!failed_) return failed_;
  launch();
  while (!inflight_.empty()) {
    failed_ = drain();
    if (!failed_) return failed_;
  }
  failed_ = replayer_->finish();
  if (!failed_) return failed_;
  failed_ = ledger_->write_back();
  if (!failed_) return failed_;
  // Σ balances = issued − redeemed, and the stored tree matches the journal.
  Status c = ledger_->check(/*full=*/false);
  if (!c) failed_ = Status::error("corruption", "replayed state is inconsistent: " + c.message());
  return failed_;
}

Status Auditor::check_checkpoint(const Checkpoint& cp, bool* confirmed) const {
  auto fail = [&](const std::string& why) {
    return Status::error("corruption", "checkpoint tree_size " + std::to_string(cp.tree_size) + ": " + why);
  };
  uint64_t size = ledger_->head().size;
  if (cp.tree_size > size)
    return fail("is beyond the journal replayed (" + std::to_string(size) + " entries): history was withheld or cut");
  auto root = ledger_->root_at(cp.tree_size);
  if (!root) return root.status();
  if (*root != cp.root)
    return fail("root " + to_hex(cp.root) + " differs from the replayed journal's root " + to_hex(*root) +
                " at that size (the signed history is not this journal)");
  uint64_t time = 0;
  if (cp.tree_size > 0) {
    auto last = ledger_->time_of(cp.tree_size - 1);
    if (!last) return last.status();
    time = *last;
  }
  if (time != cp.time) return fail("time " + std::to_string(cp.time) + " is not the time of its last entry, " + std::to_string(time));
  size_t signers = 0;
  Status s = check_checkpoint_signatures(cp, genesis_, &signers);
  // *signers counts valid genesis-node signatures only when every signature
  // checked out: then the one thing wrong is that a majority is missing.
  const bool only_too_few = !s && signers > 0 && signers == cp.signatures.size();
  if (!s && !(only_too_few && confirmed != nullptr)) return fail(s.message());
  if (confirmed) *confirmed = s.is_ok();
  return Status::ok();
}

}  // namespace cl
