// core/ops/layout.h — backend-independent planning shared by the CPU and CUDA kernels: how a tensor
// splits around a dim, how a strided matrix is passed to a BLAS, how a matmul's batch dims broadcast or
// fold into its rows, how a reduction orders its dims, and a convolution's geometry.
//
// Invariant: these only read shapes and strides; they never allocate or touch data, so both backends
// plan identically and a kernel's choice of path (copy or not, fold or not) is the same on either.
#pragma once

#include <cstdint>

#include "core/ops/op_attrs.h"
#include "core/tensor.h"

#if defined(__CUDACC__)
#define MODU_HOST_DEVICE __host__ __device__
#else
#define MODU_HOST_DEVICE
#endif

namespace modu {

// A shape seen as (outer, n, inner) around one dim: for a contiguous tensor, element (o, j, i) is at
// (o * n + j) * inner + i.
struct AroundDim {
  int64_t outer = 1, n = 1, inner = 1;
};
AroundDim around_dim(const Dims& shape, int dim);

// A rows x cols matrix with strides (row_stride, col_stride) as a BLAS row-major operand: itself with
// leading dimension ld, or (trans) the transpose of a row-major matrix with leading dimension ld.
struct GemmOperand {
  bool trans = false;
  int64_t ld = 0;
};
// False when neither the rows nor the columns are unit-stride (the caller copies the operand).
bool gemm_operand(int64_t rows, int64_t cols, int64_t row_stride, int64_t col_stride, GemmOperand* op);

// The batch dims of out = a @ b (a (..., M, K), b (..., K, N), out (..., M, N)): each operand's stride
// per batch dim of out (0 where it broadcasts), the batch count, and whether the whole batch folds into
// one GEMM of batch * M rows (b has no batch, a is untransposed and its batch dims step over whole
// row blocks).
struct MatmulBatch {
  int dims = 0;
  int64_t count = 1;
  Dims stride_a, stride_b;
  bool folds_into_rows = false;
};
MatmulBatch matmul_batch(const Tensor& a, const Tensor& b, const Tensor& out, const GemmOperand& oa);

// A reduction over `mask` (bit d: reduce dim d; 0 = all): `outer` outputs of `inner` elements each.
// column: the reduced dims lead, the kept dims trail and the input is contiguous, so it reduces as
// (inner, outer) rows without a copy. Otherwise `rows_view` is the input with kept dims first and
// reduced dims last (a view; the backend makes it contiguous). allow_column = false always plans rows.
struct ReducePlan {
  int64_t outer = 1, inner = 1;
  bool column = false;
  Tensor rows_view;
};
ReducePlan reduce_plan(const Tensor& x, uint32_t mask, bool allow_column = true);

// Head views for attention_packed. x (B, T, P NH HS) with a unit-stride last dim holds P parts of NH heads each
// (q | k | v for a packed projection, P = 3; the output o, P = 1); part p seen as (B, NH, T, HS), a view with
// strides (x.stride(0), HS, x.stride(1), 1). Reads shape and strides only, like the rest of this file.
Tensor packed_heads(const Tensor& x, int64_t n_head, int64_t parts, int64_t part);

// conv2d geometry: x (N, C, H, W), w (O, C, KH, KW), output (N, O, OH, OW).
struct ConvGeometry {
  int64_t N, C, H, W, O, KH, KW, OH, OW, SH, SW, PH, PW;
  MODU_HOST_DEVICE int64_t ckk() const { return C * KH * KW; }
  MODU_HOST_DEVICE int64_t ohw() const { return OH * OW; }
};
ConvGeometry conv_geometry(const Tensor& x, const Tensor& w, const ConvAttrs& a);

}  // namespace modu
