// Status and Result<T>: expected failures as values, not exceptions.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "common/check.h"

namespace cl {

// A Status is ok, or an error with a short machine-readable code and a
// human-readable message.  Codes used across the project:
//   "io"          storage or OS failure
//   "corruption"  stored data fails a consistency check
//   "invalid"     a caller passed something that violates a precondition
//   "not_found"   the thing asked for does not exist
//   "mismatch"    e.g. a genesis that differs from the stored one
class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string code, std::string message) {
    Status s;
    s.code_ = std::move(code);
    s.message_ = std::move(message);
    return s;
  }
  bool is_ok() const { return code_.empty(); }
  explicit operator bool() const { return is_ok(); }
  const std::string& code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string to_string() const { return is_ok() ? "ok" : code_ + ": " + message_; }

 private:
  std::string code_;
  std::string message_;
};

// Result<T> holds either a value or a non-ok Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    CL_CHECK_MSG(!std::get<Status>(v_).is_ok(), "Result constructed from an ok Status");
  }
  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() {
    CL_CHECK_MSG(is_ok(), "Result::value() on an error");
    return std::get<T>(v_);
  }
  const T& value() const {
    CL_CHECK_MSG(is_ok(), "Result::value() on an error");
    return std::get<T>(v_);
  }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cl
