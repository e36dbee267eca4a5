// The wallet layer (DESIGN §3–§4): known-answer vectors, canonical JSON, the
// strict parser, Ed25519 keys and key files, envelopes, result codes and the
// rules for text fields.  Bad envelopes end to end: malformed_test.cpp.
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "ledger/ledger.h"
#include "ledger/merkle.h"
#include "tests/unit/fixture.h"
#include "wallet/codes.h"
#include "wallet/jcs.h"
#include "wallet/keys.h"
#include "wallet/op.h"

namespace cl::test {
namespace {

using namespace std::string_literals;
using namespace std::string_view_literals;


// The vector keys by public-key hex.
std::vector<KeyPair> vector_keys(const Json& vectors) {
  std::vector<KeyPair> keys;
  for (const auto& [name, k] : vectors.at("keys").items()) {
    KeyPair kp = key_from_secret_hex(k.at("secret").get<std::string>());
    REQUIRE(hex_encode(kp.public_key) == k.at("public").get<std::string>());
    keys.push_back(kp);
  }
  return keys;
}

const KeyPair& key_by_public_hex(const std::vector<KeyPair>& keys, const std::string& public_hex) {
  for (const auto& k : keys)
    if (hex_encode(k.public_key) == public_hex) return k;
  FAIL("no vector key has public key " << public_hex);
  return keys.front();
}

std::string hex_of(const SignatureBytes& s) { return hex_encode(s); }

Result<Json> parse(std::string_view text) { return parse_json_strict(text); }

std::string jcs_or_refused(const Json& v) {
  std::string out;
  return append_jcs(v, &out) ? out : "<refused>";
}

// A signed fare, transfer (with memo), payout, open_wallet, …: one of every op type.
std::vector<Envelope> one_of_every_type() {
  OpFactory f;
  KeyPair owner = seed_key(0x21), other = seed_key(0x22);
  WalletId a = make_id(1, 0xA1), b = make_id(2, 0xA2);
  std::vector<Envelope> out;
  out.push_back(f.open_wallet(a, owner));
  out.push_back(f.open_wallet(b, other, WalletKind::kTransit, 5'000'000));
  out.push_back(f.issue(a, 100'000));
  out.push_back(f.redeem(a, owner, 100));
  out.push_back(f.transfer(a, owner, b, 200));
  OpBody memo = f.body(OpType::kTransfer);
  memo.from = a;
  memo.to = b;
  memo.amount = 300;
  memo.memo = "кофе \"латте\" \\ 2 шт ☕";
  memo.expires_at = 1'800'000'000'000;
  out.push_back(sign_envelope(memo, {&owner}));
  out.push_back(f.fare(a, owner, b, 5700, "Охотный Ряд, турникет 7"));
  out.push_back(f.payout(a, owner, b, 50'000, "birth-benefit", "R-1"));
  out.push_back(f.freeze(a));
  out.push_back(f.freeze(a, /*frozen=*/false));
  out.push_back(f.rotate_key(a, other));
  return out;
}

// Decodes "text"; fails the test unless it decodes.
Envelope decode_ok(const std::string& text) {
  Rejection rej;
  auto env = decode_envelope(text, &rej);
  REQUIRE_MESSAGE(env.has_value(), rej.detail);
  return std::move(*env);
}

void write_text(const std::string& path, const std::string& text, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

}  // namespace

// ---------------------------------------------------------------------------
// Known-answer vectors (tests/vectors/design-vectors.json)
// ---------------------------------------------------------------------------

TEST_CASE("vector ops decode to the vector JCS, signing message and exact signatures") {
  Json vectors = design_vectors();
  std::vector<KeyPair> keys = vector_keys(vectors);
  REQUIRE(vectors.at("ops").size() == 4);
  for (const auto& op : vectors.at("ops")) {
    INFO("vector: " << op.at("name").get<std::string>());
    Envelope env = decode_ok(op.at("envelope").dump());

    CHECK(env.body_jcs == op.at("jcs").get<std::string>());
    CHECK(jcs(op.at("body")) == op.at("jcs").get<std::string>());
    CHECK(jcs(body_to_json(env.body)) == op.at("jcs").get<std::string>());
    std::string message = op_signing_message(env.body_jcs);
    CHECK(hex_encode(message) == op.at("signed_message_hex").get<std::string>());
    CHECK(env.body_hash == sha256(env.body_jcs));

    const Json& sigs = op.at("envelope").at("signatures");
    REQUIRE(env.signatures.size() == sigs.size());
    std::vector<const KeyPair*> signers;
    for (size_t i = 0; i < sigs.size(); ++i) {
      const KeyPair& k = key_by_public_hex(keys, sigs[i].at("key").get<std::string>());
      signers.push_back(&k);
      CHECK(hex_of(sign(k, message)) == sigs[i].at("sig").get<std::string>());
      CHECK(hex_of(env.signatures[i].sig) == sigs[i].at("sig").get<std::string>());
    }
    CHECK(verify_envelope(env) == Code::kOk);
    // The project's own signer reproduces the whole envelope byte for byte.
    CHECK(sign_envelope(env.body, signers).jcs == env.jcs);
    CHECK(env.jcs == jcs(op.at("envelope")));
  }
}

TEST_CASE("vector journal entry has the vector canonical bytes and leaf hash") {
  Json v = design_vectors().at("journal_entry");
  const Json& entry = v.at("entry");
  Envelope env = decode_ok(entry.at("op").dump());
  std::string bytes =
      entry_bytes(entry.at("index").get<uint64_t>(), entry.at("time").get<uint64_t>(), env.jcs);

  CHECK(bytes == v.at("jcs").get<std::string>());
  CHECK(jcs(entry) == v.at("jcs").get<std::string>());
  CHECK(hex_encode(merkle::leaf_hash(bytes)) == v.at("leaf_hash").get<std::string>());
  CHECK(entry_time(bytes) == entry.at("time").get<uint64_t>());
}

TEST_CASE("vector checkpoint: JCS after the checkpoint prefix, and the node signature is exact") {
  Json v = design_vectors().at("checkpoint");
  const std::string prefix = "cityledger/checkpoint/v1\n";
  std::string message = prefix + jcs(v.at("checkpoint"));
  CHECK(hex_encode(message) == v.at("signed_message_hex").get<std::string>());

  KeyPair node = key_from_secret_hex(v.at("node_key").at("secret").get<std::string>());
  CHECK(hex_encode(node.public_key) == v.at("node_key").at("public").get<std::string>());
  CHECK(node.public_key == authorities().node.public_key);
  CHECK(hex_of(sign(node, message)) == v.at("signature").get<std::string>());
  auto sig = hex_decode_array<64>(v.at("signature").get<std::string>());
  REQUIRE(sig.has_value());
  CHECK(verify(node.public_key, message, *sig));
}

TEST_CASE("fixture authorities are the vector keys (registrar 0x01, issuer 0x03)") {
  Json keys = design_vectors().at("keys");
  CHECK(hex_encode(authorities().registrar.public_key) == keys.at("registrar").at("public").get<std::string>());
  CHECK(hex_encode(authorities().issuer.public_key) == keys.at("issuer").at("public").get<std::string>());
  CHECK(hex_encode(seed_key(0x02).public_key) == keys.at("alice").at("public").get<std::string>());
}

// ---------------------------------------------------------------------------
// Canonical JSON (RFC 8785, restricted)
// ---------------------------------------------------------------------------

TEST_CASE("JCS sorts ASCII object keys and writes no whitespace") {
  auto doc = parse("{ \"b\" : 1,\n \"a\" : 2, \"aa\": 3, \"B\": 4, \"\": 5 }");
  REQUIRE(doc.is_ok());
  CHECK(jcs(*doc) == R"({"":5,"B":4,"a":2,"aa":3,"b":1})");
}

TEST_CASE("JCS sorts non-ASCII keys by UTF-16 code units, not UTF-8 bytes") {
  const std::string euro = "\u20AC";         // U+20AC: UTF-16 0x20AC, UTF-8 E2 82 AC
  const std::string grin = "\U0001F600";     // U+1F600: UTF-16 D83D DE00, UTF-8 F0 9F 98 80
  const std::string fi = "\uFB01";           // U+FB01: UTF-16 0xFB01, UTF-8 EF AC 81
  // UTF-8 byte order would put the emoji last; UTF-16 order puts it between.
  REQUIRE(grin > fi);
  Json obj = Json::object();
  obj[fi] = 3;
  obj[grin] = 2;
  obj[euro] = 1;
  obj["z"] = 0;
  CHECK(jcs(obj) == "{\"z\":0,\"" + euro + "\":1,\"" + grin + "\":2,\"" + fi + "\":3}");

  Json two = Json::object();
  two[fi] = 1;
  two[grin] = 2;
  CHECK(jcs(two) == "{\"" + grin + "\":2,\"" + fi + "\":1}");
}

TEST_CASE("JCS sorts keys inside nested objects and keeps array order") {
  auto doc = parse(R"({"b": [3, 1, {"d": true, "c": []}], "a": {"y": false, "x": "s"}})");
  REQUIRE(doc.is_ok());
  CHECK(jcs(*doc) == R"({"a":{"x":"s","y":false},"b":[3,1,{"c":[],"d":true}]})");
  CHECK(jcs(Json::array()) == "[]");
  CHECK(jcs(Json::object()) == "{}");
}

TEST_CASE("JCS escapes only quote, backslash and control characters, with lowercase hex") {
  std::string s = "\"\\\b\f\n\r\t"s + '\0' + "\x01\x0b\x1f\x7f/é😀ж";
  CHECK(jcs(Json(s)) == "\"\\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u0001\\u000b\\u001f\x7f/é😀ж\"");
  std::string out;
  append_jcs_string("a/b", &out);
  CHECK(out == "\"a/b\"");
}

TEST_CASE("JCS writes integers exactly, negatives and 2^64-1 included") {
  CHECK(jcs(Json(0)) == "0");
  CHECK(jcs(Json(-1)) == "-1");
  CHECK(jcs(Json(std::numeric_limits<int64_t>::min())) == "-9223372036854775808");
  CHECK(jcs(Json(std::numeric_limits<uint64_t>::max())) == "18446744073709551615");
  CHECK(jcs(Json(kAmountMax)) == "9007199254740991");
  auto parsed = parse("[-0, 18446744073709551615, -42, true, false]");
  REQUIRE(parsed.is_ok());
  CHECK(jcs(*parsed) == "[0,18446744073709551615,-42,true,false]");
}

TEST_CASE("append_jcs refuses floats and null anywhere in the value") {
  CHECK(jcs_or_refused(Json(1.5)) == "<refused>");
  CHECK(jcs_or_refused(Json(1.0)) == "<refused>");
  CHECK(jcs_or_refused(Json(nullptr)) == "<refused>");
  CHECK(jcs_or_refused(Json::array({1, nullptr})) == "<refused>");
  CHECK(jcs_or_refused(Json{{"a", {{"b", 0.25}}}}) == "<refused>");
  CHECK(jcs_or_refused(Json(Json::value_t::discarded)) == "<refused>");
  CHECK(jcs_or_refused(Json::array({1, "x"})) == "[1,\"x\"]");
}

TEST_CASE("JCS output parses back to the same document") {
  auto doc = parse(R"({"k": ["ж", -7, {"\u20ac": 1, "a": "\u0001"}], "e": {}})");
  REQUIRE(doc.is_ok());
  auto again = parse(jcs(*doc));
  REQUIRE(again.is_ok());
  CHECK(*again == *doc);
  CHECK(jcs(*again) == jcs(*doc));
}

// ---------------------------------------------------------------------------
// parse_json_strict
// ---------------------------------------------------------------------------

TEST_CASE("parse_json_strict accepts valid documents") {
  for (std::string_view text : {"{}"sv, "[]"sv, "0"sv, "-5"sv, "\"ж😀\""sv, "true"sv, " {\"a\" : [1, 2] }\n"sv,
                                "18446744073709551615"sv, "-9223372036854775808"sv, "[{\"a\":1},{\"a\":1}]"sv,
                                "{\"a\":{\"b\":1},\"b\":{\"a\":2}}"sv, "\"\\ud83d\\ude00\""sv}) {
    INFO(text);
    auto r = parse(text);
    CHECK_MESSAGE(r.is_ok(), r.status().to_string());
  }
}

TEST_CASE("parse_json_strict refuses duplicate keys at any depth") {
  for (std::string_view text : {R"({"a":1,"a":1})"sv, R"({"a":1,"b":2,"a":3})"sv, R"({"x":{"b":1,"b":2}})"sv,
                                R"([0,{"k":[{"d":1,"d":1}]}])"sv, R"({"a":{"b":1},"a":2})"sv}) {
    INFO(text);
    auto r = parse(text);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "malformed");
    CHECK(r.status().message().find("duplicate key") != std::string::npos);
  }
}

TEST_CASE("parse_json_strict accepts nesting of kJsonDepthMax and refuses deeper") {
  auto nested_arrays = [](int depth, const std::string& inner) {
    return std::string(depth, '[') + inner + std::string(depth, ']');
  };
  auto nested_objects = [](int depth, const std::string& inner) {
    std::string s;
    for (int i = 0; i < depth; ++i) s += "{\"a\":";
    s += inner;
    for (int i = 0; i < depth; ++i) s += "}";
    return s;
  };
  CHECK(parse(nested_arrays(kJsonDepthMax, "1")).is_ok());
  CHECK(parse(nested_objects(kJsonDepthMax, "1")).is_ok());
  CHECK(parse(nested_arrays(kJsonDepthMax, "")).is_ok());
  for (int depth : {kJsonDepthMax + 1, kJsonDepthMax + 2, 100, 10'000}) {
    INFO("depth " << depth);
    auto a = parse(nested_arrays(depth, "1"));
    REQUIRE_FALSE(a.is_ok());
    CHECK(a.status().message().find("nesting") != std::string::npos);
    CHECK_FALSE(parse(nested_objects(depth, "1")).is_ok());
    CHECK_FALSE(parse(nested_arrays(depth + 1, "")).is_ok());
  }
}

TEST_CASE("parse_json_strict refuses kJsonDepthMax+1 nested empty containers") {
  CHECK_FALSE(parse(std::string(kJsonDepthMax + 1, '[') + std::string(kJsonDepthMax + 1, ']')).is_ok());
  std::string objects;
  for (int i = 0; i < kJsonDepthMax; ++i) objects += "{\"a\":";
  objects += "{}" + std::string(kJsonDepthMax, '}');
  CHECK_FALSE(parse(objects).is_ok());
}

TEST_CASE("parse_json_strict refuses floats, exponents and integers beyond 64 bits") {
  for (std::string_view text : {"1.5"sv, "1.0"sv, "-0.0"sv, "1e3"sv, "1E3"sv, "2e-1"sv, "[1,2.5]"sv,
                                "{\"a\":1e0}"sv, "18446744073709551616"sv, "18446744073709551617"sv,
                                "-9223372036854775809"sv, "100000000000000000000000"sv}) {
    INFO(text);
    auto r = parse(text);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "malformed");
  }
  auto r = parse("{\"amount\":57.5}");
  REQUIRE_FALSE(r.is_ok());
  CHECK(r.status().message().find("integers") != std::string::npos);
}

TEST_CASE("parse_json_strict refuses invalid UTF-8") {
  for (std::string_view text : {"\"\xff\""sv, "\"\xc0\xaf\""sv, "\"\xed\xa0\x80\""sv, "\"\xd0\""sv,
                                "\"\xf4\x90\x80\x80\""sv, "\"\\ud800\""sv, "\"\\udc00\""sv, "{\"\xfe\":1}"sv,
                                "\xff"sv}) {
    INFO(hex_encode(text));
    auto r = parse(text);
    CHECK_FALSE(r.is_ok());
  }
}

TEST_CASE("parse_json_strict refuses trailing garbage and empty input") {
  for (std::string_view text : {"{} x"sv, "{}{}"sv, "1 2"sv, "[1]]"sv, "{\"a\":1},"sv, "\"a\"\"b\""sv, ""sv,
                                " "sv, "\n\t"sv, "\0"sv, "[1,]"sv, "{\"a\":1,}"sv, "// c\n{}"sv, "NaN"sv,
                                "01"sv, "'a'"sv, "{a:1}"sv}) {
    INFO(hex_encode(text));
    auto r = parse(text);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "malformed");
  }
}

TEST_CASE("parse_json_strict refuses bytes after a NUL that follows the value") {
  CHECK_FALSE(parse("{\"a\":1}\0"sv).is_ok());
  CHECK_FALSE(parse("{\"a\":1}\0junk"sv).is_ok());
  CHECK_FALSE(parse("[1]\0]"sv).is_ok());
}

// ---------------------------------------------------------------------------
// Keys and key files
// ---------------------------------------------------------------------------

TEST_CASE("generated key pairs sign messages that verify under their own key only") {
  KeyPair k = generate_key_pair();
  KeyPair other = generate_key_pair();
  CHECK(k.public_key != other.public_key);
  std::string message = "cityledger/op/v1\n{\"amount\":1}";
  SignatureBytes sig = sign(k, message);
  CHECK(verify(k.public_key, message, sig));
  CHECK_FALSE(verify(other.public_key, message, sig));

  for (size_t bit = 0; bit < message.size() * 8; bit += 13) {
    std::string flipped = message;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    CHECK_FALSE(verify(k.public_key, flipped, sig));
  }
  for (size_t bit = 0; bit < sig.size() * 8; bit += 7) {
    SignatureBytes bad = sig;
    bad[bit / 8] ^= static_cast<uint8_t>(1 << (bit % 8));
    CHECK_FALSE(verify(k.public_key, message, bad));
  }
  CHECK_FALSE(verify(k.public_key, message + "x", sig));
  CHECK_FALSE(verify(k.public_key, "", sig));
}

TEST_CASE("key_pair_from_seed is deterministic and its secret holds seed then public key") {
  KeyPair a = seed_key(0x07), b = seed_key(0x07), c = seed_key(0x08);
  CHECK(a.public_key == b.public_key);
  CHECK(a.secret_key == b.secret_key);
  CHECK(a.public_key != c.public_key);
  for (size_t i = 0; i < 32; ++i) CHECK(a.secret_key[i] == 0x07);
  CHECK(std::equal(a.public_key.begin(), a.public_key.end(), a.secret_key.begin() + 32));
}

TEST_CASE("write_key_file creates the file with mode 0600 and read_key_file round-trips it") {
  TempDir dir;
  std::string path = dir.sub("alice.key");
  KeyPair k = generate_key_pair();
  REQUIRE(write_key_file(path, k).is_ok());

  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(read_file(path) == key_file_text(k));

  auto back = read_key_file(path);
  REQUIRE_MESSAGE(back.is_ok(), back.status().to_string());
  CHECK(back->public_key == k.public_key);
  CHECK(back->secret_key == k.secret_key);
}

TEST_CASE("write_key_file refuses to overwrite an existing file") {
  TempDir dir;
  std::string path = dir.sub("k.key");
  KeyPair first = generate_key_pair(), second = generate_key_pair();
  REQUIRE(write_key_file(path, first).is_ok());
  Status s = write_key_file(path, second);
  CHECK_FALSE(s.is_ok());
  auto back = read_key_file(path);
  REQUIRE(back.is_ok());
  CHECK(back->public_key == first.public_key);

  write_text(dir.sub("other"), "not a key", 0600);
  CHECK_FALSE(write_key_file(dir.sub("other"), first).is_ok());
  CHECK(read_file(dir.sub("other")) == "not a key");
}

TEST_CASE("read_key_file refuses a file readable by group or others and says to chmod") {
  TempDir dir;
  KeyPair k = generate_key_pair();
  for (mode_t mode : {mode_t{0644}, mode_t{0640}, mode_t{0604}, mode_t{0660}, mode_t{0601}, mode_t{0610}}) {
    INFO("mode " << std::oct << mode);
    std::string path = dir.sub("k" + std::to_string(mode));
    write_text(path, key_file_text(k), mode);
    auto r = read_key_file(path);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "invalid");
    CHECK(r.status().message().find("chmod") != std::string::npos);
  }
  std::string ok = dir.sub("ok");
  write_text(ok, key_file_text(k), 0400);
  CHECK(read_key_file(ok).is_ok());
}

TEST_CASE("read_key_file refuses a secret key that does not match the public key") {
  TempDir dir;
  KeyPair k = seed_key(0x31), other = seed_key(0x32);
  std::string wrong_public = R"({"public":")" + hex_encode(other.public_key) + R"(","secret":")" +
                             hex_encode(k.secret_key) + "\"}\n";
  write_text(dir.sub("a"), wrong_public, 0600);
  auto a = read_key_file(dir.sub("a"));
  REQUIRE_FALSE(a.is_ok());
  CHECK(a.status().message().find("does not match") != std::string::npos);

  // The secret's own public half disagrees with its seed.
  SecretKey spliced = k.secret_key;
  std::copy(other.public_key.begin(), other.public_key.end(), spliced.begin() + 32);
  std::string bad_half = R"({"public":")" + hex_encode(k.public_key) + R"(","secret":")" + hex_encode(spliced) +
                         "\"}\n";
  write_text(dir.sub("b"), bad_half, 0600);
  CHECK_FALSE(read_key_file(dir.sub("b")).is_ok());
}

TEST_CASE("read_key_file refuses bad JSON, missing fields, extra fields and bad hex") {
  TempDir dir;
  KeyPair k = seed_key(0x33);
  std::string pub = hex_encode(k.public_key), sec = hex_encode(k.secret_key);
  std::string upper = sec;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::vector<std::string> bodies = {
      "",
      "not json",
      "{\"public\":\"" + pub + "\"",
      "[]",
      "{\"public\":\"" + pub + "\"}",
      "{\"secret\":\"" + sec + "\"}",
      "{\"public\":\"" + pub + "\",\"secret\":\"" + sec + "\",\"note\":\"x\"}",
      "{\"public\":\"" + pub + "\",\"secret\":\"" + upper + "\"}",
      "{\"public\":\"" + pub + "\",\"secret\":\"" + sec.substr(2) + "\"}",
      "{\"public\":1,\"secret\":\"" + sec + "\"}",
      "{\"public\":\"" + pub + "\",\"public\":\"" + pub + "\",\"secret\":\"" + sec + "\"}",
  };
  for (size_t i = 0; i < bodies.size(); ++i) {
    INFO("body " << i << ": " << bodies[i]);
    std::string path = dir.sub("bad" + std::to_string(i));
    write_text(path, bodies[i], 0600);
    auto r = read_key_file(path);
    REQUIRE_FALSE(r.is_ok());
    CHECK(r.status().code() == "invalid");
  }
  CHECK_FALSE(read_key_file(dir.sub("missing")).is_ok());
  CHECK(parse_key_file(key_file_text(k)).is_ok());
}

// ---------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------

TEST_CASE("every op type round-trips through sign_envelope, decode_envelope and body_to_json") {
  for (const Envelope& env : one_of_every_type()) {
    INFO(env.jcs);
    Envelope back = decode_ok(env.jcs);
    CHECK(back.jcs == env.jcs);
    CHECK(back.body_jcs == env.body_jcs);
    CHECK(back.body_hash == env.body_hash);
    CHECK(back.body_hash == sha256(back.body_jcs));
    CHECK(verify_envelope(back) == Code::kOk);
    CHECK(env.jcs == "{\"body\":" + env.body_jcs + ",\"signatures\":" +
                         jcs(Json::parse(env.jcs).at("signatures")) + "}");

    Json body = Json::parse(env.body_jcs);
    Rejection rej;
    auto decoded = decode_body(body, &rej);
    REQUIRE_MESSAGE(decoded.has_value(), rej.detail);
    CHECK(body_to_json(*decoded) == body);
    CHECK(jcs(body_to_json(*decoded)) == env.body_jcs);
    CHECK(op_type_name(decoded->type) == body.at("type").get<std::string>());
  }
}

TEST_CASE("a pretty-printed envelope with keys in any order decodes to the canonical bytes") {
  OpFactory f;
  Envelope env = f.fare(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 5700, "Охотный Ряд");
  Json doc = Json::parse(env.jcs);
  Envelope back = decode_ok(doc.dump(2));
  CHECK(back.jcs == env.jcs);
  CHECK(back.body_jcs == env.body_jcs);
  CHECK(verify_envelope(back) == Code::kOk);
}

TEST_CASE("open_wallet carries the registrar's and the new key's signatures, in order") {
  OpFactory f;
  KeyPair owner = seed_key(0x21);
  Envelope env = f.open_wallet(make_id(1, 0xA1), owner, WalletKind::kMerchant, 1000);
  REQUIRE(env.signatures.size() == 2);
  CHECK(env.signatures[0].key == authorities().registrar.public_key);
  CHECK(env.signatures[1].key == owner.public_key);
  CHECK(env.signed_by(authorities().registrar.public_key));
  CHECK(env.signed_by(owner.public_key));
  CHECK_FALSE(env.signed_by(authorities().issuer.public_key));
  CHECK(verify_envelope(env) == Code::kOk);
  CHECK(env.body.kind == WalletKind::kMerchant);
  CHECK(env.body.max_balance == 1000u);

  // Signer entries (key with its sig) may come in any order.
  Json doc = Json::parse(env.jcs);
  std::swap(doc["signatures"][0], doc["signatures"][1]);
  CHECK(verify_envelope(decode_ok(doc.dump())) == Code::kOk);
}

TEST_CASE("verify_envelope refuses a signature whose key did not make it") {
  OpFactory f;
  Envelope env = f.fare(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 5700);
  Json doc = Json::parse(env.jcs);
  doc["signatures"][0]["key"] = hex_encode(seed_key(0x22).public_key);
  CHECK(verify_envelope(decode_ok(doc.dump())) == Code::kBadSignature);
}

TEST_CASE("verify_envelope refuses a body changed after signing") {
  OpFactory f;
  Envelope env = f.fare(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 5700);
  for (auto [field, value] : std::vector<std::pair<std::string, Json>>{
           {"amount", 5701}, {"gate", "gate-2"}, {"to", id_hex(make_id(3, 0xA3))}, {"tap_at", 1}}) {
    INFO(field);
    Json doc = Json::parse(env.jcs);
    doc["body"][field] = value;
    Envelope changed = decode_ok(doc.dump());
    CHECK(changed.body_jcs != env.body_jcs);
    CHECK(verify_envelope(changed) == Code::kBadSignature);
  }
  Json doc = Json::parse(env.jcs);
  doc["body"]["expires_at"] = 1'900'000'000'000;  // adding an optional field changes the body too
  CHECK(verify_envelope(decode_ok(doc.dump())) == Code::kBadSignature);
}

TEST_CASE("verify_envelope refuses signatures swapped between two signers") {
  OpFactory f;
  Envelope env = f.open_wallet(make_id(1, 0xA1), seed_key(0x21));
  Json doc = Json::parse(env.jcs);
  std::swap(doc["signatures"][0]["sig"], doc["signatures"][1]["sig"]);
  Envelope swapped = decode_ok(doc.dump());
  CHECK(verify_envelope(swapped) == Code::kBadSignature);

  // Only the second signature bad: every signature is checked, not just the first.
  Json second = Json::parse(env.jcs);
  second["signatures"][1]["sig"] = second["signatures"][0]["sig"];
  CHECK(verify_envelope(decode_ok(second.dump())) == Code::kBadSignature);
}

TEST_CASE("id_hex and id_from_hex round-trip and refuse uppercase or wrong lengths") {
  Id128 id = make_id(0x0123456789abcdefULL, 0xFE);
  CHECK(id_hex(id) == "fe000000000000000123456789abcdef");
  CHECK(id_from_hex(id_hex(id)) == id);
  CHECK_FALSE(id_from_hex("FE000000000000000123456789ABCDEF").has_value());
  CHECK_FALSE(id_from_hex("fe00000000000000").has_value());
  CHECK_FALSE(id_from_hex("fe000000000000000123456789abcdef00").has_value());
  CHECK_FALSE(id_from_hex("ge000000000000000123456789abcdef").has_value());
}

// ---------------------------------------------------------------------------
// Result codes
// ---------------------------------------------------------------------------

TEST_CASE("code_name and code_from_name round-trip all 15 codes with the DESIGN §4 names") {
  const std::vector<std::pair<Code, std::string>> names = {
      {Code::kOk, "ok"},
      {Code::kBadSignature, "bad_signature"},
      {Code::kWrongChain, "wrong_chain"},
      {Code::kMalformed, "malformed"},
      {Code::kUnknownWallet, "unknown_wallet"},
      {Code::kWalletExists, "wallet_exists"},
      {Code::kWalletFrozen, "wallet_frozen"},
      {Code::kInsufficientFunds, "insufficient_funds"},
      {Code::kBalanceLimitExceeded, "balance_limit_exceeded"},
      {Code::kNotAuthorized, "not_authorized"},
      {Code::kReferenceUsed, "reference_used"},
      {Code::kExpired, "expired"},
      {Code::kInvalidAmount, "invalid_amount"},
      {Code::kSameWallet, "same_wallet"},
      {Code::kIdConflict, "id_conflict"},
  };
  REQUIRE(names.size() == 15);
  for (const auto& [code, name] : names) {
    INFO(name);
    CHECK(code_name(code) == name);
    CHECK(code_from_name(name) == code);
  }
  for (int i = 0; i < 15; ++i) CHECK(code_from_name(code_name(static_cast<Code>(i))) == static_cast<Code>(i));
  CHECK_FALSE(code_from_name("").has_value());
  CHECK_FALSE(code_from_name("OK").has_value());
  CHECK_FALSE(code_from_name("bad signature").has_value());
  CHECK_FALSE(code_from_name("malformed ").has_value());
}

TEST_CASE("code_http_status follows DESIGN §6") {
  const std::vector<std::pair<Code, int>> statuses = {
      {Code::kOk, 200},
      {Code::kMalformed, 400},
      {Code::kWrongChain, 400},
      {Code::kBadSignature, 401},
      {Code::kNotAuthorized, 403},
      {Code::kUnknownWallet, 404},
      {Code::kIdConflict, 409},
      {Code::kReferenceUsed, 409},
      {Code::kWalletExists, 409},
      {Code::kWalletFrozen, 422},
      {Code::kInsufficientFunds, 422},
      {Code::kBalanceLimitExceeded, 422},
      {Code::kExpired, 422},
      {Code::kInvalidAmount, 422},
      {Code::kSameWallet, 422},
  };
  REQUIRE(statuses.size() == 15);
  for (const auto& [code, status] : statuses) {
    INFO(code_name(code));
    CHECK(code_http_status(code) == status);
  }
}

// ---------------------------------------------------------------------------
// Text fields (gate, memo, program, reference, reason)
// ---------------------------------------------------------------------------

namespace {

struct TextField {
  std::string name;
  OpType type;
};

const std::vector<TextField>& text_fields() {
  static const std::vector<TextField> fields = {
      {"gate", OpType::kFare},       {"memo", OpType::kTransfer}, {"program", OpType::kPayout},
      {"reference", OpType::kPayout}, {"reason", OpType::kFreeze},
  };
  return fields;
}

// A valid body of "type" as JSON, every text field "ok".
Json valid_body(OpType type) {
  OpFactory f;
  OpBody b = f.body(type);
  b.wallet = make_id(1, 0xA1);
  b.from = make_id(1, 0xA1);
  b.to = make_id(2, 0xA2);
  b.amount = 100;
  b.gate = b.program = b.reference = b.reason = "ok";
  b.memo = "ok";
  b.tap_at = 1'700'000'000'000;
  return body_to_json(b);
}

// decode_body of a valid body whose text field "field" is "value".
std::optional<OpBody> decode_with_text(const TextField& field, const std::string& value, Rejection* rej) {
  Json body = valid_body(field.type);
  REQUIRE(body.contains(field.name));
  body[field.name] = value;
  return decode_body(body, rej);
}

std::string repeat(const std::string& s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

}  // namespace

TEST_CASE("text fields count Unicode characters, not bytes: 128 are accepted, 129 refused") {
  for (const auto& field : text_fields()) {
    for (const std::string& ch : {"a"s, "ж"s, "€"s, "😀"s}) {
      INFO(field.name << " of " << ch);
      Rejection rej;
      auto ok = decode_with_text(field, repeat(ch, kTextCharsMax), &rej);
      CHECK_MESSAGE(ok.has_value(), rej.detail);
      auto too_long = decode_with_text(field, repeat(ch, kTextCharsMax + 1), &rej);
      REQUIRE_FALSE(too_long.has_value());
      CHECK(rej.code == Code::kMalformed);
      CHECK(rej.detail.find("body." + field.name + ":") != std::string::npos);
    }
  }
  Rejection rej;
  auto gate = decode_with_text(text_fields()[0], repeat("ж", 128), &rej);
  REQUIRE(gate.has_value());
  CHECK(gate->gate.size() == 256);
  CHECK(decode_with_text(text_fields()[0], repeat("a", 127) + "😀", &rej).has_value());
  CHECK(decode_with_text(text_fields()[0], "Охотный Ряд, турникет 7 🚇", &rej).has_value());
}

TEST_CASE("text fields refuse control characters U+0000..U+001F, U+007F..U+009F") {
  std::vector<std::string> controls;
  for (int c = 0; c < 0x20; ++c) controls.push_back(std::string(1, static_cast<char>(c)));
  controls.push_back("\x7f");
  for (int c = 0x80; c <= 0x9f; ++c) {
    controls.push_back(std::string{static_cast<char>(0xC2), static_cast<char>(c)});  // U+0080..U+009F
  }
  for (const auto& field : text_fields()) {
    for (const auto& ctl : controls) {
      INFO(field.name << " with " << hex_encode(ctl));
      Rejection rej;
      CHECK_FALSE(decode_with_text(field, "ab" + ctl + "cd", &rej).has_value());
      CHECK(rej.code == Code::kMalformed);
      CHECK(rej.detail.find("body." + field.name + ":") != std::string::npos);
    }
    Rejection rej;
    CHECK_FALSE(decode_with_text(field, "\xc2\x85", &rej).has_value());  // U+0085 alone
  }
}

TEST_CASE("text fields accept the printable neighbours of control characters") {
  for (const std::string& s : {" "s, "~"s, "\xc2\xa0"s /* U+00A0 */, "\xc2\xa1"s, "ÿ"s, "\u2028"s}) {
    INFO(hex_encode(s));
    Rejection rej;
    CHECK_MESSAGE(decode_with_text(text_fields()[0], "a" + s + "b", &rej).has_value(), rej.detail);
  }
}

TEST_CASE("text fields refuse the empty string") {
  for (const auto& field : text_fields()) {
    INFO(field.name);
    Rejection rej;
    CHECK_FALSE(decode_with_text(field, "", &rej).has_value());
    CHECK(rej.code == Code::kMalformed);
    CHECK(rej.detail.find("body." + field.name + ":") != std::string::npos);
  }
}

TEST_CASE("text fields refuse invalid UTF-8 in a document built in memory") {
  for (std::string bad : {"\xff"s, "\xc0\xaf"s, "\xc1\xbf"s, "\xe0\x80\xaf"s, "\xed\xa0\x80"s, "\xd0"s,
                          "a\xe2\x82"s, "\xf4\x90\x80\x80"s, "\xf8\x88\x80\x80\x80"s, "\x80"s}) {
    INFO(hex_encode(bad));
    Rejection rej;
    CHECK_FALSE(decode_with_text(text_fields()[0], bad, &rej).has_value());
    CHECK(rej.code == Code::kMalformed);
    CHECK(rej.detail.find("body.gate:") != std::string::npos);
  }
}

// ---------------------------------------------------------------------------
// The canonical fast path (decode_envelope_canonical, and the journal lines
// of decode_journal_line_canonical): whatever it accepts, the strict path
// accepts with the same result; canonical text without escapes it accepts.
// ---------------------------------------------------------------------------

namespace {
namespace canonical {

// Everything an Envelope holds, spelled out, for comparing two decodings.
std::string describe(const Envelope& e) {
  const OpBody& b = e.body;
  std::string out = b.chain + "|" + id_hex(b.id) + "|" + std::string(op_type_name(b.type)) + "|" +
                    (b.expires_at ? std::to_string(*b.expires_at) : "-") + "|" + id_hex(b.wallet) + "|" +
                    id_hex(b.from) + "|" + id_hex(b.to) + "|" + hex_encode(b.key) + "|" +
                    std::string(wallet_kind_name(b.kind)) + "|" +
                    (b.max_balance ? std::to_string(*b.max_balance) : "-") + "|" + std::to_string(b.amount) + "|" +
                    b.gate + "|" + std::to_string(b.tap_at) + "|" + b.program + "|" + b.reference + "|" +
                    (b.memo ? "memo:" + *b.memo : "-") + "|" + b.reason + "|";
  for (const auto& s : e.signatures) out += hex_encode(s.key) + ":" + hex_encode(s.sig) + ",";
  return out + "|" + e.body_jcs + "|" + e.jcs + "|" + to_hex(e.body_hash);
}

// Envelopes of every type and every optional field, none needing escapes.
std::vector<Envelope> plain_envelopes() {
  std::vector<Envelope> out;
  for (const Envelope& e : one_of_every_type())
    if (e.jcs.find('\\') == std::string::npos) out.push_back(e);
  OpFactory f("chain.Z-9_x");
  KeyPair owner = seed_key(0x31), other = seed_key(0x32);
  WalletId a = make_id(7, 0xB1), b = make_id(8, 0xB2);
  OpBody t = f.body(OpType::kTransfer);
  t.from = a;
  t.to = b;
  t.amount = kAmountMax;
  t.memo = "за обед, ☕ и 🚇";  // 2-, 3- and 4-byte UTF-8
  out.push_back(sign_envelope(t, {&owner}));
  OpBody o = f.body(OpType::kOpenWallet);
  o.wallet = a;
  o.key = owner.public_key;
  o.kind = WalletKind::kAgency;
  o.max_balance = 1;
  o.expires_at = 0;
  out.push_back(sign_envelope(o, {&authorities().registrar, &authorities().registrar2, &owner, &other}));
  OpBody fare = f.body(OpType::kFare);
  fare.from = a;
  fare.to = b;
  fare.amount = 1;
  fare.gate = std::string(kTextCharsMax, 'g');
  fare.tap_at = kTimeMax;
  fare.expires_at = kTimeMax;
  out.push_back(sign_envelope(fare, {&owner}));
  out.push_back(f.redeem(b, other, 10));
  out.push_back(f.payout(a, owner, b, 99, "программа", "R-0"));
  return out;
}

// The strict path's verdict: the envelope, or nullopt.
std::optional<Envelope> strict(std::string_view text) {
  Rejection rej;
  return decode_envelope(text, &rej);
}

// One random edit of "text": a byte replaced, deleted or inserted, or a
// stretch deleted or repeated.  Bytes come mostly from those that matter to
// JSON and to the field rules.
std::string mutate(const std::string& text, std::mt19937_64& rng) {
  static const std::string kBytes = std::string("{}[]\",:\\ \t0123456789abcdefABCDEF-+.eExyz_/") +
                                    std::string("\x00\x1f\x7f\x80\xbf\xc3\xd0\xe2\xed\xf0\xf4\xff", 12);
  auto byte = [&] { return rng() % 4 == 0 ? static_cast<char>(rng() % 256) : kBytes[rng() % kBytes.size()]; };
  std::string m = text;
  size_t at = rng() % m.size();
  switch (rng() % 5) {
    case 0: m[at] = byte(); break;
    case 1: m.erase(at, 1); break;
    case 2: m.insert(m.begin() + static_cast<std::ptrdiff_t>(at), byte()); break;
    case 3: m.erase(at, 1 + rng() % 12); break;
    default: m.insert(at, m.substr(rng() % m.size(), 1 + rng() % 12)); break;
  }
  return m;
}

}  // namespace canonical
}  // namespace

TEST_CASE("decode_envelope_canonical decodes every op type exactly as decode_envelope does") {
  for (const Envelope& env : canonical::plain_envelopes()) {
    INFO(env.jcs);
    auto fast = decode_envelope_canonical(env.jcs);
    REQUIRE(fast.has_value());
    auto slow = canonical::strict(env.jcs);
    REQUIRE(slow.has_value());
    CHECK(canonical::describe(*fast) == canonical::describe(*slow));
    CHECK(canonical::describe(*fast) == canonical::describe(env));
    CHECK(verify_envelope(*fast) == Code::kOk);
  }
}

TEST_CASE("decode_envelope_canonical decodes the vector ops exactly as decode_envelope does, and leaves escapes to it") {
  Json vectors = design_vectors();
  size_t fast_count = 0;
  for (const auto& op : vectors.at("ops")) {
    std::string text = jcs(op.at("envelope"));
    INFO(text);
    auto slow = canonical::strict(text);
    REQUIRE(slow.has_value());
    REQUIRE(slow->jcs == text);
    auto fast = decode_envelope_canonical(text);
    if (text.find('\\') != std::string::npos) {
      CHECK_FALSE(fast.has_value());  // the memo that needs escaping: the strict path's job
      continue;
    }
    REQUIRE(fast.has_value());
    CHECK(canonical::describe(*fast) == canonical::describe(*slow));
    ++fast_count;
  }
  CHECK(fast_count == 3);
}

TEST_CASE("decode_envelope_canonical refuses text that is valid but not its canonical form") {
  OpFactory f;
  Envelope env = f.fare(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 5700, "Gate A");
  Json doc = Json::parse(env.jcs);
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string t = env.jcs;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  std::vector<std::string> variants = {
      doc.dump(2),                                                       // whitespace
      " " + env.jcs,                                                     // leading space
      env.jcs + "\n",                                                    // trailing newline
      "{\"signatures\":" + doc["signatures"].dump() + ",\"body\":" + env.body_jcs + "}",  // envelope keys unsorted
      replace("\"amount\":5700,\"chain\":\"msk-demo\"", "\"chain\":\"msk-demo\",\"amount\":5700"),  // body keys unsorted
      replace("Gate A", "Gate \\u0041"),                                 // an escape JCS would not write
      replace("Gate A", "Gate\\/A"),
  };
  for (const std::string& v : variants) {
    INFO(v);
    auto slow = canonical::strict(v);
    REQUIRE(slow.has_value());  // valid: the strict path reads it, to its canonical form
    CHECK(slow->jcs != v);
    CHECK_FALSE(decode_envelope_canonical(v).has_value());
  }
  // A string that needs escaping is canonical but left to the strict path.
  std::string quoted = replace("Gate A", "Gate \\\"A\\\"");
  REQUIRE(canonical::strict(quoted).has_value());
  CHECK(canonical::strict(quoted)->jcs == quoted);
  CHECK_FALSE(decode_envelope_canonical(quoted).has_value());
}

TEST_CASE("decode_envelope_canonical refuses what decode_envelope refuses") {
  OpFactory f;
  Envelope env = f.transfer(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 200);
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string t = env.jcs;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  std::string id = id_hex(env.body.id), key = hex_encode(env.signatures[0].key);
  std::vector<std::string> bad = {
      replace("\"amount\":200", "\"amount\":0"),                       // invalid_amount
      replace("\"amount\":200", "\"amount\":9007199254740992"),        // 2^53
      replace("\"amount\":200", "\"amount\":0200"),                    // not JSON
      replace("\"amount\":200", "\"amount\":-200"),
      replace("\"amount\":200", "\"amount\":\"200\""),
      replace("\"amount\":200", "\"amount\":200.0"),
      replace("\"amount\":200", "\"amount\":18446744073709551616"),    // beyond 64 bits
      replace("\"amount\":200,", ""),                                   // a required field missing
      replace("\"amount\":200,", "\"amount\":200,\"gate\":\"g\","),    // a field of another type
      replace("\"amount\":200,", "\"amount\":200,\"bogus\":1,"),       // unknown field
      replace("\"amount\":200,", "\"amount\":200,\"amount\":200,"),    // duplicate key
      replace(id, std::string(id).replace(0, 1, "A")),                  // uppercase hex
      replace(id, id.substr(2)),                                        // short id
      replace("\"msk-demo\"", "\"msk demo\""),                          // bad chain
      replace("\"transfer\"", "\"transfers\""),                         // unknown type
      replace("\"signatures\":[", "\"signatures\":[{\"key\":\"" + key + "\",\"sig\":\"" +
                                      hex_encode(env.signatures[0].sig) + "\"},"),  // a key signing twice
      replace("\"signatures\":[", "\"signatures\":[],\"x\":["),
      "{\"body\":" + env.body_jcs + ",\"signatures\":[]}",
      "{\"body\":" + env.body_jcs + "}",
      env.jcs.substr(0, env.jcs.size() - 1),
      env.jcs + "}",
      "",
  };
  for (const std::string& b : bad) {
    INFO(b);
    if (b == env.jcs) continue;
    CHECK_FALSE(decode_envelope_canonical(b).has_value());
  }
  // Five signatures: one more than kSignaturesMax.
  OpBody body = f.body(OpType::kIssue);
  body.to = make_id(3, 0xA3);
  body.amount = 1;
  std::vector<KeyPair> signers = {seed_key(0x41), seed_key(0x42), seed_key(0x43), seed_key(0x44), seed_key(0x45)};
  std::vector<const KeyPair*> four = {&signers[0], &signers[1], &signers[2], &signers[3]};
  Envelope max = sign_envelope(body, four);
  REQUIRE(decode_envelope_canonical(max.jcs).has_value());
  Json five = Json::parse(max.jcs);
  five["signatures"].push_back({{"key", hex_encode(signers[4].public_key)}, {"sig", std::string(128, '0')}});
  CHECK_FALSE(canonical::strict(jcs(five)).has_value());
  CHECK_FALSE(decode_envelope_canonical(jcs(five)).has_value());
}

TEST_CASE("decode_envelope_canonical agrees with decode_envelope on randomly edited envelopes") {
  std::mt19937_64 rng(20261129);
  size_t fast_accepted = 0, strict_canonical = 0;
  for (const Envelope& env : canonical::plain_envelopes()) {
    for (int i = 0; i < 3000; ++i) {
      std::string m = canonical::mutate(env.jcs, rng);
      if (rng() % 3 == 0) m = canonical::mutate(m, rng);
      auto fast = decode_envelope_canonical(m);
      auto slow = canonical::strict(m);
      bool canonical_plain = slow && slow->jcs == m && m.find('\\') == std::string::npos;
      strict_canonical += canonical_plain;
      if (fast) {
        ++fast_accepted;
        INFO(hex_encode(m));
        REQUIRE(slow.has_value());
        REQUIRE(slow->jcs == m);
        REQUIRE(canonical::describe(*fast) == canonical::describe(*slow));
      } else if (canonical_plain) {
        INFO(hex_encode(m));
        FAIL("canonical text without escapes that the fast path refused");
      }
    }
  }
  // Edits inside hex digits, numbers and text keep many envelopes valid.
  CHECK(fast_accepted > 1000);
  CHECK(fast_accepted == strict_canonical);
}

TEST_CASE("decode_journal_line_canonical reads exported lines exactly as the strict path does") {
  uint64_t time = 1'795'900'000'123;
  uint64_t index = 0;
  for (const Envelope& env : canonical::plain_envelopes()) {
    for (uint64_t i : {index, index * 1000 + 7}) {
      std::string bytes = entry_bytes(i, time, env.jcs);
      Hash leaf = merkle::leaf_hash(bytes);
      std::string line = journal_line(bytes, leaf);
      INFO(line);
      auto fast = decode_journal_line_canonical(line);
      REQUIRE(fast.has_value());
      CHECK(fast->index == i);
      CHECK(fast->time == time);
      CHECK(fast->leaf_hash == leaf);
      CHECK(canonical::describe(fast->env) == canonical::describe(env));
    }
    ++index;
    time += 999;
  }
  // The design vector entry.
  Json v = design_vectors().at("journal_entry");
  std::string bytes = v.at("jcs").get<std::string>();
  std::string line = journal_line(bytes, merkle::leaf_hash(bytes));
  auto fast = decode_journal_line_canonical(line);
  REQUIRE(fast.has_value());
  CHECK(to_hex(fast->leaf_hash) == v.at("leaf_hash").get<std::string>());
  CHECK(fast->index == v.at("entry").at("index").get<uint64_t>());
  CHECK(fast->time == v.at("entry").at("time").get<uint64_t>());
  CHECK(fast->env.jcs == jcs(v.at("entry").at("op")));
}

TEST_CASE("entry_leaf_hash is the leaf hash of the entry's canonical bytes") {
  for (const Envelope& env : one_of_every_type())
    for (uint64_t index : {uint64_t{0}, uint64_t{9}, uint64_t{10}, uint64_t{123456789}, UINT64_MAX})
      for (uint64_t time : {uint64_t{0}, uint64_t{1}, uint64_t{1'795'900'000'123}, kTimeMax, UINT64_MAX})
        CHECK(entry_leaf_hash(index, time, env.jcs) == merkle::leaf_hash(entry_bytes(index, time, env.jcs)));
}

TEST_CASE("decode_journal_line_canonical refuses lines that are not exactly what nodes export") {
  OpFactory f;
  Envelope env = f.fare(make_id(1, 0xA1), seed_key(0x21), make_id(2, 0xA2), 5700, "Gate A");
  std::string bytes = entry_bytes(42, 1'800'000'000'000, env.jcs);
  Hash leaf = merkle::leaf_hash(bytes);
  std::string line = journal_line(bytes, leaf);
  REQUIRE(decode_journal_line_canonical(line).has_value());
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string t = line;
    auto at = t.find(from);
    REQUIRE(at != std::string::npos);
    return t.replace(at, from.size(), to);
  };
  std::string hex = to_hex(leaf);
  Hash other = leaf;
  other[31] ^= 1;
  std::string upper = hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::vector<std::string> bad = {
      bytes,                                                // no leaf_hash (valid for the strict path)
      replace(hex, to_hex(other)),                          // wrong leaf hash
      replace(hex, upper),                                  // leaf hash in uppercase
      replace("\"index\":42", "\"index\":042"),
      replace("\"index\":42", "\"index\":-42"),
      replace("\"index\":42", "\"index\":\"42\""),
      replace("\"index\":42", "\"index\":18446744073709551616"),
      replace(",\"time\":1800000000000}", ",\"time\":01800000000000}"),
      replace(",\"time\":1800000000000}", ",\"time\":1800000000000 }"),
      replace(",\"time\":1800000000000}", ",\"time\":1800000000000,\"x\":1}"),
      replace(",\"time\":1800000000000}", "}"),
      replace("\"amount\":5700", "\"amount\":5701"),       // content no longer matches the leaf hash
      replace("\"Gate A\"", "\"Gate \\u0041\""),
      Json::parse(line).dump(2),
      line + "\n",
      " " + line,
      line.substr(0, line.size() - 1),
      "",
  };
  for (const std::string& b : bad) {
    INFO(b);
    CHECK_FALSE(decode_journal_line_canonical(b).has_value());
  }
}

TEST_CASE("decode_journal_line_canonical agrees with the strict path on randomly edited lines") {
  // Edits of the line itself (which break its leaf hash), and edits of the
  // entry re-exported with the leaf hash of the edited bytes.
  std::mt19937_64 rng(5);
  size_t accepted = 0, strict_canonical = 0;
  uint64_t index = 3;
  for (const Envelope& env : canonical::plain_envelopes()) {
    std::string bytes = entry_bytes(index, 1'800'000'000'000 + index, env.jcs);
    ++index;
    std::string line = journal_line(bytes, merkle::leaf_hash(bytes));
    for (int i = 0; i < 3000; ++i) {
      std::string m;
      if (i % 2 == 0) {
        m = canonical::mutate(line, rng);
      } else {
        std::string b = canonical::mutate(bytes, rng);
        if (b.find(",\"op\":") == std::string::npos) continue;
        m = journal_line(b, merkle::leaf_hash(b));
      }
      INFO(hex_encode(m));
      // The strict reading: exactly {index, leaf_hash, op, time} with a valid
      // op, and the line is the export of those with the right leaf hash.
      std::optional<CanonicalLine> strict_line;
      auto doc = parse_json_strict(m);
      if (doc && doc->is_object() && doc->size() == 4 && doc->contains("index") && doc->contains("time") &&
          doc->contains("leaf_hash") && doc->contains("op") && doc->at("index").is_number_unsigned() &&
          doc->at("time").is_number_unsigned()) {
        Rejection rej;
        auto op = decode_envelope_json(doc->at("op"), &rej);
        if (op) {
          CanonicalLine c;
          c.index = doc->at("index").get<uint64_t>();
          c.time = doc->at("time").get<uint64_t>();
          std::string b = entry_bytes(c.index, c.time, op->jcs);
          c.leaf_hash = merkle::leaf_hash(b);
          c.env = std::move(*op);
          if (journal_line(b, c.leaf_hash) == m) strict_line = std::move(c);
        }
      }
      bool plain = strict_line && m.find('\\') == std::string::npos;
      strict_canonical += plain;
      auto fast = decode_journal_line_canonical(m);
      if (fast) {
        ++accepted;
        REQUIRE(strict_line.has_value());
        CHECK(fast->index == strict_line->index);
        CHECK(fast->time == strict_line->time);
        CHECK(fast->leaf_hash == strict_line->leaf_hash);
        CHECK(canonical::describe(fast->env) == canonical::describe(strict_line->env));
      } else if (plain) {
        FAIL("an exported line without escapes that the fast path refused");
      }
    }
  }
  CHECK(accepted > 1000);
  CHECK(accepted == strict_canonical);
}

}  // namespace cl::test
