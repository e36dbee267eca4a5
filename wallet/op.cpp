#include "wallet/op.h"

#include <array>
#include <set>

#include "common/hex.h"

namespace cl {
namespace {

constexpr std::array<std::string_view, 9> kOpTypeNames = {
    "open_wallet", "issue", "redeem", "transfer", "fare", "payout", "freeze", "unfreeze", "rotate_key"};
constexpr std::array<std::string_view, 4> kKindNames = {"personal", "merchant", "transit", "agency"};

// Counts the Unicode characters of "s"; nullopt if s is not valid UTF-8
// (overlong forms, surrogates and code points above U+10FFFF are invalid)
// or contains a control character (Cc: U+0000–U+001F, U+007F–U+009F).
std::optional<size_t> count_text_chars(std::string_view s) {
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++chars) {
    auto c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) { cp = c; len = 1; }
    else if (c >= 0xC2 && c < 0xE0) { cp = c & 0x1F; len = 2; }
    else if (c >= 0xE0 && c < 0xF0) { cp = c & 0x0F; len = 3; }
    else if (c >= 0xF0 && c < 0xF5) { cp = c & 0x07; len = 4; }
    else return std::nullopt;
    if (i + len > s.size()) return std::nullopt;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return std::nullopt;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return std::nullopt;
    if (cp >= 0xD800 && cp <= 0xDFFF) return std::nullopt;
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return std::nullopt;
    i += len;
  }
  return chars;
}

// Reads typed fields out of one JSON object, remembering which it used so
// that leftovers can be reported as unknown.  The first failure wins.
class FieldReader {
 public:
  FieldReader(const Json& obj, std::string prefix, Rejection* rejection)
      : obj_(obj), prefix_(std::move(prefix)), rejection_(rejection) {}

  bool failed() const { return failed_; }

  bool fail(Code code, const std::string& field, const std::string& what) {
    if (!failed_) {
      failed_ = true;
      rejection_->code = code;
      rejection_->detail = prefix_ + field + ": " + what;
    }
    return false;
  }

  // The field's value, or nullptr if absent (a failure when required).
  const Json* get(const std::string& name, bool required = true) {
    if (failed_) return nullptr;
    auto it = obj_.find(name);
    if (it == obj_.end()) {
      if (required) fail(Code::kMalformed, name, "required field is missing");
      return nullptr;
    }
    used_.insert(name);
    return &*it;
  }

  template <size_t N>
  bool hex(const std::string& name, std::array<uint8_t, N>* out) {
    const Json* v = get(name);
    if (!v) return false;
    if (!v->is_string() || !hex_decode(v->get_ref<const std::string&>(), *out))
      return fail(Code::kMalformed, name, "must be " + std::to_string(2 * N) + " lowercase hex characters");
    return true;
  }

  bool text(const std::string& name, std::string* out) {
    const Json* v = get(name);
    if (!v) return false;
    if (!v->is_string()) return fail(Code::kMalformed, name, "must be a string");
    const auto& s = v->get_ref<const std::string&>();
    auto chars = count_text_chars(s);
    if (!chars) return fail(Code::kMalformed, name, "must be valid UTF-8 without control characters");
    if (*chars < 1 || *chars > kTextCharsMax)
      return fail(Code::kMalformed, name, "must be 1 to " + std::to_string(kTextCharsMax) + " characters");
    *out = s;
    return true;
  }

  // An integer in [min, max]; out-of-range integers fail with "range_code".
  bool integer(const Json* v, const std::string& name, uint64_t min, uint64_t max, Code range_code,
               uint64_t* out) {
    if (!v) return false;
    if (!v->is_number_integer()) return fail(Code::kMalformed, name, "must be an integer");
    bool in_range;
    if (v->is_number_unsigned()) {
      *out = v->get<uint64_t>();
      in_range = *out >= min && *out <= max;
    } else {
      int64_t s = v->get<int64_t>();
      in_range = s >= 0 && static_cast<uint64_t>(s) >= min && static_cast<uint64_t>(s) <= max;
      *out = static_cast<uint64_t>(s);
    }
    if (!in_range)
      return fail(range_code, name, "must be between " + std::to_string(min) + " and " + std::to_string(max));
    return true;
  }

  bool amount(const std::string& name, uint64_t* out) {
    return integer(get(name), name, 1, kAmountMax, Code::kInvalidAmount, out);
  }
  bool time(const std::string& name, uint64_t* out) {
    return integer(get(name), name, 0, kTimeMax, Code::kMalformed, out);
  }
  bool optional_integer(const std::string& name, uint64_t min, std::optional<uint64_t>* out) {
    const Json* v = get(name, /*required=*/false);
    if (!v) return !failed_;
    uint64_t x = 0;
    if (!integer(v, name, min, kAmountMax, Code::kMalformed, &x)) return false;
    *out = x;
    return true;
  }

  // Fails on any field that was not read.
  bool finish() {
    if (failed_) return false;
    for (auto it = obj_.begin(); it != obj_.end(); ++it) {
      if (!used_.count(it.key())) return fail(Code::kMalformed, it.key(), "unknown field");
    }
    return true;
  }

 private:
  const Json& obj_;
  std::string prefix_;
  Rejection* rejection_;
  std::set<std::string> used_;
  bool failed_ = false;
};

bool valid_chain(std::string_view s) {
  if (s.empty() || s.size() > kChainCharsMax) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

void read_type_fields(FieldReader& r, OpBody* b) {
  switch (b->type) {
    case OpType::kOpenWallet: {
      r.hex("wallet", &b->wallet);
      r.hex("key", &b->key);
      const Json* kind = r.get("kind");
      if (kind) {
        auto k = kind->is_string() ? wallet_kind_from_name(kind->get<std::string>()) : std::nullopt;
        if (!k) r.fail(Code::kMalformed, "kind", "must be one of personal, merchant, transit, agency");
        else b->kind = *k;
      }
      r.optional_integer("max_balance", 1, &b->max_balance);
      break;
    }
    case OpType::kIssue:
      r.hex("to", &b->to);
      r.amount("amount", &b->amount);
      break;
    case OpType::kRedeem:
      r.hex("from", &b->from);
      r.amount("amount", &b->amount);
      break;
    case OpType::kTransfer:
      r.hex("from", &b->from);
      r.hex("to", &b->to);
      r.amount("amount", &b->amount);
      if (r.get("memo", /*required=*/false)) {
        std::string memo;
        if (r.text("memo", &memo)) b->memo = std::move(memo);
      }
      break;
    case OpType::kFare:
      r.hex("from", &b->from);
      r.hex("to", &b->to);
      r.amount("amount", &b->amount);
      r.text("gate", &b->gate);
      r.time("tap_at", &b->tap_at);
      break;
    case OpType::kPayout:
      r.hex("from", &b->from);
      r.hex("to", &b->to);
      r.amount("amount", &b->amount);
      r.text("program", &b->program);
      r.text("reference", &b->reference);
      break;
    case OpType::kFreeze:
    case OpType::kUnfreeze:
      r.hex("wallet", &b->wallet);
      r.text("reason", &b->reason);
      break;
    case OpType::kRotateKey:
      r.hex("wallet", &b->wallet);
      r.hex("key", &b->key);
      break;
  }
}

}  // namespace

std::string_view op_type_name(OpType t) { return kOpTypeNames.at(static_cast<size_t>(t)); }
std::optional<OpType> op_type_from_name(std::string_view name) {
  for (size_t i = 0; i < kOpTypeNames.size(); ++i)
    if (kOpTypeNames[i] == name) return static_cast<OpType>(i);
  return std::nullopt;
}
std::string_view wallet_kind_name(WalletKind k) { return kKindNames.at(static_cast<size_t>(k)); }
std::optional<WalletKind> wallet_kind_from_name(std::string_view name) {
  for (size_t i = 0; i < kKindNames.size(); ++i)
    if (kKindNames[i] == name) return static_cast<WalletKind>(i);
  return std::nullopt;
}

std::string id_hex(const Id128& id) { return hex_encode(id); }
std::optional<Id128> id_from_hex(std::string_view hex) { return hex_decode_array<16>(hex); }

bool Envelope::signed_by(const PublicKey& key) const {
  for (const auto& s : signatures)
    if (s.key == key) return true;
  return false;
}

std::optional<OpBody> decode_body(const Json& body, Rejection* rejection) {
  if (!body.is_object()) {
    *rejection = {Code::kMalformed, "body: must be an object"};
    return std::nullopt;
  }
  OpBody b;
  FieldReader r(body, "body.", rejection);
  if (const Json* chain = r.get("chain")) {
    if (!chain->is_string() || !valid_chain(chain->get<std::string>()))
      r.fail(Code::kMalformed, "chain", "must be 1 to 64 characters of [A-Za-z0-9._-]");
    else b.chain = chain->get<std::string>();
  }
  r.hex("id", &b.id);
  if (const Json* type = r.get("type")) {
    auto t = type->is_string() ? op_type_from_name(type->get<std::string>()) : std::nullopt;
    if (!t) r.fail(Code::kMalformed, "type", "unknown op type");
    else b.type = *t;
  }
  if (r.get("expires_at", /*required=*/false)) {
    uint64_t e = 0;
    if (r.time("expires_at", &e)) b.expires_at = e;
  }
  if (!r.failed()) read_type_fields(r, &b);
  if (!r.finish()) return std::nullopt;
  return b;
}

std::optional<Envelope> decode_envelope_json(const Json& doc, Rejection* rejection) {
  if (!doc.is_object()) {
    *rejection = {Code::kMalformed, "envelope: must be an object {body, signatures}"};
    return std::nullopt;
  }
  FieldReader r(doc, "", rejection);
  const Json* body = r.get("body");
  const Json* sigs = r.get("signatures");
  if (!r.finish()) return std::nullopt;
  Envelope env;
  auto b = decode_body(*body, rejection);
  if (!b) return std::nullopt;
  env.body = std::move(*b);
  if (!sigs->is_array() || sigs->empty() || sigs->size() > kSignaturesMax) {
    *rejection = {Code::kMalformed,
                  "signatures: must be an array of 1 to " + std::to_string(kSignaturesMax) + " signatures"};
    return std::nullopt;
  }
  for (size_t i = 0; i < sigs->size(); ++i) {
    const Json& s = (*sigs)[i];
    std::string prefix = "signatures[" + std::to_string(i) + "].";
    if (!s.is_object()) {
      *rejection = {Code::kMalformed, prefix.substr(0, prefix.size() - 1) + ": must be an object {key, sig}"};
      return std::nullopt;
    }
    FieldReader sr(s, prefix, rejection);
    Signer signer;
    sr.hex("key", &signer.key);
    sr.hex("sig", &signer.sig);
    if (!sr.finish()) return std::nullopt;
    if (env.signed_by(signer.key)) {
      *rejection = {Code::kMalformed, prefix + "key: the same key signs twice"};
      return std::nullopt;
    }
    env.signatures.push_back(signer);
  }
  env.body_jcs = jcs(*body);
  env.body_hash = sha256(env.body_jcs);
  env.jcs.reserve(env.body_jcs.size() + 64 + 150 * env.signatures.size());
  env.jcs.append("{\"body\":").append(env.body_jcs).append(",\"signatures\":[");
  for (size_t i = 0; i < env.signatures.size(); ++i) {
    if (i) env.jcs.push_back(',');
    env.jcs.append("{\"key\":\"").append(hex_encode(env.signatures[i].key));
    env.jcs.append("\",\"sig\":\"").append(hex_encode(env.signatures[i].sig)).append("\"}");
  }
  env.jcs.append("]}");
  return env;
}

// ---------------------------------------------------------------- canonical fast path
//
// decode_envelope_canonical accepts a subset of what decode_envelope accepts:
// text that is byte for byte the JCS of the envelope it decodes to.  JCS
// leaves one spelling, which the scanner demands: no whitespace; keys in
// ascending order (all are ASCII names, so byte order is JCS's UTF-16 order,
// and strictly ascending means no duplicates); integers without sign,
// leading zero, fraction or exponent; strings verbatim.  A string JCS would
// escape ('"', '\\', control characters) is left to the strict path.  The
// field rules are decode_body's: CanonicalFields below mirrors
// read_type_fields, and the unit tests hold both paths to the same result.
namespace {

// The body fields, in ascending key order.
enum Field : uint8_t {
  kFieldAmount, kFieldChain, kFieldExpiresAt, kFieldFrom, kFieldGate, kFieldId, kFieldKey, kFieldKind,
  kFieldMaxBalance, kFieldMemo, kFieldProgram, kFieldReason, kFieldReference, kFieldTapAt, kFieldTo, kFieldType,
  kFieldWallet, kFieldCount,
};
constexpr std::array<std::string_view, kFieldCount> kFieldNames = {
    "amount", "chain", "expires_at", "from", "gate", "id", "key", "kind", "max_balance",
    "memo", "program", "reason", "reference", "tap_at", "to", "type", "wallet"};
constexpr uint32_t bit(Field f) { return uint32_t{1} << f; }
constexpr uint32_t kIntegerFields = bit(kFieldAmount) | bit(kFieldExpiresAt) | bit(kFieldMaxBalance) | bit(kFieldTapAt);

// The fields a body of each type has (decode_body and read_type_fields).
struct CanonicalFields {
  uint32_t required;
  uint32_t optional;
};
CanonicalFields canonical_fields(OpType t) {
  constexpr uint32_t kCommon = bit(kFieldChain) | bit(kFieldId) | bit(kFieldType);
  constexpr uint32_t kMove = kCommon | bit(kFieldFrom) | bit(kFieldTo) | bit(kFieldAmount);
  constexpr uint32_t kExpires = bit(kFieldExpiresAt);
  switch (t) {
    case OpType::kOpenWallet:
      return {kCommon | bit(kFieldWallet) | bit(kFieldKey) | bit(kFieldKind), kExpires | bit(kFieldMaxBalance)};
    case OpType::kIssue: return {kCommon | bit(kFieldTo) | bit(kFieldAmount), kExpires};
    case OpType::kRedeem: return {kCommon | bit(kFieldFrom) | bit(kFieldAmount), kExpires};
    case OpType::kTransfer: return {kMove, kExpires | bit(kFieldMemo)};
    case OpType::kFare: return {kMove | bit(kFieldGate) | bit(kFieldTapAt), kExpires};
    case OpType::kPayout: return {kMove | bit(kFieldProgram) | bit(kFieldReference), kExpires};
    case OpType::kFreeze:
    case OpType::kUnfreeze: return {kCommon | bit(kFieldWallet) | bit(kFieldReason), kExpires};
    case OpType::kRotateKey: return {kCommon | bit(kFieldWallet) | bit(kFieldKey), kExpires};
  }
  return {~uint32_t{0}, 0};  // unreachable: every type is listed
}

// A cursor over text that must be canonical JCS; each method consumes one
// token and returns false, consuming nothing usable, at the first byte that
// is not its one canonical spelling.
class CanonicalScanner {
 public:
  explicit CanonicalScanner(std::string_view text) : s_(text) {}
  size_t pos() const { return p_; }
  bool done() const { return p_ == s_.size(); }

  bool literal(std::string_view l) {
    if (s_.substr(p_, l.size()) != l) return false;
    p_ += l.size();
    return true;
  }
  // A string JCS writes verbatim: '"', bytes other than '"', '\\' and
  // control characters, '"'.  (UTF-8 validity is the field checks' job.)
  bool string(std::string_view* out) {
    if (p_ >= s_.size() || s_[p_] != '"') return false;
    size_t start = ++p_;
    for (; p_ < s_.size(); ++p_) {
      auto c = static_cast<uint8_t>(s_[p_]);
      if (c == '"') {
        *out = s_.substr(start, p_ - start);
        ++p_;
        return true;
      }
      if (c == '\\' || c < 0x20) return false;
    }
    return false;
  }
  // An integer as JCS writes it: "0", or digits without a leading zero; it
  // must fit 64 bits (a larger one is a float to the strict parser).
  bool integer(uint64_t* out) {
    size_t start = p_;
    uint64_t v = 0;
    for (; p_ < s_.size() && s_[p_] >= '0' && s_[p_] <= '9'; ++p_) {
      auto d = static_cast<uint64_t>(s_[p_] - '0');
      if (v > (UINT64_MAX - d) / 10) return false;
      v = v * 10 + d;
    }
    size_t digits = p_ - start;
    if (digits == 0 || (digits > 1 && s_[start] == '0')) return false;
    *out = v;
    return true;
  }

 private:
  std::string_view s_;
  size_t p_ = 0;
};

// hex_decode's rule (exactly 2N lowercase hex digits), without a branch per
// digit: a journal line holds ~300 of them, in random order.
constexpr std::array<uint8_t, 256> kHexValue = [] {
  std::array<uint8_t, 256> t{};
  t.fill(0xFF);
  for (int c = '0'; c <= '9'; ++c) t[c] = static_cast<uint8_t>(c - '0');
  for (int c = 'a'; c <= 'f'; ++c) t[c] = static_cast<uint8_t>(c - 'a' + 10);
  return t;
}();
template <size_t N>
bool canonical_hex(std::string_view hex, std::array<uint8_t, N>& out) {
  if (hex.size() != 2 * N) return false;
  uint8_t bad = 0;
  for (size_t i = 0; i < N; ++i) {
    uint8_t hi = kHexValue[static_cast<uint8_t>(hex[2 * i])], lo = kHexValue[static_cast<uint8_t>(hex[2 * i + 1])];
    bad |= hi | lo;
    out[i] = static_cast<uint8_t>((hi << 4) | (lo & 0x0F));
  }
  return (bad & 0xF0) == 0;
}

bool canonical_text(std::string_view value, std::string* out) {
  auto chars = count_text_chars(value);
  if (!chars || *chars < 1 || *chars > kTextCharsMax) return false;
  out->assign(value);
  return true;
}

// The body object at the scanner: decode_body's rules on canonical text.
bool scan_canonical_body(CanonicalScanner& sc, OpBody* b) {
  std::array<std::string_view, kFieldCount> text{};
  std::array<uint64_t, kFieldCount> number{};
  uint32_t present = 0;
  size_t next = 0;  // keys ascend: each is looked for after the previous one
  if (!sc.literal("{")) return false;
  do {
    std::string_view name;
    if (!sc.string(&name) || !sc.literal(":")) return false;
    while (next < kFieldCount && kFieldNames[next] != name) ++next;
    if (next == kFieldCount) return false;  // unknown, repeated or out of order
    auto f = static_cast<Field>(next++);
    present |= bit(f);
    if (!((kIntegerFields & bit(f)) ? sc.integer(&number[f]) : sc.string(&text[f]))) return false;
  } while (sc.literal(","));
  if (!sc.literal("}")) return false;

  auto type = (present & bit(kFieldType)) ? op_type_from_name(text[kFieldType]) : std::nullopt;
  if (!type) return false;
  b->type = *type;
  CanonicalFields fields = canonical_fields(*type);
  if ((present & fields.required) != fields.required || (present & ~(fields.required | fields.optional)) != 0)
    return false;
  auto has = [&](Field f) { return (present & bit(f)) != 0; };
  if (!valid_chain(text[kFieldChain])) return false;
  b->chain.assign(text[kFieldChain]);
  if (!canonical_hex(text[kFieldId], b->id)) return false;
  if (has(kFieldExpiresAt)) {
    if (number[kFieldExpiresAt] > kTimeMax) return false;
    b->expires_at = number[kFieldExpiresAt];
  }
  if (has(kFieldWallet) && !canonical_hex(text[kFieldWallet], b->wallet)) return false;
  if (has(kFieldFrom) && !canonical_hex(text[kFieldFrom], b->from)) return false;
  if (has(kFieldTo) && !canonical_hex(text[kFieldTo], b->to)) return false;
  if (has(kFieldKey) && !canonical_hex(text[kFieldKey], b->key)) return false;
  if (has(kFieldKind)) {
    auto kind = wallet_kind_from_name(text[kFieldKind]);
    if (!kind) return false;
    b->kind = *kind;
  }
  if (has(kFieldMaxBalance)) {
    if (number[kFieldMaxBalance] < 1 || number[kFieldMaxBalance] > kAmountMax) return false;
    b->max_balance = number[kFieldMaxBalance];
  }
  if (has(kFieldAmount)) {
    if (number[kFieldAmount] < 1 || number[kFieldAmount] > kAmountMax) return false;
    b->amount = number[kFieldAmount];
  }
  if (has(kFieldTapAt)) {
    if (number[kFieldTapAt] > kTimeMax) return false;
    b->tap_at = number[kFieldTapAt];
  }
  if (has(kFieldGate) && !canonical_text(text[kFieldGate], &b->gate)) return false;
  if (has(kFieldProgram) && !canonical_text(text[kFieldProgram], &b->program)) return false;
  if (has(kFieldReference) && !canonical_text(text[kFieldReference], &b->reference)) return false;
  if (has(kFieldReason) && !canonical_text(text[kFieldReason], &b->reason)) return false;
  if (has(kFieldMemo)) {
    std::string memo;
    if (!canonical_text(text[kFieldMemo], &memo)) return false;
    b->memo = std::move(memo);
  }
  return true;
}

}  // namespace

std::optional<Envelope> decode_envelope_canonical(std::string_view text) {
  CanonicalScanner sc(text);
  Envelope env;
  if (!sc.literal("{\"body\":")) return std::nullopt;
  size_t body_begin = sc.pos();
  if (!scan_canonical_body(sc, &env.body)) return std::nullopt;
  size_t body_end = sc.pos();
  if (!sc.literal(",\"signatures\":[")) return std::nullopt;
  do {
    std::string_view key, sig;
    if (env.signatures.size() == kSignaturesMax) return std::nullopt;
    if (!sc.literal("{\"key\":") || !sc.string(&key) || !sc.literal(",\"sig\":") || !sc.string(&sig) ||
        !sc.literal("}"))
      return std::nullopt;
    Signer signer;
    if (!canonical_hex(key, signer.key) || !canonical_hex(sig, signer.sig) || env.signed_by(signer.key))
      return std::nullopt;
    env.signatures.push_back(signer);
  } while (sc.literal(","));
  if (!sc.literal("]}") || !sc.done()) return std::nullopt;
  env.body_jcs.assign(text.substr(body_begin, body_end - body_begin));
  env.body_hash = sha256(env.body_jcs);
  env.jcs.assign(text);
  return env;
}

std::optional<Envelope> decode_envelope(std::string_view text, Rejection* rejection) {
  auto doc = parse_json_strict(text);
  if (!doc) {
    *rejection = {Code::kMalformed, doc.status().message()};
    return std::nullopt;
  }
  return decode_envelope_json(*doc, rejection);
}

Json body_to_json(const OpBody& b) {
  Json j = Json::object();
  j["chain"] = b.chain;
  j["id"] = id_hex(b.id);
  j["type"] = std::string(op_type_name(b.type));
  if (b.expires_at) j["expires_at"] = *b.expires_at;
  switch (b.type) {
    case OpType::kOpenWallet:
      j["wallet"] = id_hex(b.wallet);
      j["key"] = hex_encode(b.key);
      j["kind"] = std::string(wallet_kind_name(b.kind));
      if (b.max_balance) j["max_balance"] = *b.max_balance;
      break;
    case OpType::kIssue: j["to"] = id_hex(b.to); j["amount"] = b.amount; break;
    case OpType::kRedeem: j["from"] = id_hex(b.from); j["amount"] = b.amount; break;
    case OpType::kTransfer:
      j["from"] = id_hex(b.from); j["to"] = id_hex(b.to); j["amount"] = b.amount;
      if (b.memo) j["memo"] = *b.memo;
      break;
    case OpType::kFare:
      j["from"] = id_hex(b.from); j["to"] = id_hex(b.to); j["amount"] = b.amount;
      j["gate"] = b.gate; j["tap_at"] = b.tap_at;
      break;
    case OpType::kPayout:
      j["from"] = id_hex(b.from); j["to"] = id_hex(b.to); j["amount"] = b.amount;
      j["program"] = b.program; j["reference"] = b.reference;
      break;
    case OpType::kFreeze:
    case OpType::kUnfreeze: j["wallet"] = id_hex(b.wallet); j["reason"] = b.reason; break;
    case OpType::kRotateKey: j["wallet"] = id_hex(b.wallet); j["key"] = hex_encode(b.key); break;
  }
  return j;
}

std::string op_signing_message(std::string_view body_jcs) {
  std::string m;
  m.reserve(kOpSignaturePrefix.size() + body_jcs.size());
  m.append(kOpSignaturePrefix).append(body_jcs);
  return m;
}

Envelope sign_envelope(const OpBody& body, const std::vector<const KeyPair*>& keys) {
  Json doc = Json::object();
  doc["body"] = body_to_json(body);
  std::string message = op_signing_message(jcs(doc["body"]));
  Json sigs = Json::array();
  for (const KeyPair* k : keys) {
    sigs.push_back({{"key", hex_encode(k->public_key)}, {"sig", hex_encode(sign(*k, message))}});
  }
  doc["signatures"] = std::move(sigs);
  Rejection rejection;
  auto env = decode_envelope_json(doc, &rejection);
  CL_CHECK_MSG(env.has_value(), rejection.detail.c_str());
  return std::move(*env);
}

Code verify_envelope(const Envelope& env) {
  std::string message = op_signing_message(env.body_jcs);
  for (const auto& s : env.signatures) {
    if (!verify(s.key, message, s.sig)) return Code::kBadSignature;
  }
  return Code::kOk;
}

}  // namespace cl
