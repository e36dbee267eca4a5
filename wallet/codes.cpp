#include "wallet/codes.h"

#include <array>

namespace cl {
namespace {
constexpr std::array<std::string_view, 15> kNames = {
    "ok",          "bad_signature",  "wrong_chain",        "malformed",
    "unknown_wallet", "wallet_exists", "wallet_frozen",    "insufficient_funds",
    "balance_limit_exceeded", "not_authorized", "reference_used", "expired",
    "invalid_amount", "same_wallet", "id_conflict",
};
}  // namespace

std::string_view code_name(Code code) { return kNames.at(static_cast<size_t>(code)); }

std::optional<Code> code_from_name(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Code>(i);
  }
  return std::nullopt;
}

int code_http_status(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kMalformed:
    case Code::kWrongChain: return 400;
    case Code::kBadSignature: return 401;
    case Code::kNotAuthorized: return 403;
    case Code::kUnknownWallet: return 404;
    case Code::kIdConflict:
    case Code::kReferenceUsed:
    case Code::kWalletExists: return 409;
    case Code::kWalletFrozen:
    case Code::kInsufficientFunds:
    case Code::kBalanceLimitExceeded:
    case Code::kExpired:
    case Code::kInvalidAmount:
    case Code::kSameWallet: return 422;
  }
  return 500;
}

}  // namespace cl
