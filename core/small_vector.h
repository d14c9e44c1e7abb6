// core/small_vector.h — SmallVec<T, N>: a vector with N elements stored inline, spilling to the heap
// only beyond N. Tape nodes use it so a typical op (at most N inputs/outputs) allocates nothing.
#pragma once

#include <cstddef>
#include <new>
#include <utility>

namespace modu {

template <class T, size_t N>
class SmallVec {
 public:
  SmallVec() = default;
  SmallVec(const SmallVec&) = delete;
  SmallVec& operator=(const SmallVec&) = delete;
  ~SmallVec() { clear_and_release(); }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T* data() { return heap_ ? heap_ : inline_ptr(); }
  const T* data() const { return heap_ ? heap_ : inline_ptr(); }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }
  T* begin() { return data(); }
  T* end() { return data() + size_; }
  const T* begin() const { return data(); }
  const T* end() const { return data() + size_; }

  // Resizes to n default-constructed elements (previous contents destroyed).
  void assign_default(size_t n) {
    clear();
    reserve(n);
    for (size_t i = 0; i < n; ++i) new (data() + i) T();
    size_ = n;
  }
  void push_back(T v) {
    reserve(size_ + 1);
    new (data() + size_) T(std::move(v));
    ++size_;
  }
  void clear() {
    for (size_t i = 0; i < size_; ++i) data()[i].~T();
    size_ = 0;
  }

 private:
  void reserve(size_t n) {
    size_t cap = heap_ ? heap_cap_ : N;
    if (n <= cap) return;
    size_t new_cap = cap * 2 > n ? cap * 2 : n;
    T* fresh = static_cast<T*>(::operator new(new_cap * sizeof(T)));
    for (size_t i = 0; i < size_; ++i) {
      new (fresh + i) T(std::move(data()[i]));
      data()[i].~T();
    }
    if (heap_) ::operator delete(heap_);
    heap_ = fresh;
    heap_cap_ = new_cap;
  }
  void clear_and_release() {
    clear();
    if (heap_) ::operator delete(heap_);
    heap_ = nullptr;
  }
  T* inline_ptr() { return reinterpret_cast<T*>(storage_); }
  const T* inline_ptr() const { return reinterpret_cast<const T*>(storage_); }

  alignas(T) unsigned char storage_[N * sizeof(T)];
  T* heap_ = nullptr;
  size_t heap_cap_ = 0;
  size_t size_ = 0;
};

}  // namespace modu
