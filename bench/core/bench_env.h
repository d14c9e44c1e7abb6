// bench/core/bench_env.h — what the core benchmarks share: the environment they print (CPU model,
// thread counts, OpenBLAS and compiler versions), a measured core clock and fp32 FMA ceiling for the
// peak-FLOP figures, a wall clock and small statistics helpers (median and spread of repeats).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace modu::bench {

double now_s();         // steady clock, seconds
// CPU time of the calling thread, seconds: on a shared machine it excludes the time other processes
// ran, so single-threaded work can be timed undisturbed (within a few %) even under heavy load.
double thread_cpu_s();
std::string loadavg();  // /proc/loadavg's 1, 5 and 15 minute figures

struct Stats {
  double median = 0, min = 0, max = 0, p25 = 0, p75 = 0;
  int n = 0;
};
Stats stats_of(std::vector<double> v);

std::string cpu_model();       // /proc/cpuinfo "model name"
std::string compiler_version();
std::string openblas_config();  // openblas_get_config() + core name + threading model
int openblas_threads();

// Sets OpenMP's and OpenBLAS's thread counts together.
void set_threads(int n);

// Core clock, GHz, per thread, all `threads` threads busy at once: the best of `trials` short (~1 ms)
// wall-clock timings of a chain of 1000 dependent register adds (1 cycle each), and as a cross-check
// of dependent imuls (3 cycles each). Best-of: a chain cannot run faster than the clock, and on a
// shared machine some trials run undisturbed.
struct ClockProbe {
  std::vector<double> add_ghz, imul_ghz;
};
ClockProbe measure_clock_ghz(int threads, int trials = 200);

// Sustained fp32 FMA throughput, GFLOP/s summed over `threads` threads running independent FMA chains
// at once (16 accumulators, to cover latency) in the widest vector registers this binary was compiled
// for; per thread the best of `trials` short wall-clock timings.
double measure_fma_gflops(int threads, int trials = 300);
// fp32 lanes per vector register of the FMA ceiling test (16 for AVX-512, 8 for AVX2).
int fma_lanes();

}  // namespace modu::bench
