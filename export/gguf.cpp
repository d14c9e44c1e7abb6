// export/gguf.cpp — the GGUF writer of `modu export --format gguf`: DIR/model.gguf (GGUF v3, export/gguf_file.h) that
// llama.cpp loads as its `gpt2` or `llama` architecture, with the tokenizer inside.
//
// Names and layouts (../shared/reference/parallel-checkpoint-export.md §3.3-3.4; llama.cpp's gguf-py constants for
// the Llama names). modu stores nn::Linear weights (out, in) row-major, which is ggml's {ne0 = in, ne1 = out}: the
// bytes go out as they are, dims reversed.
//   gpt2:  wte -> token_embd, wpe -> position_embd, h.N.ln_1 -> blk.N.attn_norm,
//          h.N.attn.c_attn -> blk.N.attn_qkv ([Q;K;V] rows, as modu keeps them), h.N.attn.c_proj ->
//          blk.N.attn_output, h.N.ln_2 -> blk.N.ffn_norm, h.N.mlp.c_fc -> blk.N.ffn_up, h.N.mlp.c_proj ->
//          blk.N.ffn_down, ln_f -> output_norm, and the tied head written again as output.weight (what llama.cpp's
//          own converter does, for readers that require it).
//   llama: embed_tokens -> token_embd, layers.N.input_layernorm -> attn_norm,
//          self_attn.{q,k,v,o}_proj -> attn_{q,k,v,output}, post_attention_layernorm -> ffn_norm,
//          mlp.{gate,up,down}_proj -> ffn_{gate,up,down}, norm -> output_norm, lm_head -> output.
//   Rotary: modu (like Hugging Face) rotates the pair (j, j + HS/2) of each head; llama.cpp's llama architecture
//   rotates (2j, 2j + 1). So the rows of q_proj (per query head) and k_proj (per key/value head) are reordered, row
//   h*HS + p*HS/2 + j -> h*HS + 2j + p, which is the permute llama.cpp's convert_hf_to_gguf.py applies to Hugging
//   Face Llama weights.
//
// Tensor types (the rules of llama.cpp's converter and quantizer):
//   - 1-D tensors (norm weights, biases) are always f32;
//   - position_embd.weight is always f32 (llama.cpp never quantises it);
//   - every other weight, token_embd and output included, takes --dtype; for q8_0 a weight whose row length (ne0) is
//     not a multiple of 32 falls back to f16, as the converter does.
//
// Invariants: every modu tensor of the checkpoint is written exactly once (an unknown or missing tensor, or a shape
// that disagrees with the config, is an error naming it); non-finite weights are refused by name; the output is a
// deterministic function of the checkpoint and the dtype.
#include <cmath>
#include <iostream>
#include <set>

#include "core/check.h"
#include "export/export.h"
#include "export/gguf_file.h"

namespace modu::exporting {

namespace {

using gguf::TensorType;

// The GGUF numbers of the model, from its config and checked against the tensors.
struct Hparams {
  int64_t n_layer = 0, n_head = 0, n_kv_head = 0, n_embd = 0, n_ctx = 0;
  int64_t n_ff = 0, vocab = 0;
  double norm_eps = 1e-5, rope_theta = 10000.0;
};

// One tensor of the output file.
struct Planned {
  std::string gguf_name;
  std::string modu_name;
  int rotary_heads = 0;  // > 0: reorder rows for llama.cpp's rotary pairs
};

TensorType requested_type(const std::string& dtype) {
  if (dtype == "f32") return TensorType::F32;
  if (dtype == "f16") return TensorType::F16;
  if (dtype == "bf16") return TensorType::BF16;
  if (dtype == "q8_0") return TensorType::Q8_0;
  MODU_FAIL("export: --dtype '", dtype, "' cannot be written to GGUF; use f32, f16, bf16 or q8_0");
}

uint32_t file_type_of(TensorType t) {
  switch (t) {
    case TensorType::F32:
      return gguf::kFileTypeAllF32;
    case TensorType::F16:
      return gguf::kFileTypeMostlyF16;
    case TensorType::BF16:
      return gguf::kFileTypeMostlyBF16;
    case TensorType::Q8_0:
      return gguf::kFileTypeMostlyQ8_0;
  }
  return gguf::kFileTypeAllF32;
}

int64_t config_int(const ExportSource& src, const char* key) {
  MODU_CHECK(src.model.contains(key) && src.model[key].is_number_integer(), "export: ", src.checkpoint_dir.string(),
             ": metadata.model has no integer '", key, "'; the gguf writer needs it");
  return src.model[key].get<int64_t>();
}

double config_double(const ExportSource& src, const char* key, double fallback) {
  if (!src.model.contains(key) || src.model[key].is_null()) return fallback;
  return src.model[key].get<double>();
}

const Tensor& source_tensor(const ExportSource& src, const std::string& name) {
  auto it = src.tensors.find(name);
  MODU_CHECK(it != src.tensors.end(), "export: ", src.checkpoint_dir.string(), " has no tensor model/", name,
             ", which a ", src.arch, " model needs; the checkpoint does not match its metadata.model");
  return it->second;
}

void expect_shape(const ExportSource& src, const std::string& name, std::vector<int64_t> shape) {
  const Tensor& t = source_tensor(src, name);
  bool same = t.dim() == static_cast<int>(shape.size());
  for (size_t k = 0; same && k < shape.size(); ++k) same = t.shape()[static_cast<int>(k)] == shape[k];
  std::string want = "(";
  for (size_t k = 0; k < shape.size(); ++k) want += (k ? ", " : "") + std::to_string(shape[k]);
  want += ")";
  MODU_CHECK(same, "export: ", src.checkpoint_dir.string(), ": tensor model/", name, " has shape ", t.shape().str(),
             " but metadata.model says ", want);
}

Hparams read_hparams(const ExportSource& src) {
  Hparams h;
  h.n_layer = config_int(src, "n_layer");
  h.n_head = config_int(src, "n_head");
  h.n_embd = config_int(src, "n_embd");
  h.n_ctx = config_int(src, "block_size");
  h.vocab = src.vocab_size;
  h.n_kv_head = src.model.contains("n_kv_head") && src.model["n_kv_head"].is_number_integer()
                    ? src.model["n_kv_head"].get<int64_t>()
                    : 0;
  if (h.n_kv_head <= 0 || src.arch == "gpt2") h.n_kv_head = h.n_head;
  h.norm_eps = config_double(src, "norm_eps", 1e-5);
  h.rope_theta = config_double(src, "rope_theta", 10000.0);
  MODU_CHECK(h.n_layer > 0 && h.n_head > 0 && h.n_embd % h.n_head == 0 && h.n_head % h.n_kv_head == 0,
             "export: ", src.checkpoint_dir.string(), ": metadata.model has inconsistent sizes (n_layer ", h.n_layer,
             ", n_head ", h.n_head, ", n_kv_head ", h.n_kv_head, ", n_embd ", h.n_embd, ")");
  // The MLP width is whatever the checkpoint holds (gpt2: 4C; llama: its ffn_hidden rule).
  const std::string up = src.arch == "gpt2" ? "h.0.mlp.c_fc.weight" : "layers.0.mlp.up_proj.weight";
  h.n_ff = source_tensor(src, up).shape()[0];
  return h;
}

// The output tensors in file order, with every source shape checked.
std::vector<Planned> plan_tensors(const ExportSource& src, const Hparams& h) {
  const int64_t C = h.n_embd, V = h.vocab, F = h.n_ff, KV = h.n_kv_head * (C / h.n_head);
  std::vector<Planned> out;
  auto add = [&](const std::string& gguf_name, const std::string& modu_name, std::vector<int64_t> shape,
                 int rotary_heads = 0) {
    expect_shape(src, modu_name, std::move(shape));
    out.push_back(Planned{gguf_name, modu_name, rotary_heads});
  };
  if (src.arch == "gpt2") {
    add("token_embd.weight", "wte.weight", {V, C});
    add("position_embd.weight", "wpe.weight", {h.n_ctx, C});
    add("output_norm.weight", "ln_f.weight", {C});
    add("output_norm.bias", "ln_f.bias", {C});
    add("output.weight", "wte.weight", {V, C});  // the tied head, written again
    for (int64_t l = 0; l < h.n_layer; ++l) {
      const std::string m = "h." + std::to_string(l) + ".";
      const std::string g = "blk." + std::to_string(l) + ".";
      add(g + "attn_norm.weight", m + "ln_1.weight", {C});
      add(g + "attn_norm.bias", m + "ln_1.bias", {C});
      add(g + "attn_qkv.weight", m + "attn.c_attn.weight", {3 * C, C});
      add(g + "attn_qkv.bias", m + "attn.c_attn.bias", {3 * C});
      add(g + "attn_output.weight", m + "attn.c_proj.weight", {C, C});
      add(g + "attn_output.bias", m + "attn.c_proj.bias", {C});
      add(g + "ffn_norm.weight", m + "ln_2.weight", {C});
      add(g + "ffn_norm.bias", m + "ln_2.bias", {C});
      add(g + "ffn_up.weight", m + "mlp.c_fc.weight", {F, C});
      add(g + "ffn_up.bias", m + "mlp.c_fc.bias", {F});
      add(g + "ffn_down.weight", m + "mlp.c_proj.weight", {C, F});
      add(g + "ffn_down.bias", m + "mlp.c_proj.bias", {C});
    }
  } else {
    add("token_embd.weight", "embed_tokens.weight", {V, C});
    add("output_norm.weight", "norm.weight", {C});
    add("output.weight", "lm_head.weight", {V, C});
    for (int64_t l = 0; l < h.n_layer; ++l) {
      const std::string m = "layers." + std::to_string(l) + ".";
      const std::string g = "blk." + std::to_string(l) + ".";
      add(g + "attn_norm.weight", m + "input_layernorm.weight", {C});
      add(g + "attn_q.weight", m + "self_attn.q_proj.weight", {C, C}, static_cast<int>(h.n_head));
      add(g + "attn_k.weight", m + "self_attn.k_proj.weight", {KV, C}, static_cast<int>(h.n_kv_head));
      add(g + "attn_v.weight", m + "self_attn.v_proj.weight", {KV, C});
      add(g + "attn_output.weight", m + "self_attn.o_proj.weight", {C, C});
      add(g + "ffn_norm.weight", m + "post_attention_layernorm.weight", {C});
      add(g + "ffn_gate.weight", m + "mlp.gate_proj.weight", {F, C});
      add(g + "ffn_up.weight", m + "mlp.up_proj.weight", {F, C});
      add(g + "ffn_down.weight", m + "mlp.down_proj.weight", {C, F});
    }
  }
  // Nothing of the checkpoint may be silently left out.
  std::set<std::string> used;
  for (const Planned& p : out) used.insert(p.modu_name);
  for (const auto& [name, t] : src.tensors)
    MODU_CHECK(used.count(name), "export: ", src.checkpoint_dir.string(), ": tensor model/", name,
               " has no place in a GGUF ", src.arch, " model; the checkpoint does not match its metadata.model");
  return out;
}

// Rows of a (heads*HS, in) weight reordered from modu's half-split rotary pairs to llama.cpp's adjacent pairs.
std::vector<float> rotary_rows_for_ggml(const Tensor& w, int heads) {
  const int64_t rows = w.shape()[0], cols = w.shape()[1];
  const int64_t hs = rows / heads, half = hs / 2;
  const float* src = w.data<float>();
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t j = 0; j < half; ++j) {
        const int64_t from = h * hs + p * half + j, to = h * hs + 2 * j + p;
        std::copy(src + from * cols, src + (from + 1) * cols, out.begin() + to * cols);
      }
  return out;
}

void add_hparams(gguf::Writer& w, const std::string& arch, const Hparams& h) {
  auto u32 = [](int64_t v) { return static_cast<uint32_t>(v); };
  w.add_u32(arch + ".context_length", u32(h.n_ctx));
  w.add_u32(arch + ".embedding_length", u32(h.n_embd));
  w.add_u32(arch + ".block_count", u32(h.n_layer));
  w.add_u32(arch + ".feed_forward_length", u32(h.n_ff));
  w.add_u32(arch + ".attention.head_count", u32(h.n_head));
  w.add_u32(arch + ".attention.head_count_kv", u32(h.n_kv_head));
  w.add_u32(arch + ".vocab_size", u32(h.vocab));
  if (arch == "gpt2") {
    w.add_f32(arch + ".attention.layer_norm_epsilon", static_cast<float>(h.norm_eps));
  } else {
    w.add_f32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(h.norm_eps));
    w.add_f32(arch + ".rope.freq_base", static_cast<float>(h.rope_theta));
    w.add_u32(arch + ".rope.dimension_count", u32(h.n_embd / h.n_head));
  }
}

// GPT-2-style byte-level BPE: tokens in byte-to-unicode form, merges in rank order, "<|endoftext|>" as BOS and EOS
// (GPT-2's convention), no BOS added.
void add_tokenizer(gguf::Writer& w, const data::BpeTokenizer& tok) {
  const int32_t n = tok.vocab_size();
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  tokens.reserve(static_cast<size_t>(n));
  types.reserve(static_cast<size_t>(n));
  for (int32_t id = 0; id < n; ++id) {
    tokens.push_back(tok.token_string(id));
    types.push_back(tok.is_special(id) ? 3 /* CONTROL */ : 1 /* NORMAL */);
  }
  std::vector<std::string> merges;
  for (const auto& [left, right] : tok.merges()) merges.push_back(left + " " + right);
  const auto eot = static_cast<uint32_t>(tok.eot_id());
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "gpt-2");
  w.add_string_array("tokenizer.ggml.tokens", tokens);
  w.add_i32_array("tokenizer.ggml.token_type", types);
  w.add_string_array("tokenizer.ggml.merges", merges);
  w.add_u32("tokenizer.ggml.bos_token_id", eot);
  w.add_u32("tokenizer.ggml.eos_token_id", eot);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
}

}  // namespace

void write_gguf_export(const ExportSource& src, const fs::path& dir, const std::string& dtype) {
  const TensorType wanted = requested_type(dtype);
  MODU_CHECK(src.arch == "gpt2" || src.arch == "llama", "export: ", src.checkpoint_dir.string(), " holds a '", src.arch,
             "' model; GGUF export knows the gpt2 and llama architectures");
  MODU_CHECK(src.tokenizer.has_value(), "export: no tokenizer loaded for ", src.checkpoint_dir.string());
  const Hparams h = read_hparams(src);
  const std::vector<Planned> plan = plan_tensors(src, h);

  for (const auto& [name, t] : src.tensors) {
    const float* x = t.data<float>();
    for (int64_t k = 0; k < t.numel(); ++k)
      MODU_CHECK(std::isfinite(x[k]), "export: ", src.checkpoint_dir.string(), ": tensor model/", name,
                 " holds a non-finite value at element ", k, "; export a checkpoint from before training diverged");
  }

  gguf::Writer w;
  w.add_string("general.architecture", src.arch);
  w.add_string("general.name", "modu-" + src.arch + "-step" + std::to_string(src.step));
  w.add_u32("general.file_type", file_type_of(wanted));
  if (wanted == TensorType::Q8_0) w.add_u32("general.quantization_version", gguf::kQuantizationVersion);
  add_hparams(w, src.arch, h);
  add_tokenizer(w, *src.tokenizer);

  int fallbacks = 0;
  for (const Planned& p : plan) {
    const Tensor& t = src.tensors.at(p.modu_name);
    std::vector<int64_t> ne;
    for (int64_t d = t.dim() - 1; d >= 0; --d) ne.push_back(t.shape()[static_cast<int>(d)]);
    TensorType type = wanted;
    if (ne.size() == 1 || p.gguf_name == "position_embd.weight") type = TensorType::F32;
    if (type == TensorType::Q8_0 && ne[0] % gguf::block_elements(type) != 0) {
      type = TensorType::F16;
      ++fallbacks;
    }
    const int heads = p.rotary_heads;
    w.add_tensor(p.gguf_name, type, ne, [&t, type, heads] {
      std::vector<uint8_t> bytes;
      if (heads > 0) {
        const std::vector<float> rows = rotary_rows_for_ggml(t, heads);
        gguf::encode(type, rows.data(), t.numel(), bytes);
      } else {
        gguf::encode(type, t.data<float>(), t.numel(), bytes);
      }
      return bytes;
    });
  }
  if (fallbacks > 0)
    std::cerr << "export: gguf: " << fallbacks
              << " weights whose rows are not a multiple of 32 are f16 in "
                 "this q8_0 file\n";
  w.write(dir / "model.gguf");
}

}  // namespace modu::exporting
