// recipes/gpt/sampling.cpp — see sampling.h.
#include "recipes/gpt/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/ops/dispatch.h"
#include "core/ops/ops.h"

namespace modu::gpt {

int32_t choose_token(const std::vector<float>& logits, const SamplingOptions& opts, Generator& gen) {
  int64_t V = static_cast<int64_t>(logits.size());
  if (opts.temperature <= 0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int64_t keep = V;
  if (opts.top_k > 0) keep = std::min(keep, opts.top_k);
  double m = logits[static_cast<size_t>(order[0])];
  std::vector<double> probs(static_cast<size_t>(keep));
  double total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    probs[static_cast<size_t>(i)] = std::exp((logits[static_cast<size_t>(order[i])] - m) / opts.temperature);
    total += probs[static_cast<size_t>(i)];
  }
  if (opts.top_p < 1.0) {  // the smallest prefix holding top_p of the mass
    double cum = 0;
    int64_t cut = keep;
    for (int64_t i = 0; i < keep; ++i) {
      cum += probs[static_cast<size_t>(i)] / total;
      if (cum >= opts.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
    total = std::accumulate(probs.begin(), probs.begin() + keep, 0.0);
  }
  double u = gen.next_uniform() * total;
  for (int64_t i = 0; i < keep; ++i) {
    u -= probs[static_cast<size_t>(i)];
    if (u < 0) return order[static_cast<size_t>(i)];
  }
  return order[static_cast<size_t>(keep - 1)];
}

std::vector<int32_t> sample(GPT& model, const std::vector<int32_t>& prompt, const SamplingOptions& opts) {
  NoGradGuard no_grad;
  bool was_training = model.training();
  model.set_training(false);
  const GptConfig& c = model.config();
  Generator gen(opts.seed, stream_id("sampling"));
  std::vector<int32_t> context = prompt, out;
  KVCache cache = model.make_cache(1, c.block_size);
  auto feed = [&](const std::vector<int32_t>& tokens) {
    std::vector<int64_t> ids(tokens.begin(), tokens.end());
    Tensor idx = Tensor::from_vector(ids, Dims{1, static_cast<int64_t>(ids.size())});
    Tensor logits = model.forward(idx, &cache);  // (1, T, Vp)
    Tensor last = logits.select(1, -1).select(0, 0).slice(0, 0, c.vocab_size);
    return last.to(Device::cpu()).to(DType::F32).to_vector<float>();
  };
  // Prefill with the newest tokens that fit.
  int64_t keep = std::min<int64_t>(static_cast<int64_t>(context.size()), c.block_size - 1);
  std::vector<float> logits = feed(std::vector<int32_t>(context.end() - keep, context.end()));
  for (int64_t i = 0; i < opts.max_new_tokens; ++i) {
    int32_t next = choose_token(logits, opts, gen);
    out.push_back(next);
    context.push_back(next);
    if (next == opts.stop_token) break;
    if (i + 1 == opts.max_new_tokens) break;
    if (cache.length + 1 > cache.capacity) {  // full: restart from the newest half of the context
      cache = model.make_cache(1, c.block_size);
      int64_t half = c.block_size / 2;
      logits = feed(std::vector<int32_t>(context.end() - half, context.end()));
    } else {
      logits = feed({next});
    }
  }
  model.set_training(was_training);
  return out;
}

}  // namespace modu::gpt
