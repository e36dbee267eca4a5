// Operation result codes (DESIGN §4): "ok" or exactly one rejection code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cl {

enum class Code : uint8_t {
  kOk,
  kBadSignature,
  kWrongChain,
  kMalformed,
  kUnknownWallet,
  kWalletExists,
  kWalletFrozen,
  kInsufficientFunds,
  kBalanceLimitExceeded,
  kNotAuthorized,
  kReferenceUsed,
  kExpired,
  kInvalidAmount,
  kSameWallet,
  kIdConflict,
};

// The wire name of "code", e.g. "insufficient_funds".
std::string_view code_name(Code code);

// The code whose wire name is "name", or nullopt.
std::optional<Code> code_from_name(std::string_view name);

// The HTTP status DESIGN §6 assigns to "code" (200 for kOk).
int code_http_status(Code code);

// A rejection: a code and a human-readable detail naming what was wrong.
struct Rejection {
  Code code = Code::kMalformed;
  std::string detail;
};

}  // namespace cl
