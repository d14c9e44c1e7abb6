// modu: the command (ARCHITECTURE §8). One binary, subcommands:
//   modu prepare text --input FILE_OR_GLOB... --out DIR [--tokenizer gpt2|PATH] [--val-fraction F]
//                     [--shard-tokens N] [--threads N] [--force]
//   modu prepare tokenizer --input FILE_OR_GLOB... --vocab-size N --out DIR [--force]
//   modu tokenize [--tokenizer gpt2|PATH] [--decode] [--allow-special] FILE
//   modu train RECIPE.toml [--set key=value]... [--dry-run]
//   modu generate CHECKPOINT_DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]
//                 [--top-p P] [--seed S] [--tokenizer gpt2|PATH]
//   modu export CHECKPOINT_DIR --format safetensors|gguf|onnx --out DIR [--dtype f32|f16|bf16|q8_0]
//   modu import hf HF_DIR --out CHECKPOINT_DIR
// Exit status: 0 success, 1 an error (one "modu: error: ..." message on stderr), 2 bad usage.
// Invariant: this file only parses the command line; the work is in the data, recipes and export layers.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "export/export.h"
#include "launch/commands.h"

int main(int argc, char** argv) {
  using namespace modu::launch;
  CLI::App app{"modu: train foundation models from recipe files"};
  app.set_version_flag("--version", "modu 0.1.0");
  app.require_subcommand(1);
  app.fallthrough(false);

  // ---- prepare ----
  CLI::App* prepare = app.add_subcommand("prepare", "turn raw data into training inputs");
  prepare->require_subcommand(1);

  PrepareTextArgs pt;
  CLI::App* text = prepare->add_subcommand("text", "tokenise text files into token shards (train and val)");
  text->add_option("--input", pt.inputs, "text files or globs; one file = one document")
      ->required()
      ->expected(1, CLI::detail::expected_max_vector_size);
  text->add_option("--out", pt.out_dir, "output directory for train_*.bin, val_*.bin, meta.json")->required();
  text->add_option("--tokenizer", pt.tokenizer, "\"gpt2\" or a tokenizer directory/file")->capture_default_str();
  text->add_option("--val-fraction", pt.val_fraction,
                   "tail fraction of each document that goes to the val split, in [0, 1)")
      ->capture_default_str();
  text->add_option("--shard-tokens", pt.shard_tokens, "at most this many tokens per shard file")
      ->capture_default_str();
  text->add_option("--threads", pt.threads, "tokeniser threads (0: one per core)")->capture_default_str();
  text->add_flag("--force", pt.force, "replace an existing shard set in --out");
  text->add_flag("-q,--quiet", pt.quiet, "no progress lines on stderr");

  PrepareTokenizerArgs ptok;
  CLI::App* tokp = prepare->add_subcommand("tokenizer", "train a byte-level BPE tokenizer on text files");
  tokp->add_option("--input", ptok.inputs, "text files or globs")
      ->required()
      ->expected(1, CLI::detail::expected_max_vector_size);
  tokp->add_option("--vocab-size", ptok.vocab_size, "total ids: 256 bytes + merges + <|endoftext|>")
      ->required();
  tokp->add_option("--out", ptok.out_dir, "output directory (encoder.json, vocab.bpe, modu-tokenizer.json)")
      ->required();
  tokp->add_flag("--force", ptok.force, "replace a tokenizer already in --out");
  tokp->add_flag("-q,--quiet", ptok.quiet, "no progress lines on stderr");

  // ---- tokenize ----
  TokenizeArgs tk;
  CLI::App* tokenize = app.add_subcommand("tokenize", "print the token ids of a text file (or decode ids)");
  tokenize->add_option("FILE", tk.file, "input file ('-' for stdin)")->required();
  tokenize->add_option("--tokenizer", tk.tokenizer, "\"gpt2\" or a tokenizer directory/file")->capture_default_str();
  tokenize->add_flag("--decode", tk.decode, "FILE holds whitespace-separated ids; print their text");
  tokenize->add_flag("--allow-special", tk.allow_special,
                     "encode the text \"<|endoftext|>\" as its special id (default: as plain text)");

  // ---- train ----
  TrainArgs tr;
  CLI::App* train = app.add_subcommand("train", "run a recipe");
  train->add_option("RECIPE", tr.recipe, "recipe file (TOML)")->required();
  train->add_option("--set", tr.overrides, "override a recipe key, e.g. --set optim.lr=3e-4 (repeatable)")
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  train->add_flag("--dry-run", tr.dry_run, "check the recipe and print it as it would run; do not train");

  // ---- generate ----
  GenerateArgs ge;
  CLI::App* generate = app.add_subcommand("generate", "sample text from a checkpoint");
  generate->add_option("CHECKPOINT_DIR", ge.opts.checkpoint_dir, "checkpoint folder")->required();
  generate->add_option("--prompt", ge.opts.prompt, "text to continue")->required();
  generate->add_option("--max-new-tokens", ge.opts.max_new_tokens, "tokens to sample")->capture_default_str();
  generate->add_option("--temperature", ge.opts.temperature, "softmax temperature; 0 = greedy")
      ->capture_default_str();
  generate->add_option("--top-k", ge.opts.top_k, "keep the k most likely tokens; 0 = all")->capture_default_str();
  generate->add_option("--top-p", ge.opts.top_p, "nucleus: keep the smallest set with this mass; 1 = all")
      ->capture_default_str();
  generate->add_option("--seed", ge.opts.seed, "sampling seed")->capture_default_str();
  generate->add_option("--tokenizer", ge.opts.tokenizer, "override the checkpoint's tokenizer");

  // ---- export / import ----
  modu::exporting::ExportOptions ex;
  CLI::App* exp = app.add_subcommand("export", "write a checkpoint's weights for an inference engine");
  exp->add_option("CHECKPOINT_DIR", ex.checkpoint_dir, "checkpoint folder (run folder, checkpoints/, or step_N)")
      ->required();
  exp->add_option("--format", ex.format, "safetensors (Hugging Face), gguf (llama.cpp) or onnx (ONNX Runtime)")
      ->required();
  exp->add_option("--out", ex.out_dir, "output folder (replaced only when the export succeeds)")->required();
  exp->add_option("--dtype", ex.dtype, "f32, f16, bf16 or q8_0 (gguf)")->capture_default_str();

  CLI::App* imp = app.add_subcommand("import", "turn another framework's weights into a modu checkpoint");
  imp->require_subcommand(1);
  modu::exporting::ImportHfOptions ih;
  CLI::App* imp_hf = imp->add_subcommand("hf", "a Hugging Face GPT-2 or Llama folder (safetensors + config.json)");
  imp_hf->add_option("HF_DIR", ih.hf_dir, "the Hugging Face model folder")->required();
  imp_hf->add_option("--out", ih.out_dir, "checkpoint root to create (OUT/step_00000000, OUT/latest)")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    if (text->parsed()) return run_prepare_text(pt);
    if (tokp->parsed()) return run_prepare_tokenizer(ptok);
    if (tokenize->parsed()) return run_tokenize(tk);
    if (train->parsed()) return run_train(tr);
    if (generate->parsed()) return run_generate(ge);
    if (exp->parsed()) return modu::exporting::run_export(ex);
    if (imp_hf->parsed()) return modu::exporting::run_import_hf(ih);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::cerr << "modu: error: " << e.what() << "\n";
    return 1;
  }
  std::cerr << app.help();
  return 2;
}
