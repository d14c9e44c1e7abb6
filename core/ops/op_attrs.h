// core/ops/op_attrs.h — OpId (generated from op_table.def) and the attributes each op reads.
//
// Invariant: every attribute struct is trivially copyable, so OpAttrs can be stored by value in a tape
// node and copied with memcpy; no op attribute owns heap memory.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>

#include "core/device.h"
#include "core/dims.h"
#include "core/dtype.h"

namespace modu {

enum class OpId : uint16_t {
#define MODU_OP(name, kind, n_in, n_out, attrs) name,
#include "core/ops/op_table.def"
#undef MODU_OP
};

constexpr int kNumOps = 0
#define MODU_OP(name, kind, n_in, n_out, attrs) +1
#include "core/ops/op_table.def"
#undef MODU_OP
    ;
static_assert(kNumOps == 101,
              "op_table.def changed: update this count together with the kernels, "
              "derivatives.cpp and tests/core/op_cases.cpp");

enum class OpKind : uint8_t { Compute, View, InPlace, Factory };

struct NoAttrs {};
struct ScalarAttrs {
  double value = 0;
};
struct ClampAttrs {
  double lo = 0, hi = 0;
};
struct ReduceAttrs {
  uint32_t dims_mask = 0;  // bit d set: reduce dim d; 0 = every dim
  bool keepdim = false;
  int32_t correction = 0;  // var only: divide by N - correction
  bool accumulate_out = false;  // sum only: the result in x's accumulation dtype (f32 for bf16/f16), unrounded
};
struct MatmulAttrs {
  bool accumulate_out = false;  // the product in the inputs' accumulation dtype (f32 for bf16/f16), unrounded
};
struct DimAttrs {
  int32_t dim = 0;  // normalised (non-negative) by the op's front end
};
struct IndexAttrs {
  int64_t rows = 0;  // embedding_backward: rows of the weight
};
struct CrossEntropyAttrs {
  int64_t ignore_index = -100;  // targets equal to this contribute nothing
  // loss = sum over counted rows / divisor; divisor = number of counted rows ("mean") or 1 ("sum").
  bool mean = true;
  // Classes [valid_classes, V) are padding (a vocabulary padded for the hardware): they take no part in the
  // softmax, get a zero gradient and may not be targets. 0 means every class is valid.
  int64_t valid_classes = 0;
};
struct NormAttrs {
  double eps = 1e-5;
  int64_t groups = 1;  // group_norm only
  // layer_norm, rms_norm, add_layer_norm: y (and so gy) in this dtype instead of x's, when set (mixed
  // precision: an f32 residual stream normalised straight into the bf16 input of the next product). Only
  // y_dtype == x's dtype, or x f32 with y bf16/f16.
  bool y_dtype_set = false;
  DType y_dtype = DType::F32;
  DType r_dtype = DType::F32;  // add_layer_norm_backward: the dtype of gr (that of the forward's r)
};
struct DropoutAttrs {
  double p = 0;
  uint64_t key = 0;      // Philox key: the generator's stream
  uint64_t counter = 0;  // Philox counter offset of the first element
};
struct AttentionAttrs {
  double scale = 1;
  bool causal = true;
  int32_t n_head = 0;  // attention_packed: the heads NH of the packed projection (0 for attention)
};
struct RotaryAttrs {
  bool inverse = false;  // rotate by -angle (the derivative)
};
struct ConvAttrs {
  int32_t stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
};
struct UpsampleAttrs {
  int32_t scale_h = 2, scale_w = 2;
};
struct PoolAttrs {
  int32_t kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2;
  int64_t in_h = 0, in_w = 0;  // backward only: the input's spatial size
};
struct CastAttrs {
  DType dtype = DType::F32;
};
struct DeviceAttrs {
  Device device;
};
struct ShapeAttrs {
  Dims shape;
};
struct PermuteAttrs {
  Dims dims;
};
struct SliceAttrs {
  int32_t dim = 0;
  int64_t start = 0, end = 0, step = 1;
};
struct SplitAttrs {
  int32_t dim = 0;
  Dims sizes;  // one entry per piece (at most kMaxDims pieces)
};
struct AdamWAttrs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  double bias_correction1 = 1, bias_correction2 = 1;  // 1 - beta^t, computed by the optimizer
  double grad_scale = 1;  // the gradient is multiplied by this first (global-norm clipping folded in)
  int64_t decayed = 0;    // adamw_multi_: its first `decayed` tensors take weight_decay, the others none
};
struct FactoryAttrs {
  Dims shape;
  DType dtype = DType::F32;
  Device device;
  double a = 0, b = 0;
  uint64_t key = 0, counter = 0;
};

union OpAttrs {
  NoAttrs none;
  ScalarAttrs scalar;
  ClampAttrs clamp;
  ReduceAttrs reduce;
  MatmulAttrs matmul;
  DimAttrs dim;
  IndexAttrs index;
  CrossEntropyAttrs cross_entropy;
  NormAttrs norm;
  DropoutAttrs dropout;
  AttentionAttrs attention;
  RotaryAttrs rotary;
  ConvAttrs conv;
  UpsampleAttrs upsample;
  PoolAttrs pool;
  CastAttrs cast;
  DeviceAttrs device;
  ShapeAttrs shape;
  PermuteAttrs permute;
  SliceAttrs slice;
  SplitAttrs split;
  AdamWAttrs adamw;
  FactoryAttrs factory;

  // Every constructor zeroes all bytes first, so copying an OpAttrs never reads uninitialised memory.
  OpAttrs() { std::memset(static_cast<void*>(this), 0, sizeof(*this)); }
  OpAttrs(const NoAttrs&) : OpAttrs() {}
#define MODU_ATTR_CTOR(T, member) \
  OpAttrs(const T& a) : OpAttrs() { new (&member) T(a); }
  MODU_ATTR_CTOR(ScalarAttrs, scalar)
  MODU_ATTR_CTOR(ClampAttrs, clamp)
  MODU_ATTR_CTOR(ReduceAttrs, reduce)
  MODU_ATTR_CTOR(MatmulAttrs, matmul)
  MODU_ATTR_CTOR(DimAttrs, dim)
  MODU_ATTR_CTOR(IndexAttrs, index)
  MODU_ATTR_CTOR(CrossEntropyAttrs, cross_entropy)
  MODU_ATTR_CTOR(NormAttrs, norm)
  MODU_ATTR_CTOR(DropoutAttrs, dropout)
  MODU_ATTR_CTOR(AttentionAttrs, attention)
  MODU_ATTR_CTOR(RotaryAttrs, rotary)
  MODU_ATTR_CTOR(ConvAttrs, conv)
  MODU_ATTR_CTOR(UpsampleAttrs, upsample)
  MODU_ATTR_CTOR(PoolAttrs, pool)
  MODU_ATTR_CTOR(CastAttrs, cast)
  MODU_ATTR_CTOR(DeviceAttrs, device)
  MODU_ATTR_CTOR(ShapeAttrs, shape)
  MODU_ATTR_CTOR(PermuteAttrs, permute)
  MODU_ATTR_CTOR(SliceAttrs, slice)
  MODU_ATTR_CTOR(SplitAttrs, split)
  MODU_ATTR_CTOR(AdamWAttrs, adamw)
  MODU_ATTR_CTOR(FactoryAttrs, factory)
#undef MODU_ATTR_CTOR
};
static_assert(std::is_trivially_copyable_v<OpAttrs>);

struct OpInfo {
  const char* name;
  OpKind kind;
  int8_t n_in;   // -1: variadic
  int8_t n_out;  // -1: variadic
};
const OpInfo& op_info(OpId op);
inline const char* op_name(OpId op) { return op_info(op).name; }

}  // namespace modu
