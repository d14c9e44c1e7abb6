// TokenLoader: (inputs, targets) batches from a token shard set, with exact resume at any world size.
//
// Samples. The split's token stream (the shards concatenated) of N tokens holds
// num_samples = (N - 1) / T samples; sample s is the window of T + 1 tokens starting at s * T
// (windows overlap by one token, so every token but the first is a target exactly once).
// inputs = window[0, T), targets = window[1, T + 1).
//
// Order. The loader's whole state is one global sample index g (uint64). Global index g is the
// sample perm_e(g % num_samples) of epoch e = g / num_samples, where perm_e is a permutation of
// [0, num_samples):
//  - shuffle (training): perm_e is a keyed Feistel permutation (below), a different one per epoch;
//  - sequential (validation): perm_e is the identity.
// Feistel permutation of [0, n): let h = max(1, ceil(bits(n - 1) / 2)) and M = 4^h >= n. x in
// [0, M) is split into halves (L, R) of h bits, x = L << h | R; each of 6 rounds r maps
// (L, R) -> (R, L ^ (F_r(R) & (2^h - 1))), F_r(R) = word 0 (| word 1 << 32) of
// philox4x32_10(counter = {R, r, lo32(e), hi32(e)}, key = Generator(seed, stream_id("data-order"))
// .key()). This is a permutation of [0, M); cycle walking (apply it again while the result is >= n)
// restricts it to [0, n), taking fewer than 4 applications on average since M < 4n. No table is
// built: any g maps to its sample in O(1), so memory does not grow with the dataset and resuming
// at g costs nothing.
//
// Data parallelism: rank r of R with local batch b reads global indices [g + r*b, g + (r+1)*b)
// (batch_at), and every rank advances g by R*b (next_local_batch does both). The union over ranks
// of one step is the global batch [g, g + R*b) -- identical to one process with batch R*b -- so a
// checkpoint stores only g, and resume is exact at any world size.
//
// Invariants: deterministic given (data, seed, T, g); batch_at is const and thread-safe.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "data/token_dataset.h"

namespace modu::data {

struct TokenLoaderOptions {
  int64_t seq_len = 0;   // T
  uint64_t seed = 0;     // data-order seed (ignored when sequential)
  bool shuffle = true;   // false: sequential windows, the same order every epoch (validation)
};

struct TokenBatch {
  Tensor inputs;   // (B, T) i64 on the CPU
  Tensor targets;  // (B, T) i64 on the CPU: inputs shifted left by one token
  uint64_t first_sample = 0;  // the global sample index g of row 0 (row b is sample g + b): what keys dropout
};

class TokenLoader {
 public:
  // Throws naming the data when it holds fewer than T + 1 tokens.
  TokenLoader(TokenShardSet data, TokenLoaderOptions options);
  // Convenience: TokenShardSet::open(spec, split).
  TokenLoader(const std::string& spec, const std::string& split, TokenLoaderOptions options);

  uint64_t num_samples() const { return num_samples_; }
  int64_t seq_len() const { return options_.seq_len; }
  uint64_t seed() const { return options_.seed; }
  bool shuffled() const { return options_.shuffle; }
  const TokenShardSet& data() const { return data_; }

  // The state: the global index of the next sample.
  uint64_t position() const { return position_; }
  void set_position(uint64_t g) { position_ = g; }
  uint64_t epoch() const { return position_ / num_samples_; }

  // The sample (window index in [0, num_samples)) at global index g.
  uint64_t sample_at(uint64_t g) const;
  // Samples at global indices [g, g + count) as a batch (count, T); does not move the position.
  TokenBatch batch_at(uint64_t g, int64_t count) const;
  TokenBatch batch_at(uint64_t g, int64_t count, int64_t seq_len) const;  // checks seq_len == T
  // Same, into caller memory: inputs and targets are count*T int64 each, row-major.
  void fill_at(uint64_t g, int64_t count, int64_t* inputs, int64_t* targets) const;

  // batch_at(position, B), then position += B.
  TokenBatch next_batch(int64_t batch);
  TokenBatch next_batch(int64_t batch, int64_t seq_len);  // checks seq_len == T
  // Data-parallel step: batch_at(position + rank*b, b), then position += world*b.
  TokenBatch next_local_batch(int64_t local_batch, int64_t rank, int64_t world);

  // Whole batches of size B before the samples run out once (for a validation pass).
  uint64_t batches_per_epoch(int64_t batch) const { return num_samples_ / static_cast<uint64_t>(batch); }

 private:
  uint64_t permute(uint64_t position_in_epoch, uint64_t epoch) const;

  TokenShardSet data_;
  TokenLoaderOptions options_;
  uint64_t num_samples_ = 0;
  uint64_t position_ = 0;
  uint64_t key_ = 0;       // Philox key of the data-order stream
  uint32_t half_bits_ = 1; // h
};

}  // namespace modu::data
