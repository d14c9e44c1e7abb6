// bench/recipes/bench_gpt_cpu.cpp — a GPT-2 training step on the CPU: tokens/s, seconds per step and
// peak RSS, for the shapes of the GPT issue (6 layers x 384 wide x 6 heads, T=256, B=8; GPT-2 124M at
// B=4, T=64). One step = forward, loss, backward, clip 1.0, AdamW. Random tokens; median of the timed
// steps after warm-up. One configuration per process, so the peak RSS is that run's. JSON on stdout;
// bench/recipes/run_gpt_cpu.sh runs it beside PyTorch (bench_gpt_cpu.py) and prints the ratios.
#include <omp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"

using namespace modu;

int main(int argc, char** argv) {
  int64_t L = 6, C = 384, NH = 6, T = 256, B = 8, V = 50257, steps = 5, warmup = 2;
  bool profile = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    int64_t v = std::stoll(argv[i + 1]);
    if (k == "--layers") L = v;
    else if (k == "--width") C = v;
    else if (k == "--heads") NH = v;
    else if (k == "--T") T = v;
    else if (k == "--B") B = v;
    else if (k == "--vocab") V = v;
    else if (k == "--steps") steps = v;
    else if (k == "--warmup") warmup = v;
    else if (k == "--profile") profile = v != 0;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  gpt::GptConfig c;
  c.n_layer = L;
  c.n_embd = C;
  c.n_head = NH;
  c.block_size = std::max<int64_t>(T, 64);
  c.vocab_size = V;
  gpt::GPT model(c);
  model.init_weights(1);
  std::vector<nn::ParamRef> params = model.parameters();
  optim::AdamW opt(params, {6e-4, 0.9, 0.95, 1e-8, 0.1});
  Generator g(3);
  std::vector<int64_t> ids(static_cast<size_t>(B * (T + 1)));
  for (auto& x : ids) x = static_cast<int64_t>(g.next_below(static_cast<uint64_t>(V)));
  Tensor data = Tensor::from_vector(ids, Dims{B, T + 1});
  Tensor x = data.slice(1, 0, T).contiguous(), y = data.slice(1, 1, T + 1).contiguous();
  std::vector<double> times;
  double loss_first = 0, loss_last = 0;
  for (int64_t s = 0; s < warmup + steps; ++s) {
    bool prof = profile && s == warmup + steps - 1;
    if (prof) set_op_profiling(true);
    auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    Tensor loss = model.loss(model.forward(x), y);
    loss.backward();
    opt.step(6e-4, optim::clip_coefficient(optim::grad_norm(params), 1.0));
    double l = loss.item();
    double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (prof) {
      set_op_profiling(false);
      std::fprintf(stderr, "%s", op_profile_report(25).c_str());
    }
    if (s == 0) loss_first = l;
    loss_last = l;
    if (s >= warmup) times.push_back(dt);
  }
  std::sort(times.begin(), times.end());
  double med = times[times.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf(
      "{\"impl\": \"modu\", \"layers\": %lld, \"width\": %lld, \"heads\": %lld, \"B\": %lld, \"T\": %lld, "
      "\"threads\": %d, \"params\": %lld, \"s_per_step\": %.4f, \"s_min\": %.4f, \"s_max\": %.4f, "
      "\"tokens_per_s\": %.1f, \"peak_rss_mb\": %.1f, \"first_loss\": %.4f, \"last_loss\": %.4f}\n",
      static_cast<long long>(L), static_cast<long long>(C), static_cast<long long>(NH), static_cast<long long>(B),
      static_cast<long long>(T), omp_get_max_threads(), static_cast<long long>(model.parameter_count()), med,
      times.front(), times.back(), static_cast<double>(B * T) / med, static_cast<double>(ru.ru_maxrss) / 1024.0,
      loss_first, loss_last);
  return 0;
}
