// Byte encodings of Raft messages, stored log entries and membership changes.
// Every decoder is total: any input, however hostile, yields a value or an
// error Status; none reads out of bounds, allocates more than the input could
// describe, or aborts.
//
// All integers are little-endian, fixed width.  Variable-length fields carry
// their length first.
//
// Message frame (what the transport sends; `decode_message` takes exactly one):
//   u32 body_len | body[body_len] | u32 crc32c(body)
//   body := u8 version(=1) | u8 type | u64 from | u64 to | u64 term
//           | u64 log_term | u64 index | u64 commit
//           | u8 flags (bit 0 reject, bit 1 transfer; other bits 0)
//           | u64 reject_hint | u64 context
//           | snapshot: u64 index | u64 term | u32 n | n × u64 voter
//           | u32 n_entries | n_entries × (u64 term | u64 index | u8 type | u32 len | len bytes)
//   A transport reads the 4-byte length, refuses body_len > kMaxFrameBytes,
//   then reads body_len + 4 more bytes.
//
// Stored entry (one record per log entry in the durable log; the checksum is
// the per-entry checksum DESIGN.md §7 asks for):
//   u64 term | u64 index | u8 type | u32 len | len bytes | u32 crc32c(all before it)
//
// ConfChange (the data of a kConfChange entry):
//   u8 version(=1) | u8 type | u64 node | u32 n | n × u64 voter (ascending, unique, non-zero)
//   [| u32 len | len bytes of context (≤ kConfContextMax)]   (absent: empty context)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "consensus/types.h"

namespace cl::raft {

constexpr size_t kMaxFrameBytes = 64u << 20;       // one message, body only
constexpr size_t kMaxEntriesPerFrame = 1u << 16;
constexpr size_t kMaxVoters = 64;

// Returns the frame for `m`.  Precondition: the body fits kMaxFrameBytes and
// the limits above (the core never builds larger messages).
std::string encode_message(const Message& m);

// Decodes exactly one frame.  Errors ("invalid"): truncated or trailing bytes,
// checksum mismatch, unknown version/type/flags, a limit exceeded, voters not
// ascending.
Result<Message> decode_message(std::string_view frame);

// Stored entry record with its own checksum.
std::string encode_entry(const Entry& e);
// Errors ("corruption"): wrong length, checksum mismatch, unknown type.
Result<Entry> decode_entry(std::string_view record);

std::string encode_conf_change(const ConfChange& cc);
// Errors ("invalid"): wrong length, unknown type, voters not ascending/unique,
// node 0, more than kMaxVoters.
Result<ConfChange> decode_conf_change(std::string_view bytes);

}  // namespace cl::raft
