#include "wallet/jcs.h"

#include <algorithm>
#include <charconv>
#include <set>
#include <vector>

namespace cl {
namespace {

// UTF-16 code units of a valid UTF-8 string (JCS sorts keys by them).
std::u16string utf16_units(std::string_view s) {
  std::u16string out;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t len;
    if (c < 0x80) { cp = c; len = 1; }
    else if (c < 0xE0) { cp = c & 0x1F; len = 2; }
    else if (c < 0xF0) { cp = c & 0x0F; len = 3; }
    else { cp = c & 0x07; len = 4; }
    for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
    i += len;
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

bool all_ascii(const Json& object) {
  for (const auto& [k, v] : object.items()) {
    for (char c : k) if (static_cast<uint8_t>(c) >= 0x80) return false;
  }
  return true;
}

template <typename T>
void append_integer(T v, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  (void)ec;
  out->append(buf, end);
}

}  // namespace

void append_jcs_string(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<uint8_t>(ch);
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\b': out->append("\\b"); break;
      case '\f': out->append("\\f"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (c < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xF]);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

bool append_jcs(const Json& value, std::string* out) {
  switch (value.type()) {
    case Json::value_t::boolean:
      out->append(value.get<bool>() ? "true" : "false");
      return true;
    case Json::value_t::number_integer:
      append_integer(value.get<int64_t>(), out);
      return true;
    case Json::value_t::number_unsigned:
      append_integer(value.get<uint64_t>(), out);
      return true;
    case Json::value_t::string:
      append_jcs_string(value.get_ref<const std::string&>(), out);
      return true;
    case Json::value_t::array: {
      out->push_back('[');
      bool first = true;
      for (const auto& v : value) {
        if (!first) out->push_back(',');
        first = false;
        if (!append_jcs(v, out)) return false;
      }
      out->push_back(']');
      return true;
    }
    case Json::value_t::object: {
      // nlohmann keeps keys in UTF-8 byte order, which equals JCS's UTF-16
      // order for ASCII keys; sort explicitly only when a key is not ASCII.
      std::vector<std::pair<std::u16string, Json::const_iterator>> order;
      bool ascii = all_ascii(value);
      if (!ascii) {
        for (auto it = value.begin(); it != value.end(); ++it) order.emplace_back(utf16_units(it.key()), it);
        std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      out->push_back('{');
      bool first = true;
      auto emit = [&](const std::string& k, const Json& v) {
        if (!first) out->push_back(',');
        first = false;
        append_jcs_string(k, out);
        out->push_back(':');
        return append_jcs(v, out);
      };
      if (ascii) {
        for (auto it = value.begin(); it != value.end(); ++it) if (!emit(it.key(), it.value())) return false;
      } else {
        for (const auto& [units, it] : order) if (!emit(it.key(), it.value())) return false;
      }
      out->push_back('}');
      return true;
    }
    default:
      return false;  // null, float, binary, discarded
  }
}

std::string jcs(const Json& value) {
  std::string out;
  CL_CHECK_MSG(append_jcs(value, &out), "jcs() on a value outside the JCS subset");
  return out;
}

namespace {

// Where the parser is, as "body.amount" or "signatures[0].sig", so that
// errors found while parsing name the field like decode errors do.
class JsonPath {
 public:
  void push(bool array) { frames_.push_back(Frame{array, "", 0}); }
  void pop() {
    if (!frames_.empty()) frames_.pop_back();
    advance();
  }
  void key(const std::string& k) {
    if (!frames_.empty()) frames_.back().key = k;
  }
  void advance() {  // a value of the current array is complete
    if (!frames_.empty() && frames_.back().array) ++frames_.back().index;
  }
  std::string str() const {
    std::string out;
    for (const auto& f : frames_) {
      if (f.array) out += "[" + std::to_string(f.index) + "]";
      else if (!f.key.empty()) out += (out.empty() ? "" : ".") + f.key;
    }
    return out;
  }
  std::string prefix() const {
    std::string p = str();
    return p.empty() ? "" : p + ": ";
  }

 private:
  struct Frame {
    bool array;
    std::string key;
    size_t index;
  };
  std::vector<Frame> frames_;
};

}  // namespace

Result<Json> parse_json_strict(std::string_view text) {
  // nlohmann's lexer stops at a NUL byte; a raw NUL is never valid JSON.
  if (text.find('\0') != std::string_view::npos) return Status::error("malformed", "invalid JSON: NUL byte in input");
  std::string error;
  std::vector<std::set<std::string>> keys;  // one set per open object
  JsonPath path;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    if (!error.empty()) return false;
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        // A container's start is reported at its parent's depth.
        if (depth >= kJsonDepthMax) {
          error = path.prefix() + "nesting deeper than " + std::to_string(kJsonDepthMax);
          return false;
        }
        if (event == Json::parse_event_t::object_start) keys.emplace_back();
        path.push(event == Json::parse_event_t::array_start);
        break;
      case Json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        path.pop();
        break;
      case Json::parse_event_t::array_end:
        path.pop();
        break;
      case Json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          error = path.prefix() + "duplicate key \"" + parsed.get<std::string>() + "\"";
          return false;
        }
        path.key(parsed.get<std::string>());
        break;
      case Json::parse_event_t::value:
        if (parsed.is_number_float()) {
          error = path.prefix() + "numbers must be integers within 64 bits";
          return false;
        }
        path.advance();
        break;
    }
    return true;
  };
  Json doc;
  try {
    doc = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true,
                      /*ignore_comments=*/false);
  } catch (const Json::exception& e) {
    if (error.empty()) {
      std::string what = e.what();
      // Strip nlohmann's "[json.exception.parse_error.101] " prefix.
      auto pos = what.find("] ");
      error = path.prefix() + "invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2));
    }
  }
  if (!error.empty()) return Status::error("malformed", error);
  if (doc.is_discarded()) return Status::error("malformed", "invalid JSON");
  return doc;
}

}  // namespace cl
