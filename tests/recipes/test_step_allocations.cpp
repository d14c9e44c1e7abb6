// tests/recipes/test_step_allocations.cpp — a steady-state training step allocates nothing: after
// warm-up, a GPT forward + backward + clip + AdamW step takes every buffer from the caching allocator
// (no system allocation) and makes no heap allocation at all (operator new is counted in this binary).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "core/allocator.h"
#include "core/ops/ops.h"
#include "optim/optim.h"
#include "recipes/gpt/model.h"

namespace {
std::atomic<int64_t> g_news{0};
}  // namespace

// The replacements pair malloc with free on purpose; GCC's heuristic flags the pairing inside them.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

using namespace modu;

TEST(StepAllocations, NoneAfterWarmup) {
  for (std::string arch : {"gpt2", "llama"}) {
    gpt::GptConfig c;
    c.arch = arch;
    c.vocab_size = 256;
    c.pad_vocab_to = 64;
    c.n_layer = 2;
    c.n_head = 4;
    c.n_kv_head = arch == "llama" ? 2 : 0;
    c.n_embd = 64;
    c.block_size = 32;
    c.dropout = arch == "gpt2" ? 0.1 : 0.0;
    gpt::GPT model(c);
    model.init_weights(1);
    std::vector<nn::ParamRef> params = model.parameters();
    optim::AdamW opt(params, {});
    Generator g(2);
    std::vector<int64_t> ids(4 * 33);
    for (auto& x : ids) x = static_cast<int64_t>(g.next_below(256));
    Tensor data = Tensor::from_vector(ids, Dims{4, 33});
    Tensor x = data.slice(1, 0, 32).contiguous(), y = data.slice(1, 1, 33).contiguous();
    auto step = [&] {
      model.zero_grad();
      Tensor loss = model.loss(model.forward(x), y);
      loss.backward();
      optim::clip_grad_norm(params, 1.0);
      opt.step(1e-3);
      return loss.item();
    };
    for (int i = 0; i < 3; ++i) step();
    AllocatorStats before = cpu_allocator()->stats();
    int64_t news_before = g_news.load();
    const int steps = 5;
    for (int i = 0; i < steps; ++i) step();
    AllocatorStats after = cpu_allocator()->stats();
    int64_t news = g_news.load() - news_before;
    int64_t requests = (after.requests - before.requests) / steps;
    std::printf("[%s] per step after warm-up: %lld buffer requests, %lld system allocations, %.1f heap allocations\n",
                arch.c_str(), static_cast<long long>(requests),
                static_cast<long long>(after.system_allocs - before.system_allocs), static_cast<double>(news) / steps);
    EXPECT_EQ(after.system_allocs - before.system_allocs, 0) << arch << ": buffers must come from the cache";
    EXPECT_EQ(news, 0) << arch << ": heap allocations per step after warm-up";
  }
}
