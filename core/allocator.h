// core/allocator.h — device memory allocators and the caching allocator behind every tensor.
//
// Invariants: a steady-state training step takes every buffer from the cache (system_allocs does not
// grow after warm-up; tests/core/test_allocator.cpp and the training-step test measure it). Blocks are
// 64-byte aligned. Sizes are rounded to size classes of at most 25% slack, so a buffer freed by one
// step is found again by the next. The cache is per allocator and thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

#include "core/device.h"

namespace modu {

struct AllocatorStats {
  int64_t requests = 0;       // allocate() calls
  int64_t cache_hits = 0;     // served from the free lists
  int64_t system_allocs = 0;  // went to the system (malloc / cudaMalloc)
  int64_t system_frees = 0;
  int64_t bytes_in_use = 0;
  int64_t peak_bytes_in_use = 0;
  int64_t bytes_cached = 0;  // free blocks held for reuse
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;  // nbytes > 0
  virtual void deallocate(void* ptr, size_t nbytes) = 0;
  virtual Device device() const = 0;
  virtual AllocatorStats stats() const = 0;
  virtual void empty_cache() = 0;  // return cached free blocks to the system
};

// The size class a request is served from: 64-byte steps up to 512 bytes, then four classes per
// power of two. allocation_class_index numbers the classes densely from 0.
size_t allocation_size_class(size_t nbytes);
int allocation_class_index(size_t nbytes);
constexpr int kNumAllocationClasses = 8 + 4 * 56;

// A caching allocator over raw system allocation functions; the CPU uses aligned malloc, the CUDA
// backend cudaMalloc (core/cuda/).
class CachingAllocator final : public Allocator {
 public:
  using RawAlloc = void* (*)(size_t nbytes, int device_index);
  using RawFree = void (*)(void* ptr, int device_index);
  CachingAllocator(Device device, RawAlloc raw_alloc, RawFree raw_free);
  ~CachingAllocator() override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;
  Device device() const override { return device_; }
  AllocatorStats stats() const override;
  void empty_cache() override;

 private:
  Device device_;
  RawAlloc raw_alloc_;
  RawFree raw_free_;
  mutable std::mutex mu_;
  std::vector<void*> free_by_class_[kNumAllocationClasses];
  AllocatorStats stats_;
};

Allocator* cpu_allocator();
// The allocator of a device; the CUDA backend registers its own at start-up.
Allocator* allocator_for(Device device);
using AllocatorFactory = Allocator* (*)(int device_index);
void register_allocator(DeviceType type, AllocatorFactory factory);

}  // namespace modu
