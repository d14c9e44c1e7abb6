// core/cpu/attention.cpp — fused scaled-dot-product attention (forward saves the row log-sum-exp,
// backward recomputes the probabilities from it) and rotary position embedding.
//
// Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS). Causal attention aligns queries to the last T key
// positions: query i sees keys j <= i + (S - T), which also covers decoding with a KV cache (T < S).
// Per (b, h) head the scores are one GEMM into a per-thread (T, S) buffer; heads run in parallel with
// single-threaded GEMMs. 16-bit inputs are widened to f32. Gradients are written (=).
// attention_packed runs the same code on head views of the packed qkv (B, T, 3C) and of o (B, T, C)
// (core/ops/layout.h: packed_heads): outputs are written through their strides, so both ops give the same bits.
#include "core/cpu/vector_math.h"  // first: before <cmath>

#include <cmath>
#include <limits>

#include "core/cpu/blas.h"
#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/attention_packed.h"

namespace modu::cpu {

namespace {

// A (B, NH, L, HS) operand with unit last stride: pointer of head (b, h) and its row stride.
struct Heads {
  Tensor t;
  explicit Heads(const Tensor& x) : t(x.stride(3) == 1 ? x : contiguous_copy(x)) {}
  template <class T>
  T* head(int64_t b, int64_t h) const {
    return static_cast<T*>(t.data_ptr()) + b * t.stride(0) + h * t.stride(1);
  }
  int64_t ld() const { return t.stride(2); }
};

// An output (B, NH, L, HS) written in place through its strides (its last dim must be unit-stride).
struct OutHeads {
  Tensor t;
  explicit OutHeads(const Tensor& x) : t(x) {
    MODU_CHECK(x.size(3) <= 1 || x.stride(3) == 1, "attention: an output needs a unit-stride last dim, got ",
               describe(x));
  }
  template <class T>
  T* head(int64_t b, int64_t h) const {
    return static_cast<T*>(t.data_ptr()) + b * t.stride(0) + h * t.stride(1);
  }
  int64_t ld() const { return t.stride(2); }
};

Tensor widen(const Tensor& x) {
  if (x.dtype() == DType::F32 || x.dtype() == DType::F64) return x;
  Tensor f = Tensor::empty(x.shape(), DType::F32);
  copy_into(f, x);
  return f;
}

template <class T>
void attention_forward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, Tensor& o_out, Tensor& lse_out,
                       const AttentionAttrs& a) {
  Heads q(q_in), k(k_in), v(v_in);
  OutHeads o(o_out);
  int64_t B = q_in.size(0), NH = q_in.size(1), T_ = q_in.size(2), S = k_in.size(2), D = q_in.size(3);
  int64_t shift = S - T_;
  T* LSE = static_cast<T*>(lse_out.data_ptr());
  T scale = static_cast<T>(a.scale);
  const int slots = max_threads();
  Scratch<T> scratch(static_cast<int64_t>(slots) * T_ * S);  // one (T, S) score block per thread
  parallel_for(B * NH, 4 * T_ * S * D, [&](int64_t h0, int64_t h1) {
    T* P = scratch.data + static_cast<int64_t>(thread_slot(slots)) * T_ * S;
    for (int64_t bh = h0; bh < h1; ++bh) {
      int64_t b = bh / NH, h = bh % NH;
      gemm(false, true, T_, S, D, scale, q.head<T>(b, h), q.ld(), k.head<T>(b, h), k.ld(), T(0), P, S);
      for (int64_t i = 0; i < T_; ++i) {
        T* row = P + i * S;
        int64_t valid = a.causal ? std::min<int64_t>(S, i + shift + 1) : S;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < valid; ++j) m = std::max(m, row[j]);
        T s = 0;
        for (int64_t j = 0; j < valid; ++j) {
          row[j] = std::exp(row[j] - m);
          s += row[j];
        }
        T inv = T(1) / s;
        for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
        for (int64_t j = valid; j < S; ++j) row[j] = 0;
        LSE[bh * T_ + i] = m + std::log(s);
      }
      gemm(false, false, T_, D, S, T(1), P, S, v.head<T>(b, h), v.ld(), T(0), o.head<T>(b, h), o.ld());
    }
  });
}

template <class T>
void attention_backward(const Tensor& q_in, const Tensor& k_in, const Tensor& v_in, const Tensor& o_in,
                        const Tensor& lse_in, const Tensor& go_in, Tensor& gq_out, Tensor& gk_out, Tensor& gv_out,
                        const AttentionAttrs& a) {
  Heads q(q_in), k(k_in), v(v_in), o(o_in), go(go_in);
  OutHeads gq(gq_out), gk(gk_out), gv(gv_out);
  Tensor lse_c = as_contiguous(lse_in);
  const T* LSE = static_cast<const T*>(lse_c.data_ptr());
  int64_t B = q_in.size(0), NH = q_in.size(1), T_ = q_in.size(2), S = k_in.size(2), D = q_in.size(3);
  int64_t shift = S - T_;
  T scale = static_cast<T>(a.scale);
  // Per thread: P and dP (T, S) and the row dots D (T).
  const int64_t per_thread = 2 * T_ * S + T_;
  const int slots = max_threads();
  Scratch<T> scratch(static_cast<int64_t>(slots) * per_thread);
  parallel_for(B * NH, 8 * T_ * S * D, [&](int64_t h0, int64_t h1) {
    T* P = scratch.data + static_cast<int64_t>(thread_slot(slots)) * per_thread;
    T* dP = P + T_ * S;
    T* Drow = dP + T_ * S;
    for (int64_t bh = h0; bh < h1; ++bh) {
      int64_t b = bh / NH, h = bh % NH;
      const T* Q = q.head<T>(b, h);
      const T* K = k.head<T>(b, h);
      const T* V = v.head<T>(b, h);
      const T* Oh = o.head<T>(b, h);
      const T* dO = go.head<T>(b, h);
      // P = softmax(scale Q K^T) rebuilt from the saved log-sum-exp.
      gemm(false, true, T_, S, D, scale, Q, q.ld(), K, k.ld(), T(0), P, S);
      for (int64_t i = 0; i < T_; ++i) {
        int64_t valid = a.causal ? std::min<int64_t>(S, i + shift + 1) : S;
        T l = LSE[bh * T_ + i];
        T* row = P + i * S;
        for (int64_t j = 0; j < valid; ++j) row[j] = std::exp(row[j] - l);
        for (int64_t j = valid; j < S; ++j) row[j] = 0;
        T d = 0;
        for (int64_t x = 0; x < D; ++x) d += dO[i * go.ld() + x] * Oh[i * o.ld() + x];
        Drow[i] = d;
      }
      // dV = P^T dO
      gemm(true, false, S, D, T_, T(1), P, S, dO, go.ld(), T(0), gv.head<T>(b, h), gv.ld());
      // dP = dO V^T, then dS = P * (dP - D) (scale folded into the next products)
      gemm(false, true, T_, S, D, T(1), dO, go.ld(), V, v.ld(), T(0), dP, S);
      for (int64_t i = 0; i < T_; ++i) {
        T d = Drow[i];
        for (int64_t j = 0; j < S; ++j) dP[i * S + j] = P[i * S + j] * (dP[i * S + j] - d);
      }
      gemm(false, false, T_, D, S, scale, dP, S, K, k.ld(), T(0), gq.head<T>(b, h), gq.ld());
      gemm(true, false, S, D, T_, scale, dP, S, Q, q.ld(), T(0), gk.head<T>(b, h), gk.ld());
    }
  });
}

// o (and lse) of q, k, v; o may be a strided view (attention_packed's).
void forward_any(const Tensor& q, const Tensor& k, const Tensor& v, Tensor& o, Tensor& lse, const AttentionAttrs& a) {
  if (q.dtype() == DType::F64) return attention_forward<double>(q, k, v, o, lse, a);
  if (q.dtype() == DType::F32) return attention_forward<float>(q, k, v, o, lse, a);
  Tensor o32 = Tensor::empty(o.shape(), DType::F32);
  attention_forward<float>(widen(q), widen(k), widen(v), o32, lse, a);
  copy_into(o, o32);
}

// gq, gk, gv (=) of q, k, v; they may be strided views (attention_packed_backward's).
void backward_any(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o, const Tensor& lse,
                  const Tensor& go, Tensor& gq, Tensor& gk, Tensor& gv, const AttentionAttrs& a) {
  DType dt = q.dtype();
  if (dt == DType::F64) return attention_backward<double>(q, k, v, o, lse, go, gq, gk, gv, a);
  if (dt == DType::F32) return attention_backward<float>(q, k, v, o, lse, go, gq, gk, gv, a);
  Tensor gq32 = Tensor::empty(gq.shape(), DType::F32), gk32 = Tensor::empty(gk.shape(), DType::F32),
         gv32 = Tensor::empty(gv.shape(), DType::F32);
  attention_backward<float>(widen(q), widen(k), widen(v), widen(o), lse, widen(go), gq32, gk32, gv32, a);
  copy_into(gq, gq32);
  copy_into(gk, gk32);
  copy_into(gv, gv32);
}

void attention_kernel(const KernelCall& c) {
  forward_any(c.input(0), c.input(1), c.input(2), c.output(0), c.output(1), c.attrs.attention);
}

void attention_backward_kernel(const KernelCall& c) {
  backward_any(c.input(0), c.input(1), c.input(2), c.input(3), c.input(4), c.input(5), c.output(0), c.output(1),
               c.output(2), c.attrs.attention);
}

void attention_packed_kernel(const KernelCall& c) { run_attention_packed(c, contiguous_copy, forward_any); }

void attention_packed_backward_kernel(const KernelCall& c) {
  run_attention_packed_backward(c, contiguous_copy, backward_any);
}

void rotary_kernel(const KernelCall& c) {
  Tensor x = as_contiguous(c.input(0)), cs = as_contiguous(c.input(1)), sn = as_contiguous(c.input(2));
  Tensor& y = c.output(0);
  int64_t B = x.size(0), T_ = x.size(1), NH = x.size(2), D = x.size(3), half = D / 2;
  double sign = c.attrs.rotary.inverse ? -1.0 : 1.0;
  dispatch_floating(x.dtype(), "rotary", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* X = static_cast<const scalar_t*>(x.data_ptr());
    const scalar_t* CS = static_cast<const scalar_t*>(cs.data_ptr());
    const scalar_t* SN = static_cast<const scalar_t*>(sn.data_ptr());
    scalar_t* Y = static_cast<scalar_t*>(y.data_ptr());
    A sg = static_cast<A>(sign);
    parallel_for(B * T_ * NH, 4 * D, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t t = (r / NH) % T_;
        const scalar_t* p = X + r * D;
        scalar_t* q = Y + r * D;
        for (int64_t i = 0; i < half; ++i) {
          A co = load(CS + t * half + i), si = sg * load(SN + t * half + i);
          A x1 = load(p + i), x2 = load(p + i + half);
          store(q + i, x1 * co - x2 * si);
          store(q + i + half, x2 * co + x1 * si);
        }
      }
    });
  });
}

}  // namespace

void register_attention_kernels(KernelRegistry& r) {
  r.set(DeviceType::CPU, OpId::attention, attention_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::attention_backward, attention_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::attention_packed, attention_packed_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::attention_packed_backward, attention_packed_backward_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::rotary, rotary_kernel, kFloatTypes);
}

}  // namespace modu::cpu
