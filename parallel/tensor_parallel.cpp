// parallel/tensor_parallel.cpp — the TP conjugate operators and the sequence-parallel ones (see tensor_parallel.h).
#include "parallel/tensor_parallel.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/function.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

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

// Shapes: ids (B, T), weight (n, C) = rows [begin, begin + n) of the (Vp, C) table, out (B, T, C).
Tensor vocab_parallel_embedding(const Tensor& ids, const Tensor& weight, int64_t vocab_begin, Communicator& tp,
                                bool sequence_parallel) {
  MODU_CHECK(weight.dim() == 2, "vocab_parallel_embedding: the weight shard must be (rows, C), got ", describe(weight));
  const int64_t n = weight.size(0);
  Tensor local, mask;  // local row of each id (0 where another rank owns it), and 1 / 0 for owned or not: (B, T)
  {
    NoGradGuard no_grad;
    std::vector<int64_t> global = ids.to(Device::cpu()).to(DType::I64).contiguous().to_vector<int64_t>();
    std::vector<int64_t> rows(global.size());
    std::vector<float> owned(global.size());
    for (size_t i = 0; i < global.size(); ++i) {
      const int64_t row = global[i] - vocab_begin;
      const bool mine = row >= 0 && row < n;
      rows[i] = mine ? row : 0;
      owned[i] = mine ? 1.0f : 0.0f;
    }
    Dims shape = ids.shape();
    local = Tensor::from_vector(rows, shape).to(weight.device());
    shape.push_back(1);
    mask = Tensor::from_vector(owned, shape).to(weight.dtype()).to(weight.device());  // (B, T, 1)
  }
  Tensor partial;
  {
    NoGradGuard no_grad;
    partial = mul(embedding(weight, local), mask);  // (B, T, C): this rank's rows, zeros elsewhere
  }
  partial = autograd::record_function({weight}, {partial}, [local, mask, n](const std::vector<Tensor>& g) {
    if (!g[0].defined()) return std::vector<Tensor>{Tensor()};
    return std::vector<Tensor>{embedding_backward(mul(g[0], mask.to(g[0].dtype())), local, n)};  // (n, C)
  })[0];
  return sequence_parallel ? reduce_scatter_to_sequence_region(partial, tp) : reduce_from_tp_region(partial, tp);
}

// Shapes: logits (N, n) = global columns [begin, begin + n) of (N, Vp); targets (N); loss () f32.
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& targets, int64_t vocab_begin,
                                    int64_t valid_classes, Communicator& tp, int64_t ignore_index) {
  MODU_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
             "vocab_parallel_cross_entropy: need logits (N, n) and targets (N), got ", describe(logits), " and ",
             describe(targets));
  const int64_t N = logits.size(0), n = logits.size(1);
  // The local real classes: global columns [begin, min(begin + n, V)); the rest of the shard is padding.
  const int64_t nv = std::clamp<int64_t>(valid_classes - vocab_begin, 0, n);
  Tensor x;  // (N, n) f32 on the host (tensor parallelism runs on the CPU)
  std::vector<int64_t> t;
  {
    NoGradGuard no_grad;
    x = logits.to(Device::cpu()).to(DType::F32).contiguous();
    t = targets.to(Device::cpu()).to(DType::I64).contiguous().to_vector<int64_t>();
  }
  int64_t counted = 0;
  for (int64_t i = 0; i < N; ++i) {
    MODU_CHECK(t[i] == ignore_index || (t[i] >= 0 && t[i] < valid_classes), "vocab_parallel_cross_entropy: target ",
               t[i], " at row ", i, " is outside [0, ", valid_classes, ") and is not the ignore_index ", ignore_index);
    counted += t[i] != ignore_index;
  }
  const float* X = x.data<float>();
  // Row maxima over the local real classes (-inf where there are none), then over the group.
  Tensor row_max = Tensor::empty(Dims{N}, DType::F32);
  float* M = row_max.data<float>();
  const bool threaded = N * n > (int64_t{1} << 15);  // rows are independent: OpenMP over them when it pays
#pragma omp parallel for if (threaded)
  for (int64_t i = 0; i < N; ++i) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < nv; ++j) m = std::max(m, X[i * n + j]);
    M[i] = m;
  }
  tp.all_reduce(row_max, ReduceOp::Max);
  // Sums of exp(x - max) over the local real classes (rows [0, N)) and the target logits (rows [N, 2N): the owner's
  // value, 0 on the other ranks), summed over the group in one all-reduce.
  Tensor sums = Tensor::zeros(Dims{2 * N}, DType::F32);
  float* S = sums.data<float>();
#pragma omp parallel for if (threaded)
  for (int64_t i = 0; i < N; ++i) {
    const float* p = X + i * n;
    float s = 0;
    for (int64_t j = 0; j < nv; ++j) s += std::exp(p[j] - M[i]);
    S[i] = s;
    const int64_t local = t[i] - vocab_begin;
    if (t[i] != ignore_index && local >= 0 && local < nv) S[N + i] = p[local];
  }
  tp.all_reduce(sums, ReduceOp::Sum);
  auto lse = std::make_shared<std::vector<float>>(static_cast<size_t>(N));
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    (*lse)[i] = M[i] + std::log(S[i]);
    if (t[i] != ignore_index) total += static_cast<double>((*lse)[i] - S[N + i]);
  }
  const double value = counted ? total / static_cast<double>(counted) : NAN;
  Tensor loss = Tensor::from_vector(std::vector<float>{static_cast<float>(value)}, Dims{}).to(logits.device());
  const DType dtype = logits.dtype();
  const Device device = logits.device();
  return autograd::record_function(
      {logits}, {loss},
      [x, t, lse, nv, n, N, counted, vocab_begin, ignore_index, dtype, device, threaded](const std::vector<Tensor>& g) {
        if (!g[0].defined()) return std::vector<Tensor>{Tensor()};
        const double gv = g[0].to(Device::cpu()).to(DType::F64).item();
        const float scale = static_cast<float>(counted ? gv / static_cast<double>(counted) : 0.0);
        Tensor grad = Tensor::zeros(Dims{N, n}, DType::F32);  // padding columns and ignored rows stay 0
        float* G = grad.data<float>();
        const float* X = x.data<float>();
#pragma omp parallel for if (threaded)
        for (int64_t i = 0; i < N; ++i) {
          if (t[i] == ignore_index) continue;
          const float l = (*lse)[i];
          for (int64_t j = 0; j < nv; ++j) G[i * n + j] = std::exp(X[i * n + j] - l) * scale;
          const int64_t local = t[i] - vocab_begin;
          if (local >= 0 && local < nv) G[i * n + local] -= scale;
        }
        return std::vector<Tensor>{grad.to(dtype).to(device)};
      })[0];
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
