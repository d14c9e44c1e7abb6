// The recipes' entry points called by the `modu` command (launch/). launch parses the command
// line and builds the recipe Config; everything after that is the recipe's:
//   modu train RECIPE.toml [--set k=v]...
//     Config c; c.load_file(RECIPE); c.add_override(k=v)...; declare_recipe_schema(c);
//     c.finalize(); print c.effective_toml(); return train_main(c);
//   modu generate CHECKPOINT_DIR --prompt TEXT [...]  ->  generate_main(options)
// Contract: train_main / generate_main return the process exit status (0 = success) and report
// failures by throwing modu::Error (launch prints the message and exits 1).
// recipes/entry_stub.cpp implements these as "not implemented yet" errors until the GPT recipe
// provides them (replace the stub's line in recipes/CMakeLists.txt with the real source).
#pragma once

#include <cstdint>
#include <string>

#include "recipes/config.h"

namespace modu::recipes {

// Declares every key train_main reads (c.declare<T>(key, default, help)). It may look at values
// already given (c.peek<std::string>("recipe")) to choose which recipe's schema to declare.
void declare_recipe_schema(Config& config);

// Runs the recipe (pretraining, ...). `recipe` is finalized; its effective_toml() is what a
// checkpoint stores.
int train_main(const Config& recipe);

struct GenerateOptions {
  std::string checkpoint_dir;     // a checkpoint folder (or a run folder holding `latest`)
  std::string prompt;
  int64_t max_new_tokens = 256;
  double temperature = 1.0;       // 0: greedy (argmax)
  int64_t top_k = 0;              // 0: no top-k filter
  double top_p = 1.0;             // 1: no nucleus filter
  uint64_t seed = 0;              // sampling seed (stream "sampling")
  std::string tokenizer;          // empty: the tokenizer the checkpoint's recipe names
};

// Samples a continuation of opts.prompt and writes it to stdout.
int generate_main(const GenerateOptions& opts);

}  // namespace modu::recipes
