// nn/autocast.h — mixed precision: inside an AutocastGuard(bf16) scope, matrix products (Linear, the
// model's LM head, attention and what feeds it) compute in bf16 while parameters stay f32 ("master
// weights"): a layer casts its input and its weights to the compute dtype, and the cast's gradient
// brings the weight gradients back to f32, so .grad and the optimizer see f32. With master gradients (on by
// default, autograd/autograd.h) the products write those f32 gradients themselves and the casts pass them on.
//
// Invariants: the residual stream, normalisations and the loss stay in f32 (a block casts its
// branch output back before the residual add); autocast never changes a parameter's dtype; the scope
// is thread-local and nests (the guard restores the previous state).
#pragma once

#include "core/dtype.h"
#include "core/tensor.h"

namespace modu::nn {

// The dtype products compute in, or F32 when autocast is off.
DType autocast_dtype();
bool autocast_enabled();

class AutocastGuard {
 public:
  explicit AutocastGuard(DType compute);  // F32 turns autocast off inside the scope
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  DType prev_;
};

// x in the autocast compute dtype (itself when autocast is off or x is not floating).
Tensor autocast(const Tensor& x);

}  // namespace modu::nn
