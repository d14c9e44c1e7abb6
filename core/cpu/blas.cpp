// core/cpu/blas.cpp — row-major GEMM on oneDNN (f32) and OpenBLAS (f64, and f32 without oneDNN).
//
// Why oneDNN for f32: on the 2-core Sapphire Rapids development VM, one single-threaded dnnl_sgemm per
// core ran the GPT-2 124M step's shapes at 175-200 GFLOP/s, against 145-165 for OpenBLAS 0.3.21 on two
// threads (bench/core/bench_matmul prints both). Why our own slabs: oneDNN's own threading of an
// (M = 256, N = 2304) product reached only 120-150 GFLOP/s, and allocates whenever it threads. One slab per
// thread along the longer side of C keeps both cores busy. Slab edges are multiples of 16 floats, so
// every slab starts on a 64-byte boundary of C when C does.
#include "core/cpu/blas.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>

#include "core/check.h"

#if MODU_HAVE_ONEDNN
#include <dnnl.h>
#endif

namespace modu::cpu {

namespace {

// Below this many multiply-adds a product is not worth a fork/join.
constexpr int64_t kSlabMinWork = int64_t(1) << 21;
constexpr int64_t kSlabAlign = 16;

// Runs oneDNN on the calling thread only: its own threading allocates per call (a heap allocation on every
// steady-state step; tests/recipes/test_step_allocations.cpp counts them), and the slabs below already
// share the large products out.
struct OneThread {
  int saved = omp_get_max_threads();
  OneThread() { omp_set_num_threads(1); }
  ~OneThread() { omp_set_num_threads(saved); }
};

void sgemm_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
               const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
#if MODU_HAVE_ONEDNN
  OneThread one_thread;
  dnnl_status_t st = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  MODU_CHECK(st == dnnl_success, "dnnl_sgemm(", ta ? 'T' : 'N', tb ? 'T' : 'N', ", M=", M, " N=", N, " K=", K,
             " lda=", lda, " ldb=", ldb, " ldc=", ldc, ") failed with dnnl status ", static_cast<int>(st));
#else
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
#endif
}

}  // namespace

const char* sgemm_library() { return MODU_HAVE_ONEDNN ? "onednn" : "openblas"; }

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {  // an empty sum: C = beta C (oneDNN refuses K = 0 with empty operands)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
    return;
  }
  int threads = omp_get_max_threads();
  bool split = MODU_HAVE_ONEDNN && threads > 1 && !omp_in_parallel() && M * N * std::max<int64_t>(K, 1) >= kSlabMinWork;
  if (!split) return sgemm_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  // Slabs of columns when C is wider than tall, else of rows.
  bool by_columns = N >= M;
  int64_t len = by_columns ? N : M;
  int64_t slab = (len + threads - 1) / threads;
  slab = (slab + kSlabAlign - 1) / kSlabAlign * kSlabAlign;
  int slabs = static_cast<int>((len + slab - 1) / slab);
  if (slabs < 2) return sgemm_one(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#pragma omp parallel for num_threads(slabs) schedule(static)
  for (int s = 0; s < slabs; ++s) {
    int64_t b0 = s * slab, n = std::min(len, b0 + slab) - b0;
    if (by_columns)  // columns b0.. of op(B) and C
      sgemm_one(ta, tb, M, n, K, alpha, A, lda, tb ? B + b0 * ldb : B + b0, ldb, beta, C + b0, ldc);
    else  // rows b0.. of op(A) and C
      sgemm_one(ta, tb, n, N, K, alpha, ta ? A + b0 : A + b0 * lda, lda, B, ldb, beta, C + b0 * ldc, ldc);
  }
}

void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A, int64_t lda,
          const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B,
              static_cast<blasint>(ldb), beta, C, static_cast<blasint>(ldc));
}

}  // namespace modu::cpu
