// core/ops/ops.h — the functional front end of the op table: one function per op (and a few
// compositions). Each front end checks its arguments, fills the op's attributes and calls dispatch().
// Error messages name the op and the shapes involved.
#pragma once

#include <array>
#include <initializer_list>
#include <optional>
#include <utility>
#include <vector>

#include "core/ops/dispatch.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace modu {

// Calls an op with N outputs and returns them.
template <int N>
std::array<Tensor, N> call_op(OpId op, const OpAttrs& attrs, std::initializer_list<const Tensor*> in) {
  std::array<Tensor, N> out;
  dispatch(op, attrs, std::span<const Tensor* const>(in.begin(), in.size()), out);
  return out;
}

// ---- elementwise ----------------------------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu_tanh(const Tensor& x);
Tensor gelu_erf(const Tensor& x);
Tensor add_scalar(const Tensor& x, double value);
Tensor mul_scalar(const Tensor& x, double value);
Tensor pow_scalar(const Tensor& x, double exponent);
Tensor square(const Tensor& x);  // mul(x, x)
Tensor clamp(const Tensor& x, double lo, double hi);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);

Tensor sigmoid_backward(const Tensor& y, const Tensor& gy);
Tensor tanh_backward(const Tensor& y, const Tensor& gy);
Tensor relu_backward(const Tensor& x, const Tensor& gy);
Tensor silu_backward(const Tensor& x, const Tensor& gy);
Tensor gelu_tanh_backward(const Tensor& x, const Tensor& gy);
Tensor gelu_erf_backward(const Tensor& x, const Tensor& gy);
Tensor log_sigmoid_backward(const Tensor& x, const Tensor& gy);

Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

// ---- reductions (dims empty = all dims) -------------------------------------------------------------
Tensor sum(const Tensor& x, std::initializer_list<int64_t> dims = {}, bool keepdim = false);
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// The same sum with the result in x's accumulation dtype (f32 for bf16/f16 x; x's own otherwise), not rounded to x's.
Tensor sum_accumulate(const Tensor& x, std::initializer_list<int64_t> dims, bool keepdim = false);
Tensor mean(const Tensor& x, std::initializer_list<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
Tensor var(const Tensor& x, std::initializer_list<int64_t> dims = {}, int64_t correction = 1,
           bool keepdim = false);
std::pair<Tensor, Tensor> max(const Tensor& x, int64_t dim, bool keepdim = false);  // values, indices
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
// Sum of x^2 over every element of every input (one dtype), () in the accumulate dtype (f32 for 16-bit
// floats). The squared gradient norm in one op: each backend reduces all inputs in a few launches.
// Forward-only (it runs on gradients, under no-grad).
Tensor sum_squares(std::span<const Tensor> xs);
// Sums x down to `shape` (the inverse of broadcasting to x's shape).
Tensor sum_to_shape(const Tensor& x, const Dims& shape);

// ---- linear algebra -------------------------------------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b);
// a @ b with the result in the inputs' accumulation dtype (f32 for bf16/f16 inputs; their own otherwise), not
// rounded to theirs: autocast's weight gradients (autograd/derivatives.cpp: master gradients).
Tensor matmul_accumulate(const Tensor& a, const Tensor& b);
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b);  // x @ w^T + b; b may be undefined

// ---- softmax and losses ---------------------------------------------------------------------------
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);
Tensor softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim);
Tensor log_softmax_backward(const Tensor& y, const Tensor& gy, int64_t dim);
// Mean (or sum) over rows whose target != ignore_index of -log softmax(logits)[target]. logits (N, V).
// valid_classes > 0: only the first valid_classes columns are classes (the rest is padding, gradient 0):
// the same loss as on logits.slice(1, 0, valid_classes), without the slice's copies.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100, bool mean = true,
                     int64_t valid_classes = 0);

// ---- normalisation --------------------------------------------------------------------------------
// y_dtype: the output's dtype when it differs from x's (x f32, y bf16/f16: mixed precision); nullopt = x's.
Tensor layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps = 1e-5,
                  std::optional<DType> y_dtype = std::nullopt);
Tensor rms_norm(const Tensor& x, const Tensor& w, double eps = 1e-6, std::optional<DType> y_dtype = std::nullopt);
// A residual add and the layer norm after it, one op: sum = x + r (x's dtype; r may be another floating dtype,
// e.g. a bf16 branch added to an f32 stream), y = layer_norm(sum, w, b) in y_dtype (nullopt: x's). The same
// values as add(x, r.to(x.dtype())) and layer_norm of it, then .to(y_dtype).
struct AddNorm {
  Tensor sum, y;
};
AddNorm add_layer_norm(const Tensor& x, const Tensor& r, const Tensor& w, const Tensor& b, double eps = 1e-5,
                       std::optional<DType> y_dtype = std::nullopt);
Tensor group_norm(const Tensor& x, int64_t groups, const Tensor& w, const Tensor& b, double eps = 1e-5);

// ---- indexing -------------------------------------------------------------------------------------
Tensor embedding(const Tensor& weight, const Tensor& indices);
Tensor embedding_backward(const Tensor& gy, const Tensor& indices, int64_t rows);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& indices);
Tensor index_add(const Tensor& x, int64_t dim, const Tensor& indices, const Tensor& src);
Tensor gather(const Tensor& x, int64_t dim, const Tensor& indices);
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& indices, const Tensor& src);
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor concat(std::span<const Tensor> xs, int64_t dim);

// ---- randomness -----------------------------------------------------------------------------------
Tensor dropout(const Tensor& x, double p, Generator& gen);
Tensor uniform(const Dims& shape, double lo, double hi, Generator& gen, DType dtype = DType::F32,
               Device device = Device::cpu());
Tensor normal(const Dims& shape, double mean, double std, Generator& gen, DType dtype = DType::F32,
              Device device = Device::cpu());

// ---- attention and positions -----------------------------------------------------------------------
// q, k, v (B, NH, T, HS) -> (B, NH, T, HS); scale defaults to 1/sqrt(HS) when <= 0.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true, double scale = 0);
// Self-attention of a packed projection: qkv (B, T, 3C) holding q | k | v, each (B, T, NH, HS) with C = NH HS,
// -> o (B, T, C), heads side by side (what the output projection takes). The same values as attention() on the
// heads' permuted views, with no copy, split or concat in either direction; scale as attention's.
Tensor attention_packed(const Tensor& qkv, int64_t n_head, bool causal = true, double scale = 0);
// The same attention composed from matmul, masked_fill and softmax (reference for tests).
Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, bool causal = true,
                           double scale = 0);
// x (B, T, NH, HS) rotated pairwise (i, i + HS/2) by angle table cos/sin (T, HS/2).
Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse = false);
// cos/sin tables for positions [start, start + T) with base theta: angle(t, i) = t * theta^(-2i/HS).
std::pair<Tensor, Tensor> rotary_tables(int64_t start, int64_t T, int64_t head_size, double theta,
                                        DType dtype = DType::F32, Device device = Device::cpu());

// ---- images -----------------------------------------------------------------------------------------
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int stride = 1, int padding = 0);
Tensor upsample_nearest2d(const Tensor& x, int scale);
Tensor avg_pool2d(const Tensor& x, int kernel, int stride = 0);  // stride 0 = kernel

// ---- conversion -------------------------------------------------------------------------------------
Tensor cast(const Tensor& x, DType dtype);
Tensor copy(const Tensor& x);
Tensor to_device(const Tensor& x, Device device);

// ---- optimiser --------------------------------------------------------------------------------------
void adamw_(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, const AdamWAttrs& attrs);
// adamw_ of N tensors in one op (params[i], grads[i], m[i], v[i] as adamw_ takes them; one parameter dtype and one
// moment dtype, one device): params [0, attrs.decayed) with attrs.weight_decay, the rest with none. The same
// numbers as N adamw_ calls, bit for bit; on CUDA one launch for up to kAdamWMultiMaxTensors tensors.
void adamw_multi_(std::span<Tensor> params, std::span<const Tensor> grads, std::span<Tensor> m, std::span<Tensor> v,
                  const AdamWAttrs& attrs);
constexpr size_t kAdamWMultiMaxTensors = 192;

}  // namespace modu
