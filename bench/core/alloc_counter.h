// bench/core/alloc_counter.h — a process-wide count of global operator new calls, for benchmarks
// that report heap allocations per op in steady state. alloc_counter.cpp replaces the global
// operator new/delete (all forms) of the binary it is linked into; the replacement also serves the
// modu shared libraries, because the executable's definition interposes libstdc++'s.
// The count covers operator new only: the caching allocator's system allocations (aligned_alloc)
// are reported separately through modu::cpu_allocator()->stats().
#pragma once

#include <cstdint>

namespace modu::bench {

// operator new calls since the start of the process (all threads).
int64_t heap_allocations();

// Prints a raw backtrace (backtrace_symbols_fd, no allocation) of each of the next `n` operator new
// calls to stderr: to find where a steady-state allocation comes from (resolve with addr2line or
// c++filt). Benchmarks arm it from the environment variable MODU_BENCH_TRACE_NEW=n.
void trace_next_allocations(int n);

}  // namespace modu::bench
