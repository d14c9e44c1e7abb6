// core/ops/ops.cpp — front ends of the op table (see ops.h): argument normalisation, then dispatch.
#include "core/ops/ops.h"

#include <cmath>
#include <cstdint>

#include "core/small_vector.h"

namespace modu {

namespace {
Tensor unary(OpId op, const Tensor& x, const OpAttrs& attrs = OpAttrs()) {
  const Tensor* in[] = {&x};
  return dispatch1(op, attrs, in);
}
Tensor binary(OpId op, const Tensor& a, const Tensor& b, const OpAttrs& attrs = OpAttrs()) {
  const Tensor* in[] = {&a, &b};
  return dispatch1(op, attrs, in);
}
ReduceAttrs reduce_attrs(const Tensor& x, std::span<const int64_t> dims, bool keepdim, int64_t correction,
                         const char* op) {
  ReduceAttrs r;
  for (int64_t d : dims) {
    int dd = normalize_dim(d, x.dim(), op);
    MODU_CHECK(!(r.dims_mask & (1u << dd)), op, ": dim ", d, " listed twice");
    r.dims_mask |= 1u << dd;
  }
  if (dims.empty()) {  // all dims; keep an explicit mask so keepdim works for 0-d tensors too
    for (int d = 0; d < x.dim(); ++d) r.dims_mask |= 1u << d;
  }
  r.keepdim = keepdim;
  r.correction = static_cast<int32_t>(correction);
  return r;
}
Tensor reduce(OpId op, const Tensor& x, std::span<const int64_t> dims, bool keepdim, int64_t correction = 0) {
  return unary(op, x, reduce_attrs(x, dims, keepdim, correction, op_name(op)));
}
}  // namespace

Tensor neg(const Tensor& x) { return unary(OpId::neg, x); }
Tensor exp(const Tensor& x) { return unary(OpId::exp, x); }
Tensor log(const Tensor& x) { return unary(OpId::log, x); }
Tensor sqrt(const Tensor& x) { return unary(OpId::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(OpId::rsqrt, x); }
Tensor abs(const Tensor& x) { return unary(OpId::abs, x); }
Tensor sign(const Tensor& x) { return unary(OpId::sign, x); }
Tensor sin(const Tensor& x) { return unary(OpId::sin, x); }
Tensor cos(const Tensor& x) { return unary(OpId::cos, x); }
Tensor tanh(const Tensor& x) { return unary(OpId::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(OpId::sigmoid, x); }
Tensor log_sigmoid(const Tensor& x) { return unary(OpId::log_sigmoid, x); }
Tensor relu(const Tensor& x) { return unary(OpId::relu, x); }
Tensor silu(const Tensor& x) { return unary(OpId::silu, x); }
Tensor gelu_tanh(const Tensor& x) { return unary(OpId::gelu_tanh, x); }
Tensor gelu_erf(const Tensor& x) { return unary(OpId::gelu_erf, x); }
Tensor add_scalar(const Tensor& x, double v) { return unary(OpId::add_scalar, x, ScalarAttrs{v}); }
Tensor mul_scalar(const Tensor& x, double v) { return unary(OpId::mul_scalar, x, ScalarAttrs{v}); }
Tensor pow_scalar(const Tensor& x, double e) { return unary(OpId::pow_scalar, x, ScalarAttrs{e}); }
Tensor square(const Tensor& x) { return mul(x, x); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  MODU_CHECK(lo <= hi, "clamp: lo ", lo, " > hi ", hi);
  return unary(OpId::clamp, x, ClampAttrs{lo, hi});
}

Tensor add(const Tensor& a, const Tensor& b) { return binary(OpId::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(OpId::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(OpId::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(OpId::div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(OpId::pow, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(OpId::maximum, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary(OpId::minimum, a, b); }
Tensor sigmoid_backward(const Tensor& y, const Tensor& gy) { return binary(OpId::sigmoid_backward, y, gy); }
Tensor tanh_backward(const Tensor& y, const Tensor& gy) { return binary(OpId::tanh_backward, y, gy); }
Tensor relu_backward(const Tensor& x, const Tensor& gy) { return binary(OpId::relu_backward, x, gy); }
Tensor silu_backward(const Tensor& x, const Tensor& gy) { return binary(OpId::silu_backward, x, gy); }
Tensor gelu_tanh_backward(const Tensor& x, const Tensor& gy) { return binary(OpId::gelu_tanh_backward, x, gy); }
Tensor gelu_erf_backward(const Tensor& x, const Tensor& gy) { return binary(OpId::gelu_erf_backward, x, gy); }
Tensor log_sigmoid_backward(const Tensor& x, const Tensor& gy) {
  return binary(OpId::log_sigmoid_backward, x, gy);
}
Tensor eq(const Tensor& a, const Tensor& b) { return binary(OpId::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(OpId::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(OpId::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(OpId::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(OpId::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(OpId::ge, a, b); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Tensor* in[] = {&cond, &a, &b};
  return dispatch1(OpId::where, NoAttrs{}, in);
}
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  const Tensor* in[] = {&x, &mask};
  return dispatch1(OpId::masked_fill, ScalarAttrs{value}, in);
}

Tensor sum(const Tensor& x, std::initializer_list<int64_t> dims, bool keepdim) {
  return reduce(OpId::sum, x, std::span<const int64_t>(dims.begin(), dims.size()), keepdim);
}
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(OpId::sum, x, dims, keepdim);
}
Tensor sum_accumulate(const Tensor& x, std::initializer_list<int64_t> dims, bool keepdim) {
  ReduceAttrs r = reduce_attrs(x, std::span<const int64_t>(dims.begin(), dims.size()), keepdim, 0, "sum");
  r.accumulate_out = true;
  return unary(OpId::sum, x, r);
}
Tensor mean(const Tensor& x, std::initializer_list<int64_t> dims, bool keepdim) {
  return reduce(OpId::mean, x, std::span<const int64_t>(dims.begin(), dims.size()), keepdim);
}
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return reduce(OpId::mean, x, dims, keepdim);
}
Tensor var(const Tensor& x, std::initializer_list<int64_t> dims, int64_t correction, bool keepdim) {
  return reduce(OpId::var, x, std::span<const int64_t>(dims.begin(), dims.size()), keepdim, correction);
}

std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim) {
  int d = normalize_dim(dim, x.dim(), "max dim");
  auto [v, i] = call_op<2>(OpId::max, DimAttrs{d}, {&x});
  if (keepdim) return {v.unsqueeze(d), i.unsqueeze(d)};
  return {v, i};
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  int d = normalize_dim(dim, x.dim(), "argmax dim");
  Tensor i = unary(OpId::argmax, x, DimAttrs{d});
  return keepdim ? i.unsqueeze(d) : i;
}

Tensor sum_squares(std::span<const Tensor> xs) {
  MODU_CHECK(!xs.empty(), "sum_squares: no inputs");
  thread_local std::vector<const Tensor*> in;  // reused: no heap allocation per call once warm
  in.clear();
  for (const Tensor& x : xs) in.push_back(&x);
  return dispatch1(OpId::sum_squares, NoAttrs{}, std::span<const Tensor* const>(in.data(), in.size()));
}

Tensor sum_to_shape(const Tensor& x, const Dims& shape) {
  if (x.shape() == shape) return x;
  int lead = x.dim() - shape.size();
  MODU_CHECK(lead >= 0, "sum_to_shape: ", describe(x), " has fewer dims than ", shape.str());
  ReduceAttrs r;
  r.keepdim = true;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) r.dims_mask |= 1u << i;
    else if (shape[i - lead] == 1 && x.size(i) != 1) r.dims_mask |= 1u << i;
    else MODU_CHECK(shape[i - lead] == x.size(i), "sum_to_shape: ", describe(x), " does not broadcast from ",
                    shape.str());
  }
  if (r.dims_mask == 0) return x.view(shape);
  return unary(OpId::sum, x, r).view(shape);
}

Tensor matmul(const Tensor& a, const Tensor& b) { return binary(OpId::matmul, a, b); }
Tensor matmul_accumulate(const Tensor& a, const Tensor& b) {
  MatmulAttrs m;
  m.accumulate_out = true;
  return binary(OpId::matmul, a, b, m);
}
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  if (!b.defined()) return matmul(x, w.t());
  const Tensor* in[] = {&x, &w, &b};
  return dispatch1(OpId::linear, NoAttrs{}, in);
}

Tensor softmax(const Tensor& x, int64_t dim) {
  return unary(OpId::softmax, x, DimAttrs{normalize_dim(dim, x.dim(), "softmax dim")});
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return unary(OpId::log_softmax, x, DimAttrs{normalize_dim(dim, x.dim(), "log_softmax dim")});
}
Tensor softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim) {
  const Tensor* in[] = {&y, &gy};
  return dispatch1(OpId::softmax_backward, DimAttrs{normalize_dim(dim, y.dim())}, in);
}
Tensor log_softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim) {
  const Tensor* in[] = {&y, &gy};
  return dispatch1(OpId::log_softmax_backward, DimAttrs{normalize_dim(dim, y.dim())}, in);
}
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, bool mean,
                     int64_t valid_classes) {
  CrossEntropyAttrs a;
  a.ignore_index = ignore_index;
  a.mean = mean;
  a.valid_classes = valid_classes;
  return call_op<2>(OpId::cross_entropy, a, {&logits, &target})[0];
}

namespace {
NormAttrs norm_attrs(double eps, std::optional<DType> y_dtype) {
  NormAttrs a;
  a.eps = eps;
  a.y_dtype_set = y_dtype.has_value();
  if (y_dtype) a.y_dtype = *y_dtype;
  return a;
}
}  // namespace
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, std::optional<DType> y_dtype) {
  return call_op<3>(OpId::layer_norm, norm_attrs(eps, y_dtype), {&x, &w, &b})[0];
}
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps, std::optional<DType> y_dtype) {
  return call_op<2>(OpId::rms_norm, norm_attrs(eps, y_dtype), {&x, &w})[0];
}
AddNorm add_layer_norm(const Tensor& x, const Tensor& r, const Tensor& w, const Tensor& b, double eps,
                       std::optional<DType> y_dtype) {
  auto o = call_op<4>(OpId::add_layer_norm, norm_attrs(eps, y_dtype), {&x, &r, &w, &b});
  return {o[0], o[1]};
}
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, double eps) {
  NormAttrs a;
  a.eps = eps;
  a.groups = groups;
  return call_op<3>(OpId::group_norm, a, {&x, &w, &b})[0];
}

Tensor embedding(const Tensor& weight, const Tensor& indices) { return binary(OpId::embedding, weight, indices); }
Tensor embedding_backward(const Tensor& gy, const Tensor& indices, int64_t rows) {
  const Tensor* in[] = {&gy, &indices};
  return dispatch1(OpId::embedding_backward, IndexAttrs{rows}, in);
}
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& indices) {
  const Tensor* in[] = {&x, &indices};
  return dispatch1(OpId::index_select, DimAttrs{normalize_dim(dim, x.dim(), "index_select dim")}, in);
}
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& indices, const Tensor& src) {
  const Tensor* in[] = {&x, &indices, &src};
  return dispatch1(OpId::index_add, DimAttrs{normalize_dim(dim, x.dim(), "index_add dim")}, in);
}
Tensor gather(const Tensor& x, int64_t dim, const Tensor& indices) {
  const Tensor* in[] = {&x, &indices};
  return dispatch1(OpId::gather, DimAttrs{normalize_dim(dim, x.dim(), "gather dim")}, in);
}
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& indices, const Tensor& src) {
  const Tensor* in[] = {&x, &indices, &src};
  return dispatch1(OpId::scatter_add, DimAttrs{normalize_dim(dim, x.dim(), "scatter_add dim")}, in);
}
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) { return concat(std::span<const Tensor>(xs), dim); }

Tensor concat(std::span<const Tensor> xs, int64_t dim) {
  MODU_CHECK(!xs.empty(), "concat: no inputs");
  if (xs.size() == 1) return xs[0];
  SmallVec<const Tensor*, 8> in;
  for (const Tensor& x : xs) in.push_back(&x);
  return dispatch1(OpId::concat, DimAttrs{normalize_dim(dim, xs[0].dim(), "concat dim")},
                   std::span<const Tensor* const>(in.data(), in.size()));
}

Tensor dropout(const Tensor& x, double p, Generator& gen) {
  MODU_CHECK(p >= 0 && p < 1, "dropout: p must be in [0, 1), got ", p);
  if (p == 0) return x;
  DropoutAttrs a;
  a.p = p;
  a.key = gen.key();
  a.counter = gen.advance(static_cast<uint64_t>((x.numel() + 3) / 4));
  return unary(OpId::dropout, x, a);
}

namespace {
Tensor random_factory(OpId op, const Dims& shape, double a, double b, Generator& gen, DType dtype,
                      Device device, int64_t per_block) {
  FactoryAttrs f;
  f.shape = shape;
  f.dtype = dtype;
  f.device = device;
  f.a = a;
  f.b = b;
  f.key = gen.key();
  f.counter = gen.advance(static_cast<uint64_t>((shape.numel() + per_block - 1) / per_block));
  return dispatch1(op, f, {});
}
}  // namespace

Tensor uniform(const Dims& shape, double lo, double hi, Generator& gen, DType dtype, Device device) {
  return random_factory(OpId::uniform, shape, lo, hi, gen, dtype, device, 4);
}
Tensor normal(const Dims& shape, double mean, double std, Generator& gen, DType dtype, Device device) {
  return random_factory(OpId::normal, shape, mean, std, gen, dtype, device, 2);
}

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  AttentionAttrs a;
  a.causal = causal;
  a.scale = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  return call_op<2>(OpId::attention, a, {&q, &k, &v})[0];
}

Tensor attention_packed(const Tensor& qkv, int64_t n_head, bool causal, double scale) {
  MODU_CHECK(n_head > 0 && n_head <= INT32_MAX, "attention_packed: n_head = ", n_head, " must be positive");
  MODU_CHECK(qkv.dim() == 3 && qkv.size(2) % (3 * n_head) == 0, "attention_packed: need qkv (B, T, 3 * ", n_head,
             " * HS), got ", describe(qkv));
  AttentionAttrs a;
  a.causal = causal;
  a.n_head = static_cast<int32_t>(n_head);
  const int64_t HS = qkv.size(2) / (3 * n_head);
  a.scale = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(HS));
  return call_op<2>(OpId::attention_packed, a, {&qkv})[0];
}

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  double s = scale > 0 ? scale : 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  Tensor att = mul_scalar(matmul(q, k.transpose(-2, -1)), s);  // (B, NH, T, S)
  if (causal) {
    int64_t T = q.size(2), S = k.size(2);
    // query i (at absolute position i + S - T) sees keys j <= i + S - T
    Tensor qi = Tensor::arange(T, DType::I64, q.device()).view(Dims{T, 1});
    Tensor kj = Tensor::arange(S, DType::I64, q.device()).view(Dims{1, S});
    Tensor future = gt(sub(kj, qi), Tensor::scalar(static_cast<double>(S - T), DType::I64, q.device()));
    att = masked_fill(att, future, -INFINITY);
  }
  return matmul(softmax(att, -1), v);
}

Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const Tensor* in[] = {&x, &cos, &sin};
  return dispatch1(OpId::rotary, RotaryAttrs{inverse}, in);
}

std::pair<Tensor, Tensor> rotary_tables(int64_t start, int64_t T, int64_t head_size, double theta, DType dtype,
                                        Device device) {
  MODU_CHECK(head_size % 2 == 0, "rotary_tables: head size must be even, got ", head_size);
  int64_t half = head_size / 2;
  std::vector<double> c(static_cast<size_t>(T * half)), s(c.size());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      double angle = static_cast<double>(start + t) * std::pow(theta, -2.0 * static_cast<double>(i) / head_size);
      c[static_cast<size_t>(t * half + i)] = std::cos(angle);
      s[static_cast<size_t>(t * half + i)] = std::sin(angle);
    }
  Tensor ct = Tensor::from_vector(c, Dims{T, half}, dtype).to(device);
  Tensor st = Tensor::from_vector(s, Dims{T, half}, dtype).to(device);
  return {ct, st};
}

Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride, int padding) {
  ConvAttrs a;
  a.stride_h = a.stride_w = stride;
  a.pad_h = a.pad_w = padding;
  Tensor bias = b.defined() ? b : Tensor::zeros(Dims{w.size(0)}, w.dtype(), w.device());
  const Tensor* in[] = {&x, &w, &bias};
  return dispatch1(OpId::conv2d, a, in);
}
Tensor upsample_nearest2d(const Tensor& x, int scale) {
  UpsampleAttrs a;
  a.scale_h = a.scale_w = scale;
  return unary(OpId::upsample_nearest2d, x, a);
}
Tensor avg_pool2d(const Tensor& x, int kernel, int stride) {
  PoolAttrs a;
  a.kernel_h = a.kernel_w = kernel;
  a.stride_h = a.stride_w = stride > 0 ? stride : kernel;
  return unary(OpId::avg_pool2d, x, a);
}

Tensor cast(const Tensor& x, DType dtype) { return unary(OpId::cast, x, CastAttrs{dtype}); }
Tensor copy(const Tensor& x) { return unary(OpId::copy, x); }
Tensor to_device(const Tensor& x, Device device) { return unary(OpId::to_device, x, DeviceAttrs{device}); }

void adamw_(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWAttrs& attrs) {
  const Tensor* in[] = {&param, &grad, &m, &v};
  dispatch1(OpId::adamw_, attrs, in);
}

void adamw_multi_(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                  const AdamWAttrs& attrs) {
  const size_t n = params.size();
  MODU_CHECK(n > 0 && grads.size() == n && m.size() == n && v.size() == n, "adamw_multi_: ", n, " parameters, ",
             grads.size(), " gradients, ", m.size(), " first and ", v.size(), " second moments");
  MODU_CHECK(attrs.decayed >= 0 && attrs.decayed <= static_cast<int64_t>(n), "adamw_multi_: decayed = ", attrs.decayed,
             " is outside [0, ", n, "]");
  thread_local std::vector<const Tensor*> in;  // reused: no heap allocation per optimizer step once warm
  in.clear();
  for (const Tensor& t : params) in.push_back(&t);
  for (const Tensor& t : grads) in.push_back(&t);
  for (const Tensor& t : m) in.push_back(&t);
  for (const Tensor& t : v) in.push_back(&t);
  dispatch1(OpId::adamw_multi_, attrs, std::span<const Tensor* const>(in.data(), in.size()));
  in.clear();
}

}  // namespace modu
