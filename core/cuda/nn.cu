// core/cuda/nn.cu — CUDA kernels for softmax / log_softmax and their backward, fused cross-entropy, and
// layer_norm / rms_norm / group_norm with their backward, and add_layer_norm (residual add + layer norm, one
// pass) with its backward. The norms take an f32 input to a bf16/f16 output (and gradient): mixed precision.
//
// Shapes: softmax over `dim` of a contiguous (outer, n, inner) view; cross-entropy logits (N, V), target
// (N); norms over the last dim C of (rows, C), group_norm over (N, G, Cg * S).
// Kernels: one warp per row for row-wise work (softmax with inner == 1, cross-entropy, layer/rms norm);
// one thread per (outer, inner) column when the softmax dim is not innermost; one block per (n, g) group
// for group_norm. Statistics (mean, rstd, lse) are acc_t (f32, or f64 for f64), as on the CPU.
//
// Invariants:
//  - cross_entropy saves only lse (N); cross_entropy_backward recomputes softmax from it row by row and
//    writes glogits directly (no probability matrix), fixing up the target column in the same pass with
//    the CPU's rounding sequence. The loss is summed in f64 in a fixed order.
//  - Parameter gradients (gw, gb) are reduced deterministically: per-chunk partial sums in a scratch
//    buffer, then added in chunk order; no atomics. All gradients are written (=).
//  - A target outside [0, V) that is not ignore_index is reported through the deferred error slot
//    (core/cuda/runtime.h) and contributes nothing; nothing out of bounds is read.
#include "core/cuda/common.cuh"
#include "core/ops/layout.h"

namespace modu::cuda {

namespace {

constexpr int kRowsPerBlock = kThreads / 32;  // warp-per-row kernels

inline unsigned row_blocks(int64_t rows) { return static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock); }


template <class A>
__device__ __forceinline__ A max_keep(A m, A v) {
  return m < v ? v : m;  // std::max(m, v): a NaN v is skipped, as on the CPU
}

// ---- softmax --------------------------------------------------------------------------------------------------

template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, int64_t rows, int64_t n, bool log_out) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T* p = x + row * n;
  T* q = y + row * n;
  A m = -m_inf<A>();
  for (int64_t j = lane; j < n; j += 32) m = max_keep(m, ld(p + j));
  m = warp_max(m);
  if (m == -m_inf<A>()) m = A(0);
  A s = A(0);
  for (int64_t j = lane; j < n; j += 32) s += m_exp(ld(p + j) - m);
  s = warp_sum(s);
  if (log_out) {
    A lse = m + m_log(s);
    for (int64_t j = lane; j < n; j += 32) st(q + j, ld(p + j) - lse);
  } else {
    A inv = A(1) / s;
    for (int64_t j = lane; j < n; j += 32) st(q + j, m_exp(ld(p + j) - m) * inv);
  }
}

template <class T>
__global__ void softmax_cols_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log_out) {
  using A = acc_t<T>;
  int64_t total = outer * inner;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t base = (r / inner) * n * inner + r % inner;
    A m = -m_inf<A>();
    for (int64_t j = 0; j < n; ++j) m = max_keep(m, ld(x + base + j * inner));
    if (m == -m_inf<A>()) m = A(0);
    A s = A(0);
    for (int64_t j = 0; j < n; ++j) s += m_exp(ld(x + base + j * inner) - m);
    if (log_out) {
      A lse = m + m_log(s);
      for (int64_t j = 0; j < n; ++j) st(y + base + j * inner, ld(x + base + j * inner) - lse);
    } else {
      A inv = A(1) / s;
      for (int64_t j = 0; j < n; ++j) st(y + base + j * inner, m_exp(ld(x + base + j * inner) - m) * inv);
    }
  }
}

void softmax_kernel(const KernelCall& c) {
  Tensor x = contiguous(c.input(0));
  Tensor& y = c.output(0);
  if (x.numel() == 0) return;
  bool log_out = c.op == OpId::log_softmax;
  AroundDim a = around_dim(x.shape(), c.attrs.dim.dim);
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    const T* in = static_cast<const T*>(x.data_ptr());
    T* out = static_cast<T*>(y.data_ptr());
    if (a.inner == 1) {
      softmax_rows_kernel<T><<<row_blocks(a.outer), kThreads, 0, cur_stream()>>>(in, out, a.outer, a.n, log_out);
    } else {
      softmax_cols_kernel<T><<<grid_for(a.outer * a.inner), kThreads, 0, cur_stream()>>>(in, out, a.outer, a.n,
                                                                                          a.inner, log_out);
    }
    MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
  });
}

template <class T>
__global__ void softmax_bwd_rows_kernel(const T* y, const T* gy, T* gx, int64_t rows, int64_t n, bool from_log) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T *Y = y + row * n, *G = gy + row * n;
  T* O = gx + row * n;
  A dot = A(0);
  if (from_log) {
    for (int64_t j = lane; j < n; j += 32) dot += ld(G + j);
  } else {
    for (int64_t j = lane; j < n; j += 32) dot += ld(G + j) * ld(Y + j);
  }
  dot = warp_sum(dot);
  if (from_log) {
    for (int64_t j = lane; j < n; j += 32) st(O + j, ld(G + j) - m_exp(ld(Y + j)) * dot);
  } else {
    for (int64_t j = lane; j < n; j += 32) st(O + j, ld(Y + j) * (ld(G + j) - dot));
  }
}

template <class T>
__global__ void softmax_bwd_cols_kernel(const T* y, const T* gy, T* gx, int64_t outer, int64_t n, int64_t inner,
                                        bool from_log) {
  using A = acc_t<T>;
  int64_t total = outer * inner;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < total;
       r += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t base = (r / inner) * n * inner + r % inner;
    A dot = A(0);
    for (int64_t j = 0; j < n; ++j) {
      int64_t k = base + j * inner;
      dot += from_log ? ld(gy + k) : ld(gy + k) * ld(y + k);
    }
    for (int64_t j = 0; j < n; ++j) {
      int64_t k = base + j * inner;
      st(gx + k, from_log ? ld(gy + k) - m_exp(ld(y + k)) * dot : ld(y + k) * (ld(gy + k) - dot));
    }
  }
}

void softmax_backward_kernel(const KernelCall& c) {
  Tensor y = contiguous(c.input(0)), gy = contiguous(c.input(1));
  Tensor& gx = c.output(0);
  if (y.numel() == 0) return;
  bool from_log = c.op == OpId::log_softmax_backward;
  AroundDim a = around_dim(y.shape(), c.attrs.dim.dim);
  dispatch_floating(y.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    const T* Y = static_cast<const T*>(y.data_ptr());
    const T* G = static_cast<const T*>(gy.data_ptr());
    T* O = static_cast<T*>(gx.data_ptr());
    if (a.inner == 1) {
      softmax_bwd_rows_kernel<T><<<row_blocks(a.outer), kThreads, 0, cur_stream()>>>(Y, G, O, a.outer, a.n, from_log);
    } else {
      softmax_bwd_cols_kernel<T><<<grid_for(a.outer * a.inner), kThreads, 0, cur_stream()>>>(Y, G, O, a.outer, a.n,
                                                                                              a.inner, from_log);
    }
    MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
  });
}

// ---- cross-entropy ---------------------------------------------------------------------------------------------

// One warp per row, one pass over the row: each lane keeps a running (max, sum of exp) over its columns
// ("online softmax"), then the lanes merge theirs. Row stride V, classes [0, Vc).
template <class T, class I>
__global__ void ce_rows_kernel(const T* logits, const I* target, int64_t N, int64_t V, int64_t Vc, int64_t ignore,
                               acc_t<T>* lse, double* row_loss, int* counted, DeviceErrorSlot* slot) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  const T* p = logits + row * V;
  A m = -m_inf<A>(), s = A(0);
  for (int64_t j = lane; j < Vc; j += 32) {
    A x = ld(p + j);
    if (x > m) {
      s = s * m_exp(m - x) + A(1);
      m = x;
    } else if (x != -m_inf<A>()) {  // a -inf column adds 0 (and -inf - -inf would be NaN); NaN propagates
      s += m_exp(x - m);
    }
  }
  A row_max = warp_max(m);
  // A lane with no column, or only -inf ones, holds s = 0 and adds nothing; one that met a NaN keeps it (as the CPU).
  s = m == -m_inf<A>() ? s : s * m_exp(m - row_max);
  m = row_max;
  s = warp_sum(s);
  if (lane != 0) return;
  A l = m + m_log(s);
  lse[row] = l;
  int64_t t = static_cast<int64_t>(target[row]);
  double loss = 0;
  int cnt = 0;
  if (t != ignore) {
    if (t >= 0 && t < Vc) {
      loss = static_cast<double>(l - ld(p + t));
      cnt = 1;
    } else {
      report_index_error(slot, OpId::cross_entropy, row, t, Vc);
    }
  }
  row_loss[row] = loss;
  counted[row] = cnt;
}

template <class T>
__global__ void ce_finish_kernel(const double* row_loss, const int* counted, int64_t N, bool mean, T* loss) {
  __shared__ double sd[32];
  __shared__ long long sc[32];
  double total = 0;
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    total += row_loss[i];
    cnt += counted[i];
  }
  total = block_sum(total, sd);
  cnt = block_sum(cnt, sc);
  if (threadIdx.x == 0) {
    double value = mean ? (cnt ? total / static_cast<double>(cnt) : m_nan<double>()) : total;
    st(loss, static_cast<acc_t<T>>(value));
  }
}

void cross_entropy_kernel(const KernelCall& c) {
  Tensor logits = contiguous(c.input(0)), target = contiguous(c.input(1));
  Tensor &loss = c.output(0), &lse = c.output(1);
  const CrossEntropyAttrs& a = c.attrs.cross_entropy;
  int64_t N = logits.size(0), V = logits.size(1), Vc = a.valid_classes > 0 ? a.valid_classes : V;
  int dev = current_device();
  if (N == 0) {
    fill(loss, a.mean ? NAN : 0.0);
    return;
  }
  MODU_CHECK(V > 0, "cross_entropy: logits ", describe(logits), " have no classes");
  Tensor row_loss = Tensor::empty(Dims{N}, DType::F64, Device::cuda(dev));
  Tensor counted = Tensor::empty(Dims{N}, DType::I32, Device::cuda(dev));
  DeviceErrorSlot* slot = error_slot(dev);
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dispatch_index(target.dtype(), "cross_entropy", [&](auto itag) {
      using I = decltype(itag);
      ce_rows_kernel<T, I><<<row_blocks(N), kThreads, 0, cur_stream()>>>(
          static_cast<const T*>(logits.data_ptr()), static_cast<const I*>(target.data_ptr()), N, V, Vc, a.ignore_index,
          static_cast<A*>(lse.data_ptr()), static_cast<double*>(row_loss.data_ptr()),
          static_cast<int*>(counted.data_ptr()), slot);
      MODU_CUDA_LAUNCH_CHECK("cross_entropy");
    });
    ce_finish_kernel<T><<<1, 1024, 0, cur_stream()>>>(static_cast<const double*>(row_loss.data_ptr()),
                                                     static_cast<const int*>(counted.data_ptr()), N, a.mean,
                                                     static_cast<T*>(loss.data_ptr()));
    MODU_CUDA_LAUNCH_CHECK("cross_entropy (sum)");
  });
}

// Any floating scalar on the device, as double.
__device__ __forceinline__ double load_scalar(const void* p, DType t) {
  switch (t) {
    case DType::F32: return *static_cast<const float*>(p);
    case DType::F64: return *static_cast<const double*>(p);
    case DType::BF16: return __bfloat162float(*static_cast<const bf16_t*>(p));
    case DType::F16: return __half2float(*static_cast<const f16_t*>(p));
    case DType::I32: return *static_cast<const int32_t*>(p);
    case DType::I64: return static_cast<double>(*static_cast<const int64_t*>(p));
    case DType::U8: return *static_cast<const uint8_t*>(p);
    case DType::Bool: return *static_cast<const bool*>(p) ? 1.0 : 0.0;
  }
  return 0;
}

// scale = g / counted (mean) or g (sum), computed like the CPU (in double, then acc_t).
template <class A, class I>
__global__ void ce_scale_kernel(const I* target, int64_t N, int64_t ignore, bool mean, const void* g, DType g_type,
                                A* scale) {
  __shared__ long long sc[32];
  long long cnt = 0;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) cnt += static_cast<int64_t>(target[i]) != ignore;
  cnt = block_sum(cnt, sc);
  if (threadIdx.x == 0) {
    double gv = load_scalar(g, g_type);
    *scale = static_cast<A>(mean ? (cnt ? gv / static_cast<double>(cnt) : 0.0) : gv);
  }
}

template <class T, class I>
__global__ void ce_backward_kernel(const T* logits, const I* target, const acc_t<T>* lse, const acc_t<T>* scale_p,
                                   T* grad, int64_t N, int64_t V, int64_t Vc, int64_t ignore) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= N) return;
  const T* p = logits + row * V;
  T* q = grad + row * V;
  int64_t t = static_cast<int64_t>(target[row]);
  if (t == ignore) {
    for (int64_t j = lane; j < V; j += 32) st(q + j, A(0));
    return;
  }
  A l = lse[row], scale = *scale_p;
  for (int64_t j = lane; j < V; j += 32) {
    A v = j < Vc ? m_exp(ld(p + j) - l) * scale : A(0);  // padding columns: gradient 0
    if (j == t) v = to_acc(from_value<T>(v)) - scale;  // the CPU stores, reloads, subtracts
    st(q + j, v);
  }
}

void cross_entropy_backward_kernel(const KernelCall& c) {
  Tensor logits = contiguous(c.input(0)), target = contiguous(c.input(1)), lse = contiguous(c.input(2));
  const Tensor& g = c.input(3);
  Tensor& gl = c.output(0);
  const CrossEntropyAttrs& a = c.attrs.cross_entropy;
  int64_t N = logits.size(0), V = logits.size(1), Vc = a.valid_classes > 0 ? a.valid_classes : V;
  if (N == 0 || V == 0) return;
  int dev = current_device();
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    Tensor scale = Tensor::empty(Dims{1}, std::is_same_v<A, double> ? DType::F64 : DType::F32, Device::cuda(dev));
    dispatch_index(target.dtype(), "cross_entropy_backward", [&](auto itag) {
      using I = decltype(itag);
      const I* tp = static_cast<const I*>(target.data_ptr());
      ce_scale_kernel<A, I><<<1, 1024, 0, cur_stream()>>>(tp, N, a.ignore_index, a.mean, g.data_ptr(), g.dtype(),
                                                          static_cast<A*>(scale.data_ptr()));
      MODU_CUDA_LAUNCH_CHECK("cross_entropy_backward (scale)");
      ce_backward_kernel<T, I><<<row_blocks(N), kThreads, 0, cur_stream()>>>(
          static_cast<const T*>(logits.data_ptr()), tp, static_cast<const A*>(lse.data_ptr()),
          static_cast<const A*>(scale.data_ptr()), static_cast<T*>(gl.data_ptr()), N, V, Vc, a.ignore_index);
      MODU_CUDA_LAUNCH_CHECK("cross_entropy_backward");
    });
  });
}

// ---- layer_norm / rms_norm ---------------------------------------------------------------------------------------

// The (x, r, y) storage types of the norms: all one floating type, or x f32 with r and y each f32, bf16 or f16
// (mixed precision; shape_rules' norm_y_dtype admits the same pairs). f(T{}, R{}, O{}).
template <class F>
void dispatch_norm_types(DType x, DType r, DType y, const char* name, F&& f) {
  if (r == x && y == x) return dispatch_floating(x, name, [&](auto t) { f(t, t, t); });
  auto half_or_f32 = [](DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; };
  MODU_CHECK(x == DType::F32 && half_or_f32(r) && half_or_f32(y), name, ": no CUDA kernel for input ", dtype_name(x),
             ", branch ", dtype_name(r), ", output ", dtype_name(y));
  auto with_y = [&](auto rr) {
    if (y == DType::F32)
      f(float{}, rr, float{});
    else if (y == DType::BF16)
      f(float{}, rr, bf16_t{});
    else
      f(float{}, rr, f16_t{});
  };
  if (r == DType::F32)
    with_y(float{});
  else if (r == DType::BF16)
    with_y(bf16_t{});
  else
    with_y(f16_t{});
}

// A warp per row of x (rows, C). With r (add_layer_norm): s = x + r is written first (rounded to T) and the
// norm is taken of the rounded sum; each lane reads back only the elements it wrote, so no barrier is needed.
template <class T, class R, class O>
__global__ void layer_norm_kernel(const T* x, const R* r, T* s, const T* w, const T* b, O* y, acc_t<T>* mean_out,
                                  acc_t<T>* rstd_out, int64_t rows, int64_t C, acc_t<T> eps, bool rms) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const T* p = x + row * C;
  O* q = y + row * C;
  if (r) {
    T* sum = s + row * C;
    const R* rr = r + row * C;
    for (int64_t j = lane; j < C; j += 32) st(sum + j, ld(p + j) + static_cast<A>(ld(rr + j)));
    p = sum;
  }
  A m = A(0);
  if (!rms) {
    for (int64_t j = lane; j < C; j += 32) m += ld(p + j);
    m = warp_sum(m) / A(C);
  }
  A v = A(0);
  for (int64_t j = lane; j < C; j += 32) {
    A d = ld(p + j) - m;
    v += d * d;
  }
  v = warp_sum(v);
  A rstd = A(1) / m_sqrt(v / A(C) + eps);
  if (lane == 0) {
    if (mean_out) mean_out[row] = m;
    rstd_out[row] = rstd;
  }
  if (rms) {
    for (int64_t j = lane; j < C; j += 32) st(q + j, ld(p + j) * rstd * ld(w + j));
  } else {
    for (int64_t j = lane; j < C; j += 32) st(q + j, (ld(p + j) - m) * rstd * ld(w + j) + ld(b + j));
  }
}

// layer_norm, rms_norm: (x, w, [b]) -> (y, [mean], rstd); add_layer_norm: (x, r, w, b) -> (s, y, mean, rstd).
void layer_norm_launch(const KernelCall& c) {
  const bool rms = c.op == OpId::rms_norm, fused = c.op == OpId::add_layer_norm;
  const int wi = fused ? 2 : 1, yi = fused ? 1 : 0, stats = yi + 1;
  Tensor x = contiguous(c.input(0)), r = fused ? contiguous(c.input(1)) : Tensor(), w = contiguous(c.input(wi));
  Tensor b = rms ? Tensor() : contiguous(c.input(wi + 1));
  int64_t C = x.size(-1), rows = C > 0 ? x.numel() / C : 0;
  if (rows == 0) return;
  dispatch_norm_types(
      x.dtype(), fused ? r.dtype() : x.dtype(), c.output(yi).dtype(), op_name(c.op), [&](auto t_, auto r_, auto o_) {
        using T = decltype(t_);
        using R = decltype(r_);
        using O = decltype(o_);
        using A = acc_t<T>;
        layer_norm_kernel<T, R, O><<<row_blocks(rows), kThreads, 0, cur_stream()>>>(
            static_cast<const T*>(x.data_ptr()), fused ? static_cast<const R*>(r.data_ptr()) : nullptr,
            fused ? static_cast<T*>(c.output(0).data_ptr()) : nullptr, static_cast<const T*>(w.data_ptr()),
            rms ? nullptr : static_cast<const T*>(b.data_ptr()), static_cast<O*>(c.output(yi).data_ptr()),
            rms ? nullptr : static_cast<A*>(c.output(stats).data_ptr()),
            static_cast<A*>(c.output(rms ? stats : stats + 1).data_ptr()), rows, C, static_cast<A>(c.attrs.norm.eps),
            rms);
        MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
      });
}

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// A warp per row: gx = the norm's input gradient; with gs (add_layer_norm_backward) gx = gs + that, and gr the
// same value in R.
template <class T, class G, class R>
__global__ void layer_norm_bwd_kernel(const G* gy, const T* x, const T* w, const acc_t<T>* mean,
                                      const acc_t<T>* rstd_in, const T* gs, T* gx, R* gr, int64_t rows, int64_t C,
                                      bool rms) {
  using A = acc_t<T>;
  int64_t row = static_cast<int64_t>(blockIdx.x) * kRowsPerBlock + (threadIdx.x >> 5);
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
  const G* g = gy + row * C;
  const T* p = x + row * C;
  A m = rms ? A(0) : mean[row], rstd = rstd_in[row];
  A sum_dyw = A(0), sum_dyw_xhat = A(0);
  for (int64_t j = lane; j < C; j += 32) {
    A xhat = (ld(p + j) - m) * rstd;
    A dyw = static_cast<A>(ld(g + j)) * ld(w + j);
    sum_dyw += dyw;
    sum_dyw_xhat += dyw * xhat;
  }
  sum_dyw = warp_sum(sum_dyw);
  sum_dyw_xhat = warp_sum(sum_dyw_xhat);
  A mean_dyw = rms ? A(0) : sum_dyw / A(C), mean_dyw_xhat = sum_dyw_xhat / A(C);
  T* q = gx + row * C;
  for (int64_t j = lane; j < C; j += 32) {
    A xhat = (ld(p + j) - m) * rstd;
    A dyw = static_cast<A>(ld(g + j)) * ld(w + j);
    A v = rstd * (dyw - mean_dyw - xhat * mean_dyw_xhat);
    if (gs) {  // as the separate ops round: the norm's gradient to T, then a plain (never contracted) add of gs
      const T rounded = from_value<T>(v);
      v = add_rn(ld(gs + row * C + j), ld(&rounded));
      st(gr + row * C + j, v);
    }
    st(q + j, v);
  }
}

// Column partial sums of gy * xhat (and gy) over the row chunk blockIdx.y: pw/pb (splits, C).
template <class G, class T>
__global__ void norm_param_partial_kernel(const G* gy, const T* x, const acc_t<T>* mean, const acc_t<T>* rstd,
                                          int64_t rows, int64_t C, int64_t chunk, acc_t<T>* pw, acc_t<T>* pb) {
  using A = acc_t<T>;
  int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  int64_t r0 = blockIdx.y * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
  A sw = A(0), sb = A(0);
  for (int64_t r = r0; r < r1; ++r) {
    A gj = static_cast<A>(ld(gy + r * C + j));
    A xhat = (ld(x + r * C + j) - (mean ? mean[r] : A(0))) * rstd[r];
    sw += gj * xhat;
    sb += gj;
  }
  pw[blockIdx.y * C + j] = sw;
  if (pb) pb[blockIdx.y * C + j] = sb;
}

template <class T>
__global__ void norm_param_finish_kernel(const acc_t<T>* pw, const acc_t<T>* pb, int64_t splits, int64_t C, T* gw,
                                         T* gb) {
  using A = acc_t<T>;
  int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= C) return;
  A sw = A(0), sb = A(0);
  for (int64_t s = 0; s < splits; ++s) {
    sw += pw[s * C + j];
    if (pb) sb += pb[s * C + j];
  }
  st(gw + j, sw);
  if (gb) st(gb + j, sb);
}

// layer_norm_backward / rms_norm_backward: (gy, x, w, [mean], rstd) -> (gx, gw, [gb]);
// add_layer_norm_backward: (gs, gy, s, w, mean, rstd) -> (gx, gr, gw, gb).
void layer_norm_backward_launch(const KernelCall& c) {
  const bool rms = c.op == OpId::rms_norm_backward, fused = c.op == OpId::add_layer_norm_backward;
  const int k = fused ? 1 : 0, gwi = fused ? 2 : 1;
  Tensor gs = fused ? contiguous(c.input(0)) : Tensor();
  Tensor gy = contiguous(c.input(k)), x = contiguous(c.input(k + 1)), w = contiguous(c.input(k + 2));
  Tensor mean = rms ? Tensor() : contiguous(c.input(k + 3));
  Tensor rstd = contiguous(c.input(rms ? k + 3 : k + 4));
  int64_t C = x.size(-1), rows = C > 0 ? x.numel() / C : 0;
  int dev = current_device();
  if (C == 0) return;
  if (rows == 0) {
    fill(c.output(gwi), 0.0);
    if (!rms) fill(c.output(gwi + 1), 0.0);
    return;
  }
  dispatch_norm_types(
      x.dtype(), fused ? c.output(1).dtype() : x.dtype(), gy.dtype(), op_name(c.op), [&](auto t_, auto r_, auto g_) {
        using T = decltype(t_);
        using R = decltype(r_);
        using G = decltype(g_);
        using A = acc_t<T>;
        const A* MEAN = rms ? nullptr : static_cast<const A*>(mean.data_ptr());
        const A* RSTD = static_cast<const A*>(rstd.data_ptr());
        layer_norm_bwd_kernel<T, G, R><<<row_blocks(rows), kThreads, 0, cur_stream()>>>(
            static_cast<const G*>(gy.data_ptr()), static_cast<const T*>(x.data_ptr()),
            static_cast<const T*>(w.data_ptr()), MEAN, RSTD, fused ? static_cast<const T*>(gs.data_ptr()) : nullptr,
            static_cast<T*>(c.output(0).data_ptr()), fused ? static_cast<R*>(c.output(1).data_ptr()) : nullptr, rows, C,
            rms);
        MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
        // gw, gb: split the rows so that enough blocks run, then add the chunks in order.
        int64_t col_blocks = (C + kThreads - 1) / kThreads;
        int64_t target = static_cast<int64_t>(sm_count(dev)) * 4;
        int64_t splits =
            std::max<int64_t>(1, std::min<int64_t>((target + col_blocks - 1) / col_blocks, (rows + 31) / 32));
        splits = std::min<int64_t>(splits, 1024);
        int64_t chunk = (rows + splits - 1) / splits;
        DType acc_dt = std::is_same_v<A, double> ? DType::F64 : DType::F32;
        Tensor pw = Tensor::empty(Dims{splits, C}, acc_dt, Device::cuda(dev));
        Tensor pb = rms ? Tensor() : Tensor::empty(Dims{splits, C}, acc_dt, Device::cuda(dev));
        A* PB = rms ? nullptr : static_cast<A*>(pb.data_ptr());
        norm_param_partial_kernel<G, T>
            <<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)), kThreads, 0, cur_stream()>>>(
                static_cast<const G*>(gy.data_ptr()), static_cast<const T*>(x.data_ptr()), MEAN, RSTD, rows, C, chunk,
                static_cast<A*>(pw.data_ptr()), PB);
        MODU_CUDA_LAUNCH_CHECK("norm parameter gradients");
        norm_param_finish_kernel<T><<<static_cast<unsigned>(col_blocks), kThreads, 0, cur_stream()>>>(
            static_cast<const A*>(pw.data_ptr()), PB, splits, C, static_cast<T*>(c.output(gwi).data_ptr()),
            rms ? nullptr : static_cast<T*>(c.output(gwi + 1).data_ptr()));
        MODU_CUDA_LAUNCH_CHECK("norm parameter gradients (sum)");
      });
}

// ---- group_norm ----------------------------------------------------------------------------------------------------

template <class T>
__global__ void group_norm_kernel(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean_out, acc_t<T>* rstd_out,
                                  int64_t G, int64_t Cg, int64_t S, acc_t<T> eps) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  int64_t ng = blockIdx.x, g = ng % G, len = Cg * S;
  const T* p = x + ng * len;
  T* q = y + ng * len;
  A m = A(0);
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) m += ld(p + k);
  m = block_sum(m, scratch) / A(len);
  A v = A(0);
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
    A d = ld(p + k) - m;
    v += d * d;
  }
  v = block_sum(v, scratch);
  A rstd = A(1) / m_sqrt(v / A(len) + eps);
  if (threadIdx.x == 0) {
    mean_out[ng] = m;
    rstd_out[ng] = rstd;
  }
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
    int64_t ch = g * Cg + k / S;
    st(q + k, (ld(p + k) - m) * rstd * ld(w + ch) + ld(b + ch));
  }
}

void group_norm_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0)), w = contiguous(c.input(1)), b = contiguous(c.input(2));
  int64_t N = x.size(0), C = x.size(1), G = c.attrs.norm.groups;
  int64_t S = N * C > 0 ? x.numel() / (N * C) : 0, Cg = C / G;
  if (N * G == 0) return;
  dispatch_floating(x.dtype(), "group_norm", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    group_norm_kernel<T><<<static_cast<unsigned>(N * G), kThreads, 0, cur_stream()>>>(
        static_cast<const T*>(x.data_ptr()), static_cast<const T*>(w.data_ptr()), static_cast<const T*>(b.data_ptr()),
        static_cast<T*>(c.output(0).data_ptr()), static_cast<A*>(c.output(1).data_ptr()),
        static_cast<A*>(c.output(2).data_ptr()), G, Cg, S, static_cast<A>(c.attrs.norm.eps));
    MODU_CUDA_LAUNCH_CHECK("group_norm");
  });
}

template <class T>
__global__ void group_norm_bwd_kernel(const T* gy, const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd_in,
                                      T* gx, int64_t G, int64_t Cg, int64_t S) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  int64_t ng = blockIdx.x, g = ng % G, len = Cg * S;
  const T *GY = gy + ng * len, *X = x + ng * len;
  A m = mean[ng], rstd = rstd_in[ng];
  A sum_dyw = A(0), sum_dyw_xhat = A(0);
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
    A dyw = ld(GY + k) * ld(w + g * Cg + k / S);
    sum_dyw += dyw;
    sum_dyw_xhat += dyw * (ld(X + k) - m) * rstd;
  }
  sum_dyw = block_sum(sum_dyw, scratch);
  sum_dyw_xhat = block_sum(sum_dyw_xhat, scratch);
  A mean_dyw = sum_dyw / A(len), mean_dyw_xhat = sum_dyw_xhat / A(len);
  T* GX = gx + ng * len;
  for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
    A xhat = (ld(X + k) - m) * rstd;
    st(GX + k, rstd * (ld(GY + k) * ld(w + g * Cg + k / S) - mean_dyw - xhat * mean_dyw_xhat));
  }
}

// Block per channel: gw[ch] = sum_{n, s} gy * xhat, gb[ch] = sum gy.
template <class T>
__global__ void group_norm_param_kernel(const T* gy, const T* x, const acc_t<T>* mean, const acc_t<T>* rstd, T* gw,
                                        T* gb, int64_t N, int64_t C, int64_t G, int64_t S) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  int64_t ch = blockIdx.x, g = ch / (C / G);
  A sw = A(0), sb = A(0);
  for (int64_t n = 0; n < N; ++n) {
    A m = mean[n * G + g], r = rstd[n * G + g];
    const T *GY = gy + (n * C + ch) * S, *X = x + (n * C + ch) * S;
    for (int64_t s = threadIdx.x; s < S; s += blockDim.x) {
      A gj = ld(GY + s);
      sw += gj * (ld(X + s) - m) * r;
      sb += gj;
    }
  }
  sw = block_sum(sw, scratch);
  sb = block_sum(sb, scratch);
  if (threadIdx.x == 0) {
    st(gw + ch, sw);
    st(gb + ch, sb);
  }
}

void group_norm_backward_launch(const KernelCall& c) {
  Tensor gy = contiguous(c.input(0)), x = contiguous(c.input(1)), w = contiguous(c.input(2));
  Tensor mean = contiguous(c.input(3)), rstd = contiguous(c.input(4));
  int64_t N = x.size(0), C = x.size(1), G = c.attrs.norm.groups;
  int64_t S = N * C > 0 ? x.numel() / (N * C) : 0, Cg = C / G;
  if (C == 0) return;
  dispatch_floating(x.dtype(), "group_norm_backward", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    const T* GY = static_cast<const T*>(gy.data_ptr());
    const T* X = static_cast<const T*>(x.data_ptr());
    const A* M = static_cast<const A*>(mean.data_ptr());
    const A* R = static_cast<const A*>(rstd.data_ptr());
    if (N * G > 0) {
      group_norm_bwd_kernel<T><<<static_cast<unsigned>(N * G), kThreads, 0, cur_stream()>>>(
          GY, X, static_cast<const T*>(w.data_ptr()), M, R, static_cast<T*>(c.output(0).data_ptr()), G, Cg, S);
      MODU_CUDA_LAUNCH_CHECK("group_norm_backward");
    }
    group_norm_param_kernel<T><<<static_cast<unsigned>(C), kThreads, 0, cur_stream()>>>(
        GY, X, M, R, static_cast<T*>(c.output(1).data_ptr()), static_cast<T*>(c.output(2).data_ptr()), N, C, G, S);
    MODU_CUDA_LAUNCH_CHECK("group_norm_backward (parameters)");
  });
}

}  // namespace

void register_nn_kernels(KernelRegistry& r) {
  const auto cuda = DeviceType::CUDA;
  for (OpId op : {OpId::softmax, OpId::log_softmax}) r.set(cuda, op, guarded<softmax_kernel>, kFloatTypes);
  for (OpId op : {OpId::softmax_backward, OpId::log_softmax_backward})
    r.set(cuda, op, guarded<softmax_backward_kernel>, kFloatTypes);
  r.set(cuda, OpId::cross_entropy, guarded<cross_entropy_kernel>, kFloatTypes);
  r.set(cuda, OpId::cross_entropy_backward, guarded<cross_entropy_backward_kernel>, kFloatTypes);
  for (OpId op : {OpId::layer_norm, OpId::rms_norm, OpId::add_layer_norm})
    r.set(cuda, op, guarded<layer_norm_launch>, kFloatTypes);
  for (OpId op : {OpId::layer_norm_backward, OpId::rms_norm_backward, OpId::add_layer_norm_backward})
    r.set(cuda, op, guarded<layer_norm_backward_launch>, kFloatTypes);
  r.set(cuda, OpId::group_norm, guarded<group_norm_launch>, kFloatTypes);
  r.set(cuda, OpId::group_norm_backward, guarded<group_norm_backward_launch>, kFloatTypes);
}

}  // namespace modu::cuda
