// BpeTokenizer: GPT-2's byte-level BPE, token-for-token equal to tiktoken's "gpt2"/"r50k_base"
// encodings on valid UTF-8, and the tokenizers that BpeTrainer makes.
//
// Invariants:
//  - Immutable once built; encode/decode are const and safe to call from many threads at once.
//  - Every byte string is encodable (the 256 single bytes are tokens), and decode(encode(s)) == s
//    for valid UTF-8 s (and for any bytes under InvalidUtf8::kKeepBytes).
//  - Merging follows tiktoken: within a piece, repeatedly join the adjacent pair whose concatenated
//    bytes form the token of lowest rank, leftmost first. Ranks are the merge priority: byte tokens
//    first, then one rank per merge in vocab.bpe order; for GPT-2 and modu-trained vocabularies
//    rank == id.
//  - Special tokens (at least "<|endoftext|>") are only produced by encode(..., allow_special=true)
//    when their exact text occurs; they never take part in merges.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/tokenizer/error.h"

namespace modu::data {

// What encode does with ill-formed UTF-8 (stray continuation bytes, truncated or overlong
// sequences, surrogates, code points past U+10FFFF). tiktoken takes Python str, so it only ever
// sees valid text.
enum class InvalidUtf8 : uint8_t {
  kReplace,    // default: each maximal ill-formed unit becomes U+FFFD, i.e. the ids of tiktoken's
               // encode(raw.decode("utf-8", "replace")); lossy for such input
  kKeepBytes,  // keep the raw bytes (lossless for any input); units are split like U+FFFD would be
  kError,      // throw TokenizerError naming the byte offset
};

struct SpecialToken {
  std::string text;
  int32_t id;
};

class BpeTokenizer {
 public:
  static constexpr std::string_view kEndOfText = "<|endoftext|>";

  // Loads a vocabulary. path is one of:
  //  - a tiktoken ranks file ("<base64 bytes> <rank>" per line, ranks 0..N-1); ids = ranks and
  //    "<|endoftext|>" gets id N (GPT-2's convention);
  //  - a directory holding modu-tokenizer.json (a BpeTrainer output or BpeTokenizer::save), or
  //    encoder.json + vocab.bpe (OpenAI's GPT-2 files), or vocab.json + merges.txt (Hugging Face's
  //    names for the same), or gpt2.tiktoken / r50k_base.tiktoken.
  // Throws TokenizerError naming the file (and line) when a file is missing or bad.
  static BpeTokenizer load(const std::string& path);

  // Builds a tokenizer from mergeable token bytes in rank order (ids = ranks) and special tokens
  // with ids after them. merges, when given, are (left rank, right rank) for each multi-byte token,
  // in rank order; otherwise they are derived (each token split by BPE over the lower ranks). The
  // 256 single bytes must be tokens.
  static BpeTokenizer from_ranks(std::vector<std::string> tokens_by_rank,
                                 std::vector<SpecialToken> specials,
                                 std::vector<std::pair<int32_t, int32_t>> merges = {},
                                 std::string source = "<memory>");

  // Ids of text. allow_special=true: occurrences of a special token's text become its id
  // (tiktoken's encode(text, allowed_special="all")); false: same as encode_ordinary.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  // Ids of text with special tokens treated as plain text (tiktoken's encode_ordinary).
  std::vector<int32_t> encode_ordinary(std::string_view text) const;
  // Appends the ids of text to out (no reallocation churn for callers that batch many documents).
  void encode_append(std::string_view text, bool allow_special, std::vector<int32_t>& out) const;

  // The bytes of ids, concatenated (special tokens give their text). Throws on an unknown id.
  std::string decode(std::span<const int32_t> ids) const;

  int32_t vocab_size() const;  // number of ids, mergeable and special: 50257 for GPT-2
  int32_t eot_id() const;      // id of "<|endoftext|>": 50256 for GPT-2
  const std::vector<SpecialToken>& special_tokens() const;
  bool is_special(int32_t id) const;
  std::optional<int32_t> token_id(
      std::string_view bytes) const;  // the mergeable token with these bytes

  std::string_view token_bytes(int32_t id) const;  // raw bytes (a special token: its text)
  // The token in GPT-2's byte-to-unicode form, as in encoder.json / HF vocab.json / GGUF
  // tokenizer.ggml.tokens (e.g. " the" -> "\u0120the"); a special token: its text.
  std::string token_string(int32_t id) const;
  // Merges in rank order, each as (left, right) in byte-to-unicode form: the lines of vocab.bpe /
  // merges.txt. Throws if some token cannot be built from two lower-ranked tokens.
  std::vector<std::pair<std::string, std::string>> merges() const;

  // Writes encoder.json, vocab.bpe and modu-tokenizer.json into dir (created if needed). For GPT-2,
  // encoder.json and vocab.bpe come out byte-identical to OpenAI's files.
  void save(const std::string& dir) const;

  const std::string& source() const;  // where it was loaded from, for messages

  InvalidUtf8 invalid_utf8() const { return invalid_utf8_; }
  void set_invalid_utf8(InvalidUtf8 policy) { invalid_utf8_ = policy; }

  struct Impl;

 private:
  explicit BpeTokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
  InvalidUtf8 invalid_utf8_ = InvalidUtf8::kReplace;
};

// GPT-2's byte-to-unicode map: printable Latin-1 bytes (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) stand for
// themselves; the other 68 bytes map, in byte order, to U+0100..U+0143. Returns UTF-8.
std::string bytes_to_unicode(std::string_view bytes);
// The inverse; nullopt if s holds a character outside the map.
std::optional<std::string> unicode_to_bytes(std::string_view s);

}  // namespace modu::data
