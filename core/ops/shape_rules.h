// core/ops/shape_rules.h — per-op argument checks and output shapes (backend independent).
#pragma once

#include <span>

#include "core/ops/op_attrs.h"
#include "core/tensor.h"

namespace modu {

struct OutputSpec {
  Dims shape;
  DType dtype = DType::F32;
};

// Checks the inputs of a Compute or Factory op and writes each output's shape and dtype.
// Errors name the op and the shapes: "matmul: inner sizes differ: f32(2, 3) @ f32(4, 5)".
void infer_outputs(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in,
                   std::span<OutputSpec> out);

// Builds the outputs of a View op as aliases of input 0.
void make_view_outputs(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in,
                       std::span<Tensor> out);

// Checks the inputs of an InPlace op.
void check_inplace_args(OpId op, const OpAttrs& attrs, std::span<const Tensor* const> in);

// Strides for viewing (shape, strides) as new_shape without a copy; false when impossible.
bool view_strides(const Dims& shape, const Dims& strides, const Dims& new_shape, Dims* new_strides);

// The dtype in which a floating tensor of dtype t accumulates (f64 for f64, else f32).
inline DType accumulate_dtype(DType t) { return t == DType::F64 ? DType::F64 : DType::F32; }

// The dtype of a norm's output y, and so of its gradient gy (layer_norm, rms_norm, add_layer_norm and their
// backward): attrs.y_dtype when set, else x's. Refuses the pairs the kernels do not have (only y in x's dtype,
// or x f32 with y bf16/f16).
DType norm_y_dtype(OpId op, const NormAttrs& attrs, DType x);

}  // namespace modu
