// export/export.h — weights out to inference engines and in from Hugging Face (ARCHITECTURE §2 layer "export",
// between checkpoint and recipes). Formats and names: ../shared/reference/parallel-checkpoint-export.md §3.
//
//   modu export CHECKPOINT_DIR --format safetensors|gguf|onnx --out DIR [--dtype f32|f16|bf16|q8_0]
//   modu import hf HF_DIR --out CHECKPOINT_DIR
//
// Flow of an export: load_export_source() reads a committed checkpoint (any layout: checkpoint::read gathers the
// pieces) into an ExportSource — the model's config, every model tensor as a contiguous f32 CPU tensor in modu's own
// names and layouts (nn::Linear weights (out, in)), with the vocabulary padding rows stripped — and the tokenizer.
// A format writer then turns that into files in a staging folder; run_export() renames the staging folder onto DIR
// only when the writer finished, so a failed or interrupted export never replaces a good one.
//
// Invariants:
//   - Writers never read the checkpoint themselves; they see only ExportSource (one gather, one place that strips
//     padding).
//   - Every error is a modu::Error naming the file (and tensor) and what to do.
//   - Output is deterministic: the same checkpoint and options give byte-identical files.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "data/tokenizer/bpe.h"

namespace modu::exporting {

namespace fs = std::filesystem;
using json = nlohmann::json;

// What every format writer gets.
struct ExportSource {
  fs::path checkpoint_dir;  // the step_NNNNNNNN folder that was read
  int64_t step = 0;
  // The checkpoint's metadata["model"] (recipes/gpt: arch, vocab_size, pad_vocab_to, n_layer, n_head, n_kv_head,
  // n_embd, block_size, ffn_hidden, dropout, rope_theta, norm_eps).
  json model;
  std::string arch;        // "gpt2" | "llama" (copied from model["arch"])
  int64_t vocab_size = 0;  // the real vocabulary (padding already stripped from the tensors below)
  // modu parameter name (without the "model/" prefix, e.g. "wte.weight", "h.0.attn.c_attn.weight",
  // "layers.0.self_attn.q_proj.weight") -> contiguous f32 CPU tensor; ordered by name.
  std::map<std::string, Tensor> tensors;
  std::string tokenizer_spec;                   // "gpt2" or a tokenizer folder (the checkpoint's metadata["tokenizer"])
  std::optional<data::BpeTokenizer> tokenizer;  // always set by load_export_source
};

// Reads CHECKPOINT_DIR: a step folder, a checkpoints/ root (its `latest`), or a run folder holding
// checkpoints/latest.
ExportSource load_export_source(const fs::path& checkpoint_dir);

struct ExportOptions {
  fs::path checkpoint_dir;
  std::string format;  // safetensors | gguf | onnx
  fs::path out_dir;
  std::string dtype = "f32";  // f32 | f16 | bf16 | q8_0 (which a format accepts is the writer's to check)
};

// Validates the options, loads the source, runs the writer into a staging folder next to out_dir, then replaces
// out_dir atomically (rename). Returns the exit status.
int run_export(const ExportOptions& opts);

// ---- format writers: each fills `dir` (an empty staging folder) -------------------------------------------------
// export/safetensors.cpp: model.safetensors + config.json + tokenizer files for transformers.
void write_safetensors_export(const ExportSource& src, const fs::path& dir, const std::string& dtype);
// export/gguf.cpp: model.gguf (GGUF v3, tokenizer inside).
void write_gguf_export(const ExportSource& src, const fs::path& dir, const std::string& dtype);
// export/onnx.cpp: model.onnx (+ external data for large models).
void write_onnx_export(const ExportSource& src, const fs::path& dir, const std::string& dtype);

// ---- import -------------------------------------------------------------------------------------------------------
struct ImportHfOptions {
  fs::path hf_dir;   // config.json + model.safetensors (or a sharded index) [+ tokenizer files]
  fs::path out_dir;  // becomes a checkpoint root: OUT/step_00000000 + OUT/latest
};
// export/hf_import.cpp
int run_import_hf(const ImportHfOptions& opts);

}  // namespace modu::exporting
