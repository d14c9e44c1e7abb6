// modu_bench_dispatch: per-op cost of modu's op path (front end, dispatcher, shape rule, allocation,
// kernel, release) on tiny tensors, where the overhead is all there is, and of a tiny MLP training
// step (forward + backward with requires_grad). bench_dispatch.py measures the same list in PyTorch
// eager and run_dispatch.sh prints both side by side with the ratio (ARCHITECTURE.md §10).
// Also counts, in steady state, the heap allocations per op (global operator new, replaced in this
// binary by alloc_counter.cpp) and the caching allocator's requests and system allocations per op.
//   modu_bench_dispatch [--threads N] [--reps R] [--min-time S] [--json PATH] [--only NAME[,NAME...]]
// (--only picks ops by name, e.g. for a profiler run: valgrind --tool=callgrind ... --only mlp_step)
// Each op: a warm-up, then R repeats of a loop of at least S seconds; ns/op per repeat, in the calling
// thread's CPU time (every op here runs on the calling thread, and CPU time ignores the other
// processes of a shared machine) and in wall-clock time.
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/core/alloc_counter.h"
#include "bench/core/bench_env.h"
#include "core/allocator.h"
#include "core/ops/ops.h"

using namespace modu;
using modu::bench::now_s;
using modu::bench::stats_of;

namespace {

Tensor filled(const Dims& shape, float seed, bool grad = false) {
  std::vector<float> v(static_cast<size_t>(shape.numel()));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(seed + 0.37f * static_cast<float>(i)) * 0.5f;
  Tensor t = Tensor::from_vector(v, shape);
  if (grad) t.set_requires_grad(true);
  return t;
}

struct OpCase {
  std::string name, shape;
  std::function<void()> run;
};

struct OpResult {
  std::string name, shape;
  std::vector<double> ns, wall_ns;  // thread CPU time, wall-clock time
  double heap_per_op = 0, requests_per_op = 0, system_per_op = 0;
  double dispatches_per_op = 0;  // ops through the dispatcher per call (forward and backward)
};

int64_t total_dispatches() {
  int64_t n = 0;
  for (const auto& per_device : dispatch_counters().calls)
    for (int64_t c : per_device) n += c;
  return n;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  int threads = omp_get_max_threads();
  int reps = 11;
  double min_time = 0.03;
  std::string json_path, only;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "modu_bench_dispatch: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") threads = std::stoi(next());
    else if (a == "--reps") reps = std::stoi(next());
    else if (a == "--min-time") min_time = std::stod(next());
    else if (a == "--json") json_path = next();
    else if (a == "--only") only = next();
    else {
      std::fprintf(stderr,
                   "usage: modu_bench_dispatch [--threads N] [--reps R] [--min-time S] [--json PATH] "
                   "[--only NAME[,NAME...]]\n");
      return 2;
    }
  }
  bench::set_threads(threads);
  autograd::install();

  // ---- the op list (bench_dispatch.py mirrors it, same names) -------------------------------------
  std::vector<OpCase> cases;
  for (int which = 0; which < 2; ++which) {
    Dims s = which == 0 ? Dims{4} : Dims{32, 32};
    std::string sh = which == 0 ? "(4,)" : "(32, 32)";
    Tensor a = filled(s, 0.1f), b = filled(s, 0.7f);
    cases.push_back({"add", sh, [a, b] { add(a, b); }});
    cases.push_back({"mul", sh, [a, b] { mul(a, b); }});
    cases.push_back({"add_scalar", sh, [a] { add_scalar(a, 1.5); }});
    cases.push_back({"exp", sh, [a] { exp(a); }});
    cases.push_back({"sum", sh, [a] { sum(a); }});
  }
  {
    Tensor a = filled({8, 8}, 0.2f), b = filled({8, 8}, 0.9f);
    cases.push_back({"matmul", "(8, 8)@(8, 8)", [a, b] { matmul(a, b); }});
    Tensor t = filled({32, 32}, 0.3f);
    cases.push_back({"transpose_view", "(32, 32).transpose(0, 1)", [t] { t.transpose(0, 1); }});
  }
  {
    // Tiny MLP step: x (4, 16) -> linear(32) -> relu -> linear(8) -> mean(y*y); backward; grads reset.
    Tensor x = filled({4, 16}, 0.4f);
    Tensor w1 = filled({32, 16}, 1.1f, true), b1 = filled({32}, 1.3f, true);
    Tensor w2 = filled({8, 32}, 1.7f, true), b2 = filled({8}, 1.9f, true);
    cases.push_back({"mlp_step", "x(4,16) 16-32-8 fwd+bwd", [=]() mutable {
                       Tensor h = relu(linear(x, w1, b1));
                       Tensor y = linear(h, w2, b2);
                       Tensor loss = mean(mul(y, y));
                       loss.backward();
                       for (Tensor* p : {&w1, &b1, &w2, &b2}) p->set_grad(Tensor());
                     }});
  }

  if (!only.empty()) {
    std::vector<OpCase> kept;
    for (auto& c : cases)
      if (("," + only + ",").find("," + c.name + ",") != std::string::npos) kept.push_back(std::move(c));
    cases.swap(kept);
  }

  const char* wp = std::getenv("OMP_WAIT_POLICY");
  std::printf("== modu per-op dispatch cost on tiny f32 tensors ==\n");
  std::printf("cpu      : %s\n", bench::cpu_model().c_str());
  std::printf("compiler : %s\n", bench::compiler_version().c_str());
  std::printf("openblas : %s\n", bench::openblas_config().c_str());
  std::printf("threads  : OpenMP %d, OpenBLAS %d; OMP_WAIT_POLICY=%s\n", omp_get_max_threads(),
              bench::openblas_threads(), wp ? wp : "unset");
  std::printf("load avg : %s\n", bench::loadavg().c_str());
  std::printf("timing   : warm-up, then %d repeats of >= %.3f s each; ns/op in thread CPU time: median [p25-p75] "
              "(min); wall: median\n\n",
              reps, min_time);
  std::printf("%-16s %-26s %28s %10s %8s %9s %8s %6s\n", "op", "shape", "cpu ns/op", "wall ns/op", "new/op",
              "alloc/op", "sys/op", "ops");

  std::vector<OpResult> results;
  for (OpCase& c : cases) {
    for (int i = 0; i < 200; ++i) c.run();
    double t0 = bench::thread_cpu_s();
    int64_t probe = 200;
    for (int64_t i = 0; i < probe; ++i) c.run();
    double per = std::max((bench::thread_cpu_s() - t0) / probe, 1e-9);
    int64_t iters = std::max<int64_t>(100, static_cast<int64_t>(min_time / per));

    OpResult r;
    r.name = c.name;
    r.shape = c.shape;
    // Steady-state allocation counts over one untimed pass.
    AllocatorStats a0 = cpu_allocator()->stats();
    int64_t d0 = total_dispatches();
    int64_t h0 = bench::heap_allocations();
    if (const char* tr = std::getenv("MODU_BENCH_TRACE_NEW")) {
      std::fprintf(stderr, "=== %s %s: backtraces of the next %s operator new calls\n", c.name.c_str(),
                   c.shape.c_str(), tr);
      bench::trace_next_allocations(std::atoi(tr));
    }
    for (int64_t i = 0; i < iters; ++i) c.run();
    bench::trace_next_allocations(0);
    AllocatorStats a1 = cpu_allocator()->stats();
    r.heap_per_op = double(bench::heap_allocations() - h0) / iters;
    r.requests_per_op = double(a1.requests - a0.requests) / iters;
    r.system_per_op = double(a1.system_allocs - a0.system_allocs) / iters;
    r.dispatches_per_op = double(total_dispatches() - d0) / iters;

    for (int k = 0; k < reps; ++k) {
      double w = now_s(), s = bench::thread_cpu_s();
      for (int64_t i = 0; i < iters; ++i) c.run();
      r.ns.push_back((bench::thread_cpu_s() - s) / iters * 1e9);
      r.wall_ns.push_back((now_s() - w) / iters * 1e9);
    }
    auto st = stats_of(r.ns), sw = stats_of(r.wall_ns);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.0f [%.0f-%.0f] (%.0f)", st.median, st.p25, st.p75, st.min);
    std::printf("%-16s %-26s %28s %10.0f %8.2f %9.2f %8.3f %6.1f\n", c.name.c_str(), c.shape.c_str(), buf,
                sw.median, r.heap_per_op, r.requests_per_op, r.system_per_op, r.dispatches_per_op);
    results.push_back(std::move(r));
  }
  std::printf("\nnew/op: global operator new calls per op; alloc/op: caching-allocator requests per op "
              "(outputs); sys/op: of those, system allocations (0 in steady state); ops: ops through the "
              "dispatcher per call\n");

  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "modu_bench_dispatch: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "{\"impl\": \"modu\", \"setting\": \"OMP_WAIT_POLICY=%s\", \"threads\": %d, ", wp ? wp : "unset",
                 omp_get_max_threads());
    std::fprintf(f, "\"env\": {\"cpu\": \"%s\", \"compiler\": \"%s\", \"openblas\": \"%s\"}, \"ops\": [",
                 json_escape(bench::cpu_model()).c_str(), json_escape(bench::compiler_version()).c_str(),
                 json_escape(bench::openblas_config()).c_str());
    for (size_t i = 0; i < results.size(); ++i) {
      const OpResult& r = results[i];
      std::fprintf(f, "%s\n  {\"name\": \"%s\", \"shape\": \"%s\", \"heap_allocs_per_op\": %.4f, "
                      "\"allocator_requests_per_op\": %.4f, \"system_allocs_per_op\": %.4f, \"dispatches_per_op\": %.2f, "
                      "\"ns\": [",
                   i ? "," : "", r.name.c_str(), json_escape(r.shape).c_str(), r.heap_per_op, r.requests_per_op,
                   r.system_per_op, r.dispatches_per_op);
      for (size_t k = 0; k < r.ns.size(); ++k) std::fprintf(f, "%s%.2f", k ? ", " : "", r.ns[k]);
      std::fprintf(f, "], \"wall_ns\": [");
      for (size_t k = 0; k < r.wall_ns.size(); ++k) std::fprintf(f, "%s%.2f", k ? ", " : "", r.wall_ns[k]);
      std::fprintf(f, "]}");
    }
    std::fprintf(f, "\n]}\n");
    std::fclose(f);
  }
  return 0;
}
