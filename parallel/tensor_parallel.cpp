// parallel/tensor_parallel.cpp — the TP conjugate operators and the sequence-parallel ones (see tensor_parallel.h).
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

// x (B, T, ...) as (B, t, T/t, R) with R the trailing elements per position.
Dims split_sequence(const Tensor& x, int t, const char* op) {
  MODU_CHECK(x.dim() >= 2, op, ": expects (B, T, ...) activations, got ", describe(x));
  const int64_t B = x.size(0), T = x.size(1);
  MODU_CHECK(T % t == 0, op, ": the sequence of ", T, " positions is not divisible by the ", t,
             " tensor-parallel ranks (parallel.sequence_parallel needs train.seq_len divisible by parallel.tp)");
  return Dims{B, t, T / t, B * T == 0 ? 0 : x.numel() / (B * T)};
}

Dims with_seq(const Tensor& x, int64_t T) {
  Dims d = x.shape();
  d[1] = T;
  return d;
}

// (B, T/t, ...) from every rank -> (B, T, ...): rank q's slice at positions [q*T/t, (q+1)*T/t).
Tensor gather_seq(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  const int t = tp.size();
  const int64_t B = x.size(0), Tl = x.size(1), R = B * Tl == 0 ? 0 : x.numel() / (B * Tl);
  Tensor in = x.contiguous();
  Tensor out = Tensor::empty(Dims{t, B, Tl, R}, x.dtype(), x.device());  // block q: rank q's (B, T/t, R)
  tp.all_gather(in, out);
  return out.permute(Dims{1, 0, 2, 3}).contiguous().view(with_seq(x, Tl * t));
}

// (B, T, ...) partial on every rank -> (B, T/t, ...): the sum over the ranks of this rank's positions.
Tensor reduce_scatter_seq(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  const int t = tp.size();
  const Dims s = split_sequence(x, t, "reduce_scatter_to_sequence_region");
  const bool wide = x.dtype() == DType::F32 || x.dtype() == DType::F64;
  Tensor w = wide ? x : x.to(DType::F32);
  Tensor in = w.reshape(s).permute(Dims{1, 0, 2, 3}).contiguous();  // (t, B, T/t, R): block q = slice q
  Tensor out = Tensor::empty(Dims{s[0], s[2], s[3]}, in.dtype(), x.device());
  tp.reduce_scatter(in, out, ReduceOp::Sum);  // reads `in` only (x is never written)
  out = out.view(with_seq(x, s[2]));
  return wide ? out : out.to(x.dtype());
}

// This rank's slice (B, T/t, ...) of a replicated (B, T, ...), fresh and contiguous.
Tensor slice_seq(const Tensor& x, Communicator& tp) {
  NoGradGuard no_grad;
  const Dims s = split_sequence(x, tp.size(), "scatter_to_sequence_region");
  return x.narrow(1, tp.rank() * s[2], s[2]).contiguous();
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

Tensor gather_from_sequence_region(const Tensor& x, Communicator& tp, bool partial_grad) {
  if (tp.size() == 1) return x;
  MODU_CHECK(x.dim() >= 2, "gather_from_sequence_region: expects (B, T/t, ...) activations, got ", describe(x));
  Tensor y = gather_seq(x, tp);
  Communicator* comm = &tp;
  return autograd::record_function({x}, {y}, [comm, partial_grad](const std::vector<Tensor>& g) {
    if (!g[0].defined()) return std::vector<Tensor>{Tensor()};
    return std::vector<Tensor>{partial_grad ? reduce_scatter_seq(g[0], *comm) : slice_seq(g[0], *comm)};
  })[0];
}

Tensor reduce_scatter_to_sequence_region(const Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  Tensor y = reduce_scatter_seq(x, tp);
  Communicator* comm = &tp;
  return autograd::record_function({x}, {y}, [comm](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].defined() ? gather_seq(g[0], *comm) : Tensor()};
  })[0];
}

Tensor scatter_to_sequence_region(const Tensor& x, Communicator& tp) {
  if (tp.size() == 1) return x;
  Tensor y = slice_seq(x, tp);
  Communicator* comm = &tp;
  return autograd::record_function({x}, {y}, [comm](const std::vector<Tensor>& g) {
    return std::vector<Tensor>{g[0].defined() ? gather_seq(g[0], *comm) : Tensor()};
  })[0];
}

}  // namespace modu::parallel
