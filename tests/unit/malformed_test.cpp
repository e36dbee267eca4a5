// Bad envelopes end to end (DESIGN §3–§4, §9 "bad input changes nothing"):
// each row is raw text derived from a valid signed envelope with one defect.
// It goes through the node's pipeline — decode_envelope, verify_envelope,
// Ledger::apply — against a ledger whose wallets exist and are funded, so
// that only the defect can cause the rejection.  The first failing stage
// must give the expected code and a detail naming the field, and the ledger
// must be unchanged afterwards.
#include <cctype>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "ledger/ledger.h"
#include "tests/unit/fixture.h"
#include "wallet/codes.h"
#include "wallet/jcs.h"
#include "wallet/op.h"

namespace cl::test {
namespace {

using namespace std::string_literals;

enum class Stage { kDecode, kVerify, kApply };

std::string stage_name(Stage s) {
  switch (s) {
    case Stage::kDecode: return "decode";
    case Stage::kVerify: return "verify";
    case Stage::kApply: return "apply";
  }
  return "?";
}

// The stage of the pipeline that owns each rejection code.
Stage stage_of(Code code) {
  switch (code) {
    case Code::kMalformed:
    case Code::kInvalidAmount: return Stage::kDecode;
    case Code::kBadSignature: return Stage::kVerify;
    default: return Stage::kApply;
  }
}

// Wallets opened and funded before any bad envelope arrives.
struct World {
  KeyPair rider_key = seed_key(0x21);
  KeyPair transit_key = seed_key(0x22);
  KeyPair agency_key = seed_key(0x23);
  KeyPair citizen_key = seed_key(0x24);
  KeyPair newcomer_key = seed_key(0x25);
  WalletId rider = make_id(1, 0xA1);
  WalletId transit = make_id(2, 0xA2);
  WalletId agency = make_id(3, 0xA3);
  WalletId citizen = make_id(4, 0xA4);
  WalletId newcomer = make_id(5, 0xA5);  // not opened: the open_wallet base opens it
};

// One valid signed envelope of each shape the rows start from.
struct Bases {
  Envelope fare, payout, open_wallet, transfer;
};

Bases make_bases(const World& w) {
  OpFactory f("msk-demo", 0xB0);
  Bases b;
  b.fare = f.fare(w.rider, w.rider_key, w.transit, 5700, "gate-1");
  b.payout = f.payout(w.agency, w.agency_key, w.citizen, 50'000, "birth-benefit", "R-0001");
  b.open_wallet = f.open_wallet(w.newcomer, w.newcomer_key, WalletKind::kPersonal, 1'000'000);
  OpBody t = f.body(OpType::kTransfer);
  t.from = w.rider;
  t.to = w.citizen;
  t.amount = 100;
  t.memo = "за кофе";
  b.transfer = sign_envelope(t, {&w.rider_key});
  return b;
}

std::unique_ptr<Ledger> open_funded_ledger(const std::string& dir, const World& w) {
  auto l = open_ledger(dir);
  OpFactory f("msk-demo", 0xF0);
  auto out = apply(*l, {f.open_wallet(w.rider, w.rider_key), f.open_wallet(w.transit, w.transit_key, WalletKind::kTransit),
                        f.open_wallet(w.agency, w.agency_key, WalletKind::kAgency),
                        f.open_wallet(w.citizen, w.citizen_key), f.issue(w.rider, 100'000),
                        f.issue(w.agency, 1'000'000)});
  for (const auto& o : out) REQUIRE_MESSAGE(o.code == Code::kOk, o.detail);
  return l;
}

// --- Mutations of an envelope's text -------------------------------------

Json doc_of(const Envelope& e) { return Json::parse(e.jcs); }

// The envelope with the value at JSON pointer "ptr" set to "value".
std::string with(const Envelope& e, const std::string& ptr, Json value) {
  Json j = doc_of(e);
  j[Json::json_pointer(ptr)] = std::move(value);
  return j.dump();
}

// The envelope without the member at JSON pointer "ptr".
std::string without(const Envelope& e, const std::string& ptr) {
  Json j = doc_of(e);
  Json::json_pointer p(ptr);
  Json& parent = j[p.parent_pointer()];
  REQUIRE(parent.contains(p.back()));
  parent.erase(p.back());
  return j.dump();
}

// "text" with its only occurrence of "from" replaced by "to".
std::string replaced(const std::string& text, const std::string& from, const std::string& to) {
  auto pos = text.find(from);
  REQUIRE_MESSAGE(pos != std::string::npos, "pattern not found: " << from);
  REQUIRE_MESSAGE(text.find(from, pos + 1) == std::string::npos, "pattern not unique: " << from);
  return text.substr(0, pos) + to + text.substr(pos + from.size());
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

// Printable form of arbitrary bytes for failure messages.
std::string printable(const std::string& s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char ch : s) {
    auto c = static_cast<uint8_t>(ch);
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out.size() > 600 ? out.substr(0, 600) + "…" : out;
}

// --- The table -------------------------------------------------------------

struct Row {
  std::string what;    // the defect, for the failure message
  std::string input;   // raw envelope text
  Code code;           // the expected rejection
  std::string detail;  // a substring the detail must contain ("" for verify: it has no detail)
};

std::string sig_hex_of(const Envelope& e, size_t i) { return hex_encode(e.signatures.at(i).sig); }

// A text with one character of "sig_hex" replaced by a different hex digit.
std::string flip_hex_digit(const std::string& text, size_t pos_in_sig, const std::string& sig_hex) {
  std::string flipped = sig_hex;
  flipped[pos_in_sig] = flipped[pos_in_sig] == '0' ? '1' : '0';
  return replaced(text, sig_hex, flipped);
}

std::vector<Row> bad_envelopes(const World& w, const Bases& b) {
  const std::string fare = b.fare.jcs;
  const std::string payout = b.payout.jcs;
  const std::string open = b.open_wallet.jcs;
  const std::string transfer = b.transfer.jcs;
  const Code M = Code::kMalformed, A = Code::kInvalidAmount, S = Code::kBadSignature, C = Code::kWrongChain;
  std::vector<Row> rows;
  auto row = [&](std::string what, std::string input, Code code, std::string detail) {
    rows.push_back(Row{std::move(what), std::move(input), code, std::move(detail)});
  };

  // Not an envelope at all.
  row("not JSON", "this is not json", M, "invalid JSON");
  row("truncated", fare.substr(0, fare.size() / 2), M, "invalid JSON");
  row("truncated by one byte", fare.substr(0, fare.size() - 1), M, "invalid JSON");
  row("empty", "", M, "invalid JSON");
  row("trailing garbage", fare + "x", M, "invalid JSON");
  row("two envelopes", fare + fare, M, "invalid JSON");
  row("array instead of object", "[" + fare + "]", M, "envelope:");
  row("string instead of object", "\"" + id_hex(w.rider) + "\"", M, "envelope:");
  row("null", "null", M, "envelope:");

  // Envelope shape.
  row("missing body", without(b.fare, "/body"), M, "body:");
  row("missing signatures", without(b.fare, "/signatures"), M, "signatures:");
  row("extra top-level field", with(b.fare, "/receipt", 1), M, "receipt:");
  row("body not an object", with(b.fare, "/body", "fare"), M, "body:");
  row("body null", with(b.fare, "/body", nullptr), M, "body:");
  row("body an array", with(b.fare, "/body", Json::array({doc_of(b.fare)["body"]})), M, "body:");

  // Unknown fields.
  row("unknown body field", with(b.fare, "/body/colour", "red"), M, "body.colour:");
  row("memo on a fare", with(b.fare, "/body/memo", "hi"), M, "body.memo:");
  row("program on a transfer", with(b.transfer, "/body/program", "birth-benefit"), M, "body.program:");
  row("kind on a fare", with(b.fare, "/body/kind", "transit"), M, "body.kind:");

  // Each required field of a fare missing.
  for (const char* field : {"chain", "id", "type", "from", "to", "amount", "gate", "tap_at"})
    row("fare without "s + field, without(b.fare, "/body/"s + field), M, "body."s + field + ":");
  row("payout without program", without(b.payout, "/body/program"), M, "body.program:");
  row("payout without reference", without(b.payout, "/body/reference"), M, "body.reference:");
  row("open_wallet without kind", without(b.open_wallet, "/body/kind"), M, "body.kind:");
  row("open_wallet without key", without(b.open_wallet, "/body/key"), M, "body.key:");

  // Ids, wallet ids, keys.
  const std::string id = id_hex(b.fare.body.id);
  row("id too short", with(b.fare, "/body/id", id.substr(2)), M, "body.id:");
  row("id too long", with(b.fare, "/body/id", id + "00"), M, "body.id:");
  row("id uppercase", with(b.fare, "/body/id", upper(id)), M, "body.id:");
  row("id non-hex", with(b.fare, "/body/id", "zz" + id.substr(2)), M, "body.id:");
  row("id a number", with(b.fare, "/body/id", 12345), M, "body.id:");
  row("id empty", with(b.fare, "/body/id", ""), M, "body.id:");
  row("from 31 hex chars", with(b.fare, "/body/from", id_hex(w.rider).substr(1)), M, "body.from:");
  row("to uppercase", with(b.fare, "/body/to", upper(id_hex(w.transit))), M, "body.to:");
  row("to with a 0x prefix", with(b.fare, "/body/to", "0x" + id_hex(w.transit).substr(2)), M, "body.to:");
  row("wallet a number", with(b.open_wallet, "/body/wallet", 5), M, "body.wallet:");
  row("key 63 hex chars", with(b.open_wallet, "/body/key", hex_encode(w.newcomer_key.public_key).substr(1)), M,
      "body.key:");
  row("key an array", with(b.open_wallet, "/body/key", Json::array()), M, "body.key:");

  // Amounts.
  row("amount a string", with(b.fare, "/body/amount", "5700"), M, "body.amount:");
  row("amount null", with(b.fare, "/body/amount", nullptr), M, "body.amount:");
  row("amount true", with(b.fare, "/body/amount", true), M, "body.amount:");
  row("amount a float", replaced(fare, "\"amount\":5700,", "\"amount\":57.5,"), M, "integers");
  row("amount 5700.0", replaced(fare, "\"amount\":5700,", "\"amount\":5700.0,"), M, "integers");
  row("amount 1e3", replaced(fare, "\"amount\":5700,", "\"amount\":1e3,"), M, "integers");
  row("amount negative", with(b.fare, "/body/amount", -5700), A, "body.amount:");
  row("amount zero", with(b.fare, "/body/amount", 0), A, "body.amount:");
  row("amount 2^53", with(b.fare, "/body/amount", kAmountMax + 1), A, "body.amount:");
  row("amount 2^64-1", with(b.fare, "/body/amount", UINT64_MAX), A, "body.amount:");
  row("amount 2^64+1", replaced(fare, "\"amount\":5700,", "\"amount\":18446744073709551617,"), M, "integers");
  row("payout amount zero", with(b.payout, "/body/amount", 0), A, "body.amount:");
  row("transfer amount -1", with(b.transfer, "/body/amount", -1), A, "body.amount:");

  // Times.
  row("tap_at negative", with(b.fare, "/body/tap_at", -1), M, "body.tap_at:");
  row("tap_at a float", replaced(fare, "\"tap_at\":1700000000000,", "\"tap_at\":1700000000000.5,"), M, "integers");
  row("tap_at a string", with(b.fare, "/body/tap_at", "2023-11-14T22:13:20Z"), M, "body.tap_at:");
  row("tap_at 2^53", with(b.fare, "/body/tap_at", kTimeMax + 1), M, "body.tap_at:");
  row("expires_at a string", with(b.fare, "/body/expires_at", "1800000000000"), M, "body.expires_at:");
  row("expires_at negative", with(b.fare, "/body/expires_at", -1), M, "body.expires_at:");
  row("expires_at null", with(b.fare, "/body/expires_at", nullptr), M, "body.expires_at:");

  // Type, kind, max_balance, chain form.
  row("type unknown", with(b.fare, "/body/type", "teleport"), M, "body.type:");
  row("type a number", with(b.fare, "/body/type", 4), M, "body.type:");
  row("type uppercase", with(b.fare, "/body/type", "FARE"), M, "body.type:");
  row("kind unknown", with(b.open_wallet, "/body/kind", "pirate"), M, "body.kind:");
  row("kind a number", with(b.open_wallet, "/body/kind", 0), M, "body.kind:");
  row("max_balance 0", with(b.open_wallet, "/body/max_balance", 0), M, "body.max_balance:");
  row("max_balance negative", with(b.open_wallet, "/body/max_balance", -1), M, "body.max_balance:");
  row("max_balance a string", with(b.open_wallet, "/body/max_balance", "1000"), M, "body.max_balance:");
  row("chain with a space", with(b.fare, "/body/chain", "msk demo"), M, "body.chain:");
  row("chain empty", with(b.fare, "/body/chain", ""), M, "body.chain:");
  row("chain a number", with(b.fare, "/body/chain", 1), M, "body.chain:");
  row("chain 65 chars", with(b.fare, "/body/chain", std::string(65, 'm')), M, "body.chain:");

  // Text fields.
  row("gate empty", with(b.fare, "/body/gate", ""), M, "body.gate:");
  row("gate 129 chars", with(b.fare, "/body/gate", std::string(129, 'g')), M, "body.gate:");
  std::string cyr129;
  for (int i = 0; i < 129; ++i) cyr129 += "ж";
  row("gate 129 Cyrillic chars", with(b.fare, "/body/gate", cyr129), M, "body.gate:");
  row("gate with an escaped control char", replaced(fare, "\"gate\":\"gate-1\"", "\"gate\":\"gate\\u0001-1\""), M,
      "body.gate:");
  row("gate with a newline", with(b.fare, "/body/gate", "gate\n1"), M, "body.gate:");
  row("gate with U+0085", with(b.fare, "/body/gate", "gate\xc2\x85" "1"), M, "body.gate:");
  row("gate with a raw control byte", replaced(fare, "\"gate\":\"gate-1\"", "\"gate\":\"gate\x01-1\""), M,
      "invalid JSON");
  row("gate a number", with(b.fare, "/body/gate", 7), M, "body.gate:");
  row("gate with invalid UTF-8", replaced(fare, "\"gate\":\"gate-1\"", "\"gate\":\"gate\xff-1\""), M, "UTF-8");
  row("gate with an overlong UTF-8 slash", replaced(fare, "\"gate\":\"gate-1\"", "\"gate\":\"gate\xc0\xaf\""), M,
      "UTF-8");
  row("program a number on a payout", with(b.payout, "/body/program", 1), M, "body.program:");
  row("reference 129 chars", with(b.payout, "/body/reference", std::string(129, 'r')), M, "body.reference:");
  row("memo empty", with(b.transfer, "/body/memo", ""), M, "body.memo:");
  row("memo null", with(b.transfer, "/body/memo", nullptr), M, "body.memo:");

  // Signatures.
  const std::string sig0 = sig_hex_of(b.fare, 0);
  const Json sig_entry = doc_of(b.fare)["signatures"][0];
  row("signatures empty", with(b.fare, "/signatures", Json::array()), M, "signatures:");
  row("signatures an object", with(b.fare, "/signatures", sig_entry), M, "signatures:");
  row("signatures a string", with(b.fare, "/signatures", sig0), M, "signatures:");
  {
    // Five valid signatures by five distinct keys: only the count is wrong.
    Json j = doc_of(b.fare);
    std::string message = op_signing_message(b.fare.body_jcs);
    for (uint8_t s = 0x61; s < 0x65; ++s) {
      KeyPair k = seed_key(s);
      j["signatures"].push_back({{"key", hex_encode(k.public_key)}, {"sig", hex_encode(sign(k, message))}});
    }
    REQUIRE(j["signatures"].size() == 5);
    row("5 signatures", j.dump(), M, "signatures:");
  }
  {
    Json j = doc_of(b.fare);
    j["signatures"].push_back(sig_entry);
    row("the same signer twice", j.dump(), M, "signatures[1].key:");
  }
  row("signature entry a string", with(b.fare, "/signatures/0", sig0), M, "signatures[0]:");
  row("sig 126 hex chars", with(b.fare, "/signatures/0/sig", sig0.substr(2)), M, "signatures[0].sig:");
  row("sig 130 hex chars", with(b.fare, "/signatures/0/sig", sig0 + "00"), M, "signatures[0].sig:");
  row("sig uppercase", with(b.fare, "/signatures/0/sig", upper(sig0)), M, "signatures[0].sig:");
  row("sig missing", without(b.fare, "/signatures/0/sig"), M, "signatures[0].sig:");
  row("signature key bad hex", with(b.fare, "/signatures/0/key", "x" + hex_encode(w.rider_key.public_key).substr(1)),
      M, "signatures[0].key:");
  row("extra field in a signature", with(b.fare, "/signatures/0/alg", "ed25519"), M, "signatures[0].alg:");
  row("second signature of open_wallet short", with(b.open_wallet, "/signatures/1/sig", "00"), M,
      "signatures[1].sig:");

  // Structure attacks.
  {
    std::string deep = "1";
    for (int i = 0; i < 40; ++i) deep = "[" + deep + "]";
    row("nesting too deep", replaced(transfer, "\"memo\":", "\"memo\":" + deep + ",\"x\":"), M, "nesting");
  }
  row("duplicate key in body", replaced(fare, "\"amount\":5700,", "\"amount\":5700,\"amount\":5700,"), M,
      "duplicate key \"amount\"");
  row("duplicate key in body with a different value", replaced(fare, "\"amount\":5700,", "\"amount\":1,\"amount\":5700,"),
      M, "duplicate key \"amount\"");
  row("duplicate top-level signatures", replaced(fare, "]}", "],\"signatures\":[]}"), M, "duplicate key");

  // Correctly formed, wrongly signed.
  row("one signature byte flipped", flip_hex_digit(fare, 10, sig0), S, "");
  row("last signature byte flipped", flip_hex_digit(payout, 127, sig_hex_of(b.payout, 0)), S, "");
  row("amount changed after signing", with(b.fare, "/body/amount", 5701), S, "");
  row("gate changed after signing", with(b.fare, "/body/gate", "gate-2"), S, "");
  row("payout reference changed after signing", with(b.payout, "/body/reference", "R-0002"), S, "");
  row("expires_at added after signing", with(b.fare, "/body/expires_at", 1'900'000'000'000), S, "");
  row("memo removed after signing", without(b.transfer, "/body/memo"), S, "");
  row("signature by a key that did not make it",
      with(b.fare, "/signatures/0/key", hex_encode(w.citizen_key.public_key)), S, "");
  {
    Json j = doc_of(b.open_wallet);
    std::swap(j["signatures"][0]["sig"], j["signatures"][1]["sig"]);
    row("open_wallet signatures swapped between signers", j.dump(), S, "");
  }
  row("signature of another op", with(b.fare, "/signatures/0/sig", sig_hex_of(b.transfer, 0)), S, "");

  // Correctly signed over the wrong chain.
  OpFactory other("spb-demo", 0xC0);
  row("fare for another chain", other.fare(w.rider, w.rider_key, w.transit, 5700).jcs, C, "body.chain");
  row("payout for another chain",
      other.payout(w.agency, w.agency_key, w.citizen, 50'000, "birth-benefit", "R-0001").jcs, C, "body.chain");
  row("open_wallet for another chain", other.open_wallet(w.newcomer, w.newcomer_key).jcs, C, "body.chain");
  return rows;
}

// --- The ledger's observable state -----------------------------------------

struct Snapshot {
  uint64_t size = 0;
  Hash root{};
  uint64_t issued = 0, redeemed = 0;
  std::vector<uint64_t> balances;
  bool newcomer_exists = false;

  bool operator==(const Snapshot&) const = default;
};

Snapshot snapshot(const Ledger& l, const World& w) {
  Snapshot s;
  LedgerHead h = l.head();
  s.size = h.size;
  s.root = h.root;
  s.issued = h.supply.issued;
  s.redeemed = h.supply.redeemed;
  for (const WalletId& id : {w.rider, w.transit, w.agency, w.citizen}) s.balances.push_back(balance(l, id));
  auto n = l.wallet(w.newcomer);
  REQUIRE(n.is_ok());
  s.newcomer_exists = n->has_value();
  return s;
}

struct Outcome {
  Stage stage;
  Code code;
  std::string detail;
};

// The node's pipeline for one envelope; stops at the first failing stage.
Outcome submit(Ledger& l, const std::string& text) {
  Rejection rej;
  auto env = decode_envelope(text, &rej);
  if (!env) return {Stage::kDecode, rej.code, rej.detail};
  Code v = verify_envelope(*env);
  if (v != Code::kOk) return {Stage::kVerify, v, ""};
  OpOutcome out = apply_one(l, *env);
  return {Stage::kApply, out.code, out.detail};
}

}  // namespace

TEST_CASE("every bad envelope is rejected at its first failing stage with its code and field, changing nothing") {
  TempDir dir;
  World w;
  auto ledger = open_funded_ledger(dir.sub("ledger"), w);
  Bases b = make_bases(w);
  std::vector<Row> rows = bad_envelopes(w, b);
  REQUIRE(rows.size() >= 45);

  const Snapshot before = snapshot(*ledger, w);
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    INFO("row " << i << " (" << r.what << "): " << printable(r.input));
    for (size_t j = 0; j < i; ++j) REQUIRE_MESSAGE(rows[j].input != r.input, "duplicate of row " << j);

    Outcome out = submit(*ledger, r.input);
    const std::string got = stage_name(out.stage) + " " + std::string(code_name(out.code)) + ": " + out.detail;
    INFO("got " << got);
    CHECK(stage_name(out.stage) == stage_name(stage_of(r.code)));
    CHECK(std::string(code_name(out.code)) == std::string(code_name(r.code)));
    CHECK(out.detail.find(r.detail) != std::string::npos);
    CHECK(snapshot(*ledger, w) == before);
  }

  // Control: the unmutated bases pass every stage on the same ledger, so each
  // rejection above was caused by its defect alone.
  for (const Envelope* base : {&b.fare, &b.payout, &b.open_wallet, &b.transfer}) {
    INFO(base->jcs);
    Outcome out = submit(*ledger, base->jcs);
    CHECK(out.stage == Stage::kApply);
    CHECK_MESSAGE(out.code == Code::kOk, out.detail);
  }
  Snapshot after = snapshot(*ledger, w);
  CHECK(after.size == before.size + 4);
  CHECK(after.balances == std::vector<uint64_t>{100'000 - 5700 - 100, 5700, 1'000'000 - 50'000, 50'000 + 100});
  CHECK(after.newcomer_exists);
}

TEST_CASE("an amount of exactly 2^53-1 is well-formed: decoding and verification accept it") {
  World w;
  OpFactory f;
  Envelope max = f.fare(w.rider, w.rider_key, w.transit, kAmountMax);
  Rejection rej;
  auto env = decode_envelope(max.jcs, &rej);
  REQUIRE_MESSAGE(env.has_value(), rej.detail);
  CHECK(env->body.amount == kAmountMax);
  CHECK(verify_envelope(*env) == Code::kOk);

  // Mutating a valid envelope's amount to 2^53-1 is also accepted by the decoder.
  Envelope base = f.fare(w.rider, w.rider_key, w.transit, 5700);
  auto mutated = decode_envelope(with(base, "/body/amount", kAmountMax), &rej);
  REQUIRE_MESSAGE(mutated.has_value(), rej.detail);
  CHECK(mutated->body.amount == kAmountMax);

  // On a funded ledger the op is judged on funds, not on form.
  TempDir dir;
  auto ledger = open_funded_ledger(dir.sub("ledger"), w);
  CHECK(apply_one(*ledger, *env).code == Code::kInsufficientFunds);
}

TEST_CASE("a signature swapped onto a correctly formed envelope is rejected before the ledger sees it") {
  World w;
  Bases b = make_bases(w);
  Json j = doc_of(b.fare);
  j["signatures"][0]["sig"] = hex_encode(b.transfer.signatures[0].sig);  // same key, other message
  Rejection rej;
  auto env = decode_envelope(j.dump(), &rej);
  REQUIRE(env.has_value());
  CHECK(verify_envelope(*env) == Code::kBadSignature);
}

TEST_CASE("a defect the strict parser catches is reported with the field's path") {
  World w;
  Bases b = make_bases(w);
  const std::string fare = b.fare.jcs;
  const std::vector<std::pair<std::string, std::string>> rows = {
      {replaced(fare, "\"amount\":5700,", "\"amount\":57.5,"), "body.amount"},
      {replaced(fare, "\"amount\":5700,", "\"amount\":1e3,"), "body.amount"},
      {replaced(fare, "\"amount\":5700,", "\"amount\":18446744073709551617,"), "body.amount"},
      {replaced(fare, "\"tap_at\":1700000000000,", "\"tap_at\":1.5,"), "body.tap_at"},
      {replaced(fare, "\"amount\":5700,", "\"amount\":5700,\"amount\":5700,"), "body.amount"},
      {replaced(fare, "\"gate\":\"gate-1\"", "\"gate\":\"gate\xff-1\""), "body.gate"},
  };
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i << ": " << printable(rows[i].first));
    Rejection rej;
    CHECK_FALSE(decode_envelope(rows[i].first, &rej).has_value());
    CHECK(rej.code == Code::kMalformed);
    CHECK(rej.detail.find(rows[i].second) != std::string::npos);
  }
}

TEST_CASE("an envelope followed by a NUL byte and more text is malformed") {
  World w;
  Bases b = make_bases(w);
  Rejection rej;
  CHECK_FALSE(decode_envelope(b.fare.jcs + '\0' + "{\"amount\":1}", &rej).has_value());
  CHECK_FALSE(decode_envelope(b.fare.jcs + '\0', &rej).has_value());
}

// A batch that accepts nothing still advances the ledger time without a
// journal entry; the store must stay consistent (regression: check() once
// demanded last entry time == recorded ledger time and refused to reopen).
TEST_CASE("a ledger that rejected a whole batch of bad envelopes still passes check and reopens") {
  TempDir dir;
  World w;
  Bases b = make_bases(w);
  {
    auto ledger = open_funded_ledger(dir.sub("ledger"), w);
    OpFactory other("spb-demo", 0xC0);
    CHECK(apply_one(*ledger, other.fare(w.rider, w.rider_key, w.transit, 5700)).code == Code::kWrongChain);
    Status st = ledger->check(/*full=*/true);
    CHECK_MESSAGE(st.is_ok(), st.to_string());
  }
  auto reopened = Ledger::open(dir.sub("ledger"), test_genesis());
  CHECK_MESSAGE(reopened.is_ok(), reopened.status().to_string());
}

}  // namespace cl::test
