// core/cpu/reduce.cpp — CPU reductions: sum, mean, var (over any set of dims) and max/argmax (one dim).
//
// Plan: a reduction whose reduced dims lead and kept dims trail a contiguous input is a column
// reduction (bias gradients, sum_to_shape) and runs without a copy; every other case is brought to
// "kept dims, then reduced dims" contiguous order (a copy only when the layout differs) and reduced
// row by row. Accumulation is in acc_t (f32 for 16-bit floats) with SIMD partial sums.
#include "core/cpu/vector_math.h"  // first: before <cmath>
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/layout.h"

namespace modu::cpu {

namespace {

struct Layout {
  Tensor rows;        // contiguous (outer, inner), or the contiguous input itself in column mode
  int64_t outer = 1;  // number of outputs
  int64_t inner = 1;  // elements reduced per output
  bool column = false;
};

Layout plan(const Tensor& x, uint32_t mask, bool allow_column = true) {
  ReducePlan p = reduce_plan(x, mask, allow_column);
  return Layout{p.column ? p.rows_view : as_contiguous(p.rows_view), p.outer, p.inner, p.column};
}

template <class T>
acc_t<T> row_sum(const T* p, int64_t n) {
  using A = acc_t<T>;
  A acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += load(p + i);
  return acc;
}

void sum_mean_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  bool is_mean = c.op == OpId::mean;
  Layout L = plan(x, c.attrs.reduce.dims_mask);
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    if constexpr (std::is_same_v<scalar_t, bool>) {
      MODU_FAIL(op_name(c.op), ": bool tensors cannot be summed; cast to an integer type");
    } else {
      using A = acc_t<scalar_t>;
      const scalar_t* in = static_cast<const scalar_t*>(L.rows.data_ptr());
      // y in x's dtype (rounded from A by store) or, for sum_accumulate, in A itself.
      const bool acc_out = y.dtype() != x.dtype();
      scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
      A* out_acc = static_cast<A*>(y.data_ptr());
      auto put = [&](int64_t o, A v) {
        if (acc_out)
          out_acc[o] = v;
        else
          store(out + o, v);
      };
      A scale = is_mean ? A(1) / A(L.inner > 0 ? L.inner : 1) : A(1);
      if (L.inner == 0) {
        for (int64_t o = 0; o < L.outer; ++o) put(o, is_mean ? A(NAN) : A(0));
        return;
      }
      if (L.column) {
        int64_t R = L.inner, K = L.outer;
        parallel_for(K, R, [&](int64_t k0, int64_t k1) {
          constexpr int64_t kChunk = 512;  // accumulators on the stack: no heap per call
          A acc[kChunk];
          for (int64_t c0 = k0; c0 < k1; c0 += kChunk) {
            int64_t width = std::min(kChunk, k1 - c0);
            std::fill(acc, acc + width, A(0));
            for (int64_t r = 0; r < R; ++r) {
              const scalar_t* row = in + r * K + c0;
#pragma omp simd
              for (int64_t k = 0; k < width; ++k) acc[k] += load(row + k);
            }
            for (int64_t k = 0; k < width; ++k) put(c0 + k, acc[k] * scale);
          }
        });
        return;
      }
      parallel_for(L.outer, L.inner, [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; ++o) put(o, row_sum(in + o * L.inner, L.inner) * scale);
      });
    }
  });
}

void var_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  Layout L = plan(x, c.attrs.reduce.dims_mask, /*allow_column=*/false);
  double denom = static_cast<double>(L.inner - c.attrs.reduce.correction);
  dispatch_floating(x.dtype(), "var", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(L.rows.data_ptr());
    scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
    parallel_for(L.outer, 2 * L.inner, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const scalar_t* p = in + o * L.inner;
        A m = L.inner ? row_sum(p, L.inner) / A(L.inner) : A(0);
        A ss = 0;
#pragma omp simd reduction(+ : ss)
        for (int64_t i = 0; i < L.inner; ++i) {
          A d = load(p + i) - m;
          ss += d * d;
        }
        store(out + o, denom > 0 ? ss / A(denom) : A(NAN));
      }
    });
  });
}

void max_kernel(const KernelCall& c) {
  const Tensor x = as_contiguous(c.input(0));
  int d = c.attrs.dim.dim;
  int64_t n = x.size(d), outer = 1, inner = 1;
  for (int k = 0; k < d; ++k) outer *= x.size(k);
  for (int k = d + 1; k < x.dim(); ++k) inner *= x.size(k);
  bool want_values = c.op == OpId::max;
  int64_t* idx_out = static_cast<int64_t*>(c.output(want_values ? 1 : 0).data_ptr());
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* val_out = want_values ? static_cast<scalar_t*>(c.output(0).data_ptr()) : nullptr;
    parallel_for(outer * inner, n, [&](int64_t b, int64_t e) {
      for (int64_t oi = b; oi < e; ++oi) {
        int64_t o = oi / inner, i = oi % inner;
        const scalar_t* p = in + o * n * inner + i;
        A best = load(p);
        int64_t arg = 0;
        for (int64_t j = 1; j < n; ++j) {
          A v = load(p + j * inner);
          if constexpr (std::is_floating_point_v<A>) {
            if (best != best) break;  // NaN wins and stays
            if (v > best || v != v) best = v, arg = j;
          } else {
            if (v > best) best = v, arg = j;
          }
        }
        idx_out[oi] = arg;
        if (val_out) store(val_out + oi, best);
      }
    });
  });
}

// sum_squares: every input in fixed chunks of kSquaresChunk elements, each chunk's sum in f64, the chunk sums
// added in order: the result does not depend on the thread count. The chunks of all inputs are one list,
// split over the threads in one parallel region (a step's gradients are ~150 tensors, most of them small).
constexpr int64_t kSquaresChunk = 1 << 16;

void sum_squares_kernel(const KernelCall& c) {
  const int64_t n_in = static_cast<int64_t>(c.in.size());
  // Contiguous inputs are read in place; the rare strided one through a copy kept in `copies` (reserved
  // up front so the pointers stay put; empty, and so no heap allocation, in the usual case).
  std::vector<Tensor> copies;
  Scratch<const Tensor*> inputs(n_in > 0 ? n_in : 1);
  Scratch<int64_t> first_chunk(n_in + 1);
  bool all_contiguous = true;
  for (const Tensor* t : c.in) all_contiguous = all_contiguous && t->is_contiguous();
  if (!all_contiguous) copies.reserve(n_in);
  first_chunk[0] = 0;
  for (int64_t i = 0; i < n_in; ++i) {
    const Tensor* t = c.in[i];
    if (!t->is_contiguous()) t = &copies.emplace_back(contiguous_copy(*t));
    inputs[i] = t;
    first_chunk[i + 1] = first_chunk[i] + (t->numel() + kSquaresChunk - 1) / kSquaresChunk;
  }
  const int64_t chunks = first_chunk[n_in];
  Scratch<double> part(chunks > 0 ? chunks : 1);
  parallel_for(chunks, kSquaresChunk, [&](int64_t b, int64_t e) {
    // The input holding chunk b (the last whose first chunk is <= b), then walk forward past empty ones.
    int64_t ti = std::upper_bound(first_chunk.data, first_chunk.data + n_in + 1, b) - first_chunk.data - 1;
    for (int64_t k = b; k < e; ++k) {
      while (first_chunk[ti + 1] <= k) ++ti;
      const Tensor& x = *inputs[ti];
      int64_t n = x.numel(), lo = (k - first_chunk[ti]) * kSquaresChunk, hi = std::min(n, lo + kSquaresChunk);
      dispatch_floating(x.dtype(), "sum_squares", [&](auto tag_) {
        using scalar_t = decltype(tag_);
        const scalar_t* p = static_cast<const scalar_t*>(x.data_ptr());
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = lo; i < hi; ++i) {
          double v = static_cast<double>(load(p + i));
          acc += v * v;
        }
        part.data[k] = acc;
      });
    }
  });
  double total = 0;
  for (int64_t k = 0; k < chunks; ++k) total += part.data[k];
  Tensor& y = c.output(0);
  dispatch_floating(y.dtype(), "sum_squares", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    store(static_cast<scalar_t*>(y.data_ptr()), static_cast<acc_t<scalar_t>>(total));
  });
}

}  // namespace

void register_reduce_kernels(KernelRegistry& r) {
  constexpr DTypeSet kNumeric{DType::F32, DType::F64, DType::BF16, DType::F16,
                              DType::I32, DType::I64, DType::U8};
  r.set(DeviceType::CPU, OpId::sum, sum_mean_kernel, kNumeric);
  r.set(DeviceType::CPU, OpId::mean, sum_mean_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::var, var_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::max, max_kernel, kNumeric);
  r.set(DeviceType::CPU, OpId::argmax, max_kernel, kNumeric);
  r.set(DeviceType::CPU, OpId::sum_squares, sum_squares_kernel, kFloatTypes);
}

}  // namespace modu::cpu
