// Tokenizer names as the command line and recipes give them: "gpt2" or a path.
//
// "gpt2" resolves to the vocabulary scripts/fetch-gpt2-vocab.sh fetches, looked up in this order:
//   1. $MODU_GPT2_VOCAB (a directory or a .tiktoken file) -- when set it must be good: no fallback;
//   2. <source tree>/.cache/gpt2 (MODU_SOURCE_DIR, compiled in);
//   3. ~/.cache/modu/gpt2.
// A directory counts when it holds gpt2.tiktoken, encoder.json + vocab.bpe, or modu-tokenizer.json.
// Anything else is a path for BpeTokenizer::load (a `modu prepare tokenizer` output directory, a
// GPT-2-format directory, a .tiktoken ranks file).
// Invariant: failures throw with the places searched and the fix (run scripts/fetch-gpt2-vocab.sh).
#pragma once

#include <string>

#include "data/tokenizer/bpe.h"

namespace modu::data {

// The path BpeTokenizer::load should read for `spec`.
std::string resolve_tokenizer_path(const std::string& spec);
// resolve_tokenizer_path + BpeTokenizer::load.
BpeTokenizer load_tokenizer(const std::string& spec);

}  // namespace modu::data
