// core/cuda/reduce.cu — CUDA reductions: sum, mean, var over any set of dims, max / argmax along one dim.
//
// Plan (as core/cpu/reduce.cpp): reduced dims that lead a contiguous input with kept dims trailing form a
// column reduction (bias gradients, sum_to_shape: (R, K) -> (K), no copy); everything else is brought to
// "kept dims, then reduced dims" order (a copy only when that view is not contiguous) and reduced row by
// row (outer, inner) -> (outer). When there are few outputs, each row (or column) is split into chunks
// whose partial sums land in a scratch buffer and are added in chunk order by a second kernel.
// var is two-pass (mean, then the sum of squared deviations) like the CPU.
//
// Invariants: deterministic (fixed chunking for a given shape and device, fixed trees, no atomics);
// accumulation in acc_t (f32 for bf16/f16, f64 for f64; integers in their own type, wrapping like the
// CPU); max/argmax return the first index of the maximum, or of the first NaN, exactly as the CPU.
#include <algorithm>
#include <vector>

#include "core/cuda/common.cuh"
#include "core/ops/layout.h"

namespace modu::cuda {

namespace {

enum Finish : int { kOutScaled = 0, kAccMean = 1, kOutVar = 2, kAccScaled = 3 };

template <class T, class A>
struct ReduceArgs {
  const T* in = nullptr;
  int64_t outer = 1, inner = 1, chunk = 1;
  int splits = 1;
  const A* mean = nullptr;  // when set: reduce (x - mean[o])^2
  A* partial = nullptr;     // (outer, splits) when splits > 1
  T* out = nullptr;
  A* acc_out = nullptr;
  A scale = A(1);
  A denom = A(1);
  int finish = kOutScaled;
};

template <class T, class A>
__device__ __forceinline__ void finish_value(const ReduceArgs<T, A>& a, int64_t o, A total) {
  if (a.finish == kOutScaled) {
    st(a.out + o, static_cast<A>(total * a.scale));
  } else if constexpr (std::is_floating_point_v<A>) {
    if (a.finish == kAccMean) a.acc_out[o] = total / A(a.inner);
    else if (a.finish == kAccScaled)
      a.acc_out[o] = static_cast<A>(total * a.scale);
    else st(a.out + o, a.denom > A(0) ? total / a.denom : m_nan<A>());
  }
}

template <class T, class A>
__device__ __forceinline__ A reduce_term(const ReduceArgs<T, A>& a, const T* p, A m) {
  A v = ld(p);
  if constexpr (std::is_floating_point_v<A>) {
    if (a.mean) {
      v = v - m;
      v = v * v;
    }
  }
  return v;
}

// Block (o, s) reduces chunk s of row o.
template <class T, class A>
__global__ void row_reduce_kernel(ReduceArgs<T, A> a) {
  __shared__ A scratch[32];
  int64_t o = blockIdx.x / a.splits;
  int s = static_cast<int>(blockIdx.x % a.splits);
  int64_t begin = s * a.chunk, end = begin + a.chunk < a.inner ? begin + a.chunk : a.inner;
  const T* row = a.in + o * a.inner;
  A m = a.mean ? a.mean[o] : A(0);
  A acc = A(0);
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) acc = static_cast<A>(acc + reduce_term(a, row + i, m));
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) {
    if (a.splits == 1) finish_value(a, o, acc);
    else a.partial[o * a.splits + s] = acc;
  }
}

// Column k of (R = inner, K = outer), rows of chunk blockIdx.y.
template <class T, class A>
__global__ void col_reduce_kernel(ReduceArgs<T, A> a) {
  int64_t K = a.outer, R = a.inner;
  int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= K) return;
  int s = blockIdx.y;
  int64_t begin = s * a.chunk, end = begin + a.chunk < R ? begin + a.chunk : R;
  A acc = A(0);
  for (int64_t r = begin; r < end; ++r) acc = static_cast<A>(acc + ld(a.in + r * K + k));
  if (a.splits == 1) finish_value(a, k, acc);
  else a.partial[k * a.splits + s] = acc;
}

template <class T, class A>
__global__ void finalize_kernel(ReduceArgs<T, A> a) {
  int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= a.outer) return;
  A total = A(0);
  for (int s = 0; s < a.splits; ++s) total = static_cast<A>(total + a.partial[o * a.splits + s]);
  finish_value(a, o, total);
}

struct Plan {
  Tensor rows;  // contiguous (outer, inner), or the contiguous input in column mode (inner, outer)
  int64_t outer = 1, inner = 1;
  bool column = false;
};

Plan plan(const Tensor& x, uint32_t mask, bool allow_column) {
  ReducePlan p = reduce_plan(x, mask, allow_column);
  Plan L;
  L.outer = p.outer;
  L.inner = p.inner;
  L.column = p.column;
  L.rows = p.column ? p.rows_view : contiguous(p.rows_view);
  return L;
}

// Runs one reduction pass over a plan; `a` has in/outer/inner/mean/out/acc_out/scale/denom/finish set.
template <class T, class A>
void run_pass(ReduceArgs<T, A> a, bool column, const char* name) {
  int dev = current_device();
  int64_t target = static_cast<int64_t>(sm_count(dev)) * 4;
  cudaStream_t s = cur_stream();
  Tensor partial;
  if (!column) {
    int threads = a.inner <= 32 ? 32 : a.inner <= 64 ? 64 : a.inner <= 128 ? 128 : 256;
    int64_t splits = 1;
    if (a.outer < target) {
      splits = (target + a.outer - 1) / a.outer;
      int64_t max_splits = (a.inner + threads * 8 - 1) / (threads * 8);
      if (splits > max_splits) splits = max_splits;
      if (splits > 4096) splits = 4096;
      if (splits < 1) splits = 1;
    }
    a.splits = static_cast<int>(splits);
    a.chunk = (a.inner + splits - 1) / splits;
    if (splits > 1) {
      partial = Tensor::empty(Dims{a.outer * splits * static_cast<int64_t>(sizeof(A))}, DType::U8, Device::cuda(dev));
      a.partial = static_cast<A*>(partial.data_ptr());
    }
    row_reduce_kernel<T, A><<<static_cast<unsigned>(a.outer * splits), threads, 0, s>>>(a);
    MODU_CUDA_LAUNCH_CHECK(name);
  } else {
    int64_t K = a.outer, R = a.inner;
    int64_t col_blocks = (K + kThreads - 1) / kThreads;
    int64_t splits = 1;
    if (col_blocks < target) {
      splits = (target + col_blocks - 1) / col_blocks;
      int64_t max_splits = (R + 63) / 64;
      if (splits > max_splits) splits = max_splits;
      if (splits > 1024) splits = 1024;
      if (splits < 1) splits = 1;
    }
    a.splits = static_cast<int>(splits);
    a.chunk = (R + splits - 1) / splits;
    if (splits > 1) {
      partial = Tensor::empty(Dims{K * splits * static_cast<int64_t>(sizeof(A))}, DType::U8, Device::cuda(dev));
      a.partial = static_cast<A*>(partial.data_ptr());
    }
    col_reduce_kernel<T, A><<<dim3(static_cast<unsigned>(col_blocks), static_cast<unsigned>(splits)), kThreads, 0, s>>>(a);
    MODU_CUDA_LAUNCH_CHECK(name);
  }
  if (a.splits > 1) {
    finalize_kernel<T, A><<<static_cast<unsigned>((a.outer + kThreads - 1) / kThreads), kThreads, 0, s>>>(a);
    MODU_CUDA_LAUNCH_CHECK(name);
  }
}

void sum_mean_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  bool is_mean = c.op == OpId::mean;
  if (y.numel() == 0) return;
  int64_t inner = y.numel() ? x.numel() / y.numel() : 0;
  if (x.numel() == 0 || inner == 0) {
    fill(y, is_mean ? NAN : 0.0);
    return;
  }
  Plan L = plan(x, c.attrs.reduce.dims_mask, true);
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL(op_name(c.op), ": bool tensors cannot be summed; cast to an integer type");
    } else {
      using A = acc_t<T>;
      ReduceArgs<T, A> a;
      a.in = static_cast<const T*>(L.rows.data_ptr());
      a.outer = L.outer;
      a.inner = L.inner;
      a.scale = is_mean ? A(1) / A(L.inner) : A(1);
      if (y.dtype() != x.dtype()) {  // sum_accumulate: the f32 (f64) totals themselves
        a.acc_out = static_cast<A*>(y.data_ptr());
        a.finish = kAccScaled;
      } else {
        a.out = static_cast<T*>(y.data_ptr());
        a.finish = kOutScaled;
      }
      run_pass<T, A>(a, L.column, op_name(c.op));
    }
  });
}

void var_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  if (y.numel() == 0) return;
  Plan L = plan(x, c.attrs.reduce.dims_mask, false);
  if (L.inner == 0) {
    fill(y, NAN);
    return;
  }
  double denom = static_cast<double>(L.inner - c.attrs.reduce.correction);
  dispatch_floating(x.dtype(), "var", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    Tensor mean = Tensor::empty(Dims{L.outer}, std::is_same_v<A, double> ? DType::F64 : DType::F32,
                                Device::cuda(current_device()));
    ReduceArgs<T, A> a;
    a.in = static_cast<const T*>(L.rows.data_ptr());
    a.outer = L.outer;
    a.inner = L.inner;
    a.acc_out = static_cast<A*>(mean.data_ptr());
    a.finish = kAccMean;
    run_pass<T, A>(a, false, "var (mean)");
    ReduceArgs<T, A> b = a;
    b.mean = static_cast<const A*>(mean.data_ptr());
    b.acc_out = nullptr;
    b.out = static_cast<T*>(y.data_ptr());
    b.denom = static_cast<A>(denom);
    b.finish = kOutVar;
    run_pass<T, A>(b, false, "var");
  });
}

// ---- max / argmax ------------------------------------------------------------------------------------------
template <class A>
__device__ __forceinline__ bool is_nan_v(A v) {
  if constexpr (std::is_floating_point_v<A>) return v != v;
  else return false;
}
// Does (v2, i2) beat (v1, i1)? First NaN wins, else the larger value, ties to the lower index.
template <class A>
__device__ __forceinline__ bool beats(A v2, int64_t i2, A v1, int64_t i1) {
  bool n1 = is_nan_v(v1), n2 = is_nan_v(v2);
  if (n1 || n2) return n1 && n2 ? i2 < i1 : n2;
  if (v2 != v1) return v2 > v1;
  return i2 < i1;
}

// Thread per (o, i) of (outer, n, inner): the CPU's sequential scan.
template <class T>
__global__ void max_strided_kernel(const T* x, int64_t outer, int64_t n, int64_t inner, T* vals, int64_t* idx) {
  using A = acc_t<T>;
  int64_t total = outer * inner;
  for (int64_t oi = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; oi < total;
       oi += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = oi / inner, i = oi % inner;
    const T* p = x + o * n * inner + i;
    A best = ld(p);
    int64_t arg = 0;
    for (int64_t j = 1; j < n; ++j) {
      if (is_nan_v(best)) break;
      A v = ld(p + j * inner);
      if (v > best || is_nan_v(v)) best = v, arg = j;
    }
    idx[oi] = arg;
    if (vals) vals[oi] = from_value<T>(best);
  }
}

// Block per row of (outer, n) (inner == 1).
template <class T>
__global__ void max_row_kernel(const T* x, int64_t n, T* vals, int64_t* idx) {
  using A = acc_t<T>;
  __shared__ A sv[kThreads];
  __shared__ int64_t si[kThreads];
  int64_t o = blockIdx.x;
  const T* p = x + o * n;
  A best = A(0);
  int64_t arg = -1;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    A v = ld(p + j);
    if (arg < 0 || (!is_nan_v(best) && (v > best || is_nan_v(v)))) best = v, arg = j;
  }
  sv[threadIdx.x] = best;
  si[threadIdx.x] = arg;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      int64_t i2 = si[threadIdx.x + w];
      if (i2 >= 0 && (si[threadIdx.x] < 0 || beats(sv[threadIdx.x + w], i2, sv[threadIdx.x], si[threadIdx.x]))) {
        sv[threadIdx.x] = sv[threadIdx.x + w];
        si[threadIdx.x] = i2;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    idx[o] = si[0];
    if (vals) vals[o] = from_value<T>(sv[0]);
  }
}

void max_kernel(const KernelCall& c) {
  Tensor x = contiguous(c.input(0));
  int d = c.attrs.dim.dim;
  int64_t n = x.size(d), outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= x.size(k);
  for (int k = d + 1; k < x.dim(); ++k) inner *= x.size(k);
  bool want_values = c.op == OpId::max;
  int64_t* idx_out = static_cast<int64_t*>(c.output(want_values ? 1 : 0).data_ptr());
  if (outer * inner == 0) return;
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL(op_name(c.op), ": no kernel for bool");
    } else {
      const T* in = static_cast<const T*>(x.data_ptr());
      T* vals = want_values ? static_cast<T*>(c.output(0).data_ptr()) : nullptr;
      if (inner == 1 && n >= 64) {
        max_row_kernel<T><<<static_cast<unsigned>(outer), kThreads, 0, cur_stream()>>>(in, n, vals, idx_out);
      } else {
        max_strided_kernel<T><<<grid_for(outer * inner), kThreads, 0, cur_stream()>>>(in, outer, n, inner, vals, idx_out);
      }
      MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
    }
  });
}

// ---- sum_squares: many tensors, a few launches ------------------------------------------------------------------
// Tensors go in groups of up to kSquaresGroup per launch (their pointers travel in the kernel's argument);
// tensor i of a group gets blocks_i blocks (by its size, capped), each writing one f64 partial sum to its own
// slot; a last kernel adds the slots in a fixed order. Deterministic for a given list of shapes.
constexpr int kSquaresGroup = 32;

template <class T>
struct SquaresGroup {
  const T* ptr[kSquaresGroup];
  int64_t numel[kSquaresGroup];
  int first_block[kSquaresGroup + 1];  // tensor i owns blocks [first_block[i], first_block[i + 1])
  int count = 0;
};

template <class T>
__global__ void squares_partial_kernel(SquaresGroup<T> g, double* partial) {
  __shared__ double scratch[32];
  int b = blockIdx.x, i = 0;
  while (i + 1 < g.count && b >= g.first_block[i + 1]) ++i;
  int nb = g.first_block[i + 1] - g.first_block[i], k = b - g.first_block[i];
  const T* p = g.ptr[i];
  double acc = 0;
  for (int64_t e = static_cast<int64_t>(k) * blockDim.x + threadIdx.x; e < g.numel[i];
       e += static_cast<int64_t>(nb) * blockDim.x) {
    double v = static_cast<double>(ld(p + e));
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[b] = acc;
}

template <class A>
__global__ void squares_total_kernel(const double* partial, int n, A* out) {
  __shared__ double scratch[32];
  double acc = 0;
  for (int j = threadIdx.x; j < n; j += blockDim.x) acc += partial[j];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *out = static_cast<A>(acc);
}

void sum_squares_kernel(const KernelCall& c) {
  int dev = current_device();
  // Contiguous views (copies only for strided inputs), alive until the launches are queued; the vector is
  // reused across calls (no heap allocation per step once warm).
  thread_local std::vector<Tensor> xs;
  xs.clear();
  for (const Tensor* t : c.in) xs.push_back(contiguous(*t));
  auto blocks_for = [](int64_t n) {  // about 16 elements per thread, at most 256 blocks per tensor
    int64_t per_block = static_cast<int64_t>(kThreads) * 16;
    return static_cast<int>(std::clamp<int64_t>((n + per_block - 1) / per_block, 1, 256));
  };
  int total_blocks = 0;
  for (const Tensor& x : xs) total_blocks += blocks_for(x.numel());
  Tensor partial = Tensor::empty(Dims{total_blocks}, DType::F64, Device::cuda(dev));
  double* slots = static_cast<double*>(partial.data_ptr());
  dispatch_floating(xs[0].dtype(), "sum_squares", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    size_t i = 0;
    int done = 0;
    while (i < xs.size()) {
      SquaresGroup<T> g;
      g.first_block[0] = 0;
      for (; i < xs.size() && g.count < kSquaresGroup; ++i) {
        g.ptr[g.count] = static_cast<const T*>(xs[i].data_ptr());
        g.numel[g.count] = xs[i].numel();
        g.first_block[g.count + 1] = g.first_block[g.count] + blocks_for(xs[i].numel());
        ++g.count;
      }
      squares_partial_kernel<T><<<g.first_block[g.count], kThreads, 0, cur_stream()>>>(g, slots + done);
      MODU_CUDA_LAUNCH_CHECK("sum_squares");
      done += g.first_block[g.count];
    }
    squares_total_kernel<A><<<1, 1024, 0, cur_stream()>>>(slots, total_blocks, static_cast<A*>(c.output(0).data_ptr()));
    MODU_CUDA_LAUNCH_CHECK("sum_squares (total)");
  });
  xs.clear();
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  constexpr DTypeSet kNumeric{DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8};
  const auto cuda = DeviceType::CUDA;
  r.set(cuda, OpId::sum, guarded<sum_mean_kernel>, kNumeric);
  r.set(cuda, OpId::mean, guarded<sum_mean_kernel>, kFloatTypes);
  r.set(cuda, OpId::var, guarded<var_kernel>, kFloatTypes);
  r.set(cuda, OpId::max, guarded<max_kernel>, kNumeric);
  r.set(cuda, OpId::argmax, guarded<max_kernel>, kNumeric);
  r.set(cuda, OpId::sum_squares, guarded<sum_squares_kernel>, kFloatTypes);
}

}  // namespace modu::cuda
