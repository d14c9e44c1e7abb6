// core/cpu/optim.cpp — the fused AdamW step (decoupled weight decay, Loshchilov & Hutter):
//   g = grad_scale grad  (clipping folded in: no separate pass over the gradients)
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p = p - lr (m / bc1) / (sqrt(v / bc2) + eps) - lr wd p
// in one pass over param, grad, m and v (all contiguous, same shape). m and v are f32 (or f64).
#include "core/cpu/vector_math.h"  // first: before <cmath>
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"

namespace modu::cpu {

namespace {

void adamw_kernel(const KernelCall& c) {
  Tensor& p = c.output(0);
  const Tensor &g = c.input(1), &m = c.input(2), &v = c.input(3);
  const AdamWAttrs& a = c.attrs.adamw;
  int64_t n = p.numel();
  dispatch_floating(p.dtype(), "adamw_", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using P = scalar_t;
    dispatch_floating(m.dtype(), "adamw_ moments", [&](auto tag_) {
    using scalar_t = decltype(tag_);
      using M = scalar_t;
      using A = acc_t<M>;
      P* P_ = static_cast<P*>(p.data_ptr());
      MODU_CHECK(g.dtype() == p.dtype(), "adamw_: gradient dtype ", dtype_name(g.dtype()), " differs from parameter ",
                 dtype_name(p.dtype()));
      const P* G = static_cast<const P*>(g.data_ptr());
      M* Mm = static_cast<M*>(m.data_ptr());
      M* Vv = static_cast<M*>(v.data_ptr());
      A b1 = A(a.beta1), b2 = A(a.beta2), lr = A(a.lr), eps = A(a.eps), decay = A(1 - a.lr * a.weight_decay);
      A inv_bc1 = A(1 / a.bias_correction1), inv_sqrt_bc2 = A(1 / std::sqrt(a.bias_correction2));
      A gscale = A(a.grad_scale);
      parallel_for(n, 8, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          A gi = A(load(G + i)) * gscale;
          A mi = b1 * A(load(Mm + i)) + (A(1) - b1) * gi;
          A vi = b2 * A(load(Vv + i)) + (A(1) - b2) * gi * gi;
          store(Mm + i, mi);
          store(Vv + i, vi);
          A pi = A(load(P_ + i)) * decay;
          store(P_ + i, pi - lr * (mi * inv_bc1) / (std::sqrt(vi) * inv_sqrt_bc2 + eps));
        }
      });
    });
  });
}

}  // namespace

void register_optim_kernels(KernelRegistry& r) { r.set(DeviceType::CPU, OpId::adamw_, adamw_kernel, kFloatTypes); }

}  // namespace modu::cpu
