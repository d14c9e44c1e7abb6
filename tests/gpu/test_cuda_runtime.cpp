// tests/gpu/test_cuda_runtime.cpp — CUDA runtime checks of the backend_parity binary:
//   philox     raw Philox4x32-10 words on the GPU equal core/rng.h's, bit for bit;
//   uniform    uniform() on CUDA equals the CPU bit for bit (f32, f64, bf16) on [0, 1), and within an ulp
//              elsewhere; normal() within 2e-6 (logf/cosf/sinf may differ by an ulp between CUDA and glibc);
//   dropout    the same mask and values on both devices, bit for bit;
//   factories  full / arange on CUDA equal the CPU for every dtype they support;
//   allocator  a repeated forward+backward loop makes no new cudaMalloc after warm-up;
//   errors     MODU_CUDA_CHECK and the launch check report file:line, the call and the CUDA error string;
//              a bad index found by a kernel is raised at the next synchronisation, then cleared.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"
#include "core/ops/dispatch.h"
#include "core/ops/ops.h"
#include "tests/gpu/parity_main.h"

namespace modu::gputest {
namespace {

const Device kGpu = Device::cuda(0);

std::vector<unsigned char> bytes_of(const Tensor& t) {
  Tensor c = t.to(Device::cpu()).contiguous();
  std::vector<unsigned char> b(c.nbytes());
  if (!b.empty()) std::memcpy(b.data(), c.data_ptr(), b.size());
  return b;
}

bool check_philox() {
  struct KC {
    uint64_t key, counter;
  };
  const KC cases[] = {{0, 0}, {splitmix64(1), 12345}, {0xdeadbeefcafebabeull, (uint64_t(1) << 32) - 3}};
  int64_t blocks = 4096, mismatches = 0;
  for (const KC& kc : cases) {
    cuda::DeviceGuard g(0);
    std::vector<uint32_t> words = cuda::philox_words(kc.key, kc.counter, blocks);
    for (int64_t b = 0; b < blocks; ++b) {
      Philox4x32 r = philox4x32_10(kc.counter + static_cast<uint64_t>(b), kc.key);
      for (int k = 0; k < 4; ++k) mismatches += words[static_cast<size_t>(b * 4 + k)] != r.w[k];
    }
  }
  return report(mismatches == 0, "philox: CUDA words equal the CPU's",
                std::to_string(3 * blocks * 4) + " words, " + std::to_string(mismatches) + " differ");
}

bool check_uniform_normal() {
  bool ok = true;
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    Generator a(5, 9), b(5, 9);
    Tensor c = uniform(Dims{1001}, 0, 1, a, dt), g = uniform(Dims{1001}, 0, 1, b, dt, kGpu);
    bool same = bytes_of(c) == bytes_of(g) && a.counter() == b.counter();
    ok &= report(same, std::string("uniform [0, 1) ") + std::string(dtype_name(dt)) + " bit-identical", "");
  }
  {
    Generator a(11, 3), b(11, 3);
    Tensor c = uniform(Dims{1001}, -2, 3, a), g = uniform(Dims{1001}, -2, 3, b, DType::F32, kGpu);
    std::vector<float> x = c.to_vector<float>(), y = g.to_vector<float>();
    int64_t exact = 0;
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      exact += x[i] == y[i];
      worst = std::max(worst, std::abs(static_cast<double>(x[i]) - y[i]));
    }
    ok &= report(worst <= 5e-7, "uniform [-2, 3) f32",
                 std::to_string(exact) + "/1001 bit-identical, max |diff| " + std::to_string(worst));
  }
  {
    Generator a(13, 4), b(13, 4);
    Tensor c = normal(Dims{1001}, 1, 2, a), g = normal(Dims{1001}, 1, 2, b, DType::F32, kGpu);
    std::vector<float> x = c.to_vector<float>(), y = g.to_vector<float>();
    int64_t exact = 0;
    double worst = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      exact += x[i] == y[i];
      worst = std::max(worst, std::abs(static_cast<double>(x[i]) - y[i]) / std::max(1.0, std::abs(static_cast<double>(x[i]))));
    }
    ok &= report(worst <= 2e-6, "normal f32 (CUDA vs glibc logf/cosf/sinf)",
                 std::to_string(exact) + "/1001 bit-identical, max rel diff " + std::to_string(worst));
  }
  return ok;
}

bool check_dropout() {
  bool ok = true;
  for (DType dt : {DType::F32, DType::BF16}) {
    Generator gx(3, 1);
    Tensor x = uniform(Dims{7, 9}, -1, 1, gx, dt);
    Generator a(21, stream_id("dropout")), b(21, stream_id("dropout"));
    Tensor c = dropout(x, 0.3, a), g = dropout(x.to(kGpu), 0.3, b);
    ok &= report(bytes_of(c) == bytes_of(g), std::string("dropout ") + std::string(dtype_name(dt)) + " bit-identical",
                 "");
  }
  return ok;
}

bool check_factories() {
  int bad = 0;
  std::string which;
  for (int i = 0; i < kNumDTypes; ++i) {
    DType dt = static_cast<DType>(i);
    Tensor c = Tensor::full(Dims{3, 5}, 2.5, dt), g = Tensor::full(Dims{3, 5}, 2.5, dt, kGpu);
    if (bytes_of(c) != bytes_of(g)) ++bad, which += " full:" + std::string(dtype_name(dt));
    Tensor z = Tensor::zeros(Dims{4}, dt, kGpu);
    if (bytes_of(Tensor::zeros(Dims{4}, dt)) != bytes_of(z)) ++bad, which += " zeros:" + std::string(dtype_name(dt));
    if (dt != DType::Bool) {
      Tensor ca = Tensor::arange(37, dt), ga = Tensor::arange(37, dt, kGpu);
      if (bytes_of(ca) != bytes_of(ga)) ++bad, which += " arange:" + std::string(dtype_name(dt));
    }
  }
  return report(bad == 0, "factories: full / zeros / arange on CUDA equal the CPU for every dtype",
                bad ? "differ:" + which : "");
}

// The op profiler's events mode: CUDA ops are bracketed by events and nothing waits; the report reads them.
// Two products of known sizes: the larger must take longer, both are counted once, and the device span covers
// them.
bool check_profile_events() {
  Generator gen(5, 1);
  Tensor small = uniform(Dims{64, 64}, -1, 1, gen, DType::F32, kGpu);
  Tensor big = uniform(Dims{2048, 2048}, -1, 1, gen, DType::F32, kGpu);
  cuda::synchronize(0);
  reset_op_profile();
  set_op_profiling(ProfileMode::Events);
  Tensor a = matmul(small, small);
  Tensor b = relu(big);
  Tensor c = matmul(big, big);
  resolve_op_profile();
  set_op_profiling(ProfileMode::Off);
  const OpProfile& p = op_profile();
  const int cu = static_cast<int>(DeviceType::CUDA);
  const double mm = p.seconds[cu][static_cast<int>(OpId::matmul)], r = p.seconds[cu][static_cast<int>(OpId::relu)];
  const int64_t mm_calls = p.calls[cu][static_cast<int>(OpId::matmul)],
                r_calls = p.calls[cu][static_cast<int>(OpId::relu)];
  const double span = p.span_seconds[cu];
  // 2 * 2048^3 FLOPs in f32 take well over the 64^3 product and an elementwise pass over 4M floats.
  bool ok = mm_calls == 2 && r_calls == 1 && mm > 0 && r > 0 && span >= 0.99 * (mm + r) && mm > r;
  char d[200];
  std::snprintf(d, sizeof d, "matmul %lld calls %.3f ms, relu %lld calls %.3f ms, span %.3f ms",
                static_cast<long long>(mm_calls), mm * 1e3, static_cast<long long>(r_calls), r * 1e3, span * 1e3);
  reset_op_profile();
  return report(ok, "profiler: events mode times CUDA ops without waiting", d);
}

bool check_allocator() {
  const char* nc = std::getenv("MODU_CUDA_NO_CACHING");
  if (nc && *nc && std::strcmp(nc, "0") != 0) {
    skip("allocator", "MODU_CUDA_NO_CACHING is set: every tensor goes to cudaMalloc by design");
    return true;
  }
  Allocator* alloc = allocator_for(kGpu);
  Generator gen(1, 2);
  Tensor x = uniform(Dims{64, 96}, -1, 1, gen, DType::F32, kGpu).set_requires_grad(true);
  Tensor w = uniform(Dims{128, 96}, -0.1, 0.1, gen, DType::F32, kGpu).set_requires_grad(true);
  Tensor b = uniform(Dims{128}, -0.1, 0.1, gen, DType::F32, kGpu).set_requires_grad(true);
  Tensor target = Tensor::from_vector<int64_t>(std::vector<int64_t>(64, 3), Dims{64}).to(kGpu);
  auto step = [&] {
    Tensor h = gelu_tanh(linear(x, w, b));
    Tensor loss = cross_entropy(layer_norm(h, Tensor::ones(Dims{128}, DType::F32, kGpu),
                                           Tensor::zeros(Dims{128}, DType::F32, kGpu)),
                                target);
    loss.backward();
    x.set_grad(Tensor());
    w.set_grad(Tensor());
    b.set_grad(Tensor());
  };
  for (int i = 0; i < 3; ++i) step();
  cuda::synchronize(0);
  AllocatorStats before = alloc->stats();
  for (int i = 0; i < 20; ++i) step();
  cuda::synchronize(0);
  AllocatorStats after = alloc->stats();
  int64_t fresh = after.system_allocs - before.system_allocs;
  return report(fresh == 0, "allocator: no cudaMalloc after warm-up (20 forward+backward steps)",
                std::to_string(fresh) + " new cudaMalloc, " + std::to_string(after.requests - before.requests) +
                    " requests, " + std::to_string(after.cache_hits - before.cache_hits) + " cache hits, peak " +
                    std::to_string(after.peak_bytes_in_use) + " bytes");
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

bool check_errors() {
  bool ok = true;
  {
    std::string msg;
    int line = __LINE__ + 2;
    try {
      MODU_CUDA_CHECK(cudaSetDevice(1 << 20));
    } catch (const Error& e) {
      msg = e.what();
    }
    std::string where = std::string("test_cuda_runtime.cpp:") + std::to_string(line);
    bool good = contains(msg, where) && contains(msg, "cudaSetDevice(1 << 20)") &&
                contains(msg, cudaGetErrorString(cudaErrorInvalidDevice));
    ok &= report(good, "errors: MODU_CUDA_CHECK names file:line, the call and the CUDA error", msg.empty() ? "no exception" : msg);
  }
  {
    std::string msg;
    try {
      cuda::DeviceGuard g(0);
      cuda::bad_launch_for_test();
    } catch (const Error& e) {
      msg = e.what();
    }
    // An over-sized block is refused as an invalid configuration or (CUDA 13) an invalid argument.
    bool good = contains(msg, "core/cuda/copy.cu:") && contains(msg, "never_launched_kernel") &&
                (contains(msg, cudaGetErrorString(cudaErrorInvalidConfiguration)) ||
                 contains(msg, cudaGetErrorString(cudaErrorInvalidValue)));
    ok &= report(good, "errors: the launch check names file:line and the CUDA error", msg.empty() ? "no exception" : msg);
  }
  {
    std::string msg;
    Tensor wt = Tensor::ones(Dims{7, 5}, DType::F32, kGpu);
    try {
      Tensor idx = Tensor::from_vector<int64_t>({1, 9, 2}, Dims{3}).to(kGpu);
      Tensor y = embedding(wt, idx);
      Tensor host = y.to(Device::cpu());
    } catch (const Error& e) {
      msg = e.what();
    }
    bool good = contains(msg, "embedding: index 9 at position 1 is out of range [0, 7)");
    // The slot is cleared: the next synchronisation is clean.
    bool clean = true;
    try {
      Tensor idx = Tensor::from_vector<int64_t>({1, 6, 2}, Dims{3}).to(kGpu);
      clean = sum(embedding(wt, idx)).item() == 15.0;
    } catch (const Error& e) {
      clean = false;
      msg += std::string(" | then: ") + e.what();
    }
    ok &= report(good && clean, "errors: a bad index found on the GPU is raised at the next synchronisation",
                 msg.empty() ? "no exception" : msg);
  }
  return ok;
}

}  // namespace

int run_runtime_checks(const Options& opt) {
  int failures = 0;
  auto guarded = [&](const char* name, bool (*fn)()) {
    try {
      failures += !fn();
    } catch (const std::exception& e) {
      report(false, name, std::string("threw: ") + e.what());
      ++failures;
    }
  };
  guarded("philox", check_philox);
  guarded("uniform/normal", check_uniform_normal);
  guarded("dropout", check_dropout);
  guarded("factories", check_factories);
  guarded("allocator", check_allocator);
  guarded("profile events", check_profile_events);
  if (opt.error_tests) guarded("errors", check_errors);
  else skip("errors", "--no-error-tests (the deliberate CUDA errors would be reported by compute-sanitizer)");
  return failures;
}

}  // namespace modu::gputest
