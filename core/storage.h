// core/storage.h — Storage: one reference-counted buffer on one device, shared by every view of it.
//
// Invariants: the version counter grows by one on every in-place write (InPlace ops bump it in the
// dispatcher), so autograd can detect a tensor saved for backward that was modified afterwards.
// Storage objects are pooled; external (wrapped) memory is released through its owner, not the allocator.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/device.h"
#include "core/refcount.h"

namespace modu {

class Allocator;

class Storage : public RefCounted {
 public:
  // A fresh buffer of nbytes from the device's caching allocator (contents uninitialised).
  static Ref<Storage> allocate(size_t nbytes, Device device);
  // Memory owned elsewhere (a memory-mapped file, a caller's array); `owner` keeps it alive.
  static Ref<Storage> wrap(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner);

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  uint64_t version() const { return version_; }
  void bump_version() { ++version_; }

  static void destroy(Storage* s);

 private:
  friend class ObjectPool<Storage>;
  Storage() = default;
  ~Storage() = default;

  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;  // null for wrapped memory
  std::shared_ptr<void> owner_;
  uint64_t version_ = 0;
};

}  // namespace modu
