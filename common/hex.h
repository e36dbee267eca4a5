// Lowercase hexadecimal encoding, and strict decoding of fixed-size values.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cl {

// Returns the lowercase hex encoding of "bytes".
std::string hex_encode(std::span<const uint8_t> bytes);
inline std::string hex_encode(std::string_view bytes) {
  return hex_encode(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

// Decodes "hex" into "out".  Returns false unless hex is exactly
// 2*out.size() lowercase hex digits.  Uppercase is refused: every id, key
// and signature has exactly one spelling (DESIGN §3).
bool hex_decode(std::string_view hex, std::span<uint8_t> out);

// Decodes an arbitrary-length lowercase hex string; nullopt on any bad digit or odd length.
std::optional<std::string> hex_decode_bytes(std::string_view hex);

template <size_t N>
std::optional<std::array<uint8_t, N>> hex_decode_array(std::string_view hex) {
  std::array<uint8_t, N> out{};
  if (!hex_decode(hex, out)) return std::nullopt;
  return out;
}

}  // namespace cl
