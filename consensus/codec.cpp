#include "consensus/codec.h"

#include "common/check.h"
#include "consensus/crc32c.h"

namespace cl::raft {
namespace {

constexpr uint8_t kVersion = 1;
constexpr uint8_t kFlagReject = 1u << 0;
constexpr uint8_t kFlagTransfer = 1u << 1;
constexpr size_t kEntryHeaderBytes = 8 + 8 + 1 + 4;
constexpr uint8_t kMaxEntryType = static_cast<uint8_t>(EntryType::kConfChange);

class Writer {
 public:
  explicit Writer(std::string* out) : out_(out) {}
  void u8(uint8_t v) { out_->push_back(static_cast<char>(v)); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_->push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_->push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
  }
  void bytes(std::string_view b) {
    CL_CHECK(b.size() <= UINT32_MAX);
    u32(static_cast<uint32_t>(b.size()));
    out_->append(b);
  }

 private:
  std::string* out_;
};

// Bounds-checked reader: every read fails (and stays failed) instead of
// running past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  size_t remaining() const { return in_.size() - pos_; }
  bool done() const { return ok_ && pos_ == in_.size(); }

  uint8_t u8() {
    if (!need(1)) return 0;
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(in_[pos_++])} << (8 * i);
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(in_[pos_++])} << (8 * i);
    return v;
  }
  std::string bytes() {
    uint32_t n = u32();
    if (!need(n)) return {};
    std::string s(in_.substr(pos_, n));
    pos_ += n;
    return s;
  }

 private:
  bool need(size_t n) {
    if (!ok_ || remaining() < n) ok_ = false;
    return ok_;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
};

void write_voters(Writer& w, const ConfState& conf) {
  CL_CHECK(conf.voters.size() <= kMaxVoters);
  w.u32(static_cast<uint32_t>(conf.voters.size()));
  for (NodeId v : conf.voters) w.u64(v);
}

// Reads a voter list; false if over the limit, not strictly ascending or 0.
bool read_voters(Reader& r, ConfState* conf) {
  uint32_t n = r.u32();
  if (!r.ok() || n > kMaxVoters || n > r.remaining() / 8) return false;
  conf->voters.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    NodeId v = r.u64();
    if (v == kNoNode || (!conf->voters.empty() && v <= conf->voters.back())) return false;
    conf->voters.push_back(v);
  }
  return r.ok();
}

void write_entry_fields(Writer& w, const Entry& e) {
  w.u64(e.term);
  w.u64(e.index);
  w.u8(static_cast<uint8_t>(e.type));
  w.bytes(e.data);
}

bool read_entry_fields(Reader& r, Entry* e) {
  e->term = r.u64();
  e->index = r.u64();
  uint8_t type = r.u8();
  if (type > kMaxEntryType) return false;
  e->type = static_cast<EntryType>(type);
  e->data = r.bytes();
  return r.ok();
}

Status invalid(const char* what) { return Status::error("invalid", std::string("message frame: ") + what); }

}  // namespace

std::string encode_message(const Message& m) {
  CL_CHECK(m.entries.size() <= kMaxEntriesPerFrame);
  std::string out;
  size_t data_bytes = 0;
  for (const Entry& e : m.entries) data_bytes += kEntryHeaderBytes + e.data.size();
  out.reserve(4 + 128 + 8 * m.snapshot.conf.voters.size() + data_bytes + 4);
  Writer w(&out);
  w.u32(0);  // body length, patched below
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(m.type));
  w.u64(m.from);
  w.u64(m.to);
  w.u64(m.term);
  w.u64(m.log_term);
  w.u64(m.index);
  w.u64(m.commit);
  w.u8(static_cast<uint8_t>((m.reject ? kFlagReject : 0) | (m.transfer ? kFlagTransfer : 0)));
  w.u64(m.reject_hint);
  w.u64(m.context);
  w.u64(m.snapshot.index);
  w.u64(m.snapshot.term);
  write_voters(w, m.snapshot.conf);
  w.u32(static_cast<uint32_t>(m.entries.size()));
  for (const Entry& e : m.entries) write_entry_fields(w, e);
  size_t body_len = out.size() - 4;
  CL_CHECK_MSG(body_len <= kMaxFrameBytes, "message larger than kMaxFrameBytes");
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((body_len >> (8 * i)) & 0xFFu);
  w.u32(crc32c(std::string_view(out).substr(4, body_len)));
  return out;
}

Result<Message> decode_message(std::string_view frame) {
  if (frame.size() < 8) return invalid("shorter than length and checksum");
  Reader header(frame.substr(0, 4));
  uint32_t body_len = header.u32();
  if (body_len > kMaxFrameBytes) return invalid("body larger than kMaxFrameBytes");
  if (frame.size() != size_t{body_len} + 8) return invalid("length does not match frame size");
  std::string_view body = frame.substr(4, body_len);
  Reader trailer(frame.substr(4 + body_len));
  if (trailer.u32() != crc32c(body)) return invalid("checksum mismatch");

  Reader r(body);
  Message m;
  if (r.u8() != kVersion) return invalid("unknown version");
  uint8_t type = r.u8();
  if (type > kMaxMessageType) return invalid("unknown type");
  m.type = static_cast<MessageType>(type);
  m.from = r.u64();
  m.to = r.u64();
  m.term = r.u64();
  m.log_term = r.u64();
  m.index = r.u64();
  m.commit = r.u64();
  uint8_t flags = r.u8();
  if ((flags & ~(kFlagReject | kFlagTransfer)) != 0) return invalid("unknown flags");
  m.reject = (flags & kFlagReject) != 0;
  m.transfer = (flags & kFlagTransfer) != 0;
  m.reject_hint = r.u64();
  m.context = r.u64();
  m.snapshot.index = r.u64();
  m.snapshot.term = r.u64();
  if (!read_voters(r, &m.snapshot.conf)) return invalid("bad snapshot voters");
  uint32_t n = r.u32();
  if (!r.ok() || n > kMaxEntriesPerFrame || n > r.remaining() / kEntryHeaderBytes) {
    return invalid("bad entry count");
  }
  m.entries.resize(n);
  for (Entry& e : m.entries) {
    if (!read_entry_fields(r, &e)) return invalid("bad entry");
  }
  if (!r.done()) return invalid("truncated or trailing bytes");
  return m;
}

std::string encode_entry(const Entry& e) {
  std::string out;
  out.reserve(kEntryHeaderBytes + e.data.size() + 4);
  Writer w(&out);
  write_entry_fields(w, e);
  w.u32(crc32c(out));
  return out;
}

Result<Entry> decode_entry(std::string_view record) {
  if (record.size() < kEntryHeaderBytes + 4) return Status::error("corruption", "log entry: too short");
  std::string_view payload = record.substr(0, record.size() - 4);
  Reader trailer(record.substr(record.size() - 4));
  if (trailer.u32() != crc32c(payload)) return Status::error("corruption", "log entry: checksum mismatch");
  Reader r(payload);
  Entry e;
  if (!read_entry_fields(r, &e) || !r.done()) return Status::error("corruption", "log entry: malformed");
  return e;
}

std::string encode_conf_change(const ConfChange& cc) {
  std::string out;
  Writer w(&out);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(cc.type));
  w.u64(cc.node);
  write_voters(w, cc.after);
  if (!cc.context.empty()) w.bytes(cc.context);
  return out;
}

Result<ConfChange> decode_conf_change(std::string_view bytes) {
  Reader r(bytes);
  ConfChange cc;
  if (r.u8() != kVersion) return Status::error("invalid", "conf change: unknown version");
  uint8_t type = r.u8();
  if (type > static_cast<uint8_t>(ConfChangeType::kRemoveNode)) {
    return Status::error("invalid", "conf change: unknown type");
  }
  cc.type = static_cast<ConfChangeType>(type);
  cc.node = r.u64();
  if (!r.ok() || cc.node == kNoNode) return Status::error("invalid", "conf change: bad node");
  if (!read_voters(r, &cc.after)) return Status::error("invalid", "conf change: bad voters");
  if (!r.done()) {
    if (r.remaining() < 4 || r.remaining() - 4 > kConfContextMax) return Status::error("invalid", "conf change: bad context");
    cc.context = r.bytes();
    if (!r.done() || cc.context.empty()) return Status::error("invalid", "conf change: bad context");
  }
  return cc;
}

}  // namespace cl::raft
