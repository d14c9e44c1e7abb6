// bench/gpu/bench_kernels.cpp — the per-kernel harness of the CUDA backend (validate, then time), so kernels
// can be improved one at a time. For every case at GPT-2 small's training shapes (B=8, T=1024, C=768,
// NH=12, V=50304): the op runs once on the CPU and once on CUDA from the same inputs and the largest
// relative error is printed (validate), then the CUDA op is timed with CUDA events over --iters runs after
// warm-up (time), and the achieved rate is printed against the card's limit: GB/s of the minimal traffic
// (every input read once, every output written once) against HBM bandwidth, or TFLOP/s against the dense
// tensor-core peak for GEMM-shaped work.
//
// Variants: the attention path is chosen per process by MODU_CUDA_ATTENTION (auto | gemm | flash | tc | cudnn; see
// core/cuda/attention_gemm.h); bench/gpu/run_kernels.sh runs the harness once per variant.
//
// Usage: bench_kernels [--only SUBSTRING] [--iters N] [--hbm-tbs X] [--peak-tflops X] [--no-validate]
//                      [--cpu-dry-run]   (small shapes, both sides on the CPU: checks the harness without a GPU)
// Prints one JSON line per case and direction (fwd, fwd+bwd = forward + backward of the op alone).
// Limits default from the device name: H200 4.8 TB/s, H100 3.35 TB/s, others 2.0 TB/s; 989 TFLOP/s (dense
// bf16, H100/H200) or 312 (A100).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/cuda/runtime.h"
#include "core/ops/ops.h"

using namespace modu;

namespace {

struct Options {
  std::string only;
  bool cpu_dry_run = false;  // --cpu-dry-run: small shapes, both sides on the CPU (checks the harness itself)
  int iters = 20;
  double hbm_tbs = 0, peak_tflops = 0;
  bool validate = true;
};

// One kernel case: inputs made on the CPU, the op applied to a list of tensors, the traffic and FLOPs of one forward
// and of one forward + backward.
struct Case {
  std::string name;
  DType dtype;
  std::function<std::vector<Tensor>(Generator&)> make_inputs;  // CPU tensors
  std::vector<int> grad_inputs;                                // which inputs get gradients
  std::function<Tensor(const std::vector<Tensor>&)> op;
  double fwd_bytes,
      bwd_bytes;                // minimal traffic (bwd: forward + backward together)
  double fwd_flops, bwd_flops;  // 0: a bandwidth-bound case
};

double max_relative_error(const Tensor& a, const Tensor& b) {
  Tensor x = a.to(Device::cpu()).to(DType::F64), y = b.to(Device::cpu()).to(DType::F64);
  std::vector<double> u = x.contiguous().to_vector<double>(), w = y.contiguous().to_vector<double>();
  double scale = 1e-6, worst = 0;
  for (double v : w) scale = std::max(scale, std::abs(v));
  for (size_t i = 0; i < u.size(); ++i) worst = std::max(worst, std::abs(u[i] - w[i]));
  return worst / scale;
}

std::vector<Tensor> on(const std::vector<Tensor>& xs, Device d, const std::vector<int>& grads) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < xs.size(); ++i) {
    Tensor t = (d.is_cpu() ? xs[i].clone() : xs[i].to(d)).detach();  // never aliases xs (adamw_ is in place)
    if (std::find(grads.begin(), grads.end(), static_cast<int>(i)) != grads.end()) t.set_requires_grad(true);
    out.push_back(t);
  }
  return out;
}

// Forward (and, with `backward`, the backward of a fixed upstream gradient); returns output + input grads.
std::vector<Tensor> run(const Case& c, std::vector<Tensor>& in, const Tensor& gy, bool backward) {
  std::vector<Tensor> res;
  if (!backward) {
    NoGradGuard no_grad;
    res.push_back(c.op(in));
    return res;
  }
  for (int i : c.grad_inputs) in[i].set_grad(Tensor());
  Tensor y = c.op(in);
  y.backward(gy);
  res.push_back(y.detach());
  for (int i : c.grad_inputs) res.push_back(in[i].grad());
  return res;
}

double time_ms(const std::function<void()>& f, int iters, int dev) {
  if (dev < 0) {  // CPU dry run: host clock
    f();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / iters;
  }
  cudaStream_t s = cuda::stream(dev);
  for (int i = 0; i < 3; ++i) f();
  cuda::synchronize(dev);
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  cudaEventRecord(a, s);
  for (int i = 0; i < iters; ++i) f();
  cudaEventRecord(b, s);
  cudaEventSynchronize(b);
  float ms = 0;
  cudaEventElapsedTime(&ms, a, b);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cuda::synchronize(dev);
  return ms / iters;
}

std::vector<Case> cases(bool small) {
  const int64_t B = small ? 2 : 8, T = small ? 64 : 1024, C = small ? 96 : 768, NH = small ? 2 : 12, HS = C / NH,
                V = small ? 1000 : 50304, N = B * T;
  std::vector<Case> out;
  for (DType dt : {DType::BF16, DType::F32}) {
    const double e = static_cast<double>(dtype_size(dt));
    const std::string tag(dtype_name(dt));
    // Attention: q, k, v (B, NH, T, HS); causal. FLOPs: the causal half of 4 B NH T^2 HS (fwd), 2.5x that for fwd +
    // bwd (the backward's 5 products, half each, over the forward's 2).
    double attn_fwd_flops = 4.0 * B * NH * T * T * HS / 2, io = 4.0 * B * NH * T * HS * e;
    out.push_back(Case{"attention_causal_" + tag,
                       dt,
                       [=](Generator& g) {
                         std::vector<Tensor> x;
                         for (int i = 0; i < 3; ++i) x.push_back(normal(Dims{B, NH, T, HS}, 0, 1, g, dt));
                         return x;
                       },
                       {0, 1, 2},
                       [](const std::vector<Tensor>& x) { return attention(x[0], x[1], x[2], true); },
                       io,
                       io + 4.0 * B * NH * T * HS * e + 3.0 * B * NH * T * HS * e,
                       attn_fwd_flops,
                       3.5 * attn_fwd_flops});
    // The same attention as the GPT-2 blocks run it: packed qkv (B, T, 3C) in, o (B, T, C) out (attention_packed).
    out.push_back(Case{"attention_packed_causal_" + tag,
                       dt,
                       [=](Generator& g) {
                         return std::vector<Tensor>{normal(Dims{B, T, 3 * C}, 0, 1, g, dt)};
                       },
                       {0},
                       [NH](const std::vector<Tensor>& x) { return attention_packed(x[0], NH, true); },
                       io,
                       io + 4.0 * B * NH * T * HS * e + 3.0 * B * NH * T * HS * e,
                       attn_fwd_flops,
                       3.5 * attn_fwd_flops});
    // LayerNorm over C of (N, C).
    out.push_back(Case{"layer_norm_" + tag,
                       dt,
                       [=](Generator& g) {
                         return std::vector<Tensor>{normal(Dims{N, C}, 0, 1, g, dt), normal(Dims{C}, 1, 0.1, g, dt),
                                                    normal(Dims{C}, 0, 0.1, g, dt)};
                       },
                       {0, 1, 2},
                       [](const std::vector<Tensor>& x) { return layer_norm(x[0], x[1], x[2]); },
                       2.0 * N * C * e,
                       2.0 * N * C * e + 3.0 * N * C * e,
                       0,
                       0});
    // GELU (tanh) of the MLP's hidden (N, 4C).
    out.push_back(Case{"gelu_tanh_" + tag,
                       dt,
                       [=](Generator& g) {
                         return std::vector<Tensor>{normal(Dims{N, 4 * C}, 0, 1, g, dt)};
                       },
                       {0},
                       [](const std::vector<Tensor>& x) { return gelu_tanh(x[0]); },
                       2.0 * N * 4 * C * e,
                       2.0 * N * 4 * C * e + 3.0 * N * 4 * C * e,
                       0,
                       0});
    // Linear (the MLP's c_fc): x (N, C) w (4C, C) b (4C).
    double lin_flops = 2.0 * N * C * 4 * C;
    out.push_back(Case{"linear_c_fc_" + tag,
                       dt,
                       [=](Generator& g) {
                         return std::vector<Tensor>{normal(Dims{N, C}, 0, 1, g, dt),
                                                    normal(Dims{4 * C, C}, 0, 0.02, g, dt),
                                                    normal(Dims{4 * C}, 0, 0.02, g, dt)};
                       },
                       {0, 1, 2},
                       [](const std::vector<Tensor>& x) { return linear(x[0], x[1], x[2]); },
                       (N * C + 4.0 * C * C + N * 4.0 * C) * e,
                       0,
                       lin_flops,
                       3 * lin_flops});
    // Cross-entropy over the padded vocabulary: logits (N, V) -> mean loss.
    out.push_back(Case{"cross_entropy_" + tag,
                       dt,
                       [=](Generator& g) {
                         Tensor t = uniform(Dims{N}, 0, static_cast<double>(V - 47), g).to(DType::I64);
                         return std::vector<Tensor>{normal(Dims{N, V}, 0, 1, g, dt), t};
                       },
                       {0},
                       [](const std::vector<Tensor>& x) { return cross_entropy(x[0], x[1]); },
                       N * V * e,
                       N * V * e * 3,
                       0,
                       0});
  }
  // AdamW over GPT-2 small's parameter count in one tensor: f32 param, grad, m, v (read 4, write 3).
  const int64_t P = small ? 100003 : 124475904;
  out.push_back(Case{"adamw_f32_124M",
                     DType::F32,
                     [=](Generator& g) {
                       return std::vector<Tensor>{normal(Dims{P}, 0, 0.02, g), normal(Dims{P}, 0, 1e-3, g),
                                                  normal(Dims{P}, 0, 1e-3, g), uniform(Dims{P}, 0, 1e-6, g)};
                     },
                     {},
                     [](const std::vector<Tensor>& x) {
                       Tensor p = x[0], m = x[2], v = x[3];
                       AdamWAttrs a;
                       a.lr = 1e-4;
                       a.weight_decay = 0.1;
                       adamw_(p, x[1], m, v, a);
                       return p;
                     },
                     7.0 * 4 * P,
                     0,
                     0,
                     0});
  // The same update over GPT-2 small's 148 parameter tensors (the trainer's case): one adamw_multi_ (one launch
  // for all, decayed matrices first) against one adamw_ per tensor (148 launches). Inputs: p.., g.., m.., v..;
  // the result checked is wte, the largest.
  {
    const int64_t C = small ? 32 : 768, V = small ? 1000 : 50304, Tn = small ? 64 : 1024, L = 12;
    std::vector<Dims> mats{Dims{V, C}, Dims{Tn, C}}, vecs;
    for (int64_t l = 0; l < L; ++l) {
      for (Dims d : {Dims{3 * C, C}, Dims{C, C}, Dims{4 * C, C}, Dims{C, 4 * C}}) mats.push_back(d);
      for (Dims d : {Dims{C}, Dims{C}, Dims{3 * C}, Dims{C}, Dims{C}, Dims{C}, Dims{4 * C}, Dims{C}}) vecs.push_back(d);
    }
    vecs.push_back(Dims{C});
    vecs.push_back(Dims{C});
    std::vector<Dims> shapes = mats;
    shapes.insert(shapes.end(), vecs.begin(), vecs.end());
    const size_t n = shapes.size(), decayed = mats.size();
    double numel = 0;
    for (const Dims& d : shapes) numel += static_cast<double>(d.numel());
    auto make = [=](Generator& g) {
      std::vector<Tensor> x;
      for (int part = 0; part < 4; ++part)
        for (const Dims& d : shapes)
          x.push_back(part == 3 ? uniform(d, 0, 1e-6, g) : normal(d, 0, part == 0 ? 0.02 : 1e-3, g));
      return x;
    };
    auto attrs = [] {
      AdamWAttrs a;
      a.lr = 1e-4;
      a.weight_decay = 0.1;
      return a;
    };
    out.push_back(Case{"adamw_multi_f32_gpt2_148_tensors",
                       DType::F32,
                       make,
                       {},
                       [=](const std::vector<Tensor>& x) {
                         std::vector<Tensor> p(x.begin(), x.begin() + n), g(x.begin() + n, x.begin() + 2 * n),
                             m(x.begin() + 2 * n, x.begin() + 3 * n), v(x.begin() + 3 * n, x.end());
                         AdamWAttrs a = attrs();
                         a.decayed = static_cast<int64_t>(decayed);
                         adamw_multi_(p, g, m, v, a);
                         return x[0];
                       },
                       7.0 * 4 * numel,
                       0,
                       0,
                       0});
    out.push_back(Case{"adamw_per_tensor_f32_gpt2_148_tensors",
                       DType::F32,
                       make,
                       {},
                       [=](const std::vector<Tensor>& x) {
                         AdamWAttrs a = attrs();
                         const double wd = a.weight_decay;
                         for (size_t i = 0; i < n; ++i) {
                           Tensor p = x[i], m = x[2 * n + i], v = x[3 * n + i];
                           a.weight_decay = i < decayed ? wd : 0.0;
                           adamw_(p, x[n + i], m, v, a);
                         }
                         return x[0];
                       },
                       7.0 * 4 * numel,
                       0,
                       0,
                       0});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--only")
      o.only = next();
    else if (a == "--iters")
      o.iters = std::stoi(next());
    else if (a == "--hbm-tbs")
      o.hbm_tbs = std::stod(next());
    else if (a == "--peak-tflops")
      o.peak_tflops = std::stod(next());
    else if (a == "--no-validate")
      o.validate = false;
    else if (a == "--cpu-dry-run")
      o.cpu_dry_run = true;
    else {
      std::fprintf(stderr,
                   "usage: %s [--only SUBSTRING] [--iters N] [--hbm-tbs X] "
                   "[--peak-tflops X] [--no-validate]\n",
                   argv[0]);
      return 2;
    }
  }
  if (!o.cpu_dry_run && !cuda::is_available()) {
    std::fprintf(stderr,
                 "bench_kernels: no CUDA device (%s); --cpu-dry-run checks the "
                 "harness on the CPU\n",
                 cuda::unavailable_reason());
    return 1;
  }
  const int dev = o.cpu_dry_run ? -1 : 0;
  const Device target = o.cpu_dry_run ? Device::cpu() : Device::cuda(0);
  std::string gpu = "cpu (dry run)";
  if (!o.cpu_dry_run) {
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, dev);
    gpu = prop.name;
  }
  if (o.hbm_tbs <= 0)
    o.hbm_tbs = gpu.find("H200") != std::string::npos ? 4.8 : gpu.find("H100") != std::string::npos ? 3.35 : 2.0;
  if (o.peak_tflops <= 0) o.peak_tflops = gpu.find("A100") != std::string::npos ? 312 : 989;
  const char* path = std::getenv("MODU_CUDA_ATTENTION");
  std::printf(
      "{\"gpu\": \"%s\", \"hbm_tbs\": %.2f, \"peak_tflops\": %.0f, "
      "\"attention_path\": \"%s\"}\n",
      gpu.c_str(), o.hbm_tbs, o.peak_tflops, path ? path : "auto");
  int failures = 0;
  for (const Case& c : cases(o.cpu_dry_run)) {
    if (!o.only.empty() && c.name.find(o.only) == std::string::npos) continue;
    try {
      Generator gen(7);
      std::vector<Tensor> host = c.make_inputs(gen);
      const bool has_bwd = !c.grad_inputs.empty();
      Generator gg(8);
      std::vector<Tensor> dev_in = on(host, target, c.grad_inputs);
      Tensor probe = c.op(dev_in).detach();
      Tensor gy_cpu = normal(probe.shape(), 0, 1, gg, probe.dtype());
      Tensor gy = gy_cpu.to(target);
      double err = -1;
      if (o.validate) {
        std::vector<Tensor> cpu_in = on(host, Device::cpu(), c.grad_inputs);
        std::vector<Tensor> d_in = on(host, target, c.grad_inputs);
        std::vector<Tensor> want = run(c, cpu_in, gy_cpu, has_bwd), got = run(c, d_in, gy, has_bwd);
        err = 0;
        for (size_t i = 0; i < want.size(); ++i) err = std::max(err, max_relative_error(got[i], want[i]));
      }
      for (int dir = 0; dir < (has_bwd ? 2 : 1); ++dir) {
        const bool bwd = dir == 1;
        std::vector<Tensor> in = on(host, target, c.grad_inputs);
        double ms = time_ms([&] { run(c, in, gy, bwd); }, o.iters, dev);
        double bytes = bwd ? c.bwd_bytes : c.fwd_bytes, flops = bwd ? c.bwd_flops : c.fwd_flops;
        std::printf(
            "{\"case\": \"%s\", \"dir\": \"%s\", \"ms\": %.4f, "
            "\"max_rel_err\": %.3e",
            c.name.c_str(), bwd ? "fwd+bwd" : "fwd", ms, err);
        if (flops > 0)
          std::printf(", \"tflops\": %.2f, \"of_peak\": %.3f", flops / ms / 1e9, flops / ms / 1e9 / o.peak_tflops);
        if (bytes > 0)
          std::printf(", \"gbs\": %.1f, \"of_hbm\": %.3f", bytes / ms / 1e6, bytes / ms / 1e6 / (o.hbm_tbs * 1e3));
        std::printf("}\n");
        std::fflush(stdout);
      }
    } catch (const std::exception& ex) {
      std::printf("{\"case\": \"%s\", \"error\": \"%s\"}\n", c.name.c_str(), ex.what());
      ++failures;
    }
  }
  return failures ? 1 : 0;
}
