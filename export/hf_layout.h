// export/hf_layout.h — how modu's GPT family maps onto Hugging Face transformers' GPT2LMHeadModel
// and LlamaForCausalLM, both ways: config.json fields, tensor names and layouts, tokenizer files.
// Used by the safetensors export (export/safetensors.cpp) and `modu import hf` (export/hf_import.cpp).
// Reference: ../shared/reference/parallel-checkpoint-export.md §3.2.
//
// GPT-2: modu's h.N.attn.c_attn / c_proj and h.N.mlp.c_fc / c_proj are nn::Linear (out, in); HF's
// are Conv1D (in, out), so those four weights are transposed both ways. c_attn is [Q|K|V] along the
// output dimension in both. Names get the "transformer." prefix; lm_head is tied to wte and not
// written (what save_pretrained does). Llama: the same names under "model." (lm_head without it),
// the same (out, in) layouts; both use half-split rotary pairs, so no q/k permutation.
//
// Invariant: modu_model_from_hf_config(hf_config_from_modu(m)) reproduces every field of m that
// changes the function the model computes; import -> export therefore gives back the same files.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "data/tokenizer/bpe.h"

namespace modu::exporting {

namespace fs = std::filesystem;
using json = nlohmann::json;

// One parameter of modu's model and where it lives in a Hugging Face state dict.
struct HfParam {
  std::string modu;         // e.g. "h.0.attn.c_attn.weight"
  std::string hf;           // e.g. "transformer.h.0.attn.c_attn.weight"
  Dims modu_shape;          // vocabulary-sized tensors: the real (unpadded) vocabulary
  bool transpose = false;   // HF stores the transpose (GPT-2 Conv1D weights)
  bool vocab_rows = false;  // dim 0 is the vocabulary (padded in modu's checkpoints)
};

// Every parameter of the model that metadata.model `model` describes, in modu's parameter order.
// Throws for an architecture that transformers' classes cannot express.
std::vector<HfParam> hf_param_table(const json& model);

// The SwiGLU width of a Llama-style model (recipes/gpt/model.cpp GptConfig::ffn()).
int64_t llama_ffn_width(const json& model);

// config.json for GPT2LMHeadModel / LlamaForCausalLM. `torch_dtype`: float32 | float16 | bfloat16.
json hf_config_from_modu(const json& model, const data::BpeTokenizer& tok, const std::string& torch_dtype);
// generation_config.json (bos/eos for generate()).
json hf_generation_config(const data::BpeTokenizer& tok);

// metadata.model (the fields recipes/gpt/train.cpp's model_config_json writes) from a transformers
// config.json, applying transformers' class defaults for absent keys. `file` names the config in
// errors; an unknown model_type or a feature modu's model lacks is an error saying which.
json modu_model_from_hf_config(const json& hf, const fs::path& file, int64_t pad_vocab_to = 128);

// Writes vocab.json, merges.txt, tokenizer.json, tokenizer_config.json and special_tokens_map.json
// into dir: the byte-level BPE as GPT2Tokenizer / GPT2TokenizerFast load it offline.
void write_hf_tokenizer(const data::BpeTokenizer& tok, const fs::path& dir, int64_t model_max_length);

}  // namespace modu::exporting
