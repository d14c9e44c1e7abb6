// tests/core/test_blas.cpp — core/cpu/blas.h against a plain f64 triple loop: the slab split (by columns when
// C is wider than tall, by rows otherwise; uneven last slab; 2 and 3 threads), every transpose pair, alpha
// and beta (linear starts from the bias with beta = 1), leading dimensions wider than the matrix, the
// single-call path for small products, and the calling thread inside a parallel region.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/blas.h"

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  float alpha, beta;
};

// Stored operand of op(X) (rows x cols) with leading dimension ld: X is (rows, cols) or, transposed, (cols, rows).
std::vector<float> random_matrix(int64_t stored_rows, int64_t ld, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(stored_rows * ld));
  for (float& v : x) v = u(rng);
  return x;
}

// Largest |C - reference| over the largest sum of |terms| of any element. Any f32 summation order keeps
// this below (K + 2) u, u = 2^-24 (the classical inner-product bound); a wrong slab is off by O(1).
double relative_error(const Case& c, int threads, bool inside_parallel_region) {
  std::mt19937 rng(static_cast<unsigned>(c.M * 131 + c.N * 7 + c.K + c.ta * 2 + c.tb));
  const int64_t pad = 3;  // leading dimensions wider than the rows they hold
  int64_t a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K, lda = a_cols + pad;
  int64_t b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N, ldb = b_cols + pad;
  int64_t ldc = c.N + pad;
  std::vector<float> A = random_matrix(a_rows, lda, rng), B = random_matrix(b_rows, ldb, rng);
  std::vector<float> C = random_matrix(c.M, ldc, rng), C0 = C;
  auto a_at = [&](int64_t i, int64_t k) { return double(c.ta ? A[k * lda + i] : A[i * lda + k]); };
  auto b_at = [&](int64_t k, int64_t j) { return double(c.tb ? B[j * ldb + k] : B[k * ldb + j]); };

  int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  if (inside_parallel_region) {
#pragma omp parallel num_threads(2)
    {
      if (omp_get_thread_num() == 0)
        modu::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
    }
  } else {
    modu::cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
  }
  omp_set_num_threads(saved);

  double worst = 0, scale = 0;
  for (int64_t i = 0; i < c.M; ++i) {
    for (int64_t j = 0; j < c.N; ++j) {
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        ref += a_at(i, k) * b_at(k, j);
        mag += std::fabs(a_at(i, k) * b_at(k, j));
      }
      ref = c.alpha * ref + c.beta * double(C0[i * ldc + j]);
      worst = std::max(worst, std::fabs(double(C[i * ldc + j]) - ref));
      scale = std::max(scale, std::fabs(c.alpha) * mag + std::fabs(c.beta * double(C0[i * ldc + j])));
    }
    // The padding between rows of C is never written.
    for (int64_t j = c.N; j < ldc && i + 1 < c.M; ++j) EXPECT_EQ(C[i * ldc + j], C0[i * ldc + j]) << "row " << i;
  }
  return worst / scale;
}

double bound(int64_t K) { return double(K + 2) * std::ldexp(1.0, -24); }

TEST(Blas, SlabsMatchTheReferenceForEveryTransposeAndSplit) {
  // 2^21 multiply-adds and up take the slab path; (200, 1000) splits by columns, (1000, 200) by rows, and
  // neither 1000 nor 1000/3 is a multiple of the 16-float slab alignment, so the last slab is short.
  const Case shapes[] = {{200, 1000, 128, false, false, 1.f, 0.f},  {1000, 200, 128, false, false, 1.f, 0.f},
                         {200, 1000, 128, false, false, 0.5f, 1.f}, {1000, 200, 128, false, false, -2.f, 1.f},
                         {40, 50, 60, false, false, 1.f, 0.f},  // small: one call
                         {1, 4000, 600, false, false, 1.f, 1.f}};
  for (const Case& base : shapes) {
    for (int t = 0; t < 4; ++t) {
      Case c = base;
      c.ta = t & 1;
      c.tb = t & 2;
      for (int threads : {1, 2, 3}) {
        double err = relative_error(c, threads, false);
        EXPECT_LT(err, bound(c.K)) << "M=" << c.M << " N=" << c.N << " K=" << c.K << " ta=" << c.ta << " tb=" << c.tb
                                   << " alpha=" << c.alpha << " beta=" << c.beta << " threads=" << threads;
      }
    }
  }
}

TEST(Blas, InsideAParallelRegionRunsOnTheCallingThread) {
  Case c{300, 700, 200, false, true, 1.f, 0.f};
  EXPECT_LT(relative_error(c, 2, true), bound(c.K));
}

TEST(Blas, DoublePrecisionMatchesTheReference) {
  const int64_t M = 33, N = 17, K = 9;
  std::vector<double> A(M * K), B(K * N), C(M * N, 1.0);
  for (int64_t i = 0; i < M * K; ++i) A[i] = 0.25 * double(i % 7) - 0.5;
  for (int64_t i = 0; i < K * N; ++i) B[i] = 0.125 * double(i % 5) + 0.1;
  modu::cpu::gemm(false, false, M, N, K, 2.0, A.data(), K, B.data(), N, 1.0, C.data(), N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 1.0;
      for (int64_t k = 0; k < K; ++k) ref += 2.0 * A[i * K + k] * B[k * N + j];
      EXPECT_NEAR(C[i * N + j], ref, 1e-12);
    }
  EXPECT_TRUE(std::string(modu::cpu::sgemm_library()) == "onednn" ||
              std::string(modu::cpu::sgemm_library()) == "openblas");
}

}  // namespace
