// core/cpu/nn.cpp — CPU kernels for softmax / log_softmax and their backward, fused cross-entropy
// (forward saves the row log-sum-exp; backward recomputes softmax from it, never storing probabilities),
// layer_norm, rms_norm and group_norm with their backward, and add_layer_norm (a residual add fused with the
// layer norm after it). The norms take an f32 input to a bf16/f16 output (and gradient) for mixed precision.
//
// Gradients: gx is written (=). Parameter gradients gw/gb of the norms are written too; the autograd
// engine accumulates them into .grad. Statistics (mean, rstd, lse) are kept in acc_t (f32 or f64).
#include "core/cpu/vector_math.h"  // first: before <cmath>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/layout.h"

namespace modu::cpu {

namespace {

void softmax_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0));
  Tensor& y = c.output(0);
  bool log_out = c.op == OpId::log_softmax;
  AroundDim A3 = around_dim(x.shape(), c.attrs.dim.dim);
  dispatch_floating(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(x.data_ptr());
    scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
    int64_t n = A3.n, inner = A3.inner;
    const int slots = max_threads();
    Scratch<A> scratch(static_cast<int64_t>(slots) * n);  // one row of n per thread
    parallel_for(A3.outer * inner, 4 * n, [&](int64_t b, int64_t e) {
      A* buf = scratch.data + static_cast<int64_t>(thread_slot(slots)) * n;
      for (int64_t r = b; r < e; ++r) {
        int64_t o = r / inner, i = r % inner;
        const scalar_t* p = in + o * n * inner + i;
        scalar_t* q = out + o * n * inner + i;
        A m = -std::numeric_limits<A>::infinity();
        for (int64_t j = 0; j < n; ++j) {
          buf[j] = load(p + j * inner);
          m = std::max(m, buf[j]);
        }
        if (m == -std::numeric_limits<A>::infinity()) m = 0;  // an all -inf row stays finite below
        A s = 0;
        for (int64_t j = 0; j < n; ++j) s += std::exp(buf[j] - m);
        if (log_out) {
          A lse = m + std::log(s);
          for (int64_t j = 0; j < n; ++j) store(q + j * inner, buf[j] - lse);
        } else {
          A inv = A(1) / s;
          for (int64_t j = 0; j < n; ++j) store(q + j * inner, std::exp(buf[j] - m) * inv);
        }
      }
    });
  });
}

void softmax_backward_kernel(const KernelCall& c) {
  Tensor y = as_contiguous(c.input(0)), gy = as_contiguous(c.input(1));
  Tensor& gx = c.output(0);
  bool from_log = c.op == OpId::log_softmax_backward;
  AroundDim A3 = around_dim(y.shape(), c.attrs.dim.dim);
  dispatch_floating(y.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* Y = static_cast<const scalar_t*>(y.data_ptr());
    const scalar_t* G = static_cast<const scalar_t*>(gy.data_ptr());
    scalar_t* O = static_cast<scalar_t*>(gx.data_ptr());
    int64_t n = A3.n, inner = A3.inner;
    parallel_for(A3.outer * inner, 4 * n, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        int64_t base = (r / inner) * n * inner + r % inner;
        A dot = 0;
        if (from_log) {  // gx = gy - softmax * sum(gy)
          for (int64_t j = 0; j < n; ++j) dot += load(G + base + j * inner);
          for (int64_t j = 0; j < n; ++j) {
            int64_t k = base + j * inner;
            store(O + k, load(G + k) - std::exp(load(Y + k)) * dot);
          }
        } else {  // gx = y * (gy - sum(gy * y))
          for (int64_t j = 0; j < n; ++j) dot += load(G + base + j * inner) * load(Y + base + j * inner);
          for (int64_t j = 0; j < n; ++j) {
            int64_t k = base + j * inner;
            store(O + k, load(Y + k) * (load(G + k) - dot));
          }
        }
      }
    });
  });
}

void cross_entropy_kernel(const KernelCall& c) {
  Tensor logits = as_contiguous(c.input(0)), target = as_contiguous(c.input(1));
  Tensor &loss = c.output(0), &lse_out = c.output(1);
  const CrossEntropyAttrs& a = c.attrs.cross_entropy;
  int64_t N = logits.size(0), V = logits.size(1);  // V: the row stride; Vc: the classes (the rest is padding)
  int64_t Vc = a.valid_classes > 0 ? a.valid_classes : V;
  dispatch_floating(logits.dtype(), "cross_entropy", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    dispatch_index(target.dtype(), "cross_entropy", [&](auto itag_) {
    using index_t = decltype(itag_);
      const scalar_t* L = static_cast<const scalar_t*>(logits.data_ptr());
      const index_t* T = static_cast<const index_t*>(target.data_ptr());
      A* lse = static_cast<A*>(lse_out.data_ptr());
      // Check every target first so a bad one is reported before any work.
      for (int64_t i = 0; i < N; ++i) {
        int64_t t = T[i];
        MODU_CHECK(t == a.ignore_index || (t >= 0 && t < Vc), "cross_entropy: target ", t, " at row ", i,
                   " is outside [0, ", Vc, ") and is not the ignore_index ", a.ignore_index);
      }
      Scratch<double> row_loss(N);
      std::fill(row_loss.data, row_loss.data + N, 0.0);
      parallel_for(N, 3 * V, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const scalar_t* p = L + i * V;
          A m = -std::numeric_limits<A>::infinity();
          for (int64_t j = 0; j < Vc; ++j) m = std::max(m, load(p + j));
          A s = 0;
#pragma omp simd reduction(+ : s)
          for (int64_t j = 0; j < Vc; ++j) s += std::exp(load(p + j) - m);
          lse[i] = m + std::log(s);
          int64_t t = T[i];
          if (t != a.ignore_index) row_loss[i] = static_cast<double>(lse[i] - load(p + t));
        }
      });
      double total = 0;
      int64_t counted = 0;
      for (int64_t i = 0; i < N; ++i)
        if (T[i] != a.ignore_index) total += row_loss[i], ++counted;
      double value = a.mean ? (counted ? total / static_cast<double>(counted) : NAN) : total;
      store(static_cast<scalar_t*>(loss.data_ptr()), static_cast<A>(value));
    });
  });
}

void cross_entropy_backward_kernel(const KernelCall& c) {
  Tensor logits = as_contiguous(c.input(0)), target = as_contiguous(c.input(1));
  Tensor lse_t = as_contiguous(c.input(2));
  double g = read_element(c.input(3), 0);
  Tensor& gl = c.output(0);
  const CrossEntropyAttrs& a = c.attrs.cross_entropy;
  int64_t N = logits.size(0), V = logits.size(1);
  int64_t Vc = a.valid_classes > 0 ? a.valid_classes : V;  // columns [Vc, V) are padding: gradient 0
  dispatch_floating(logits.dtype(), "cross_entropy_backward", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    dispatch_index(target.dtype(), "cross_entropy_backward", [&](auto itag_) {
    using index_t = decltype(itag_);
      const scalar_t* L = static_cast<const scalar_t*>(logits.data_ptr());
      const index_t* T = static_cast<const index_t*>(target.data_ptr());
      const A* lse = static_cast<const A*>(lse_t.data_ptr());
      scalar_t* G = static_cast<scalar_t*>(gl.data_ptr());
      int64_t counted = 0;
      for (int64_t i = 0; i < N; ++i) counted += T[i] != a.ignore_index;
      A scale = A(a.mean ? (counted ? g / static_cast<double>(counted) : 0.0) : g);
      parallel_for(N, 2 * V, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          const scalar_t* p = L + i * V;
          scalar_t* q = G + i * V;
          int64_t t = T[i];
          if (t == a.ignore_index) {
            for (int64_t j = 0; j < V; ++j) store(q + j, A(0));
            continue;
          }
          A l = lse[i];
          for (int64_t j = 0; j < Vc; ++j) store(q + j, std::exp(load(p + j) - l) * scale);
          for (int64_t j = Vc; j < V; ++j) store(q + j, A(0));
          store(q + t, load(q + t) - scale);
        }
      });
    });
  });
}

// Per-thread partial parameter gradients (threads, C), in scratch from the caching allocator.
template <class A>
struct ParamGradBuffers {
  int threads;
  int64_t C;
  Scratch<A> gw, gb;
  ParamGradBuffers(int64_t c) : threads(max_threads()), C(c), gw(threads * c), gb(threads * c) {
    std::fill(gw.data, gw.data + threads * c, A(0));
    std::fill(gb.data, gb.data + threads * c, A(0));
  }
  A* w(int t) { return gw.data + t * C; }
  A* b(int t) { return gb.data + t * C; }
  template <class T>
  void reduce_into(T* out_w, T* out_b) {
    for (int64_t k = 0; k < C; ++k) {
      A sw = 0, sb = 0;
      for (int t = 0; t < threads; ++t) sw += gw[t * C + k], sb += gb[t * C + k];
      if (out_w) store(out_w + k, sw);
      if (out_b) store(out_b + k, sb);
    }
  }
};

// The (x, r, y) storage types of the norms: all one floating type, or x f32 with r and y each f32, bf16 or f16
// (mixed precision; shape_rules' norm_y_dtype admits the same pairs). f(T{}, R{}, O{}).
template <class F>
void dispatch_norm_types(DType x, DType r, DType y, const char* name, F&& f) {
  if (r == x && y == x) return dispatch_floating(x, name, [&](auto t) { f(t, t, t); });
  auto half_or_f32 = [](DType t) { return t == DType::F32 || t == DType::BF16 || t == DType::F16; };
  MODU_CHECK(x == DType::F32 && half_or_f32(r) && half_or_f32(y), name, ": no kernel for input ", dtype_name(x),
             ", branch ", dtype_name(r), ", output ", dtype_name(y));
  auto with_y = [&](auto rr) {
    if (y == DType::F32)
      f(float{}, rr, float{});
    else if (y == DType::BF16)
      f(float{}, rr, bf16{});
    else
      f(float{}, rr, f16{});
  };
  if (r == DType::F32)
    with_y(float{});
  else if (r == DType::BF16)
    with_y(bf16{});
  else
    with_y(f16{});
}

// One row of layer norm (rms: no mean, no bias) of p (C) into q, statistics out.
template <class T, class O, class A>
inline void norm_row(const T* p, const T* W, const T* B, O* q, int64_t C, A eps, bool rms, A* mean_out, A* rstd_out) {
  A m = 0;
  if (!rms) {
#pragma omp simd reduction(+ : m)
    for (int64_t j = 0; j < C; ++j) m += load(p + j);
    m /= A(C);
  }
  A v = 0;
#pragma omp simd reduction(+ : v)
  for (int64_t j = 0; j < C; ++j) {
    A d = load(p + j) - m;
    v += d * d;
  }
  A rstd = A(1) / std::sqrt(v / A(C) + eps);
  if (mean_out) *mean_out = m;
  *rstd_out = rstd;
  if (rms) {
    for (int64_t j = 0; j < C; ++j) store(q + j, load(p + j) * rstd * load(W + j));
  } else {
    for (int64_t j = 0; j < C; ++j) store(q + j, (load(p + j) - m) * rstd * load(W + j) + load(B + j));
  }
}

// One row of the norm's backward: emit(j, gx_j) for the input gradient; gw/gb (C) accumulate this row's
// parameter gradients.
template <class T, class G, class A, class Emit>
inline void norm_row_backward(const G* g, const T* p, const T* W, A m, A rstd, int64_t C, bool rms, A* gw, A* gb,
                              Emit&& emit) {
  A sum_dyw = 0, sum_dyw_xhat = 0;
  for (int64_t j = 0; j < C; ++j) {
    A xhat = (load(p + j) - m) * rstd;
    A gj = load(g + j);
    A dyw = gj * load(W + j);
    sum_dyw += dyw;
    sum_dyw_xhat += dyw * xhat;
    gw[j] += gj * xhat;
    gb[j] += gj;
  }
  A mean_dyw = rms ? A(0) : sum_dyw / A(C), mean_dyw_xhat = sum_dyw_xhat / A(C);
  for (int64_t j = 0; j < C; ++j) {
    A xhat = (load(p + j) - m) * rstd;
    A dyw = load(g + j) * load(W + j);
    emit(j, rstd * (dyw - mean_dyw - xhat * mean_dyw_xhat));
  }
}

// layer_norm / rms_norm: y in attrs' y dtype (x's unless set). add_layer_norm: s = x + r first (rounded to x's
// type, and the norm taken of the rounded s, as the unfused ops would).
void layer_norm_kernel(const KernelCall& c) {
  const bool rms = c.op == OpId::rms_norm, fused = c.op == OpId::add_layer_norm;
  const int wi = fused ? 2 : 1;  // index of the weight
  Tensor x = as_contiguous(c.input(0)), r = fused ? as_contiguous(c.input(1)) : Tensor();
  Tensor w = as_contiguous(c.input(wi)), b = rms ? Tensor() : as_contiguous(c.input(wi + 1));
  Tensor& y = c.output(fused ? 1 : 0);
  const int stats = fused ? 2 : 1;  // first statistics output
  int64_t C = x.size(-1), rows = x.numel() / std::max<int64_t>(C, 1);
  double eps = c.attrs.norm.eps;
  dispatch_norm_types(
      x.dtype(), fused ? r.dtype() : x.dtype(), y.dtype(), op_name(c.op), [&](auto t_, auto r_, auto o_) {
        using T = decltype(t_);
        using R = decltype(r_);
        using O = decltype(o_);
        using A = acc_t<T>;
        const T* X = static_cast<const T*>(x.data_ptr());
        const R* RB = fused ? static_cast<const R*>(r.data_ptr()) : nullptr;
        T* S = fused ? static_cast<T*>(c.output(0).data_ptr()) : nullptr;
        const T* W = static_cast<const T*>(w.data_ptr());
        const T* B = rms ? nullptr : static_cast<const T*>(b.data_ptr());
        O* Y = static_cast<O*>(y.data_ptr());
        A* mean_out = rms ? nullptr : static_cast<A*>(c.output(stats).data_ptr());
        A* rstd_out = static_cast<A*>(c.output(rms ? stats : stats + 1).data_ptr());
        parallel_for(rows, (fused ? 6 : 4) * C, [&](int64_t r0, int64_t r1) {
          for (int64_t i = r0; i < r1; ++i) {
            const T* p = X + i * C;
            if (fused) {
              T* s = S + i * C;
              for (int64_t j = 0; j < C; ++j) store(s + j, load(p + j) + static_cast<A>(load(RB + i * C + j)));
              p = s;
            }
            norm_row(p, W, B, Y + i * C, C, A(eps), rms, mean_out ? mean_out + i : nullptr, rstd_out + i);
          }
        });
      });
}

// layer_norm_backward / rms_norm_backward: (gy, x, w, [mean], rstd) -> (gx, gw, [gb]).
// add_layer_norm_backward: (gs, gy, s, w, mean, rstd) -> (gx = gs + the norm's gradient, gr = the same in r's
// dtype, gw, gb).
void layer_norm_backward_kernel(const KernelCall& c) {
  const bool rms = c.op == OpId::rms_norm_backward, fused = c.op == OpId::add_layer_norm_backward;
  const int k = fused ? 1 : 0;  // inputs shift by one for the fused op's gs
  Tensor gs = fused ? as_contiguous(c.input(0)) : Tensor();
  Tensor gy = as_contiguous(c.input(k)), x = as_contiguous(c.input(k + 1)), w = as_contiguous(c.input(k + 2));
  Tensor mean_t = rms ? Tensor() : as_contiguous(c.input(k + 3));
  Tensor rstd_t = as_contiguous(c.input(rms ? k + 3 : k + 4));
  const int gwi = fused ? 2 : 1;  // output index of gw
  DType r_dtype = fused ? c.output(1).dtype() : x.dtype();
  int64_t C = x.size(-1), rows = x.numel() / std::max<int64_t>(C, 1);
  dispatch_norm_types(x.dtype(), r_dtype, gy.dtype(), op_name(c.op), [&](auto t_, auto r_, auto o_) {
    using T = decltype(t_);
    using R = decltype(r_);
    using G = decltype(o_);
    using A = acc_t<T>;
    const G* GY = static_cast<const G*>(gy.data_ptr());
    const T* GS = fused ? static_cast<const T*>(gs.data_ptr()) : nullptr;
    const T* X = static_cast<const T*>(x.data_ptr());
    const T* W = static_cast<const T*>(w.data_ptr());
    const A* MEAN = rms ? nullptr : static_cast<const A*>(mean_t.data_ptr());
    const A* RSTD = static_cast<const A*>(rstd_t.data_ptr());
    T* GX = static_cast<T*>(c.output(0).data_ptr());
    R* GR = fused ? static_cast<R*>(c.output(1).data_ptr()) : nullptr;
    ParamGradBuffers<A> pg(C);
    int nthreads = rows * C * 6 < kGrain ? 1 : pg.threads;
#pragma omp parallel num_threads(nthreads)
    {
      int tid = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t r0 = rows * tid / nt, r1 = rows * (tid + 1) / nt;
      for (int64_t i = r0; i < r1; ++i) {
        T* q = GX + i * C;
        A m = rms ? A(0) : MEAN[i];
        norm_row_backward(GY + i * C, X + i * C, W, m, RSTD[i], C, rms, pg.w(tid), pg.b(tid),
                          [&](int64_t j, A v) { store(q + j, v); });
        if (fused) {  // gs added to the stored (rounded) norm gradient in a second pass: the values of the separate
                      // ops (no multiply-add contraction across the two)
          const T* gsr = GS + i * C;
          R* gr = GR + i * C;
          for (int64_t j = 0; j < C; ++j) {
            A total = load(gsr + j) + load(q + j);
            store(q + j, total);
            store(gr + j, total);
          }
        }
      }
    }
    pg.reduce_into(static_cast<T*>(c.output(gwi).data_ptr()),
                   rms ? static_cast<T*>(nullptr) : static_cast<T*>(c.output(gwi + 1).data_ptr()));
  });
}

void group_norm_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0)), w = as_contiguous(c.input(1)), b = as_contiguous(c.input(2));
  int64_t N = x.size(0), C = x.size(1), G = c.attrs.norm.groups;
  int64_t S = x.numel() / std::max<int64_t>(N * C, 1), Cg = C / G, len = Cg * S;
  double eps = c.attrs.norm.eps;
  dispatch_floating(x.dtype(), "group_norm", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* X = static_cast<const scalar_t*>(x.data_ptr());
    const scalar_t* W = static_cast<const scalar_t*>(w.data_ptr());
    const scalar_t* B = static_cast<const scalar_t*>(b.data_ptr());
    scalar_t* Y = static_cast<scalar_t*>(c.output(0).data_ptr());
    A* MEAN = static_cast<A*>(c.output(1).data_ptr());
    A* RSTD = static_cast<A*>(c.output(2).data_ptr());
    parallel_for(N * G, 4 * len, [&](int64_t b0, int64_t b1) {
      for (int64_t ng = b0; ng < b1; ++ng) {
        const scalar_t* p = X + ng * len;
        A m = 0;
        for (int64_t k = 0; k < len; ++k) m += load(p + k);
        m /= A(len);
        A v = 0;
        for (int64_t k = 0; k < len; ++k) {
          A d = load(p + k) - m;
          v += d * d;
        }
        A rstd = A(1) / std::sqrt(v / A(len) + A(eps));
        MEAN[ng] = m;
        RSTD[ng] = rstd;
        int64_t g = ng % G;
        scalar_t* q = Y + ng * len;
        for (int64_t cc = 0; cc < Cg; ++cc) {
          int64_t ch = g * Cg + cc;
          A wc = load(W + ch), bc = load(B + ch);
          for (int64_t s = 0; s < S; ++s) {
            int64_t k = cc * S + s;
            store(q + k, (load(p + k) - m) * rstd * wc + bc);
          }
        }
      }
    });
  });
}

void group_norm_backward_kernel(const KernelCall& c) {
  Tensor gy = as_contiguous(c.input(0)), x = as_contiguous(c.input(1)), w = as_contiguous(c.input(2));
  Tensor mean_t = as_contiguous(c.input(3)), rstd_t = as_contiguous(c.input(4));
  int64_t N = x.size(0), C = x.size(1), G = c.attrs.norm.groups;
  int64_t S = x.numel() / std::max<int64_t>(N * C, 1), Cg = C / G, len = Cg * S;
  dispatch_floating(x.dtype(), "group_norm_backward", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* GY = static_cast<const scalar_t*>(gy.data_ptr());
    const scalar_t* X = static_cast<const scalar_t*>(x.data_ptr());
    const scalar_t* W = static_cast<const scalar_t*>(w.data_ptr());
    const A* MEAN = static_cast<const A*>(mean_t.data_ptr());
    const A* RSTD = static_cast<const A*>(rstd_t.data_ptr());
    scalar_t* GX = static_cast<scalar_t*>(c.output(0).data_ptr());
    // Parameter gradients: sequential over (n, g) blocks per channel (small); gx per block in parallel.
    Scratch<A> gw(C), gb(C);
    std::fill(gw.data, gw.data + C, A(0));
    std::fill(gb.data, gb.data + C, A(0));
    for (int64_t ng = 0; ng < N * G; ++ng) {
      int64_t g = ng % G;
      for (int64_t cc = 0; cc < Cg; ++cc) {
        int64_t ch = g * Cg + cc;
        for (int64_t s = 0; s < S; ++s) {
          int64_t k = ng * len + cc * S + s;
          A gj = load(GY + k);
          gw[ch] += gj * (load(X + k) - MEAN[ng]) * RSTD[ng];
          gb[ch] += gj;
        }
      }
    }
    parallel_for(N * G, 6 * len, [&](int64_t b0, int64_t b1) {
      for (int64_t ng = b0; ng < b1; ++ng) {
        int64_t g = ng % G;
        A m = MEAN[ng], rstd = RSTD[ng], sum_dyw = 0, sum_dyw_xhat = 0;
        for (int64_t cc = 0; cc < Cg; ++cc) {
          A wc = load(W + g * Cg + cc);
          for (int64_t s = 0; s < S; ++s) {
            int64_t k = ng * len + cc * S + s;
            A dyw = load(GY + k) * wc;
            sum_dyw += dyw;
            sum_dyw_xhat += dyw * (load(X + k) - m) * rstd;
          }
        }
        A mean_dyw = sum_dyw / A(len), mean_dyw_xhat = sum_dyw_xhat / A(len);
        for (int64_t cc = 0; cc < Cg; ++cc) {
          A wc = load(W + g * Cg + cc);
          for (int64_t s = 0; s < S; ++s) {
            int64_t k = ng * len + cc * S + s;
            A xhat = (load(X + k) - m) * rstd;
            store(GX + k, rstd * (load(GY + k) * wc - mean_dyw - xhat * mean_dyw_xhat));
          }
        }
      }
    });
    scalar_t* GW = static_cast<scalar_t*>(c.output(1).data_ptr());
    scalar_t* GB = static_cast<scalar_t*>(c.output(2).data_ptr());
    for (int64_t k = 0; k < C; ++k) store(GW + k, gw[k]), store(GB + k, gb[k]);
  });
}

}  // namespace

void register_nn_kernels(KernelRegistry& r) {
  for (OpId op : {OpId::softmax, OpId::log_softmax}) r.set(DeviceType::CPU, op, softmax_kernel, kFloatTypes);
  for (OpId op : {OpId::softmax_backward, OpId::log_softmax_backward})
    r.set(DeviceType::CPU, op, softmax_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::cross_entropy, cross_entropy_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::cross_entropy_backward, cross_entropy_backward_kernel, kFloatTypes);
  for (OpId op : {OpId::layer_norm, OpId::rms_norm, OpId::add_layer_norm})
    r.set(DeviceType::CPU, op, layer_norm_kernel, kFloatTypes);
  for (OpId op : {OpId::layer_norm_backward, OpId::rms_norm_backward, OpId::add_layer_norm_backward})
    r.set(DeviceType::CPU, op, layer_norm_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::group_norm, group_norm_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::group_norm_backward, group_norm_backward_kernel, kFloatTypes);
}

}  // namespace modu::cpu
