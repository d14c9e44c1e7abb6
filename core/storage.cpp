// core/storage.cpp — pooled Storage objects over the device allocators.
#include "core/storage.h"

#include "core/allocator.h"

namespace modu {

Ref<Storage> Storage::allocate(size_t nbytes, Device device) {
  Allocator* alloc = allocator_for(device);
  Storage* s = ObjectPool<Storage>::instance().make();
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->allocator_ = alloc;
  s->data_ = nbytes ? alloc->allocate(nbytes) : nullptr;
  s->version_ = 0;
  return Ref<Storage>(s);
}

Ref<Storage> Storage::wrap(void* data, size_t nbytes, Device device, std::shared_ptr<void> owner) {
  Storage* s = ObjectPool<Storage>::instance().make();
  s->data_ = data;
  s->nbytes_ = nbytes;
  s->device_ = device;
  s->allocator_ = nullptr;
  s->owner_ = std::move(owner);
  return Ref<Storage>(s);
}

void Storage::destroy(Storage* s) {
  if (s->allocator_ && s->data_) s->allocator_->deallocate(s->data_, s->nbytes_);
  ObjectPool<Storage>::instance().recycle(s);
}

}  // namespace modu
