// The ledger's RocksDB layout (one key space, one-byte prefixes).  See
// doc/storage.md for the table.  All integers are big-endian so that keys
// sort in numeric order.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/sha256.h"
#include "wallet/op.h"

namespace cl::store {

// Key prefixes.
constexpr char kMeta = 'm';        // m<name>                     → meta values
constexpr char kJournal = 'j';     // j<index:8>                  → entry canonical bytes
constexpr char kTree = 't';        // t<last leaf:8><level:1>     → 32-byte Merkle node, level ≥ 1
                                   // (level-0 leaves are hashed from journal entries)
constexpr char kOp = 'o';          // o<op id:16>                 → OpRecord
constexpr char kWallet = 'w';      // w<wallet id:16>             → WalletState
constexpr char kWalletEntry = 'x'; // x<wallet id:16><index:8>    → empty
constexpr char kReference = 'r';   // r<len(program):2><program><reference> → op id
constexpr char kEntryDigest = 'e'; // e<index:8>                  → EntryDigest, instead of j and x
                                   // in an audit_only store (LedgerOptions)

// Column families: the append-only journal and the Merkle nodes each have
// their own, apart from the (random-keyed) state.  In each of the two, every
// batch writes keys above all earlier ones, so a flushed file overlaps no
// older file and compaction moves it down instead of rewriting it.  (With
// both in one family, or nodes keyed by level first, every flushed file
// spanned the whole family's key range and each compaction rewrote tens of
// MB: measured as 100-300 ms stalls of a loaded 3-node cluster.)
constexpr std::string_view kJournalFamily = "journal";
constexpr std::string_view kTreeFamily = "tree";
// Index of a key's family in Ledger's family list: 0 state, 1 journal, 2 tree.
inline size_t family_index(std::string_view key) {
  if (key.empty()) return 0;
  if (key[0] == kJournal || key[0] == kEntryDigest) return 1;
  if (key[0] == kTree) return 2;
  return 0;
}
constexpr size_t kFamilies = 3;

constexpr std::string_view kMetaGenesis = "mgenesis";
// The store layout version; a store of another version is refused, never guessed at.
constexpr std::string_view kMetaFormat = "mformat";
constexpr std::string_view kStoreFormat = "cityledger-store-3";
constexpr std::string_view kMetaState = "mstate";
// Present iff the store was built with LedgerOptions::audit_only (it lacks
// the wallet entry index): such a store opens only as audit_only, and vice versa.
constexpr std::string_view kMetaAuditOnly = "maudit_only";

void put_u64(std::string* out, uint64_t v);
uint64_t get_u64(const char* p);

std::string journal_key(uint64_t index);
std::string entry_digest_key(uint64_t index);
// Keyed by the last leaf the node covers, (index + 1)·2^level - 1, then its
// level: the order in which nodes complete, so keys only ever grow.
std::string tree_key(uint32_t level, uint64_t index);
std::string op_key(const OpId& id);
std::string wallet_key(const WalletId& id);
std::string wallet_entry_key(const WalletId& id, uint64_t index);
std::string reference_key(std::string_view program, std::string_view reference);

enum class WalletStatus : uint8_t { kActive = 0, kFrozen = 1 };

struct WalletState {
  WalletKind kind = WalletKind::kPersonal;
  WalletStatus status = WalletStatus::kActive;
  PublicKey key{};
  uint64_t balance = 0;
  std::optional<uint64_t> max_balance;
};
std::string encode_wallet(const WalletState& w);
std::optional<WalletState> decode_wallet(std::string_view bytes);

// What the ledger remembers of an accepted op: enough for its receipt and
// to tell a replay (same body) from a conflict (different body).
struct OpRecord {
  uint64_t index = 0;
  uint64_t time = 0;
  Hash body_hash{};
};
std::string encode_op_record(const OpRecord& r);
std::optional<OpRecord> decode_op_record(std::string_view bytes);

// What an audit_only store keeps of a journal entry: all that a replay reads
// back (Merkle leaves, and the time a checkpoint at that size must carry).
struct EntryDigest {
  Hash leaf_hash{};
  uint64_t time = 0;
};
std::string encode_entry_digest(const EntryDigest& d);
std::optional<EntryDigest> decode_entry_digest(std::string_view bytes);

// The per-batch meta record: everything derived that is not a per-key value.
struct MetaState {
  uint64_t size = 0;       // journal entries = next index
  uint64_t last_time = 0;  // ledger time of the last applied batch
  uint64_t source_index = 0;  // replicated-log index of the last applied batch (0: standalone)
  uint64_t issued = 0;
  uint64_t redeemed = 0;
  std::string frontier;    // merkle::Frontier::serialize()
};
std::string encode_meta(const MetaState& m);
std::optional<MetaState> decode_meta(std::string_view bytes);

}  // namespace cl::store
