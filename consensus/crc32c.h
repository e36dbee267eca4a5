// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
// iSCSI, ext4 and LevelDB.  Uses the SSE4.2 instruction when the CPU has it,
// a table otherwise; both give the same values.
#pragma once

#include <cstdint>
#include <string_view>

namespace cl::raft {

// Returns the CRC-32C of `data`, continuing from `crc` (the CRC of the bytes
// before it; 0 to start).  crc32c("123456789") == 0xE3069283.
uint32_t crc32c(std::string_view data, uint32_t crc = 0);

// The table-driven version, always (for tests comparing the two).
uint32_t crc32c_portable(std::string_view data, uint32_t crc = 0);

}  // namespace cl::raft
