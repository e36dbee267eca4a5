// Wallet operations (DESIGN §4): the typed op body, the signed envelope,
// strict decoding of envelopes from outside, signing and verification.
//
// Decoding is total: any byte string yields either an Envelope whose every
// field is typed and range-checked, or a Rejection (malformed,
// invalid_amount) whose detail names the offending field.  Nothing throws.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/sha256.h"
#include "wallet/codes.h"
#include "wallet/jcs.h"
#include "wallet/keys.h"

namespace cl {

using Id128 = std::array<uint8_t, 16>;
using WalletId = Id128;
using OpId = Id128;

// Amounts and times: 0 ≤ value ≤ 2^53−1 so every JSON client reads them exactly.
constexpr uint64_t kAmountMax = (uint64_t{1} << 53) - 1;
constexpr uint64_t kTimeMax = kAmountMax;
// Text fields (gate, program, reference, memo, reason): 1..128 Unicode characters.
constexpr size_t kTextCharsMax = 128;
// Chain ids: 1..64 ASCII letters, digits, '-', '_', '.'.
constexpr size_t kChainCharsMax = 64;
// Signatures on one envelope.
constexpr size_t kSignaturesMax = 4;

// The prefix of every signed op message (followed by JCS(body)).
constexpr std::string_view kOpSignaturePrefix = "cityledger/op/v1\n";

enum class OpType : uint8_t {
  kOpenWallet, kIssue, kRedeem, kTransfer, kFare, kPayout, kFreeze, kUnfreeze, kRotateKey,
};
enum class WalletKind : uint8_t { kPersonal, kMerchant, kTransit, kAgency };

std::string_view op_type_name(OpType t);
std::optional<OpType> op_type_from_name(std::string_view name);
std::string_view wallet_kind_name(WalletKind k);
std::optional<WalletKind> wallet_kind_from_name(std::string_view name);

// The typed body of an op.  Which fields are meaningful depends on type
// (DESIGN §4 table); the others stay default.
struct OpBody {
  std::string chain;
  OpId id{};
  OpType type = OpType::kTransfer;
  std::optional<uint64_t> expires_at;
  WalletId wallet{};  // open_wallet, freeze, unfreeze, rotate_key
  WalletId from{};    // redeem, transfer, fare, payout
  WalletId to{};      // issue, transfer, fare, payout
  PublicKey key{};    // open_wallet, rotate_key
  WalletKind kind = WalletKind::kPersonal;  // open_wallet
  std::optional<uint64_t> max_balance;       // open_wallet
  uint64_t amount = 0;                       // issue, redeem, transfer, fare, payout
  std::string gate;                          // fare
  uint64_t tap_at = 0;                       // fare
  std::string program, reference;            // payout
  std::optional<std::string> memo;           // transfer
  std::string reason;                        // freeze, unfreeze
};

struct Signer {
  PublicKey key{};
  SignatureBytes sig{};
};

// A decoded envelope with its canonical forms.
struct Envelope {
  OpBody body;
  std::vector<Signer> signatures;
  std::string body_jcs;  // JCS(body): what is signed, after kOpSignaturePrefix
  std::string jcs;       // JCS of the whole envelope: what the journal stores
  Hash body_hash{};      // SHA-256(body_jcs): identifies "the same body" for idempotency

  // True iff "key" is among the signers (signatures are checked separately).
  bool signed_by(const PublicKey& key) const;
};

// Decodes an envelope from JSON text.  See the header comment.  On failure
// returns nullopt and fills *rejection.
std::optional<Envelope> decode_envelope(std::string_view text, Rejection* rejection);

// Decodes an envelope from an already-parsed document.
std::optional<Envelope> decode_envelope_json(const Json& doc, Rejection* rejection);

// The fast path for envelopes that are already canonical (what journals
// hold): decodes "text" without a general JSON parse iff it is exactly the
// JCS of a valid envelope whose strings need no escaping.  Then the result
// equals decode_envelope(text)'s, and its jcs is "text".  Returns nullopt for
// anything else -- not canonical, not valid, or merely unusual (an escaped
// character) -- with no reason given: the caller falls back to
// decode_envelope, which decides and explains.
std::optional<Envelope> decode_envelope_canonical(std::string_view text);

// Decodes and validates an op body (as `cityledger sign` reads it).
std::optional<OpBody> decode_body(const Json& body, Rejection* rejection);

// The JSON form of "body" (only the fields its type has).
Json body_to_json(const OpBody& body);

// The message an op signature covers: kOpSignaturePrefix ‖ body_jcs.
std::string op_signing_message(std::string_view body_jcs);

// Builds a signed envelope of "body" with one signature per key, in order.
Envelope sign_envelope(const OpBody& body, const std::vector<const KeyPair*>& keys);

// Checks every signature on "env".  Returns kOk or kBadSignature.
Code verify_envelope(const Envelope& env);

// Hash for unordered containers keyed by ids (never iterated where order shows).
struct Id128Hash {
  size_t operator()(const Id128& id) const {
    uint64_t a = 0, b = 0;
    for (int i = 0; i < 8; ++i) {
      a = (a << 8) | id[i];
      b = (b << 8) | id[8 + i];
    }
    uint64_t x = a ^ (b * 0x9E3779B97F4A7C15ull);
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    return static_cast<size_t>(x);
  }
};

// Hex and parsing helpers for 128-bit ids.
std::string id_hex(const Id128& id);
std::optional<Id128> id_from_hex(std::string_view hex);

}  // namespace cl
