// core/cpu/loops.h — building blocks of the CPU kernels: dtype dispatch, float loads/stores for the
// 16-bit types, threading with a grain size, and a strided N-operand loop with broadcasting.
//
// Invariants: kernels compute in acc_t<T> (float for f32/bf16/f16, double for f64) and round once on
// store. Work smaller than a grain runs on the calling thread (no OpenMP region), which keeps the
// per-op overhead of tiny tensors low.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/ops/dispatch.h"
#include "core/tensor.h"

namespace modu::cpu {

// The type kernels compute in: float for the 16-bit floats, the type itself otherwise.
template <class T> struct AccType { using type = T; };
template <> struct AccType<bf16> { using type = float; };
template <> struct AccType<f16> { using type = float; };
template <class T> using acc_t = typename AccType<T>::type;

template <class T>
inline acc_t<T> load(const T* p) {
  if constexpr (std::is_same_v<T, bf16>) return bf16_bits_to_float(p->bits);
  else if constexpr (std::is_same_v<T, f16>) return f16_bits_to_float(p->bits);
  else return static_cast<acc_t<T>>(*p);
}
template <class T, class V>
inline void store(T* p, V v) {
  if constexpr (std::is_same_v<T, bf16>) p->bits = float_to_bf16_bits(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, f16>) p->bits = float_to_f16_bits(static_cast<float>(v));
  else *p = static_cast<T>(v);
}

// dispatch_floating(dtype, name, [&](auto tag) { using scalar_t = decltype(tag); ... }) calls the
// body with a value of the C++ storage type of `dtype` (functions, not macros, so pragmas inside the
// body work).
template <class F>
decltype(auto) dispatch_floating(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    case DType::BF16: return f(bf16{});
    case DType::F16: return f(f16{});
    default: MODU_FAIL(name, ": unsupported dtype ", dtype_name(t));
  }
}
template <class F>
decltype(auto) dispatch_all(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::F32: return f(float{});
    case DType::F64: return f(double{});
    case DType::BF16: return f(bf16{});
    case DType::F16: return f(f16{});
    case DType::I32: return f(int32_t{});
    case DType::I64: return f(int64_t{});
    case DType::U8: return f(uint8_t{});
    case DType::Bool: return f(bool{});
  }
  MODU_FAIL(name, ": unknown dtype");
}
template <class F>
decltype(auto) dispatch_index(DType t, const char* name, F&& f) {
  switch (t) {
    case DType::I32: return f(int32_t{});
    case DType::I64: return f(int64_t{});
    default: MODU_FAIL(name, ": indices must be i32 or i64, got ", dtype_name(t));
  }
}

// Elements below which a loop stays on one thread.
constexpr int64_t kGrain = 32768;

inline int max_threads() { return omp_get_max_threads(); }

// The slot of per-thread scratch (sized max_threads() by the caller, outside the parallel region) this
// thread uses inside parallel_for. Within one call only that call's threads (ids < slots) share the
// scratch; a call nested in someone else's parallel region runs on one thread with its own scratch.
inline int thread_slot(int slots) { return omp_get_thread_num() % (slots > 0 ? slots : 1); }

// fn(begin, end) over [0, n) split into contiguous chunks across threads when n * cost_per_item is large.
template <class F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& fn) {
  if (n <= 0) return;
  int threads = max_threads();
  if (threads <= 1 || n * cost_per_item < kGrain || n < 2 || omp_in_parallel()) {
    fn(int64_t(0), n);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, n);
#pragma omp parallel for num_threads(static_cast<int>(chunks)) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
    fn(b, e);
  }
}

// A strided walk over a shared logical shape with N operands (operand 0 usually the output).
// Strides are in bytes. Dims of size 1 are dropped and mergeable neighbours coalesced first.
template <int N>
struct StridedLoop {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t strides[N][kMaxDims];
  char* base[N];
  int64_t numel = 1;

  // ops[i]'s layout broadcast to `shape` (ops[i] must broadcast).
  StridedLoop(const Dims& out_shape, const Tensor* const* ops) {
    int n = out_shape.size();
    int64_t tmp_shape[kMaxDims];
    int64_t tmp_strides[N][kMaxDims];
    for (int d = 0; d < n; ++d) tmp_shape[d] = out_shape[d];
    for (int i = 0; i < N; ++i) {
      const Tensor& t = *ops[i];
      base[i] = static_cast<char*>(t.data_ptr());
      int lead = n - t.dim();
      int64_t es = static_cast<int64_t>(t.element_size());
      for (int d = 0; d < n; ++d) {
        int td = d - lead;
        tmp_strides[i][d] = (td < 0 || t.shape()[td] == 1) ? 0 : t.strides()[td] * es;
      }
    }
    // Drop size-1 dims, then coalesce dim d into d-1 when every operand is contiguous across them.
    for (int d = 0; d < n; ++d) {
      if (tmp_shape[d] == 1) continue;
      if (ndim > 0) {
        bool merge = true;
        for (int i = 0; i < N && merge; ++i) merge = strides[i][ndim - 1] == tmp_strides[i][d] * tmp_shape[d];
        if (merge) {
          shape[ndim - 1] *= tmp_shape[d];
          for (int i = 0; i < N; ++i) strides[i][ndim - 1] = tmp_strides[i][d];
          continue;
        }
      }
      shape[ndim] = tmp_shape[d];
      for (int i = 0; i < N; ++i) strides[i][ndim] = tmp_strides[i][d];
      ++ndim;
    }
    numel = out_shape.numel();
    if (ndim == 0 && numel > 0) {  // a single element
      shape[0] = 1;
      for (int i = 0; i < N; ++i) strides[i][0] = 0;
      ndim = 1;
    }
  }

  // body(char* ptrs[N], int64_t n, const int64_t inner_strides[N]) over rows of the innermost dim.
  template <class F>
  void run(F&& body, int64_t cost_per_item = 1) const {
    if (numel == 0) return;
    int64_t inner = shape[ndim - 1];
    int64_t outer = numel / inner;
    int64_t inner_strides[N];
    for (int i = 0; i < N; ++i) inner_strides[i] = strides[i][ndim - 1];
    auto rows = [&](int64_t begin, int64_t end) {
      // Linear element range [begin, end) -> walk row segments.
      int64_t idx[kMaxDims] = {};
      int64_t rem = begin / inner;
      for (int d = ndim - 2; d >= 0; --d) {
        idx[d] = rem % shape[d];
        rem /= shape[d];
      }
      int64_t pos = begin;
      int64_t col = begin % inner;
      while (pos < end) {
        char* ptrs[N];
        for (int i = 0; i < N; ++i) {
          int64_t off = col * strides[i][ndim - 1];
          for (int d = 0; d < ndim - 1; ++d) off += idx[d] * strides[i][d];
          ptrs[i] = base[i] + off;
        }
        int64_t count = std::min(inner - col, end - pos);
        body(ptrs, count, inner_strides);
        pos += count;
        col = 0;
        for (int d = ndim - 2; d >= 0; --d) {
          if (++idx[d] < shape[d]) break;
          idx[d] = 0;
        }
      }
    };
    (void)outer;
    if (numel * cost_per_item < kGrain || max_threads() <= 1 || omp_in_parallel()) {
      rows(0, numel);
    } else {
      parallel_for(numel, cost_per_item, rows);
    }
  }
};

// Fetches the offset (in elements) of logical element `linear` of t.
inline int64_t element_offset(const Tensor& t, int64_t linear) {
  int64_t off = 0;
  for (int d = t.dim() - 1; d >= 0; --d) {
    int64_t s = t.shape()[d];
    off += (linear % s) * t.strides()[d];
    linear /= s;
  }
  return off;
}

}  // namespace modu::cpu
