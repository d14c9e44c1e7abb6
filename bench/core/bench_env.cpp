// bench/core/bench_env.cpp — environment probes and statistics for the core benchmarks
// (see bench_env.h). The clock probe is a dependent chain of integer adds in inline assembly; the
// FMA probe keeps 16 independent vector accumulators in registers so latency is hidden.
#include "bench/core/bench_env.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

namespace modu::bench {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

Stats stats_of(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto q = [&](double f) {
    double pos = f * (v.size() - 1);
    size_t i = static_cast<size_t>(pos);
    double frac = pos - i;
    return i + 1 < v.size() ? v[i] * (1 - frac) + v[i + 1] * frac : v[i];
  };
  s.n = static_cast<int>(v.size());
  s.min = v.front();
  s.max = v.back();
  s.median = q(0.5);
  s.p25 = q(0.25);
  s.p75 = q(0.75);
  return s;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  }
  return "unknown";
}

std::string compiler_version() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

std::string openblas_config() {
  std::string s = openblas_get_config();
  s += " | core ";
  s += openblas_get_corename();
  int par = openblas_get_parallel();
  s += par == 0 ? " | sequential" : par == 1 ? " | pthreads" : " | OpenMP";
  return s;
}

int openblas_threads() { return openblas_get_num_threads(); }

void set_threads(int n) {
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

namespace {
// 1000 dependent register adds per iteration: iters * 1000 cycles. (An add with an immediate would not
// do: recent Intel cores fold chains of those at rename and seem to run at several "GHz".)
double add_chain_ghz(int64_t iters) {
  uint64_t x = 1, y = 3;
  double t0 = now_s();
  for (int64_t i = 0; i < iters; ++i) asm volatile(".rept 1000\n\taddq %1, %0\n\t.endr" : "+r"(x) : "r"(y));
  double t = now_s() - t0;
  return static_cast<double>(iters) * 1000.0 / t / 1e9;
}
// The same with imul (3 cycles latency): a cross-check of the add chain.
double imul_chain_ghz(int64_t iters) {
  uint64_t x = 1, y = 3;
  double t0 = now_s();
  for (int64_t i = 0; i < iters; ++i) asm volatile(".rept 1000\n\timulq %1, %0\n\t.endr" : "+r"(x) : "r"(y));
  double t = now_s() - t0;
  return static_cast<double>(iters) * 3000.0 / t / 1e9;
}

// Returns flops done.
double fma_trial(int64_t iters) {
#if defined(__AVX512F__)
  __m512 acc[16];
  for (int j = 0; j < 16; ++j) acc[j] = _mm512_set1_ps(1.0f + 0.001f * j);
  const __m512 m = _mm512_set1_ps(0.9999999f), a = _mm512_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < 16; ++j) acc[j] = _mm512_fmadd_ps(acc[j], m, a);
  }
  __m512 s = acc[0];
  for (int j = 1; j < 16; ++j) s = _mm512_add_ps(s, acc[j]);
  float out[16];
  _mm512_storeu_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 16 * 16 * 2;
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(1.0f + 0.001f * j);
  const __m256 m = _mm256_set1_ps(0.9999999f), a = _mm256_set1_ps(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], m, a);
  }
  float out[8];
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
  _mm256_storeu_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 12 * 8 * 2;
#else
  (void)iters;
  return 0;
#endif
}
}  // namespace

int fma_lanes() {
#if defined(__AVX512F__)
  return 16;
#elif defined(__AVX2__)
  return 8;
#else
  return 1;
#endif
}

ClockProbe measure_clock_ghz(int threads, int trials) {
  ClockProbe p;
  p.add_ghz.assign(threads, 0.0);
  p.imul_ghz.assign(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    add_chain_ghz(20000);  // warm-up (and let the clock ramp)
    for (int k = 0; k < trials; ++k) {
      p.add_ghz[t] = std::max(p.add_ghz[t], add_chain_ghz(2000));  // ~1 ms each
      p.imul_ghz[t] = std::max(p.imul_ghz[t], imul_chain_ghz(700));
    }
  }
  return p;
}

double measure_fma_gflops(int threads, int trials) {
  std::vector<double> best(threads, 0.0);
#pragma omp parallel num_threads(threads)
  {
    int t = omp_get_thread_num();
    fma_trial(400000);  // warm-up: lets the AVX-512 licence settle
    for (int k = 0; k < trials; ++k) {
      double t0 = now_s();
      double flops = fma_trial(20000);  // ~0.2 ms
      best[t] = std::max(best[t], flops / (now_s() - t0) / 1e9);
    }
  }
  double sum = 0;
  for (double b : best) sum += b;
  return sum;
}

}  // namespace modu::bench
