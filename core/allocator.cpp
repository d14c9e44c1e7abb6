// core/allocator.cpp — the caching allocator and the CPU's raw allocation.
#include "core/allocator.h"

#include <cstdlib>
#include <new>

#include "core/check.h"
#include "core/ops/dispatch.h"

namespace modu {

int allocation_class_index(size_t nbytes) {
  if (nbytes <= 512) return static_cast<int>((nbytes + 63) / 64) - (nbytes == 0 ? 0 : 1);
  int k = 63 - __builtin_clzll(nbytes - 1);  // largest power of 2 below nbytes is 2^k, k >= 9
  size_t step = (size_t(1) << k) / 4;
  int sub = static_cast<int>((nbytes - (size_t(1) << k) + step - 1) / step) - 1;  // 0..3
  return 8 + (k - 9) * 4 + sub;
}

size_t allocation_size_class(size_t nbytes) {
  if (nbytes <= 512) return (nbytes + 63) & ~size_t(63);
  // Four classes per power of two: at most 25% slack.
  size_t top = size_t(1) << (63 - __builtin_clzll(nbytes - 1));  // largest power of 2 < nbytes
  size_t step = top / 4;
  return (nbytes + step - 1) / step * step;
}

CachingAllocator::CachingAllocator(Device device, RawAlloc raw_alloc, RawFree raw_free)
    : device_(device), raw_alloc_(raw_alloc), raw_free_(raw_free) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

void* CachingAllocator::allocate(size_t nbytes) {
  size_t cls = allocation_size_class(nbytes ? nbytes : 1);
  std::vector<void*>& list = free_by_class_[allocation_class_index(nbytes ? nbytes : 1)];
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests;
    if (!list.empty()) {
      void* p = list.back();
      list.pop_back();
      ++stats_.cache_hits;
      stats_.bytes_cached -= static_cast<int64_t>(cls);
      stats_.bytes_in_use += static_cast<int64_t>(cls);
      if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
      return p;
    }
  }
  void* p = raw_alloc_(cls, device_.index);
  if (!p) {
    // Out of memory: give the cache back and try once more.
    empty_cache();
    p = raw_alloc_(cls, device_.index);
  }
  MODU_CHECK(p != nullptr, "out of memory on ", device_.str(), ": could not allocate ", cls,
             " bytes (", stats().bytes_in_use, " bytes in use); reduce the batch size or model size");
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.system_allocs;
  stats_.bytes_in_use += static_cast<int64_t>(cls);
  if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
  return p;
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  if (!ptr) return;
  size_t cls = allocation_size_class(nbytes ? nbytes : 1);
  std::lock_guard<std::mutex> lock(mu_);
  free_by_class_[allocation_class_index(nbytes ? nbytes : 1)].push_back(ptr);
  stats_.bytes_in_use -= static_cast<int64_t>(cls);
  stats_.bytes_cached += static_cast<int64_t>(cls);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CachingAllocator::empty_cache() {
  std::vector<std::pair<void*, size_t>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::vector<void*>& list : free_by_class_) {
      for (void* p : list) blocks.emplace_back(p, 0);
      stats_.system_frees += static_cast<int64_t>(list.size());
      list.clear();
      list.shrink_to_fit();
    }
    stats_.bytes_cached = 0;
  }
  for (auto& [p, unused] : blocks) raw_free_(p, device_.index);
}

namespace {
void* cpu_raw_alloc(size_t nbytes, int) { return std::aligned_alloc(64, (nbytes + 63) & ~size_t(63)); }
void cpu_raw_free(void* p, int) { std::free(p); }

AllocatorFactory g_factories[kNumDeviceTypes] = {};
}  // namespace

Allocator* cpu_allocator() {
  // Never destroyed: tensors may be released during static destruction.
  static CachingAllocator* alloc = new CachingAllocator(Device::cpu(), cpu_raw_alloc, cpu_raw_free);
  return alloc;
}

void register_allocator(DeviceType type, AllocatorFactory factory) {
  g_factories[static_cast<int>(type)] = factory;
}

Allocator* allocator_for(Device device) {
  if (device.is_cpu()) return cpu_allocator();
  KernelRegistry::instance();  // backends register their allocators together with their kernels
  AllocatorFactory f = g_factories[static_cast<int>(device.type)];
  MODU_CHECK(f != nullptr, "no allocator for ", device.str(),
             ": this build of modu has no CUDA backend (configure with -DMODU_CUDA=ON on a machine with "
             "the CUDA toolkit)");
  return f(device.index);
}

}  // namespace modu
