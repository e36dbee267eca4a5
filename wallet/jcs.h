// Canonical JSON (RFC 8785 JCS, restricted to objects, arrays, strings,
// integers and booleans) and a strict parser for bytes from outside.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "common/status.h"

namespace cl {

using Json = nlohmann::json;

// Limits on JSON from outside: nesting depth of any accepted document.
constexpr int kJsonDepthMax = 16;

// Parses "text" strictly: valid UTF-8, no duplicate object keys, nesting at
// most kJsonDepthMax, no floating-point numbers (integers beyond 64 bits
// count as floats) and nothing after the value.  Returns the document, or
// Status "malformed" with a message saying what was wrong.  Never throws.
Result<Json> parse_json_strict(std::string_view text);

// Appends the JCS encoding of "value" to "*out".  Returns false (leaving
// *out partially written) if value holds a float, null or a discarded value,
// which the restricted JCS of DESIGN §3 does not allow.
bool append_jcs(const Json& value, std::string* out);

// JCS of "value"; CL_CHECKs that value is representable (callers pass
// documents that were validated or built by the project).
std::string jcs(const Json& value);

// Appends "s" as a JSON string literal escaped as JCS requires.
void append_jcs_string(std::string_view s, std::string* out);

}  // namespace cl
