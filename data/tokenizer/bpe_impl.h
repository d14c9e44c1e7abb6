// Internals of BpeTokenizer shared by bpe.cpp (encoding) and bpe_io.cpp (loading, saving): the
// token arena and the hash tables of the hot path. Not part of the public API.
// Invariants (established by Impl::build, never changed afterwards):
//  - ranks 0..n_ranks-1 are the mergeable tokens; token r's bytes are arena[offs[r], offs[r+1]),
//    all distinct, and the 256 single bytes are among them (byte_rank[b]).
//  - pieces maps every mergeable token's bytes to its rank.
//  - pairs maps (a, b) to rank(bytes(a) + bytes(b)) for EVERY pair of tokens whose concatenation
//    is a token (not only the pairs listed in vocab.bpe): this is tiktoken's merge rule.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/bpe.h"

namespace modu::data::detail {

inline constexpr uint32_t kNoRank = 0xFFFFFFFFu;

// The first min(n, 8) bytes of p as a little-endian word, zero-padded; reads only p[0..n), no
// calls.
inline uint64_t prefix8(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  if (n >= 8) {
    std::memcpy(&v, p, 8);
  } else if (n >= 4) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + n - 4, 4);
    v = lo | ((uint64_t{hi} >> (8 * (8 - n))) << 32);  // hi's top n-4 bytes are p[4..n)
  } else if (n > 0) {
    v = p[0] | (n > 1 ? uint64_t{p[1]} << 8 : 0) | (n > 2 ? uint64_t{p[2]} << 16 : 0);
  }
  return v;
}

// Hash of a piece given its prefix8; bytes past the eighth are folded in eight at a time.
inline uint64_t piece_hash(const uint8_t* p, size_t n, uint64_t prefix) {
  uint64_t h = (prefix ^ (n * 0xFF51AFD7ED558CCDull)) * 0x9E3779B97F4A7C15ull;
  for (size_t i = 8; i < n; i += 8) {
    h ^= h >> 29;
    h = (h ^ prefix8(p + i, n - i < 8 ? n - i : 8)) * 0xBF58476D1CE4E5B9ull;
  }
  h ^= h >> 32;
  h *= 0x94D049BB133111EBull;
  h ^= h >> 29;
  return h;
}

inline uint64_t hash_bytes(const uint8_t* p, size_t n) { return piece_hash(p, n, prefix8(p, n)); }

// a[0..n) == b[0..n) for short strings without a call: overlapping word loads stay inside both.
inline bool bytes_equal(const char* a, const uint8_t* b, size_t n) {
  if (n >= 8 && n <= 16) {
    uint64_t x0, y0, x1, y1;
    std::memcpy(&x0, a, 8), std::memcpy(&y0, b, 8);
    std::memcpy(&x1, a + n - 8, 8), std::memcpy(&y1, b + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n >= 4 && n < 8) {
    uint32_t x0, y0, x1, y1;
    std::memcpy(&x0, a, 4), std::memcpy(&y0, b, 4);
    std::memcpy(&x1, a + n - 4, 4), std::memcpy(&y1, b + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n < 4) {
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<uint8_t>(a[i]) != b[i]) return false;
    }
    return true;
  }
  return std::memcmp(a, b, n) == 0;
}

// Per-call memo of pieces that needed byte-pair merging: piece bytes (pointing into the caller's
// text, alive for the call) -> their ids. Grows by doubling up to a cap, then stops adding. Not
// shared between calls or threads.
class PieceCache {
 public:
  explicit PieceCache(size_t initial = 4096) { rehash(initial); }
  // Returns the cached ids and sets count, or nullptr.
  const int32_t* find(const uint8_t* p, size_t n, uint64_t h, size_t& count) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (!s.p) return nullptr;
      if (s.h == h && s.len == n && bytes_equal(reinterpret_cast<const char*>(s.p), p, n)) {
        count = s.count;
        return ids_.data() + s.off;
      }
    }
  }
  void insert(const uint8_t* p, size_t n, uint64_t h, const int32_t* ids, size_t count) {
    if (used_ >= kMaxEntries) return;
    if (2 * (used_ + 1) > slots_.size()) rehash(slots_.size() * 2);
    size_t i = h & mask_;
    while (slots_[i].p) i = (i + 1) & mask_;
    slots_[i] = Slot{p, h, static_cast<uint32_t>(n), static_cast<uint32_t>(ids_.size()),
                     static_cast<uint32_t>(count)};
    ids_.insert(ids_.end(), ids, ids + count);
    ++used_;
  }

 private:
  static constexpr size_t kMaxEntries = size_t{1} << 20;
  struct Slot {
    const uint8_t* p = nullptr;
    uint64_t h = 0;
    uint32_t len = 0, off = 0, count = 0;
  };
  void rehash(size_t cap) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (!s.p) continue;
      size_t i = s.h & mask_;
      while (slots_[i].p) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::vector<int32_t> ids_;
  size_t mask_ = 0, used_ = 0;
};

// bytes -> rank for the mergeable tokens. Each slot holds the token's first eight bytes and length,
// so a lookup of a piece of up to 8 bytes (most pieces) touches one 16-byte slot and nothing else.
class PieceTable {
 public:
  void build(const std::string& arena, const std::vector<uint32_t>& offs);
  uint32_t find(const uint8_t* p, size_t n) const {
    const uint64_t prefix = prefix8(p, n);
    return find(p, n, prefix, piece_hash(p, n, prefix));
  }
  uint32_t find(const uint8_t* p, size_t n, uint64_t prefix, uint64_t h) const {
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.rank1 == 0) return kNoRank;
      if (s.prefix == prefix && s.len == n &&
          (n <= 8 || bytes_equal(arena_ + offs_[s.rank1 - 1] + 8, p + 8, n - 8))) {
        return s.rank1 - 1;
      }
    }
  }

 private:
  struct Slot {
    uint64_t prefix = 0;
    uint32_t rank1 = 0;  // rank + 1; 0 = empty
    uint32_t len = 0;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  const char* arena_ = nullptr;
  const uint32_t* offs_ = nullptr;
};

// (left rank, right rank) -> rank of the concatenation.
class PairTable {
 public:
  void init(size_t expected);
  void insert(uint32_t a, uint32_t b, uint32_t merged);
  uint32_t find(uint32_t a, uint32_t b) const {
    for (size_t i = slot_of(a, b);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.a == a && s.b == b) return s.merged;
      if (s.a == kNoRank) return kNoRank;
    }
  }
  size_t size() const { return size_; }

 private:
  struct Slot {
    uint32_t a = kNoRank, b = kNoRank, merged = kNoRank;
  };
  size_t slot_of(uint32_t a, uint32_t b) const {
    return (((uint64_t{a} << 32) | b) * 0x9E3779B97F4A7C15ull) >> shift_;
  }
  std::vector<Slot> slots_;
  size_t mask_ = 0, size_ = 0;
  int shift_ = 64;
};

}  // namespace modu::data::detail

namespace modu::data {

struct BpeTokenizer::Impl {
  std::string source;
  std::string arena;           // bytes of all mergeable tokens, by rank
  std::vector<uint32_t> offs;  // n_ranks + 1 offsets into arena
  uint32_t n_ranks = 0;
  std::vector<int32_t> rank_to_id;
  std::vector<int32_t> id_to_rank;     // -1 for special ids
  std::vector<int32_t> special_index;  // id -> index into specials, -1 for mergeable ids
  bool identity_ids = true;            // rank_to_id[r] == r for all r
  std::vector<SpecialToken> specials;
  int32_t vocab_size = 0;
  int32_t eot = -1;
  uint32_t byte_rank[256] = {};
  detail::PieceTable pieces;
  detail::PairTable pairs;
  // (left rank, right rank) of each rank >= 256, in order; empty with merges_error set if some
  // token cannot be built from lower ranks.
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::string merges_error;

  std::string_view bytes_of_rank(uint32_t r) const {
    return std::string_view(arena).substr(offs[r], offs[r + 1] - offs[r]);
  }
  // Validates the fields above and builds the tables; throws TokenizerError naming source.
  void build(std::vector<std::pair<int32_t, int32_t>> given_merges);
  // BPE over piece p[0..n) using only ranks < limit; appends ranks (not ids) to out.
  void bpe_ranks(const uint8_t* p, size_t n, uint32_t limit, std::vector<uint32_t>& out) const;
  // Appends the ids of s[0..n) without special tokens; cache may be null (short texts).
  void encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out,
                       detail::PieceCache* cache) const;
};

}  // namespace modu::data
