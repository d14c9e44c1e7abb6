// core/ops/shape_rules.cpp — argument checks and output shapes for every op of the table.
//
// Invariant: the switch in infer_outputs has a case for every Compute/Factory op and no default, so
// adding an op to op_table.def without a shape rule fails to compile (-Werror=switch).
#include "core/ops/shape_rules.h"

namespace modu {

namespace {

std::string shapes_of(std::span<const Tensor* const> in) {
  std::string s;
  for (size_t i = 0; i < in.size(); ++i) s += (i ? ", " : "") + describe(*in[i]);
  return s;
}

void require_same_dtype(OpId op, const Tensor& a, const Tensor& b) {
  MODU_CHECK(a.dtype() == b.dtype(), op_name(op), ": dtypes differ (", describe(a), " and ",
             describe(b), "); convert one with .to(dtype)");
}

void require_floating(OpId op, const Tensor& t, const char* what) {
  MODU_CHECK(is_floating(t.dtype()), op_name(op), ": ", what, " must be floating point, got ",
             describe(t));
}

void require_index(OpId op, const Tensor& t, const char* what) {
  MODU_CHECK(t.dtype() == DType::I64 || t.dtype() == DType::I32, op_name(op), ": ", what,
             " must be i64 or i32, got ", describe(t));
}

void require_shape(OpId op, const Tensor& t, const Dims& shape, const char* what) {
  MODU_CHECK(t.shape() == shape, op_name(op), ": ", what, " must have shape ", shape.str(), ", got ",
             describe(t));
}

Dims reduced_shape(const Dims& shape, uint32_t mask, bool keepdim) {
  Dims out;
  for (int d = 0; d < shape.size(); ++d) {
    bool reduced = mask == 0 || (mask & (1u << d));
    if (!reduced) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

int64_t conv_out_size(int64_t in, int64_t k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

}  // namespace

bool view_strides(const Dims& shape, const Dims& strides, const Dims& new_shape, Dims* new_strides) {
  *new_strides = Dims::filled(new_shape.size(), 1);
  if (shape.numel() == 0 || shape.size() == 0) {
    *new_strides = contiguous_strides(new_shape);
    return true;
  }
  // Walk the old dims from the innermost, grouping runs that are contiguous with each other ("chunks");
  // each chunk must be covered exactly by a run of new dims, which then get strides inside the chunk.
  int nd = new_shape.size() - 1;
  int64_t chunk_base = strides[shape.size() - 1];
  int64_t chunk_numel = 1, view_numel = 1;
  for (int od = shape.size() - 1; od >= 0; --od) {
    chunk_numel *= shape[od];
    bool chunk_ends = od == 0 || (shape[od - 1] != 1 && strides[od - 1] != chunk_numel * chunk_base);
    if (!chunk_ends) continue;
    while (nd >= 0 && (view_numel < chunk_numel || new_shape[nd] == 1)) {
      (*new_strides)[nd] = view_numel * chunk_base;
      view_numel *= new_shape[nd];
      --nd;
    }
    if (view_numel != chunk_numel) return false;
    if (od > 0) {
      chunk_base = strides[od - 1];
      chunk_numel = 1;
      view_numel = 1;
    }
  }
  return nd == -1;
}

void infer_outputs(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in,
                   std::span<OutputSpec> out) {
  auto same_as = [&](int o, const Tensor& t) { out[o] = {t.shape(), t.dtype()}; };
  switch (op) {
    // ---- unary ----
    case OpId::neg: case OpId::exp: case OpId::log: case OpId::sqrt: case OpId::rsqrt:
    case OpId::abs: case OpId::sign: case OpId::sin: case OpId::cos: case OpId::tanh:
    case OpId::sigmoid: case OpId::log_sigmoid: case OpId::relu: case OpId::silu:
    case OpId::gelu_tanh: case OpId::gelu_erf: case OpId::add_scalar: case OpId::mul_scalar:
    case OpId::pow_scalar: case OpId::clamp: case OpId::dropout:
      same_as(0, *in[0]);
      return;

    // ---- binary with broadcasting ----
    case OpId::add: case OpId::sub: case OpId::mul: case OpId::div: case OpId::pow:
    case OpId::maximum: case OpId::minimum: case OpId::sigmoid_backward: case OpId::tanh_backward:
    case OpId::relu_backward: case OpId::silu_backward: case OpId::gelu_tanh_backward:
    case OpId::gelu_erf_backward: case OpId::log_sigmoid_backward:
      require_same_dtype(op, *in[0], *in[1]);
      out[0] = {broadcast_shapes(in[0]->shape(), in[1]->shape(), op_name(op)), in[0]->dtype()};
      return;
    case OpId::eq: case OpId::ne: case OpId::lt: case OpId::le: case OpId::gt: case OpId::ge:
      require_same_dtype(op, *in[0], *in[1]);
      out[0] = {broadcast_shapes(in[0]->shape(), in[1]->shape(), op_name(op)), DType::Bool};
      return;
    case OpId::where: {
      MODU_CHECK(in[0]->dtype() == DType::Bool, "where: the condition must be bool, got ", describe(*in[0]));
      require_same_dtype(op, *in[1], *in[2]);
      Dims s = broadcast_shapes(in[1]->shape(), in[2]->shape(), "where");
      out[0] = {broadcast_shapes(in[0]->shape(), s, "where"), in[1]->dtype()};
      return;
    }
    case OpId::masked_fill: {
      MODU_CHECK(in[1]->dtype() == DType::Bool, "masked_fill: the mask must be bool, got ", describe(*in[1]));
      Dims s = broadcast_shapes(in[0]->shape(), in[1]->shape(), "masked_fill");
      MODU_CHECK(s == in[0]->shape(), "masked_fill: mask ", describe(*in[1]), " must broadcast to ",
                 describe(*in[0]));
      same_as(0, *in[0]);
      return;
    }

    // ---- reductions ----
    case OpId::sum: case OpId::mean: case OpId::var: {
      const ReduceAttrs& r = attrs.reduce;
      MODU_CHECK(in[0]->dim() == 0 || (r.dims_mask >> in[0]->dim()) == 0, op_name(op),
                 ": reduction dims out of range for ", describe(*in[0]));
      if (op != OpId::sum) require_floating(op, *in[0], "input");
      MODU_CHECK(!r.accumulate_out || (op == OpId::sum && is_floating(in[0]->dtype())), op_name(op),
                 ": a result in the accumulation dtype is for sum over floating inputs only");
      out[0] = {reduced_shape(in[0]->shape(), r.dims_mask, r.keepdim),
                r.accumulate_out ? accumulate_dtype(in[0]->dtype()) : in[0]->dtype()};
      return;
    }
    case OpId::sum_squares: {
      MODU_CHECK(!in.empty(), "sum_squares: no inputs");
      for (const Tensor* t : in) {
        require_floating(op, *t, "input");
        MODU_CHECK(t->dtype() == in[0]->dtype(), "sum_squares: inputs must share one dtype, got ",
                   dtype_name(in[0]->dtype()), " and ", dtype_name(t->dtype()),
                   "; call it once per dtype and add the results");
      }
      out[0] = {Dims{}, accumulate_dtype(in[0]->dtype())};
      return;
    }
    case OpId::max: case OpId::argmax: {
      const Tensor& x = *in[0];
      MODU_CHECK(x.dim() > 0 && attrs.dim.dim < x.dim(), op_name(op), ": dim ", attrs.dim.dim,
                 " out of range for ", describe(x));
      MODU_CHECK(x.size(attrs.dim.dim) > 0, op_name(op), ": empty dim ", attrs.dim.dim, " in ", describe(x));
      // keepdim is applied by the front end with a view.
      Dims s = x.shape();
      s.erase(attrs.dim.dim);
      if (op == OpId::max) {
        out[0] = {s, x.dtype()};
        out[1] = {s, DType::I64};
      } else {
        out[0] = {s, DType::I64};
      }
      return;
    }

    // ---- linear algebra ----
    case OpId::matmul: {
      const Tensor &a = *in[0], &b = *in[1];
      require_same_dtype(op, a, b);
      MODU_CHECK(a.dim() >= 2 && b.dim() >= 2, "matmul: both operands need at least 2 dims, got ",
                 describe(a), " @ ", describe(b), "; unsqueeze vectors first");
      MODU_CHECK(a.size(-1) == b.size(-2), "matmul: inner sizes differ: ", describe(a), " @ ", describe(b));
      Dims ba(a.shape().span().first(a.dim() - 2)), bb(b.shape().span().first(b.dim() - 2));
      Dims s = broadcast_shapes(ba, bb, "matmul (batch dims)");
      s.push_back(a.size(-2));
      s.push_back(b.size(-1));
      out[0] = {s, attrs.matmul.accumulate_out ? accumulate_dtype(a.dtype()) : a.dtype()};
      return;
    }
    case OpId::linear: {
      const Tensor &x = *in[0], &w = *in[1], &b = *in[2];
      require_same_dtype(op, x, w);
      require_same_dtype(op, x, b);
      MODU_CHECK(x.dim() >= 1 && w.dim() == 2 && x.size(-1) == w.size(1), "linear: x ", describe(x),
                 " and weight ", describe(w), " do not match: need x (..., K) and weight (N, K)");
      require_shape(op, b, Dims{w.size(0)}, "bias");
      Dims s = x.shape();
      s[s.size() - 1] = w.size(0);
      out[0] = {s, x.dtype()};
      return;
    }

    // ---- softmax and losses ----
    case OpId::softmax: case OpId::log_softmax:
      require_floating(op, *in[0], "input");
      MODU_CHECK(attrs.dim.dim < in[0]->dim(), op_name(op), ": dim out of range for ", describe(*in[0]));
      same_as(0, *in[0]);
      return;
    case OpId::softmax_backward: case OpId::log_softmax_backward:
      require_same_dtype(op, *in[0], *in[1]);
      MODU_CHECK(in[0]->shape() == in[1]->shape(), op_name(op), ": shapes differ: ", shapes_of(in));
      same_as(0, *in[0]);
      return;
    case OpId::cross_entropy: {
      const Tensor &logits = *in[0], &target = *in[1];
      require_floating(op, logits, "logits");
      require_index(op, target, "target");
      MODU_CHECK(logits.dim() == 2 && target.dim() == 1 && target.size(0) == logits.size(0),
                 "cross_entropy: need logits (N, V) and target (N), got ", shapes_of(in),
                 "; flatten (B, T, V) logits to (B*T, V)");
      MODU_CHECK(attrs.cross_entropy.valid_classes >= 0 && attrs.cross_entropy.valid_classes <= logits.size(1),
                 "cross_entropy: valid_classes ", attrs.cross_entropy.valid_classes, " is outside [0, ", logits.size(1),
                 "] for logits ", shapes_of(in));
      out[0] = {Dims{}, logits.dtype()};
      out[1] = {Dims{logits.size(0)}, accumulate_dtype(logits.dtype())};
      return;
    }
    case OpId::cross_entropy_backward: {
      const Tensor &logits = *in[0], &lse = *in[2], &g = *in[3];
      MODU_CHECK(lse.shape() == Dims{logits.size(0)} && g.numel() == 1,
                 "cross_entropy_backward: bad shapes ", shapes_of(in));
      same_as(0, logits);
      return;
    }

    // ---- normalisation ----
    case OpId::layer_norm:
    case OpId::rms_norm:
    case OpId::add_layer_norm: {
      const bool fused = op == OpId::add_layer_norm;
      const Tensor& x = *in[0];
      require_floating(op, x, "input");
      MODU_CHECK(x.dim() >= 1, op_name(op), ": input needs at least 1 dim");
      if (fused) {
        require_floating(op, *in[1], "residual branch");
        MODU_CHECK(in[1]->shape() == x.shape(), op_name(op), ": the residual branch ", describe(*in[1]),
                   " must have the shape of the input ", describe(x));
      }
      Dims c{x.size(-1)};
      for (size_t i = fused ? 2 : 1; i < in.size(); ++i) {
        require_same_dtype(op, x, *in[i]);
        require_shape(op, *in[i], c, i == (fused ? 2u : 1u) ? "weight" : "bias");
      }
      const DType y_dtype = norm_y_dtype(op, attrs.norm, x.dtype());
      Dims rows(x.shape().span().first(x.dim() - 1));
      size_t o = 0;
      if (fused) same_as(o++, x);  // s = x + r
      out[o++] = {x.shape(), y_dtype};
      for (; o < out.size(); ++o) out[o] = {rows, accumulate_dtype(x.dtype())};
      return;
    }
    case OpId::layer_norm_backward: case OpId::rms_norm_backward: {
      const Tensor &gy = *in[0], &x = *in[1], &w = *in[2];
      MODU_CHECK(gy.shape() == x.shape(), op_name(op), ": gradient and input shapes differ: ", shapes_of(in));
      MODU_CHECK(gy.dtype() == norm_y_dtype(op, attrs.norm, x.dtype()), op_name(op), ": the gradient ", describe(gy),
                 " is not in the forward output's dtype");
      same_as(0, x);
      same_as(1, w);
      if (op == OpId::layer_norm_backward) same_as(2, w);
      return;
    }
    case OpId::add_layer_norm_backward: {  // (gs, gy, s, w, mean, rstd) -> (gx, gr, gw, gb)
      const Tensor &gs = *in[0], &gy = *in[1], &s = *in[2], &w = *in[3];
      MODU_CHECK(gs.shape() == s.shape() && gy.shape() == s.shape() && gs.dtype() == s.dtype() &&
                     gy.dtype() == norm_y_dtype(op, attrs.norm, s.dtype()),
                 op_name(op), ": gradients ", describe(gs), ", ", describe(gy), " do not match the sum ", describe(s),
                 " and the output dtype");
      MODU_CHECK(is_floating(attrs.norm.r_dtype), op_name(op), ": the residual branch's dtype must be floating");
      same_as(0, s);
      out[1] = {s.shape(), attrs.norm.r_dtype};
      same_as(2, w);
      same_as(3, w);
      return;
    }
    case OpId::group_norm: {
      const Tensor &x = *in[0], &w = *in[1], &b = *in[2];
      require_floating(op, x, "input");
      MODU_CHECK(x.dim() >= 2, "group_norm: input must be (N, C, ...), got ", describe(x));
      int64_t C = x.size(1), G = attrs.norm.groups;
      MODU_CHECK(G > 0 && C % G == 0, "group_norm: ", C, " channels do not divide into ", G, " groups");
      require_same_dtype(op, x, w);
      require_same_dtype(op, x, b);
      require_shape(op, w, Dims{C}, "weight");
      require_shape(op, b, Dims{C}, "bias");
      same_as(0, x);
      out[1] = out[2] = {Dims{x.size(0), G}, accumulate_dtype(x.dtype())};
      return;
    }
    case OpId::group_norm_backward:
      MODU_CHECK(in[0]->shape() == in[1]->shape(), "group_norm_backward: shapes differ: ", shapes_of(in));
      same_as(0, *in[1]);
      same_as(1, *in[2]);
      same_as(2, *in[2]);
      return;

    // ---- indexing ----
    case OpId::embedding: {
      const Tensor &w = *in[0], &idx = *in[1];
      MODU_CHECK(w.dim() == 2, "embedding: weight must be (V, C), got ", describe(w));
      require_index(op, idx, "indices");
      Dims s = idx.shape();
      s.push_back(w.size(1));
      out[0] = {s, w.dtype()};
      return;
    }
    case OpId::embedding_backward: {
      const Tensor &gy = *in[0], &idx = *in[1];
      require_index(op, idx, "indices");
      MODU_CHECK(gy.dim() == idx.dim() + 1 && Dims(gy.shape().span().first(idx.dim())) == idx.shape(),
                 "embedding_backward: gradient ", describe(gy), " does not match indices ", describe(idx));
      out[0] = {Dims{attrs.index.rows, gy.size(-1)}, gy.dtype()};
      return;
    }
    case OpId::index_select: {
      const Tensor &x = *in[0], &idx = *in[1];
      require_index(op, idx, "indices");
      MODU_CHECK(idx.dim() == 1 && attrs.dim.dim < x.dim(), "index_select: need 1-D indices and a valid dim, got ",
                 shapes_of(in), " dim ", attrs.dim.dim);
      Dims s = x.shape();
      s[attrs.dim.dim] = idx.size(0);
      out[0] = {s, x.dtype()};
      return;
    }
    case OpId::index_add: {
      const Tensor &x = *in[0], &idx = *in[1], &src = *in[2];
      require_index(op, idx, "indices");
      require_same_dtype(op, x, src);
      Dims s = x.shape();
      MODU_CHECK(idx.dim() == 1 && attrs.dim.dim < x.dim(), "index_add: need 1-D indices and a valid dim");
      s[attrs.dim.dim] = idx.size(0);
      MODU_CHECK(src.shape() == s, "index_add: source must have shape ", s.str(), ", got ", describe(src));
      same_as(0, x);
      return;
    }
    case OpId::gather: {
      const Tensor &x = *in[0], &idx = *in[1];
      require_index(op, idx, "indices");
      MODU_CHECK(idx.dim() == x.dim() && attrs.dim.dim < x.dim(), "gather: indices ", describe(idx),
                 " must have as many dims as the input ", describe(x));
      for (int d = 0; d < x.dim(); ++d)
        MODU_CHECK(d == attrs.dim.dim || idx.size(d) <= x.size(d), "gather: indices ", describe(idx),
                   " larger than input ", describe(x), " in dim ", d);
      out[0] = {idx.shape(), x.dtype()};
      return;
    }
    case OpId::scatter_add: {
      const Tensor &x = *in[0], &idx = *in[1], &src = *in[2];
      require_index(op, idx, "indices");
      require_same_dtype(op, x, src);
      MODU_CHECK(idx.shape() == src.shape() && idx.dim() == x.dim() && attrs.dim.dim < x.dim(),
                 "scatter_add: indices and source must have the same shape with the input's dims, got ",
                 shapes_of(in));
      same_as(0, x);
      return;
    }
    case OpId::concat: {
      MODU_CHECK(!in.empty(), "concat: no inputs");
      const Tensor& x0 = *in[0];
      int d = attrs.dim.dim;
      MODU_CHECK(d < x0.dim(), "concat: dim ", d, " out of range for ", describe(x0));
      Dims s = x0.shape();
      int64_t total = 0;
      for (size_t i = 0; i < in.size(); ++i) {
        const Tensor& xi = *in[i];
        require_same_dtype(op, x0, xi);
        bool ok = xi.dim() == x0.dim();
        for (int k = 0; ok && k < x0.dim(); ++k) ok = k == d || xi.size(k) == x0.size(k);
        MODU_CHECK(ok, "concat: shapes differ outside dim ", d, ": ", shapes_of(in));
        total += xi.size(d);
      }
      s[d] = total;
      out[0] = {s, x0.dtype()};
      return;
    }

    // ---- attention ----
    case OpId::attention: {
      const Tensor &q = *in[0], &k = *in[1], &v = *in[2];
      require_floating(op, q, "q");
      require_same_dtype(op, q, k);
      require_same_dtype(op, q, v);
      MODU_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && k.shape() == v.shape() &&
                     q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3),
                 "attention: need q (B, NH, T, HS) and k, v (B, NH, S, HS), got ", shapes_of(in));
      MODU_CHECK(!attrs.attention.causal || q.size(2) <= k.size(2),
                 "attention: causal attention needs T <= S (queries are the last T positions), got ", shapes_of(in));
      same_as(0, q);
      out[1] = {Dims{q.size(0), q.size(1), q.size(2)}, accumulate_dtype(q.dtype())};
      return;
    }
    case OpId::attention_backward:
      same_as(0, *in[0]);
      same_as(1, *in[1]);
      same_as(2, *in[2]);
      return;
    case OpId::attention_packed: {
      const Tensor& qkv = *in[0];
      require_floating(op, qkv, "qkv");
      const int64_t NH = attrs.attention.n_head;
      MODU_CHECK(NH > 0 && qkv.dim() == 3 && qkv.size(2) % (3 * NH) == 0,
                 "attention_packed: need qkv (B, T, 3 * NH * HS) with NH = n_head = ", NH, " > 0, got ", describe(qkv));
      out[0] = {Dims{qkv.size(0), qkv.size(1), qkv.size(2) / 3}, qkv.dtype()};
      out[1] = {Dims{qkv.size(0), NH, qkv.size(1)}, accumulate_dtype(qkv.dtype())};
      return;
    }
    case OpId::attention_packed_backward:  // (qkv, o, lse, go) -> gqkv
      same_as(0, *in[0]);
      return;
    case OpId::rotary: {
      const Tensor &x = *in[0], &c = *in[1], &s = *in[2];
      require_floating(op, x, "input");
      MODU_CHECK(x.dim() == 4 && x.size(3) % 2 == 0, "rotary: need x (B, T, NH, HS) with even HS, got ",
                 describe(x));
      Dims table{x.size(1), x.size(3) / 2};
      require_same_dtype(op, x, c);
      require_same_dtype(op, x, s);
      require_shape(op, c, table, "cos table");
      require_shape(op, s, table, "sin table");
      same_as(0, x);
      return;
    }

    // ---- images ----
    case OpId::conv2d: {
      const Tensor &x = *in[0], &w = *in[1], &b = *in[2];
      const ConvAttrs& a = attrs.conv;
      require_floating(op, x, "input");
      require_same_dtype(op, x, w);
      require_same_dtype(op, x, b);
      MODU_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(1) == x.size(1),
                 "conv2d: need x (N, C, H, W) and weight (O, C, KH, KW), got ", shapes_of(in));
      require_shape(op, b, Dims{w.size(0)}, "bias");
      MODU_CHECK(a.stride_h > 0 && a.stride_w > 0 && a.pad_h >= 0 && a.pad_w >= 0, "conv2d: bad stride/padding");
      int64_t oh = conv_out_size(x.size(2), w.size(2), a.stride_h, a.pad_h);
      int64_t ow = conv_out_size(x.size(3), w.size(3), a.stride_w, a.pad_w);
      MODU_CHECK(oh > 0 && ow > 0, "conv2d: kernel ", describe(w), " larger than padded input ", describe(x));
      out[0] = {Dims{x.size(0), w.size(0), oh, ow}, x.dtype()};
      return;
    }
    case OpId::conv2d_backward:
      same_as(0, *in[1]);
      same_as(1, *in[2]);
      out[2] = {Dims{in[2]->size(0)}, in[2]->dtype()};
      return;
    case OpId::upsample_nearest2d: {
      const Tensor& x = *in[0];
      MODU_CHECK(x.dim() == 4, "upsample_nearest2d: need (N, C, H, W), got ", describe(x));
      const UpsampleAttrs& u = attrs.upsample;
      MODU_CHECK(u.scale_h >= 1 && u.scale_w >= 1, "upsample_nearest2d: scale must be >= 1");
      out[0] = {Dims{x.size(0), x.size(1), x.size(2) * u.scale_h, x.size(3) * u.scale_w}, x.dtype()};
      return;
    }
    case OpId::upsample_nearest2d_backward: {
      const Tensor& g = *in[0];
      const UpsampleAttrs& u = attrs.upsample;
      MODU_CHECK(g.dim() == 4 && g.size(2) % u.scale_h == 0 && g.size(3) % u.scale_w == 0,
                 "upsample_nearest2d_backward: gradient ", describe(g), " not divisible by the scale");
      out[0] = {Dims{g.size(0), g.size(1), g.size(2) / u.scale_h, g.size(3) / u.scale_w}, g.dtype()};
      return;
    }
    case OpId::avg_pool2d: {
      const Tensor& x = *in[0];
      const PoolAttrs& p = attrs.pool;
      MODU_CHECK(x.dim() == 4, "avg_pool2d: need (N, C, H, W), got ", describe(x));
      MODU_CHECK(p.kernel_h > 0 && p.kernel_w > 0 && p.stride_h > 0 && p.stride_w > 0 &&
                     x.size(2) >= p.kernel_h && x.size(3) >= p.kernel_w,
                 "avg_pool2d: kernel ", p.kernel_h, "x", p.kernel_w, " does not fit ", describe(x));
      out[0] = {Dims{x.size(0), x.size(1), (x.size(2) - p.kernel_h) / p.stride_h + 1,
                     (x.size(3) - p.kernel_w) / p.stride_w + 1},
                x.dtype()};
      return;
    }
    case OpId::avg_pool2d_backward: {
      const Tensor& g = *in[0];
      out[0] = {Dims{g.size(0), g.size(1), attrs.pool.in_h, attrs.pool.in_w}, g.dtype()};
      return;
    }

    // ---- conversion ----
    case OpId::cast:
      out[0] = {in[0]->shape(), attrs.cast.dtype};
      return;
    case OpId::copy: case OpId::to_device:
      same_as(0, *in[0]);
      return;

    // ---- factories ----
    case OpId::full: case OpId::arange: case OpId::uniform: case OpId::normal:
      if (op == OpId::uniform || op == OpId::normal)
        MODU_CHECK(is_floating(attrs.factory.dtype), op_name(op), ": dtype must be floating");
      out[0] = {attrs.factory.shape, attrs.factory.dtype};
      return;

    // ---- handled elsewhere ----
    case OpId::view: case OpId::permute: case OpId::expand: case OpId::slice: case OpId::split:
    case OpId::copy_: case OpId::fill_: case OpId::add_: case OpId::mul_scalar_: case OpId::adamw_:
    case OpId::adamw_multi_:
      MODU_FAIL("infer_outputs called for ", op_name(op), ", which is not a Compute op");
  }
}

void make_view_outputs(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in,
                       std::span<Tensor> out) {
  const Tensor& x = *in[0];
  switch (op) {
    case OpId::view: {
      const Dims& ns = attrs.shape.shape;
      MODU_CHECK(ns.numel() == x.numel(), "view: shape ", ns.str(), " has ", ns.numel(),
                 " elements but the input ", describe(x), " has ", x.numel());
      Dims st;
      MODU_CHECK(view_strides(x.shape(), x.strides(), ns, &st), "view: ", describe(x), " with strides ",
                 x.strides().str(), " cannot be viewed as ", ns.str(),
                 " without a copy; call .contiguous() first or use reshape()");
      out[0] = Tensor::make_view(x.storage(), ns, st, x.offset(), x.dtype());
      return;
    }
    case OpId::permute: {
      const Dims& p = attrs.permute.dims;
      MODU_CHECK(p.size() == x.dim(), "permute: ", p.size(), " dims given for ", describe(x));
      uint32_t seen = 0;
      Dims s, st;
      for (int i = 0; i < p.size(); ++i) {
        MODU_CHECK(p[i] >= 0 && p[i] < x.dim() && !(seen & (1u << p[i])), "permute: ", p.str(),
                   " is not a permutation of ", x.dim(), " dims");
        seen |= 1u << p[i];
        s.push_back(x.size(p[i]));
        st.push_back(x.stride(p[i]));
      }
      out[0] = Tensor::make_view(x.storage(), s, st, x.offset(), x.dtype());
      return;
    }
    case OpId::expand: {
      const Dims& ns = attrs.shape.shape;
      MODU_CHECK(ns.size() >= x.dim(), "expand: ", describe(x), " cannot expand to fewer dims ", ns.str());
      Dims st = Dims::filled(ns.size(), 0);
      int lead = ns.size() - x.dim();
      for (int i = 0; i < x.dim(); ++i) {
        int64_t have = x.size(i), want = ns[lead + i];
        MODU_CHECK(have == want || have == 1, "expand: ", describe(x), " cannot expand to ", ns.str(),
                   " (dim ", i, ": ", have, " -> ", want, "; only size-1 dims expand)");
        st[lead + i] = have == want ? x.stride(i) : 0;
      }
      out[0] = Tensor::make_view(x.storage(), ns, st, x.offset(), x.dtype());
      return;
    }
    case OpId::slice: {
      const SliceAttrs& a = attrs.slice;
      MODU_CHECK(a.dim >= 0 && a.dim < x.dim() && a.step > 0 && a.start >= 0 && a.start <= a.end &&
                     a.end <= x.size(a.dim),
                 "slice: [", a.start, ", ", a.end, ") step ", a.step, " of dim ", a.dim, " is out of range for ",
                 describe(x));
      Dims s = x.shape(), st = x.strides();
      s[a.dim] = (a.end - a.start + a.step - 1) / a.step;
      st[a.dim] = x.stride(a.dim) * a.step;
      out[0] = Tensor::make_view(x.storage(), s, st, x.offset() + a.start * x.stride(a.dim), x.dtype());
      return;
    }
    case OpId::split: {
      const SplitAttrs& a = attrs.split;
      MODU_CHECK(a.dim >= 0 && a.dim < x.dim(), "split: dim ", a.dim, " out of range for ", describe(x));
      MODU_CHECK(a.sizes.size() == static_cast<int>(out.size()) && a.sizes.numel() >= 0,
                 "split: ", a.sizes.size(), " sizes for ", out.size(), " outputs");
      int64_t total = 0;
      for (int64_t s : a.sizes) total += s;
      MODU_CHECK(total == x.size(a.dim), "split: sizes ", a.sizes.str(), " sum to ", total, " but dim ", a.dim,
                 " of ", describe(x), " has ", x.size(a.dim));
      int64_t start = 0;
      for (size_t i = 0; i < out.size(); ++i) {
        Dims s = x.shape();
        s[a.dim] = a.sizes[static_cast<int>(i)];
        out[i] = Tensor::make_view(x.storage(), s, x.strides(), x.offset() + start * x.stride(a.dim), x.dtype());
        start += a.sizes[static_cast<int>(i)];
      }
      return;
    }
    default:
      MODU_FAIL("make_view_outputs called for ", op_name(op), ", which is not a View op");
  }
}

void check_inplace_args(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in) {
  const Tensor& dst = *in[0];
  switch (op) {
    case OpId::copy_:
    case OpId::add_: {
      const Tensor& src = *in[1];
      Dims s = broadcast_shapes(dst.shape(), src.shape(), op_name(op));
      MODU_CHECK(s == dst.shape(), op_name(op), ": source ", describe(src), " does not broadcast to ",
                 describe(dst));
      if (op == OpId::add_) require_same_dtype(op, dst, src);
      return;
    }
    case OpId::fill_:
    case OpId::mul_scalar_:
      return;
    case OpId::adamw_: {
      require_floating(op, dst, "parameter");
      for (int i = 1; i < 4; ++i)
        MODU_CHECK(in[i]->shape() == dst.shape() && in[i]->is_contiguous(), "adamw_: ",
                   i == 1 ? "gradient" : (i == 2 ? "first moment" : "second moment"), " ", describe(*in[i]),
                   " must be contiguous with the parameter's shape ", describe(dst));
      MODU_CHECK(dst.is_contiguous(), "adamw_: parameter ", describe(dst), " must be contiguous");
      MODU_CHECK(in[2]->dtype() == in[3]->dtype() && is_floating(in[2]->dtype()),
                 "adamw_: moments must share a floating dtype");
      return;
    }
    case OpId::adamw_multi_: {
      MODU_CHECK(!in.empty() && in.size() % 4 == 0, "adamw_multi_: ", in.size(),
                 " inputs; expected 4 N (N parameters, gradients, first and second moments)");
      const size_t n = in.size() / 4;
      const DType pt = in[0]->dtype(), mt = in[2 * n]->dtype();
      require_floating(op, *in[0], "parameter");
      MODU_CHECK(is_floating(mt), "adamw_multi_: moments must be floating, got ", dtype_name(mt));
      for (size_t i = 0; i < n; ++i) {
        const Tensor &p = *in[i], &g = *in[n + i], &m = *in[2 * n + i], &v = *in[3 * n + i];
        MODU_CHECK(p.dtype() == pt && g.dtype() == pt, "adamw_multi_: parameter ", i, " ", describe(p),
                   " or its gradient ", describe(g), " is not ", dtype_name(pt), " (one parameter dtype per call)");
        MODU_CHECK(m.dtype() == mt && v.dtype() == mt, "adamw_multi_: moments of parameter ", i, " are not ",
                   dtype_name(mt), " (one moment dtype per call)");
        MODU_CHECK(p.is_contiguous(), "adamw_multi_: parameter ", i, " ", describe(p), " must be contiguous");
        for (const Tensor* t : {&g, &m, &v})
          MODU_CHECK(t->shape() == p.shape() && t->is_contiguous(), "adamw_multi_: ", describe(*t), " of parameter ", i,
                     " must be contiguous with the parameter's shape ", describe(p));
      }
      return;
    }
    default:
      MODU_FAIL("check_inplace_args called for ", op_name(op));
  }
}

DType norm_y_dtype(OpId op, const NormAttrs& attrs, DType x) {
  if (!attrs.y_dtype_set || attrs.y_dtype == x) return x;
  MODU_CHECK(x == DType::F32 && (attrs.y_dtype == DType::BF16 || attrs.y_dtype == DType::F16), op_name(op),
             ": an output in ", dtype_name(attrs.y_dtype), " from an input in ", dtype_name(x),
             " is not supported; mixed precision normalises an f32 input into bf16 or f16");
  return attrs.y_dtype;
}

}  // namespace modu
