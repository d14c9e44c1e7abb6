// core/rng.h — counter-based random numbers: Philox4x32-10 (Salmon et al., SC'11).
//
// Algorithm: a generator is a 64-bit key and a 64-bit block counter. Block b of key k is
// philox4x32_10(counter = {lo32(b), hi32(b), 0, 0}, key = {lo32(k), hi32(k)}), four 32-bit words.
// An op that needs randomness reserves a run of blocks (Generator::advance) and stores (key, first block)
// in its attributes, so its numbers depend only on those two values: identical on CPU and CUDA, for any
// thread count, and reproducible when activation recomputation runs the op again.
//   uniform   element i: word (i % 4) of block (first + i / 4), u = (w >> 8) * 2^-24 + 2^-25 in (0, 1)
//   normal    element i: block (first + i / 2); words 0,1 give u1, u2; even i: r cos(2 pi u2), odd i:
//             r sin(2 pi u2), r = sqrt(-2 ln u1) (Box-Muller)
//   dropout   element i kept iff uniform_i >= p
// The key of a stream is splitmix64(seed ^ splitmix64(stream)); streams come from stream_id(purpose,
// rank), so ranks and purposes (init, dropout, data order, sampling) never share numbers.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace modu {

struct Philox4x32 {
  uint32_t w[4];
};
// The full 128-bit-counter form (for known-answer tests) and the block form used everywhere else.
Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1);
inline Philox4x32 philox4x32_10(uint64_t block, uint64_t key) {
  return philox4x32_10(Philox4x32{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), 0, 0}},
                       static_cast<uint32_t>(key), static_cast<uint32_t>(key >> 32));
}

uint64_t splitmix64(uint64_t x);
// Stable 64-bit stream id for a purpose string and a rank (FNV-1a of the purpose, mixed with the rank).
uint64_t stream_id(std::string_view purpose, int64_t rank = 0);

inline float philox_uniform_from_word(uint32_t w) {
  return static_cast<float>(w >> 8) * (1.0f / 16777216.0f) + (1.0f / 33554432.0f);
}

class Generator {
 public:
  struct State {
    uint64_t seed = 0, stream = 0, counter = 0;
  };
  explicit Generator(uint64_t seed = 0, uint64_t stream = 0);
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  uint64_t key() const { return key_; }
  uint64_t counter() const { return counter_; }
  uint64_t id() const { return id_; }
  // Reserves `blocks` Philox blocks and returns the first.
  uint64_t advance(uint64_t blocks) {
    uint64_t first = counter_;
    counter_ += blocks;
    return first;
  }
  State state() const { return {seed_, stream_, counter_}; }
  void set_state(const State& s);
  void reseed(uint64_t seed, uint64_t stream = 0) { set_state({seed, stream, 0}); }

  // Host-side draws (samplers, data order). They advance the counter like an op would.
  uint64_t next_u64();
  double next_uniform();                  // [0, 1)
  uint64_t next_below(uint64_t bound);    // [0, bound), unbiased

 private:
  uint64_t seed_, stream_, key_, counter_ = 0, id_;
};

// The process-wide default generator (seed 0, stream "default") used when an op is given none.
Generator& default_generator();

// Every live generator's state, for activation recomputation (replay the same numbers) and checkpoints.
struct RngSnapshot {
  std::vector<std::pair<uint64_t, Generator::State>> states;  // (generator id, state)
};
RngSnapshot rng_snapshot();
void rng_restore(const RngSnapshot& snap);  // generators that no longer exist are skipped

}  // namespace modu
