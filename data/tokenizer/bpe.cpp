// BpeTokenizer's encoder and decoder: hand-written GPT-2 pre-tokenisation (pretokenize.h), then per
// piece: the whole piece as one token if it is one (most English words), else byte-pair merging on
// ranks with the precomputed pair table (bpe_impl.h). Also the byte-to-unicode map and table
// building. Invariants: see bpe.h (tiktoken's merge rule, leftmost-lowest-rank first) and
// bpe_impl.h (tables).
#include <algorithm>
#include <cstring>
#include <queue>
#include <string>

#include "data/tokenizer/bpe_impl.h"
#include "data/tokenizer/pretokenize.h"

namespace modu::data {

using detail::kNoRank;

// ---------------------------------------------------------------------------------------------------
// Hash tables

void detail::PieceTable::build(const std::string& arena, const std::vector<uint32_t>& offs) {
  const size_t n = offs.size() - 1;
  size_t cap = 16;
  while (cap < 2 * n + 16) cap <<= 1;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  arena_ = arena.data();
  offs_ = offs.data();
  for (uint32_t r = 0; r < n; ++r) {
    const auto* p = reinterpret_cast<const uint8_t*>(arena.data()) + offs[r];
    const size_t len = offs[r + 1] - offs[r];
    if (find(p, len) != kNoRank) {
      throw TokenizerError("duplicate token bytes at rank " + std::to_string(r));
    }
    const uint64_t prefix = prefix8(p, len);
    size_t i = piece_hash(p, len, prefix) & mask_;
    while (slots_[i].rank1 != 0) i = (i + 1) & mask_;
    slots_[i] = Slot{prefix, r + 1, static_cast<uint32_t>(len)};
  }
}

void detail::PairTable::init(size_t expected) {
  size_t cap = 16;
  int bits = 4;
  while (cap < 2 * expected + 16) cap <<= 1, ++bits;
  slots_.assign(cap, Slot{});
  mask_ = cap - 1;
  shift_ = 64 - bits;
  size_ = 0;
}

void detail::PairTable::insert(uint32_t a, uint32_t b, uint32_t merged) {
  for (size_t i = slot_of(a, b);; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.a == kNoRank) {
      s = Slot{a, b, merged};
      ++size_;
      return;
    }
    if (s.a == a && s.b == b) return;  // same bytes, same token: already there
  }
}

// ---------------------------------------------------------------------------------------------------
// Byte-pair merging

namespace {

constexpr size_t kSmallPiece = 64;  // pieces up to this many bytes merge in stack arrays, O(n^2)

// tiktoken's rule: repeatedly merge the adjacent pair whose concatenation has the lowest rank (<
// limit), leftmost on ties. Calls emit(rank) for each final token, in order.
template <class Emit>
void bpe_small(const BpeTokenizer::Impl& m, const uint8_t* p, size_t n, uint32_t limit,
               Emit&& emit) {
  uint32_t tok[kSmallPiece], pr[kSmallPiece];
  for (size_t i = 0; i < n; ++i) tok[i] = m.byte_rank[p[i]];
  auto pair_rank = [&](uint32_t a, uint32_t b) {
    const uint32_t r = m.pairs.find(a, b);
    return r < limit ? r : kNoRank;
  };
  for (size_t i = 0; i + 1 < n; ++i) pr[i] = pair_rank(tok[i], tok[i + 1]);
  size_t len = n;
  while (len > 1) {
    uint32_t best = kNoRank;
    size_t at = 0;
    for (size_t i = 0; i + 1 < len; ++i) {
      if (pr[i] < best) best = pr[i], at = i;
    }
    if (best == kNoRank) break;
    tok[at] = best;
    if (at + 2 < len) {
      std::memmove(tok + at + 1, tok + at + 2, (len - at - 2) * sizeof(uint32_t));
      std::memmove(pr + at + 1, pr + at + 2, (len - at - 2) * sizeof(uint32_t));
    }
    --len;
    if (at + 1 < len) pr[at] = pair_rank(tok[at], tok[at + 1]);
    if (at > 0) pr[at - 1] = pair_rank(tok[at - 1], tok[at]);
  }
  for (size_t i = 0; i < len; ++i) emit(tok[i]);
}

// The same rule for long pieces: a doubly linked list of tokens and a min-heap of (rank, position)
// with lazy deletion, O(n log n). Positions are byte offsets, so heap order = leftmost on ties.
template <class Emit>
void bpe_large(const BpeTokenizer::Impl& m, const uint8_t* p, size_t n, uint32_t limit,
               Emit&& emit) {
  std::vector<uint32_t> tok(n), pr(n, kNoRank), next(n), prev(n);
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> heap;
  auto pair_rank = [&](uint32_t a, uint32_t b) {
    const uint32_t r = m.pairs.find(a, b);
    return r < limit ? r : kNoRank;
  };
  for (size_t i = 0; i < n; ++i) {
    tok[i] = m.byte_rank[p[i]];
    next[i] = static_cast<uint32_t>(i + 1);
    prev[i] = static_cast<uint32_t>(i - 1);  // unused for i == 0
  }
  for (size_t i = 0; i + 1 < n; ++i) {
    pr[i] = pair_rank(tok[i], tok[i + 1]);
    if (pr[i] != kNoRank) heap.push((uint64_t{pr[i]} << 32) | i);
  }
  while (!heap.empty()) {
    const uint64_t top = heap.top();
    heap.pop();
    const uint32_t r = static_cast<uint32_t>(top >> 32), i = static_cast<uint32_t>(top);
    if (pr[i] != r) continue;  // stale
    const uint32_t j = next[i];
    tok[i] = r;
    next[i] = next[j];
    if (next[j] < n) prev[next[j]] = i;
    pr[j] = kNoRank;
    pr[i] = next[i] < n ? pair_rank(tok[i], tok[next[i]]) : kNoRank;
    if (pr[i] != kNoRank) heap.push((uint64_t{pr[i]} << 32) | i);
    if (i > 0) {
      const uint32_t k = prev[i];
      pr[k] = pair_rank(tok[k], tok[i]);
      if (pr[k] != kNoRank) heap.push((uint64_t{pr[k]} << 32) | k);
    }
  }
  for (size_t i = 0; i < n; i = next[i]) emit(tok[i]);
}

template <class Emit>
void bpe(const BpeTokenizer::Impl& m, const uint8_t* p, size_t n, uint32_t limit, Emit&& emit) {
  if (n <= kSmallPiece) {
    bpe_small(m, p, n, limit, emit);
  } else {
    bpe_large(m, p, n, limit, emit);
  }
}

}  // namespace

void BpeTokenizer::Impl::bpe_ranks(const uint8_t* p, size_t n, uint32_t limit,
                                   std::vector<uint32_t>& out) const {
  bpe(*this, p, n, limit, [&](uint32_t r) { out.push_back(r); });
}

void BpeTokenizer::Impl::encode_ordinary(const uint8_t* s, size_t n, std::vector<int32_t>& out,
                                         detail::PieceCache* cache) const {
  auto emit = [&](uint32_t r) {
    out.push_back(identity_ids ? static_cast<int32_t>(r) : rank_to_id[r]);
  };
  for (size_t i = 0; i < n;) {
    const size_t e = pretok::next_piece_end(s, i, n);
    const uint8_t* p = s + i;
    const size_t len = e - i;
    i = e;
    if (len == 1) {
      emit(byte_rank[p[0]]);
      continue;
    }
    const uint64_t prefix = detail::prefix8(p, len);
    const uint64_t h = detail::piece_hash(p, len, prefix);
    const uint32_t r = pieces.find(p, len, prefix, h);
    if (r != kNoRank) {
      emit(r);
      continue;
    }
    if (!cache) {
      bpe(*this, p, len, kNoRank, emit);
      continue;
    }
    size_t count;
    if (const int32_t* ids = cache->find(p, len, h, count)) {
      out.insert(out.end(), ids, ids + count);
      continue;
    }
    const size_t before = out.size();
    bpe(*this, p, len, kNoRank, emit);
    cache->insert(p, len, h, out.data() + before, out.size() - before);
  }
}

// ---------------------------------------------------------------------------------------------------
// Building

void BpeTokenizer::Impl::build(std::vector<std::pair<int32_t, int32_t>> given_merges) {
  const std::string where = source + ": ";
  n_ranks = static_cast<uint32_t>(offs.size() - 1);
  if (offs.size() < 2 || n_ranks < 256) {
    throw TokenizerError(where + "expected at least the 256 single-byte tokens, found " +
                         std::to_string(offs.size() < 2 ? 0 : n_ranks) + " tokens");
  }
  for (uint32_t r = 0; r < n_ranks; ++r) {
    if (offs[r + 1] <= offs[r]) {
      throw TokenizerError(where + "token of rank " + std::to_string(r) + " is empty");
    }
  }
  try {
    pieces.build(arena, offs);
  } catch (const TokenizerError& e) {
    throw TokenizerError(where + e.what());
  }
  for (int b = 0; b < 256; ++b) {
    const uint8_t byte = static_cast<uint8_t>(b);
    byte_rank[b] = pieces.find(&byte, 1);
    if (byte_rank[b] == kNoRank) {
      throw TokenizerError(where + "the single-byte token " + std::to_string(b) +
                           " is missing (a byte-level BPE needs all 256)");
    }
  }
  // Every split of every token into two tokens: tiktoken merges on concatenated bytes.
  size_t count = 0;
  for (int pass = 0; pass < 2; ++pass) {
    if (pass == 1) pairs.init(count);
    for (uint32_t r = 0; r < n_ranks; ++r) {
      const auto* t = reinterpret_cast<const uint8_t*>(arena.data()) + offs[r];
      const size_t len = offs[r + 1] - offs[r];
      for (size_t k = 1; k < len; ++k) {
        const uint32_t a = pieces.find(t, k), b = pieces.find(t + k, len - k);
        if (a == kNoRank || b == kNoRank) continue;
        if (pass == 0)
          ++count;
        else
          pairs.insert(a, b, r);
      }
    }
  }
  // Merges: given (checked) or derived by BPE over lower ranks.
  merges.clear();
  size_t next_given = 0;
  std::vector<uint32_t> parts;
  for (uint32_t r = 0; r < n_ranks && merges_error.empty(); ++r) {
    const std::string_view t = bytes_of_rank(r);
    if (t.size() < 2) continue;
    if (!given_merges.empty()) {
      if (next_given >= given_merges.size()) {
        throw TokenizerError(where + "fewer merges than multi-byte tokens (token of rank " +
                             std::to_string(r) + " has no merge)");
      }
      const auto [a, b] = given_merges[next_given++];
      if (a < 0 || b < 0 || static_cast<uint32_t>(a) >= r || static_cast<uint32_t>(b) >= r ||
          std::string(bytes_of_rank(a)) + std::string(bytes_of_rank(b)) != t) {
        throw TokenizerError(where + "merge " + std::to_string(next_given) +
                             " does not join two lower-ranked tokens into the token of rank " +
                             std::to_string(r));
      }
      merges.emplace_back(a, b);
      continue;
    }
    parts.clear();
    bpe_ranks(reinterpret_cast<const uint8_t*>(t.data()), t.size(), r, parts);
    if (parts.size() != 2) {
      merges_error = where + "the token of rank " + std::to_string(r) + " splits into " +
                     std::to_string(parts.size()) +
                     " lower-ranked tokens, not 2, so it has no merge";
      merges.clear();
      break;
    }
    merges.emplace_back(parts[0], parts[1]);
  }
  if (!given_merges.empty() && next_given != given_merges.size()) {
    throw TokenizerError(where + "more merges (" + std::to_string(given_merges.size()) +
                         ") than multi-byte tokens (" + std::to_string(next_given) + ")");
  }
  // Ids: a permutation of 0..vocab_size-1 over mergeable and special tokens.
  if (rank_to_id.empty()) {
    rank_to_id.resize(n_ranks);
    for (uint32_t r = 0; r < n_ranks; ++r) rank_to_id[r] = static_cast<int32_t>(r);
  }
  vocab_size = static_cast<int32_t>(n_ranks + specials.size());
  id_to_rank.assign(vocab_size, -1);
  special_index.assign(vocab_size, -1);
  std::vector<char> seen(vocab_size, 0);
  auto claim = [&](int32_t id, const std::string& what) {
    if (id < 0 || id >= vocab_size || seen[id]) {
      throw TokenizerError(where + what + " has id " + std::to_string(id) +
                           ", expected a unique id in 0.." + std::to_string(vocab_size - 1) +
                           " (ids must be dense)");
    }
    seen[id] = 1;
  };
  identity_ids = true;
  for (uint32_t r = 0; r < n_ranks; ++r) {
    claim(rank_to_id[r], "the token of rank " + std::to_string(r));
    id_to_rank[rank_to_id[r]] = static_cast<int32_t>(r);
    identity_ids = identity_ids && rank_to_id[r] == static_cast<int32_t>(r);
  }
  eot = -1;
  for (size_t k = 0; k < specials.size(); ++k) {
    const SpecialToken& s = specials[k];
    if (s.text.empty()) throw TokenizerError(where + "a special token has empty text");
    claim(s.id, "special token " + s.text);
    special_index[s.id] = static_cast<int32_t>(k);
    if (s.text == kEndOfText) eot = s.id;
  }
  if (eot < 0) {
    throw TokenizerError(where +
                         "no special token \"<|endoftext|>\" (every modu vocabulary has one)");
  }
}

BpeTokenizer BpeTokenizer::from_ranks(std::vector<std::string> tokens_by_rank,
                                      std::vector<SpecialToken> specials,
                                      std::vector<std::pair<int32_t, int32_t>> merges,
                                      std::string source) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source);
  impl->offs.reserve(tokens_by_rank.size() + 1);
  impl->offs.push_back(0);
  for (const std::string& t : tokens_by_rank) {
    impl->arena += t;
    impl->offs.push_back(static_cast<uint32_t>(impl->arena.size()));
  }
  impl->specials = std::move(specials);
  impl->build(std::move(merges));
  return BpeTokenizer(std::move(impl));
}

// ---------------------------------------------------------------------------------------------------
// Encoding and decoding

namespace {
constexpr size_t kCacheFromBytes =
    16 * 1024;  // texts at least this long get a per-call piece cache
}  // namespace

void BpeTokenizer::encode_append(std::string_view text, bool allow_special,
                                 std::vector<int32_t>& out) const {
  const Impl& m = *impl_;
  std::string fixed;
  if (invalid_utf8_ != InvalidUtf8::kKeepBytes) {
    const size_t bad = pretok::first_invalid_utf8(text);
    if (bad != std::string_view::npos) {
      if (invalid_utf8_ == InvalidUtf8::kError) {
        throw TokenizerError("encode: ill-formed UTF-8 at byte offset " + std::to_string(bad) +
                             " (InvalidUtf8::kError)");
      }
      fixed = pretok::replace_invalid_utf8(text);
      text = fixed;
    }
  }
  out.reserve(out.size() + text.size() / 4 + 16);
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  // Long texts repeat their pieces: memoise the ones that needed merging (pointers into text).
  std::optional<detail::PieceCache> cache;
  if (text.size() >= kCacheFromBytes) cache.emplace();
  detail::PieceCache* c = cache ? &*cache : nullptr;
  if (!allow_special) {
    m.encode_ordinary(s, text.size(), out, c);
    return;
  }
  size_t start = 0;
  while (start < text.size()) {
    // Earliest special token at or after start; the longest one on a tie.
    size_t at = std::string_view::npos;
    const SpecialToken* hit = nullptr;
    for (const SpecialToken& sp : m.specials) {
      const size_t pos = text.find(sp.text, start);
      if (pos < at ||
          (pos == at && pos != std::string_view::npos && sp.text.size() > hit->text.size())) {
        at = pos;
        hit = &sp;
      }
    }
    const size_t end = hit ? at : text.size();
    m.encode_ordinary(s + start, end - start, out, c);
    if (!hit) break;
    out.push_back(hit->id);
    start = end + hit->text.size();
  }
}

std::vector<int32_t> BpeTokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  encode_append(text, allow_special, out);
  return out;
}

std::vector<int32_t> BpeTokenizer::encode_ordinary(std::string_view text) const {
  std::vector<int32_t> out;
  encode_append(text, false, out);
  return out;
}

std::string BpeTokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  size_t total = 0;
  for (int32_t id : ids) total += token_bytes(id).size();  // also checks the ids
  out.reserve(total);
  for (int32_t id : ids) out += token_bytes(id);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Vocabulary access

int32_t BpeTokenizer::vocab_size() const { return impl_->vocab_size; }
int32_t BpeTokenizer::eot_id() const { return impl_->eot; }
const std::vector<SpecialToken>& BpeTokenizer::special_tokens() const { return impl_->specials; }
const std::string& BpeTokenizer::source() const { return impl_->source; }

bool BpeTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && impl_->special_index[id] >= 0;
}

std::optional<int32_t> BpeTokenizer::token_id(std::string_view bytes) const {
  const uint32_t r =
      impl_->pieces.find(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (r == kNoRank) return std::nullopt;
  return impl_->rank_to_id[r];
}

std::string_view BpeTokenizer::token_bytes(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || id >= m.vocab_size) {
    throw TokenizerError("token id " + std::to_string(id) + " is outside the vocabulary of " +
                         m.source + " (ids 0.." + std::to_string(m.vocab_size - 1) + ")");
  }
  if (m.special_index[id] >= 0) return m.specials[m.special_index[id]].text;
  return m.bytes_of_rank(static_cast<uint32_t>(m.id_to_rank[id]));
}

std::string BpeTokenizer::token_string(int32_t id) const {
  if (is_special(id)) return std::string(token_bytes(id));
  return bytes_to_unicode(token_bytes(id));
}

std::vector<std::pair<std::string, std::string>> BpeTokenizer::merges() const {
  const Impl& m = *impl_;
  if (!m.merges_error.empty()) throw TokenizerError(m.merges_error);
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(m.merges.size());
  for (const auto& [a, b] : m.merges) {
    out.emplace_back(bytes_to_unicode(m.bytes_of_rank(a)), bytes_to_unicode(m.bytes_of_rank(b)));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// GPT-2's byte-to-unicode map

namespace {

bool printable_latin1(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

struct ByteUnicode {
  uint16_t cp_of_byte[256];
  int16_t byte_of_cp[0x144];  // -1: not in the map
  ByteUnicode() {
    std::fill(std::begin(byte_of_cp), std::end(byte_of_cp), int16_t{-1});
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      cp_of_byte[b] = static_cast<uint16_t>(printable_latin1(b) ? b : 0x100 + extra++);
      byte_of_cp[cp_of_byte[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteUnicode& byte_unicode() {
  static const ByteUnicode map;
  return map;
}

}  // namespace

std::string bytes_to_unicode(std::string_view bytes) {
  const ByteUnicode& map = byte_unicode();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    const uint16_t cp = map.cp_of_byte[c];
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

std::optional<std::string> unicode_to_bytes(std::string_view s) {
  const ByteUnicode& map = byte_unicode();
  std::string out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const pretok::Utf8Unit u = pretok::decode_utf8(p + i, s.size() - i);
    if (u.cp >= 0x144 || map.byte_of_cp[u.cp] < 0) return std::nullopt;
    out += static_cast<char>(map.byte_of_cp[u.cp]);
    i += u.len;
  }
  return out;
}

}  // namespace modu::data
