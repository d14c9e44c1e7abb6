// core/cpu/elementwise.cpp — CPU kernels of the elementwise ops: unary math, scalar ops, binary ops
// with broadcasting, fused activation derivatives, comparisons, where / masked_fill, casts and copies,
// in-place updates, factories, dropout and clamp. All outputs are written (=), never accumulated,
// except add_ which accumulates by definition.
#include "core/cpu/vector_math.h"  // first: before <cmath>
#include <cmath>

#include "core/cpu/kernels.h"
#include "core/cpu/map.h"
#include "core/rng.h"

namespace modu::cpu {

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <class A> inline A sigmoid_of(A x) { return A(1) / (A(1) + std::exp(-x)); }

template <class A> inline A gelu_tanh_of(A x) {
  A u = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  return A(0.5) * x * (A(1) + std::tanh(u));
}
template <class A> inline A gelu_tanh_grad(A x) {
  A x2 = x * x;
  A u = A(kSqrt2OverPi) * (x + A(0.044715) * x2 * x);
  A t = std::tanh(u);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * A(kSqrt2OverPi) * (A(1) + A(3 * 0.044715) * x2);
}
template <class A> inline A gelu_erf_grad(A x) {
  return A(0.5) * (A(1) + std::erf(x * A(kInvSqrt2))) + x * std::exp(A(-0.5) * x * x) * A(kInvSqrt2Pi);
}

template <class A> inline A pow_scalar_of(A x, A e) {
  if (e == A(2)) return x * x;
  if (e == A(1)) return x;
  if (e == A(0.5)) return std::sqrt(x);
  if (e == A(-1)) return A(1) / x;
  return std::pow(x, e);
}

void unary_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    if constexpr (std::is_floating_point_v<A>) {
      auto run = [&](auto f, int64_t cost = 1) { map<scalar_t, scalar_t>(y, f, x, cost); };
      const double v = c.attrs.scalar.value;
      switch (c.op) {
        case OpId::neg: return run([](A a) { return -a; });
        case OpId::exp: return run([](A a) { return std::exp(a); }, 8);
        case OpId::log: return run([](A a) { return std::log(a); }, 8);
        case OpId::sqrt: return run([](A a) { return std::sqrt(a); }, 4);
        case OpId::rsqrt: return run([](A a) { return A(1) / std::sqrt(a); }, 4);
        case OpId::abs: return run([](A a) { return std::abs(a); });
        case OpId::sign: return run([](A a) { return A((a > A(0)) - (a < A(0))); });
        case OpId::sin: return run([](A a) { return std::sin(a); }, 8);
        case OpId::cos: return run([](A a) { return std::cos(a); }, 8);
        case OpId::tanh: return run([](A a) { return std::tanh(a); }, 8);
        case OpId::sigmoid: return run([](A a) { return sigmoid_of(a); }, 8);
        case OpId::log_sigmoid:
          return run([](A a) { return std::min(a, A(0)) - std::log1p(std::exp(-std::abs(a))); }, 16);
        case OpId::relu: return run([](A a) { return a <= A(0) ? A(0) : a; });  // NaN stays NaN
        case OpId::silu: return run([](A a) { return a * sigmoid_of(a); }, 8);
        case OpId::gelu_tanh: return run([](A a) { return gelu_tanh_of(a); }, 12);
        case OpId::gelu_erf: return run([](A a) { return A(0.5) * a * (A(1) + std::erf(a * A(kInvSqrt2))); }, 12);
        case OpId::add_scalar: return run([s = A(v)](A a) { return a + s; });
        case OpId::mul_scalar: return run([s = A(v)](A a) { return a * s; });
        case OpId::pow_scalar: return run([e = A(v)](A a) { return pow_scalar_of(a, e); }, 8);
        case OpId::clamp:
          return run([lo = A(c.attrs.clamp.lo), hi = A(c.attrs.clamp.hi)](A a) {
            return a < lo ? lo : (a > hi ? hi : a);
          });
        default: break;
      }
    } else if constexpr (!std::is_same_v<scalar_t, bool>) {
      auto run = [&](auto f) { map<scalar_t, scalar_t>(y, f, x); };
      const A v = static_cast<A>(c.attrs.scalar.value);
      switch (c.op) {
        case OpId::neg: return run([](A a) { return A(-a); });
        case OpId::abs: return run([](A a) { return a < 0 ? A(-a) : a; });
        case OpId::sign: return run([](A a) { return A((a > 0) - (a < 0)); });
        case OpId::add_scalar: return run([v](A a) { return A(a + v); });
        case OpId::mul_scalar: return run([v](A a) { return A(a * v); });
        case OpId::clamp:
          return run([lo = A(c.attrs.clamp.lo), hi = A(c.attrs.clamp.hi)](A a) {
            return a < lo ? lo : (a > hi ? hi : a);
          });
        default: break;
      }
    }
    MODU_FAIL(op_name(c.op), ": no CPU kernel for ", dtype_name(x.dtype()));
  });
}

void binary_kernel(const KernelCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  Tensor& y = c.output(0);
  dispatch_all(a.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    if constexpr (!std::is_same_v<scalar_t, bool>) {
      auto run = [&](auto f, int64_t cost = 1) { map<scalar_t, scalar_t, scalar_t>(y, f, a, b, cost); };
      switch (c.op) {
        case OpId::add: return run([](A p, A q) { return A(p + q); });
        case OpId::sub: return run([](A p, A q) { return A(p - q); });
        case OpId::mul: return run([](A p, A q) { return A(p * q); });
        case OpId::maximum:
          return run([](A p, A q) { return (p != p || p > q) ? p : q; });  // NaN propagates
        case OpId::minimum:
          return run([](A p, A q) { return (p != p || p < q) ? p : q; });
        default: break;
      }
      if constexpr (std::is_floating_point_v<A>) {
        switch (c.op) {
          case OpId::div: return run([](A p, A q) { return p / q; });
          case OpId::pow: return run([](A p, A q) { return std::pow(p, q); }, 8);
          case OpId::sigmoid_backward: return run([](A s, A g) { return g * s * (A(1) - s); });
          case OpId::tanh_backward: return run([](A t, A g) { return g * (A(1) - t * t); });
          case OpId::relu_backward: return run([](A x, A g) { return x <= A(0) ? A(0) : g; });
          case OpId::silu_backward:
            return run([](A x, A g) {
              A s = sigmoid_of(x);
              return g * s * (A(1) + x * (A(1) - s));
            }, 8);
          case OpId::gelu_tanh_backward: return run([](A x, A g) { return g * gelu_tanh_grad(x); }, 12);
          case OpId::gelu_erf_backward: return run([](A x, A g) { return g * gelu_erf_grad(x); }, 12);
          case OpId::log_sigmoid_backward: return run([](A x, A g) { return g / (A(1) + std::exp(x)); }, 8);
          default: break;
        }
      }
    }
    MODU_FAIL(op_name(c.op), ": no CPU kernel for ", dtype_name(a.dtype()));
  });
}

void compare_kernel(const KernelCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  Tensor& y = c.output(0);
  dispatch_all(a.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    auto run = [&](auto f) { map<bool, scalar_t, scalar_t>(y, f, a, b); };
    switch (c.op) {
      case OpId::eq: return run([](A p, A q) { return p == q; });
      case OpId::ne: return run([](A p, A q) { return p != q; });
      case OpId::lt: return run([](A p, A q) { return p < q; });
      case OpId::le: return run([](A p, A q) { return p <= q; });
      case OpId::gt: return run([](A p, A q) { return p > q; });
      case OpId::ge: return run([](A p, A q) { return p >= q; });
      default: MODU_FAIL(op_name(c.op), ": not a comparison");
    }
  });
}

void where_kernel(const KernelCall& c) {
  dispatch_all(c.input(1).dtype(), "where", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    map<scalar_t, bool, scalar_t, scalar_t>(c.output(0), [](bool m, A p, A q) { return m ? p : q; }, c.input(0),
                                            c.input(1), c.input(2));
  });
}

void masked_fill_kernel(const KernelCall& c) {
  dispatch_all(c.input(0).dtype(), "masked_fill", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    A v = static_cast<A>(c.attrs.scalar.value);
    map<scalar_t, scalar_t, bool>(c.output(0), [v](A x, bool m) { return m ? v : x; }, c.input(0), c.input(1));
  });
}

// dst (type TD) <- src (type TS), broadcasting src.
template <class TD>
void convert_into(Tensor& dst, const Tensor& src) {
  dispatch_all(src.dtype(), "copy", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    if constexpr (std::is_same_v<TD, scalar_t>) {
      if (dst.is_contiguous() && src.is_contiguous() && dst.shape() == src.shape()) {
        if (dst.nbytes() > 0) std::memcpy(dst.data_ptr(), src.data_ptr(), dst.nbytes());  // empty: null pointers
        return;
      }
      map<TD, scalar_t>(dst, [](auto v) { return v; }, src);
    } else if constexpr (std::is_same_v<TD, bool>) {
      map<TD, scalar_t>(dst, [](auto v) { return v != decltype(v)(0); }, src);
    } else {
      map<TD, scalar_t>(dst, [](auto v) { return static_cast<acc_t<TD>>(v); }, src);
    }
  });
}

void convert_kernel(const KernelCall& c) {
  // cast, copy, to_device (CPU -> CPU) write output 0; copy_ writes input 0 (== output 0).
  const Tensor& src = c.op == OpId::copy_ ? c.input(1) : c.input(0);
  Tensor& dst = c.output(0);
  dispatch_all(dst.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_); convert_into<scalar_t>(dst, src); });
}

void fill_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  double v = c.op == OpId::full ? c.attrs.factory.a : c.attrs.scalar.value;
  dispatch_all(dst.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    A value = static_cast<A>(v);
    if (dst.is_contiguous()) {
      scalar_t s;
      store(&s, value);
      scalar_t* p = static_cast<scalar_t*>(dst.data_ptr());
      parallel_for(dst.numel(), 1, [&](int64_t b, int64_t e) { std::fill(p + b, p + e, s); });
    } else {
      map<scalar_t, scalar_t>(dst, [value](A) { return value; }, dst);
    }
  });
}

void arange_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  double start = c.attrs.factory.a, step = c.attrs.factory.b;
  dispatch_all(dst.dtype(), "arange", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    scalar_t* p = static_cast<scalar_t*>(dst.data_ptr());
    for (int64_t i = 0; i < dst.numel(); ++i)
      store(p + i, static_cast<acc_t<scalar_t>>(start + step * static_cast<double>(i)));
  });
}

void add_inplace_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  const Tensor& src = c.input(1);
  dispatch_all(dst.dtype(), "add_", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    if constexpr (!std::is_same_v<scalar_t, bool>) {
      A alpha = static_cast<A>(c.attrs.scalar.value);
      if (alpha == A(1)) map<scalar_t, scalar_t, scalar_t>(dst, [](A d, A s) { return A(d + s); }, dst, src);
      else map<scalar_t, scalar_t, scalar_t>(dst, [alpha](A d, A s) { return A(d + alpha * s); }, dst, src);
    } else {
      MODU_FAIL("add_: bool tensors cannot be added");
    }
  });
}

void mul_scalar_inplace_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  dispatch_floating(dst.dtype(), "mul_scalar_", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    A v = static_cast<A>(c.attrs.scalar.value);
    map<scalar_t, scalar_t>(dst, [v](A d) { return d * v; }, dst);
  });
}

void random_kernel(const KernelCall& c) {
  Tensor& dst = c.output(0);
  const FactoryAttrs& f = c.attrs.factory;
  int64_t n = dst.numel();
  dispatch_floating(dst.dtype(), op_name(c.op), [&](auto tag_) {
    using scalar_t = decltype(tag_);
    scalar_t* p = static_cast<scalar_t*>(dst.data_ptr());
    if (c.op == OpId::uniform) {
      double lo = f.a, span = f.b - f.a;
      parallel_for((n + 3) / 4, 16, [&](int64_t b, int64_t e) {
        for (int64_t blk = b; blk < e; ++blk) {
          Philox4x32 r = philox4x32_10(f.counter + static_cast<uint64_t>(blk), f.key);
          for (int k = 0; k < 4 && blk * 4 + k < n; ++k)
            store(p + blk * 4 + k, lo + span * static_cast<double>(philox_uniform_from_word(r.w[k])));
        }
      });
    } else {
      double mean = f.a, sd = f.b;
      parallel_for((n + 1) / 2, 32, [&](int64_t b, int64_t e) {
        for (int64_t blk = b; blk < e; ++blk) {
          Philox4x32 r = philox4x32_10(f.counter + static_cast<uint64_t>(blk), f.key);
          float u1 = philox_uniform_from_word(r.w[0]), u2 = philox_uniform_from_word(r.w[1]);
          float rad = std::sqrt(-2.0f * std::log(u1));
          float th = 6.28318530717958647692f * u2;
          store(p + blk * 2, mean + sd * static_cast<double>(rad * std::cos(th)));
          if (blk * 2 + 1 < n) store(p + blk * 2 + 1, mean + sd * static_cast<double>(rad * std::sin(th)));
        }
      });
    }
  });
}

void dropout_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  const DropoutAttrs& d = c.attrs.dropout;
  Tensor xc = x.contiguous();
  int64_t n = x.numel();
  dispatch_floating(x.dtype(), "dropout", [&](auto tag_) {
    using scalar_t = decltype(tag_);
    using A = acc_t<scalar_t>;
    const scalar_t* in = static_cast<const scalar_t*>(xc.data_ptr());
    scalar_t* out = static_cast<scalar_t*>(y.data_ptr());
    A scale = A(1.0 / (1.0 - d.p));
    float p = static_cast<float>(d.p);
    parallel_for((n + 3) / 4, 16, [&](int64_t b, int64_t e) {
      for (int64_t blk = b; blk < e; ++blk) {
        Philox4x32 r = philox4x32_10(d.counter + static_cast<uint64_t>(blk), d.key);
        for (int k = 0; k < 4 && blk * 4 + k < n; ++k) {
          int64_t i = blk * 4 + k;
          bool keep = philox_uniform_from_word(r.w[k]) >= p;
          store(out + i, keep ? load(in + i) * scale : A(0));
        }
      }
    });
  });
}

}  // namespace

void copy_into(Tensor& dst, const Tensor& src) {
  dispatch_all(dst.dtype(), "copy_into", [&](auto tag_) {
    using scalar_t = decltype(tag_); convert_into<scalar_t>(dst, src); });
}

Tensor contiguous_copy(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), t.dtype(), t.device());
  dispatch_all(t.dtype(), "contiguous_copy", [&](auto tag_) {
    using scalar_t = decltype(tag_); convert_into<scalar_t>(out, t); });
  return out;
}

void register_elementwise_kernels(KernelRegistry& r) {
  constexpr DTypeSet kSigned{DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64};
  constexpr DTypeSet kNumeric{DType::F32, DType::F64, DType::BF16, DType::F16,
                              DType::I32, DType::I64, DType::U8};
  for (OpId op : {OpId::exp, OpId::log, OpId::sqrt, OpId::rsqrt, OpId::sin, OpId::cos, OpId::tanh,
                  OpId::sigmoid, OpId::log_sigmoid, OpId::relu, OpId::silu, OpId::gelu_tanh, OpId::gelu_erf,
                  OpId::pow_scalar})
    r.set(DeviceType::CPU, op, unary_kernel, kFloatTypes);
  for (OpId op : {OpId::neg, OpId::abs, OpId::sign}) r.set(DeviceType::CPU, op, unary_kernel, kSigned);
  for (OpId op : {OpId::add_scalar, OpId::mul_scalar, OpId::clamp})
    r.set(DeviceType::CPU, op, unary_kernel, kNumeric);
  for (OpId op : {OpId::add, OpId::sub, OpId::mul, OpId::maximum, OpId::minimum})
    r.set(DeviceType::CPU, op, binary_kernel, kNumeric);
  for (OpId op : {OpId::div, OpId::pow, OpId::sigmoid_backward, OpId::tanh_backward, OpId::relu_backward,
                  OpId::silu_backward, OpId::gelu_tanh_backward, OpId::gelu_erf_backward,
                  OpId::log_sigmoid_backward})
    r.set(DeviceType::CPU, op, binary_kernel, kFloatTypes);
  for (OpId op : {OpId::eq, OpId::ne, OpId::lt, OpId::le, OpId::gt, OpId::ge})
    r.set(DeviceType::CPU, op, compare_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::where, where_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::masked_fill, masked_fill_kernel, kAllTypes);
  for (OpId op : {OpId::cast, OpId::copy, OpId::to_device, OpId::copy_})
    r.set(DeviceType::CPU, op, convert_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::fill_, fill_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::full, fill_kernel, kAllTypes);
  r.set(DeviceType::CPU, OpId::arange, arange_kernel, kNumeric);
  r.set(DeviceType::CPU, OpId::add_, add_inplace_kernel, kNumeric);
  r.set(DeviceType::CPU, OpId::mul_scalar_, mul_scalar_inplace_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::uniform, random_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::normal, random_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::dropout, dropout_kernel, kFloatTypes);
}

}  // namespace modu::cpu
