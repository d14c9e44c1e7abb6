// core/cpu/blas.h — the one door from CPU kernels to dense matrix products (row-major GEMM).
//
// f32 goes to oneDNN's sgemm when the build has it (MODU_CPU_SGEMM=onednn, the default), else to
// OpenBLAS; f64 always goes to OpenBLAS. Called outside a parallel region, a large f32 product is cut
// into one slab of rows or columns per thread, each slab a single-threaded GEMM (one fork/join, no
// idle threads on the short M = B*T side of a training step). Called inside a parallel region (per-head
// attention, per-image convolution) it runs on the calling thread. The result for a given thread count
// is deterministic: the slabs are fixed by M, N and the count.
#pragma once

#include <cstdint>

namespace modu::cpu {

// C(M, N) = alpha * op(A)(M, K) * op(B)(K, N) + beta * C, all row-major; op transposes when ta / tb.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc);
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc);

// Which library the f32 products use: "onednn" or "openblas" (benchmarks print it).
const char* sgemm_library();

}  // namespace modu::cpu
