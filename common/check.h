// Invariant checks that stay on in production builds.
//
// <cassert> vanishes under NDEBUG; a ledger that silently ignores a failed
// write or a broken invariant is how money gets lost.  CL_CHECK aborts the
// process with the failed condition and its location; the node restarts from
// its durable state, which is always consistent.
#pragma once

#include <cstdio>
#include <cstdlib>

namespace cl::detail {
[[noreturn]] inline void check_failed(const char* cond, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "FATAL: check failed: %s at %s:%d%s%s\n", cond, file, line,
               msg ? ": " : "", msg ? msg : "");
  std::fflush(stderr);
  std::abort();
}
}  // namespace cl::detail

// CL_CHECK(cond): abort if cond is false.
#define CL_CHECK(cond) \
  ((cond) ? (void)0 : ::cl::detail::check_failed(#cond, __FILE__, __LINE__, nullptr))

// CL_CHECK_MSG(cond, msg): as CL_CHECK, with a C-string explanation.
#define CL_CHECK_MSG(cond, msg) \
  ((cond) ? (void)0 : ::cl::detail::check_failed(#cond, __FILE__, __LINE__, (msg)))
