// core/tensor.h — Tensor: shared storage + dtype + shape + strides + offset.
//
// A Tensor is a cheap handle (one intrusive pointer) to a TensorImpl. Views (view/reshape, permute,
// transpose, slice/narrow, expand, squeeze/unsqueeze, split) share the storage and go through the op
// table like every other op, so autograd records them. Offsets and strides are in elements.
//
// The autograd fields of TensorImpl are stored here but interpreted only by autograd/ (core knows
// nothing of gradients): grad_fn is the tape node that produced the tensor (null for leaves), grad the
// accumulated gradient of a leaf, and the scratch counters belong to the backward engine.
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <span>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/device.h"
#include "core/dims.h"
#include "core/dtype.h"
#include "core/refcount.h"
#include "core/storage.h"

namespace modu {

// Base of autograd's tape nodes, so a tensor can hold its producer without core knowing its layout.
class GradNodeBase : public RefCounted {
 public:
  static void destroy(GradNodeBase* n) { n->destroy_self(); }

 protected:
  virtual ~GradNodeBase() = default;
  virtual void destroy_self() = 0;
};

struct TensorImpl : RefCounted {
  Ref<Storage> storage;
  Dims shape;
  Dims strides;
  int64_t offset = 0;
  DType dtype = DType::F32;

  // --- autograd slots (see file comment) ---
  bool requires_grad = false;
  uint32_t output_nr = 0;
  Ref<GradNodeBase> grad_fn;
  Ref<TensorImpl> grad;
  int32_t hook_slot = -1;     // index into autograd's grad-ready hooks, -1 = none
  int32_t pending = 0;        // backward engine: contributions still due in the running pass
  int32_t capture_slot = -1;  // backward engine: nested pass collects this leaf's gradient

  static void destroy(TensorImpl* t);
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Ref<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation -------------------------------------------------------------------------------
  static Tensor empty(const Dims& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor zeros(const Dims& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor ones(const Dims& shape, DType dtype = DType::F32, Device device = Device::cpu());
  static Tensor full(const Dims& shape, double value, DType dtype = DType::F32,
                     Device device = Device::cpu());
  static Tensor arange(int64_t n, DType dtype = DType::I64, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::F32, Device device = Device::cpu());
  // Copies `values` (converted to dtype) into a new CPU tensor of `shape`.
  template <class T>
  static Tensor from_vector(const std::vector<T>& values, const Dims& shape, DType dtype = dtype_of<T>());
  static Tensor from_blob_copy(const void* data, const Dims& shape, DType dtype);
  // A tensor over memory owned elsewhere; `owner` keeps it alive (no copy).
  static Tensor wrap(void* data, const Dims& shape, DType dtype, Device device, std::shared_ptr<void> owner);
  // A tensor over `storage` with explicit layout (no checks beyond bounds).
  static Tensor make_view(Ref<Storage> storage, const Dims& shape, const Dims& strides, int64_t offset,
                          DType dtype);

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_.get() != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const Ref<TensorImpl>& impl_ref() const { return impl_; }
  DType dtype() const { return impl_->dtype; }
  Device device() const { return impl_->storage->device(); }
  const Dims& shape() const { return impl_->shape; }
  const Dims& strides() const { return impl_->strides; }
  int dim() const { return impl_->shape.size(); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return impl_->shape.numel(); }
  int64_t offset() const { return impl_->offset; }
  size_t element_size() const { return dtype_size(impl_->dtype); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;
  const Ref<Storage>& storage() const { return impl_->storage; }
  bool same_storage(const Tensor& o) const { return impl_->storage.get() == o.impl_->storage.get(); }

  // Pointer to element 0 (after the offset). data<T>() checks that T matches the dtype.
  void* data_ptr() const {
    return static_cast<char*>(impl_->storage->data()) + impl_->offset * dtype_size(impl_->dtype);
  }
  template <class T>
  T* data() const {
    MODU_CHECK(dtype_of<T>() == impl_->dtype, "data<", dtype_name(dtype_of<T>()), ">() on a ",
               dtype_name(impl_->dtype), " tensor");
    return static_cast<T*>(data_ptr());
  }

  // ---- views (share storage; recorded by autograd) -----------------------------------------------
  Tensor view(const Dims& shape) const;     // -1 allowed once; strides must allow it
  Tensor reshape(const Dims& shape) const;  // a view when possible, else a copy
  Tensor permute(const Dims& dims) const;
  Tensor transpose(int64_t a, int64_t b) const;
  Tensor t() const { return transpose(-2, -1); }
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const {
    return slice(dim, start, start + length);
  }
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Dims& shape) const;           // -1 keeps a dim
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  std::vector<Tensor> split(int64_t split_size, int64_t dim) const;
  // N equal pieces along dim as views, without a heap allocation (the dim must divide by N).
  template <int N>
  std::array<Tensor, N> chunk(int64_t dim) const;
  std::vector<Tensor> split_sizes(const std::vector<int64_t>& sizes, int64_t dim) const;

  // ---- copies and conversion -------------------------------------------------------------------
  Tensor contiguous() const;  // itself when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor detach() const;      // same data, no autograd history, requires_grad false

  // ---- autograd --------------------------------------------------------------------------------
  bool requires_grad() const { return impl_->requires_grad; }
  Tensor& set_requires_grad(bool value = true);
  bool is_leaf() const { return !impl_->grad_fn; }
  Tensor grad() const { return Tensor(impl_->grad); }
  void set_grad(const Tensor& g) { impl_->grad = g.impl_; }
  // Defined in autograd/: reverse-mode sweep from this (scalar unless `grad` is given).
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;

  // ---- in place (under no-grad, or on tensors that need no gradient) -----------------------------
  Tensor& copy_(const Tensor& src);
  Tensor& fill_(double value);
  Tensor& zero_() { return fill_(0.0); }
  Tensor& add_(const Tensor& src, double alpha = 1.0);
  Tensor& mul_(double value);

  // ---- values ----------------------------------------------------------------------------------
  double item() const;  // a one-element tensor's value as double
  template <class T>
  std::vector<T> to_vector() const;  // all elements, row-major, converted to T
  std::string str(int max_per_dim = 6) const;

  // ---- arithmetic sugar (ops in core/ops/ops.h) --------------------------------------------------
  Tensor operator-() const;

 private:
  Ref<TensorImpl> impl_;
};

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
inline Tensor operator+(double s, const Tensor& a) { return a + s; }
inline Tensor operator*(double s, const Tensor& a) { return a * s; }
Tensor operator-(double s, const Tensor& a);

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, const Dims& d);

// Shape description used in error messages: "f32(2, 3) on cpu".
std::string describe(const Tensor& t);

// ---- element access helpers for host code ---------------------------------------------------------
// Reads element `linear_index` (row-major over the logical shape) of a CPU tensor as double.
double read_element(const Tensor& t, int64_t linear_index);

// Defined in tensor.cpp for N = 2, 3, 4.
extern template std::array<Tensor, 2> Tensor::chunk<2>(int64_t) const;
extern template std::array<Tensor, 3> Tensor::chunk<3>(int64_t) const;
extern template std::array<Tensor, 4> Tensor::chunk<4>(int64_t) const;

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Dims& shape, DType dtype) {
  MODU_CHECK(static_cast<int64_t>(values.size()) == shape.numel(), "from_vector: ", values.size(),
             " values for shape ", shape.str(), " (", shape.numel(), " elements)");
  Tensor src = from_blob_copy(values.data(), shape, dtype_of<T>());
  return dtype == dtype_of<T>() ? src : src.to(dtype);
}

}  // namespace modu
