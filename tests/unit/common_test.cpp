#include <doctest/doctest.h>

#include "common/hex.h"
#include "common/sha256.h"
#include "common/status.h"

TEST_CASE("hex round-trips and refuses uppercase, odd length and bad digits") {
  std::array<uint8_t, 3> bytes{0x00, 0xab, 0xff};
  CHECK(cl::hex_encode(bytes) == "00abff");
  std::array<uint8_t, 3> out{};
  CHECK(cl::hex_decode("00abff", out));
  CHECK(out == bytes);
  CHECK_FALSE(cl::hex_decode("00ABff", out));
  CHECK_FALSE(cl::hex_decode("00abf", out));
  CHECK_FALSE(cl::hex_decode("00abfg", out));
  CHECK_FALSE(cl::hex_decode("00abff00", out));
  CHECK_FALSE(cl::hex_decode_bytes("abc").has_value());
  CHECK(cl::hex_decode_bytes("6869").value() == "hi");
}

TEST_CASE("sha256 of the empty string and of 'abc' match FIPS 180-2") {
  CHECK(cl::to_hex(cl::sha256("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(cl::to_hex(cl::sha256("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  cl::Sha256 s;
  s.update("a");
  s.update("bc");
  CHECK(s.finish() == cl::sha256("abc"));
}

TEST_CASE("Result carries either a value or an error status") {
  cl::Result<int> good(7);
  REQUIRE(good.is_ok());
  CHECK(*good == 7);
  cl::Result<int> bad(cl::Status::error("io", "disk on fire"));
  CHECK_FALSE(bad.is_ok());
  CHECK(bad.status().code() == "io");
  CHECK(bad.status().to_string() == "io: disk on fire");
}
