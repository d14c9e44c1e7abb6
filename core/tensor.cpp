// core/tensor.cpp — Tensor creation, metadata, views (through the op table), values and printing.
#include "core/tensor.h"

#include <algorithm>
#include <cstring>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "core/ops/ops.h"
#include "core/ops/shape_rules.h"

namespace modu {

void TensorImpl::destroy(TensorImpl* t) { ObjectPool<TensorImpl>::instance().recycle(t); }

namespace {
Tensor make_impl(Ref<Storage> storage, const Dims& shape, const Dims& strides, int64_t offset, DType dtype) {
  TensorImpl* impl = ObjectPool<TensorImpl>::instance().make();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = dtype;
  return Tensor(Ref<TensorImpl>(impl));
}
}  // namespace

Tensor Tensor::empty(const Dims& shape, DType dtype, Device device) {
  for (int64_t s : shape) MODU_CHECK(s >= 0, "negative size in shape ", shape.str());
  size_t nbytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  return make_impl(Storage::allocate(nbytes, device), shape, contiguous_strides(shape), 0, dtype);
}

Tensor Tensor::make_view(Ref<Storage> storage, const Dims& shape, const Dims& strides, int64_t offset,
                         DType dtype) {
  return make_impl(std::move(storage), shape, strides, offset, dtype);
}

Tensor Tensor::full(const Dims& shape, double value, DType dtype, Device device) {
  FactoryAttrs a;
  a.shape = shape;
  a.dtype = dtype;
  a.device = device;
  a.a = value;
  return dispatch1(OpId::full, a, {});
}
Tensor Tensor::zeros(const Dims& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Dims& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full(Dims{}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  FactoryAttrs a;
  a.shape = Dims{n};
  a.dtype = dtype;
  a.device = device;
  a.a = 0;
  a.b = 1;
  return dispatch1(OpId::arange, a, {});
}

Tensor Tensor::from_blob_copy(const void* data, const Dims& shape, DType dtype) {
  Tensor t = empty(shape, dtype, Device::cpu());
  if (t.nbytes()) std::memcpy(t.data_ptr(), data, t.nbytes());
  return t;
}

Tensor Tensor::wrap(void* data, const Dims& shape, DType dtype, Device device, std::shared_ptr<void> owner) {
  size_t nbytes = static_cast<size_t>(shape.numel()) * dtype_size(dtype);
  return make_impl(Storage::wrap(data, nbytes, device, std::move(owner)), shape, contiguous_strides(shape), 0,
                   dtype);
}

int64_t Tensor::size(int64_t d) const { return impl_->shape[normalize_dim(d, dim())]; }
int64_t Tensor::stride(int64_t d) const { return impl_->strides[normalize_dim(d, dim())]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = dim() - 1; i >= 0; --i) {
    int64_t s = impl_->shape[i];
    if (s == 1) continue;
    if (impl_->strides[i] != expected) return false;
    expected *= s;
  }
  return true;
}

// ---- views ----------------------------------------------------------------------------------------

namespace {
Dims resolve_shape(const Tensor& x, const Dims& shape, const char* what) {
  Dims s = shape;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < s.size(); ++i) {
    if (s[i] == -1) {
      MODU_CHECK(infer < 0, what, ": only one dim may be -1 in ", shape.str());
      infer = i;
    } else {
      MODU_CHECK(s[i] >= 0, what, ": negative size in ", shape.str());
      known *= s[i];
    }
  }
  if (infer >= 0) {
    MODU_CHECK(known > 0 && x.numel() % known == 0, what, ": cannot infer -1 in ", shape.str(), " for ",
               describe(x));
    s[infer] = x.numel() / known;
  }
  return s;
}
}  // namespace

Tensor Tensor::view(const Dims& shape) const {
  const Tensor* in[] = {this};
  return dispatch1(OpId::view, ShapeAttrs{resolve_shape(*this, shape, "view")}, in);
}

Tensor Tensor::reshape(const Dims& shape) const {
  Dims s = resolve_shape(*this, shape, "reshape");
  Dims st;
  if (s.numel() == numel() && view_strides(this->shape(), strides(), s, &st)) return view(s);
  return contiguous().view(s);
}

Tensor Tensor::permute(const Dims& dims) const {
  Dims p;
  for (int64_t d : dims) p.push_back(normalize_dim(d, dim(), "permute dim"));
  const Tensor* in[] = {this};
  return dispatch1(OpId::permute, PermuteAttrs{p}, in);
}

Tensor Tensor::transpose(int64_t a, int64_t b) const {
  int da = normalize_dim(a, dim(), "transpose dim"), db = normalize_dim(b, dim(), "transpose dim");
  Dims p;
  for (int i = 0; i < dim(); ++i) p.push_back(i);
  std::swap(p[da], p[db]);
  return permute(p);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  int dd = normalize_dim(d, dim(), "slice dim");
  int64_t n = size(dd);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  SliceAttrs a;
  a.dim = dd;
  a.start = start;
  a.end = end;
  a.step = step;
  const Tensor* in[] = {this};
  return dispatch1(OpId::slice, a, in);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  int dd = normalize_dim(d, dim(), "select dim");
  int64_t n = size(dd);
  int64_t i = index < 0 ? index + n : index;
  MODU_CHECK(i >= 0 && i < n, "select: index ", index, " out of range for dim ", dd, " of ", describe(*this));
  return slice(dd, i, i + 1).squeeze(dd);
}

Tensor Tensor::expand(const Dims& shape) const {
  Dims s = shape;
  int lead = s.size() - dim();
  for (int i = 0; i < s.size(); ++i)
    if (s[i] == -1) {
      MODU_CHECK(i >= lead, "expand: -1 is not allowed for new leading dims in ", shape.str());
      s[i] = size(i - lead);
    }
  const Tensor* in[] = {this};
  return dispatch1(OpId::expand, ShapeAttrs{s}, in);
}

Tensor Tensor::squeeze(int64_t d) const {
  int dd = normalize_dim(d, dim(), "squeeze dim");
  MODU_CHECK(size(dd) == 1, "squeeze: dim ", dd, " of ", describe(*this), " has size ", size(dd), ", not 1");
  Dims s = shape();
  s.erase(dd);
  return view(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  int dd = normalize_dim(d, dim() + 1, "unsqueeze dim");
  Dims s = shape();
  s.insert(dd, 1);
  return view(s);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape(Dims{1});
  int s0 = normalize_dim(start, dim(), "flatten start"), s1 = normalize_dim(end, dim(), "flatten end");
  Dims s;
  for (int i = 0; i < s0; ++i) s.push_back(size(i));
  int64_t p = 1;
  for (int i = s0; i <= s1; ++i) p *= size(i);
  s.push_back(p);
  for (int i = s1 + 1; i < dim(); ++i) s.push_back(size(i));
  return reshape(s);
}

std::vector<Tensor> Tensor::split_sizes(const std::vector<int64_t>& sizes, int64_t d) const {
  SplitAttrs a;
  a.dim = normalize_dim(d, dim(), "split dim");
  MODU_CHECK(!sizes.empty() && sizes.size() <= static_cast<size_t>(kMaxDims), "split: between 1 and ",
             kMaxDims, " pieces supported, got ", sizes.size());
  for (int64_t s : sizes) a.sizes.push_back(s);
  std::vector<Tensor> out(sizes.size());
  const Tensor* in[] = {this};
  dispatch(OpId::split, a, in, out);
  return out;
}

template <int N>
std::array<Tensor, N> Tensor::chunk(int64_t d) const {
  SplitAttrs a;
  a.dim = normalize_dim(d, dim(), "chunk dim");
  MODU_CHECK(size(a.dim) % N == 0, "chunk: dim ", a.dim, " of ", describe(*this), " does not divide into ", N);
  for (int i = 0; i < N; ++i) a.sizes.push_back(size(a.dim) / N);
  std::array<Tensor, N> out;
  const Tensor* in[] = {this};
  dispatch(OpId::split, a, in, out);
  return out;
}
template std::array<Tensor, 2> Tensor::chunk<2>(int64_t) const;
template std::array<Tensor, 3> Tensor::chunk<3>(int64_t) const;
template std::array<Tensor, 4> Tensor::chunk<4>(int64_t) const;

std::vector<Tensor> Tensor::split(int64_t split_size, int64_t d) const {
  MODU_CHECK(split_size > 0, "split: split_size must be positive");
  int64_t n = size(d);
  std::vector<int64_t> sizes;
  for (int64_t s = 0; s < n; s += split_size) sizes.push_back(std::min(split_size, n - s));
  if (sizes.empty()) sizes.push_back(0);
  return split_sizes(sizes, d);
}

// ---- copies and conversion ---------------------------------------------------------------------------

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : modu::copy(*this); }
Tensor Tensor::clone() const { return modu::copy(*this); }
Tensor Tensor::to(DType dtype) const { return dtype == this->dtype() ? *this : cast(*this, dtype); }
Tensor Tensor::to(Device device) const { return device == this->device() ? *this : to_device(*this, device); }

Tensor Tensor::detach() const {
  return make_impl(impl_->storage, impl_->shape, impl_->strides, impl_->offset, impl_->dtype);
}

Tensor& Tensor::set_requires_grad(bool value) {
  MODU_CHECK(!value || is_floating(dtype()), "requires_grad needs a floating tensor, got ", describe(*this));
  MODU_CHECK(is_leaf(), "set_requires_grad on a non-leaf tensor; detach() it first");
  impl_->requires_grad = value;
  return *this;
}

// ---- in place ---------------------------------------------------------------------------------------

Tensor& Tensor::copy_(const Tensor& src) {
  const Tensor* in[] = {this, &src};
  dispatch1(OpId::copy_, NoAttrs{}, in);
  return *this;
}
Tensor& Tensor::fill_(double value) {
  const Tensor* in[] = {this};
  dispatch1(OpId::fill_, ScalarAttrs{value}, in);
  return *this;
}
Tensor& Tensor::add_(const Tensor& src, double alpha) {
  const Tensor* in[] = {this, &src};
  dispatch1(OpId::add_, ScalarAttrs{alpha}, in);
  return *this;
}
Tensor& Tensor::mul_(double value) {
  const Tensor* in[] = {this};
  dispatch1(OpId::mul_scalar_, ScalarAttrs{value}, in);
  return *this;
}

// ---- values -----------------------------------------------------------------------------------------

double read_element(const Tensor& t, int64_t linear_index) {
  MODU_CHECK(t.device().is_cpu(), "read_element needs a CPU tensor, got ", describe(t));
  int64_t off = 0, rem = linear_index;
  for (int d = t.dim() - 1; d >= 0; --d) {
    int64_t s = t.shape()[d];
    off += (rem % s) * t.strides()[d];
    rem /= s;
  }
  const char* base = static_cast<const char*>(t.data_ptr());
  switch (t.dtype()) {
    case DType::F32: return reinterpret_cast<const float*>(base)[off];
    case DType::F64: return reinterpret_cast<const double*>(base)[off];
    case DType::BF16: return bf16_bits_to_float(reinterpret_cast<const uint16_t*>(base)[off]);
    case DType::F16: return f16_bits_to_float(reinterpret_cast<const uint16_t*>(base)[off]);
    case DType::I32: return reinterpret_cast<const int32_t*>(base)[off];
    case DType::I64: return static_cast<double>(reinterpret_cast<const int64_t*>(base)[off]);
    case DType::U8: return reinterpret_cast<const uint8_t*>(base)[off];
    case DType::Bool: return reinterpret_cast<const uint8_t*>(base)[off] ? 1.0 : 0.0;
  }
  return 0;
}

double Tensor::item() const {
  MODU_CHECK(numel() == 1, "item() needs a one-element tensor, got ", describe(*this));
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  return read_element(c, 0);
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  std::vector<T> v(static_cast<size_t>(numel()));
  if (c.dtype() == DType::I64) {  // exact for large ids
    Tensor cc = c.contiguous();
    const int64_t* p = cc.data<int64_t>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(p[i]);
    return v;
  }
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<T>(read_element(c, static_cast<int64_t>(i)));
  return v;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined tensor";
  std::ostringstream os;
  os << dtype_name(t.dtype()) << t.shape().str();
  if (!t.device().is_cpu()) os << " on " << t.device().str();
  return os.str();
}

std::string Tensor::str(int max_per_dim) const {
  if (!defined()) return "tensor(undefined)";
  Tensor c = device().is_cpu() ? *this : to(Device::cpu());
  std::ostringstream os;
  os << "tensor(";
  bool fp = is_floating(dtype());
  // Recursive printer over dims, eliding the middle of long dims.
  std::vector<int64_t> idx(static_cast<size_t>(dim()), 0);
  auto element = [&](int64_t linear) {
    double v = read_element(c, linear);
    if (fp) os << std::setprecision(6) << v;
    else os << static_cast<int64_t>(v);
  };
  auto rec = [&](auto&& self, int d, int64_t base) -> void {
    if (d == dim()) {
      element(base);
      return;
    }
    int64_t n = size(d), inner = 1;
    for (int k = d + 1; k < dim(); ++k) inner *= size(k);
    os << "[";
    for (int64_t i = 0; i < n; ++i) {
      if (n > 2 * max_per_dim && i == max_per_dim) {
        os << "..., ";
        i = n - max_per_dim;
      }
      self(self, d + 1, base + i * inner);
      if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(static_cast<size_t>(d + 8), ' '));
    }
    os << "]";
  };
  rec(rec, 0, 0);
  os << ", " << describe(*this) << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }
std::ostream& operator<<(std::ostream& os, const Dims& d) { return os << d.str(); }

// ---- operators --------------------------------------------------------------------------------------

Tensor Tensor::operator-() const { return neg(*this); }
Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator+(const Tensor& a, double s) { return add_scalar(a, s); }
Tensor operator-(const Tensor& a, double s) { return add_scalar(a, -s); }
Tensor operator*(const Tensor& a, double s) { return mul_scalar(a, s); }
Tensor operator/(const Tensor& a, double s) { return mul_scalar(a, 1.0 / s); }
Tensor operator-(double s, const Tensor& a) { return add_scalar(neg(a), s); }

}  // namespace modu
