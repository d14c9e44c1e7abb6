// core/cpu/index.cpp — CPU kernels for embedding (and its scatter-add backward), index_select /
// index_add, gather / scatter_add and concat.
//
// Invariants: every index is range-checked before any write, and an out-of-range index is reported
// with its position. Scatter-adds are deterministic: each thread owns a disjoint slice of the output.
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/layout.h"

namespace modu::cpu {

namespace {

template <class I>
void check_indices(const I* idx, int64_t n, int64_t limit, const char* op) {
  for (int64_t i = 0; i < n; ++i)
    MODU_CHECK(idx[i] >= 0 && idx[i] < limit, op, ": index ", static_cast<int64_t>(idx[i]), " at position ", i,
               " is out of range [0, ", limit, ")");
}

void embedding_kernel(const KernelCall& c) {
  Tensor w = as_contiguous(c.input(0)), idx = as_contiguous(c.input(1));
  Tensor& out = c.output(0);
  int64_t V = w.size(0), C = w.size(1), n = idx.numel();
  size_t row_bytes = static_cast<size_t>(C) * w.element_size();
  dispatch_index(idx.dtype(), "embedding", [&](auto itag_) {
    using index_t = decltype(itag_);
    const index_t* I = static_cast<const index_t*>(idx.data_ptr());
    check_indices(I, n, V, "embedding");
    const char* W = static_cast<const char*>(w.data_ptr());
    char* O = static_cast<char*>(out.data_ptr());
    parallel_for(n, C, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) std::memcpy(O + i * row_bytes, W + static_cast<int64_t>(I[i]) * row_bytes, row_bytes);
    });
  });
}

void embedding_backward_kernel(const KernelCall& c) {
  Tensor gy = as_contiguous(c.input(0)), idx = as_contiguous(c.input(1));
  Tensor& gw = c.output(0);
  int64_t rows = gw.size(0), C = gw.size(1), n = idx.numel();
  dispatch_floating(gy.dtype(), "embedding_backward", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    dispatch_index(idx.dtype(), "embedding_backward", [&](auto itag_) {
    using index_t = decltype(itag_);
      const index_t* I = static_cast<const index_t*>(idx.data_ptr());
      check_indices(I, n, rows, "embedding_backward");
      const scalar_t* G = static_cast<const scalar_t*>(gy.data_ptr());
      scalar_t* W = static_cast<scalar_t*>(gw.data_ptr());
      // Each thread owns a column range of gw and adds the rows in index order (deterministic). f32/f64
      // accumulate in the output itself; 16-bit types through an f32 buffer of the thread's columns.
      parallel_for(C, n + rows, [&](int64_t c0, int64_t c1) {
        int64_t width = c1 - c0;
        if constexpr (std::is_same_v<scalar_t, A>) {
          for (int64_t r = 0; r < rows; ++r) std::fill(W + r * C + c0, W + r * C + c1, A(0));
          for (int64_t i = 0; i < n; ++i) {
            A* dst = W + static_cast<int64_t>(I[i]) * C + c0;
            const scalar_t* src = G + i * C + c0;
            for (int64_t k = 0; k < width; ++k) dst[k] += src[k];
          }
        } else {
          Scratch<A> acc(rows * width);
          std::fill(acc.data, acc.data + rows * width, A(0));
          for (int64_t i = 0; i < n; ++i) {
            A* dst = acc.data + static_cast<int64_t>(I[i]) * width;
            const scalar_t* src = G + i * C + c0;
            for (int64_t k = 0; k < width; ++k) dst[k] += load(src + k);
          }
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t k = 0; k < width; ++k) store(W + r * C + c0 + k, acc[r * width + k]);
        }
      });
    });
  });
}

void index_select_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0)), idx = as_contiguous(c.input(1));
  Tensor& out = c.output(0);
  int dim = c.attrs.dim.dim;
  AroundDim a = around_dim(x.shape(), dim);
  int64_t K = idx.numel();
  size_t es = x.element_size(), chunk = static_cast<size_t>(a.inner) * es;
  dispatch_index(idx.dtype(), "index_select", [&](auto itag_) {
    using index_t = decltype(itag_);
    const index_t* I = static_cast<const index_t*>(idx.data_ptr());
    check_indices(I, K, a.n, "index_select");
    const char* X = static_cast<const char*>(x.data_ptr());
    char* O = static_cast<char*>(out.data_ptr());
    parallel_for(a.outer * K, a.inner, [&](int64_t b, int64_t e) {
      for (int64_t ok = b; ok < e; ++ok) {
        int64_t o = ok / K, k = ok % K;
        std::memcpy(O + ok * chunk, X + (o * a.n + static_cast<int64_t>(I[k])) * chunk, chunk);
      }
    });
  });
}

void index_add_kernel(const KernelCall& c) {
  Tensor idx = as_contiguous(c.input(1)), src = as_contiguous(c.input(2));
  Tensor& out = c.output(0);
  copy_into(out, c.input(0));
  int dim = c.attrs.dim.dim;
  AroundDim a = around_dim(out.shape(), dim);
  int64_t K = idx.numel();
  dispatch_all(out.dtype(), "index_add", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      MODU_FAIL("index_add: bool tensors cannot be added");
    } else {
      dispatch_index(idx.dtype(), "index_add", [&](auto itag_) {
    using index_t = decltype(itag_);
        const index_t* I = static_cast<const index_t*>(idx.data_ptr());
        check_indices(I, K, a.n, "index_add");
        const scalar_t* S = static_cast<const scalar_t*>(src.data_ptr());
        scalar_t* O = static_cast<scalar_t*>(out.data_ptr());
        parallel_for(a.outer, K * a.inner, [&](int64_t o0, int64_t o1) {
          for (int64_t o = o0; o < o1; ++o)
            for (int64_t k = 0; k < K; ++k) {
              scalar_t* dst = O + (o * a.n + static_cast<int64_t>(I[k])) * a.inner;
              const scalar_t* s = S + (o * K + k) * a.inner;
              for (int64_t i = 0; i < a.inner; ++i) store(dst + i, A(load(dst + i) + load(s + i)));
            }
        });
      });
    }
  });
}

// Walks every element of `idx` (any layout); fn(linear position, offset of the matching element in a
// tensor with strides `target_strides` where dim `dim` takes the index value).
template <class IndexT, class F>
void for_each_indexed(const Tensor& idx, int dim, const Dims& target_strides, int64_t dim_limit, const char* op,
                      F fn) {
  const IndexT* I = static_cast<const IndexT*>(idx.data_ptr());
  int nd = idx.dim();
  int64_t n = idx.numel();
  int64_t coord[kMaxDims] = {};
  for (int64_t lin = 0; lin < n; ++lin) {
    int64_t idx_off = 0, tgt_off = 0;
    for (int d = 0; d < nd; ++d) {
      idx_off += coord[d] * idx.stride(d);
      if (d != dim) tgt_off += coord[d] * target_strides[d];
    }
    int64_t v = I[idx_off];
    MODU_CHECK(v >= 0 && v < dim_limit, op, ": index ", v, " at position ", lin, " is out of range [0, ", dim_limit, ")");
    fn(lin, tgt_off + v * target_strides[dim]);
    for (int d = nd - 1; d >= 0; --d) {
      if (++coord[d] < idx.size(d)) break;
      coord[d] = 0;
    }
  }
}

void gather_kernel(const KernelCall& c) {
  const Tensor &x = c.input(0), &idx = c.input(1);
  Tensor& out = c.output(0);
  int dim = c.attrs.dim.dim;
  dispatch_all(x.dtype(), "gather", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    const scalar_t* X = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* O = static_cast<scalar_t*>(out.data_ptr());
    dispatch_index(idx.dtype(), "gather", [&](auto itag_) {
    using index_t = decltype(itag_);
      for_each_indexed<index_t>(idx, dim, x.strides(), x.size(dim), "gather",
                                [&](int64_t lin, int64_t xoff) { O[lin] = X[xoff]; });
    });
  });
}

void scatter_add_kernel(const KernelCall& c) {
  const Tensor& idx = c.input(1);
  Tensor src = as_contiguous(c.input(2));
  Tensor& out = c.output(0);
  copy_into(out, c.input(0));
  int dim = c.attrs.dim.dim;
  dispatch_all(out.dtype(), "scatter_add", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    if constexpr (std::is_same_v<scalar_t, bool>) {
      MODU_FAIL("scatter_add: bool tensors cannot be added");
    } else {
      const scalar_t* S = static_cast<const scalar_t*>(src.data_ptr());
      scalar_t* O = static_cast<scalar_t*>(out.data_ptr());
      dispatch_index(idx.dtype(), "scatter_add", [&](auto itag_) {
    using index_t = decltype(itag_);
        for_each_indexed<index_t>(idx, dim, out.strides(), out.size(dim), "scatter_add",
                                  [&](int64_t lin, int64_t off) { store(O + off, A(load(O + off) + load(S + lin))); });
      });
    }
  });
}

void concat_kernel(const KernelCall& c) {
  Tensor& out = c.output(0);
  int dim = c.attrs.dim.dim;
  int64_t start = 0;
  for (const Tensor* t : c.in) {
    Dims shape = out.shape();
    shape[dim] = t->size(dim);
    Tensor slot = Tensor::make_view(out.storage(), shape, out.strides(), out.offset() + start * out.stride(dim),
                                    out.dtype());
    copy_into(slot, *t);
    start += t->size(dim);
  }
}

}  // namespace

void register_index_kernels(KernelRegistry& r) {
  r.set(DeviceType::CPU, OpId::embedding, embedding_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::embedding_backward, embedding_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::index_select, index_select_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::index_add, index_add_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::gather, gather_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::scatter_add, scatter_add_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::concat, concat_kernel, kAllTypes);
}

}  // namespace modu::cpu
