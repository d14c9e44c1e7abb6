// core/refcount.h — intrusive reference counting and object pools.
//
// Tensors, storages and tape nodes are created on every op. They are intrusively counted (one atomic
// per object, no control block) and recycled through ObjectPool free lists, so a steady-state training
// step makes no heap allocation for them. Ref<T> calls T::destroy(T*) when the count reaches zero;
// destroy returns the object to its pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

namespace modu {

class RefCounted {
 public:
  RefCounted() = default;
  RefCounted(const RefCounted&) = delete;
  RefCounted& operator=(const RefCounted&) = delete;

  void retain_ref() const noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // True when this was the last reference.
  bool release_ref() const noexcept { return refs_.fetch_sub(1, std::memory_order_acq_rel) == 1; }
  int32_t use_count() const noexcept { return refs_.load(std::memory_order_relaxed); }

 protected:
  ~RefCounted() = default;

 private:
  mutable std::atomic<int32_t> refs_{0};
};

template <class T>
class Ref {
 public:
  constexpr Ref() noexcept = default;
  constexpr Ref(std::nullptr_t) noexcept {}
  // Adopts p and adds a reference.
  explicit Ref(T* p) noexcept : p_(p) {
    if (p_) p_->retain_ref();
  }
  Ref(const Ref& o) noexcept : p_(o.p_) {
    if (p_) p_->retain_ref();
  }
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U>
  Ref(const Ref<U>& o) noexcept : p_(o.get()) {
    if (p_) p_->retain_ref();
  }
  ~Ref() { reset(); }

  Ref& operator=(const Ref& o) noexcept {
    if (o.p_) o.p_->retain_ref();
    T* old = std::exchange(p_, o.p_);
    if (old && old->release_ref()) T::destroy(old);
    return *this;
  }
  Ref& operator=(Ref&& o) noexcept {
    if (this != &o) {
      T* old = std::exchange(p_, std::exchange(o.p_, nullptr));
      if (old && old->release_ref()) T::destroy(old);
    }
    return *this;
  }
  void reset() noexcept {
    T* old = std::exchange(p_, nullptr);
    if (old && old->release_ref()) T::destroy(old);
  }

  T* get() const noexcept { return p_; }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  bool operator==(const Ref& o) const noexcept { return p_ == o.p_; }

 private:
  T* p_ = nullptr;
};

// A free list of raw blocks for objects of type T. Each thread keeps a small cache of blocks in
// front of the shared list, so the common make/recycle pair takes no lock. The shared list is never
// destroyed (a leaky singleton), so objects released during static destruction still have a home.
template <class T>
class ObjectPool {
 public:
  static ObjectPool& instance() {
    static ObjectPool* pool = new ObjectPool();
    return *pool;
  }
  template <class... Args>
  T* make(Args&&... args) {
    LocalCache& local = local_cache();
    void* mem = local.n > 0 ? local.blocks[--local.n] : take_shared();
    return new (mem) T(std::forward<Args>(args)...);
  }
  void recycle(T* p) {
    p->~T();
    LocalCache& local = local_cache();
    if (local.n < kLocalBlocks) {
      local.blocks[local.n++] = p;
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(p);
  }
  // How many blocks this pool ever took from the heap.
  int64_t fresh_blocks() const { return fresh_.load(std::memory_order_relaxed); }

 private:
  static constexpr int kLocalBlocks = 64;
  struct LocalCache {
    void* blocks[kLocalBlocks];
    int n = 0;
    ~LocalCache() {  // thread exit: hand the blocks back
      ObjectPool& pool = ObjectPool::instance();
      std::lock_guard<std::mutex> lock(pool.mu_);
      for (int i = 0; i < n; ++i) pool.free_.push_back(blocks[i]);
    }
  };
  static LocalCache& local_cache() {
    thread_local LocalCache cache;
    return cache;
  }
  void* take_shared() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        void* mem = free_.back();
        free_.pop_back();
        return mem;
      }
    }
    fresh_.fetch_add(1, std::memory_order_relaxed);
    return ::operator new(sizeof(T));
  }
  ObjectPool() { free_.reserve(1024); }
  std::mutex mu_;
  std::vector<void*> free_;
  std::atomic<int64_t> fresh_{0};
};

}  // namespace modu
