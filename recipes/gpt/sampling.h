// recipes/gpt/sampling.h — autoregressive sampling from a GPT with its KV cache.
//
// Invariants: logits of the padding vocabulary never win; temperature 0 is greedy (argmax, ties to
// the lowest id); sampling draws from Generator(seed, stream "sampling"), so a seed reproduces a
// sample exactly. When the context fills model.block_size, the cache restarts from the newest half.
#pragma once

#include <cstdint>
#include <vector>

#include "recipes/gpt/model.h"

namespace modu::gpt {

struct SamplingOptions {
  int64_t max_new_tokens = 64;
  double temperature = 1.0;  // 0: greedy
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // 1: off
  uint64_t seed = 0;
  int32_t stop_token = -1;   // stop after producing this token (-1: never)
};

// The new tokens after `prompt` (the prompt is not repeated).
std::vector<int32_t> sample(GPT& model, const std::vector<int32_t>& prompt, const SamplingOptions& opts);

// Picks a token from one row of logits (real vocabulary only) under the options.
int32_t choose_token(const std::vector<float>& logits, const SamplingOptions& opts, Generator& gen);

}  // namespace modu::gpt
