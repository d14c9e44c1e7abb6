// tests/gpu/parity_main.h — the small harness shared by the GPU test sources of the backend_parity binary.
//
// Each check prints one line "PASS|FAIL|SKIP <name>: <details>" and returns whether it passed; main()
// (test_backend_parity.cpp) runs them all, prints a summary and exits non-zero on any failure.
#pragma once

#include <cstdio>
#include <string>

namespace modu::gputest {

struct Options {
  bool allow_no_gpu = false;
  bool bf16 = true;
  bool verbose = false;
  bool error_tests = true;  // the deliberate CUDA errors (off under compute-sanitizer, which reports them)
  std::string filter;  // run only parity cases whose name contains this
};

inline bool report(bool ok, const std::string& name, const std::string& details) {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), details.empty() ? "" : ": ", details.c_str());
  std::fflush(stdout);
  return ok;
}
inline void skip(const std::string& name, const std::string& why) {
  std::printf("SKIP %s: %s\n", name.c_str(), why.c_str());
  std::fflush(stdout);
}

// test_cuda_runtime.cpp: Philox and factories against the CPU, the allocator, error reporting.
// Returns the number of failed checks.
int run_runtime_checks(const Options& opt);

}  // namespace modu::gputest
