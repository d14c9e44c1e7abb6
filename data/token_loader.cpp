// TokenLoader: windowed samples over a token stream in a per-epoch Feistel order (algorithm and
// invariants in token_loader.h).
#include "data/token_loader.h"

#include <algorithm>
#include <bit>
#include <vector>

#include "core/check.h"
#include "core/rng.h"

namespace modu::data {

namespace {
constexpr int kFeistelRounds = 6;
}

TokenLoader::TokenLoader(TokenShardSet data, TokenLoaderOptions options)
    : data_(std::move(data)), options_(options) {
  MODU_CHECK(options_.seq_len > 0, "TokenLoader: sequence length must be positive, got ",
             options_.seq_len);
  const uint64_t T = static_cast<uint64_t>(options_.seq_len);
  const uint64_t n_tokens = data_.size();
  MODU_CHECK(n_tokens > T, data_.description(), ": ", n_tokens,
             " tokens, too few for one sample of sequence length ", T, " (needs ", T + 1, ")");
  num_samples_ = (n_tokens - 1) / T;
  // h = ceil(bits(n - 1) / 2), at least 1, so 4^h >= n.
  const uint32_t bits = num_samples_ > 1 ? 64 - std::countl_zero(num_samples_ - 1) : 1;
  half_bits_ = std::max<uint32_t>(1, (bits + 1) / 2);
  Generator gen(options_.seed, stream_id("data-order"));
  key_ = gen.key();
}

TokenLoader::TokenLoader(const std::string& spec, const std::string& split, TokenLoaderOptions options)
    : TokenLoader(TokenShardSet::open(spec, split), options) {}

uint64_t TokenLoader::permute(uint64_t x, uint64_t epoch) const {
  const uint32_t h = half_bits_;
  const uint64_t mask = h >= 64 ? ~0ull : (1ull << h) - 1;
  const uint32_t e_lo = static_cast<uint32_t>(epoch), e_hi = static_cast<uint32_t>(epoch >> 32);
  const uint32_t k0 = static_cast<uint32_t>(key_), k1 = static_cast<uint32_t>(key_ >> 32);
  do {
    uint64_t L = x >> h, R = x & mask;
    for (int r = 0; r < kFeistelRounds; ++r) {
      // R has at most 32 bits (h <= 32 since n < 2^64).
      const Philox4x32 out =
          philox4x32_10(Philox4x32{{static_cast<uint32_t>(R), static_cast<uint32_t>(r), e_lo, e_hi}},
                        k0, k1);
      const uint64_t f = static_cast<uint64_t>(out.w[0]) | (static_cast<uint64_t>(out.w[1]) << 32);
      const uint64_t next_r = L ^ (f & mask);
      L = R;
      R = next_r;
    }
    x = (L << h) | R;
  } while (x >= num_samples_);
  return x;
}

uint64_t TokenLoader::sample_at(uint64_t g) const {
  const uint64_t pos = g % num_samples_;
  if (!options_.shuffle || num_samples_ == 1) return pos;
  return permute(pos, g / num_samples_);
}

void TokenLoader::fill_at(uint64_t g, int64_t count, int64_t* inputs, int64_t* targets) const {
  MODU_CHECK(count > 0, "TokenLoader: batch size must be positive, got ", count);
  const int64_t T = options_.seq_len;
  std::vector<int64_t> window(static_cast<size_t>(T) + 1);
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t s = sample_at(g + static_cast<uint64_t>(i));
    data_.read(s * static_cast<uint64_t>(T), static_cast<uint64_t>(T) + 1, window.data());
    std::copy(window.begin(), window.end() - 1, inputs + i * T);
    std::copy(window.begin() + 1, window.end(), targets + i * T);
  }
}

TokenBatch TokenLoader::batch_at(uint64_t g, int64_t count) const {
  MODU_CHECK(count > 0, "TokenLoader: batch size must be positive, got ", count);
  TokenBatch b;
  b.inputs = Tensor::empty({count, options_.seq_len}, DType::I64);
  b.targets = Tensor::empty({count, options_.seq_len}, DType::I64);
  fill_at(g, count, b.inputs.data<int64_t>(), b.targets.data<int64_t>());
  b.first_sample = g;
  return b;
}

TokenBatch TokenLoader::batch_at(uint64_t g, int64_t count, int64_t seq_len) const {
  MODU_CHECK(seq_len == options_.seq_len, "TokenLoader: asked for sequence length ", seq_len,
             ", but this loader's samples are windows of ", options_.seq_len,
             " (the sample set depends on it; make a loader per length)");
  return batch_at(g, count);
}

TokenBatch TokenLoader::next_batch(int64_t batch) {
  TokenBatch b = batch_at(position_, batch);
  position_ += static_cast<uint64_t>(batch);
  return b;
}

TokenBatch TokenLoader::next_batch(int64_t batch, int64_t seq_len) {
  TokenBatch b = batch_at(position_, batch, seq_len);
  position_ += static_cast<uint64_t>(batch);
  return b;
}

TokenBatch TokenLoader::next_local_batch(int64_t local_batch, int64_t rank, int64_t world) {
  MODU_CHECK(world > 0 && rank >= 0 && rank < world, "TokenLoader: rank ", rank, " of world ", world);
  TokenBatch b = batch_at(position_ + static_cast<uint64_t>(rank * local_batch), local_batch);
  position_ += static_cast<uint64_t>(world * local_batch);
  return b;
}

}  // namespace modu::data
