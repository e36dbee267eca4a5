// Raft protocol types: terms, indexes, log entries, persistent state and the
// messages servers exchange.  Plain values with no behaviour; the protocol is
// in raft_core.h and the wire format in codec.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace cl::raft {

// Protocol numbers.  Aliases rather than wrapper structs: they are compared and
// added constantly, and every field that holds one is named for what it is.
using Term = uint64_t;   // election term; 0 = before any election
using Index = uint64_t;  // log position, 1-based; 0 = "before the first entry"
using NodeId = uint64_t; // server id, never 0

constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,      // opaque application payload (a batch of ops)
  kNoop = 1,        // appended by every new leader at the start of its term
  kConfChange = 2,  // data is an encoded ConfChange (codec.h)
};

// One log entry.  `data` is opaque to consensus.
struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// The state a server must persist before it answers anyone (thesis Fig. 3.1):
// current term, the candidate voted for in that term, and the commit index
// (commit is persisted only so a restart can re-apply without waiting for a
// leader; losing it is safe).
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool operator==(const HardState&) const = default;
};

// A cluster configuration: the set of voting servers, sorted ascending, unique.
struct ConfState {
  std::vector<NodeId> voters;

  bool contains(NodeId id) const { return std::binary_search(voters.begin(), voters.end(), id); }
  bool operator==(const ConfState&) const = default;
};

// Describes a snapshot of the application state: it reflects every entry up to
// and including `index` (whose term is `term`), and `conf` is the configuration
// in force at `index`.  The state itself never passes through the core.
struct SnapshotMeta {
  Index index = 0;
  Term term = 0;
  ConfState conf;

  bool operator==(const SnapshotMeta&) const = default;
};

// A single-server membership change (thesis §4.1), carried in a kConfChange
// entry.  `after` is the full configuration that results, so that the
// configuration in force at any log position is simply the newest
// kConfChange entry at or before it.
enum class ConfChangeType : uint8_t { kAddNode = 0, kRemoveNode = 1 };

constexpr size_t kConfContextMax = 1024;

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddNode;
  NodeId node = kNoNode;
  ConfState after;
  // Opaque to Raft (at most kConfContextMax bytes): what the application
  // needs every replica to learn with the change, e.g. the new member's
  // addresses.
  std::string context;

  bool operator==(const ConfChange&) const = default;
};

enum class MessageType : uint8_t {
  kPreVote = 0,      // "would you vote for me at term+1?" (thesis §9.6); changes no state
  kPreVoteResp = 1,
  kVote = 2,         // RequestVote
  kVoteResp = 3,
  kAppend = 4,       // AppendEntries carrying entries (possibly none: a probe or commit update)
  kAppendResp = 5,
  kHeartbeat = 6,    // leader liveness + commit + ReadIndex confirmation
  kHeartbeatResp = 7,
  kSnapshot = 8,     // "your next entry is compacted: fetch the state at this snapshot"
  kTimeoutNow = 9,   // leader transfer: "start an election now" (thesis §3.10)
};
constexpr uint8_t kMaxMessageType = 9;

const char* to_string(MessageType type);

// One Raft message.  Which fields matter depends on `type`:
//
//   type          index                      log_term               other
//   PreVote/Vote  candidate's last index     candidate's last term  transfer
//   *VoteResp     -                          -                      reject
//   Append        index preceding entries    term at `index`        entries, commit
//   AppendResp    accepted: last matching    reject: term at hint   reject, reject_hint
//                 index; reject: `index` of
//                 the Append refused
//   Heartbeat     -                          -                      commit, context
//   HeartbeatResp -                          -                      context, commit
//                                                                     (the responder's)
//   Snapshot      -                          -                      snapshot
//
// `term` is always the sender's current term, except in a PreVote (the term the
// candidate would campaign at) and a granted PreVoteResp (echoes that term).
struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term log_term = 0;
  Index index = 0;
  Index commit = 0;
  bool reject = false;
  // AppendResp reject: the follower's guess of the last index that may match
  // (fast backtracking, thesis §5.3); `log_term` is its term there.
  Index reject_hint = 0;
  // Heartbeat/HeartbeatResp: the ReadIndex request this round confirms (0: none).
  uint64_t context = 0;
  // Vote: sent because of TimeoutNow, so voters must not ignore it for having
  // heard from a leader recently (thesis §4.2.3 / §3.10).
  bool transfer = false;
  std::vector<Entry> entries;
  SnapshotMeta snapshot;

  bool operator==(const Message&) const = default;
};

enum class Role : uint8_t { kFollower = 0, kPreCandidate = 1, kCandidate = 2, kLeader = 3 };

const char* to_string(Role role);

}  // namespace cl::raft
