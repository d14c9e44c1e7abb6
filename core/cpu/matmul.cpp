// core/cpu/matmul.cpp — matmul (batched, broadcasting batch dims) and linear, on core/cpu/blas.h.
//
// Invariants: transposed views are passed to BLAS as transposes (no copy); an operand is copied only
// when neither its rows nor its columns are unit-stride. When the right operand has no batch dims and
// the left's batch and row dims are contiguous, the batch folds into one large GEMM (the Linear case).
// 16-bit floats are widened to f32 around sgemm. Outputs are written (beta = 0), except linear, which
// starts from the broadcast bias (beta = 1).
#include <cblas.h>

#include <vector>

#include "core/cpu/blas.h"
#include "core/cpu/kernels.h"
#include "core/cpu/loops.h"
#include "core/ops/layout.h"

namespace modu::cpu {

namespace {

template <class T>
void gemm_ab(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B, int64_t ldb,
             T beta, T* C, int64_t ldc) {
  gemm(ta, tb, M, N, K, T(1), A, lda, B, ldb, beta, C, ldc);
}

// Matmul on f32 or f64 tensors (any strides, batch dims broadcast); out is contiguous.
template <class T>
void matmul_typed(const Tensor& a_in, const Tensor& b_in, Tensor& out) {
  Tensor a = a_in, b = b_in;
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  GemmOperand oa, ob;
  if (!gemm_operand(M, K, a.stride(-2), a.stride(-1), &oa)) {
    a = contiguous_copy(a);
    oa = {false, K};
  }
  if (!gemm_operand(K, N, b.stride(-2), b.stride(-1), &ob)) {
    b = contiguous_copy(b);
    ob = {false, N};
  }
  MatmulBatch mb = matmul_batch(a, b, out, oa);
  int nb = mb.dims;
  int64_t batch = mb.count;
  if (batch == 1 && M == 1 && N == 1) {  // a dot product: BLAS level 1, not a 1x1 GEMM
    // a (1, K): element k at k * stride(-1); b (K, 1): element k at k * stride(-2).
    int64_t sa_k = a.stride(-1), sb_k = b.stride(-2);
    const T* A0 = static_cast<const T*>(a.data_ptr());
    const T* B0 = static_cast<const T*>(b.data_ptr());
    T* C0 = static_cast<T*>(out.data_ptr());
    if constexpr (std::is_same_v<T, float>)
      *C0 = cblas_sdot(static_cast<blasint>(K), A0, static_cast<blasint>(sa_k), B0, static_cast<blasint>(sb_k));
    else
      *C0 = cblas_ddot(static_cast<blasint>(K), A0, static_cast<blasint>(sa_k), B0, static_cast<blasint>(sb_k));
    return;
  }
  const Dims &sa = mb.stride_a, &sb = mb.stride_b;
  const T* A = static_cast<const T*>(a.data_ptr());
  const T* B = static_cast<const T*>(b.data_ptr());
  T* C = static_cast<T*>(out.data_ptr());
  if (mb.folds_into_rows) {
    gemm_ab<T>(false, ob.trans, batch * M, N, K, A, oa.ld, B, ob.ld, T(0), C, N);
    return;
  }
  auto one = [&](int64_t bi) {
    int64_t offa = 0, offb = 0, rem = bi;
    for (int d = nb - 1; d >= 0; --d) {
      int64_t i = rem % out.size(d);
      rem /= out.size(d);
      offa += i * sa[d];
      offb += i * sb[d];
    }
    gemm_ab<T>(oa.trans, ob.trans, M, N, K, A + offa, oa.ld, B + offb, ob.ld, T(0), C + bi * M * N, N);
  };
  if (batch >= max_threads() && max_threads() > 1 && !omp_in_parallel()) {
    // At least one product per thread: split the batch, BLAS single-threaded inside the parallel region
    // (one fork/join instead of one per product).
#pragma omp parallel for schedule(static)
    for (int64_t bi = 0; bi < batch; ++bi) one(bi);
  } else {
    for (int64_t bi = 0; bi < batch; ++bi) one(bi);
  }
}

void matmul_kernel(const KernelCall& c) {
  const Tensor &a = c.input(0), &b = c.input(1);
  Tensor& out = c.output(0);
  switch (a.dtype()) {
    case DType::F32: return matmul_typed<float>(a, b, out);
    case DType::F64: return matmul_typed<double>(a, b, out);
    default: {
      // bf16 / f16: widen to f32, multiply, round once (not at all when the output is f32: accumulate_out).
      Tensor a32 = Tensor::empty(a.shape(), DType::F32), b32 = Tensor::empty(b.shape(), DType::F32);
      a32.copy_(a);
      b32.copy_(b);
      if (out.dtype() == DType::F32) return matmul_typed<float>(a32, b32, out);
      Tensor o32 = Tensor::empty(out.shape(), DType::F32);
      matmul_typed<float>(a32, b32, o32);
      out.copy_(o32);
    }
  }
}

template <class T>
void linear_typed(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, Tensor& out) {
  int64_t K = x_in.size(-1), N = w_in.size(0), M = x_in.numel() / std::max<int64_t>(K, 1);
  Tensor x = as_contiguous(x_in), b = as_contiguous(b_in);
  Tensor w = w_in;
  GemmOperand ow;  // w (N, K) used as w^T: classify w itself, then flip
  if (!gemm_operand(N, K, w.stride(0), w.stride(1), &ow)) {
    w = contiguous_copy(w);
    ow = {false, K};
  }
  T* C = static_cast<T*>(out.data_ptr());
  const T* bias = static_cast<const T*>(b.data_ptr());
  parallel_for(M, N, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) std::copy(bias, bias + N, C + r * N);
  });
  gemm_ab<T>(false, !ow.trans, M, N, K, static_cast<const T*>(x.data_ptr()), K, static_cast<const T*>(w.data_ptr()),
             ow.ld, T(1), C, N);
}

void linear_kernel(const KernelCall& c) {
  const Tensor &x = c.input(0), &w = c.input(1), &b = c.input(2);
  Tensor& out = c.output(0);
  switch (x.dtype()) {
    case DType::F32: return linear_typed<float>(x, w, b, out);
    case DType::F64: return linear_typed<double>(x, w, b, out);
    default: {
      auto widen = [](const Tensor& t) {
        Tensor f = Tensor::empty(t.shape(), DType::F32);
        f.copy_(t);
        return f;
      };
      Tensor o32 = Tensor::empty(out.shape(), DType::F32);
      linear_typed<float>(widen(x), widen(w), widen(b), o32);
      out.copy_(o32);
    }
  }
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  r.set(DeviceType::CPU, OpId::matmul, matmul_kernel, kFloatTypes);
  r.set(DeviceType::CPU, OpId::linear, linear_kernel, kFloatTypes);
}

}  // namespace modu::cpu
