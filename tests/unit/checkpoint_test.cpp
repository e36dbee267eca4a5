// Signed checkpoints (DESIGN §5, §6): the known-answer checkpoint signature,
// the strict JSON codec, and what an auditor requires of the signatures
// (genesis chain, genesis node keys, one per node, a majority of nodes).
#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "common/hex.h"
#include "common/sha256.h"
#include "ledger/checkpoint.h"
#include "ledger/genesis.h"
#include "tests/unit/fixture.h"
#include "wallet/jcs.h"
#include "wallet/keys.h"

namespace cl::test {
namespace {


// The design vector's tree head (no signatures).
Checkpoint vector_checkpoint(const Json& v) {
  const Json& head = v.at("checkpoint");
  Checkpoint cp;
  cp.chain = head.at("chain").get<std::string>();
  cp.tree_size = head.at("tree_size").get<uint64_t>();
  auto root = hex_decode_array<32>(head.at("root").get<std::string>());
  REQUIRE(root.has_value());
  cp.root = *root;
  cp.time = head.at("time").get<uint64_t>();
  return cp;
}

// Node keys of the 3-node test chain: node 1 is the fixture's (and the
// design vector's) node key 0x04; nodes 2 and 3 have seeds 0x41 and 0x42.
const KeyPair& node_key(uint64_t id) {
  static const std::array<KeyPair, 3> keys = {authorities().node, seed_key(0x41), seed_key(0x42)};
  REQUIRE(id >= 1);
  REQUIRE(id <= keys.size());
  return keys[id - 1];
}

// A key that belongs to no genesis node.
const KeyPair& stranger_key() {
  static const KeyPair k = seed_key(0x50);
  return k;
}

// A genesis for "chain" whose nodes are ids 1..n with node_key(id) (n ≤ 3),
// or with extra seeded keys for n > 3.
Genesis genesis_with_nodes(size_t n, const std::string& chain = "msk-demo") {
  const auto& a = authorities();
  std::string nodes;
  for (size_t id = 1; id <= n; ++id) {
    const PublicKey key = id <= 3 ? node_key(id).public_key : seed_key(static_cast<uint8_t>(0x60 + id)).public_key;
    if (!nodes.empty()) nodes += ",";
    nodes += "{\"id\":" + std::to_string(id) + ",\"key\":\"" + hex_encode(key) + "\"}";
  }
  std::string text = "{\"chain\":\"" + chain + "\",\"issuer\":\"" + hex_encode(a.issuer.public_key) +
                     "\",\"registrars\":[\"" + hex_encode(a.registrar.public_key) + "\"],\"nodes\":[" + nodes + "]}";
  auto g = Genesis::parse(text);
  REQUIRE_MESSAGE(g.is_ok(), g.status().to_string());
  REQUIRE(g->nodes.size() == n);
  return *g;
}

Genesis three_node_genesis(const std::string& chain = "msk-demo") { return genesis_with_nodes(3, chain); }

// A tree head on the test chain (a real root is not needed to sign).
Checkpoint test_head(const std::string& chain = "msk-demo") {
  Checkpoint cp;
  cp.chain = chain;
  cp.tree_size = 42;
  cp.root = sha256("some root");
  cp.time = 1'700'000'123'456;
  return cp;
}

// "cp" with signatures by the given genesis nodes, each with its own key.
Checkpoint signed_by(Checkpoint cp, const std::vector<uint64_t>& nodes) {
  cp.signatures.clear();
  for (uint64_t id : nodes) cp.signatures.push_back(sign_checkpoint(cp, id, node_key(id)));
  return cp;
}

SignatureBytes flip_bit(SignatureBytes s, size_t bit) {
  s[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  return s;
}

// Runs check_checkpoint_signatures with a sentinel in *signers.
struct CheckOutcome {
  Status status;
  size_t signers = 0;
};
constexpr size_t kSentinel = 9999;
CheckOutcome check(const Checkpoint& cp, const Genesis& g) {
  CheckOutcome out;
  out.signers = kSentinel;
  out.status = check_checkpoint_signatures(cp, g, &out.signers);
  return out;
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// A valid checkpoint document (JSON as parsed from bytes: non-negative
// integers are unsigned) with two signatures.
Json valid_document() {
  Json j = checkpoint_to_json(signed_by(test_head(), {1, 2}));
  auto parsed = parse_json_strict(jcs(j));
  REQUIRE_MESSAGE(parsed.is_ok(), parsed.status().to_string());
  return *parsed;
}

// checkpoint_from_json(j) must refuse with "invalid" and a message naming "field".
void expect_refused(const Json& j, const std::string& field) {
  CAPTURE(j.dump());
  CAPTURE(field);
  auto cp = checkpoint_from_json(j);
  REQUIRE_FALSE(cp.is_ok());
  CHECK(cp.status().code() == "invalid");
  CAPTURE(cp.status().message());
  CHECK(contains(cp.status().message(), field));
}

void check_same(const Checkpoint& a, const Checkpoint& b) {
  CHECK(a.same_head(b));
  CHECK(a.chain == b.chain);
  CHECK(a.tree_size == b.tree_size);
  CHECK(a.root == b.root);
  CHECK(a.time == b.time);
  REQUIRE(a.signatures.size() == b.signatures.size());
  for (size_t i = 0; i < a.signatures.size(); ++i) {
    CAPTURE(i);
    CHECK(a.signatures[i].node == b.signatures[i].node);
    CHECK(a.signatures[i].key == b.signatures[i].key);
    CHECK(a.signatures[i].sig == b.signatures[i].sig);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Known answer (tests/vectors/design-vectors.json "checkpoint")
// ---------------------------------------------------------------------------

TEST_CASE("checkpoint_message and sign_checkpoint reproduce the design vector byte for byte") {
  const Json v = design_vectors().at("checkpoint");
  const Checkpoint cp = vector_checkpoint(v);
  const KeyPair node = key_from_secret_hex(v.at("node_key").at("secret").get<std::string>());
  REQUIRE(hex_encode(node.public_key) == v.at("node_key").at("public").get<std::string>());
  CHECK(node.public_key == node_key(1).public_key);  // the vector's node key is node 1 of the test chain

  CHECK(kCheckpointPrefix == "cityledger/checkpoint/v1\n");
  const std::string message = checkpoint_message(cp);
  CHECK(hex_encode(message) == v.at("signed_message_hex").get<std::string>());
  CHECK(message == std::string(kCheckpointPrefix) + jcs(v.at("checkpoint")));

  const CheckpointSignature s = sign_checkpoint(cp, 1, node);
  CHECK(s.node == 1);
  CHECK(s.key == node.public_key);
  CHECK(hex_encode(s.sig) == v.at("signature").get<std::string>());
  CHECK(signature_valid(cp, s));

  // The signature in the vector, decoded, verifies and checks against a genesis holding node 1.
  auto vector_sig = hex_decode_array<64>(v.at("signature").get<std::string>());
  REQUIRE(vector_sig.has_value());
  CHECK(signature_valid(cp, CheckpointSignature{1, node.public_key, *vector_sig}));
  Checkpoint with_sig = cp;
  with_sig.signatures.push_back(CheckpointSignature{1, node.public_key, *vector_sig});
  size_t signers = kSentinel;
  CHECK(check_checkpoint_signatures(with_sig, test_genesis(), &signers).is_ok());
  CHECK(signers == 1);
}

TEST_CASE("the vector checkpoint in §6 JSON parses to the vector head and its signature") {
  const Json v = design_vectors().at("checkpoint");
  Json doc = v.at("checkpoint");
  doc["signatures"] = Json::array({Json{{"node", 1},
                                        {"key", v.at("node_key").at("public").get<std::string>()},
                                        {"sig", v.at("signature").get<std::string>()}}});
  auto parsed = parse_json_strict(doc.dump());
  REQUIRE(parsed.is_ok());
  auto cp = checkpoint_from_json(*parsed);
  REQUIRE_MESSAGE(cp.is_ok(), cp.status().to_string());
  CHECK(cp->same_head(vector_checkpoint(v)));
  REQUIRE(cp->signatures.size() == 1);
  CHECK(hex_encode(cp->signatures[0].sig) == v.at("signature").get<std::string>());
  CHECK(signature_valid(*cp, cp->signatures[0]));
  CHECK(jcs(checkpoint_to_json(*cp)) == jcs(*parsed));
}

TEST_CASE("the signed message covers every head field and nothing else") {
  const Checkpoint base = test_head();
  const CheckpointSignature s = sign_checkpoint(base, 1, node_key(1));
  REQUIRE(signature_valid(base, s));

  // Signatures are not part of the message.
  Checkpoint with_sigs = signed_by(base, {1, 2, 3});
  CHECK(checkpoint_message(with_sigs) == checkpoint_message(base));

  Checkpoint chain = base;
  chain.chain = "msk-demo2";
  Checkpoint size = base;
  size.tree_size += 1;
  Checkpoint root = base;
  root.root[31] ^= 1;
  Checkpoint time = base;
  time.time += 1;
  for (const Checkpoint* other : {&chain, &size, &root, &time}) {
    CHECK(checkpoint_message(*other) != checkpoint_message(base));
    CHECK_FALSE(signature_valid(*other, s));
  }
  // A signature does not verify under another key.
  CHECK_FALSE(signature_valid(base, CheckpointSignature{1, node_key(2).public_key, s.sig}));
}

// ---------------------------------------------------------------------------
// JSON codec
// ---------------------------------------------------------------------------

TEST_CASE("checkpoint_to_json emits the §6 shape") {
  const Checkpoint cp = signed_by(test_head(), {1, 3});
  const Json j = checkpoint_to_json(cp);
  REQUIRE(j.is_object());
  CHECK(j.size() == 5);
  CHECK(j.at("chain") == "msk-demo");
  CHECK(j.at("tree_size") == 42u);
  CHECK(j.at("root") == to_hex(cp.root));
  CHECK(j.at("time") == 1'700'000'123'456u);
  REQUIRE(j.at("signatures").is_array());
  REQUIRE(j.at("signatures").size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    const Json& s = j.at("signatures")[i];
    CHECK(s.size() == 3);
    CHECK(s.at("node") == cp.signatures[i].node);
    CHECK(s.at("key") == hex_encode(cp.signatures[i].key));
    CHECK(s.at("sig") == hex_encode(cp.signatures[i].sig));
    CHECK(s.at("key").get<std::string>().size() == 64);
    CHECK(s.at("sig").get<std::string>().size() == 128);
  }
  // Unsigned checkpoints still carry an (empty) signatures array.
  const Json bare = checkpoint_to_json(test_head());
  REQUIRE(bare.contains("signatures"));
  CHECK(bare.at("signatures") == Json::array());
}

TEST_CASE("checkpoint_to_json -> bytes -> checkpoint_from_json round-trips") {
  std::vector<Checkpoint> cases;
  cases.push_back(test_head());                      // no signatures
  cases.push_back(signed_by(test_head(), {1, 2, 3}));  // three
  Checkpoint empty_tree;
  empty_tree.chain = "msk-demo";
  empty_tree.root = sha256("");
  cases.push_back(signed_by(empty_tree, {2}));  // tree_size 0, time 0
  Checkpoint extreme = test_head();
  extreme.tree_size = std::numeric_limits<uint64_t>::max();
  extreme.time = std::numeric_limits<uint64_t>::max();
  extreme.root.fill(0xff);
  extreme = signed_by(extreme, {3, 1});
  extreme.signatures[0].node = std::numeric_limits<uint64_t>::max();
  cases.push_back(extreme);
  Checkpoint escaped = test_head("chain \"with\" quotes\\and\ncontrol");
  cases.push_back(signed_by(escaped, {1}));

  for (const Checkpoint& cp : cases) {
    CAPTURE(cp.chain);
    CAPTURE(cp.tree_size);
    const Json j = checkpoint_to_json(cp);
    // Directly from the Json value …
    auto direct = checkpoint_from_json(j);
    REQUIRE_MESSAGE(direct.is_ok(), direct.status().to_string());
    check_same(*direct, cp);
    // … and through canonical bytes and the strict parser, as a client would.
    const std::string bytes = jcs(j);
    auto parsed = parse_json_strict(bytes);
    REQUIRE_MESSAGE(parsed.is_ok(), parsed.status().to_string());
    auto back = checkpoint_from_json(*parsed);
    REQUIRE_MESSAGE(back.is_ok(), back.status().to_string());
    check_same(*back, cp);
    CHECK(jcs(checkpoint_to_json(*back)) == bytes);
    for (const auto& s : back->signatures) CHECK(signature_valid(*back, s));
  }
}

TEST_CASE("checkpoint_from_json refuses a non-object and unknown fields, naming them") {
  auto not_object = [](const Json& j) {
    auto cp = checkpoint_from_json(j);
    REQUIRE_FALSE(cp.is_ok());
    CHECK(cp.status().code() == "invalid");
    CHECK(contains(cp.status().message(), "object"));
  };
  not_object(Json::array());
  not_object(Json("checkpoint"));
  not_object(Json(nullptr));
  not_object(Json(5u));

  for (const char* name : {"extra", "Chain", "signature", "tree size", ""}) {
    Json j = valid_document();
    j[name] = 1u;
    expect_refused(j, std::string("\"") + name + "\"");
  }
  // Unknown fields are refused even when every known field is fine and the
  // unknown one sorts first or last.
  Json first = valid_document();
  first["aaa"] = "x";
  expect_refused(first, "\"aaa\"");
  Json last = valid_document();
  last["zzz"] = Json::object();
  expect_refused(last, "\"zzz\"");
}

TEST_CASE("checkpoint_from_json refuses a missing field, naming it") {
  REQUIRE(checkpoint_from_json(valid_document()).is_ok());
  for (const char* name : {"chain", "tree_size", "root", "time", "signatures"}) {
    Json j = valid_document();
    REQUIRE(j.erase(name) == 1);
    expect_refused(j, name);
  }
  expect_refused(Json::object(), "chain");
}

TEST_CASE("checkpoint_from_json refuses wrong types, naming the field") {
  const std::vector<Json> not_string = {Json(5u), Json(nullptr), Json(true), Json::array(), Json::object()};
  const std::vector<Json> not_unsigned = {Json("8"), Json(-1), Json(1.5), Json(true), Json(nullptr),
                                          Json::array(), Json::object()};
  for (const Json& bad : not_string) {
    Json j = valid_document();
    j["chain"] = bad;
    expect_refused(j, "chain");
  }
  for (const char* name : {"tree_size", "time"}) {
    for (const Json& bad : not_unsigned) {
      Json j = valid_document();
      j[name] = bad;
      expect_refused(j, name);
    }
  }
  for (const Json& bad : not_string) {
    Json j = valid_document();
    j["root"] = bad;
    expect_refused(j, "root");
  }
  for (const Json& bad : {Json(nullptr), Json("[]"), Json(0u), Json::object()}) {
    Json j = valid_document();
    j["signatures"] = bad;
    expect_refused(j, "signatures");
  }
  // Inside a signature: node must be an unsigned integer, key and sig strings.
  for (const Json& bad : not_unsigned) {
    Json j = valid_document();
    j["signatures"][1]["node"] = bad;
    expect_refused(j, "signatures[1]");
  }
  for (const char* name : {"key", "sig"}) {
    for (const Json& bad : not_string) {
      Json j = valid_document();
      j["signatures"][0][name] = bad;
      expect_refused(j, std::string("signatures[0].") + name);
    }
  }
  // A signature entry that is not an object.
  for (const Json& bad : {Json("sig"), Json(1u), Json(nullptr), Json::array({1u, "key", "sig"})}) {
    Json j = valid_document();
    j["signatures"][1] = bad;
    expect_refused(j, "signatures[1]");
  }
}

TEST_CASE("checkpoint_from_json refuses hex of the wrong length or spelling in root, key and sig") {
  const Json doc = valid_document();
  const std::string root = doc.at("root");
  const std::string key = doc.at("signatures")[0].at("key");
  const std::string sig = doc.at("signatures")[0].at("sig");

  // Variants of a valid N-character hex string that must all be refused.
  auto bad_spellings = [](const std::string& good) {
    std::string upper = good;
    std::transform(upper.begin(), upper.end(), upper.begin(), [](char c) { return c == 'a' ? 'A' : c; });
    if (upper == good) upper[0] = 'F';
    std::string non_hex = good;
    non_hex[good.size() / 2] = 'g';
    std::string spaced = good;
    spaced[0] = ' ';
    return std::vector<std::string>{
        "",                               // empty
        good.substr(0, good.size() - 2),  // one byte short
        good.substr(0, good.size() - 1),  // odd length
        good + "0",                       // odd, one digit long
        good + "00",                      // one byte long
        good + good,                      // double
        upper,                            // uppercase is refused (one spelling only)
        non_hex,                          // not a hex digit
        spaced,                           // whitespace
        "0x" + good.substr(2),            // prefix
    };
  };

  for (const std::string& bad : bad_spellings(root)) {
    CAPTURE(bad);
    Json j = doc;
    j["root"] = bad;
    expect_refused(j, "root");
  }
  for (const std::string& bad : bad_spellings(key)) {
    CAPTURE(bad);
    Json j = doc;
    j["signatures"][0]["key"] = bad;
    expect_refused(j, "signatures[0].key");
  }
  for (const std::string& bad : bad_spellings(sig)) {
    CAPTURE(bad);
    Json j = doc;
    j["signatures"][0]["sig"] = bad;
    expect_refused(j, "signatures[0].sig");
  }
  // A key- or root-length value where a sig belongs, and vice versa.
  Json short_sig = doc;
  short_sig["signatures"][1]["sig"] = key;
  expect_refused(short_sig, "signatures[1].sig");
  Json long_key = doc;
  long_key["signatures"][1]["key"] = sig;
  expect_refused(long_key, "signatures[1].key");
  Json long_root = doc;
  long_root["root"] = sig;
  expect_refused(long_root, "root");
}

TEST_CASE("checkpoint_from_json refuses signature objects with extra, missing or renamed fields") {
  const Json doc = valid_document();
  // Extra field (with the three right ones present).
  for (const char* extra : {"extra", "Node", "signature", "time"}) {
    Json j = doc;
    j["signatures"][0][extra] = 1u;
    expect_refused(j, "signatures[0]");
  }
  // An extra field on the second entry names that entry.
  Json second = doc;
  second["signatures"][1]["zzz"] = "x";
  expect_refused(second, "signatures[1]");
  // Missing fields.
  for (const char* name : {"node", "key", "sig"}) {
    Json j = doc;
    REQUIRE(j["signatures"][0].erase(name) == 1);
    expect_refused(j, "signatures[0]");
  }
  Json empty = doc;
  empty["signatures"][0] = Json::object();
  expect_refused(empty, "signatures[0]");
  // A field renamed: still three fields, one of them unknown.
  for (const char* name : {"node", "key", "sig"}) {
    Json j = doc;
    Json value = j["signatures"][0][name];
    j["signatures"][0].erase(name);
    j["signatures"][0]["other"] = value;
    expect_refused(j, "signatures[0]");
  }
  // An empty signatures array is well-formed (the signature check decides whether it is enough).
  Json none = doc;
  none["signatures"] = Json::array();
  auto cp = checkpoint_from_json(none);
  REQUIRE(cp.is_ok());
  CHECK(cp->signatures.empty());
}

// ---------------------------------------------------------------------------
// check_checkpoint_signatures on a 3-node genesis
// ---------------------------------------------------------------------------

TEST_CASE("three or any two of three valid node signatures pass") {
  const Genesis g = three_node_genesis();
  const Checkpoint head = test_head();

  auto all = check(signed_by(head, {1, 2, 3}), g);
  CHECK_MESSAGE(all.status.is_ok(), all.status.to_string());
  CHECK(all.signers == 3);

  for (const std::vector<uint64_t>& pair :
       std::vector<std::vector<uint64_t>>{{1, 2}, {1, 3}, {2, 3}, {2, 1}, {3, 1}, {3, 2}}) {
    CAPTURE(pair[0]);
    CAPTURE(pair[1]);
    auto r = check(signed_by(head, pair), g);
    CHECK_MESSAGE(r.status.is_ok(), r.status.to_string());
    CHECK(r.signers == 2);
  }
  auto reversed = check(signed_by(head, {3, 2, 1}), g);
  CHECK(reversed.status.is_ok());
  CHECK(reversed.signers == 3);

  // signers is optional.
  CHECK(check_checkpoint_signatures(signed_by(head, {1, 2}), g).is_ok());
  CHECK(check_checkpoint_signatures(signed_by(head, {1, 2}), g, nullptr).is_ok());
}

TEST_CASE("a checkpoint that passes survives the JSON round trip and still passes") {
  const Genesis g = three_node_genesis();
  const Checkpoint cp = signed_by(test_head(), {3, 1});
  auto parsed = parse_json_strict(jcs(checkpoint_to_json(cp)));
  REQUIRE(parsed.is_ok());
  auto back = checkpoint_from_json(*parsed);
  REQUIRE(back.is_ok());
  auto r = check(*back, g);
  CHECK_MESSAGE(r.status.is_ok(), r.status.to_string());
  CHECK(r.signers == 2);
}

TEST_CASE("fewer than a majority of node signatures fails with \"majority\"") {
  const Genesis g = three_node_genesis();
  for (uint64_t id : {1u, 2u, 3u}) {
    CAPTURE(id);
    auto r = check(signed_by(test_head(), {id}), g);
    REQUIRE_FALSE(r.status.is_ok());
    CHECK(r.status.code() == "invalid");
    CHECK(contains(r.status.message(), "majority"));
    CHECK(contains(r.status.message(), "1 of 3"));
    CHECK(r.signers == 1);
  }
  auto none = check(test_head(), g);
  REQUIRE_FALSE(none.status.is_ok());
  CHECK(contains(none.status.message(), "majority"));
  CHECK(contains(none.status.message(), "0 of 3"));
  CHECK(none.signers == 0);
}

TEST_CASE("majority means more than half of the genesis nodes") {
  const Checkpoint head = test_head();
  // One node: its signature alone is a majority.
  const Genesis one = test_genesis();
  REQUIRE(one.nodes.size() == 1);
  CHECK(check(signed_by(head, {1}), one).status.is_ok());
  CHECK_FALSE(check(head, one).status.is_ok());
  // Two nodes: both are needed (1 of 2 is half, not more).
  const Genesis two = genesis_with_nodes(2);
  auto half = check(signed_by(head, {2}), two);
  CHECK_FALSE(half.status.is_ok());
  CHECK(contains(half.status.message(), "majority"));
  CHECK(half.signers == 1);
  CHECK(check(signed_by(head, {1, 2}), two).status.is_ok());
  // Four nodes: 2 of 4 fails, 3 of 4 passes (node 4's key is not node_key(); use nodes 1..3).
  const Genesis four = genesis_with_nodes(4);
  auto two_of_four = check(signed_by(head, {1, 3}), four);
  CHECK_FALSE(two_of_four.status.is_ok());
  CHECK(contains(two_of_four.status.message(), "2 of 4"));
  CHECK(two_of_four.signers == 2);
  auto three_of_four = check(signed_by(head, {1, 2, 3}), four);
  CHECK(three_of_four.status.is_ok());
  CHECK(three_of_four.signers == 3);
}

TEST_CASE("a signature by a key not in genesis fails with \"unknown key\", even beside two valid ones") {
  const Genesis g = three_node_genesis();
  const Checkpoint head = test_head();
  const KeyPair& stranger = stranger_key();

  // The stranger claims to be genesis node 3, or a node id genesis does not have.
  for (uint64_t claimed : {3u, 4u, 0u, 99u}) {
    // Before, between and after two valid signatures (nodes 1 and 2).
    for (size_t position = 0; position <= 2; ++position) {
      CAPTURE(claimed);
      CAPTURE(position);
      Checkpoint cp = signed_by(head, {1, 2});
      cp.signatures.insert(cp.signatures.begin() + static_cast<std::ptrdiff_t>(position),
                           sign_checkpoint(head, claimed, stranger));
      REQUIRE(signature_valid(cp, cp.signatures[position]));  // a good signature, by the wrong key
      auto r = check(cp, g);
      REQUIRE_FALSE(r.status.is_ok());
      CHECK(r.status.code() == "invalid");
      CHECK(contains(r.status.message(), "unknown key"));
      CHECK(contains(r.status.message(), hex_encode(stranger.public_key)));
      CHECK(r.signers != kSentinel);
      CHECK(r.signers <= 2);
    }
  }
  // Three valid plus a stranger still fails.
  Checkpoint all_plus = signed_by(head, {1, 2, 3});
  all_plus.signatures.push_back(sign_checkpoint(head, 4, stranger));
  auto r = check(all_plus, g);
  CHECK_FALSE(r.status.is_ok());
  CHECK(contains(r.status.message(), "unknown key"));
}

TEST_CASE("a node id paired with another node's key fails") {
  const Genesis g = three_node_genesis();
  const Checkpoint head = test_head();
  for (uint64_t id : {1u, 2u, 3u}) {
    for (uint64_t owner : {1u, 2u, 3u}) {
      if (id == owner) continue;
      CAPTURE(id);
      CAPTURE(owner);
      // Node "owner" signs validly with its own key but claims to be node "id";
      // the other two nodes sign correctly.
      Checkpoint cp;
      cp = head;
      for (uint64_t other : {1u, 2u, 3u})
        if (other != id) cp.signatures.push_back(sign_checkpoint(head, other, node_key(other)));
      cp.signatures.push_back(sign_checkpoint(head, id, node_key(owner)));
      REQUIRE(signature_valid(cp, cp.signatures.back()));
      auto r = check(cp, g);
      REQUIRE_FALSE(r.status.is_ok());
      CHECK(r.status.code() == "invalid");
      CHECK(contains(r.status.message(), "unknown key"));
      CHECK(contains(r.status.message(), "node " + std::to_string(id)));
      CHECK(contains(r.status.message(), hex_encode(node_key(owner).public_key)));
      CHECK(r.signers != kSentinel);
      CHECK(r.signers <= 2);
    }
  }
  // The right key under the right id passes (sanity for the loop above).
  CHECK(check(signed_by(head, {1, 2, 3}), g).status.is_ok());
}

TEST_CASE("a node that signs twice fails, even with a majority otherwise") {
  const Genesis g = three_node_genesis();
  const Checkpoint head = test_head();
  for (uint64_t dup : {1u, 2u, 3u}) {
    CAPTURE(dup);
    // All three plus a repeat of one (the identical signature).
    Checkpoint cp = signed_by(head, {1, 2, 3});
    cp.signatures.push_back(sign_checkpoint(head, dup, node_key(dup)));
    auto r = check(cp, g);
    REQUIRE_FALSE(r.status.is_ok());
    CHECK(r.status.code() == "invalid");
    CHECK(contains(r.status.message(), "twice"));
    CHECK(contains(r.status.message(), "node " + std::to_string(dup)));
    CHECK(r.signers != kSentinel);
    CHECK(r.signers <= 3);
  }
  // One node's signature counted twice must not make up a majority.
  auto r = check(signed_by(head, {2, 2}), g);
  CHECK_FALSE(r.status.is_ok());
  CHECK(r.signers <= 1);
  auto three = check(signed_by(head, {1, 1, 1}), g);
  CHECK_FALSE(three.status.is_ok());
  CHECK(three.signers <= 1);
}

TEST_CASE("a flipped bit in any signature fails") {
  const Genesis g = three_node_genesis();
  const Checkpoint good = signed_by(test_head(), {1, 2, 3});
  REQUIRE(check(good, g).status.is_ok());
  for (size_t which = 0; which < 3; ++which) {
    for (size_t bit : {size_t{0}, size_t{7}, size_t{100}, size_t{255}, size_t{256}, size_t{400}, size_t{511}}) {
      CAPTURE(which);
      CAPTURE(bit);
      Checkpoint cp = good;
      cp.signatures[which].sig = flip_bit(cp.signatures[which].sig, bit);
      CHECK_FALSE(signature_valid(cp, cp.signatures[which]));
      auto r = check(cp, g);
      REQUIRE_FALSE(r.status.is_ok());
      CHECK(r.status.code() == "invalid");
      CHECK(contains(r.status.message(), "does not verify"));
      CHECK(contains(r.status.message(), "node " + std::to_string(cp.signatures[which].node)));
      CHECK(r.signers != kSentinel);
      CHECK(r.signers <= 2);
    }
  }
  // A valid signature over a different head (here, the next tree size) does not verify either.
  Checkpoint stale = good;
  stale.tree_size += 1;
  stale.signatures[2] = sign_checkpoint(stale, 3, node_key(3));
  auto r = check(stale, g);
  CHECK_FALSE(r.status.is_ok());
  CHECK(contains(r.status.message(), "does not verify"));
}

TEST_CASE("a checkpoint for another chain fails, however well signed") {
  const Genesis g = three_node_genesis("msk-demo");
  // Signed by all three genesis node keys, but for another chain.
  auto other = check(signed_by(test_head("spb-demo"), {1, 2, 3}), g);
  REQUIRE_FALSE(other.status.is_ok());
  CHECK(other.status.code() == "invalid");
  CHECK(contains(other.status.message(), "chain"));
  CHECK(contains(other.status.message(), "spb-demo"));
  CHECK(contains(other.status.message(), "msk-demo"));
  CHECK(other.signers == 0);
  // And the other way round: a genuine msk-demo checkpoint checked against spb-demo's genesis.
  auto swapped = check(signed_by(test_head("msk-demo"), {1, 2, 3}), three_node_genesis("spb-demo"));
  CHECK_FALSE(swapped.status.is_ok());
  CHECK(contains(swapped.status.message(), "chain"));
  CHECK(swapped.signers == 0);
  // Chain ids compare exactly (no case folding or prefix match).
  CHECK_FALSE(check(signed_by(test_head("msk-demo2"), {1, 2, 3}), g).status.is_ok());
  CHECK_FALSE(check(signed_by(test_head("msk-dem"), {1, 2, 3}), g).status.is_ok());
}

}  // namespace cl::test
