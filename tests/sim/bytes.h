// Little-endian u64 fields for the simulator's snapshot encodings.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace cl::sim {

inline void put_u64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

// Reads a u64 off the front of "*in"; false if fewer than 8 bytes remain.
inline bool get_u64(std::string_view* in, uint64_t* v) {
  if (in->size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<uint8_t>((*in)[i])} << (8 * i);
  in->remove_prefix(8);
  return true;
}

}  // namespace cl::sim
