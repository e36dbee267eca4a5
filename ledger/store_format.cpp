#include "ledger/store_format.h"

#include <cstring>

namespace cl::store {
namespace {
constexpr uint8_t kWalletFormat = 1;
constexpr uint8_t kMetaRecordFormat = 2;
constexpr size_t kWalletBytes = 1 + 1 + 1 + 32 + 8 + 1 + 8;
constexpr size_t kOpRecordBytes = 8 + 8 + 32;
constexpr size_t kEntryDigestBytes = 32 + 8;
}  // namespace

void put_u64(std::string* out, uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}

uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string journal_key(uint64_t index) {
  std::string k(1, kJournal);
  put_u64(&k, index);
  return k;
}

std::string entry_digest_key(uint64_t index) {
  std::string k(1, kEntryDigest);
  put_u64(&k, index);
  return k;
}

std::string tree_key(uint32_t level, uint64_t index) {
  std::string k(1, kTree);
  if (level >= 64 || index >= (UINT64_MAX >> level)) {
    // No such node in a tree of at most 2^64 - 1 leaves: a key no node has.
    k.append(9, '\xff');
    k.push_back('!');
    return k;
  }
  put_u64(&k, ((index + 1) << level) - 1);
  k.push_back(static_cast<char>(level));
  return k;
}

static std::string id_key(char prefix, const Id128& id) {
  std::string k(1, prefix);
  k.append(reinterpret_cast<const char*>(id.data()), id.size());
  return k;
}

std::string op_key(const OpId& id) { return id_key(kOp, id); }
std::string wallet_key(const WalletId& id) { return id_key(kWallet, id); }

std::string wallet_entry_key(const WalletId& id, uint64_t index) {
  std::string k = id_key(kWalletEntry, id);
  put_u64(&k, index);
  return k;
}

std::string reference_key(std::string_view program, std::string_view reference) {
  std::string k(1, kReference);
  k.push_back(static_cast<char>((program.size() >> 8) & 0xff));
  k.push_back(static_cast<char>(program.size() & 0xff));
  k.append(program).append(reference);
  return k;
}

std::string encode_wallet(const WalletState& w) {
  std::string out;
  out.reserve(kWalletBytes);
  out.push_back(static_cast<char>(kWalletFormat));
  out.push_back(static_cast<char>(w.kind));
  out.push_back(static_cast<char>(w.status));
  out.append(reinterpret_cast<const char*>(w.key.data()), w.key.size());
  put_u64(&out, w.balance);
  out.push_back(w.max_balance ? 1 : 0);
  put_u64(&out, w.max_balance.value_or(0));
  return out;
}

std::optional<WalletState> decode_wallet(std::string_view b) {
  if (b.size() != kWalletBytes || static_cast<uint8_t>(b[0]) != kWalletFormat) return std::nullopt;
  WalletState w;
  auto kind = static_cast<uint8_t>(b[1]);
  auto status = static_cast<uint8_t>(b[2]);
  if (kind > static_cast<uint8_t>(WalletKind::kAgency) || status > 1) return std::nullopt;
  w.kind = static_cast<WalletKind>(kind);
  w.status = static_cast<WalletStatus>(status);
  std::memcpy(w.key.data(), b.data() + 3, 32);
  w.balance = get_u64(b.data() + 35);
  if (b[43] == 1) w.max_balance = get_u64(b.data() + 44);
  else if (b[43] != 0) return std::nullopt;
  return w;
}

std::string encode_op_record(const OpRecord& r) {
  std::string out;
  out.reserve(kOpRecordBytes);
  put_u64(&out, r.index);
  put_u64(&out, r.time);
  out.append(reinterpret_cast<const char*>(r.body_hash.data()), r.body_hash.size());
  return out;
}

std::optional<OpRecord> decode_op_record(std::string_view b) {
  if (b.size() != kOpRecordBytes) return std::nullopt;
  OpRecord r;
  r.index = get_u64(b.data());
  r.time = get_u64(b.data() + 8);
  std::memcpy(r.body_hash.data(), b.data() + 16, 32);
  return r;
}

std::string encode_entry_digest(const EntryDigest& d) {
  std::string out;
  out.reserve(kEntryDigestBytes);
  out.append(reinterpret_cast<const char*>(d.leaf_hash.data()), d.leaf_hash.size());
  put_u64(&out, d.time);
  return out;
}

std::optional<EntryDigest> decode_entry_digest(std::string_view b) {
  if (b.size() != kEntryDigestBytes) return std::nullopt;
  EntryDigest d;
  std::memcpy(d.leaf_hash.data(), b.data(), 32);
  d.time = get_u64(b.data() + 32);
  return d;
}

std::string encode_meta(const MetaState& m) {
  std::string out(1, static_cast<char>(kMetaRecordFormat));
  put_u64(&out, m.size);
  put_u64(&out, m.last_time);
  put_u64(&out, m.issued);
  put_u64(&out, m.redeemed);
  put_u64(&out, m.source_index);
  out.append(m.frontier);
  return out;
}

std::optional<MetaState> decode_meta(std::string_view b) {
  if (b.size() < 41 || static_cast<uint8_t>(b[0]) != kMetaRecordFormat) return std::nullopt;
  MetaState m;
  m.size = get_u64(b.data() + 1);
  m.last_time = get_u64(b.data() + 9);
  m.issued = get_u64(b.data() + 17);
  m.redeemed = get_u64(b.data() + 25);
  m.source_index = get_u64(b.data() + 33);
  m.frontier = std::string(b.substr(41));
  return m;
}

}  // namespace cl::store
