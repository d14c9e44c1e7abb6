// core/rng.cpp — Philox4x32-10, stream derivation and the generator registry (see rng.h).
#include "core/rng.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <unordered_map>

namespace modu {

Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = counter.w[0], c1 = counter.w[1], c2 = counter.w[2], c3 = counter.w[3];
  for (int round = 0; round < 10; ++round) {
    uint64_t p0 = static_cast<uint64_t>(kM0) * c0;
    uint64_t p1 = static_cast<uint64_t>(kM1) * c2;
    uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    uint32_t n0 = hi1 ^ c1 ^ k0, n1 = lo1, n2 = hi0 ^ c3 ^ k1, n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += kW0;
    k1 += kW1;
  }
  return {{c0, c1, c2, c3}};
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t stream_id(std::string_view purpose, int64_t rank) {
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : purpose) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return splitmix64(h ^ splitmix64(static_cast<uint64_t>(rank) + 1));
}

namespace {
struct Registry {
  std::mutex mu;
  std::unordered_map<uint64_t, Generator*> live;
  std::atomic<uint64_t> next_id{1};
};
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}
uint64_t derive_key(uint64_t seed, uint64_t stream) { return splitmix64(seed ^ splitmix64(stream)); }
}  // namespace

Generator::Generator(uint64_t seed, uint64_t stream)
    : seed_(seed), stream_(stream), key_(derive_key(seed, stream)) {
  Registry& r = registry();
  id_ = r.next_id.fetch_add(1);
  std::lock_guard<std::mutex> lock(r.mu);
  r.live[id_] = this;
}

Generator::~Generator() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.live.erase(id_);
}

void Generator::set_state(const State& s) {
  seed_ = s.seed;
  stream_ = s.stream;
  counter_ = s.counter;
  key_ = derive_key(seed_, stream_);
}

uint64_t Generator::next_u64() {
  Philox4x32 r = philox4x32_10(advance(1), key_);
  return (static_cast<uint64_t>(r.w[0]) << 32) | r.w[1];
}

double Generator::next_uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }

uint64_t Generator::next_below(uint64_t bound) {
  if (bound <= 1) return 0;
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound;  // reject the biased tail
  for (;;) {
    uint64_t x = next_u64();
    if (x < limit) return x % bound;
  }
}

Generator& default_generator() {
  static Generator* g = new Generator(0, stream_id("default"));
  return *g;
}

RngSnapshot rng_snapshot() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  RngSnapshot snap;
  snap.states.reserve(r.live.size());
  for (auto& [id, g] : r.live) snap.states.emplace_back(id, g->state());
  return snap;
}

void rng_restore(const RngSnapshot& snap) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  for (const auto& [id, st] : snap.states) {
    auto it = r.live.find(id);
    if (it != r.live.end()) it->second->set_state(st);
  }
}

}  // namespace modu
