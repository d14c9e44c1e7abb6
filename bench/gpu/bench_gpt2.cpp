// bench/gpu/bench_gpt2.cpp — GPT-2 124M training steps on one device: tokens/s and MFU.
//
// One step = forward, cross-entropy, backward, global-norm clip, AdamW, on a fixed random batch
// (B, T). Timed with the host clock after the step's loss and gradient norm were read back (each a
// device synchronisation), median over the timed steps after warm-up. MFU uses the llm.c formula
// 6N + 6LCT FLOPs per token (N counts the padded vocabulary) against --peak-tflops (989 for H100/H200
// dense bf16). --dtype autocast: bf16 products with f32 master weights (nn/autocast.h, what
// train.dtype = "bf16" does); --dtype bf16 stores parameters and activations in bf16 (f32 AdamW
// moments, no f32 master copy).
// Prints one JSON line per run; bench/gpu/run_gpt2.sh puts it beside PyTorch's figures.
// --profile 1 (or sync) adds one step with every op timed alone (device synchronised around each), --profile
// events one timed by CUDA events with nothing waiting (core/ops/dispatch.h); the per-op table goes to stderr.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "nn/autocast.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"

using namespace modu;

int main(int argc, char** argv) {
  int64_t B = 8, T = 1024, warmup = 3, steps = 8;
  std::string dtype = "f32", device = "cuda";
  double peak_tflops = 989.0;
  int64_t layers = 12;
  ProfileMode profile = ProfileMode::Off;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--B") B = std::stoll(v);
    else if (k == "--T") T = std::stoll(v);
    else if (k == "--steps") steps = std::stoll(v);
    else if (k == "--warmup") warmup = std::stoll(v);
    else if (k == "--dtype") dtype = v;
    else if (k == "--device") device = v;
    else if (k == "--peak-tflops") peak_tflops = std::stod(v);
    else if (k == "--layers") layers = std::stoll(v);
    else if (k == "--profile")
      profile = v == "events" ? ProfileMode::Events : (v == "0" ? ProfileMode::Off : ProfileMode::Synchronised);
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  try {
    Device dev = parse_device(device);
    gpt::GptConfig c;  // GPT-2 small
    c.n_layer = layers;
    c.block_size = std::max<int64_t>(T, 1024);
    gpt::GPT model(c);
    model.init_weights(1);
    model.to(dev);
    if (dtype == "bf16") {
      NoGradGuard no_grad;
      for (const nn::ParamRef& p : model.parameters()) {
        Tensor t = p.tensor->detach().to(DType::BF16);
        t.set_requires_grad(true);
        *p.tensor = t;
      }
    } else if (dtype != "f32" && dtype != "autocast") {
      std::fprintf(stderr, "--dtype must be f32, bf16 or autocast\n");
      return 2;
    }
    DType compute = dtype == "autocast" ? DType::BF16 : DType::F32;
    optim::AdamW opt(model.parameters(), {6e-4, 0.9, 0.95, 1e-8, 0.1});
    Generator g(3);
    std::vector<int64_t> ids(static_cast<size_t>(B * (T + 1)));
    for (auto& x : ids) x = static_cast<int64_t>(g.next_below(static_cast<uint64_t>(c.vocab_size)));
    Tensor data = Tensor::from_vector(ids, Dims{B, T + 1});
    Tensor x = data.slice(1, 0, T).contiguous().to(dev), y = data.slice(1, 1, T + 1).contiguous().to(dev);
    std::vector<nn::ParamRef> params = model.parameters();
    std::vector<double> times, host_times;
    double first_loss = 0, last_loss = 0;
    int64_t allocs_before = 0;
    for (int64_t s = 0; s < warmup + steps; ++s) {
      if (s == warmup) allocs_before = allocator_for(dev)->stats().system_allocs;
      auto t0 = std::chrono::steady_clock::now();
      model.zero_grad();
      Tensor loss;
      {
        nn::AutocastGuard autocast(compute);
        loss = model.loss(model.forward(x), y);
      }
      loss.backward();
      // Host time to enqueue forward and backward (nothing in them waits for the device): when it is close
      // to the step time, the step is bound by the host's per-op cost, not by the GPU.
      double enqueue = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      opt.step(6e-4, optim::clip_coefficient(optim::grad_norm(params), 1.0));
      double l = loss.item();  // synchronises
      double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s == 0) first_loss = l;
      last_loss = l;
      if (s >= warmup) times.push_back(dt), host_times.push_back(enqueue);
    }
    if (profile != ProfileMode::Off) {  // one more step, every op timed (core/ops/dispatch.h: the two modes)
      reset_op_profile();
      set_op_profiling(profile);
      model.zero_grad();
      Tensor loss;
      {
        nn::AutocastGuard autocast(compute);
        loss = model.loss(model.forward(x), y);
      }
      loss.backward();
      opt.step(6e-4, optim::clip_coefficient(optim::grad_norm(params), 1.0));
      loss.item();
      std::fprintf(stderr, "%s", op_profile_report(40).c_str());
      set_op_profiling(false);
    }
    std::sort(times.begin(), times.end());
    double med = times[times.size() / 2];
    std::sort(host_times.begin(), host_times.end());
    double host_med = host_times[host_times.size() / 2];
    double tok_s = static_cast<double>(B * T) / med;
    double flops = static_cast<double>(model.flops_per_token(T)) * tok_s;
    int64_t allocs = allocator_for(dev)->stats().system_allocs - allocs_before;
    std::printf(
        "{\"impl\": \"modu\", \"device\": \"%s\", \"dtype\": \"%s\", \"B\": %lld, \"T\": %lld, \"params\": %lld, "
        "\"ms_per_step\": %.2f, \"tokens_per_s\": %.0f, \"mfu\": %.4f, \"first_loss\": %.4f, \"last_loss\": %.4f, "
        "\"device_allocs_after_warmup\": %lld, \"host_enqueue_fwd_bwd_ms\": %.2f}\n",
        dev.str().c_str(), dtype.c_str(), static_cast<long long>(B), static_cast<long long>(T),
        static_cast<long long>(model.parameter_count()), med * 1e3, tok_s, flops / (peak_tflops * 1e12), first_loss,
        last_loss, static_cast<long long>(allocs), host_med * 1e3);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpt2: %s\n", e.what());
    return 1;
  }
  return 0;
}
