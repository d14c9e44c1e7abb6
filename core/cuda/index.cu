// core/cuda/index.cu — CUDA kernels for embedding and its backward, index_select / index_add,
// gather / scatter_add and concat.
//
// Shapes: embedding w (V, C), idx (...) -> (..., C); index ops see a contiguous x as (outer, n, inner)
// around `dim`; gather/scatter_add walk the index tensor's own shape and strides.
//
// Invariants:
//  - Deterministic accumulation everywhere, no atomics on values:
//      embedding_backward: (index, position) pairs are radix-sorted by index (stable, so positions stay
//        ascending), then one block per distinct row adds its gradient rows in position order — the same
//        order as the CPU, hence bit-identical sums;
//      index_add: one thread per (outer, inner) slot walks the K indices in order;
//      scatter_add: one thread per index fiber (all coordinates but `dim`) walks it in order; fibers map
//        to disjoint output fibers.
//  - Bad indices are never followed: the element gets 0 (gathers) or nothing (scatters), and the first one
//    is reported through the deferred error slot (core/cuda/runtime.h), naming the op, position and value.
//  - Outputs are written; index_add and scatter_add start from a copy of x.
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/common.cuh"
#include "core/ops/layout.h"

namespace modu::cuda {

namespace {


// ---- embedding ----------------------------------------------------------------------------------------------------

template <class W, class I>
__global__ void embedding_kernel(const W* w, const I* idx, W* out, int64_t n, int64_t V, int64_t C,
                                 DeviceErrorSlot* slot) {
  int64_t total = n * C;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t i = e / C, col = e % C;
    int64_t v = static_cast<int64_t>(idx[i]);
    if (v >= 0 && v < V) {
      out[e] = w[v * C + col];
    } else {
      out[e] = W(0);
      if (col == 0) report_index_error(slot, OpId::embedding, i, v, V);
    }
  }
}

void embedding_launch(const KernelCall& c) {
  Tensor w = contiguous(c.input(0)), idx = contiguous(c.input(1));
  Tensor& out = c.output(0);
  int64_t V = w.size(0), C = w.size(1), n = idx.numel();
  if (n * C == 0) return;
  DeviceErrorSlot* slot = error_slot(current_device());
  dispatch_width(w.element_size(), "embedding", [&](auto wtag) {
    using W = decltype(wtag);
    dispatch_index(idx.dtype(), "embedding", [&](auto itag) {
      using I = decltype(itag);
      embedding_kernel<W, I><<<grid_for(n * C), kThreads, 0, cur_stream()>>>(
          static_cast<const W*>(w.data_ptr()), static_cast<const I*>(idx.data_ptr()), static_cast<W*>(out.data_ptr()),
          n, V, C, slot);
      MODU_CUDA_LAUNCH_CHECK("embedding");
    });
  });
}

// keys[i] = idx[i] (rows for a bad index, which sorts last and is skipped), vals[i] = i.
template <class I>
__global__ void embedding_keys_kernel(const I* idx, int64_t n, int64_t rows, uint32_t* keys, int32_t* vals,
                                      DeviceErrorSlot* slot) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t v = static_cast<int64_t>(idx[i]);
    bool ok = v >= 0 && v < rows;
    if (!ok) report_index_error(slot, OpId::embedding_backward, i, v, rows);
    keys[i] = static_cast<uint32_t>(ok ? v : rows);
    vals[i] = static_cast<int32_t>(i);
  }
}

// Block b handles sorted position b if it starts a run of equal keys: gw[key] = sum of gy rows of the run.
template <class T>
__global__ void embedding_accumulate_kernel(const uint32_t* keys, const int32_t* pos, const T* gy, T* gw, int64_t n,
                                            int64_t rows, int64_t C) {
  using A = acc_t<T>;
  int64_t b = blockIdx.x;
  uint32_t key = keys[b];
  if ((b > 0 && keys[b - 1] == key) || key >= rows) return;
  int64_t end = b + 1;
  while (end < n && keys[end] == key) ++end;
  for (int64_t col = threadIdx.x; col < C; col += blockDim.x) {
    A acc = A(0);
    for (int64_t j = b; j < end; ++j) acc += ld(gy + static_cast<int64_t>(pos[j]) * C + col);
    st(gw + static_cast<int64_t>(key) * C + col, acc);
  }
}

void embedding_backward_launch(const KernelCall& c) {
  Tensor gy = contiguous(c.input(0)), idx = contiguous(c.input(1));
  Tensor& gw = c.output(0);
  int64_t rows = gw.size(0), C = gw.size(1), n = idx.numel();
  int dev = current_device();
  fill(gw, 0.0);
  if (n == 0 || C == 0) return;
  MODU_CHECK(n < (int64_t(1) << 31) && rows < (int64_t(1) << 32) - 1, "embedding_backward: ", n, " indices into ",
             rows, " rows exceed the CUDA kernel's 32-bit limits");
  DeviceErrorSlot* slot = error_slot(dev);
  Device d = Device::cuda(dev);
  Tensor keys_in = Tensor::empty(Dims{n}, DType::I32, d), keys_out = Tensor::empty(Dims{n}, DType::I32, d);
  Tensor vals_in = Tensor::empty(Dims{n}, DType::I32, d), vals_out = Tensor::empty(Dims{n}, DType::I32, d);
  auto* k_in = static_cast<uint32_t*>(keys_in.data_ptr());
  auto* k_out = static_cast<uint32_t*>(keys_out.data_ptr());
  auto* v_in = static_cast<int32_t*>(vals_in.data_ptr());
  auto* v_out = static_cast<int32_t*>(vals_out.data_ptr());
  dispatch_index(idx.dtype(), "embedding_backward", [&](auto itag) {
    using I = decltype(itag);
    embedding_keys_kernel<I><<<grid_for(n), kThreads, 0, cur_stream()>>>(static_cast<const I*>(idx.data_ptr()), n,
                                                                         rows, k_in, v_in, slot);
    MODU_CUDA_LAUNCH_CHECK("embedding_backward (keys)");
  });
  int end_bit = 1;
  while (end_bit < 32 && (uint64_t(1) << end_bit) <= static_cast<uint64_t>(rows)) ++end_bit;
  size_t temp_bytes = 0;
  MODU_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, k_in, k_out, v_in, v_out, static_cast<int>(n), 0,
                                                  end_bit, cur_stream()));
  Tensor temp = Tensor::empty(Dims{static_cast<int64_t>(temp_bytes) + 1}, DType::U8, d);
  MODU_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.data_ptr(), temp_bytes, k_in, k_out, v_in, v_out,
                                                  static_cast<int>(n), 0, end_bit, cur_stream()));
  dispatch_floating(gy.dtype(), "embedding_backward", [&](auto tag) {
    using T = decltype(tag);
    int threads = C >= 256 ? 256 : (C >= 128 ? 128 : (C >= 64 ? 64 : 32));
    embedding_accumulate_kernel<T><<<static_cast<unsigned>(n), threads, 0, cur_stream()>>>(
        k_out, v_out, static_cast<const T*>(gy.data_ptr()), static_cast<T*>(gw.data_ptr()), n, rows, C);
    MODU_CUDA_LAUNCH_CHECK("embedding_backward");
  });
}

// ---- index_select / index_add ------------------------------------------------------------------------------------

template <class W, class I>
__global__ void index_select_kernel(const W* x, const I* idx, W* out, int64_t outer, int64_t n, int64_t inner,
                                    int64_t K, DeviceErrorSlot* slot) {
  int64_t total = outer * K * inner;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t i = e % inner, k = (e / inner) % K, o = e / (inner * K);
    int64_t v = static_cast<int64_t>(idx[k]);
    if (v >= 0 && v < n) {
      out[e] = x[(o * n + v) * inner + i];
    } else {
      out[e] = W(0);
      if (i == 0 && o == 0) report_index_error(slot, OpId::index_select, k, v, n);
    }
  }
}

void index_select_launch(const KernelCall& c) {
  Tensor x = contiguous(c.input(0)), idx = contiguous(c.input(1));
  Tensor& out = c.output(0);
  AroundDim a = around_dim(x.shape(), c.attrs.dim.dim);
  int64_t K = idx.numel(), total = a.outer * K * a.inner;
  if (total == 0) return;
  DeviceErrorSlot* slot = error_slot(current_device());
  dispatch_width(x.element_size(), "index_select", [&](auto wtag) {
    using W = decltype(wtag);
    dispatch_index(idx.dtype(), "index_select", [&](auto itag) {
      using I = decltype(itag);
      index_select_kernel<W, I><<<grid_for(total), kThreads, 0, cur_stream()>>>(
          static_cast<const W*>(x.data_ptr()), static_cast<const I*>(idx.data_ptr()), static_cast<W*>(out.data_ptr()),
          a.outer, a.n, a.inner, K, slot);
      MODU_CUDA_LAUNCH_CHECK("index_select");
    });
  });
}

template <class T, class I>
__global__ void index_add_kernel(T* out, const I* idx, const T* src, int64_t outer, int64_t n, int64_t inner, int64_t K,
                                 DeviceErrorSlot* slot) {
  using A = acc_t<T>;
  int64_t total = outer * inner;
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = e / inner, i = e % inner;
    for (int64_t k = 0; k < K; ++k) {
      int64_t v = static_cast<int64_t>(idx[k]);
      if (v < 0 || v >= n) {
        if (e == 0) report_index_error(slot, OpId::index_add, k, v, n);
        continue;
      }
      T* dst = out + (o * n + v) * inner + i;
      st(dst, static_cast<A>(ld(dst) + ld(src + (o * K + k) * inner + i)));
    }
  }
}

void index_add_launch(const KernelCall& c) {
  Tensor idx = contiguous(c.input(1)), src = contiguous(c.input(2));
  Tensor& out = c.output(0);
  copy_into(out, c.input(0));
  AroundDim a = around_dim(out.shape(), c.attrs.dim.dim);
  int64_t K = idx.numel();
  if (a.outer * a.inner == 0 || K == 0) return;
  DeviceErrorSlot* slot = error_slot(current_device());
  dispatch_all(out.dtype(), "index_add", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL("index_add: bool tensors cannot be added");
    } else {
      dispatch_index(idx.dtype(), "index_add", [&](auto itag) {
        using I = decltype(itag);
        index_add_kernel<T, I><<<grid_for(a.outer * a.inner), kThreads, 0, cur_stream()>>>(
            static_cast<T*>(out.data_ptr()), static_cast<const I*>(idx.data_ptr()), static_cast<const T*>(src.data_ptr()),
            a.outer, a.n, a.inner, K, slot);
        MODU_CUDA_LAUNCH_CHECK("index_add");
      });
    }
  });
}

// ---- gather / scatter_add ----------------------------------------------------------------------------------------

struct IndexGeom {
  int nd = 0, dim = 0;
  int64_t sizes[kMaxDims];        // the index tensor's shape
  int64_t idx_strides[kMaxDims];  // the index tensor's strides
  int64_t tgt_strides[kMaxDims];  // x's (gather) or out's (scatter_add) strides
  int64_t limit = 0;              // size of the target along dim
};

IndexGeom index_geom(const Tensor& idx, const Tensor& target, int dim) {
  IndexGeom g;
  g.nd = idx.dim();
  g.dim = dim;
  for (int d = 0; d < g.nd; ++d) {
    g.sizes[d] = idx.size(d);
    g.idx_strides[d] = idx.stride(d);
    g.tgt_strides[d] = target.stride(d);
  }
  g.limit = target.size(dim);
  return g;
}

template <class W, class I>
__global__ void gather_kernel(const W* x, const I* idx, W* out, int64_t total, IndexGeom g, DeviceErrorSlot* slot) {
  for (int64_t lin = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; lin < total;
       lin += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rem = lin, ioff = 0, xoff = 0;
    for (int d = g.nd - 1; d >= 0; --d) {
      int64_t cd = rem % g.sizes[d];
      rem /= g.sizes[d];
      ioff += cd * g.idx_strides[d];
      if (d != g.dim) xoff += cd * g.tgt_strides[d];
    }
    int64_t v = static_cast<int64_t>(idx[ioff]);
    if (v >= 0 && v < g.limit) {
      out[lin] = x[xoff + v * g.tgt_strides[g.dim]];
    } else {
      out[lin] = W(0);
      report_index_error(slot, OpId::gather, lin, v, g.limit);
    }
  }
}

void gather_launch(const KernelCall& c) {
  const Tensor &x = c.input(0), &idx = c.input(1);
  Tensor& out = c.output(0);
  int64_t total = idx.numel();
  if (total == 0) return;
  IndexGeom g = index_geom(idx, x, c.attrs.dim.dim);
  DeviceErrorSlot* slot = error_slot(current_device());
  dispatch_width(x.element_size(), "gather", [&](auto wtag) {
    using W = decltype(wtag);
    dispatch_index(idx.dtype(), "gather", [&](auto itag) {
      using I = decltype(itag);
      gather_kernel<W, I><<<grid_for(total), kThreads, 0, cur_stream()>>>(
          static_cast<const W*>(x.data_ptr()), static_cast<const I*>(idx.data_ptr()), static_cast<W*>(out.data_ptr()),
          total, g, slot);
      MODU_CUDA_LAUNCH_CHECK("gather");
    });
  });
}

// One thread per fiber of idx along dim; src is contiguous with idx's shape.
template <class T, class I>
__global__ void scatter_add_kernel(T* out, const I* idx, const T* src, int64_t fibers, IndexGeom g,
                                   DeviceErrorSlot* slot) {
  using A = acc_t<T>;
  int64_t len = g.sizes[g.dim];
  int64_t src_step = 1;  // row-major stride of dim in idx's shape
  for (int d = g.nd - 1; d > g.dim; --d) src_step *= g.sizes[d];
  for (int64_t f = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; f < fibers;
       f += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rem = f, ioff = 0, ooff = 0, lin = 0, mult = 1;
    for (int d = g.nd - 1; d >= 0; --d) {
      if (d == g.dim) {
        mult *= g.sizes[d];
        continue;
      }
      int64_t cd = rem % g.sizes[d];
      rem /= g.sizes[d];
      ioff += cd * g.idx_strides[d];
      ooff += cd * g.tgt_strides[d];
      lin += cd * mult;
      mult *= g.sizes[d];
    }
    for (int64_t j = 0; j < len; ++j) {
      int64_t v = static_cast<int64_t>(idx[ioff + j * g.idx_strides[g.dim]]);
      int64_t l = lin + j * src_step;
      if (v < 0 || v >= g.limit) {
        report_index_error(slot, OpId::scatter_add, l, v, g.limit);
        continue;
      }
      T* dst = out + ooff + v * g.tgt_strides[g.dim];
      st(dst, static_cast<A>(ld(dst) + ld(src + l)));
    }
  }
}

void scatter_add_launch(const KernelCall& c) {
  const Tensor& idx = c.input(1);
  Tensor src = contiguous(c.input(2));
  Tensor& out = c.output(0);
  copy_into(out, c.input(0));
  int dim = c.attrs.dim.dim;
  int64_t len = idx.size(dim);
  if (idx.numel() == 0 || len == 0) return;
  int64_t fibers = idx.numel() / len;
  IndexGeom g = index_geom(idx, out, dim);
  DeviceErrorSlot* slot = error_slot(current_device());
  dispatch_all(out.dtype(), "scatter_add", [&](auto tag) {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, bool>) {
      MODU_FAIL("scatter_add: bool tensors cannot be added");
    } else {
      dispatch_index(idx.dtype(), "scatter_add", [&](auto itag) {
        using I = decltype(itag);
        scatter_add_kernel<T, I><<<grid_for(fibers), kThreads, 0, cur_stream()>>>(
            static_cast<T*>(out.data_ptr()), static_cast<const I*>(idx.data_ptr()), static_cast<const T*>(src.data_ptr()),
            fibers, g, slot);
        MODU_CUDA_LAUNCH_CHECK("scatter_add");
      });
    }
  });
}

// ---- concat ----------------------------------------------------------------------------------------------------------

void concat_launch(const KernelCall& c) {
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
  const auto cuda = DeviceType::CUDA;
  r.set(cuda, OpId::embedding, guarded<embedding_launch>, kAllTypes);
  r.set(cuda, OpId::embedding_backward, guarded<embedding_backward_launch>, kFloatTypes);
  r.set(cuda, OpId::index_select, guarded<index_select_launch>, kAllTypes);
  r.set(cuda, OpId::index_add, guarded<index_add_launch>, kAllTypes);
  r.set(cuda, OpId::gather, guarded<gather_launch>, kAllTypes);
  r.set(cuda, OpId::scatter_add, guarded<scatter_add_launch>, kAllTypes);
  r.set(cuda, OpId::concat, guarded<concat_launch>, kAllTypes);
}

}  // namespace modu::cuda
