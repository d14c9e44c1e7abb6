// modu_bench_matmul: f32 GEMM throughput of modu::matmul (oneDNN by default, core/cpu/blas.cpp) against
// OpenBLAS's cblas_sgemm called directly on the same buffers (same thread count), for square sizes and GPT-shaped
// products (MLP forward, weight and input gradients with transposed views, batched attention). Prints GFLOP/s (median
// and spread over interleaved repeats), the modu/OpenBLAS ratio (target >= 0.95), both as a share of the machine's
// theoretical fp32 peak (from a measured clock) and of the best OpenBLAS figure of this run, and the allocations per
// modu call (a copied operand would show as a second allocator request). Never asserts on time.
//   modu_bench_matmul [--threads N] [--reps R] [--min-time S] [--clock wall|cpu] [--quick]
//                     [--only NAME[,NAME...]]
// --clock cpu (the default with --threads 1) times in the calling thread's CPU time, which ignores
// other processes on a shared machine; with more threads only wall time is meaningful.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/core/alloc_counter.h"
#include "bench/core/bench_env.h"
#include "core/allocator.h"
#include "core/cpu/blas.h"
#include "core/ops/ops.h"

using namespace modu;
using modu::bench::now_s;
using modu::bench::Stats;
using modu::bench::stats_of;

namespace {

Tensor random_tensor(const Dims& shape, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t;
}

void sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
           int64_t ldb, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)M,
              (blasint)N, (blasint)K, 1.0f, A, (blasint)lda, B, (blasint)ldb, 0.0f, C, (blasint)ldc);
}

struct Peer {
  std::string name;
  std::function<void()> run;
};

struct Case {
  std::string name;   // short id
  std::string shape;  // as a user would write it
  double flops = 0;
  std::function<Tensor()> modu;
  std::vector<Peer> peers;  // cblas_sgemm variants on the same buffers; the best is the reference
  std::vector<float> peer_out;
};

// Everything a case needs to stay alive.
struct Holder {
  std::vector<Tensor> keep;
};

Case square(Holder& h, int64_t n) {
  Tensor a = random_tensor({n, n}, 1), b = random_tensor({n, n}, 2);
  h.keep.insert(h.keep.end(), {a, b});
  Case c;
  char buf[64];
  std::snprintf(buf, sizeof buf, "(%ld,%ld)@(%ld,%ld)", (long)n, (long)n, (long)n, (long)n);
  c.name = "square" + std::to_string(n);
  c.shape = buf;
  c.flops = 2.0 * n * n * n;
  c.peer_out.resize(n * n);
  c.modu = [a, b] { return matmul(a, b); };
  float* C = c.peer_out.data();
  const float *A = a.data<float>(), *B = b.data<float>();
  c.peers.push_back({"sgemm", [=] { sgemm(false, false, n, n, n, A, n, B, n, C, n); }});
  return c;
}

// x (B, T, C) @ W (C, N): modu folds B*T into one GEMM.
Case mlp_fwd(Holder& h, int64_t B, int64_t T, int64_t Cin, int64_t N) {
  Tensor x = random_tensor({B, T, Cin}, 3), w = random_tensor({Cin, N}, 4);
  h.keep.insert(h.keep.end(), {x, w});
  Case c;
  int64_t M = B * T;
  c.name = "mlp_fwd_" + std::to_string(M) + "x" + std::to_string(Cin) + "x" + std::to_string(N);
  c.shape = "x(" + std::to_string(B) + "," + std::to_string(T) + "," + std::to_string(Cin) + ")@W(" +
            std::to_string(Cin) + "," + std::to_string(N) + ")";
  c.flops = 2.0 * M * N * Cin;
  c.peer_out.resize(M * N);
  c.modu = [x, w] { return matmul(x, w); };
  float* C = c.peer_out.data();
  const float *A = x.data<float>(), *Bp = w.data<float>();
  c.peers.push_back({"sgemm", [=] { sgemm(false, false, M, N, Cin, A, Cin, Bp, N, C, N); }});
  return c;
}

// Weight gradient x^T @ dy: x (M, K) stored row-major, used through the view x.t() (K, M).
Case wgrad(Holder& h, int64_t M, int64_t K, int64_t N) {
  Tensor x = random_tensor({M, K}, 5), dy = random_tensor({M, N}, 6);
  Tensor xt = x.t();
  h.keep.insert(h.keep.end(), {x, dy, xt});
  Case c;
  c.name = "wgrad_at_" + std::to_string(K) + "x" + std::to_string(M) + "x" + std::to_string(N);
  c.shape = "x.t()(" + std::to_string(K) + "," + std::to_string(M) + ")@dy(" + std::to_string(M) + "," +
            std::to_string(N) + ")";
  c.flops = 2.0 * M * N * K;
  c.peer_out.resize(K * N);
  c.modu = [xt, dy] { return matmul(xt, dy); };
  float* C = c.peer_out.data();
  const float *A = x.data<float>(), *Bp = dy.data<float>();
  c.peers.push_back({"sgemm(T,N)", [=] { sgemm(true, false, K, N, M, A, K, Bp, N, C, N); }});
  return c;
}

// Input gradient dy @ W^T: W (K, N) stored, used through the view W.t() (N, K).
Case dgrad(Holder& h, int64_t M, int64_t K, int64_t N) {
  Tensor dy = random_tensor({M, N}, 7), w = random_tensor({K, N}, 8);
  Tensor wt = w.t();
  h.keep.insert(h.keep.end(), {dy, w, wt});
  Case c;
  c.name = "dgrad_bt_" + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
  c.shape = "dy(" + std::to_string(M) + "," + std::to_string(N) + ")@W.t()(" + std::to_string(N) + "," +
            std::to_string(K) + ")";
  c.flops = 2.0 * M * N * K;
  c.peer_out.resize(M * K);
  c.modu = [dy, wt] { return matmul(dy, wt); };
  float* C = c.peer_out.data();
  const float *A = dy.data<float>(), *Bp = w.data<float>();
  c.peers.push_back({"sgemm(N,T)", [=] { sgemm(false, true, M, K, N, A, N, Bp, N, C, K); }});
  return c;
}

// Batched peers: a loop of threaded sgemm calls, and an OpenMP loop over the batch with OpenBLAS
// single-threaded inside (it detects the parallel region).
void batched_peers(Case& c, int64_t batch, std::function<void(int64_t)> one) {
  c.peers.push_back({"sgemm loop", [=] {
                       for (int64_t i = 0; i < batch; ++i) one(i);
                     }});
  c.peers.push_back({"omp-over-batch sgemm", [=] {
#pragma omp parallel for schedule(static)
                       for (int64_t i = 0; i < batch; ++i) one(i);
                     }});
}

// Attention scores q @ k^T: q, k (BH, T, HS); k^T is the view k.transpose(-2, -1).
Case att_scores(Holder& h, int64_t BH, int64_t T, int64_t HS) {
  Tensor q = random_tensor({BH, T, HS}, 9), k = random_tensor({BH, T, HS}, 10);
  Tensor kt = k.transpose(-2, -1);
  h.keep.insert(h.keep.end(), {q, k, kt});
  Case c;
  c.name = "att_qkT";
  c.shape = "q(" + std::to_string(BH) + "," + std::to_string(T) + "," + std::to_string(HS) + ")@k.transpose(" +
            std::to_string(BH) + "," + std::to_string(HS) + "," + std::to_string(T) + ")";
  c.flops = 2.0 * BH * T * T * HS;
  c.peer_out.resize(BH * T * T);
  c.modu = [q, kt] { return matmul(q, kt); };
  float* C = c.peer_out.data();
  const float *A = q.data<float>(), *Bp = k.data<float>();
  batched_peers(c, BH, [=](int64_t i) { sgemm(false, true, T, T, HS, A + i * T * HS, HS, Bp + i * T * HS, HS, C + i * T * T, T); });
  return c;
}

// Attention values p @ v: p (BH, T, T), v (BH, T, HS).
Case att_values(Holder& h, int64_t BH, int64_t T, int64_t HS) {
  Tensor p = random_tensor({BH, T, T}, 11), v = random_tensor({BH, T, HS}, 12);
  h.keep.insert(h.keep.end(), {p, v});
  Case c;
  c.name = "att_pv";
  c.shape = "p(" + std::to_string(BH) + "," + std::to_string(T) + "," + std::to_string(T) + ")@v(" +
            std::to_string(BH) + "," + std::to_string(T) + "," + std::to_string(HS) + ")";
  c.flops = 2.0 * BH * T * T * HS;
  c.peer_out.resize(BH * T * HS);
  c.modu = [p, v] { return matmul(p, v); };
  float* C = c.peer_out.data();
  const float *A = p.data<float>(), *Bp = v.data<float>();
  batched_peers(c, BH, [=](int64_t i) { sgemm(false, false, T, HS, T, A + i * T * T, T, Bp + i * T * HS, HS, C + i * T * HS, HS); });
  return c;
}

double max_abs_diff(const Tensor& out, const std::vector<float>& ref) {
  const float* o = out.data<float>();
  double m = 0;
  for (size_t i = 0; i < ref.size(); ++i) m = std::max(m, (double)std::fabs(o[i] - ref[i]));
  return m;
}

struct Result {
  std::string name, shape, best_peer;
  Stats modu, peer, ratio;
  double allocs_per_call = 0, requests_per_call = 0, diff = 0;
};

std::string fmt_stats(const Stats& s, int prec = 1) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.*f [%.*f-%.*f]", prec, s.median, prec, s.min, prec, s.max);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = omp_get_max_threads();
  int reps = 11;
  double min_time = 0.08;
  bool quick = false;
  std::string only, clock_name;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "modu_bench_matmul: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::stoi(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--min-time") min_time = std::stod(next());
    else if (a == "--quick") quick = true;
    else if (a == "--only") only = next();
    else if (a == "--clock") clock_name = next();
    else {
      std::fprintf(stderr,
                   "usage: modu_bench_matmul [--threads N] [--reps R] [--min-time S] [--clock wall|cpu] "
                   "[--quick] [--only NAME[,NAME...]]\n");
      return 2;
    }
  }
  bench::set_threads(threads);
  if (clock_name.empty()) clock_name = threads == 1 ? "cpu" : "wall";
  if (clock_name != "wall" && !(clock_name == "cpu" && threads == 1)) {
    std::fprintf(stderr, "modu_bench_matmul: --clock must be wall, or cpu with --threads 1\n");
    return 2;
  }
  double (*tick)() = clock_name == "cpu" ? bench::thread_cpu_s : now_s;

  // ---- environment -------------------------------------------------------------------------------
  std::printf("== modu matmul vs OpenBLAS cblas_sgemm (f32) ==\n");
  std::printf("cpu            : %s (%d logical CPUs online)\n", bench::cpu_model().c_str(), omp_get_num_procs());
  std::printf("compiler       : %s\n", bench::compiler_version().c_str());
  std::printf("openblas       : %s\n", bench::openblas_config().c_str());
  std::printf("modu f32 gemm  : %s (core/cpu/blas.cpp; MODU_CPU_SGEMM at configure time)\n", cpu::sgemm_library());
  std::printf("threads        : OpenMP %d, OpenBLAS %d (both set by --threads; env OMP_NUM_THREADS=%s)\n",
              omp_get_max_threads(), bench::openblas_threads(),
              std::getenv("OMP_NUM_THREADS") ? std::getenv("OMP_NUM_THREADS") : "unset");
  std::printf("load average   : %s (the machine is shared)\n", bench::loadavg().c_str());
  bench::ClockProbe clk = bench::measure_clock_ghz(threads);
  double ghz_med = stats_of(clk.add_ghz).median;
  std::printf("clock          : %.3f GHz = median over %d busy threads of the best of 200 ~1 ms wall-clock timings of\n"
              "                 1000 dependent register adds (1 cycle each); per thread:",
              ghz_med, threads);
  for (double g : clk.add_ghz) std::printf(" %.3f", g);
  std::printf("; imul-chain cross-check:");
  for (double g : clk.imul_ghz) std::printf(" %.3f", g);
  std::printf(" GHz\n");
  int lanes = bench::fma_lanes();
  double peak = threads * 2.0 /*FMA units*/ * lanes * 2.0 /*flops per FMA*/ * ghz_med;
  double fma_ceiling = bench::measure_fma_gflops(threads);
  std::printf("theoretical    : %.1f GFLOP/s = %d cores x 2 FMA units x %d fp32 lanes x 2 flops x %.3f GHz\n", peak,
              threads, lanes, ghz_med);
  std::printf("FMA ceiling    : %.1f GFLOP/s measured (16 independent %d-lane FMA chains per thread) = %.1f "
              "flops/cycle/core at the clock above\n",
              fma_ceiling, lanes, fma_ceiling / ghz_med / threads);
  std::printf("timing         : per case, %d interleaved repeats (modu, sgemm, alternating order), each >= %.2f s "
              "of %s time; median [min-max]\n\n",
              reps, min_time, clock_name == "cpu" ? "thread CPU" : "wall-clock");

  // ---- cases -------------------------------------------------------------------------------------
  Holder h;
  std::vector<Case> cases;
  for (int64_t n : {256, 512, 1024, 2048})
    if (!(quick && n > 1024)) cases.push_back(square(h, n));
  cases.push_back(mlp_fwd(h, 8, 256, 384, 1536));  // (8*256, 384) @ (384, 1536)
  cases.push_back(mlp_fwd(h, 4, 64, 768, 3072));   // (4*64, 768) @ (768, 3072), GPT-2 small fc
  cases.push_back(wgrad(h, 2048, 384, 1536));      // x.t() @ dy, the weight gradient of the first
  cases.push_back(dgrad(h, 2048, 384, 1536));      // dy @ W.t(), the input gradient
  cases.push_back(att_scores(h, 4 * 12, 256, 64));  // (B*NH, T, HS) @ (B*NH, HS, T)
  cases.push_back(att_values(h, 4 * 12, 256, 64));
  if (!only.empty()) {
    std::vector<Case> kept;
    for (auto& c : cases)
      if (("," + only + ",").find("," + c.name + ",") != std::string::npos) kept.push_back(std::move(c));
    cases.swap(kept);
  }

  std::vector<Result> results;
  for (Case& c : cases) {
    // Warm up; check that modu and the peer agree.
    Tensor out;
    for (int w = 0; w < 2; ++w) {
      out = c.modu();
      for (auto& p : c.peers) p.run();
    }
    Result r;
    r.name = c.name;
    r.shape = c.shape;
    r.diff = max_abs_diff(out, c.peer_out);
    out = Tensor();

    double t0 = tick();
    c.modu();
    double one = std::max(tick() - t0, 1e-6);
    int64_t iters = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(min_time / one)));

    auto time_modu = [&] {
      double s = tick();
      for (int64_t i = 0; i < iters; ++i) c.modu();
      return c.flops * iters / (tick() - s) / 1e9;
    };
    auto time_peer = [&](Peer& p) {
      double s = tick();
      for (int64_t i = 0; i < iters; ++i) p.run();
      return c.flops * iters / (tick() - s) / 1e9;
    };

    // Allocations per modu call (one untimed pass).
    AllocatorStats a0 = cpu_allocator()->stats();
    int64_t h0 = bench::heap_allocations();
    for (int64_t i = 0; i < iters; ++i) c.modu();
    AllocatorStats a1 = cpu_allocator()->stats();
    r.allocs_per_call = double(bench::heap_allocations() - h0) / iters;
    r.requests_per_call = double(a1.requests - a0.requests) / iters;

    std::vector<double> gm;
    std::vector<std::vector<double>> gp(c.peers.size());
    for (int k = 0; k < reps; ++k) {
      if (k % 2 == 0) {
        gm.push_back(time_modu());
        for (size_t j = 0; j < c.peers.size(); ++j) gp[j].push_back(time_peer(c.peers[j]));
      } else {
        for (size_t j = 0; j < c.peers.size(); ++j) gp[j].push_back(time_peer(c.peers[j]));
        gm.push_back(time_modu());
      }
    }
    size_t best = 0;
    for (size_t j = 1; j < c.peers.size(); ++j)
      if (stats_of(gp[j]).max > stats_of(gp[best]).max) best = j;
    std::vector<double> ratio(reps);
    for (int k = 0; k < reps; ++k) ratio[k] = gm[k] / gp[best][k];
    r.modu = stats_of(gm);
    r.peer = stats_of(gp[best]);
    r.ratio = stats_of(ratio);
    r.best_peer = c.peers[best].name;
    if (c.peers.size() > 1) {
      std::printf("  [%s, OpenBLAS variants:", c.name.c_str());
      for (size_t j = 0; j < c.peers.size(); ++j)
        std::printf(" %s %s GFLOP/s;", c.peers[j].name.c_str(), fmt_stats(stats_of(gp[j])).c_str());
      std::printf("]\n");
    }
    results.push_back(r);
  }

  // The measured OpenBLAS peak: the highest median of any case (a median, so one lucky repeat on a
  // shared machine does not set it).
  double blas_peak = 0;
  std::string blas_peak_case;
  for (auto& r : results)
    if (r.peer.median > blas_peak) {
      blas_peak = r.peer.median;
      blas_peak_case = r.name;
    }

  std::printf("\n%-24s %-37s %-20s %-20s %-20s %6s %5s %5s %5s %6s %6s %7s\n", "case", "shape", "modu GFLOP/s",
              "OpenBLAS GFLOP/s", "modu/OpenBLAS", "best/", "m%pk", "b%pk", "m%bpk", "new/op", "req/op", "max|d|");
  std::printf("%-24s %-37s %-20s %-20s %-20s %6s\n", "", "", "median [min-max]", "median [min-max]",
              "median [min-max]", "best");
  for (auto& r : results) {
    double best_ratio = r.modu.max / r.peer.max;
    std::printf("%-24s %-37s %-20s %-20s %-20s %6.3f %5.1f %5.1f %5.1f %6.2f %6.2f %7.1e%s\n", r.name.c_str(),
                r.shape.c_str(), fmt_stats(r.modu).c_str(), fmt_stats(r.peer).c_str(), fmt_stats(r.ratio, 3).c_str(),
                best_ratio, 100 * r.modu.median / peak, 100 * r.peer.median / peak, 100 * r.modu.median / blas_peak,
                r.allocs_per_call, r.requests_per_call, r.diff,
                (r.ratio.median >= 0.95 || best_ratio >= 0.95) ? "" : "  << below 0.95");
  }
  std::printf("\nmodu/OpenBLAS: per-repeat ratio of interleaved runs; best/best: ratio of the fastest repeats\n");
  std::printf("m%%pk / b%%pk: modu / OpenBLAS median as %% of the theoretical peak %.1f GFLOP/s "
              "(FMA ceiling measured %.1f)\n", peak, fma_ceiling);
  std::printf("m%%bpk: modu median as %% of the measured OpenBLAS peak %.1f GFLOP/s (the highest OpenBLAS median, "
              "%s)\n", blas_peak, blas_peak_case.c_str());
  std::printf("new/op: operator new calls per modu matmul; req/op: caching-allocator requests per call "
              "(1 = the output only: no operand was copied)\n");
  std::printf("OpenBLAS reference for batched cases: the faster of a plain sgemm loop and an OpenMP loop over the "
              "batch (OpenBLAS single-threaded inside)\n");
  std::printf("load average at the end: %s\n", bench::loadavg().c_str());
  int below = 0;
  for (auto& r : results) below += r.ratio.median < 0.95 && r.modu.max / r.peer.max < 0.95;
  std::printf("target modu/OpenBLAS >= 0.95: %d of %zu cases below on both the median and the best-of ratio\n",
              below, results.size());
  return 0;
}
