// The subcommands of `modu`: thin adapters from parsed arguments to the data and recipes layers.
// Output contract: results on stdout (ids, decoded text, summaries, the effective recipe), progress
// and diagnostics on stderr.
#include "launch/commands.h"

#include <cctype>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "core/check.h"
#include "data/prepare.h"
#include "data/tokenizers.h"

namespace modu::launch {

namespace {

std::string read_all(const std::string& path) {
  std::ostringstream ss;
  if (path == "-") {
    ss << std::cin.rdbuf();
    return std::move(ss).str();
  }
  std::ifstream f(path, std::ios::binary);
  MODU_CHECK(f.good(), path, ": cannot open for reading");
  ss << f.rdbuf();
  MODU_CHECK(!f.bad(), path, ": read error");
  return std::move(ss).str();
}

data::LogFn stderr_log(bool quiet) {
  if (quiet) return {};
  return [](const std::string& line) { std::cerr << "modu: " << line << "\n"; };
}

}  // namespace

int run_prepare_text(const PrepareTextArgs& a) {
  data::PrepareTextOptions o;
  o.inputs = a.inputs;
  o.out_dir = a.out_dir;
  o.tokenizer = a.tokenizer;
  o.val_fraction = a.val_fraction;
  o.shard_tokens = a.shard_tokens;
  o.threads = a.threads;
  o.force = a.force;
  o.log = stderr_log(a.quiet);
  const data::PrepareTextReport r = data::prepare_text(o);
  std::printf("%llu documents (%llu bytes) -> %llu train tokens in %zu shard(s), %llu val tokens in %zu "
              "shard(s), vocab %u, in %s (%.1f s)\n",
              static_cast<unsigned long long>(r.documents), static_cast<unsigned long long>(r.text_bytes),
              static_cast<unsigned long long>(r.train_tokens), r.train_files.size(),
              static_cast<unsigned long long>(r.val_tokens), r.val_files.size(), r.vocab_size,
              a.out_dir.c_str(), r.seconds);
  return 0;
}

int run_prepare_tokenizer(const PrepareTokenizerArgs& a) {
  data::TrainTokenizerOptions o;
  o.inputs = a.inputs;
  o.out_dir = a.out_dir;
  o.vocab_size = a.vocab_size;
  o.force = a.force;
  o.log = stderr_log(a.quiet);
  const data::BpeTokenizer tok = data::train_tokenizer(o);
  std::printf("tokenizer with %d ids written to %s (use --tokenizer %s)\n", tok.vocab_size(),
              a.out_dir.c_str(), a.out_dir.c_str());
  return 0;
}

int run_tokenize(const TokenizeArgs& a) {
  data::BpeTokenizer tok = data::load_tokenizer(a.tokenizer);
  tok.set_invalid_utf8(data::InvalidUtf8::kKeepBytes);  // lossless: decode(encode(x)) == x for any bytes
  const std::string in = read_all(a.file);
  if (!a.decode) {
    const std::vector<int32_t> ids = a.allow_special ? tok.encode(in, true) : tok.encode_ordinary(in);
    std::string out;
    out.reserve(ids.size() * 6);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i) out += ' ';
      out += std::to_string(ids[i]);
    }
    out += '\n';
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }
  std::vector<int32_t> ids;
  const char* p = in.data();
  const char* end = p + in.size();
  while (true) {
    while (p < end && std::isspace(static_cast<unsigned char>(*p))) ++p;
    if (p == end) break;
    const char* word_end = p;
    while (word_end < end && !std::isspace(static_cast<unsigned char>(*word_end))) ++word_end;
    int32_t id = 0;
    auto [q, ec] = std::from_chars(p, word_end, id);
    MODU_CHECK(ec == std::errc() && q == word_end && id >= 0 && id < tok.vocab_size(), a.file, ": '",
               std::string(p, word_end), "' (token ", ids.size(), ") is not a token id of ", tok.source(),
               " (expected an integer in [0, ", tok.vocab_size(), "))");
    ids.push_back(id);
    p = word_end;
  }
  const std::string text = tok.decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

recipes::Config load_recipe(const TrainArgs& a) {
  recipes::Config c;
  c.load_file(a.recipe);
  for (const std::string& s : a.overrides) c.add_override(s);
  recipes::declare_recipe_schema(c);
  c.finalize();
  return c;
}

int run_train(const TrainArgs& a) {
  const recipes::Config c = load_recipe(a);
  std::fputs(c.effective_toml().c_str(), stdout);
  std::fflush(stdout);
  if (a.dry_run) return 0;
  return recipes::train_main(c);
}

int run_generate(const GenerateArgs& a) {
  const recipes::GenerateOptions& o = a.opts;
  MODU_CHECK(o.max_new_tokens >= 0, "--max-new-tokens ", o.max_new_tokens, ": expected >= 0");
  MODU_CHECK(o.temperature >= 0, "--temperature ", o.temperature, ": expected >= 0 (0 = greedy)");
  MODU_CHECK(o.top_k >= 0, "--top-k ", o.top_k, ": expected >= 0 (0 = off)");
  MODU_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p ", o.top_p, ": expected a value in (0, 1]");
  return recipes::generate_main(o);
}

}  // namespace modu::launch
