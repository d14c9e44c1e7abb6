// core/cuda/common.cuh — device-side building blocks of the CUDA kernels: storage types and their
// fp32/fp64 "accumulate" types, loads/stores with round-to-nearest-even for bf16/f16, math wrappers
// that pick the float or double function, dtype dispatch, warp/block reductions, an offset calculator
// over up to 8 broadcast dims, a generic elementwise map (contiguous fast path with 16-byte vector
// loads, strided path otherwise), Philox4x32-10, and index-error reporting.
//
// Invariants:
//  - Kernels compute in acc_t<T>: float for f32/bf16/f16, double for f64, the type itself for integers;
//    they round once on store, like the CPU kernels (core/cpu/loops.h), so results agree to rounding.
//  - No fast-math: expf/logf/tanhf/erff are the accurate CUDA versions (<= 2 ulp), divisions and
//    square roots are IEEE-rounded.
//  - Reductions are deterministic: fixed thread-to-element assignment and fixed combination trees,
//    no floating-point atomics anywhere in the backend.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/cuda/kernels.h"
#include "core/tensor.h"

namespace modu::cuda {

// ---- types -----------------------------------------------------------------------------------------------
using bf16_t = __nv_bfloat16;
using f16_t = __half;

template <class T> struct AccType { using type = T; };
template <> struct AccType<bf16_t> { using type = float; };
template <> struct AccType<f16_t> { using type = float; };
template <class T> using acc_t = typename AccType<T>::type;

template <class T>
constexpr bool is_half_v = std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>;
template <class T>
constexpr bool is_float_v = std::is_floating_point_v<T> || is_half_v<T>;

template <class T>
__host__ __device__ __forceinline__ acc_t<T> ld(const T* p) {
  if constexpr (std::is_same_v<T, bf16_t>) return __bfloat162float(*p);
  else if constexpr (std::is_same_v<T, f16_t>) return __half2float(*p);
  else return *p;
}
template <class T>
__host__ __device__ __forceinline__ acc_t<T> to_acc(T v) {
  return ld(&v);
}
template <class T, class V>
__host__ __device__ __forceinline__ T from_value(V v) {
  if constexpr (std::is_same_v<T, bf16_t>) return __float2bfloat16_rn(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f16_t>) return __float2half_rn(static_cast<float>(v));
  else return static_cast<T>(v);
}
template <class T, class V>
__host__ __device__ __forceinline__ void st(T* p, V v) {
  *p = from_value<T>(v);
}

// Host-side dtype dispatch: f(T{}) with the device storage type of t.
template <class F>
void dispatch_all(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    case DType::BF16: f(bf16_t{}); return;
    case DType::F16: f(f16_t{}); return;
    case DType::I32: f(int32_t{}); return;
    case DType::I64: f(int64_t{}); return;
    case DType::U8: f(uint8_t{}); return;
    case DType::Bool: f(bool{}); return;
  }
  MODU_FAIL(name, ": unknown dtype");
}
template <class F>
void dispatch_floating(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::F32: f(float{}); return;
    case DType::F64: f(double{}); return;
    case DType::BF16: f(bf16_t{}); return;
    case DType::F16: f(f16_t{}); return;
    default: MODU_FAIL(name, ": no CUDA kernel for ", dtype_name(t), " (floating dtypes only)");
  }
}
template <class F>
void dispatch_index(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::I32: f(int32_t{}); return;
    case DType::I64: f(int64_t{}); return;
    default: MODU_FAIL(name, ": indices must be i32 or i64, got ", dtype_name(t));
  }
}
// Dispatch on element width only (for copies that move bits).
template <class F>
void dispatch_width(size_t bytes, const char* name, F&& f) {
  switch (bytes) {
    case 1: f(uint8_t{}); return;
    case 2: f(uint16_t{}); return;
    case 4: f(uint32_t{}); return;
    case 8: f(uint64_t{}); return;
    default: MODU_FAIL(name, ": unsupported element size ", bytes);
  }
}

// ---- math that follows the accumulate type -----------------------------------------------------------
#define MODU_MATH1(name, ffn, dfn)                                      \
  template <class A>                                                    \
  __device__ __forceinline__ A name(A x) {                              \
    if constexpr (std::is_same_v<A, double>) return ::dfn(x);           \
    else return ::ffn(x);                                               \
  }
MODU_MATH1(m_exp, expf, exp)
MODU_MATH1(m_log, logf, log)
MODU_MATH1(m_log1p, log1pf, log1p)
MODU_MATH1(m_sqrt, sqrtf, sqrt)
MODU_MATH1(m_sin, sinf, sin)
MODU_MATH1(m_cos, cosf, cos)
MODU_MATH1(m_tanh, tanhf, tanh)
MODU_MATH1(m_erf, erff, erf)
MODU_MATH1(m_fabs, fabsf, fabs)
#undef MODU_MATH1
template <class A>
__device__ __forceinline__ A m_pow(A x, A y) {
  if constexpr (std::is_same_v<A, double>) return ::pow(x, y);
  else return ::powf(x, y);
}
template <class A>
__device__ __forceinline__ A m_inf() {
  if constexpr (std::is_same_v<A, double>) return __longlong_as_double(0x7ff0000000000000ll);
  else return __int_as_float(0x7f800000);
}
template <class A>
__device__ __forceinline__ A m_nan() {
  if constexpr (std::is_same_v<A, double>) return __longlong_as_double(0x7ff8000000000000ll);
  else return __int_as_float(0x7fc00000);
}

// ---- warp and block reductions (deterministic trees) ------------------------------------------------------
template <class A>
__device__ __forceinline__ A shfl_xor(A v, int mask) {
  if constexpr (sizeof(A) < 4) return static_cast<A>(__shfl_xor_sync(0xffffffffu, static_cast<unsigned>(v), mask));
  else return __shfl_xor_sync(0xffffffffu, v, mask);
}
template <class A>
__device__ __forceinline__ A shfl_idx(A v, int lane) {
  if constexpr (sizeof(A) < 4) return static_cast<A>(__shfl_sync(0xffffffffu, static_cast<unsigned>(v), lane));
  else return __shfl_sync(0xffffffffu, v, lane);
}
// Butterfly sums: every lane ends with the same value.
template <class A>
__device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = static_cast<A>(v + shfl_xor(v, o));
  return v;
}
template <class A>
__device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    A w = shfl_xor(v, o);
    v = w > v ? w : v;
  }
  return v;
}
// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 values; the call synchronises the block twice.
template <class A>
__device__ __forceinline__ A block_sum(A v, A* scratch) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  A t = lane < nwarps ? scratch[lane] : A(0);
  return warp_sum(t);
}

// ---- launch geometry -------------------------------------------------------------------------------------
constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n items of `per_thread` each: enough to fill the device, no more.
inline unsigned grid_for(int64_t n, int threads = kThreads, int64_t per_thread = 1) {
  int64_t want = (n + threads * per_thread - 1) / (threads * per_thread);
  int64_t cap = static_cast<int64_t>(sm_count(current_device())) * 32;
  if (want > cap) want = cap;
  return static_cast<unsigned>(want < 1 ? 1 : want);
}
inline cudaStream_t cur_stream() { return stream(current_device()); }

// ---- offset calculator ------------------------------------------------------------------------------------
// Operand k's element offset of logical element `linear` of a broadcast shape; strides in elements,
// 0 along broadcast dims. Dims of size 1 are dropped and contiguous neighbours merged on the host.
template <int N>
struct OffsetCalc {
  int ndim = 0;
  bool small = true;  // numel < 2^31: 32-bit divisions suffice (uniform over the launch)
  int64_t sizes[kMaxDims];
  int64_t strides[N][kMaxDims];

  __device__ __forceinline__ void get(int64_t linear, int64_t* off) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    if (small) {
      uint32_t rem = static_cast<uint32_t>(linear);
      for (int d = ndim - 1; d >= 0; --d) {
        uint32_t s = static_cast<uint32_t>(sizes[d]);
        uint32_t i = rem % s;
        rem /= s;
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += static_cast<int64_t>(i) * strides[k][d];
      }
    } else {
      int64_t rem = linear;
      for (int d = ndim - 1; d >= 0; --d) {
        int64_t i = rem % sizes[d];
        rem /= sizes[d];
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += i * strides[k][d];
      }
    }
  }
};

// ops[0] is the output (its shape is the loop's shape); the others broadcast to it.
template <int N>
OffsetCalc<N> make_offset_calc(const Tensor* const* ops) {
  const Dims& shape = ops[0]->shape();
  int n = shape.size();
  OffsetCalc<N> oc;
  int64_t st[N][kMaxDims];
  for (int k = 0; k < N; ++k) {
    const Tensor& t = *ops[k];
    int lead = n - t.dim();
    for (int d = 0; d < n; ++d) {
      int td = d - lead;
      st[k][d] = (td < 0 || t.shape()[td] == 1) ? 0 : t.strides()[td];
    }
  }
  for (int d = 0; d < n; ++d) {
    if (shape[d] == 1) continue;
    if (oc.ndim > 0) {
      bool merge = true;
      for (int k = 0; k < N && merge; ++k) merge = oc.strides[k][oc.ndim - 1] == st[k][d] * shape[d];
      if (merge) {
        oc.sizes[oc.ndim - 1] *= shape[d];
        for (int k = 0; k < N; ++k) oc.strides[k][oc.ndim - 1] = st[k][d];
        continue;
      }
    }
    oc.sizes[oc.ndim] = shape[d];
    for (int k = 0; k < N; ++k) oc.strides[k][oc.ndim] = st[k][d];
    ++oc.ndim;
  }
  oc.small = shape.numel() < (int64_t(1) << 31);
  if (oc.ndim == 0) {  // a single element
    oc.ndim = 1;
    oc.sizes[0] = 1;
    for (int k = 0; k < N; ++k) oc.strides[k][0] = 0;
  }
  return oc;
}

// ---- elementwise map -------------------------------------------------------------------------------------
// out[i] = f(a[i], b[i], c[i]) (NIN = 1..3 inputs) over out's shape, inputs broadcast. Modes:
//   kStrided     any strides (offset calculator)
//   kContiguous  every operand contiguous with out's shape
//   kVector      kContiguous and every pointer aligned to its VEC-element pack (16-byte loads)
enum MapMode : int { kStrided = 0, kContiguous = 1, kVector = 2 };

template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <class TO, class T0, class T1, class T2>
constexpr int vec_width() {
  size_t m = sizeof(TO);
  if (sizeof(T0) > m) m = sizeof(T0);
  if (sizeof(T1) > m) m = sizeof(T1);
  if (sizeof(T2) > m) m = sizeof(T2);
  int v = static_cast<int>(16 / m);
  return v < 1 ? 1 : v;
}

template <int NIN, class F, class T0, class T1, class T2>
__device__ __forceinline__ auto apply_map(const F& f, const T0* a, const T1* b, const T2* c) {
  if constexpr (NIN == 1) return f(ld(a));
  else if constexpr (NIN == 2) return f(ld(a), ld(b));
  else return f(ld(a), ld(b), ld(c));
}

template <int NIN, class TO, class T0, class T1, class T2, class F>
__global__ void map_kernel(F f, TO* out, const T0* a, const T1* b, const T2* c, int64_t n, int mode,
                           OffsetCalc<NIN + 1> oc) {
  constexpr int V = vec_width<TO, T0, T1, T2>();
  int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t nthreads = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (mode == kStrided) {
    for (int64_t i = tid; i < n; i += nthreads) {
      int64_t off[NIN + 1];
      oc.get(i, off);
      const T1* pb = b;
      const T2* pc = c;
      if constexpr (NIN > 1) pb = b + off[2];
      if constexpr (NIN > 2) pc = c + off[3];
      st(out + off[0], apply_map<NIN>(f, a + off[1], pb, pc));
    }
    return;
  }
  if (mode == kVector) {
    int64_t nvec = n / V;
    for (int64_t v = tid; v < nvec; v += nthreads) {
      int64_t i = v * V;
      Pack<T0, V> pa = *reinterpret_cast<const Pack<T0, V>*>(a + i);
      Pack<T1, V> pb;
      Pack<T2, V> pc;
      if constexpr (NIN > 1) pb = *reinterpret_cast<const Pack<T1, V>*>(b + i);
      if constexpr (NIN > 2) pc = *reinterpret_cast<const Pack<T2, V>*>(c + i);
      Pack<TO, V> po;
#pragma unroll
      for (int k = 0; k < V; ++k) po.v[k] = from_value<TO>(apply_map<NIN>(f, &pa.v[k], &pb.v[k], &pc.v[k]));
      *reinterpret_cast<Pack<TO, V>*>(out + i) = po;
    }
    for (int64_t i = nvec * V + tid; i < n; i += nthreads) st(out + i, apply_map<NIN>(f, a + i, NIN > 1 ? b + i : b, NIN > 2 ? c + i : c));
    return;
  }
  for (int64_t i = tid; i < n; i += nthreads) st(out + i, apply_map<NIN>(f, a + i, NIN > 1 ? b + i : b, NIN > 2 ? c + i : c));
}

inline bool aligned_to(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Runs out = f(inputs...) with broadcasting; TO/T0.. are the device storage types of the operands, and
// T1/T2 are void when there is no second/third input.
template <class TO, class T0, class T1 = void, class T2 = void, class F>
void launch_map(const char* name, F f, Tensor& out, const Tensor& a, const Tensor* b = nullptr,
                const Tensor* c = nullptr) {
  constexpr int NIN = 1 + (std::is_void_v<T1> ? 0 : 1) + (std::is_void_v<T2> ? 0 : 1);
  using U1 = std::conditional_t<std::is_void_v<T1>, T0, T1>;
  using U2 = std::conditional_t<std::is_void_v<T2>, T0, T2>;
  MODU_CHECK((NIN > 1) == (b != nullptr) && (NIN > 2) == (c != nullptr), name, ": operand count mismatch");
  int64_t n = out.numel();
  if (n == 0) return;
  const Tensor* ops[4] = {&out, &a, b, c};
  bool contiguous = true;
  for (int k = 0; k <= NIN; ++k) contiguous = contiguous && ops[k]->is_contiguous() && ops[k]->shape() == out.shape();
  constexpr int V = vec_width<TO, T0, U1, U2>();
  int mode = kStrided;
  if (contiguous) {
    mode = kContiguous;
    bool al = aligned_to(out.data_ptr(), sizeof(TO) * V) && aligned_to(a.data_ptr(), sizeof(T0) * V);
    if (b) al = al && aligned_to(b->data_ptr(), sizeof(U1) * V);
    if (c) al = al && aligned_to(c->data_ptr(), sizeof(U2) * V);
    if (al && V > 1) mode = kVector;
  }
  TO* po = static_cast<TO*>(out.data_ptr());
  const T0* pa = static_cast<const T0*>(a.data_ptr());
  const U1* pb = b ? static_cast<const U1*>(b->data_ptr()) : nullptr;
  const U2* pc = c ? static_cast<const U2*>(c->data_ptr()) : nullptr;
  unsigned grid = grid_for(n, kThreads, mode == kVector ? V : 1);
  OffsetCalc<NIN + 1> oc = mode == kStrided ? make_offset_calc<NIN + 1>(ops) : OffsetCalc<NIN + 1>{};
  map_kernel<NIN, TO, T0, U1, U2><<<grid, kThreads, 0, cur_stream()>>>(f, po, pa, pb, pc, n, mode, oc);
  MODU_CUDA_LAUNCH_CHECK(name);
}

// ---- Philox4x32-10 (identical to core/rng.cpp) --------------------------------------------------------------
struct PhiloxOut {
  uint32_t w[4];
};
__device__ __forceinline__ PhiloxOut philox(uint64_t block, uint64_t key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u, kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(block), c1 = static_cast<uint32_t>(block >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
    uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
    uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}
// (w >> 8) * 2^-24 + 2^-25: exact in float (the product is exact), as on the CPU.
__device__ __forceinline__ float philox_uniform(uint32_t w) {
  return __fadd_rn(__fmul_rn(static_cast<float>(w >> 8), 1.0f / 16777216.0f), 1.0f / 33554432.0f);
}

// ---- bad indices -----------------------------------------------------------------------------------------
// The first kernel to find a bad index records it; check_device_errors() raises it on the host.
__device__ __forceinline__ void report_index_error(DeviceErrorSlot* slot, OpId op, int64_t position, int64_t value,
                                                   int64_t limit) {
  if (atomicCAS(&slot->flag, 0, 1) == 0) {
    slot->op = static_cast<int>(op);
    slot->position = position;
    slot->value = value;
    slot->limit = limit;
    __threadfence();
  }
}

}  // namespace modu::cuda
