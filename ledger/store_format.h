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
constexpr char kTree = 't';        // t<level:1><index:8>         → 32-byte Merkle node, level ≥ 1
                                   // (level-0 leaves are hashed from journal entries)
constexpr char kOp = 'o';          // o<op id:16>                 → OpRecord
constexpr char kWallet = 'w';      // w<wallet id:16>             → WalletState
constexpr char kWalletEntry = 'x'; // x<wallet id:16><index:8>    → empty
constexpr char kReference = 'r';   // r<len(program):2><program><reference> → op id
constexpr char kEntryDigest = 'e'; // e<index:8>                  → EntryDigest, instead of j and x
                                   // in an audit_only store (LedgerOptions)

// Column families: the append-only journal and its Merkle nodes live apart
// from the state, so their sequential keys compact by trivial moves instead
// of being rewritten with every compaction of the (random-keyed) state.
constexpr std::string_view kJournalFamily = "journal";
inline bool in_journal_family(std::string_view key) {
  return !key.empty() && (key[0] == kJournal || key[0] == kTree || key[0] == kEntryDigest);
}

constexpr std::string_view kMetaGenesis = "mgenesis";
// The store layout version; a store of another version is refused, never guessed at.
constexpr std::string_view kMetaFormat = "mformat";
constexpr std::string_view kStoreFormat = "cityledger-store-2";
constexpr std::string_view kMetaState = "mstate";
// Present iff the store was built with LedgerOptions::audit_only (it lacks
// the wallet entry index): such a store opens only as audit_only, and vice versa.
constexpr std::string_view kMetaAuditOnly = "maudit_only";

void put_u64(std::string* out, uint64_t v);
uint64_t get_u64(const char* p);

std::string journal_key(uint64_t index);
std::string entry_digest_key(uint64_t index);
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
