// The subcommands of `modu` (launch/main.cpp parses the command line into these argument structs).
// Each run_* returns the exit status and throws (modu::Error, TokenizerError) on failure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "recipes/entry.h"

namespace modu::launch {

struct PrepareTextArgs {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::string tokenizer = "gpt2";
  double val_fraction = 0.1;
  uint64_t shard_tokens = 100'000'000;
  int threads = 0;
  bool force = false;
  bool quiet = false;
};
int run_prepare_text(const PrepareTextArgs& args);

struct PrepareTokenizerArgs {
  std::vector<std::string> inputs;
  std::string out_dir;
  int32_t vocab_size = 0;
  bool force = false;
  bool quiet = false;
};
int run_prepare_tokenizer(const PrepareTokenizerArgs& args);

struct TokenizeArgs {
  std::string file;
  std::string tokenizer = "gpt2";
  bool decode = false;
  bool allow_special = false;
};
int run_tokenize(const TokenizeArgs& args);

struct TrainArgs {
  std::string recipe;
  std::vector<std::string> overrides;
  bool dry_run = false;
};
// Loads RECIPE, applies --set, declares the schema, finalizes, prints the effective recipe.
recipes::Config load_recipe(const TrainArgs& args);
int run_train(const TrainArgs& args);

struct GenerateArgs {
  recipes::GenerateOptions opts;
};
int run_generate(const GenerateArgs& args);

}  // namespace modu::launch
