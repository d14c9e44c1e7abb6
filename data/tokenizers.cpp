// Resolution of tokenizer names ("gpt2" or a path) to vocabulary files; order in tokenizers.h.
#include "data/tokenizers.h"

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "core/check.h"

#ifndef MODU_SOURCE_DIR
#error "MODU_SOURCE_DIR must be defined by the build (data/CMakeLists.txt)"
#endif

namespace modu::data {
namespace fs = std::filesystem;

namespace {
bool holds_vocab(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(p, ec)) return true;
  if (!fs::is_directory(p, ec)) return false;
  return fs::exists(p / "gpt2.tiktoken", ec) ||
         (fs::exists(p / "encoder.json", ec) && fs::exists(p / "vocab.bpe", ec)) ||
         fs::exists(p / "modu-tokenizer.json", ec);
}
}  // namespace

std::string resolve_tokenizer_path(const std::string& spec) {
  MODU_CHECK(!spec.empty(), "empty tokenizer name (expected \"gpt2\" or a path)");
  if (spec != "gpt2") return spec;
  if (const char* env = std::getenv("MODU_GPT2_VOCAB"); env && *env) {
    MODU_CHECK(holds_vocab(env), "MODU_GPT2_VOCAB=", env,
               " holds no GPT-2 vocabulary (expected gpt2.tiktoken or encoder.json + vocab.bpe); "
               "run scripts/fetch-gpt2-vocab.sh ",
               env, " or unset MODU_GPT2_VOCAB");
    return env;
  }
  std::string searched;
  std::vector<fs::path> places = {fs::path(MODU_SOURCE_DIR) / ".cache" / "gpt2"};
  if (const char* home = std::getenv("HOME"); home && *home) {
    places.push_back(fs::path(home) / ".cache" / "modu" / "gpt2");
  }
  for (const fs::path& p : places) {
    if (holds_vocab(p)) return p.string();
    searched += (searched.empty() ? "" : ", ") + p.string();
  }
  MODU_FAIL("tokenizer \"gpt2\": GPT-2's vocabulary was not found (searched $MODU_GPT2_VOCAB, ",
            searched, "); run scripts/fetch-gpt2-vocab.sh to fetch it into ", MODU_SOURCE_DIR,
            "/.cache/gpt2, or set MODU_GPT2_VOCAB to a directory holding gpt2.tiktoken");
}

BpeTokenizer load_tokenizer(const std::string& spec) {
  return BpeTokenizer::load(resolve_tokenizer_path(spec));
}

}  // namespace modu::data
