#include "tests/sim/state_machine.h"
#include "tests/sim/bytes.h"

#include <cstdio>

namespace cl::sim {
namespace {

}  // namespace

uint64_t fnv1a(std::string_view data, uint64_t h) {
  for (unsigned char c : data) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string_view payload_id(std::string_view data) { return data.substr(0, data.find('|')); }

void PayloadLog::apply(const raft::Entry& e) {
  applied_ = e.index;
  std::string head(9, '\0');
  head[0] = static_cast<char>(e.type);
  for (int i = 0; i < 8; ++i) head[1 + i] = static_cast<char>((e.index >> (8 * i)) & 0xFFu);
  chain_ = fnv1a(e.data, fnv1a(head, chain_ * 31 + 7));
  if (e.type != raft::EntryType::kNormal) return;
  std::string id(payload_id(e.data));
  if (seen_.insert(id).second) ids_.push_back(std::move(id));
}

std::string PayloadLog::digest() const {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%llu:%016llx", static_cast<unsigned long long>(applied_),
                static_cast<unsigned long long>(chain_));
  return buf;
}

std::string PayloadLog::save() const {
  std::string out;
  put_u64(&out, applied_);
  put_u64(&out, chain_);
  put_u64(&out, ids_.size());
  for (const std::string& id : ids_) {
    put_u64(&out, id.size());
    out += id;
  }
  return out;
}

Status PayloadLog::load(std::string_view in) {
  PayloadLog fresh;
  uint64_t n = 0;
  if (!get_u64(&in, &fresh.applied_) || !get_u64(&in, &fresh.chain_) || !get_u64(&in, &n)) {
    return Status::error("corruption", "payload log snapshot: short header");
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t len = 0;
    if (!get_u64(&in, &len) || len > in.size()) return Status::error("corruption", "payload log snapshot: bad id");
    std::string id(in.substr(0, len));
    in.remove_prefix(len);
    if (!fresh.seen_.insert(id).second) return Status::error("corruption", "payload log snapshot: duplicate id");
    fresh.ids_.push_back(std::move(id));
  }
  if (!in.empty()) return Status::error("corruption", "payload log snapshot: trailing bytes");
  *this = std::move(fresh);
  return Status::ok();
}

size_t PayloadLog::count(std::string_view payload_id) const {
  // ids_ holds each id at most once (apply and load both enforce it).
  return seen_.count(std::string(payload_id));
}

}  // namespace cl::sim
