// core/cuda/elementwise.cu — CUDA kernels of the elementwise ops: unary math, scalar ops and clamp,
// binary ops with numpy broadcasting, fused activation derivatives, comparisons, where and masked_fill.
//
// Every op runs through launch_map (core/cuda/common.cuh): a contiguous path with 16-byte vector loads
// when all operands are contiguous with the output's shape, a strided path (offset calculator, up to 8
// dims, broadcast dims have stride 0) otherwise. One kernel per dtype holds a switch over the op (uniform
// per launch), which keeps compile time and binary size down. Formulas and their edge cases (NaN in
// maximum/minimum, relu of NaN, sign of 0) follow core/cpu/elementwise.cpp exactly; outputs are written.
#include "core/cuda/common.cuh"

namespace modu::cuda {

namespace {

constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.39894228040143267794;

template <class A>
__device__ __forceinline__ A sigmoid_of(A x) {
  return A(1) / (A(1) + m_exp(-x));
}
template <class A>
__device__ __forceinline__ A gelu_tanh_of(A x) {
  A u = A(kSqrt2OverPi) * (x + A(0.044715) * x * x * x);
  return A(0.5) * x * (A(1) + m_tanh(u));
}
template <class A>
__device__ __forceinline__ A gelu_tanh_grad(A x) {
  A x2 = x * x;
  A u = A(kSqrt2OverPi) * (x + A(0.044715) * x2 * x);
  A t = m_tanh(u);
  return A(0.5) * (A(1) + t) + A(0.5) * x * (A(1) - t * t) * A(kSqrt2OverPi) * (A(1) + A(3 * 0.044715) * x2);
}
template <class A>
__device__ __forceinline__ A gelu_erf_grad(A x) {
  return A(0.5) * (A(1) + m_erf(x * A(kInvSqrt2))) + x * m_exp(A(-0.5) * x * x) * A(kInvSqrt2Pi);
}
template <class A>
__device__ __forceinline__ A pow_scalar_of(A x, A e) {
  if (e == A(2)) return x * x;
  if (e == A(1)) return x;
  if (e == A(0.5)) return m_sqrt(x);
  if (e == A(-1)) return A(1) / x;
  return m_pow(x, e);
}

// Floating unary ops (s0: the scalar, or clamp's lo; s1: clamp's hi).
template <class A>
struct UnaryF {
  OpId op;
  A s0, s1;
  __device__ __forceinline__ A operator()(A a) const {
    switch (op) {
      case OpId::neg: return -a;
      case OpId::exp: return m_exp(a);
      case OpId::log: return m_log(a);
      case OpId::sqrt: return m_sqrt(a);
      case OpId::rsqrt: return A(1) / m_sqrt(a);
      case OpId::abs: return m_fabs(a);
      case OpId::sign: return A((a > A(0)) - (a < A(0)));
      case OpId::sin: return m_sin(a);
      case OpId::cos: return m_cos(a);
      case OpId::tanh: return m_tanh(a);
      case OpId::sigmoid: return sigmoid_of(a);
      case OpId::log_sigmoid: {
        A lo = A(0) < a ? A(0) : a;  // std::min(a, 0) with its NaN behaviour
        return lo - m_log1p(m_exp(-m_fabs(a)));
      }
      case OpId::relu: return a <= A(0) ? A(0) : a;  // NaN stays NaN, as on the CPU
      case OpId::silu: return a * sigmoid_of(a);
      case OpId::gelu_tanh: return gelu_tanh_of(a);
      case OpId::gelu_erf: return A(0.5) * a * (A(1) + m_erf(a * A(kInvSqrt2)));
      case OpId::add_scalar: return a + s0;
      case OpId::mul_scalar: return a * s0;
      case OpId::pow_scalar: return pow_scalar_of(a, s0);
      case OpId::clamp: return a < s0 ? s0 : (a > s1 ? s1 : a);
      default: return a;
    }
  }
};

template <class A>
struct IntUnaryF {
  OpId op;
  A s0, s1;
  __device__ __forceinline__ A operator()(A a) const {
    switch (op) {
      case OpId::neg: return A(-a);
      case OpId::abs:
        if constexpr (std::is_unsigned_v<A>) return a;
        else return a < A(0) ? A(-a) : a;
      case OpId::sign:
        if constexpr (std::is_unsigned_v<A>) return A(a > A(0));
        else return A((a > A(0)) - (a < A(0)));
      case OpId::add_scalar: return A(a + s0);
      case OpId::mul_scalar: return A(a * s0);
      case OpId::clamp: return a < s0 ? s0 : (a > s1 ? s1 : a);
      default: return a;
    }
  }
};

template <class A>
struct BinaryF {
  OpId op;
  __device__ __forceinline__ A operator()(A p, A q) const {
    switch (op) {
      case OpId::add: return p + q;
      case OpId::sub: return p - q;
      case OpId::mul: return p * q;
      case OpId::div: return p / q;
      case OpId::pow: return m_pow(p, q);
      case OpId::maximum: return (p != p || p > q) ? p : q;  // NaN propagates
      case OpId::minimum: return (p != p || p < q) ? p : q;
      case OpId::sigmoid_backward: return q * p * (A(1) - p);  // (y, gy)
      case OpId::tanh_backward: return q * (A(1) - p * p);
      case OpId::relu_backward: return p <= A(0) ? A(0) : q;  // (x, gy); NaN x passes gy
      case OpId::silu_backward: {
        A s = sigmoid_of(p);
        return q * s * (A(1) + p * (A(1) - s));
      }
      case OpId::gelu_tanh_backward: return q * gelu_tanh_grad(p);
      case OpId::gelu_erf_backward: return q * gelu_erf_grad(p);
      case OpId::log_sigmoid_backward: return q / (A(1) + m_exp(p));
      default: return p;
    }
  }
};

template <class A>
struct IntBinaryF {
  OpId op;
  __device__ __forceinline__ A operator()(A p, A q) const {
    switch (op) {
      case OpId::add: return A(p + q);
      case OpId::sub: return A(p - q);
      case OpId::mul: return A(p * q);
      case OpId::maximum: return p > q ? p : q;
      case OpId::minimum: return p < q ? p : q;
      default: return p;
    }
  }
};

template <class A>
struct CompareF {
  OpId op;
  __device__ __forceinline__ bool operator()(A p, A q) const {
    switch (op) {
      case OpId::eq: return p == q;
      case OpId::ne: return p != q;
      case OpId::lt: return p < q;
      case OpId::le: return p <= q;
      case OpId::gt: return p > q;
      case OpId::ge: return p >= q;
      default: return false;
    }
  }
};

template <class A>
struct WhereF {
  __device__ __forceinline__ A operator()(bool m, A p, A q) const { return m ? p : q; }
};

template <class A>
struct MaskedFillF {
  A v;
  __device__ __forceinline__ A operator()(A x, bool m) const { return m ? v : x; }
};

bool int_op_supported(OpId op) {
  switch (op) {
    case OpId::neg: case OpId::abs: case OpId::sign: case OpId::add_scalar: case OpId::mul_scalar:
    case OpId::clamp: case OpId::add: case OpId::sub: case OpId::mul: case OpId::maximum: case OpId::minimum:
      return true;
    default:
      return false;
  }
}

void unary_kernel(const KernelCall& c) {
  const Tensor& x = c.input(0);
  Tensor& y = c.output(0);
  double s0 = c.op == OpId::clamp ? c.attrs.clamp.lo : c.attrs.scalar.value;
  double s1 = c.op == OpId::clamp ? c.attrs.clamp.hi : 0.0;
  dispatch_all(x.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    if constexpr (std::is_floating_point_v<A>) {
      launch_map<T, T>(op_name(c.op), UnaryF<A>{c.op, static_cast<A>(s0), static_cast<A>(s1)}, y, x);
    } else if constexpr (!std::is_same_v<T, bool>) {
      MODU_CHECK(int_op_supported(c.op), op_name(c.op), ": no CUDA kernel for ", dtype_name(x.dtype()));
      launch_map<T, T>(op_name(c.op), IntUnaryF<A>{c.op, static_cast<A>(s0), static_cast<A>(s1)}, y, x);
    } else {
      MODU_FAIL(op_name(c.op), ": no CUDA kernel for bool");
    }
  });
}

void binary_kernel(const KernelCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  Tensor& y = c.output(0);
  dispatch_all(a.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    if constexpr (std::is_floating_point_v<A>) {
      launch_map<T, T, T>(op_name(c.op), BinaryF<A>{c.op}, y, a, &b);
    } else if constexpr (!std::is_same_v<T, bool>) {
      MODU_CHECK(int_op_supported(c.op), op_name(c.op), ": no CUDA kernel for ", dtype_name(a.dtype()));
      launch_map<T, T, T>(op_name(c.op), IntBinaryF<A>{c.op}, y, a, &b);
    } else {
      MODU_FAIL(op_name(c.op), ": no CUDA kernel for bool");
    }
  });
}

void compare_kernel(const KernelCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  dispatch_all(a.dtype(), op_name(c.op), [&](auto tag) {
    using T = decltype(tag);
    launch_map<bool, T, T>(op_name(c.op), CompareF<acc_t<T>>{c.op}, c.output(0), a, &b);
  });
}

void where_kernel(const KernelCall& c) {
  dispatch_all(c.input(1).dtype(), "where", [&](auto tag) {
    using T = decltype(tag);
    launch_map<T, bool, T, T>("where", WhereF<acc_t<T>>{}, c.output(0), c.input(0), &c.input(1), &c.input(2));
  });
}

void masked_fill_kernel(const KernelCall& c) {
  dispatch_all(c.input(0).dtype(), "masked_fill", [&](auto tag) {
    using T = decltype(tag);
    using A = acc_t<T>;
    launch_map<T, T, bool>("masked_fill", MaskedFillF<A>{static_cast<A>(c.attrs.scalar.value)}, c.output(0),
                           c.input(0), &c.input(1));
  });
}

}  // namespace

void register_elementwise_kernels(KernelRegistry& r) {
  constexpr DTypeSet kSigned{DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64};
  constexpr DTypeSet kNumeric{DType::F32, DType::F64, DType::BF16, DType::F16, DType::I32, DType::I64, DType::U8};
  const auto cuda = DeviceType::CUDA;
  for (OpId op : {OpId::exp, OpId::log, OpId::sqrt, OpId::rsqrt, OpId::sin, OpId::cos, OpId::tanh, OpId::sigmoid,
                  OpId::log_sigmoid, OpId::relu, OpId::silu, OpId::gelu_tanh, OpId::gelu_erf, OpId::pow_scalar})
    r.set(cuda, op, guarded<unary_kernel>, kFloatTypes);
  for (OpId op : {OpId::neg, OpId::abs, OpId::sign}) r.set(cuda, op, guarded<unary_kernel>, kSigned);
  for (OpId op : {OpId::add_scalar, OpId::mul_scalar, OpId::clamp}) r.set(cuda, op, guarded<unary_kernel>, kNumeric);
  for (OpId op : {OpId::add, OpId::sub, OpId::mul, OpId::maximum, OpId::minimum})
    r.set(cuda, op, guarded<binary_kernel>, kNumeric);
  for (OpId op : {OpId::div, OpId::pow, OpId::sigmoid_backward, OpId::tanh_backward, OpId::relu_backward,
                  OpId::silu_backward, OpId::gelu_tanh_backward, OpId::gelu_erf_backward, OpId::log_sigmoid_backward})
    r.set(cuda, op, guarded<binary_kernel>, kFloatTypes);
  for (OpId op : {OpId::eq, OpId::ne, OpId::lt, OpId::le, OpId::gt, OpId::ge})
    r.set(cuda, op, guarded<compare_kernel>, kAllTypes);
  r.set(cuda, OpId::where, guarded<where_kernel>, kAllTypes);
  r.set(cuda, OpId::masked_fill, guarded<masked_fill_kernel>, kAllTypes);
}

}  // namespace modu::cuda
