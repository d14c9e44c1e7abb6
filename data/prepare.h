// Corpus preparation behind `modu prepare text` and `modu prepare tokenizer`.
//
// prepare_text: text files -> a token shard set (token_dataset.h).
//  - Documents: one input file = one document. Empty files are skipped (and reported).
//  - Separator: every document part in a split's stream is preceded by "<|endoftext|>", so a
//    stream reads EOT doc0 EOT doc1 ... Text is encoded with encode_ordinary: a literal
//    "<|endoftext|>" inside a file stays text and can never forge a boundary.
//  - Validation split (deterministic, per document): with fraction F, the val part of a document of
//    S bytes starts at its first safe cut (below) at or after byte S - floor(F*S); the bytes before
//    go to the train stream, the rest to the val stream. So every document contributes to both
//    splits in proportion (val is not "the last book"), and one input file is enough. A document
//    with no safe cut in its tail contributes nothing to val. F = 0 writes no val split.
//  - Safe cut: a byte offset p with text[p] == '\n' and text[p+1] printable non-space ASCII
//    (0x21..0x7E). GPT-2 pre-tokenisation never joins text across such a point (the whitespace run
//    before it ends there and nothing crosses a newline into a word), so
//    encode(text) == encode(text[0, p)) ++ encode(text[p, n)) exactly. Large files are therefore
//    read and tokenised in chunks of about chunk_bytes cut at safe cuts, in parallel, with the
//    same tokens as encoding the whole file at once (tested on the corpus). Memory stays near
//    threads * 4 * chunk_bytes, except that a stretch without a safe cut (a file with no line
//    breaks) is held whole.
//  - Output: OUT/train_NNNNNN.bin and OUT/val_NNNNNN.bin of at most shard_tokens tokens each, then
//    OUT/meta.json last. An existing shard set in OUT is an error unless force, which replaces it
//    (its meta.json is removed first, stale shards after the new set is complete).
// train_tokenizer: BpeTrainer over the files (each file one text), saved with BpeTokenizer::save,
// loadable by load_tokenizer(OUT) wherever "gpt2" is accepted.
// Errors (modu::Error or TokenizerError) name the file and what was expected.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/bpe.h"

namespace modu::data {

// Files named by `patterns` (each a path or a glob), in argument order, each glob's matches
// sorted. A path that does not exist or a glob that matches nothing is an error naming it.
std::vector<std::string> expand_input_files(const std::vector<std::string>& patterns);

// The first safe cut p >= from in text (see above; needs p + 1 < text.size()), or npos.
size_t find_safe_cut(std::string_view text, size_t from);

using LogFn = std::function<void(const std::string&)>;

struct PrepareTextOptions {
  std::vector<std::string> inputs;   // files or globs
  std::string out_dir;
  std::string tokenizer = "gpt2";    // "gpt2" or a path (tokenizers.h)
  double val_fraction = 0.1;         // in [0, 1)
  uint64_t shard_tokens = 100'000'000;
  bool force = false;
  int threads = 0;                   // 0: std::thread::hardware_concurrency()
  size_t chunk_bytes = 1 << 20;
  InvalidUtf8 invalid_utf8 = InvalidUtf8::kKeepBytes;  // lossless for any bytes
  LogFn log;                         // progress lines; may be empty
};

struct PrepareTextReport {
  uint64_t documents = 0, skipped_empty = 0, text_bytes = 0;
  uint64_t train_tokens = 0, val_tokens = 0;
  std::vector<std::string> train_files, val_files;  // paths written
  uint32_t vocab_size = 0;
  double seconds = 0;
};

PrepareTextReport prepare_text(const PrepareTextOptions& options);

// Tokenises text exactly as prepare_text does (chunked at safe cuts, in parallel); equal to
// tok.encode_ordinary(text) -- exposed for the equality test.
std::vector<int32_t> encode_chunked(const BpeTokenizer& tok, std::string_view text, size_t chunk_bytes,
                                    int threads);

struct TrainTokenizerOptions {
  std::vector<std::string> inputs;  // files or globs
  std::string out_dir;
  int32_t vocab_size = 4096;
  bool force = false;
  InvalidUtf8 invalid_utf8 = InvalidUtf8::kKeepBytes;
  LogFn log;
};

BpeTokenizer train_tokenizer(const TrainTokenizerOptions& options);

}  // namespace modu::data
