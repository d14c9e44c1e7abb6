// export/hf_layout.cpp — see hf_layout.h.
#include "export/hf_layout.h"

#include <fstream>

#include "core/check.h"

namespace modu::exporting {

namespace {

int64_t get_int(const json& model, const char* key) {
  MODU_CHECK(model.contains(key) && model[key].is_number_integer(), "metadata.model lacks the integer '", key, "' (",
             model.dump(), ")");
  return model[key].get<int64_t>();
}
double get_double(const json& model, const char* key, double fallback) {
  if (!model.contains(key)) return fallback;
  MODU_CHECK(model[key].is_number(), "metadata.model['", key, "'] is not a number");
  return model[key].get<double>();
}

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  MODU_CHECK(out.good(), file.string(), ": write failed");
}

std::string q(const std::string& s) { return json(s).dump(); }

}  // namespace

int64_t llama_ffn_width(const json& model) {
  int64_t f = model.value("ffn_hidden", int64_t{0});
  if (f > 0) return f;
  int64_t h = 8 * get_int(model, "n_embd") / 3;
  return (h + 63) / 64 * 64;
}

std::vector<HfParam> hf_param_table(const json& model) {
  const std::string arch = model.at("arch").get<std::string>();
  const int64_t V = get_int(model, "vocab_size"), C = get_int(model, "n_embd"), L = get_int(model, "n_layer"),
                H = get_int(model, "n_head"), T = get_int(model, "block_size");
  MODU_CHECK(V > 0 && C > 0 && L > 0 && H > 0 && T > 0 && C % H == 0,
             "metadata.model has inconsistent sizes: ", model.dump());
  std::vector<HfParam> out;
  auto add = [&](std::string m, std::string h, Dims shape, bool transpose = false, bool vocab = false) {
    out.push_back(HfParam{std::move(m), std::move(h), shape, transpose, vocab});
  };
  if (arch == "gpt2") {
    const int64_t F = 4 * C;
    add("wte.weight", "transformer.wte.weight", Dims{V, C}, false, true);
    add("wpe.weight", "transformer.wpe.weight", Dims{T, C});
    for (int64_t l = 0; l < L; ++l) {
      const std::string m = "h." + std::to_string(l) + ".", h = "transformer." + m;
      add(m + "ln_1.weight", h + "ln_1.weight", Dims{C});
      add(m + "ln_1.bias", h + "ln_1.bias", Dims{C});
      add(m + "attn.c_attn.weight", h + "attn.c_attn.weight", Dims{3 * C, C}, true);
      add(m + "attn.c_attn.bias", h + "attn.c_attn.bias", Dims{3 * C});
      add(m + "attn.c_proj.weight", h + "attn.c_proj.weight", Dims{C, C}, true);
      add(m + "attn.c_proj.bias", h + "attn.c_proj.bias", Dims{C});
      add(m + "ln_2.weight", h + "ln_2.weight", Dims{C});
      add(m + "ln_2.bias", h + "ln_2.bias", Dims{C});
      add(m + "mlp.c_fc.weight", h + "mlp.c_fc.weight", Dims{F, C}, true);
      add(m + "mlp.c_fc.bias", h + "mlp.c_fc.bias", Dims{F});
      add(m + "mlp.c_proj.weight", h + "mlp.c_proj.weight", Dims{C, F}, true);
      add(m + "mlp.c_proj.bias", h + "mlp.c_proj.bias", Dims{C});
    }
    add("ln_f.weight", "transformer.ln_f.weight", Dims{C});
    add("ln_f.bias", "transformer.ln_f.bias", Dims{C});
    return out;
  }
  if (arch == "llama") {
    const int64_t kv_heads = model.value("n_kv_head", int64_t{0}) > 0 ? get_int(model, "n_kv_head") : H;
    const int64_t KV = kv_heads * (C / H), F = llama_ffn_width(model);
    add("embed_tokens.weight", "model.embed_tokens.weight", Dims{V, C}, false, true);
    for (int64_t l = 0; l < L; ++l) {
      const std::string m = "layers." + std::to_string(l) + ".", h = "model." + m;
      add(m + "input_layernorm.weight", h + "input_layernorm.weight", Dims{C});
      add(m + "self_attn.q_proj.weight", h + "self_attn.q_proj.weight", Dims{C, C});
      add(m + "self_attn.k_proj.weight", h + "self_attn.k_proj.weight", Dims{KV, C});
      add(m + "self_attn.v_proj.weight", h + "self_attn.v_proj.weight", Dims{KV, C});
      add(m + "self_attn.o_proj.weight", h + "self_attn.o_proj.weight", Dims{C, C});
      add(m + "post_attention_layernorm.weight", h + "post_attention_layernorm.weight", Dims{C});
      add(m + "mlp.gate_proj.weight", h + "mlp.gate_proj.weight", Dims{F, C});
      add(m + "mlp.up_proj.weight", h + "mlp.up_proj.weight", Dims{F, C});
      add(m + "mlp.down_proj.weight", h + "mlp.down_proj.weight", Dims{C, F});
    }
    add("norm.weight", "model.norm.weight", Dims{C});
    add("lm_head.weight", "lm_head.weight", Dims{V, C}, false, true);
    return out;
  }
  MODU_CHECK(false, "export: architecture '", arch,
             "' has no Hugging Face transformers equivalent here (gpt2 -> GPT2LMHeadModel, llama -> "
             "LlamaForCausalLM)");
  return out;
}

json hf_config_from_modu(const json& model, const data::BpeTokenizer& tok, const std::string& torch_dtype) {
  const std::string arch = model.at("arch").get<std::string>();
  const int64_t V = get_int(model, "vocab_size"), C = get_int(model, "n_embd"), L = get_int(model, "n_layer"),
                H = get_int(model, "n_head"), T = get_int(model, "block_size");
  const double eps = get_double(model, "norm_eps", 1e-5), dropout = get_double(model, "dropout", 0.0);
  const int64_t eot = tok.eot_id();
  if (arch == "gpt2") {
    return json{{"architectures", {"GPT2LMHeadModel"}},
                {"model_type", "gpt2"},
                {"activation_function", "gelu_new"},
                {"attn_pdrop", 0.0},
                {"embd_pdrop", dropout},
                {"resid_pdrop", dropout},
                {"bos_token_id", eot},
                {"eos_token_id", eot},
                {"initializer_range", 0.02},
                {"layer_norm_epsilon", eps},
                {"n_ctx", T},
                {"n_positions", T},
                {"n_embd", C},
                {"n_head", H},
                {"n_inner", nullptr},
                {"n_layer", L},
                {"reorder_and_upcast_attn", false},
                {"scale_attn_by_inverse_layer_idx", false},
                {"scale_attn_weights", true},
                {"tie_word_embeddings", true},
                {"torch_dtype", torch_dtype},
                {"use_cache", true},
                {"vocab_size", V}};
  }
  MODU_CHECK(arch == "llama", "export: architecture '", arch, "' has no transformers equivalent");
  const int64_t kv = model.value("n_kv_head", int64_t{0}) > 0 ? get_int(model, "n_kv_head") : H;
  const double theta = get_double(model, "rope_theta", 10000.0);
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"attention_bias", false},
              {"attention_dropout", 0.0},
              {"bos_token_id", eot},
              {"eos_token_id", eot},
              {"head_dim", C / H},
              {"hidden_act", "silu"},
              {"hidden_size", C},
              {"initializer_range", 0.02},
              {"intermediate_size", llama_ffn_width(model)},
              {"max_position_embeddings", T},
              {"mlp_bias", false},
              {"num_attention_heads", H},
              {"num_hidden_layers", L},
              {"num_key_value_heads", kv},
              {"pretraining_tp", 1},
              {"rms_norm_eps", eps},
              {"rope_scaling", nullptr},
              {"rope_theta", theta},
              {"rope_parameters", {{"rope_type", "default"}, {"rope_theta", theta}}},
              {"tie_word_embeddings", false},
              {"torch_dtype", torch_dtype},
              {"use_cache", true},
              {"vocab_size", V}};
}

json hf_generation_config(const data::BpeTokenizer& tok) {
  return json{{"bos_token_id", tok.eot_id()}, {"eos_token_id", tok.eot_id()}};
}

namespace {

// A field of a transformers config.json, with the class default when absent (save_pretrained
// omits fields equal to the defaults).
struct HfConfigReader {
  const json& j;
  std::string file;

  bool has(const char* key) const { return j.contains(key) && !j[key].is_null(); }
  int64_t integer(const char* key, int64_t fallback) const {
    if (!has(key)) return fallback;
    MODU_CHECK(j[key].is_number_integer(), file, ": '", key, "' must be an integer, got ", j[key].dump());
    return j[key].get<int64_t>();
  }
  double number(const char* key, double fallback) const {
    if (!has(key)) return fallback;
    MODU_CHECK(j[key].is_number(), file, ": '", key, "' must be a number, got ", j[key].dump());
    return j[key].get<double>();
  }
  bool boolean(const char* key, bool fallback) const {
    if (!has(key)) return fallback;
    MODU_CHECK(j[key].is_boolean(), file, ": '", key, "' must be true or false, got ", j[key].dump());
    return j[key].get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    if (!has(key)) return fallback;
    MODU_CHECK(j[key].is_string(), file, ": '", key, "' must be a string, got ", j[key].dump());
    return j[key].get<std::string>();
  }
  void positive(const char* key, int64_t v) const {
    MODU_CHECK(v > 0, file, ": '", key, "' must be positive, got ", v);
  }
};

}  // namespace

json modu_model_from_hf_config(const json& hf, const fs::path& path, int64_t pad_vocab_to) {
  const std::string file = path.string();
  MODU_CHECK(hf.is_object(), file, ": not a JSON object");
  HfConfigReader r{hf, file};
  MODU_CHECK(r.has("model_type"), file, ": no 'model_type' (modu imports model_type \"gpt2\" and \"llama\")");
  const std::string type = r.string("model_type", "");
  if (type == "gpt2") {
    // GPT2Config's defaults.
    const int64_t C = r.integer("n_embd", 768), L = r.integer("n_layer", 12), H = r.integer("n_head", 12),
                  V = r.integer("vocab_size", 50257);
    const int64_t T = r.has("n_positions") ? r.integer("n_positions", 1024) : r.integer("n_ctx", 1024);
    for (auto [k, v] : {std::pair{"n_embd", C}, {"n_layer", L}, {"n_head", H}, {"vocab_size", V}, {"n_positions", T}})
      r.positive(k, v);
    MODU_CHECK(C % H == 0, file, ": n_embd ", C, " is not divisible by n_head ", H);
    const int64_t inner = r.integer("n_inner", 4 * C);
    MODU_CHECK(inner == 4 * C, file, ": n_inner ", inner, " is not 4 * n_embd (", 4 * C,
               "); modu's GPT-2 has an MLP of width 4C");
    const std::string act = r.string("activation_function", "gelu_new");
    MODU_CHECK(act == "gelu_new" || act == "gelu_pytorch_tanh", file, ": activation_function \"", act,
               "\" is not the tanh GELU (gelu_new) that modu's GPT-2 uses");
    MODU_CHECK(r.boolean("scale_attn_weights", true), file,
               ": scale_attn_weights false (unscaled attention) is not expressible in modu's GPT-2");
    MODU_CHECK(!r.boolean("scale_attn_by_inverse_layer_idx", false), file,
               ": scale_attn_by_inverse_layer_idx is not expressible in modu's GPT-2");
    MODU_CHECK(!r.boolean("add_cross_attention", false), file,
               ": add_cross_attention (an encoder-decoder GPT-2) is not expressible in modu's GPT-2");
    MODU_CHECK(r.boolean("tie_word_embeddings", true), file,
               ": tie_word_embeddings false: modu's GPT-2 ties its LM head to wte");
    return json{{"arch", "gpt2"},
                {"vocab_size", V},
                {"pad_vocab_to", pad_vocab_to},
                {"n_layer", L},
                {"n_head", H},
                {"n_kv_head", 0},
                {"n_embd", C},
                {"block_size", T},
                {"ffn_hidden", 0},
                {"dropout", r.number("resid_pdrop", 0.1)},
                {"rope_theta", 10000.0},
                {"norm_eps", r.number("layer_norm_epsilon", 1e-5)}};
  }
  if (type == "llama") {
    // LlamaConfig's defaults.
    const int64_t C = r.integer("hidden_size", 4096), L = r.integer("num_hidden_layers", 32),
                  H = r.integer("num_attention_heads", 32), V = r.integer("vocab_size", 32000),
                  F = r.integer("intermediate_size", 11008), T = r.integer("max_position_embeddings", 2048);
    const int64_t KV = r.integer("num_key_value_heads", H);
    for (auto [k, v] : {std::pair{"hidden_size", C},
                        {"num_hidden_layers", L},
                        {"num_attention_heads", H},
                        {"vocab_size", V},
                        {"intermediate_size", F},
                        {"max_position_embeddings", T},
                        {"num_key_value_heads", KV}})
      r.positive(k, v);
    MODU_CHECK(C % H == 0, file, ": hidden_size ", C, " is not divisible by num_attention_heads ", H);
    MODU_CHECK(H % KV == 0, file, ": num_key_value_heads ", KV, " does not divide num_attention_heads ", H);
    MODU_CHECK((C / H) % 2 == 0, file, ": rotary positions need an even head size, got ", C / H);
    const int64_t head_dim = r.integer("head_dim", C / H);
    MODU_CHECK(head_dim == C / H, file, ": head_dim ", head_dim, " differs from hidden_size / num_attention_heads (",
               C / H, "); modu's Llama has head_dim = C / heads");
    const std::string act = r.string("hidden_act", "silu");
    MODU_CHECK(act == "silu", file, ": hidden_act \"", act, "\" is not the SiLU (SwiGLU) modu's Llama uses");
    MODU_CHECK(!r.boolean("attention_bias", false), file,
               ": attention_bias true: modu's Llama has no biases in attention");
    MODU_CHECK(!r.boolean("mlp_bias", false), file, ": mlp_bias true: modu's Llama has no biases in the MLP");
    double theta = r.number("rope_theta", 10000.0);
    auto plain_rope = [&](const char* key) {
      if (!r.has(key)) return;
      const json& s = hf[key];
      MODU_CHECK(s.is_object(), file, ": '", key, "' must be an object, got ", s.dump());
      const std::string kind = s.value("rope_type", s.value("type", std::string("default")));
      MODU_CHECK(kind == "default", file, ": ", key, ".rope_type \"", kind,
                 "\" (scaled rotary positions) is not expressible in modu's Llama");
      if (s.contains("rope_theta") && s["rope_theta"].is_number()) theta = s["rope_theta"].get<double>();
    };
    plain_rope("rope_scaling");
    plain_rope("rope_parameters");
    return json{{"arch", "llama"}, {"vocab_size", V},     {"pad_vocab_to", pad_vocab_to},
                {"n_layer", L},    {"n_head", H},         {"n_kv_head", KV},
                {"n_embd", C},     {"block_size", T},     {"ffn_hidden", F},
                {"dropout", 0.0},  {"rope_theta", theta}, {"norm_eps", r.number("rms_norm_eps", 1e-6)}};
  }
  MODU_CHECK(false, file, ": model_type \"", type,
             "\" is not importable (modu imports \"gpt2\" -> arch gpt2 and \"llama\" -> arch llama)");
  return {};
}

void write_hf_tokenizer(const data::BpeTokenizer& tok, const fs::path& dir, int64_t model_max_length) {
  // vocab.json + merges.txt: exactly what BpeTokenizer::save writes as encoder.json + vocab.bpe
  // (GPT-2's own files for GPT-2's vocabulary).
  const fs::path scratch = dir / ".tokenizer-save";
  tok.save(scratch.string());
  fs::rename(scratch / "encoder.json", dir / "vocab.json");
  fs::rename(scratch / "vocab.bpe", dir / "merges.txt");
  fs::remove_all(scratch);

  const std::string eot(data::BpeTokenizer::kEndOfText);
  const int32_t n = tok.vocab_size();
  // tokenizer.json (the `tokenizers` library's format), written by hand: the vocabulary in id order.
  std::string added = "[";
  for (size_t i = 0; i < tok.special_tokens().size(); ++i) {
    const data::SpecialToken& s = tok.special_tokens()[i];
    added += std::string(i ? "," : "") + "\n    {\"id\": " + std::to_string(s.id) + ", \"content\": " + q(s.text) +
             ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
             "\"special\": true}";
  }
  added += "\n  ]";
  std::string vocab = "{";
  for (int32_t id = 0; id < n; ++id)
    vocab += std::string(id ? "," : "") + "\n      " + q(tok.token_string(id)) + ": " + std::to_string(id);
  vocab += "\n    }";
  std::string merges = "[";
  const auto merge_list = tok.merges();
  for (size_t i = 0; i < merge_list.size(); ++i)
    merges += std::string(i ? "," : "") + "\n      [" + q(merge_list[i].first) + ", " + q(merge_list[i].second) + "]";
  merges += "\n    ]";
  std::string tj =
      "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": " + added +
      ",\n  \"normalizer\": null,\n"
      "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": "
      "true, \"use_regex\": true},\n"
      "  \"post_processor\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": "
      "false, \"use_regex\": true},\n"
      "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
      "\"use_regex\": true},\n"
      "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
      "    \"continuing_subword_prefix\": \"\",\n    \"end_of_word_suffix\": \"\",\n"
      "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n"
      "    \"vocab\": " +
      vocab + ",\n    \"merges\": " + merges + "\n  }\n}\n";
  write_text(dir / "tokenizer.json", tj);

  json decoder = json::object();
  for (const data::SpecialToken& s : tok.special_tokens())
    decoder[std::to_string(s.id)] = json{{"content", s.text}, {"lstrip", false},      {"normalized", false},
                                         {"rstrip", false},   {"single_word", false}, {"special", true}};
  json config{{"tokenizer_class", "GPT2Tokenizer"},
              {"add_bos_token", false},
              {"add_prefix_space", false},
              {"added_tokens_decoder", decoder},
              {"bos_token", eot},
              {"eos_token", eot},
              {"unk_token", eot},
              {"pad_token", nullptr},
              {"clean_up_tokenization_spaces", false},
              {"errors", "replace"},
              {"model_max_length", model_max_length}};
  write_text(dir / "tokenizer_config.json", config.dump(2) + "\n");
  json special{{"bos_token", eot}, {"eos_token", eot}, {"unk_token", eot}};
  write_text(dir / "special_tokens_map.json", special.dump(2) + "\n");
}

}  // namespace modu::exporting
