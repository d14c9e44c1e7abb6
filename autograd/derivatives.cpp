// autograd/derivatives.cpp — one place, one case per op: what each op saves for backward, and its
// gradient, written with other ops of the table (dedicated *_backward ops where fusing pays).
//
// Invariant: every switch here lists every OpId and has no default, so an op added to op_table.def
// without a gradient decision does not compile (-Werror=switch). Rules run with grad mode off and
// receive g = the gradient of output 0 (outputs that carry no gradient are never read).
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <string>

#include "autograd/autograd.h"
#include "autograd/node.h"
#include "core/ops/ops.h"
#include "core/small_vector.h"

namespace modu::autograd {

void recompute_backward(Node& node, std::vector<Tensor>& grad_in);  // recompute.cpp
void function_backward(Node& node, std::vector<Tensor>& grad_in);   // function.cpp

namespace {
std::atomic<bool> g_master_gradients{[] {
  const char* e = std::getenv("MODU_MASTER_GRADIENTS");
  return !(e && std::string(e) == "0");
}()};

// Whether input i of n is autocast's 16-bit copy of an f32 parameter: a cast node from f32 whose input is a leaf,
// reached directly or through permute/view nodes (a tied head's wte.t()), whose rules keep the gradient's dtype.
// Its gradient may then be produced in f32 (autograd.h: master gradients).
bool master_gradient(const Node& n, size_t i) {
  if (!g_master_gradients.load(std::memory_order_relaxed)) return false;
  const DType dt = n.input_meta[i].dtype;
  if (dt != DType::BF16 && dt != DType::F16) return false;
  const Edge* e = &n.next[i];
  for (int hops = 0; hops < 4 && e->node; ++hops) {
    const Node* m = as_node(e->node.get());
    if (m->op == OpId::cast) return m->input_meta[0].dtype == DType::F32 && m->next[0].leaf;
    if (m->op != OpId::permute && m->op != OpId::view) return false;
    e = &m->next[0];
  }
  return false;
}
}  // namespace

void set_master_gradients(bool on) { g_master_gradients.store(on); }
bool master_gradients() { return g_master_gradients.load(std::memory_order_relaxed); }

GradientKind gradient_kind(OpId op) {
  return not_differentiable_reason(op)[0] == '\0' ? GradientKind::Differentiable : GradientKind::NotDifferentiable;
}

const char* not_differentiable_reason(OpId op) {
  switch (op) {
    case OpId::neg: case OpId::exp: case OpId::log: case OpId::sqrt: case OpId::rsqrt: case OpId::abs:
    case OpId::sign: case OpId::sin: case OpId::cos: case OpId::tanh: case OpId::sigmoid: case OpId::log_sigmoid:
    case OpId::relu: case OpId::silu: case OpId::gelu_tanh: case OpId::gelu_erf: case OpId::add_scalar:
    case OpId::mul_scalar: case OpId::pow_scalar: case OpId::clamp: case OpId::add: case OpId::sub:
    case OpId::mul: case OpId::div: case OpId::pow: case OpId::maximum: case OpId::minimum: case OpId::where:
    case OpId::masked_fill: case OpId::sum: case OpId::mean: case OpId::var: case OpId::max: case OpId::matmul:
    case OpId::linear: case OpId::softmax: case OpId::log_softmax: case OpId::cross_entropy:
    case OpId::layer_norm:
    case OpId::rms_norm:
    case OpId::group_norm:
    case OpId::add_layer_norm:
    case OpId::embedding:
    case OpId::index_select:
    case OpId::index_add:
    case OpId::gather:
    case OpId::scatter_add:
    case OpId::concat:
    case OpId::dropout: case OpId::attention: case OpId::attention_packed: case OpId::rotary: case OpId::conv2d:
    case OpId::upsample_nearest2d: case OpId::avg_pool2d: case OpId::cast: case OpId::copy: case OpId::to_device:
    case OpId::view: case OpId::permute: case OpId::expand: case OpId::slice: case OpId::split:
      return "";
    case OpId::sigmoid_backward: case OpId::tanh_backward: case OpId::relu_backward: case OpId::silu_backward:
    case OpId::gelu_tanh_backward: case OpId::gelu_erf_backward: case OpId::log_sigmoid_backward:
    case OpId::softmax_backward: case OpId::log_softmax_backward: case OpId::cross_entropy_backward:
    case OpId::layer_norm_backward: case OpId::rms_norm_backward: case OpId::group_norm_backward:
    case OpId::add_layer_norm_backward:
    case OpId::embedding_backward:
    case OpId::attention_backward:
    case OpId::attention_packed_backward:
    case OpId::conv2d_backward:
    case OpId::upsample_nearest2d_backward:
    case OpId::avg_pool2d_backward:
      return "a derivative op: second derivatives are not supported";
    case OpId::eq: case OpId::ne: case OpId::lt: case OpId::le: case OpId::gt: case OpId::ge:
      return "a comparison: its output is bool";
    case OpId::argmax:
      return "its output is an index";
    case OpId::sum_squares:
      return "forward-only: it measures gradients (the clipping norm), under no-grad";
    case OpId::copy_: case OpId::fill_: case OpId::add_: case OpId::mul_scalar_: case OpId::adamw_:
    case OpId::adamw_multi_:
      return "in place: allowed only on tensors that need no gradient";
    case OpId::full: case OpId::arange: case OpId::uniform: case OpId::normal:
      return "a factory: it has no inputs";
  }
  return "unknown op";
}

SaveSpec save_spec(OpId op) {
  constexpr uint32_t I0 = 1, I1 = 2, I2 = 4, O0 = 1, O1 = 2, O2 = 4, O3 = 8;
  switch (op) {
    case OpId::exp: case OpId::sqrt: case OpId::rsqrt: case OpId::tanh: case OpId::sigmoid:
    case OpId::softmax: case OpId::log_softmax:
      return {0, O0};
    case OpId::log: case OpId::abs: case OpId::sin: case OpId::cos: case OpId::log_sigmoid: case OpId::relu:
    case OpId::silu: case OpId::gelu_tanh: case OpId::gelu_erf: case OpId::pow_scalar: case OpId::clamp:
    case OpId::var:
      return {I0, 0};
    case OpId::mul: case OpId::div: case OpId::maximum: case OpId::minimum: case OpId::matmul: case OpId::linear:
    case OpId::conv2d:
      return {I0 | I1, 0};
    case OpId::pow:
      return {I0 | I1, O0};
    case OpId::where:
      return {I0, 0};
    case OpId::masked_fill: case OpId::embedding: case OpId::index_select: case OpId::index_add:
    case OpId::gather: case OpId::scatter_add:
      return {I1, 0};
    case OpId::max:
      return {0, O1};
    case OpId::cross_entropy:
      return {I0 | I1, O1};
    case OpId::layer_norm: case OpId::group_norm:
      return {I0 | I1, O1 | O2};
    case OpId::rms_norm:
      return {I0 | I1, O1};
    case OpId::add_layer_norm:  // the sum (not x and r), the weight and the statistics
      return {I2, O0 | O2 | O3};
    case OpId::attention:
      return {I0 | I1 | I2, O0 | O1};
    case OpId::attention_packed:
      return {I0, O0 | O1};
    case OpId::rotary:
      return {I1 | I2, 0};
    case OpId::neg: case OpId::sign: case OpId::add_scalar: case OpId::mul_scalar: case OpId::add: case OpId::sub:
    case OpId::sum: case OpId::mean: case OpId::concat: case OpId::dropout: case OpId::upsample_nearest2d:
    case OpId::avg_pool2d: case OpId::cast: case OpId::copy: case OpId::to_device: case OpId::view:
    case OpId::permute: case OpId::expand: case OpId::slice: case OpId::split:
      return {0, 0};
    // not differentiable: never recorded
    case OpId::sigmoid_backward: case OpId::tanh_backward: case OpId::relu_backward: case OpId::silu_backward:
    case OpId::gelu_tanh_backward: case OpId::gelu_erf_backward: case OpId::log_sigmoid_backward:
    case OpId::eq: case OpId::ne: case OpId::lt: case OpId::le: case OpId::gt: case OpId::ge: case OpId::argmax:
    case OpId::sum_squares:
    case OpId::softmax_backward: case OpId::log_softmax_backward: case OpId::cross_entropy_backward:
    case OpId::layer_norm_backward: case OpId::rms_norm_backward: case OpId::group_norm_backward:
    case OpId::add_layer_norm_backward:
    case OpId::embedding_backward: case OpId::attention_backward: case OpId::attention_packed_backward:
    case OpId::conv2d_backward:
    case OpId::upsample_nearest2d_backward: case OpId::avg_pool2d_backward: case OpId::copy_: case OpId::fill_:
    case OpId::add_: case OpId::mul_scalar_: case OpId::adamw_: case OpId::adamw_multi_: case OpId::full:
    case OpId::arange: case OpId::uniform: case OpId::normal:
      return {0, 0};
  }
  return {0, 0};
}

namespace {

// A saved tensor, after checking it was not modified in place since it was saved.
const Tensor& saved(const Node& n, const SmallVec<SavedTensor, 4>& list, size_t i) {
  const SavedTensor& s = list[i];
  MODU_CHECK(s.tensor.storage()->version() == s.version, "backward of '", op_name(n.op), "': input ", i, " ",
             describe(s.tensor), " saved for the gradient was modified in place after it was used (version ",
             s.version, " -> ", s.tensor.storage()->version(),
             "); clone() it before the in-place op, or do the in-place op first");
  return s.tensor;
}
const Tensor& saved_output(const Node& n, size_t o) {
  const SavedTensor& s = n.saved_out[o];
  MODU_CHECK(s.tensor.storage()->version() == s.version, "backward of '", op_name(n.op), "': output ", o, " ",
             describe(s.tensor), " saved for the gradient was modified in place (version ", s.version, " -> ",
             s.tensor.storage()->version(), "); clone() it before modifying it");
  return s.tensor;
}

Tensor scalar_like(double v, const InputMeta& m) { return Tensor::scalar(v, m.dtype, m.device); }
Tensor zeros_like_meta(const InputMeta& m) { return Tensor::zeros(m.shape, m.dtype, m.device); }

// g reduced to the shape of input i (undoing broadcasting).
Tensor reduce_to(const Tensor& g, const Node& n, size_t i) { return sum_to_shape(g, n.input_meta[i].shape); }

// The gradient of a reduction's input: g with the reduced dims restored as size 1, then broadcast.
Tensor expand_reduced(const Tensor& g, const Dims& in_shape, const ReduceAttrs& r) {
  Tensor gk = g;
  if (!r.keepdim) {
    Dims kept;
    for (int d = 0; d < in_shape.size(); ++d) kept.push_back((r.dims_mask & (1u << d)) ? 1 : in_shape[d]);
    gk = g.reshape(kept);
  }
  return gk.expand(in_shape);
}

int64_t reduced_count(const Dims& shape, uint32_t mask) {
  int64_t n = 1;
  for (int d = 0; d < shape.size(); ++d)
    if (mask & (1u << d)) n *= shape[d];
  return n;
}

}  // namespace

void apply_gradient_rule(Node& n, std::vector<Tensor>& gi) {
  if (n.recompute) return recompute_backward(n, gi);
  if (n.function) return function_backward(n, gi);
  const Tensor& g = n.grad_out[0];
  const OpAttrs& a = n.attrs;
  auto in = [&](size_t i) -> const Tensor& { return saved(n, n.saved_in, i); };
  auto out = [&](size_t o) -> const Tensor& { return saved_output(n, o); };
  auto meta = [&](size_t i) -> const InputMeta& { return n.input_meta[i]; };
  // Most rules need output 0's gradient; multi-output ops whose output 0 received none skip.
  bool need_g0 = n.op != OpId::split && n.op != OpId::add_layer_norm;
  if (need_g0 && !g.defined()) return;

  switch (n.op) {
    // ---- unary ----
    case OpId::neg: gi[0] = neg(g); return;
    case OpId::exp: gi[0] = mul(g, out(0)); return;
    case OpId::log: gi[0] = div(g, in(0)); return;
    case OpId::sqrt: gi[0] = mul_scalar(div(g, out(0)), 0.5); return;
    case OpId::rsqrt: gi[0] = mul_scalar(mul(g, pow_scalar(out(0), 3)), -0.5); return;
    case OpId::abs: gi[0] = mul(g, sign(in(0))); return;
    case OpId::sign: return;  // zero almost everywhere: no gradient flows
    case OpId::sin: gi[0] = mul(g, cos(in(0))); return;
    case OpId::cos: gi[0] = neg(mul(g, sin(in(0)))); return;
    case OpId::tanh: gi[0] = tanh_backward(out(0), g); return;
    case OpId::sigmoid: gi[0] = sigmoid_backward(out(0), g); return;
    case OpId::log_sigmoid: gi[0] = log_sigmoid_backward(in(0), g); return;
    case OpId::relu: gi[0] = relu_backward(in(0), g); return;
    case OpId::silu: gi[0] = silu_backward(in(0), g); return;
    case OpId::gelu_tanh: gi[0] = gelu_tanh_backward(in(0), g); return;
    case OpId::gelu_erf: gi[0] = gelu_erf_backward(in(0), g); return;
    case OpId::add_scalar: gi[0] = g; return;
    case OpId::mul_scalar: gi[0] = mul_scalar(g, a.scalar.value); return;
    case OpId::pow_scalar: {
      double p = a.scalar.value;
      gi[0] = p == 2 ? mul_scalar(mul(g, in(0)), 2) : mul(g, mul_scalar(pow_scalar(in(0), p - 1), p));
      return;
    }
    case OpId::clamp: {
      const Tensor& x = in(0);
      Tensor zero = scalar_like(0, meta(0));
      Tensor outside = gt(x, scalar_like(a.clamp.hi, meta(0)));
      gi[0] = where(lt(x, scalar_like(a.clamp.lo, meta(0))), zero, where(outside, zero, g));
      return;
    }

    // ---- binary (results reduced to each input's shape) ----
    case OpId::add:
      if (n.next[0].defined()) gi[0] = reduce_to(g, n, 0);
      if (n.next[1].defined()) gi[1] = reduce_to(g, n, 1);
      return;
    case OpId::sub:
      if (n.next[0].defined()) gi[0] = reduce_to(g, n, 0);
      if (n.next[1].defined()) gi[1] = reduce_to(neg(g), n, 1);
      return;
    case OpId::mul:
      if (n.next[0].defined()) gi[0] = reduce_to(mul(g, in(1)), n, 0);
      if (n.next[1].defined()) gi[1] = reduce_to(mul(g, in(0)), n, 1);
      return;
    case OpId::div: {
      Tensor gb = div(g, in(1));
      if (n.next[0].defined()) gi[0] = reduce_to(gb, n, 0);
      if (n.next[1].defined()) gi[1] = reduce_to(neg(mul(gb, div(in(0), in(1)))), n, 1);
      return;
    }
    case OpId::pow: {
      // d/dx = e x^(e-1), taken as 0 where e == 0; d/de = x^e log x, taken as 0 where x == 0 and e >= 0
      // (the limits; the plain formulas give 0 * inf there).
      const Tensor &x = in(0), &e = in(1);
      Tensor zero = scalar_like(0, meta(0));
      if (n.next[0].defined()) {
        Tensor gx = mul(g, mul(e, pow(x, add_scalar(e, -1))));
        gi[0] = reduce_to(where(eq(e, zero), zero, gx), n, 0);
      }
      if (n.next[1].defined()) {
        Tensor ge_ = mul(g, mul(out(0), log(x)));
        gi[1] = reduce_to(where(eq(x, zero), where(ge(e, zero), zero, ge_), ge_), n, 1);
      }
      return;
    }
    case OpId::maximum: case OpId::minimum: {
      // The winner takes the gradient; ties split it evenly.
      const Tensor &x = in(0), &y = in(1);
      Tensor zero = scalar_like(0, meta(0));
      Tensor half = mul_scalar(g, 0.5);
      Tensor tie = eq(x, y);
      Tensor x_wins = n.op == OpId::maximum ? gt(x, y) : lt(x, y);
      Tensor y_wins = n.op == OpId::maximum ? lt(x, y) : gt(x, y);
      if (n.next[0].defined()) gi[0] = reduce_to(where(x_wins, g, where(tie, half, zero)), n, 0);
      if (n.next[1].defined()) gi[1] = reduce_to(where(y_wins, g, where(tie, half, zero)), n, 1);
      return;
    }
    case OpId::where: {
      const Tensor& c = in(0);
      Tensor zero = scalar_like(0, meta(1));
      if (n.next[1].defined()) gi[1] = reduce_to(where(c, g, zero), n, 1);
      if (n.next[2].defined()) gi[2] = reduce_to(where(c, zero, g), n, 2);
      return;
    }
    case OpId::masked_fill: gi[0] = masked_fill(g, in(1), 0.0); return;

    // ---- reductions ----
    case OpId::sum:  // sum_accumulate: g in the accumulation dtype, the gradient in x's
      gi[0] = expand_reduced(g, meta(0).shape, a.reduce);
      if (gi[0].dtype() != meta(0).dtype) gi[0] = cast(gi[0], meta(0).dtype);
      return;
    case OpId::mean:
      gi[0] = mul_scalar(expand_reduced(g, meta(0).shape, a.reduce),
                         1.0 / static_cast<double>(reduced_count(meta(0).shape, a.reduce.dims_mask)));
      return;
    case OpId::var: {
      const Tensor& x = in(0);
      std::vector<int64_t> dims;
      for (int d = 0; d < x.dim(); ++d)
        if (a.reduce.dims_mask & (1u << d)) dims.push_back(d);
      double denom = static_cast<double>(reduced_count(x.shape(), a.reduce.dims_mask) - a.reduce.correction);
      Tensor centered = sub(x, mean(x, dims, /*keepdim=*/true));
      gi[0] = mul(mul_scalar(centered, 2.0 / denom), expand_reduced(g, x.shape(), a.reduce));
      return;
    }
    case OpId::max: {
      int d = a.dim.dim;
      Tensor idx = out(1).unsqueeze(d);
      gi[0] = scatter_add(zeros_like_meta(meta(0)), d, idx, g.unsqueeze(d));
      return;
    }

    // ---- linear algebra ----
    case OpId::matmul: {
      const Tensor &x = in(0), &w = in(1);
      // accumulate_out: the output (and so g) is f32 for 16-bit inputs; the products below take the inputs' dtype.
      const Tensor gc = g.dtype() == x.dtype() ? g : cast(g, x.dtype());
      if (n.next[0].defined()) gi[0] = reduce_to(matmul(gc, w.transpose(-2, -1)), n, 0);
      if (n.next[1].defined()) {
        if (w.dim() == 2 && x.dim() > 2) {  // fold x's batch into one product: (K, B*M) @ (B*M, N)
          Tensor x2 = x.reshape(Dims{-1, x.size(-1)}), g2 = gc.reshape(Dims{-1, gc.size(-1)});
          const bool master = master_gradient(n, 1);
          auto product = [master](const Tensor& p, const Tensor& q) {
            return master ? matmul_accumulate(p, q) : matmul(p, q);
          };
          // w a transposed view (a tied head's wte.t()): produce the gradient in the layout of w's base,
          // (N, K) contiguous, so the base's gradient needs no copy.
          bool transposed = w.stride(0) == 1 && w.stride(1) == w.size(0) && w.size(0) > 1;
          gi[1] = transposed ? product(g2.t(), x2).t() : product(x2.t(), g2);
        } else {
          gi[1] = reduce_to(matmul(x.transpose(-2, -1), gc), n, 1);
        }
      }
      return;
    }
    case OpId::linear: {
      const Tensor &x = in(0), &w = in(1);
      if (n.next[0].defined()) gi[0] = matmul(g, w);
      Tensor g2 = g.reshape(Dims{-1, g.size(-1)});
      if (n.next[1].defined()) {
        Tensor x2 = x.reshape(Dims{-1, x.size(-1)});
        gi[1] = master_gradient(n, 1) ? matmul_accumulate(g2.t(), x2) : matmul(g2.t(), x2);
      }
      if (n.next[2].defined()) gi[2] = master_gradient(n, 2) ? sum_accumulate(g2, {0}) : sum(g2, {0});
      return;
    }

    // ---- softmax and losses ----
    case OpId::softmax: gi[0] = softmax_backward(out(0), g, a.dim.dim); return;
    case OpId::log_softmax: gi[0] = log_softmax_backward(out(0), g, a.dim.dim); return;
    case OpId::cross_entropy: {
      const Tensor &logits = in(0), &target = in(1), &lse = out(1);
      gi[0] = call_op<1>(OpId::cross_entropy_backward, a, {&logits, &target, &lse, &g})[0];
      return;
    }

    // ---- normalisation ----
    case OpId::layer_norm: {
      const Tensor &x = in(0), &w = in(1), &m = out(1), &r = out(2);
      auto [gx, gw, gb] = call_op<3>(OpId::layer_norm_backward, a, {&g, &x, &w, &m, &r});
      gi[0] = gx, gi[1] = gw, gi[2] = gb;
      return;
    }
    case OpId::add_layer_norm: {  // both the sum and y may carry a gradient; a missing one is zero
      const Tensor &s = out(0), &w = in(2), &m = out(2), &r = out(3);
      if (!n.grad_out[0].defined() && !n.grad_out[1].defined()) return;
      NormAttrs na = a.norm;
      na.r_dtype = meta(1).dtype;
      const DType y_dtype = na.y_dtype_set ? na.y_dtype : s.dtype();
      Tensor gs = n.grad_out[0].defined() ? n.grad_out[0] : Tensor::zeros(s.shape(), s.dtype(), s.device());
      Tensor gy = n.grad_out[1].defined() ? n.grad_out[1] : Tensor::zeros(s.shape(), y_dtype, s.device());
      auto [gx, gr, gw, gb] = call_op<4>(OpId::add_layer_norm_backward, na, {&gs, &gy, &s, &w, &m, &r});
      gi[0] = gx, gi[1] = gr, gi[2] = gw, gi[3] = gb;
      return;
    }
    case OpId::rms_norm: {
      const Tensor &x = in(0), &w = in(1), &r = out(1);
      auto [gx, gw] = call_op<2>(OpId::rms_norm_backward, a, {&g, &x, &w, &r});
      gi[0] = gx, gi[1] = gw;
      return;
    }
    case OpId::group_norm: {
      const Tensor &x = in(0), &w = in(1), &m = out(1), &r = out(2);
      auto [gx, gw, gb] = call_op<3>(OpId::group_norm_backward, a, {&g, &x, &w, &m, &r});
      gi[0] = gx, gi[1] = gw, gi[2] = gb;
      return;
    }

    // ---- indexing ----
    case OpId::embedding: gi[0] = embedding_backward(g, in(1), meta(0).shape[0]); return;
    case OpId::index_select: gi[0] = index_add(zeros_like_meta(meta(0)), a.dim.dim, in(1), g); return;
    case OpId::index_add:
      if (n.next[0].defined()) gi[0] = g;
      if (n.next[2].defined()) gi[2] = index_select(g, a.dim.dim, in(1));
      return;
    case OpId::gather: gi[0] = scatter_add(zeros_like_meta(meta(0)), a.dim.dim, in(1), g); return;
    case OpId::scatter_add:
      if (n.next[0].defined()) gi[0] = g;
      if (n.next[2].defined()) gi[2] = gather(g, a.dim.dim, in(1));
      return;
    case OpId::concat: {
      int64_t start = 0;
      for (size_t i = 0; i < n.next.size(); ++i) {
        int64_t len = meta(i).shape[a.dim.dim];
        if (n.next[i].defined()) gi[i] = g.narrow(a.dim.dim, start, len);
        start += len;
      }
      return;
    }
    case OpId::dropout: {
      const Tensor* args[] = {&g};
      gi[0] = dispatch1(OpId::dropout, a, args);  // the same mask (same Philox key and counter), same scale
      return;
    }

    // ---- attention ----
    case OpId::attention: {
      const Tensor &q = in(0), &k = in(1), &v = in(2), &o = out(0), &lse = out(1);
      auto [gq, gk, gv] = call_op<3>(OpId::attention_backward, a, {&q, &k, &v, &o, &lse, &g});
      gi[0] = gq, gi[1] = gk, gi[2] = gv;
      return;
    }
    case OpId::attention_packed: {  // the whole packed gradient in one op: no split of it, no concat
      const Tensor &qkv = in(0), &o = out(0), &lse = out(1);
      gi[0] = call_op<1>(OpId::attention_packed_backward, a, {&qkv, &o, &lse, &g})[0];
      return;
    }
    case OpId::rotary:
      MODU_CHECK(!n.next[1].defined() && !n.next[2].defined(),
                 "rotary: gradients with respect to the cos/sin tables are not supported; build them without "
                 "requires_grad");
      gi[0] = rotary(g, in(1), in(2), !a.rotary.inverse);
      return;

    // ---- images ----
    case OpId::conv2d: {
      const Tensor &x = in(0), &w = in(1);
      auto [gx, gw, gb] = call_op<3>(OpId::conv2d_backward, a, {&g, &x, &w});
      gi[0] = gx, gi[1] = gw, gi[2] = gb;
      return;
    }
    case OpId::upsample_nearest2d: gi[0] = call_op<1>(OpId::upsample_nearest2d_backward, a, {&g})[0]; return;
    case OpId::avg_pool2d: {
      PoolAttrs p = a.pool;
      p.in_h = meta(0).shape[2];
      p.in_w = meta(0).shape[3];
      gi[0] = call_op<1>(OpId::avg_pool2d_backward, p, {&g})[0];
      return;
    }

    // ---- conversion and views ----
    case OpId::cast:  // g may already be in meta(0)'s dtype: a master gradient
      gi[0] = g.dtype() == meta(0).dtype ? g : cast(g, meta(0).dtype);
      return;
    case OpId::copy: gi[0] = g; return;
    case OpId::to_device: gi[0] = to_device(g, meta(0).device); return;
    case OpId::view: gi[0] = g.reshape(meta(0).shape); return;
    case OpId::permute: {
      const Dims& p = a.permute.dims;
      Dims inv = p;
      for (int i = 0; i < p.size(); ++i) inv[static_cast<int>(p[i])] = i;
      gi[0] = g.permute(inv);
      return;
    }
    case OpId::expand: gi[0] = sum_to_shape(g, meta(0).shape); return;
    case OpId::slice: {
      Tensor full = zeros_like_meta(meta(0));
      Tensor window = full.slice(a.slice.dim, a.slice.start, a.slice.end, a.slice.step);
      window.copy_(g);
      gi[0] = full;
      return;
    }
    case OpId::split: {  // concat of the pieces' gradients, zeros for pieces that received none
      const InputMeta& m = meta(0);
      SmallVec<Tensor, kMaxDims> parts;
      for (int i = 0; i < a.split.sizes.size(); ++i) {
        const Tensor& gp = n.grad_out[static_cast<size_t>(i)];
        if (gp.defined()) {
          parts.push_back(gp);
        } else {
          Dims s = m.shape;
          s[a.split.dim] = a.split.sizes[i];
          parts.push_back(Tensor::zeros(s, m.dtype, m.device));
        }
      }
      gi[0] = concat(std::span<const Tensor>(parts.data(), parts.size()), a.split.dim);
      return;
    }

    // ---- never recorded ----
    case OpId::sigmoid_backward: case OpId::tanh_backward: case OpId::relu_backward: case OpId::silu_backward:
    case OpId::gelu_tanh_backward: case OpId::gelu_erf_backward: case OpId::log_sigmoid_backward:
    case OpId::eq: case OpId::ne: case OpId::lt: case OpId::le: case OpId::gt: case OpId::ge: case OpId::argmax:
    case OpId::sum_squares:
    case OpId::softmax_backward: case OpId::log_softmax_backward: case OpId::cross_entropy_backward:
    case OpId::layer_norm_backward: case OpId::rms_norm_backward: case OpId::group_norm_backward:
    case OpId::add_layer_norm_backward:
    case OpId::embedding_backward: case OpId::attention_backward: case OpId::attention_packed_backward:
    case OpId::conv2d_backward:
    case OpId::upsample_nearest2d_backward: case OpId::avg_pool2d_backward: case OpId::copy_: case OpId::fill_:
    case OpId::add_: case OpId::mul_scalar_: case OpId::adamw_: case OpId::adamw_multi_: case OpId::full:
    case OpId::arange: case OpId::uniform: case OpId::normal:
      MODU_FAIL("op '", op_name(n.op), "' is not differentiable (", not_differentiable_reason(n.op), ")");
  }
}

}  // namespace modu::autograd
