// parallel/tensor_parallel.cpp — the TP conjugate operators (see tensor_parallel.h).
#include "parallel/tensor_parallel.h"

#include "autograd/function.h"
#include "core/ops/dispatch.h"

namespace modu::parallel {

namespace {
// A fresh contiguous sum over the TP group of `x` (x itself is never written). Autocast's bf16 (which the
// MPI reductions do not take) is summed in f32 and rounded once.
Tensor summed(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  const bool wide = x.dtype() == DType::F32 || x.dtype() == DType::F64;
  Tensor y = wide ? x.clone() : x.to(DType::F32).contiguous();
  tp.all_reduce(y, ReduceOp::Sum);
  return wide ? y : y.to(x.dtype());
}
}  // namespace

Tensor copy_to_tp_region(const Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  Tensor y;
  {
    NoGradGuard no_grad;
    y = x.contiguous();
    if (y.impl() == x.impl()) y = x.detach();
  }
  Communicator* comm = &tp;
  return autograd::record_function({x}, {y}, [comm](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].defined() ? summed(g[0], *comm) : Tensor()};
  })[0];
}

Tensor reduce_from_tp_region(const Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  Tensor y = summed(x, tp);
  return autograd::record_function({x}, {y}, [](const std::vector<Tensor>& g) { return std::vector<Tensor>{g[0]}; })[0];
}

}  // namespace modu::parallel
