// BpeTrainer: learns a GPT-2-style byte-level BPE from a corpus.
//
// Output: ids 0..255 are the single bytes in GPT-2's order (so byte tokens have the same ids as in
// GPT-2), then one token per merge in the order learnt, then "<|endoftext|>" as the last id;
// rank == id, so the result also loads in tiktoken (data_gym_to_mergeable_bpe_ranks) and Hugging
// Face (GPT2Tokenizer). Text is pre-tokenised exactly like BpeTokenizer::encode (GPT-2's pattern;
// occurrences of "<|endoftext|>" are document boundaries, never learnt from); merges never cross a
// piece.
//
// Deterministic: the same texts added in the same order give the same vocabulary (no hashing
// order or threads leak into the result). Each step merges the most frequent adjacent pair
// (frequency = sum over distinct pieces of piece count x the number of positions where the pair
// sits, so "aaa" holds (a,a) twice); ties go to the pair with the smaller left id, then the smaller
// right id. A merge rewrites each piece left to right without overlap ("aaa" -> "aa" "a"). A pair
// whose bytes already form a token (made earlier by another split) is never learnt: ids stay one
// per distinct byte string.
// Speed: pair counts are updated incrementally, touching only the distinct pieces that contain the
// merged pair, with a lazily invalidated max-heap of candidate pairs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "data/tokenizer/bpe.h"

namespace modu::data {

struct BpeTrainerOptions {
  int32_t vocab_size = 4096;  // total ids: 256 bytes + merges + 1 ("<|endoftext|>"); at least 257
  InvalidUtf8 invalid_utf8 = InvalidUtf8::kReplace;  // as in BpeTokenizer::encode
};

struct BpeTrainerStats {
  uint64_t bytes = 0;             // text bytes seen
  uint64_t pieces = 0;            // pre-tokenised pieces seen
  uint64_t unique_pieces = 0;     // distinct pieces
  int32_t merges = 0;             // merges learnt
  uint64_t last_merge_count = 0;  // frequency of the last merged pair
  double count_seconds = 0, merge_seconds = 0;
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options = {});

  void add_text(std::string_view text);    // counts the pieces of text
  void add_file(const std::string& path);  // the whole file as one text; errors name the file

  // Learns vocab_size - 257 merges. Throws TokenizerError when the corpus runs out of pairs first.
  BpeTokenizer train();
  const BpeTrainerStats& stats() const { return stats_; }

 private:
  BpeTrainerOptions options_;
  BpeTrainerStats stats_;
  std::unordered_map<std::string, uint64_t> piece_counts_;
};

}  // namespace modu::data
