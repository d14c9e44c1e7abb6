// core/check.h — modu's error type and MODU_CHECK.
//
// Invariants: MODU_CHECK is never compiled out (ARCHITECTURE §9). Every failure throws modu::Error whose
// message says what was wrong and, where the caller knows it, how to fix it; the source location is
// appended so a report from a user can be traced.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace modu {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  return os.str();
}

template <class... Parts>
[[noreturn]] void fail_check(const char* file, int line, const Parts&... parts) {
  throw Error(concat(parts..., " (", file, ":", line, ")"));
}
}  // namespace detail

}  // namespace modu

// MODU_CHECK(cond, "what went wrong: ", value, "; fix: ...")
#define MODU_CHECK(cond, ...)                                                \
  do {                                                                       \
    if (!(cond)) [[unlikely]] {                                              \
      ::modu::detail::fail_check(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__); \
    }                                                                        \
  } while (0)

#define MODU_FAIL(...) ::modu::detail::fail_check(__FILE__, __LINE__, __VA_ARGS__)
