// core/cpu/kernels.h — registration entry points of the CPU kernel families (one per source file).
#pragma once

#include "core/ops/dispatch.h"

namespace modu::cpu {

void register_elementwise_kernels(KernelRegistry& r);  // elementwise.cpp
void register_reduce_kernels(KernelRegistry& r);       // reduce.cpp
void register_matmul_kernels(KernelRegistry& r);       // matmul.cpp
void register_nn_kernels(KernelRegistry& r);           // softmax, losses, norms: nn.cpp
void register_index_kernels(KernelRegistry& r);        // embedding, gather/scatter, concat: index.cpp
void register_attention_kernels(KernelRegistry& r);    // attention, rotary: attention.cpp
void register_image_kernels(KernelRegistry& r);        // conv2d, upsample, pooling: image.cpp
void register_optim_kernels(KernelRegistry& r);        // adamw_: optim.cpp

}  // namespace modu::cpu

namespace modu::cpu {
// A contiguous copy of t (same dtype) made without going through dispatch (no tape, no counters).
Tensor contiguous_copy(const Tensor& t);
// dst <- src (src broadcast to dst, dtype converted), any strides, no dispatch.
void copy_into(Tensor& dst, const Tensor& src);
// n elements of T from the caching allocator (64-byte aligned, uninitialised): kernel scratch that
// makes no heap allocation in steady state. Keep the object alive while the memory is used.
template <class T>
struct Scratch {
  Tensor buffer;
  T* data;
  explicit Scratch(int64_t n)
      : buffer(Tensor::empty(Dims{n * static_cast<int64_t>(sizeof(T))}, DType::U8)),
        data(static_cast<T*>(buffer.data_ptr())) {}
  T& operator[](int64_t i) { return data[i]; }
};
// t itself when contiguous, else contiguous_copy(t).
inline Tensor as_contiguous(const Tensor& t) { return t.is_contiguous() ? t : contiguous_copy(t); }
}  // namespace modu::cpu
