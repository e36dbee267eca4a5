// Findings: a thread-safe list of violations seen by a black-box test; keeps
// the first few in full for the failure message and counts all of them.
#pragma once

#include <mutex>
#include <string>
#include <vector>

namespace cl::test {

class Findings {
 public:
  void add(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (first_.size() < kKeptMax) first_.push_back(what);
    ++count_;
  }
  size_t count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return count_;
  }
  std::string summary() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = std::to_string(count_) + " violation(s):";
    for (const auto& f : first_) out += "\n  - " + f;
    return out;
  }

 private:
  static constexpr size_t kKeptMax = 20;
  mutable std::mutex mu_;
  std::vector<std::string> first_;
  size_t count_ = 0;
};

}  // namespace cl::test
