// bench/core/alloc_counter.cpp — replaces the global operator new/delete of a benchmark binary with
// counting versions over malloc/aligned_alloc (see alloc_counter.h). Relaxed atomic increment: a few
// ns per allocation, which is part of what the benchmark is meant to expose anyway.
#include "bench/core/alloc_counter.h"

#include <execinfo.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

namespace {
std::atomic<int64_t> g_count{0};
std::atomic<int> g_trace{0};
thread_local bool t_in_trace = false;

void maybe_trace(std::size_t n) {
  if (g_trace.load(std::memory_order_relaxed) <= 0 || t_in_trace) return;
  if (g_trace.fetch_sub(1) <= 0) return;
  t_in_trace = true;
  char head[64];
  int len = std::snprintf(head, sizeof head, "--- operator new(%zu) at\n", n);
  if (write(2, head, static_cast<size_t>(len)) < 0) {
  }
  void* frames[32];
  int depth = backtrace(frames, 32);
  backtrace_symbols_fd(frames, depth, 2);
  t_in_trace = false;
}

void* counted_alloc(std::size_t n) {
  g_count.fetch_add(1, std::memory_order_relaxed);
  maybe_trace(n);
  void* p = std::malloc(n ? n : 1);
  if (!p) throw std::bad_alloc();
  return p;
}
void* counted_alloc_aligned(std::size_t n, std::align_val_t al) {
  g_count.fetch_add(1, std::memory_order_relaxed);
  std::size_t a = static_cast<std::size_t>(al);
  if (a < sizeof(void*)) a = sizeof(void*);
  std::size_t size = (n + a - 1) / a * a;
  void* p = std::aligned_alloc(a, size ? size : a);
  if (!p) throw std::bad_alloc();
  return p;
}
}  // namespace

namespace modu::bench {
int64_t heap_allocations() { return g_count.load(std::memory_order_relaxed); }
void trace_next_allocations(int n) {
  void* frames[2];
  backtrace(frames, 2);  // the first call loads the unwinder (and may allocate): do it now
  g_trace.store(n);
}
}  // namespace modu::bench

void* operator new(std::size_t n) { return counted_alloc(n); }
void* operator new[](std::size_t n) { return counted_alloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t al) { return counted_alloc_aligned(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return counted_alloc_aligned(n, al); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc_aligned(n, al);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  try {
    return counted_alloc_aligned(n, al);
  } catch (...) {
    return nullptr;
  }
}

void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
