// core/ops/layout.cpp — see layout.h.
#include "core/ops/layout.h"

#include <algorithm>

namespace modu {

AroundDim around_dim(const Dims& shape, int dim) {
  AroundDim a;
  for (int d = 0; d < shape.size(); ++d) (d < dim ? a.outer : (d == dim ? a.n : a.inner)) *= shape[d];
  return a;
}

bool gemm_operand(int64_t rows, int64_t cols, int64_t sr, int64_t sc, GemmOperand* op) {
  if ((sc == 1 || cols == 1) && (rows == 1 || sr >= std::max<int64_t>(cols, 1))) {
    *op = {false, rows == 1 ? std::max<int64_t>(cols, 1) : sr};
    return true;
  }
  if ((sr == 1 || rows == 1) && (cols == 1 || sc >= std::max<int64_t>(rows, 1))) {
    *op = {true, cols == 1 ? std::max<int64_t>(rows, 1) : sc};
    return true;
  }
  return false;
}

MatmulBatch matmul_batch(const Tensor& a, const Tensor& b, const Tensor& out, const GemmOperand& oa) {
  MatmulBatch mb;
  mb.dims = out.dim() - 2;
  for (int d = 0; d < mb.dims; ++d) mb.count *= out.size(d);
  auto strides = [&](const Tensor& t) {
    Dims s = Dims::filled(mb.dims, 0);
    int lead = mb.dims - (t.dim() - 2);
    for (int d = 0; d < t.dim() - 2; ++d) s[lead + d] = t.size(d) == 1 ? 0 : t.stride(d);
    return s;
  };
  mb.stride_a = strides(a);
  mb.stride_b = strides(b);
  bool b_broadcast = true;
  for (int d = 0; d < mb.dims; ++d) b_broadcast = b_broadcast && mb.stride_b[d] == 0;
  if (b_broadcast && !oa.trans && mb.count > 1) {
    bool foldable = true;
    int64_t expect = out.size(-2) * oa.ld;
    for (int d = mb.dims - 1; d >= 0; --d) {
      if (out.size(d) == 1) continue;
      foldable = foldable && mb.stride_a[d] == expect;
      expect *= out.size(d);
    }
    mb.folds_into_rows = foldable;
  }
  return mb;
}

ReducePlan reduce_plan(const Tensor& x, uint32_t mask, bool allow_column) {
  ReducePlan p;
  int nd = x.dim();
  auto reduced = [&](int d) { return mask == 0 || (mask & (1u << d)); };
  for (int d = 0; d < nd; ++d) (reduced(d) ? p.inner : p.outer) *= x.size(d);
  int first_kept = 0;
  while (first_kept < nd && reduced(first_kept)) ++first_kept;
  bool prefix = true;
  for (int d = first_kept; d < nd; ++d) prefix = prefix && !reduced(d);
  if (allow_column && prefix && first_kept > 0 && first_kept < nd && x.is_contiguous()) {
    p.column = true;
    p.rows_view = x;
    return p;
  }
  Dims shape, strides;
  for (int d = 0; d < nd; ++d)
    if (!reduced(d)) shape.push_back(x.size(d)), strides.push_back(x.stride(d));
  for (int d = 0; d < nd; ++d)
    if (reduced(d)) shape.push_back(x.size(d)), strides.push_back(x.stride(d));
  p.rows_view = Tensor::make_view(x.storage(), shape, strides, x.offset(), x.dtype());
  return p;
}

Tensor packed_heads(const Tensor& x, int64_t n_head, int64_t parts, int64_t part) {
  MODU_CHECK(x.dim() == 3 && n_head > 0 && parts > 0 && x.size(2) % (parts * n_head) == 0 && part >= 0 &&
                 part < parts && (x.size(2) <= 1 || x.stride(2) == 1),
             "packed_heads: need x (B, T, ", parts, " * ", n_head, " * HS) with a unit-stride last dim, got ",
             describe(x));
  const int64_t HS = x.size(2) / (parts * n_head);
  return Tensor::make_view(x.storage(), Dims{x.size(0), n_head, x.size(1), HS}, Dims{x.stride(0), HS, x.stride(1), 1},
                           x.offset() + part * n_head * HS, x.dtype());
}

ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const ConvAttrs& a) {
  ConvGeometry g{};
  g.N = x.size(0), g.C = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.O = w.size(0), g.KH = w.size(2), g.KW = w.size(3);
  g.SH = a.stride_h, g.SW = a.stride_w, g.PH = a.pad_h, g.PW = a.pad_w;
  g.OH = (g.H + 2 * g.PH - g.KH) / g.SH + 1;
  g.OW = (g.W + 2 * g.PW - g.KW) / g.SW + 1;
  return g;
}

}  // namespace modu
