// BpeTrainer (trainer.h): piece counting with GPT-2's pre-tokeniser, then greedy merges with
// incremental pair counts. Invariants kept during training:
//  - counts[p] == sum over distinct pieces w of freq(w) x (positions of pair p in syms[w]);
//  - where[p] holds (possibly with duplicates or stale entries) every piece index containing p;
//  - every pair with a positive count has a heap entry whose count is >= its current count
//    (entries are refreshed when popped stale), so the first fresh entry popped is the maximum.
#include "data/tokenizer/trainer.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_set>

#include "data/tokenizer/pretokenize.h"

namespace modu::data {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t{a} << 32) | b; }

struct HeapEntry {
  uint64_t count;
  uint64_t key;
  // std::priority_queue pops the greatest: higher count first, then the smaller key.
  bool operator<(const HeapEntry& o) const {
    return count != o.count ? count < o.count : key > o.key;
  }
};

}  // namespace

BpeTrainer::BpeTrainer(BpeTrainerOptions options) : options_(options) {
  if (options_.vocab_size < 257) {
    throw TokenizerError("BpeTrainer: vocab_size " + std::to_string(options_.vocab_size) +
                         " is too small; expected at least 257 (256 bytes + <|endoftext|>)");
  }
}

void BpeTrainer::add_text(std::string_view text) {
  const auto t0 = Clock::now();
  std::string fixed;
  if (options_.invalid_utf8 != InvalidUtf8::kKeepBytes) {
    const size_t bad = pretok::first_invalid_utf8(text);
    if (bad != std::string_view::npos) {
      if (options_.invalid_utf8 == InvalidUtf8::kError) {
        throw TokenizerError("BpeTrainer: ill-formed UTF-8 at byte offset " + std::to_string(bad));
      }
      fixed = pretok::replace_invalid_utf8(text);
      text = fixed;
    }
  }
  stats_.bytes += text.size();
  const std::string_view eot = BpeTokenizer::kEndOfText;
  std::string key;
  for (size_t start = 0; start <= text.size();) {
    size_t end = text.find(eot, start);
    if (end == std::string_view::npos) end = text.size();
    pretok::for_each_piece(text.substr(start, end - start), [&](std::string_view piece) {
      key.assign(piece);
      ++piece_counts_[key];
      ++stats_.pieces;
    });
    start = end + eot.size();
  }
  stats_.count_seconds += seconds_since(t0);
}

void BpeTrainer::add_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw TokenizerError(path + ": cannot open the corpus file for reading");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw TokenizerError(path + ": read error");
  add_text(ss.view());
}

BpeTokenizer BpeTrainer::train() {
  const auto t0 = Clock::now();
  const int32_t n_merges = options_.vocab_size - 257;

  // Byte ids in GPT-2's order: printable Latin-1 first, then the rest.
  std::vector<std::string> tokens;
  uint32_t id_of_byte[256];
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      if (printable != (pass == 0)) continue;
      id_of_byte[b] = static_cast<uint32_t>(tokens.size());
      tokens.emplace_back(1, static_cast<char>(b));
    }
  }
  std::unordered_set<std::string> existing(tokens.begin(), tokens.end());

  // Distinct pieces in byte order (a canonical order, independent of hashing).
  std::vector<std::pair<std::string, uint64_t>> pieces(piece_counts_.begin(), piece_counts_.end());
  std::sort(pieces.begin(), pieces.end());
  stats_.unique_pieces = pieces.size();
  std::vector<std::vector<uint32_t>> syms;
  std::vector<uint64_t> freq;
  for (const auto& [text, count] : pieces) {
    if (text.size() < 2) continue;  // a single byte has no pair
    std::vector<uint32_t> s(text.size());
    for (size_t i = 0; i < text.size(); ++i) s[i] = id_of_byte[static_cast<uint8_t>(text[i])];
    syms.push_back(std::move(s));
    freq.push_back(count);
  }
  pieces.clear();
  pieces.shrink_to_fit();

  std::unordered_map<uint64_t, uint64_t> counts;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where;
  for (uint32_t w = 0; w < syms.size(); ++w) {
    const auto& s = syms[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      counts[k] += freq[w];
      auto& list = where[k];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  std::priority_queue<HeapEntry> heap;
  {
    std::vector<HeapEntry> init;
    init.reserve(counts.size());
    for (const auto& [k, c] : counts) init.push_back({c, k});
    heap = std::priority_queue<HeapEntry>(std::less<HeapEntry>(), std::move(init));
  }

  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_set<uint64_t> banned;  // pairs whose bytes already form a token (see below)
  std::vector<uint32_t> visited(syms.size(), 0);
  std::vector<uint32_t> merged;
  std::vector<uint64_t> fresh;  // pairs with the new token, to (re)push
  uint32_t step = 0;
  while (static_cast<int32_t>(merges.size()) < n_merges) {
    if (heap.empty()) {
      throw TokenizerError("BpeTrainer: the corpus (" + std::to_string(stats_.bytes) + " bytes, " +
                           std::to_string(stats_.unique_pieces) +
                           " distinct pieces) ran out of pairs after " +
                           std::to_string(merges.size()) + " merges; vocab_size " +
                           std::to_string(options_.vocab_size) + " needs " +
                           std::to_string(n_merges) + ": use more text or a smaller vocab_size");
    }
    const HeapEntry top = heap.top();
    heap.pop();
    const auto it = counts.find(top.key);
    const uint64_t current = it == counts.end() ? 0 : it->second;
    if (current != top.count) {  // stale: re-queue with the current count
      if (current > 0) heap.push({current, top.key});
      continue;
    }
    if (current == 0 || banned.count(top.key)) continue;
    const uint32_t a = static_cast<uint32_t>(top.key >> 32), b = static_cast<uint32_t>(top.key);
    std::string bytes = tokens[a] + tokens[b];
    if (!existing.insert(bytes).second) {
      // Another split of these bytes already made this token (e.g. "ab"+"c" before "a"+"bc"). A
      // second token with the same bytes cannot exist in a byte-level vocabulary (and tiktoken's
      // encoder already merges such a pair into the existing token), so the pair is never learnt.
      banned.insert(top.key);
      continue;
    }
    const uint32_t z = static_cast<uint32_t>(tokens.size());
    tokens.push_back(std::move(bytes));
    merges.emplace_back(static_cast<int32_t>(a), static_cast<int32_t>(b));
    stats_.last_merge_count = current;
    ++step;

    std::vector<uint32_t> list = std::move(where[top.key]);
    where.erase(top.key);
    fresh.clear();
    for (uint32_t w : list) {
      if (visited[w] == step) continue;
      visited[w] = step;
      std::vector<uint32_t>& s = syms[w];
      bool found = false;
      for (size_t i = 0; i + 1 < s.size() && !found; ++i) found = s[i] == a && s[i + 1] == b;
      if (!found) continue;  // stale entry
      const uint64_t f = freq[w];
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const auto c = counts.find(pair_key(s[i], s[i + 1]));
        if ((c->second -= f) == 0) counts.erase(c);
      }
      merged.clear();
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(z);
          i += 2;
        } else {
          merged.push_back(s[i++]);
        }
      }
      s.assign(merged.begin(), merged.end());
      for (size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        counts[k] += f;
        if (s[i] == z || s[i + 1] == z) {
          auto& wl = where[k];
          if (wl.empty() || wl.back() != w) wl.push_back(w);
          fresh.push_back(k);
        }
      }
    }
    std::sort(fresh.begin(), fresh.end());
    fresh.erase(std::unique(fresh.begin(), fresh.end()), fresh.end());
    for (uint64_t k : fresh) heap.push({counts[k], k});
  }
  stats_.merges = static_cast<int32_t>(merges.size());
  stats_.merge_seconds = seconds_since(t0);
  std::vector<SpecialToken> specials{
      {std::string(BpeTokenizer::kEndOfText), static_cast<int32_t>(tokens.size())}};
  return BpeTokenizer::from_ranks(std::move(tokens), std::move(specials), std::move(merges),
                                  "BpeTrainer");
}

}  // namespace modu::data
