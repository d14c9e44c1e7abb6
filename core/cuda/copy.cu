// core/cuda/copy.cu — CUDA kernels that move, convert and create data: cast / copy / copy_ / to_device
// (host <-> device, device <-> device), fill_ / full / arange, the Philox ops uniform / normal / dropout,
// the in-place updates add_ / mul_scalar_, and the fused AdamW step adamw_ (one tensor) and adamw_multi_ (up to
// kAdamWMultiMaxTensors tensors in one launch; the same element update, so the same bits).
//
// Invariants:
//  - Conversions follow core/cpu/elementwise.cpp's convert_into: load in acc_t of the source, then
//    static_cast to the destination's acc_t (bool: != 0), then round once (bf16/f16 round to nearest even).
//  - Philox ops draw exactly the CPU's numbers (core/rng.h): element i of uniform uses word i % 4 of
//    block (counter + i / 4), normal uses block (counter + i / 2) with Box-Muller, dropout keeps element i
//    iff uniform_i >= p. Uniform and dropout are bit-identical to the CPU; normal agrees to the last ulp of
//    logf/cosf/sinf (the CUDA and glibc versions may differ by one ulp).
//  - to_device: a non-contiguous source is made contiguous on its own device first. Host-to-device copies
//    read pageable host memory, so cudaMemcpyAsync returns after staging the data and the host buffer may be
//    freed at once. Device-to-host copies synchronise the stream (host reads are safe) and raise deferred
//    kernel errors (core/cuda/runtime.h).
#include <cmath>
#include <cstring>

#include "core/cpu/kernels.h"
#include "core/cuda/common.cuh"
#include "core/ops/ops.h"

namespace modu::cuda {

namespace {

// ---- conversions -------------------------------------------------------------------------------------------

template <class A>
__device__ __forceinline__ void store_as(void* base, int64_t off, DType dt, A v) {
  switch (dt) {
    case DType::F32: static_cast<float*>(base)[off] = static_cast<float>(v); return;
    case DType::F64: static_cast<double*>(base)[off] = static_cast<double>(v); return;
    case DType::BF16: static_cast<bf16_t*>(base)[off] = __float2bfloat16_rn(static_cast<float>(v)); return;
    case DType::F16: static_cast<f16_t*>(base)[off] = __float2half_rn(static_cast<float>(v)); return;
    case DType::I32: static_cast<int32_t*>(base)[off] = static_cast<int32_t>(v); return;
    case DType::I64: static_cast<int64_t*>(base)[off] = static_cast<int64_t>(v); return;
    case DType::U8: static_cast<uint8_t*>(base)[off] = static_cast<uint8_t>(v); return;
    case DType::Bool: static_cast<bool*>(base)[off] = v != A(0); return;
  }
}

template <class S>
__global__ void cast_kernel(void* out, DType out_type, const S* in, int64_t n, int mode, OffsetCalc<2> oc) {
  int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = tid; i < n; i += stride) {
    int64_t off[2] = {i, i};
    if (mode == kStrided) oc.get(i, off);
    store_as(out, off[0], out_type, ld(in + off[1]));
  }
}

struct Identity {
  template <class A>
  __device__ __forceinline__ A operator()(A a) const {
    return a;
  }
};

template <class W>
struct Constant {
  W v;
  __device__ __forceinline__ W operator()(W) const { return v; }
};

}  // namespace

void copy_into(Tensor& dst, const Tensor& src) {
  if (dst.numel() == 0) return;
  MODU_CHECK(dst.device().is_cuda() && src.device() == dst.device(), "copy_into: ", describe(dst), " <- ",
             describe(src), ": both must be on the same CUDA device");
  cudaStream_t s = cur_stream();
  if (src.dtype() == dst.dtype()) {
    if (dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
      MODU_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), src.data_ptr(), dst.nbytes(), cudaMemcpyDeviceToDevice, s));
      return;
    }
    dispatch_width(dst.element_size(), "copy", [&](auto tag) {
      using W = decltype(tag);
      launch_map<W, W>("copy (strided)", Identity{}, dst, src);
    });
    return;
  }
  const Tensor* ops[2] = {&dst, &src};
  bool contiguous = dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape();
  OffsetCalc<2> oc = contiguous ? OffsetCalc<2>{} : make_offset_calc<2>(ops);
  int64_t n = dst.numel();
  dispatch_all(src.dtype(), "cast", [&](auto tag) {
    using S = decltype(tag);
    cast_kernel<S><<<grid_for(n), kThreads, 0, s>>>(dst.data_ptr(), dst.dtype(), static_cast<const S*>(src.data_ptr()),
                                                    n, contiguous ? kContiguous : kStrided, oc);
    MODU_CUDA_LAUNCH_CHECK("cast");
  });
}

Tensor contiguous(const Tensor& t) {
  if (t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  copy_into(out, t);
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype && t.is_contiguous()) return t;
  Tensor out = Tensor::empty(t.shape(), dtype, t.device());
  copy_into(out, t);
  return out;
}

void fill(Tensor& t, double value) {
  if (t.numel() == 0) return;
  uint64_t bits = 0;
  switch (t.dtype()) {
    case DType::F32: { float f = static_cast<float>(value); std::memcpy(&bits, &f, 4); break; }
    case DType::F64: std::memcpy(&bits, &value, 8); break;
    case DType::BF16: bits = float_to_bf16_bits(static_cast<float>(value)); break;
    case DType::F16: bits = float_to_f16_bits(static_cast<float>(value)); break;
    case DType::I32: { int32_t v = static_cast<int32_t>(value); std::memcpy(&bits, &v, 4); break; }
    case DType::I64: { int64_t v = static_cast<int64_t>(value); std::memcpy(&bits, &v, 8); break; }
    case DType::U8: bits = static_cast<uint8_t>(value); break;
    case DType::Bool: bits = value != 0.0 ? 1 : 0; break;
  }
  size_t w = t.element_size();
  if (t.is_contiguous() && (bits == 0 || w == 1)) {
    MODU_CUDA_CHECK(cudaMemsetAsync(t.data_ptr(), static_cast<int>(bits & 0xff), t.nbytes(), cur_stream()));
    return;
  }
  dispatch_width(w, "fill", [&](auto tag) {
    using W = decltype(tag);
    launch_map<W, W>("fill", Constant<W>{static_cast<W>(bits)}, t, t);
  });
}

namespace {

void convert_kernel(const KernelCall& c) {
  // cast, copy write output 0; copy_ writes input 0 (== output 0).
  const Tensor& src = c.op == OpId::copy_ ? c.input(1) : c.input(0);
  copy_into(c.output(0), src);
}

void to_device_kernel(const KernelCall& c) {
  const Tensor& src = c.input(0);
  Tensor& dst = c.output(0);
  size_t nbytes = dst.nbytes();
  Device sd = src.device(), dd = dst.device();
  if (sd.is_cpu() && dd.is_cuda()) {
    if (nbytes == 0) return;
    Tensor s = src.is_contiguous() ? src : cpu::contiguous_copy(src);
    MODU_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), s.data_ptr(), nbytes, cudaMemcpyHostToDevice, stream(dd.index)));
    return;
  }
  if (sd.is_cuda() && dd.is_cpu()) {
    if (nbytes) {
      Tensor s = contiguous(src);
      MODU_CUDA_CHECK(cudaMemcpyAsync(dst.data_ptr(), s.data_ptr(), nbytes, cudaMemcpyDeviceToHost, stream(sd.index)));
    }
    synchronize(sd.index);  // host reads are safe after this; raises deferred kernel errors
    return;
  }
  MODU_CHECK(sd.is_cuda() && dd.is_cuda(), "to_device: ", describe(src), " -> ", dd.str(), " is not a CUDA copy");
  if (nbytes == 0) return;
  if (sd == dd) {
    copy_into(dst, src);
    return;
  }
  Tensor s;
  {
    DeviceGuard g(sd.index);
    s = contiguous(src);
    MODU_CUDA_CHECK(cudaStreamSynchronize(stream(sd.index)));  // the peer copy runs on the destination's stream
  }
  MODU_CUDA_CHECK(cudaMemcpyPeerAsync(dst.data_ptr(), dd.index, s.data_ptr(), sd.index, nbytes, stream(dd.index)));
  MODU_CUDA_CHECK(cudaStreamSynchronize(stream(dd.index)));  // `s` is released on return
}

void fill_kernel(const KernelCall& c) {
  fill(c.output(0), c.op == OpId::full ? c.attrs.factory.a : c.attrs.scalar.value);
}

template <class T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    st(out + i, static_cast<acc_t<T>>(fma(step, static_cast<double>(i), start)));
}

void arange_launch(const KernelCall& c) {
  Tensor& dst = c.output(0);
  int64_t n = dst.numel();
  if (n == 0) return;
  dispatch_all(dst.dtype(), "arange", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL("arange: no kernel for bool");
    } else {
      arange_kernel<T><<<grid_for(n), kThreads, 0, cur_stream()>>>(static_cast<T*>(dst.data_ptr()), n,
                                                                    c.attrs.factory.a, c.attrs.factory.b);
      MODU_CUDA_LAUNCH_CHECK("arange");
    }
  });
}

// ---- Philox ops ---------------------------------------------------------------------------------------------

template <class T>
__global__ void uniform_kernel(T* out, int64_t n, uint64_t key, uint64_t counter, double lo, double span) {
  int64_t blocks = (n + 3) / 4;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    PhiloxOut r = philox(counter + static_cast<uint64_t>(b), key);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = b * 4 + k;
      if (i < n) st(out + i, fma(span, static_cast<double>(philox_uniform(r.w[k])), lo));
    }
  }
}

template <class T>
__global__ void normal_kernel(T* out, int64_t n, uint64_t key, uint64_t counter, double mean, double sd) {
  int64_t blocks = (n + 1) / 2;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    PhiloxOut r = philox(counter + static_cast<uint64_t>(b), key);
    float u1 = philox_uniform(r.w[0]), u2 = philox_uniform(r.w[1]);
    float rad = sqrtf(__fmul_rn(-2.0f, logf(u1)));
    float th = __fmul_rn(6.28318530717958647692f, u2);
    st(out + b * 2, fma(sd, static_cast<double>(__fmul_rn(rad, cosf(th))), mean));
    if (b * 2 + 1 < n) st(out + b * 2 + 1, fma(sd, static_cast<double>(__fmul_rn(rad, sinf(th))), mean));
  }
}

void random_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  const FactoryAttrs& f = c.attrs.factory;
  int64_t n = dst.numel();
  if (n == 0) return;
  dispatch_floating(dst.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    T* p = static_cast<T*>(dst.data_ptr());
    if (c.op == OpId::uniform) {
      uniform_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, cur_stream()>>>(p, n, f.key, f.counter, f.a, f.b - f.a);
    } else {
      normal_kernel<T><<<grid_for((n + 1) / 2), kThreads, 0, cur_stream()>>>(p, n, f.key, f.counter, f.a, f.b);
    }
    MODU_CUDA_LAUNCH_CHECK(op_name(c.op));
  });
}

template <class T>
__global__ void dropout_kernel(T* out, const T* in, int64_t n, uint64_t key, uint64_t counter, float p,
                               acc_t<T> scale) {
  using A = acc_t<T>;
  int64_t blocks = (n + 3) / 4;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks;
       b += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    PhiloxOut r = philox(counter + static_cast<uint64_t>(b), key);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      int64_t i = b * 4 + k;
      if (i < n) {
        bool keep = philox_uniform(r.w[k]) >= p;
        st(out + i, keep ? ld(in + i) * scale : A(0));
      }
    }
  }
}

void dropout_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0));
  Tensor& y = c.output(0);
  const DropoutAttrs& d = c.attrs.dropout;
  int64_t n = x.numel();
  if (n == 0) return;
  dispatch_floating(x.dtype(), "dropout", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    dropout_kernel<T><<<grid_for((n + 3) / 4), kThreads, 0, cur_stream()>>>(
        static_cast<T*>(y.data_ptr()), static_cast<const T*>(x.data_ptr()), n, d.key, d.counter,
        static_cast<float>(d.p), static_cast<A>(1.0 / (1.0 - d.p)));
    MODU_CUDA_LAUNCH_CHECK("dropout");
  });
}

// ---- in-place updates ----------------------------------------------------------------------------------------

template <class A>
struct AddAlpha {
  A alpha;
  bool one;
  __device__ __forceinline__ A operator()(A d, A s) const { return one ? A(d + s) : A(d + alpha * s); }
};
template <class A>
struct Scale {
  A v;
  __device__ __forceinline__ A operator()(A d) const { return d * v; }
};

void add_inplace_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  const Tensor& src = c.input(1);
  dispatch_all(dst.dtype(), "add_", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL("add_: bool tensors cannot be added");
    } else {
      A alpha = static_cast<A>(c.attrs.scalar.value);
      launch_map<T, T, T>("add_", AddAlpha<A>{alpha, alpha == A(1)}, dst, dst, &src);
    }
  });
}

void mul_scalar_inplace_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  dispatch_floating(dst.dtype(), "mul_scalar_", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch_map<T, T>("mul_scalar_", Scale<A>{static_cast<A>(c.attrs.scalar.value)}, dst, dst);
  });
}

// ---- AdamW (core/cpu/optim.cpp): m, v in their own dtype M, math in acc_t<M> ---------------------------------
// Element i of one tensor; adamw_ and adamw_multi_ share it, so they agree bit for bit.
template <class A>
struct AdamWScalars {
  A b1, b2, lr, eps, inv_bc1, inv_sqrt_bc2, gscale;
};
template <class P, class M, class A>
__device__ __forceinline__ void adamw_element(P* p, const P* g, M* m, M* v, int64_t i, const AdamWScalars<A>& s,
                                              A decay) {
  A gi = A(ld(g + i)) * s.gscale;
  A mi = s.b1 * A(ld(m + i)) + (A(1) - s.b1) * gi;
  A vi = s.b2 * A(ld(v + i)) + (A(1) - s.b2) * gi * gi;
  st(m + i, mi);
  st(v + i, vi);
  A pi = A(ld(p + i)) * decay;
  A denom = m_sqrt(vi) * s.inv_sqrt_bc2 + s.eps;
  st(p + i, pi - s.lr * (mi * s.inv_bc1) / denom);
}

template <class P, class M>
__global__ void adamw_kernel(P* p, const P* g, M* m, M* v, int64_t n, AdamWScalars<acc_t<M>> s, acc_t<M> decay) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    adamw_element(p, g, m, v, i, s, decay);
}

template <class M>
AdamWScalars<acc_t<M>> adamw_scalars(const AdamWAttrs& a) {
  using A = acc_t<M>;
  return {
      A(a.beta1),     A(a.beta2), A(a.lr), A(a.eps), A(1 / a.bias_correction1), A(1 / std::sqrt(a.bias_correction2)),
      A(a.grad_scale)};
}

// adamw_multi_: up to kAdamWMultiMaxTensors tensors per launch, their pointers passed by value (the table is
// ~8.5 KB: kernel parameters above 4 KB need CUDA 12.1+ on Volta or newer). Tensor t owns blocks
// [first_block[t], first_block[t + 1]), each of kAdamWChunk elements; a block finds its tensor by binary search.
constexpr int kAdamWChunk = kThreads * 8;
struct AdamWMultiTable {
  void* p[kAdamWMultiMaxTensors];
  const void* g[kAdamWMultiMaxTensors];
  void* m[kAdamWMultiMaxTensors];
  void* v[kAdamWMultiMaxTensors];
  int64_t n[kAdamWMultiMaxTensors];
  int32_t first_block[kAdamWMultiMaxTensors + 1];
  int32_t count, decayed;
};

template <class P, class M>
__global__ void __launch_bounds__(kThreads)
    adamw_multi_kernel(const __grid_constant__ AdamWMultiTable tab, AdamWScalars<acc_t<M>> s, acc_t<M> decay) {
  using A = acc_t<M>;
  const int32_t block = static_cast<int32_t>(blockIdx.x);
  int lo = 0, hi = tab.count - 1;  // the last t with first_block[t] <= block
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (tab.first_block[mid] <= block)
      lo = mid;
    else
      hi = mid - 1;
  }
  const int t = lo;
  P* p = static_cast<P*>(tab.p[t]);
  const P* g = static_cast<const P*>(tab.g[t]);
  M* m = static_cast<M*>(tab.m[t]);
  M* v = static_cast<M*>(tab.v[t]);
  const int64_t n = tab.n[t];
  const A d = t < tab.decayed ? decay : A(1);
  const int64_t begin = static_cast<int64_t>(block - tab.first_block[t]) * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < n ? begin + kAdamWChunk : n;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) adamw_element(p, g, m, v, i, s, d);
}

void adamw_launch(const KernelCall& c) {
  Tensor& p = c.output(0);
  const Tensor &g = c.input(1), &m = c.input(2), &v = c.input(3);
  const AdamWAttrs& a = c.attrs.adamw;
  int64_t n = p.numel();
  MODU_CHECK(g.dtype() == p.dtype(), "adamw_: gradient dtype ", dtype_name(g.dtype()), " differs from parameter ",
             dtype_name(p.dtype()));
  if (n == 0) return;
  dispatch_floating(p.dtype(), "adamw_", [&](auto ptag) {
    using P = decltype(ptag);
    dispatch_floating(m.dtype(), "adamw_ moments", [&](auto mtag) {
      using M = decltype(mtag);
      using A = acc_t<M>;
      adamw_kernel<P, M><<<grid_for(n), kThreads, 0, cur_stream()>>>(
          static_cast<P*>(p.data_ptr()), static_cast<const P*>(g.data_ptr()), static_cast<M*>(m.data_ptr()),
          static_cast<M*>(v.data_ptr()), n, adamw_scalars<M>(a), A(1 - a.lr * a.weight_decay));
      MODU_CUDA_LAUNCH_CHECK("adamw_");
    });
  });
}

// Inputs (p0..pN-1, g0.., m0.., v0..) (shape_rules checked one parameter dtype and one moment dtype); tensors
// [0, decayed) decay. Groups of kAdamWMultiMaxTensors: GPT-2 124M's 148 parameters are one launch.
void adamw_multi_launch(const KernelCall& c) {
  const int n = static_cast<int>(c.in.size() / 4);
  const AdamWAttrs& a = c.attrs.adamw;
  dispatch_floating(c.input(0).dtype(), "adamw_multi_", [&](auto ptag) {
    using P = decltype(ptag);
    dispatch_floating(c.input(2 * n).dtype(), "adamw_multi_ moments", [&](auto mtag) {
      using M = decltype(mtag);
      using A = acc_t<M>;
      // One index across the groups: empty tensors take no table slot, so a group can span more than
      // kAdamWMultiMaxTensors inputs, and the next group starts where this one stopped (never at a fixed stride,
      // which would update the tensors past the stride twice).
      for (int i = 0; i < n;) {
        AdamWMultiTable tab{};
        int32_t blocks = 0;
        for (; i < n && tab.count < static_cast<int32_t>(kAdamWMultiMaxTensors); ++i) {
          const int64_t numel = c.input(i).numel();
          if (numel == 0) continue;
          const int k = tab.count++;
          tab.p[k] = c.input(i).data_ptr();
          tab.g[k] = c.input(n + i).data_ptr();
          tab.m[k] = c.input(2 * n + i).data_ptr();
          tab.v[k] = c.input(3 * n + i).data_ptr();
          tab.n[k] = numel;
          tab.first_block[k] = blocks;
          const int64_t b = (numel + kAdamWChunk - 1) / kAdamWChunk;
          MODU_CHECK(blocks + b < (int64_t{1} << 31), "adamw_multi_: more than 2^31 blocks in one launch");
          blocks += static_cast<int32_t>(b);
          if (i < a.decayed) tab.decayed = tab.count;  // decayed tensors come first, so a prefix of the table
        }
        tab.first_block[tab.count] = blocks;
        if (blocks == 0) continue;
        adamw_multi_kernel<P, M><<<static_cast<unsigned>(blocks), kThreads, 0, cur_stream()>>>(
            tab, adamw_scalars<M>(a), A(1 - a.lr * a.weight_decay));
        MODU_CUDA_LAUNCH_CHECK("adamw_multi_");
      }
    });
  });
}

// ---- test hooks -------------------------------------------------------------------------------------------------
__global__ void philox_words_kernel(uint32_t* out, int64_t blocks, uint64_t key, uint64_t counter) {
  int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= blocks) return;
  PhiloxOut r = philox(counter + static_cast<uint64_t>(b), key);
  for (int k = 0; k < 4; ++k) out[b * 4 + k] = r.w[k];
}

__global__ void never_launched_kernel() {}

}  // namespace

// Raw Philox words of blocks [counter, counter + blocks) on the current device (for tests).
std::vector<uint32_t> philox_words(uint64_t key, uint64_t counter, int64_t blocks) {
  std::vector<uint32_t> host(static_cast<size_t>(blocks * 4));
  if (blocks == 0) return host;
  Tensor buf = Tensor::empty(Dims{blocks * 4}, DType::I32, Device::cuda(current_device()));
  unsigned grid = static_cast<unsigned>((blocks + kThreads - 1) / kThreads);
  philox_words_kernel<<<grid, kThreads, 0, cur_stream()>>>(static_cast<uint32_t*>(buf.data_ptr()), blocks, key, counter);
  MODU_CUDA_LAUNCH_CHECK("philox_words");
  MODU_CUDA_CHECK(cudaMemcpyAsync(host.data(), buf.data_ptr(), host.size() * 4, cudaMemcpyDeviceToHost, cur_stream()));
  MODU_CUDA_CHECK(cudaStreamSynchronize(cur_stream()));
  return host;
}

// Launches a kernel with an invalid block size, so the launch check must report this file and line.
void bad_launch_for_test() {
  never_launched_kernel<<<1, 4096, 0, cur_stream()>>>();
  MODU_CUDA_LAUNCH_CHECK("never_launched_kernel");
}

void register_copy_kernels(KernelRegistry& r) {
  constexpr DTypeSet kNumeric{DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8};
  const auto cuda = DeviceType::CUDA;
  for (OpId op : {OpId::cast, OpId::copy, OpId::copy_}) r.set(cuda, op, guarded<convert_kernel>, kAllTypes);
  r.set(cuda, OpId::to_device, guarded<to_device_kernel>, kAllTypes);
  r.set(cuda, OpId::fill_, guarded<fill_kernel>, kAllTypes);
  r.set(cuda, OpId::full, guarded<fill_kernel>, kAllTypes);
  r.set(cuda, OpId::arange, guarded<arange_launch>, kNumeric);
  r.set(cuda, OpId::add_, guarded<add_inplace_kernel>, kNumeric);
  r.set(cuda, OpId::mul_scalar_, guarded<mul_scalar_inplace_kernel>, kFloatTypes);
  r.set(cuda, OpId::uniform, guarded<random_kernel>, kFloatTypes);
  r.set(cuda, OpId::normal, guarded<random_kernel>, kFloatTypes);
  r.set(cuda, OpId::dropout, guarded<dropout_launch>, kFloatTypes);
  r.set(cuda, OpId::adamw_, guarded<adamw_launch>, kFloatTypes);
  r.set(cuda, OpId::adamw_multi_, guarded<adamw_multi_launch>, kFloatTypes);
}

}  // namespace modu::cuda
